"""Entries of the NormProp training chapters (``book/normprop/inside-a-resnet``, ``tables-2-4``):
Shang, Chiu & Sohn 2017, "Exploring Normalization in Deep Residual Networks with Concatenated
Rectified Linear Units" (PAPERS.md NP-F2, NP-T1, NP-T2, NP-T3, NP-T4).

The paper's recipe (PAPERS.md NP): fb.resnet.torch's defaults (Gross & Wilber 2016) except the
initial learning rate, "0.1, but we decrease it by half until training is feasible"; the median of
5 runs; MSR init with BN, Xavier otherwise (``normbook.models.policy``'s defaults per norm); for
NormProp, BN on the projection shortcut where the spatial size drops (the policy's
``shortcut_norm``). fb.resnet.torch on CIFAR: 164 epochs, batch 128, SGD with Nesterov momentum
0.9, weight decay 1e-4, lr /10 after epochs 80 and 121, 4-pixel shifts and flips. On ImageNet the
paper uses batch 128 for 150 epochs (lr /10 every 30 epochs, fb.resnet.torch's step). Every entry
runs the task ``normprop.halve-lr-until-trainable``, which applies the learning-rate rule and
records every attempt; an attempt counts as not trainable when the engine records divergence or
its final training accuracy stays below ``min_train_acc`` (our reading of "feasible": a run stuck
near chance is not).

`small` and `smoke` are the same grids on the embedded 8×8 digits with narrow nets on the CPU
(`small`: 14-layer ResNets of widths 4-8-16 for 6 epochs; 26 layers for 10 epochs for NP-F2, whose
plain nets need them to train at all; NP-T4: the ImageNet nets at 1/16 width with the CIFAR stem,
one seed, a check of the pipeline rather than a result); `full` is the paper's setting.
"""

from __future__ import annotations

import normbook.experiments.tasks_normprop_training  # noqa: F401  (registers task and measures)
from normbook.experiments.registry import register
from normbook.experiments.spec import Experiment, Reported, ScaleSpec, deep_merge
from normbook.experiments.tasks_normprop_training import (
    HALVING_TASK,
    LAST_ACTIVATION,
    PAPER_INITIAL_LR,
    RESIDUAL_DELTA,
)

MEDIAN5 = "test error, median of 5 runs (ResNet-110)"
LR_RULE = {"factor": 0.5, "max_attempts": 6, "min_train_acc": 0.2}

# -- base configurations ---------------------------------------------------------------------------
# fb.resnet.torch's CIFAR recipe; milestones are 0-based epochs (fb: lr·0.1 from epoch 81 and 122)
_CIFAR_TRAIN = {
    "epochs": 164,
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": PAPER_INITIAL_LR,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 1e-4,
    "schedule": "multistep",
    "milestones": [80, 121],
    "gamma": 0.1,
    "augment": True,
}
_CIFAR_FULL = {
    "task": HALVING_TASK,
    "model": {
        "name": "resnet_cifar",
        "depth": 110,
        "widths": [16, 32, 64],
        "in_channels": 3,
        "norm": "bn",
        "act": "relu",
    },
    "data": {"name": "cifar10"},
    "train": _CIFAR_TRAIN,
    "lr_rule": LR_RULE,
    "measure": {LAST_ACTIVATION: {"probe": 500}},
}
# the same recipe scaled down: 8×8 digits (1,347 training images), a narrow 14-layer ResNet
_DIGITS_SMALL = deep_merge(
    _CIFAR_FULL,
    {
        "model": {"depth": 14, "widths": [4, 8, 16], "in_channels": 1},
        "data": {"name": "digits", "variant": "8x8"},
        "train": {"epochs": 6, "batch_size": 64, "milestones": [3, 5]},
        "measure": {LAST_ACTIVATION: {"probe": 256}},
    },
)
_DIGITS_SMOKE = deep_merge(
    _DIGITS_SMALL,
    {
        "model": {"depth": 8, "widths": [4, 4, 8]},
        "train": {"epochs": 2, "milestones": [1]},
        "lr_rule": {"max_attempts": 2},
        "measure": {LAST_ACTIVATION: {"probe": 64}},
    },
)

# -- NP-F2 and NP-T1: Δ per residual block, last activation (ResNet-110, CIFAR-100) ----------------
F2_GRID = {"model.norm": ("none", "bn"), "model.act": ("relu", "crelu")}
_F2_MEASURE = {"measure": {RESIDUAL_DELTA: {"probe": 256}}}
_F2_FULL = deep_merge(
    _CIFAR_FULL, {"data": {"name": "cifar100"}, "measure": {RESIDUAL_DELTA: {"probe": 500}}}
)
# deeper and longer than the other `small` grids: the plain nets need the epochs to train at all
_F2_SMALL = deep_merge(
    _DIGITS_SMALL,
    {"model": {"depth": 26}, "train": {"epochs": 10, "milestones": [5, 8]}, **_F2_MEASURE},
)
_F2_SMOKE = deep_merge(_DIGITS_SMOKE, {"measure": {RESIDUAL_DELTA: {"probe": 64}}})

TABLE1_SOURCE = "NP Table 1 (ResNet-110, CIFAR-100: last activation before the classifier)"
# (norm, act) -> (mean, std over entries, non-zero ratio); the paper's NormProp rows are declared
# on the Table 2 entries, which train those models
TABLE1 = {
    ("none", "relu"): (30.81, 36.69, 0.14),
    ("bn", "relu"): (3.77, 4.43, 0.51),
    ("none", "crelu"): (24.53, 26.02, 0.50),
    ("bn", "crelu"): (1.94, 1.99, 0.50),
}


def _table1(point: dict, mean: float, std: float, nzr: float, note: str = "") -> list[Reported]:
    return [
        Reported(
            metric="last_act_mean",
            value=mean,
            std=std,
            unit="activation units",
            meaning="mean ± std over all entries of the last activation (after the last ReLU)"
            + note,
            source=TABLE1_SOURCE,
            point=point,
        ),
        Reported(
            metric="last_act_nzr",
            value=nzr,
            unit="fraction",
            meaning="share of non-zero entries of the last activation" + note,
            source=TABLE1_SOURCE,
            point=point,
        ),
    ]


register(
    Experiment(
        id="normprop.f2.residual-delta",
        artifact="NP-F2",
        title="Δ per residual block and the last activation: plain/BN × ReLU/CReLU ResNets",
        description=(
            "ResNet-110 on CIFAR-100 without normalization (Xavier init, biases) or with BN (MSR"
            " init), with ReLU or with CReLU inside every residual branch, trained with the"
            " paper's recipe. After every epoch, on a fixed probe batch of test images in eval"
            " mode: Δ of each of the 54 residual blocks (mean over positions of the L2 norm over"
            " channels of x_l − x_{l+1}; NP-F2) and the mean, std and non-zero ratio of the last"
            " activation (NP-T1). `small`: a 26-layer ResNet (12 blocks) of widths 4-8-16 on 8×8 digits."
        ),
        scales={
            "smoke": ScaleSpec(config=_F2_SMOKE, grid=F2_GRID, seeds=1),
            "small": ScaleSpec(config=_F2_SMALL, grid=F2_GRID, seeds=3),
            "full": ScaleSpec(config=_F2_FULL, grid=F2_GRID, seeds=5),
        },
        paper=tuple(
            reported
            for (norm, act), values in TABLE1.items()
            for reported in _table1({"model.norm": norm, "model.act": act}, *values)
        ),
    )
)

# -- NP-T2: ResNet-110, CIFAR-10/100 errors ----------------------------------------------------------
T2_NORMS = {
    "relu": ("none", "none-nobias", "normprop1", "normprop2", "bn"),
    # the package refuses NormProp (variant 1) with CReLU; the paper could not train it either
    "crelu": ("none", "none-nobias", "normprop2", "bn"),
}
TABLE2 = {  # (act, norm) -> (CIFAR-10, CIFAR-100) test error %
    ("relu", "none"): (7.78, 36.10),
    ("relu", "none-nobias"): (12.16, 40.00),
    ("relu", "normprop1"): (11.60, 37.60),
    ("relu", "normprop2"): (7.46, 31.71),
    ("relu", "bn"): (6.35, 27.46),
    ("relu", "bn-double"): (7.27, 27.33),
    ("crelu", "none"): (6.86, 28.24),
    ("crelu", "none-nobias"): (7.17, 28.71),
    ("crelu", "normprop2"): (7.22, 29.29),
    ("crelu", "bn"): (5.72, 25.89),
}
TABLE2_SOURCE = "NP Table 2 (ResNet-110, test error)"
DATASETS = ("cifar10", "cifar100")
# the paper's Table 1 rows for NormProp (CIFAR-100): for CReLU, the only NormProp the paper could
# train is NormProp2 ("the training significantly breaks down with NormProp"): our reading
TABLE1_NORMPROP = {
    "relu": ("normprop1", 28.68, 33.58, 0.21),
    "crelu": ("normprop2", 10.41, 10.28, 0.50),
}


def _table2(act: str, norm: str, with_norm_knob: bool = True) -> list[Reported]:
    out = []
    for dataset, value in zip(DATASETS, TABLE2[(act, norm)], strict=True):
        point = {"data.name": dataset, **({"model.norm": norm} if with_norm_knob else {})}
        out.append(
            Reported(
                metric="test_error_pct",
                value=value,
                unit="%",
                meaning=MEDIAN5,
                source=f"{TABLE2_SOURCE}, {act}, {norm}",
                point=point,
            )
        )
    return out


def _t2_scales(act: str, grid_norms: tuple[str, ...], change: dict | None = None) -> dict:
    change = change or {}
    grid_full = {"data.name": DATASETS, **({"model.norm": grid_norms} if grid_norms else {})}
    grid_small = {"data.name": ("digits",), **({"model.norm": grid_norms} if grid_norms else {})}
    act_change = {"model": {"act": act}}
    return {
        "smoke": ScaleSpec(
            config=deep_merge(deep_merge(_DIGITS_SMOKE, act_change), change.get("smoke", {})),
            grid=grid_small,
            seeds=1,
        ),
        "small": ScaleSpec(
            config=deep_merge(deep_merge(_DIGITS_SMALL, act_change), change.get("small", {})),
            grid=grid_small,
            seeds=3,
        ),
        "full": ScaleSpec(
            config=deep_merge(deep_merge(_CIFAR_FULL, act_change), change.get("full", {})),
            grid=grid_full,
            seeds=5,
        ),
    }


for _act in ("relu", "crelu"):
    _np_norm, *_np_values = TABLE1_NORMPROP[_act]
    _note = (
        "" if _act == "relu" else " (the paper's 'NormProp' CReLU row; NormProp2 is our reading)"
    )
    register(
        Experiment(
            id=f"normprop.t2.{_act}",
            artifact="NP-T2",
            title=f"ResNet-110 with {_act.upper()}: plain, no bias, NormProp(2), BN on CIFAR-10/100",
            description=(
                f"ResNet-110 with {_act.upper()}"
                + (" inside every residual branch" if _act == "crelu" else "")
                + " and each normalization of the paper's Table 2: none (with biases), none"
                " without biases, "
                + ("NormProp, " if _act == "relu" else "")
                + "NormProp2 (= WeightNorm + ReLU) and BN, on CIFAR-10 and CIFAR-100, with the"
                " learning-rate rule. The last activation's statistics (NP-T1) are recorded too:"
                " the paper's NormProp rows of Table 1 are these CIFAR-100 models."
            ),
            scales=_t2_scales(_act, T2_NORMS[_act]),
            paper=tuple(
                [r for norm in T2_NORMS[_act] for r in _table2(_act, norm)]
                + _table1({"data.name": "cifar100", "model.norm": _np_norm}, *_np_values, _note)
            ),
        )
    )

register(
    Experiment(
        id="normprop.t2.relu-bn-double",
        artifact="NP-T2",
        title="ResNet-110, ReLU, BN with doubled filters (32-64-128) on CIFAR-10/100",
        description=(
            "The BN ReLU ResNet-110 of Table 2 with every stage twice as wide: CReLU also doubles"
            " the input of every second conv, and the paper shows that doubling the filters of a"
            " ReLU net under the same regularization does not give CReLU's gain."
        ),
        scales=_t2_scales(
            "relu",
            (),
            {
                "smoke": {"model": {"widths": [8, 8, 16]}},
                "small": {"model": {"widths": [8, 16, 32]}},
                "full": {"model": {"widths": [32, 64, 128]}},
            },
        ),
        paper=tuple(_table2("relu", "bn-double", with_norm_knob=False)),
    )
)

# -- NP-T3: size-matched ReLU vs CReLU with BN -----------------------------------------------------
T3_GRID = {"model.act": ("relu", "crelu"), "model.width_multiplier": (1.0, 0.75)}
TABLE3 = {"cifar10": (6.35, 5.87), "cifar100": (22.50, 22.06)}  # ReLU ×1, CReLU ×0.75
TABLE3_SOURCE = "NP Table 3 (BN ResNet-110, ReLU vs CReLU of similar size)"
T3_BASE = {  # (widths, weight decay) of the ReLU net per dataset (the CReLU net is ×0.75)
    "cifar10": ([16, 32, 64], 1e-4),
    "cifar100": ([32, 64, 128], 5e-4),
}


def _table3(dataset: str) -> list[Reported]:
    relu, crelu = TABLE3[dataset]
    widths = "-".join(str(w) for w in T3_BASE[dataset][0])
    return [
        Reported(
            metric="test_error_pct",
            value=value,
            unit="%",
            meaning=f"{MEDIAN5}; {act}, stage widths {label}",
            source=f"{TABLE3_SOURCE}, {dataset}",
            point={"model.act": act, "model.width_multiplier": multiplier},
        )
        for act, multiplier, value, label in (
            ("relu", 1.0, relu, widths),
            ("crelu", 0.75, crelu, "-".join(str(round(w * 0.75)) for w in T3_BASE[dataset][0])),
        )
    ]


for _dataset, (_widths, _wd) in T3_BASE.items():
    _change = {
        "model": {"norm": "bn", "widths": _widths, "width_multiplier": 1.0},
        "train": {"weight_decay": _wd},
    }
    _small = {
        "model": {"norm": "bn", "widths": [8, 8, 16], "width_multiplier": 1.0},
        "train": {"weight_decay": _wd},
    }
    register(
        Experiment(
            id=f"normprop.t3.{_dataset}",
            artifact="NP-T3",
            title=f"BN ResNet-110 on {_dataset.upper()}: ReLU vs CReLU at full and ×0.75 width",
            description=(
                "CReLU doubles the input channels of the second conv of every residual branch"
                " (about 1.5× the parameters). Table 3 compares a ReLU net with a CReLU net whose"
                " stage widths are ×0.75 (about 0.84× the ReLU net's parameters): a grid of"
                " activation × width multiplier whose two diagonal points are the paper's rows"
                f" and whose others are controls. Stage widths {_widths}, weight decay {_wd:g}."
            ),
            scales={
                "smoke": ScaleSpec(config=deep_merge(_DIGITS_SMOKE, _small), grid=T3_GRID, seeds=1),
                "small": ScaleSpec(config=deep_merge(_DIGITS_SMALL, _small), grid=T3_GRID, seeds=3),
                "full": ScaleSpec(
                    config=deep_merge(
                        deep_merge(_CIFAR_FULL, {"data": {"name": _dataset}}), _change
                    ),
                    grid=T3_GRID,
                    seeds=5,
                ),
            },
            paper=tuple(_table3(_dataset)),
        )
    )

# -- NP-T4: ImageNet ResNet-34/50/101 ------------------------------------------------------------------
TABLE4_SOURCE = "NP Table 4 (ImageNet validation error)"
TABLE4_FROM_GROSS = " (‡ the paper takes this row from Gross & Wilber 2016)"
# (depth, act, norm) -> (top-1, top-5, 10-crop top-1, 10-crop top-5) error %
TABLE4 = {
    (34, "relu", "none"): (29.92, 10.84, 27.15, 9.16),
    (34, "relu", "normprop2"): (29.23, 10.29, 27.46, 9.07),
    (34, "relu", "normprop3"): (29.72, 10.54, 27.38, 9.16),
    (34, "relu", "bn"): (26.73, 8.74, 24.76, 7.35),
    (34, "crelu", "none"): (28.85, 10.28, 26.59, 8.90),
    (34, "crelu", "normprop2"): (29.31, 10.29, 27.57, 9.15),
    (34, "crelu", "normprop3"): (28.28, 9.84, 26.26, 8.73),
    (34, "crelu", "bn"): (25.62, 8.28, 23.72, 7.15),
    (50, "relu", "none"): (31.48, 12.27, 29.31, 10.54),
    (50, "relu", "normprop2"): (29.75, 10.80, 28.16, 9.79),
    (50, "relu", "normprop3"): (28.08, 9.74, 26.01, 8.38),
    (50, "relu", "bn"): (24.01, 7.02, 22.24, 6.08),
    (50, "crelu", "none"): (28.00, 9.58, 26.51, 8.65),
    (50, "crelu", "normprop2"): (29.06, 10.31, 27.58, 9.35),
    (50, "crelu", "normprop3"): (26.12, 8.51, 24.27, 7.40),
    (50, "crelu", "bn"): (23.03, 6.67, 21.59, 5.69),
    (101, "relu", "bn"): (22.44, 6.21, 21.08, 5.35),
    (101, "crelu", "bn"): (21.89, 5.92, 20.63, 5.35),
}
TABLE4_METRICS = (
    ("test_error_pct", "top-1 error, single centre crop"),
    ("test_top5_error_pct", "top-5 error, single centre crop"),
    ("test_error_10crop_pct", "top-1 error, 10 crops (our pipeline evaluates one crop)"),
    ("test_top5_error_10crop_pct", "top-5 error, 10 crops (our pipeline evaluates one crop)"),
)
T4_NORMS = {
    34: ("none", "normprop2", "normprop3", "bn"),
    50: ("none", "normprop2", "normprop3", "bn"),
    101: ("bn",),
}
_IMAGENET_FULL = {
    "task": HALVING_TASK,
    "model": {"name": "resnet_imagenet", "depth": 34, "norm": "bn", "act": "relu"},
    "data": {"name": "imagenet"},
    "train": {
        **_CIFAR_TRAIN,
        "epochs": 150,
        "batch_size": 128,
        "schedule": "step",
        "milestones": [],
        "step_size": 30,
    },
    "lr_rule": {**LR_RULE, "min_train_acc": 0.05},
    "measure": {"topk": {"ks": [1, 5], "split": "test", "batch_size": 500}},
}
# a 1/16-width ImageNet ResNet with the CIFAR stem on 8×8 digits: the pipeline, not the result
_IMAGENET_SMALL = deep_merge(
    _IMAGENET_FULL,
    {
        "model": {"stem": "cifar", "width_multiplier": 0.0625, "in_channels": 1},
        "data": {"name": "digits", "variant": "8x8"},
        "train": {"epochs": 4, "batch_size": 64, "step_size": 3},
        "lr_rule": {"min_train_acc": 0.2},
        "measure": {"topk": {"batch_size": 1024}},
    },
)
_IMAGENET_SMOKE = deep_merge(
    _IMAGENET_SMALL, {"train": {"epochs": 1, "step_size": 1}, "lr_rule": {"max_attempts": 2}}
)


def _table4(depth: int) -> list[Reported]:
    out = []
    for (d, act, norm), values in TABLE4.items():
        if d != depth:
            continue
        note = TABLE4_FROM_GROSS if (act, norm) == ("relu", "bn") else ""
        for (metric, meaning), value in zip(TABLE4_METRICS, values, strict=True):
            out.append(
                Reported(
                    metric=metric,
                    value=value,
                    unit="%",
                    meaning=meaning + note,
                    source=f"{TABLE4_SOURCE}, ResNet-{depth}",
                    point={"model.act": act, "model.norm": norm},
                )
            )
    return out


for _depth, _norms in T4_NORMS.items():
    _grid = {"model.act": ("relu", "crelu"), "model.norm": _norms}
    _model = {"model": {"depth": _depth}}
    register(
        Experiment(
            id=f"normprop.t4.resnet{_depth}",
            artifact="NP-T4",
            title=f"ImageNet ResNet-{_depth}: ReLU/CReLU × " + "/".join(_norms),
            description=(
                f"ResNet-{_depth} ({'bottleneck' if _depth >= 50 else 'basic'} blocks; CReLU after"
                " the first conv" + (" two convs" if _depth >= 50 else "") + " of every branch,"
                " Fig. 1) on ImageNet with the paper's batch 128 for 150 epochs (lr /10 every 30),"
                " plain (Xavier), NormProp2, NormProp3 (γ fixed to 1/1.21) or BN (MSR), with the"
                " learning-rate rule; top-1 and top-5 error of the centre crop. The paper's"
                " 10-crop numbers are declared for completeness; our pipeline evaluates one crop."
                " `small`: the same net at 1/16 width with the CIFAR stem on 8×8 digits."
            ),
            scales={
                "smoke": ScaleSpec(config=deep_merge(_IMAGENET_SMOKE, _model), grid=_grid, seeds=1),
                "small": ScaleSpec(config=deep_merge(_IMAGENET_SMALL, _model), grid=_grid, seeds=1),
                "full": ScaleSpec(config=deep_merge(_IMAGENET_FULL, _model), grid=_grid, seeds=1),
            },
            paper=tuple(_table4(_depth)),
        )
    )
