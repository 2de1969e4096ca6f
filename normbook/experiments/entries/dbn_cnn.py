"""Entries of the DBN part's CNN chapters: VGG-A BN vs DBN (DBN-F5) and S-plain by depth and
learning rate (DBN-F6) in ``book/dbn/dbn-in-cnns``; ResNets, wide ResNets and ImageNet ResNets
with one DBN before the first residual block (DBN-T1, DBN-T2, DBN-T3) in
``book/dbn/dbn-l1-on-resnets``.

One entry per curve pair or table row, so that ``group_size`` appears only where there is a DBN
(BatchNorm takes no such argument) and each paper row carries its own numbers. ``full`` is the
paper's recipe, read from the paper and the official Torch scripts (princeton-vl/DecorrelatedBN,
``execute_Conv_*.sh`` / ``exp_Conv_*.lua``); ``small`` and ``smoke`` are narrow nets on the embedded
digits, on CPU. The digits variants: VGG-A needs 32×32 inputs (its five 2×2 max-pools must leave
1×1 before the FC-512 head), and the 32×32 digits carry the gray image in three channels; S-plain
and the ResNets run on 8×8 digits with one input channel.
"""

from __future__ import annotations

from typing import Any

from normbook.experiments.recipes import HE_CIFAR_TRAIN
from normbook.experiments.registry import register
from normbook.experiments.spec import Experiment, Reported, ScaleSpec, deep_merge

NORMS_F5 = ("bn", "dbn")
DBN_GROUP = 16  # k_G = 16 for VGG-A, S-plain (Fig. 6a) and WRN (PAPERS.md DBN recipes)


def _with_group(config: dict[str, Any], norm: str, group: int) -> dict[str, Any]:
    """``config`` with ``model.norm = norm`` and, for a DBN norm, ``model.group_size = group``."""
    model = {"norm": norm, **({"group_size": group} if norm.startswith("dbn") else {})}
    return deep_merge(config, {"model": model})


# -- DBN-F5: VGG-A, BN vs DBN under four configurations -------------------------------------------
F5_SOURCE = "DBN Sec. 4.2.1 text (Fig. 5): absolute test-error reduction of DBN over BN, CIFAR-10"
# (name, title, changes to the recipe, the paper's reduction of the test error in points)
F5_PANELS: tuple[tuple[str, str, dict[str, Any], float], ...] = (
    ("sgd", "(a) SGD", {}, 0.61),
    # official exp_Conv_1vggA_2test.lua: Adam's optimState has no weight decay; lr 0.005
    (
        "adam",
        "(b) Adam",
        {"train": {"optimizer": "adam", "lr": 0.005, "weight_decay": 0.0}},
        1.34,
    ),
    ("elu", "(c) ELU", {"model": {"act": "elu"}}, 1.44),
    (
        "after-act",
        "(d) norm after the nonlinearity",
        {"model": {"norm_position": "after_act"}},
        0.38,
    ),
)
F5_PANEL_TITLES = {name: title for name, title, _, _ in F5_PANELS}

_VGG_FULL = {
    "task": "classify",
    "model": {
        "name": "vgg",
        "variant": "A",
        "act": "relu",
        "norm_position": "before_act",
        "width_multiplier": 1.0,
        "in_channels": 3,
    },
    # the official VGG-A script flips only (no crop); per-channel standardization
    "data": {"name": "cifar10", "shift": 0, "flip": True},
    "train": {
        "epochs": 80,
        "batch_size": 256,
        "optimizer": "sgd",
        "lr": 4.0,  # official execute_Conv_1vggA_2test_*.sh: -learningRate 4
        "momentum": 0.9,
        "weight_decay": 5e-4,
        # lr halves every 2000 iterations (lrD_k), continuously; 2000 iterations at 195 per
        # epoch are 10.3 epochs: halving every 10 epochs is the nearest epoch schedule
        "schedule": "halving",
        "step_size": 10,
    },
}
_VGG_SMALL = deep_merge(
    _VGG_FULL,
    {
        "model": {"width_multiplier": 0.125},
        "data": {"name": "digits", "variant": "32x32", "shift": 0, "flip": False},
        "train": {"epochs": 10, "batch_size": 64, "lr": 0.1, "step_size": 3, "augment": False},
    },
)
_VGG_SMOKE = deep_merge(
    _VGG_SMALL,
    {
        "model": {"width_multiplier": 0.0625},
        "data": {"subset": 512},
        "train": {"epochs": 2, "step_size": 1},
    },
)


def _f5_entry(panel: str, title: str, changes: dict[str, Any], reduction: float, norm: str):
    def scale(config: dict[str, Any], seeds: int) -> ScaleSpec:
        merged = deep_merge(config, changes)
        return ScaleSpec(config=_with_group(merged, norm, DBN_GROUP), seeds=seeds)

    paper = ()
    if norm == "dbn":
        paper = (
            Reported(
                metric="test_error_reduction_pct",
                value=reduction,
                unit="percentage points",
                meaning=f"BN's test error minus DBN-G16's, {title}",
                source=F5_SOURCE,
            ),
        )
    label = "BatchNorm" if norm == "bn" else "DBN (groups of 16)"
    return Experiment(
        id=f"dbn.f5.{panel}.{norm}",
        artifact="DBN-F5",
        title=f"VGG-A {title}, {label}: training and test accuracy per epoch",
        description=(
            f"VGG-A (8 convs, FC-512 head) with {label} after every conv and the FC layer, in"
            f" Fig. 5 configuration {title}. `full`: CIFAR-10, batch 256, SGD lr 4 momentum 0.9"
            " weight decay 5e-4 halving every 10 epochs (the official script halves every 2000"
            " iterations), 80 epochs, flips only; Adam: lr 0.005 without weight decay. `small`:"
            " VGG-A at 1/8 width on the 32×32 digits, 10 epochs, lr 0.1 (Adam 0.005) halving"
            " every 3 epochs, batch 64, no augmentation, 3 seeds."
        ),
        paper=paper,
        scales={
            "smoke": scale(_VGG_SMOKE, 1),
            "small": scale(_VGG_SMALL, 3),
            "full": scale(_VGG_FULL, 3),
        },
    )


for _panel, _title, _changes, _reduction in F5_PANELS:
    for _norm in NORMS_F5:
        register(_f5_entry(_panel, _title, _changes, _reduction, _norm))

# -- DBN-F6: S-plain, deeper and at a higher learning rate ----------------------------------------
F6_DEPTHS = (20, 32, 44)
F6_SMALL_DEPTHS = (8, 20, 32)  # CPU budget: per-layer overhead dominates at this size
_SPLAIN_FULL = {
    "task": "classify",
    "model": {"name": "splain", "depth": 20, "width": 48, "act": "relu", "in_channels": 3},
    "data": {"name": "cifar10"},  # 4-pixel shifts and flips (the official reflection crop)
    "train": {
        "epochs": 160,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "multistep",
        "milestones": [80, 120],
        "gamma": 0.2,
    },
}
# Fig. 6b, official exp_Conv_4Splain_2large.lua: width 42, groups of 14, lr 0.4, ×0.2 at
# 60/100/140/180, 200 epochs (depths 20/32/44 in execute_Conv_4Splain_2large.sh)
_HIGH_LR = {
    "model": {"width": 42},
    "train": {"epochs": 200, "lr": 0.4, "milestones": [60, 100, 140, 180]},
}
_SPLAIN_SMALL = deep_merge(
    _SPLAIN_FULL,
    {
        "model": {"width": 16, "in_channels": 1},
        "data": {"name": "digits", "variant": "8x8", "shift": 0},
        "train": {"epochs": 6, "milestones": [3, 5], "augment": False},
    },
)
_HIGH_LR_SMALL = {"model": {"width": 14}, "train": {"lr": 0.4}}
_SPLAIN_SMOKE = deep_merge(_SPLAIN_SMALL, {"model": {"width": 8}, "train": {"epochs": 2}})
F6_VARIANTS = {
    # name: (title, full changes, small changes, DBN group at full, at small)
    "deep": ("(a) going deeper: width 48, lr 0.1", {}, {}, DBN_GROUP, DBN_GROUP),
    "high-lr": ("(b) higher learning rate: width 42, lr 0.4", _HIGH_LR, _HIGH_LR_SMALL, 14, 14),
}

for _variant, (_title, _full, _small, _group_full, _group_small) in F6_VARIANTS.items():
    for _norm in NORMS_F5:
        _label = "BatchNorm" if _norm == "bn" else f"DBN (groups of {_group_full})"
        register(
            Experiment(
                id=f"dbn.f6.splain-{_variant}.{_norm}",
                artifact="DBN-F6",
                title=f"S-plain {_title}, {_label}: accuracy per epoch by depth",
                description=(
                    f"S-plain (the CIFAR ResNet skeleton without shortcuts, one width) with"
                    f" {_label} after every conv, at each depth; Fig. 6 {_title}. `full`:"
                    " CIFAR-10 with shifts and flips, batch 128, SGD momentum 0.9, weight decay"
                    " 5e-4, the official schedule. `small`: width 16 (14 at the higher rate) on"
                    " the 8×8 digits, depths 8/20/32, 6 epochs, ×0.2 at epochs 3 and"
                    " 5, 3 seeds."
                ),
                scales={
                    "smoke": ScaleSpec(
                        config=_with_group(
                            deep_merge(deep_merge(_SPLAIN_SMOKE, _small), {"model": {"width": 8}}),
                            _norm,
                            8,
                        ),
                        grid={"model.depth": (8,)},
                        seeds=1,
                    ),
                    "small": ScaleSpec(
                        config=_with_group(deep_merge(_SPLAIN_SMALL, _small), _norm, _group_small),
                        grid={"model.depth": F6_SMALL_DEPTHS},
                        seeds=3,
                    ),
                    "full": ScaleSpec(
                        config=_with_group(deep_merge(_SPLAIN_FULL, _full), _norm, _group_full),
                        grid={"model.depth": F6_DEPTHS},
                        seeds=3,
                    ),
                },
            )
        )

# -- DBN-T1: CIFAR ResNets, BN vs DBN-L1 vs DBN-scale-L1 ------------------------------------------
T1_SOURCE = "DBN Table 1 (CIFAR-10 test error, mean of 5 runs)"
HE_T1_SOURCE = "He et al. 2016, one run each, as quoted in DBN Table 1 ('Baseline*')"
T1_DEPTHS = (20, 32, 44, 56)
T1_ERRORS = {
    "bn": (7.94, 7.31, 7.17, 7.21),
    "dbn-l1": (7.94, 7.28, 6.87, 6.63),
    "dbn-scale-l1": (7.77, 6.94, 6.83, 6.49),
}
HE_T1_ERRORS = (8.75, 7.51, 7.17, 6.97)
T1_GROUP = 8  # official execute_Conv_2residual_old.sh: -m_perGroup 8
T1_LABELS = {"bn": "BatchNorm", "dbn-l1": "DBN-L1", "dbn-scale-l1": "DBN-scale-L1"}

_RESNET_FULL = {
    "task": "classify",
    "model": {"name": "resnet_cifar", "depth": 20, "act": "relu", "in_channels": 3},
    "data": {"name": "cifar10"},
    "train": HE_CIFAR_TRAIN,
}
_RESNET_SMALL = deep_merge(
    _RESNET_FULL,
    {
        "model": {"width_multiplier": 0.5, "in_channels": 1},
        "data": {"name": "digits", "variant": "8x8", "shift": 0},
        "train": {"epochs": 10, "milestones": [5, 8], "augment": False},
    },
)
_RESNET_SMOKE = deep_merge(_RESNET_SMALL, {"train": {"epochs": 2, "milestones": [1]}})

for _norm, _errors in T1_ERRORS.items():
    _paper = [
        Reported(
            metric="test_error_pct",
            value=e,
            unit="%",
            meaning=f"ResNet-{d} with {T1_LABELS[_norm]}, test error, mean of 5 runs",
            source=T1_SOURCE,
            point={"model.depth": d},
        )
        for d, e in zip(T1_DEPTHS, _errors, strict=True)
    ]
    if _norm == "bn":
        _paper += [
            Reported(
                metric="test_error_pct",
                value=e,
                unit="%",
                meaning=f"ResNet-{d}, test error reported by He et al. (one run)",
                source=HE_T1_SOURCE,
                point={"model.depth": d},
            )
            for d, e in zip(T1_DEPTHS, HE_T1_ERRORS, strict=True)
        ]
    register(
        Experiment(
            id=f"dbn.t1.resnet-cifar.{_norm}",
            artifact="DBN-T1",
            title=f"CIFAR ResNets with {T1_LABELS[_norm]}: test error by depth",
            description=(
                f"CIFAR ResNet-20/32/44/56 (basic blocks, projection shortcuts) with"
                f" {T1_LABELS[_norm]}"
                + (
                    ""
                    if _norm == "bn"
                    else " (the stem's norm, the only one before the first residual block, is a"
                    " DBN with groups of 8; every other norm stays BatchNorm)"
                )
                + ". `full`: the fb.resnet.torch protocol of the official script: CIFAR-10 with"
                " shifts and flips, 160 epochs, batch 128, SGD lr 0.1 momentum 0.9 /10 at 80 and"
                " 120, weight decay 1e-4, 5 seeds. `small`: ResNet-20 at half width (8/16/32) on the"
                " 8×8 digits, 10 epochs, /10 at 5 and 8, 5 seeds."
            ),
            paper=tuple(_paper),
            scales={
                "smoke": ScaleSpec(
                    config=_with_group(_RESNET_SMOKE, _norm, T1_GROUP),
                    grid={"model.depth": (8,)},
                    seeds=1,
                ),
                "small": ScaleSpec(
                    config=_with_group(_RESNET_SMALL, _norm, T1_GROUP),
                    grid={"model.depth": (20,)},
                    seeds=5,
                ),
                "full": ScaleSpec(
                    config=_with_group(_RESNET_FULL, _norm, T1_GROUP),
                    grid={"model.depth": T1_DEPTHS},
                    seeds=5,
                ),
            },
        )
    )

# -- DBN-T2: wide ResNets, BN vs DBN-scale-L1 ------------------------------------------------------
T2_SOURCE = "DBN Table 2 (test error, mean ± std over 5 seeds)"
WRN_T2_SOURCE = (
    "Zagoruyko & Komodakis's GitHub (WRN-28-10: median of 5; WRN-40-10: one run), as quoted in"
    " DBN Table 2 ('Baseline*')"
)
T2_DEPTHS = (28, 40)
T2_DATASETS = ("cifar10", "cifar100")
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
T2_ERRORS = {  # (depth, dataset) -> (mean, std)
    "bn": {
        (28, "cifar10"): (3.99, 0.13),
        (28, "cifar100"): (18.75, 0.28),
        (40, "cifar10"): (3.80, 0.11),
        (40, "cifar100"): (18.7, 0.22),
    },
    "dbn-scale-l1": {
        (28, "cifar10"): (3.79, 0.09),
        (28, "cifar100"): (18.36, 0.17),
        (40, "cifar10"): (3.74, 0.11),
        (40, "cifar100"): (18.27, 0.19),
    },
}
WRN_T2_ERRORS = {
    (28, "cifar10"): 3.89,
    (28, "cifar100"): 18.85,
    (40, "cifar10"): 3.80,
    (40, "cifar100"): 18.3,
}
_WRN_FULL = {
    "task": "classify",
    "model": {"name": "wrn", "depth": 28, "widen_factor": 10, "dropout": 0.3, "in_channels": 3},
    "data": {"name": "cifar10"},
    "train": {
        "epochs": 200,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,  # the official WRN scripts (-noNesterov 1 switches Nesterov on there)
        "weight_decay": 5e-4,
        "schedule": "multistep",
        "milestones": [60, 120, 160],
        "gamma": 0.2,
    },
}
_WRN_SMALL = deep_merge(
    _WRN_FULL,
    {
        "model": {"widen_factor": 2, "in_channels": 1},
        "data": {"name": "digits", "variant": "8x8", "shift": 0},
        "train": {"epochs": 6, "milestones": [3, 5], "augment": False},
    },
)
_WRN_SMOKE = deep_merge(_WRN_SMALL, {"model": {"widen_factor": 1}, "train": {"epochs": 2}})

for _norm, _table in T2_ERRORS.items():
    _label = T1_LABELS[_norm]
    _paper = [
        Reported(
            metric="test_error_pct",
            value=mean,
            std=std,
            unit="%",
            meaning=f"WRN-{d}-10 with {_label} on {DATASET_NAMES[data]}, test error",
            source=T2_SOURCE,
            point={"model.depth": d, "data.name": data},
        )
        for (d, data), (mean, std) in _table.items()
    ]
    if _norm == "bn":
        _paper += [
            Reported(
                metric="test_error_pct",
                value=e,
                unit="%",
                meaning=f"WRN-{d}-10 on {DATASET_NAMES[data]}, the WRN authors' test error",
                source=WRN_T2_SOURCE,
                point={"model.depth": d, "data.name": data},
            )
            for (d, data), e in WRN_T2_ERRORS.items()
        ]
    register(
        Experiment(
            id=f"dbn.t2.wrn.{_norm}",
            artifact="DBN-T2",
            title=f"Wide ResNets with {_label}: test error on CIFAR-10 and CIFAR-100",
            description=(
                f"WRN-28-10 and WRN-40-10 (dropout 0.3) with {_label}"
                + (
                    ""
                    if _norm == "bn"
                    else " (a DBN with groups of 16 and its own γ, β inserted after the stem conv,"
                    " before the first block, as in the official wr_DBN_scale_L1.lua)"
                )
                + ". `full`: CIFAR-10/100 with shifts and flips, 200 epochs, batch 128, SGD lr 0.1"
                " Nesterov momentum 0.9, ×0.2 at 60/120/160, weight decay 5e-4, 5 seeds."
                " `small`: WRN-10-2 on the 8×8 digits, 6 epochs, 3 seeds."
            ),
            paper=tuple(_paper),
            scales={
                "smoke": ScaleSpec(
                    config=_with_group(_WRN_SMOKE, _norm, DBN_GROUP),
                    grid={"model.depth": (10,), "data.name": ("digits",)},
                    seeds=1,
                ),
                "small": ScaleSpec(
                    config=_with_group(_WRN_SMALL, _norm, DBN_GROUP),
                    grid={"model.depth": (10,), "data.name": ("digits",)},
                    seeds=3,
                ),
                "full": ScaleSpec(
                    config=_with_group(_WRN_FULL, _norm, DBN_GROUP),
                    grid={"model.depth": T2_DEPTHS, "data.name": T2_DATASETS},
                    seeds=5,
                ),
            },
        )
    )

# -- DBN-T3: ImageNet ResNets, BN vs DBN-scale-L1, top-1 and top-5 ---------------------------------
T3_SOURCE = "DBN Table 3 (ILSVRC-2012 validation, single model, single crop)"
HE_T3_SOURCE = "He et al.'s GitHub (deep-residual-networks), as quoted in DBN Table 3 ('Baseline*')"
T3_DEPTHS = (18, 34, 50, 101)
T3_ERRORS = {  # depth -> (top-1, top-5) error %
    "bn": {18: (30.21, 10.87), 34: (26.53, 8.59), 50: (24.87, 7.58), 101: (22.54, 6.38)},
    "dbn-scale-l1": {18: (29.87, 10.36), 34: (26.46, 8.42), 50: (24.29, 7.08), 101: (22.17, 6.09)},
}
HE_T3_ERRORS = {50: (24.70, 7.80), 101: (23.60, 7.10)}
# the built-in top-k measurement, once after the last epoch: classify adds test_top<k>_acc and
# test_top<k>_error_pct to the metrics
TOPK = {"topk": {"ks": [1, 5], "split": "test", "every_epoch": False}}
_IMAGENET_FULL = {
    "task": "classify",
    "model": {"name": "resnet_imagenet", "depth": 18, "stem": "imagenet", "in_channels": 3},
    "data": {"name": "imagenet"},
    "train": {
        "epochs": 90,
        "batch_size": 256,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "schedule": "multistep",
        "milestones": [30, 60],
        "gamma": 0.1,
    },
    "measure": TOPK,
}
_IMAGENET_SMALL = deep_merge(
    _IMAGENET_FULL,
    {
        "model": {"width_multiplier": 0.25, "stem": "cifar", "in_channels": 1},
        "data": {"name": "digits", "variant": "8x8", "shift": 0},
        "train": {"epochs": 6, "batch_size": 128, "milestones": [3, 5], "augment": False},
    },
)
_IMAGENET_SMOKE = deep_merge(
    _IMAGENET_SMALL, {"model": {"width_multiplier": 0.125}, "train": {"epochs": 2}}
)

for _norm, _table in T3_ERRORS.items():
    _label = T1_LABELS[_norm]
    _paper = []
    for _d, (_top1, _top5) in _table.items():
        for _metric, _value, _what in (
            ("test_error_pct", _top1, "top-1"),
            ("test_top5_error_pct", _top5, "top-5"),
        ):
            _paper.append(
                Reported(
                    metric=_metric,
                    value=_value,
                    unit="%",
                    meaning=f"ResNet-{_d} with {_label}, {_what} validation error",
                    source=T3_SOURCE,
                    point={"model.depth": _d},
                )
            )
    if _norm == "bn":
        for _d, (_top1, _top5) in HE_T3_ERRORS.items():
            for _metric, _value, _what in (
                ("test_error_pct", _top1, "top-1"),
                ("test_top5_error_pct", _top5, "top-5"),
            ):
                _paper.append(
                    Reported(
                        metric=_metric,
                        value=_value,
                        unit="%",
                        meaning=f"ResNet-{_d}, He et al.'s {_what} validation error",
                        source=HE_T3_SOURCE,
                        point={"model.depth": _d},
                    )
                )
    register(
        Experiment(
            id=f"dbn.t3.resnet-imagenet.{_norm}",
            artifact="DBN-T3",
            title=f"ImageNet ResNets with {_label}: top-1 and top-5 validation error",
            description=(
                f"ResNet-18/34/50/101 (torchvision layout) with {_label}"
                + ("" if _norm == "bn" else " (the stem's norm is a DBN with groups of 16)")
                + ". `full`: ILSVRC-2012, 90 epochs, batch 256, SGD lr 0.1 momentum 0.9 /10 at 30"
                " and 60, weight decay 1e-4, 224 crops; top-5 from the built-in `topk`"
                " measurement at the last epoch. `small`: ResNet-18 at 1/4 width with the CIFAR"
                " stem on the 8×8 digits, 6 epochs, 3 seeds."
            ),
            paper=tuple(_paper),
            scales={
                "smoke": ScaleSpec(
                    config=_with_group(_IMAGENET_SMOKE, _norm, DBN_GROUP),
                    grid={"model.depth": (18,)},
                    seeds=1,
                ),
                "small": ScaleSpec(
                    config=_with_group(_IMAGENET_SMALL, _norm, DBN_GROUP),
                    grid={"model.depth": (18,)},
                    seeds=3,
                ),
                "full": ScaleSpec(
                    config=_with_group(_IMAGENET_FULL, _norm, DBN_GROUP),
                    grid={"model.depth": T3_DEPTHS},
                    seeds=1,
                ),
            },
        )
    )
