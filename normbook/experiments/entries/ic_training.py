"""Entries of the IC training chapters (``book/ic/``): the residual units of Table 1 and their
curves (IC-T1, IC-F4), the drop probability as a knob with the train/test variance shift it sets
up (IC-T1 ablation, Li et al. 2019), and ImageNet ResNet-50 (IC-F5).

Every entry runs the ``ic-units`` task (:mod:`normbook.experiments.tasks_ic_training`): one knob,
``unit``, picks the classic unit (BN, no dropout) or an IC unit (IC layers with ``drop_prob``).
``small`` trains narrow ResNets on the 8×8 digits with the paper's optimizer and the shape of its
schedule (Adam 1e-3, /10 at 40 %, 60 % and 80 % of the epochs); ``full`` is the paper's recipe
(PAPERS.md IC).
"""

from __future__ import annotations

import normbook.experiments.tasks_ic_training  # noqa: F401  (registers the task and measures)
from normbook.experiments.registry import register
from normbook.experiments.spec import Experiment, Reported, ScaleSpec, deep_merge
from normbook.experiments.tasks_ic_training import IC_UNITS_TASK, UNITS

PAPER_DROP = 0.05  # "The dropout rate for all experiments is set as 0.05" (IC Sec. 4.2)
DROP_PROBS = (0.0, 0.03, 0.05, 0.1, 0.2)  # 0.03: a practitioner's best (PAPERS.md IC)
TABLE1_SOURCE = "IC Table 1 (test accuracy at the end of training)"
# IC Table 1: (model depth, bottleneck) -> unit -> (CIFAR-10, CIFAR-100) test accuracy
TABLE1: dict[tuple[int, bool], dict[str, tuple[float, float]]] = {
    (110, False): {
        "relu-ic-conv": (0.9361, 0.725),
        "ic-conv-relu": (0.9352, 0.7165),
        "conv-relu-ic": (0.9408, 0.7174),
        "baseline": (0.9292, 0.6893),
    },
    (164, False): {
        "relu-ic-conv": (0.9395, 0.7224),
        "ic-conv-relu": (0.9366, 0.7273),
        "conv-relu-ic": (0.9411, 0.7237),
        "baseline": (0.9339, 0.6981),
    },
    (110, True): {
        "relu-ic-conv": (0.9448, 0.7563),
        "ic-conv-relu": (0.9425, 0.7532),
        "conv-relu-ic": (0.9433, 0.7482),
        "baseline": (0.9333, 0.7387),
    },
    (164, True): {
        "relu-ic-conv": (0.9445, 0.758),
        "ic-conv-relu": (0.9424, 0.7616),
        "conv-relu-ic": (0.9453, 0.7548),
        "baseline": (0.9355, 0.7465),
    },
}

# -- reduced: narrow ResNets on the 8×8 digits ----------------------------------------------------
_DIGITS = {
    "task": IC_UNITS_TASK,
    "unit": "relu-ic-conv",
    "drop_prob": PAPER_DROP,
    "model": {
        "name": "resnet_cifar",
        "depth": 8,
        "bottleneck": False,
        "widths": [16, 32, 32],
        "in_channels": 1,
    },
    "data": {"name": "digits", "variant": "8x8"},
    "train": {
        "epochs": 15,
        "batch_size": 64,
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "schedule": "multistep",
        "milestones": [6, 9, 12],  # the paper's 80/120/160 of 200 epochs, scaled to 15
        "gamma": 0.1,
        "augment": True,
    },
}
_SMOKE = {"model": {"widths": [4, 8, 8]}, "train": {"epochs": 3, "milestones": [2]}}

# -- full: the paper's CIFAR recipe ---------------------------------------------------------------
_CIFAR = {
    "task": IC_UNITS_TASK,
    "unit": "relu-ic-conv",
    "drop_prob": PAPER_DROP,
    "model": {"name": "resnet_cifar", "depth": 110, "bottleneck": False, "init": "he"},
    "data": {"name": "cifar10"},  # 4-pixel shift + horizontal flip (He et al. 2016a)
    "train": {
        "epochs": 200,
        "batch_size": 64,
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "schedule": "multistep",
        "milestones": [80, 120, 160],
        "gamma": 0.1,
        "augment": True,
    },
}

register(
    Experiment(
        id="ic.t1.units",
        artifact="IC-T1",
        title="IC residual units ①②③ vs the classic unit: test accuracy and its curves (Table 1, Fig. 4)",
        description=(
            "ResNets whose residual units place the IC layer (BatchNorm + Dropout, drop 0.05) as"
            " ① ReLU-IC-Conv, ② IC-Conv-ReLU or ③ Conv-ReLU-IC, beside the classic Conv-BN-ReLU"
            " unit (IC-F3; last-unit rule and stem as in resnet_cifar's docstring). `full`: the"
            " paper's Table 1, ResNet-110/164 and ResNet-B-110/164 on CIFAR-10/100, Adam lr 1e-3"
            " /10 at 80/120/160, 200 epochs, batch 64, He init, three seeds (the per-epoch test"
            " accuracy of these runs is Fig. 4). `small`: a depth-8 ResNet with widths 16/32/32 on"
            " the 8×8 digits, 15 epochs with the schedule's shape, three seeds."
        ),
        paper=tuple(
            Reported(
                metric="test_acc_pct",
                value=round(100 * accuracy, 2),
                unit="%",
                meaning=f"{'ResNet-B' if bottleneck else 'ResNet'}-{depth}, {unit}, {dataset}",
                source=TABLE1_SOURCE,
                point={
                    "unit": unit,
                    "data.name": dataset,
                    "model.depth": depth,
                    "model.bottleneck": bottleneck,
                },
            )
            for (depth, bottleneck), rows in TABLE1.items()
            for unit, accuracies in rows.items()
            for dataset, accuracy in zip(("cifar10", "cifar100"), accuracies, strict=True)
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_DIGITS, _SMOKE),
                grid={
                    "unit": UNITS,
                    "data.name": ("digits",),
                    "model.depth": (8,),
                    "model.bottleneck": (False,),
                },
                seeds=1,
            ),
            "small": ScaleSpec(
                config=_DIGITS,
                grid={
                    "unit": UNITS,
                    "data.name": ("digits",),
                    "model.depth": (8,),
                    "model.bottleneck": (False,),
                },
                seeds=3,
            ),
            "full": ScaleSpec(
                config=_CIFAR,
                grid={
                    "unit": UNITS,
                    "data.name": ("cifar10", "cifar100"),
                    "model.depth": (110, 164),
                    "model.bottleneck": (False, True),
                },
                seeds=3,
            ),
        },
    )
)

# -- the drop probability as a knob, with the variance shift it sets up ----------------------------
_SHIFT = {"variance_shift": {"samples": 512, "batch_size": 64, "every": 3, "seed": 0}}

register(
    Experiment(
        id="ic.t1.drop-prob",
        artifact="IC-T1",
        title="The drop probability of the IC layer: accuracy, variance shift and BN recalibration",
        description=(
            "Unit ① (ReLU-IC-Conv) at drop probabilities 0 (the IC layer is then a plain BN"
            " before the conv), 0.03, 0.05 (the paper's), 0.1 and 0.2: per-epoch test accuracy"
            " and, every few epochs, the train/test variance shift at the input of every IC"
            " layer's BN and the test accuracy after re-estimating the BN statistics on the"
            " training set with dropout off (Li et al. 2019). `small`: the digits ResNet of"
            " ic.t1.units; `full`: ResNet-110 on CIFAR-100 with the paper's recipe."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(
                    _DIGITS,
                    {**_SMOKE, "measure": {"variance_shift": {"samples": 128, "every": 1}}},
                ),
                grid={"drop_prob": (0.05, 0.2)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=deep_merge(_DIGITS, {"measure": _SHIFT}),
                grid={"drop_prob": DROP_PROBS},
                seeds=3,
            ),
            "full": ScaleSpec(
                config=deep_merge(
                    _CIFAR,
                    {
                        "data": {"name": "cifar100"},
                        "measure": {"variance_shift": {"samples": 2048, "every": 20}},
                    },
                ),
                grid={"drop_prob": DROP_PROBS},
                seeds=3,
            ),
        },
    )
)

# -- ImageNet ResNet-50 (IC-F5) -------------------------------------------------------------------
_IMAGENET = {
    "task": IC_UNITS_TASK,
    "unit": "baseline",
    "drop_prob": PAPER_DROP,
    "model": {"name": "resnet_imagenet", "depth": 50, "stem": "imagenet", "init": "he"},
    "data": {"name": "imagenet"},  # random-resized crop 224 + flip; eval: resize 256, center 224
    "train": {
        "epochs": 90,
        "batch_size": 256,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "schedule": "step",
        "step_size": 30,
        "gamma": 0.1,
        "augment": True,
        "eval_batch_size": 256,
    },
    "measure": {"topk": {"ks": [1, 5], "split": "test", "batch_size": 256}},
    "ddp": True,  # one job of nodes × GPUs under torchrun; the batch of 256 is global
}
# reduced analogue: the ResNet-50 layout ([3, 4, 6, 3] bottlenecks) at 1/16 width with the CIFAR
# stem on the 8×8 digits, the paper's SGD recipe with the step schedule scaled to 9 epochs
_IMAGENET_DIGITS = deep_merge(
    _IMAGENET,
    {
        "model": {"stem": "cifar", "width_multiplier": 0.0625, "in_channels": 1},
        "data": {"name": "digits", "variant": "8x8"},
        "train": {"epochs": 9, "batch_size": 64, "step_size": 3, "eval_batch_size": 1024},
        "measure": {"topk": {"batch_size": 1024}},
        "ddp": False,
    },
)
_IMAGENET_SMOKE = deep_merge(
    _IMAGENET_DIGITS,
    {
        "model": {"depth": 18, "width_multiplier": 0.0625},
        "data": {"subset": 512},
        "train": {"epochs": 2, "step_size": 1},
    },
)
_IC = {"unit": "relu-ic-conv"}

register(
    Experiment(
        id="ic.f5.resnet50-baseline",
        artifact="IC-F5",
        title="ImageNet ResNet-50, classic unit (the baseline of Fig. 5)",
        description=(
            "torchvision-layout ResNet-50 with BN after every conv, SGD lr 0.1 (momentum 0.9,"
            " weight decay 1e-4) /10 every 30 epochs, 90 epochs, global batch 256; top-1 and top-5"
            " (the built-in measurement topk) validation accuracy per epoch. `small`: the same"
            " layout at 1/16 width with the CIFAR stem on the 8×8 digits, 9 epochs /10 every 3."
        ),
        scales={
            "smoke": ScaleSpec(config=_IMAGENET_SMOKE, seeds=1),
            "small": ScaleSpec(config=_IMAGENET_DIGITS, seeds=2),
            "full": ScaleSpec(config=_IMAGENET, seeds=1),
        },
    )
)

register(
    Experiment(
        id="ic.f5.resnet50-ic",
        artifact="IC-F5",
        title="ImageNet ResNet-50 with ReLU-IC-Conv units, drop 0.05 and 0.1 (Fig. 5)",
        description=(
            "ResNet-50 of ic.f5.resnet50-baseline with unit ① (ReLU-IC-Conv, final ReLU + IC"
            " before pooling) at drop probabilities 0.05 and 0.1, the paper's two settings;"
            " same recipe and measurements."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_IMAGENET_SMOKE, _IC), grid={"drop_prob": (0.1,)}, seeds=1
            ),
            "small": ScaleSpec(
                config=deep_merge(_IMAGENET_DIGITS, _IC), grid={"drop_prob": (0.05, 0.1)}, seeds=2
            ),
            "full": ScaleSpec(
                config=deep_merge(_IMAGENET, _IC), grid={"drop_prob": (0.05, 0.1)}, seeds=1
            ),
        },
    )
)
