"""Entries of the foundations chapter "Batch Normalization from its equations"
(batchnorm-from-its-equations.ipynb).

``foundations.batchnorm.lr-batch-size``: the digits MLP of ``foundations.digits-mlp`` with and
without BatchNorm over learning rate × batch size, with the train/eval gap (batch statistics vs
running statistics on the test set, :mod:`normbook.experiments.measures_batchnorm`) measured
after every epoch. ``foundations.digits-mlp`` holds the finer learning-rate grid at batch 64.
"""

from __future__ import annotations

import normbook.experiments.measures_batchnorm  # noqa: F401  (registers "bn_train_eval_gap")
from normbook.experiments.entries.foundations import LEARNING_RATES
from normbook.experiments.registry import register
from normbook.experiments.spec import Experiment, ScaleSpec, deep_merge

_LR_BATCH = {
    "task": "classify",
    "model": {"name": "mlp", "in_features": 64, "hidden": [128, 128], "norm": "bn", "act": "relu"},
    "data": {"name": "digits", "variant": "flat"},
    "train": {
        "epochs": 8,
        "batch_size": 64,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "augment": False,
    },
    "measure": {"bn_train_eval_gap": {}},
}

LR_BATCH_SIZE = register(
    Experiment(
        id="foundations.batchnorm.lr-batch-size",
        artifact="BOOK-BATCHNORM",
        title="Digits MLP with and without BatchNorm over learning rate × batch size,"
        " with the train/eval gap",
        description=(
            "An MLP (two hidden layers of 128, ReLU) on the embedded UCI digits, SGD with"
            " momentum 0.9, with BatchNorm after every hidden linear layer or without"
            " normalization, at each learning rate and batch size. After every epoch the test"
            " set goes through the network twice: with batch statistics (train mode, batches of"
            " the training batch size) and with running statistics (eval mode); the losses,"
            " accuracies and the fraction of predictions that differ are logged. `full` repeats"
            " it on MNIST."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_LR_BATCH, {"model": {"hidden": [32]}, "train": {"epochs": 2}}),
                grid={
                    "train.lr": (0.1, 1.0),
                    "train.batch_size": (32, 128),
                    "model.norm": ("bn", "none"),
                },
                seeds=1,
            ),
            "small": ScaleSpec(
                config=_LR_BATCH,
                grid={
                    "train.lr": (0.1, 0.3, 1.0),
                    "train.batch_size": (32, 64, 256),
                    "model.norm": ("bn", "none"),
                },
                seeds=3,
            ),
            "full": ScaleSpec(
                config=deep_merge(
                    _LR_BATCH,
                    {
                        "model": {"in_features": 784},
                        "data": {"name": "mnist", "variant": "flat"},
                        "train": {"epochs": 20},
                    },
                ),
                grid={
                    "train.lr": LEARNING_RATES,
                    "train.batch_size": (16, 64, 256, 1024),
                    "model.norm": ("bn", "none"),
                },
                seeds=5,
            ),
        },
    )
)
