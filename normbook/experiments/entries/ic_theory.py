"""Entries of the IC theory chapters (``book/ic/independent-components.ipynb``, IC-TH1/IC-EQ8, and
``book/ic/where-batchnorm-goes.ipynb``, IC-S5).

The paper's p is the KEEP probability of a gate; the model option ``drop_prob`` is 1 − p (the
paper's "dropout rate 0.05" is ``drop_prob=0.05``). The theory artifacts have no paper numbers
to set beside ours: Theorem 1 and Eq. 8 are identities, Section 5 an argument.
"""

from __future__ import annotations

import normbook.experiments.tasks_ic_theory  # noqa: F401  (registers the tasks and the measure)
from normbook.experiments.registry import register
from normbook.experiments.spec import Experiment, ScaleSpec, deep_merge

KEEP_PROBS_SMALL = (0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 1.0)

_GATING_MC = {
    "task": "ic.gating-mc",
    "rho": 0.6,
    "keep_prob": 0.5,
    "sample_size": 5000,
    "bins": 8,
    "limit": 3.0,
}

register(
    Experiment(
        id="ic.th1.gating-mc",
        artifact="IC-TH1",
        title="Monte Carlo of Theorem 1 and Eq. 8: gated Gaussian pairs over keep probability and ρ",
        description=(
            "n draws of a standard Gaussian pair with correlation rho, each variable multiplied by"
            " an independent Bernoulli gate that stays open with probability keep_prob (the"
            " paper's p). Plug-in MI and entropy of the pair discretized into 8 bins (values 1..8,"
            " never 0, as Theorem 1 needs) against p^2*I and p*H + H_b(p); Pearson correlation of"
            " the continuous gated pair against Eq. 8's p*rho; each with the exact mean and sd of"
            " its estimator. CPU only at every scale."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_GATING_MC, {"sample_size": 2000}),
                grid={"rho": (0.0, 0.9), "keep_prob": (0.5, 0.95)},
                seeds=2,
            ),
            "small": ScaleSpec(
                config=_GATING_MC,
                grid={"rho": (0.0, 0.3, 0.6, 0.9, 0.99), "keep_prob": KEEP_PROBS_SMALL},
                seeds=5,
            ),
            "full": ScaleSpec(
                config=deep_merge(_GATING_MC, {"sample_size": 1_000_000, "bins": 16}),
                grid={
                    "rho": (0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99),
                    "keep_prob": (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 1.0),
                },
                seeds=20,
            ),
        },
    )
)

_DIGITS_IC_MLP = {
    "task": "ic.gating-activations",
    "model": {
        "name": "mlp",
        "in_features": 64,
        "hidden": [128, 128],
        "norm": "ic",
        "norm_position": "after_act",
        "act": "relu",
    },
    "data": {"name": "digits", "variant": "flat"},
    "train": {
        "epochs": 10,
        "batch_size": 64,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "augment": False,
    },
    "keep_probs": [0.1, 0.3, 0.5, 0.7, 0.9, 0.95],
    "population": 1347,
    "bins": 8,
    "pairs": 3,
    "layers": [0, 1],
}

register(
    Experiment(
        id="ic.th1.activations",
        artifact="IC-TH1",
        title="Theorem 1 and Eq. 8 on the inputs of trained IC layers (digits MLP; CIFAR ResNet-110)",
        description=(
            "Train a network whose weight layers are preceded by IC layers (BN then Dropout), take"
            " the BatchNorm outputs of chosen IC layers over a population of training images, and"
            " gate resampled rows with the IC layer itself at each keep probability: measured"
            " correlations against Eq. 8 (p*c) and against the exact value for the BN's learned"
            " shift and scale, and the plug-in MI of the three most correlated pairs (8 bins)"
            " against p^2*I. small: digits MLP 64-128-128-10 with ReLU-IC-Linear; full: CIFAR-10"
            " ResNet-110 with ReLU-IC-Conv units on the paper's recipe (Adam 1e-3, batch 64, 200"
            " epochs, /10 at 80/120/160, drop 0.05), four IC layers through the depth."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(
                    _DIGITS_IC_MLP,
                    {
                        "model": {"hidden": [32, 32]},
                        "train": {"epochs": 2},
                        "keep_probs": [0.5, 0.95],
                        "population": 600,
                        "layers": [0],
                    },
                ),
                seeds=1,
            ),
            "small": ScaleSpec(config=_DIGITS_IC_MLP, seeds=3),
            "full": ScaleSpec(
                config={
                    "task": "ic.gating-activations",
                    "model": {
                        "name": "resnet_cifar",
                        "depth": 110,
                        "norm": "ic",
                        "unit": "relu-ic-conv",
                        "drop_prob": 0.05,
                    },
                    "data": {"name": "cifar10"},
                    "train": {
                        "epochs": 200,
                        "batch_size": 64,
                        "optimizer": "adam",
                        "lr": 0.001,
                        "momentum": 0.9,
                        "weight_decay": 0.0,
                        "schedule": "multistep",
                        "milestones": [80, 120, 160],
                        "gamma": 0.1,
                        "augment": True,
                    },
                    "keep_probs": [0.1, 0.3, 0.5, 0.7, 0.9, 0.95],
                    "population": 2000,
                    "bins": 16,
                    "pairs": 5,
                    "layers": [0, 36, 72, 108],
                },
                seeds=3,
            ),
        },
    )
)

_SIGN_MLP = {
    "task": "classify",
    "model": {
        "name": "mlp",
        "in_features": 64,
        "hidden": [128, 128],
        "norm": "bn",
        "norm_position": "before_act",
        "act": "relu",
    },
    "data": {"name": "digits", "variant": "flat"},
    "train": {
        "epochs": 20,
        "batch_size": 64,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "augment": False,
    },
    "measure": {"ic.sign-agreement": {"batch": 256}},
}
_PLACEMENTS = {"model.norm": ("bn", "ic"), "model.norm_position": ("before_act", "after_act")}

register(
    Experiment(
        id="ic.s5.sign-agreement",
        artifact="IC-S5",
        title="Sign coherence of per-sample weight gradients and training speed: norm before vs after ReLU",
        description=(
            "Digits MLP 64-128-128-10 trained with SGD (momentum 0.9, batch 64, lr 0.1) with BN or"
            " IC (BN + Dropout 0.05) either before the ReLU (Linear-Norm-ReLU: the next weight"
            " layer sees non-negative inputs, Fig. 1a) or after it (Linear-ReLU-Norm: it sees"
            " standardized, zero-mean inputs; with IC this is Fig. 1b). After every epoch the"
            " measurement ic.sign-agreement logs how often the components of a weight row's"
            " per-sample gradient share one sign; test accuracy and training loss per epoch give"
            " the speed. full: CIFAR-10 ResNet-110, baseline (Conv-BN-ReLU) vs ReLU-IC-Conv units,"
            " on the paper's recipe."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(
                    _SIGN_MLP,
                    {
                        "model": {"hidden": [32, 32]},
                        "train": {"epochs": 3},
                        "measure": {"ic.sign-agreement": {"batch": 64}},
                    },
                ),
                grid=_PLACEMENTS,
                seeds=2,
            ),
            "small": ScaleSpec(config=_SIGN_MLP, grid=_PLACEMENTS, seeds=3),
            "full": ScaleSpec(
                config={
                    "task": "classify",
                    "model": {"name": "resnet_cifar", "depth": 110, "norm": "bn"},
                    "data": {"name": "cifar10"},
                    "train": {
                        "epochs": 200,
                        "batch_size": 64,
                        "optimizer": "adam",
                        "lr": 0.001,
                        "momentum": 0.9,
                        "weight_decay": 0.0,
                        "schedule": "multistep",
                        "milestones": [80, 120, 160],
                        "gamma": 0.1,
                        "augment": True,
                    },
                    "measure": {"ic.sign-agreement": {"batch": 64}},
                },
                grid={"model.norm": ("bn", "ic")},
                seeds=3,
            ),
        },
    )
)
