"""Entries of the DBN part's MLP chapters (``book/dbn/``): PCA vs ZCA whitening in training
(``pca-vs-zca-in-training``, DBN-F2), group whitening (``group-whitening``, DBN-S34/DBN-F4) and the
conditioning of the relative FIM (``conditioning``, DBN-F3).

Recipes follow the paper (Sec. 3.1, 4.1) and the authors' released scripts
(``execute_MLP_0debug_MNIST.sh``, ``execute_MLP_1FIM_YaleB_best.sh``,
``execute_MLP_2PIE_DBNGroup.sh``): plain SGD without momentum or weight decay; Fig. 2 full-batch
with learning rates {0.1, 0.5, 1, 5} halved every 40 iterations, 2- and 4-layer MLPs meaning 1 and 3
hidden layers of 100, 1000 iterations; Fig. 3 full-batch, {128, 64, 48, 48}, whitening each layer
whole, learning rates {0.1, 0.2, 0.5, 1, 2}, 3000 iterations with the FIM every 20; Fig. 4 batch
256, 5 × 128, group sizes {1, 8, 16, 32, 64, 128}. The live and ``small`` scales use the embedded
digits; ``full`` uses MNIST, the stand-in for Yale-B and PIE, which cannot be downloaded here.
The figures report curves, not numbers; the one number the text gives (DBN 2× slower than BN per
iteration on the CPU, Sec. 4.1) is declared as the paper's.
"""

from __future__ import annotations

from normbook.experiments.registry import register
from normbook.experiments.spec import Experiment, Reported, ScaleSpec, deep_merge
from normbook.experiments.tasks_dbn_mlp import FIM_MEASURE, MLP_METHOD

F2_LEARNING_RATES = (0.1, 0.5, 1.0, 5.0)  # DBN Fig. 2 caption
F2_METHODS = ("plain", "dbn-pca", "dbn-zca")
F2_DEPTHS = (1, 3)  # hidden layers of the paper's 2-layer and 4-layer MLPs (released script: 1, 3)
F3_LEARNING_RATES = (0.1, 0.2, 0.5, 1.0, 2.0)  # DBN Sec. 4.1
F3_SMALL_LEARNING_RATES = (0.5, 1.0, 2.0)  # the upper part of the grid (100 steps at small)
F3_METHODS = ("plain", "ln", "bn", "dbn-zca")  # NNN is not implemented (see conditioning.ipynb)
F4_GROUP_SIZES = (1, 8, 16, 32, 64, 128)  # DBN Sec. 4.1, Fig. 4a
MNIST_FLAT = {"name": "mnist", "variant": "flat"}

_TRAIN = {
    "optimizer": "sgd",
    "momentum": 0.0,
    "weight_decay": 0.0,
    "augment": False,
}

# -- DBN-F2: plain vs DBN-PCA vs DBN-ZCA, full-batch gradient descent ----------------------------
_F2 = {
    "task": MLP_METHOD,
    "method": "plain",
    "depth": 1,
    "group_size": None,  # the paper whitens each layer whole (released script: m_perGroup 100)
    "dbn": {"affine": False},  # released ZCA module: DecorelateBN_Advance(n, g, false), no γ, β
    "model": {"name": "mlp", "in_features": 64, "hidden": [100], "act": "relu"},
    "data": {"name": "digits", "variant": "flat"},
    "train": {
        **_TRAIN,
        "epochs": 60,
        "batch_size": None,
        "lr": 1.0,
        "schedule": "halving",
        "step_size": 40,
        "eval_every": 20,
    },
}

register(
    Experiment(
        id="dbn.f2.whitening-in-training",
        artifact="DBN-F2",
        title="PCA vs ZCA whitening in training: MLPs under full-batch gradient descent",
        description=(
            "MLPs with 1 and 3 hidden layers of 100 ReLU units (the paper's 2- and 4-layer MLPs)"
            " trained by full-batch gradient descent (no momentum; learning rate halved every 40"
            " iterations, as the released script does) without normalization ('plain'), with"
            " DBN whitening each hidden layer whole by PCA, or by ZCA (no γ, β). Every learning"
            " rate of the paper's grid {0.1, 0.5, 1, 5} runs; the chapter keeps each method's"
            " best by final training loss. `small`: the embedded digits, 60 iterations, 3 seeds;"
            " `full`: MNIST (784 inputs, all 60,000 training images per step), 1000 iterations,"
            " 5 seeds."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_F2, {"model": {"hidden": [16]}, "train": {"epochs": 4}}),
                grid={"depth": F2_DEPTHS, "method": F2_METHODS, "train.lr": (0.5, 5.0)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=_F2,
                grid={"depth": F2_DEPTHS, "method": F2_METHODS, "train.lr": F2_LEARNING_RATES},
                seeds=3,
            ),
            "full": ScaleSpec(
                config=deep_merge(
                    _F2,
                    {
                        "model": {"in_features": 784},
                        "data": MNIST_FLAT,
                        "train": {"epochs": 1000, "eval_every": 50},
                    },
                ),
                grid={"depth": F2_DEPTHS, "method": F2_METHODS, "train.lr": F2_LEARNING_RATES},
                seeds=5,
            ),
        },
    )
)

# -- DBN-F3: conditioning of the last layer's relative FIM ---------------------------------------
F3_SOURCE = "DBN Sec. 4.1 (Yale-B MLP, CPU; text beside Fig. 3)"
_F3 = {
    "task": MLP_METHOD,
    "method": "plain",
    "depth": None,
    "group_size": None,  # released script: m_perGroup 128 >= every width, i.e. whole layers
    "dbn": {},
    "model": {"name": "mlp", "in_features": 64, "hidden": [128, 64, 48, 48], "act": "relu"},
    "data": {"name": "digits", "variant": "flat"},
    "train": {**_TRAIN, "epochs": 100, "batch_size": None, "lr": 0.5, "eval_every": 25},
    "measure": {FIM_MEASURE: {"every": 5}},
}

register(
    Experiment(
        id="dbn.f3.conditioning",
        artifact="DBN-F3",
        title="Condition number of the last layer's relative FIM over training: plain, LN, BN, DBN",
        description=(
            "A 5-layer MLP {128, 64, 48, 48} (ReLU) trained by full-batch gradient descent"
            " (no momentum) without normalization, with LayerNorm, BatchNorm or DBN (ZCA, each"
            " layer whitened whole) after every hidden linear layer. After every 5th step"
            " (`full`: every 20th, as the released script) the condition number of the relative"
            " Fisher information of the last linear layer's weights (`fim_condition`, empirical"
            " labels, over the non-zero spectrum) is logged beside the loss and the training"
            " wall time; each method is compared at its best learning rate by final training"
            " loss. `small`: the embedded digits as the stand-in for Yale-B, learning rates"
            " {0.5, 1, 2} (the smaller ones of the paper's grid are too slow for 100 steps), 3"
            " seeds; `full`: MNIST as the stand-in (Yale-B cannot be downloaded), the paper's"
            " grid {0.1, 0.2, 0.5, 1, 2}, 3000 steps, the FIM on 2000 training images, 5 seeds."
            " NNN (natural neural networks) is not implemented."
        ),
        paper=(
            Reported(
                metric="time_ratio_to_bn",
                value=2.0,
                unit="×",
                meaning="DBN's time per iteration over BN's (on CPUs)",
                source=F3_SOURCE,
                point={"method": "dbn-zca"},
            ),
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(
                    _F3,
                    {
                        "model": {"hidden": [32, 16, 12, 12]},
                        "train": {"epochs": 6},
                        "measure": {FIM_MEASURE: {"every": 2}},
                    },
                ),
                grid={"method": F3_METHODS},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=_F3,
                grid={"method": F3_METHODS, "train.lr": F3_SMALL_LEARNING_RATES},
                seeds=3,
            ),
            "full": ScaleSpec(
                config=deep_merge(
                    _F3,
                    {
                        "model": {"in_features": 784},
                        "data": MNIST_FLAT,
                        "train": {"epochs": 3000, "eval_every": 100},
                        "measure": {FIM_MEASURE: {"every": 20, "samples": 2000}},
                    },
                ),
                grid={"method": F3_METHODS, "train.lr": F3_LEARNING_RATES},
                seeds=5,
            ),
        },
    )
)

# -- DBN-F4: group size, SGD with batch 256 -------------------------------------------------------
_F4 = {
    "task": MLP_METHOD,
    "method": "dbn-zca",
    "depth": None,
    "group_size": 16,
    "dbn": {},
    "model": {"name": "mlp", "in_features": 64, "hidden": [128] * 5, "act": "relu"},
    "data": {"name": "digits", "variant": "flat"},
    "train": {**_TRAIN, "epochs": 30, "batch_size": 256, "lr": 1.0, "eval_every": 10},
}

register(
    Experiment(
        id="dbn.f4.group-size",
        artifact="DBN-F4",
        title="The group size of DBN: a 6-layer MLP (5 × 128) under SGD with batch 256",
        description=(
            "A 6-layer MLP (5 hidden layers of 128, ReLU) with DBN (ZCA) after every hidden"
            " linear layer, groups of k_G contiguous units (k_G = 1 is BatchNorm, 128 whitens"
            " each layer whole), trained by SGD (batch 256, no momentum), for each group size"
            " of the paper's Fig. 4a. The records hold the training loss and the training wall"
            " time per epoch. Learning rate 1 (the released script's for every group size)."
            " `small`: the embedded digits (5 steps per epoch), 30 epochs, 3 seeds; `full`:"
            " MNIST as the stand-in for PIE (which cannot be downloaded; its 11,554 face images"
            " would give 45 steps per epoch), 20 epochs (about the 4,500 steps of the released"
            " script's 100 PIE epochs), 5 seeds."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(
                    _F4, {"model": {"hidden": [32] * 2}, "train": {"epochs": 2, "batch_size": 128}}
                ),
                grid={"group_size": (1, 8, 32)},
                seeds=1,
            ),
            "small": ScaleSpec(config=_F4, grid={"group_size": F4_GROUP_SIZES}, seeds=3),
            "full": ScaleSpec(
                config=deep_merge(
                    _F4,
                    {
                        "model": {"in_features": 784},
                        "data": MNIST_FLAT,
                        "train": {"epochs": 20, "eval_every": 1},
                    },
                ),
                grid={"group_size": F4_GROUP_SIZES},
                seeds=5,
            ),
        },
    )
)
