"""Entries of MimicNorm's training chapters (``book/mimicnorm/the-last-batchnorm.ipynb`` and
``memory-and-accuracy.ipynb``): the last BN's learning-rate stability (MN-T2) and the variance it
tracks (MN-B2), activation memory (MN-T1, MN-T3), the accuracy tables (MN-T1, MN-T3) and the
ablation curves (MN-F6-7).

Paper numbers (PAPERS.md MN): the seed text lost its table values; Table 2 comes from PAPERS.md's
extraction, the memory columns from the paper's text tables, and the CIFAR-100 accuracies of BN
and MimicNorm and ImageNet ResNet-50's from the official README (github Kid-key/MimicNorm).
"""

from __future__ import annotations

import normbook.experiments.measures_mimicnorm  # noqa: F401  (registers the measure)
import normbook.experiments.tasks_mimicnorm_training  # noqa: F401  (registers the task)
from normbook.experiments.measures_mimicnorm import LOGIT_VARIANCE
from normbook.experiments.registry import register
from normbook.experiments.spec import Experiment, Reported, ScaleSpec, deep_merge
from normbook.experiments.tasks_mimicnorm_training import MEMORY

# -- recipes (PAPERS.md MN "Implementation facts"; paper Sec. "Evaluations on ImageNet") -------
CIFAR100_TRAIN = {
    "epochs": 150,
    "batch_size": 256,
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "multistep",
    "milestones": [80, 110, 135],
    "gamma": 0.1,
    "warmup_epochs": 2,
    "augment": True,
}
CIFAR100_DATA = {"name": "cifar100", "shift": 4, "flip": True, "rotation": 15.0}
IMAGENET_TRAIN = {
    "epochs": 90,
    "batch_size": 256,
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "schedule": "multistep",
    "milestones": [30, 60, 85],  # 0.1 → 0.01 → 0.001 → 0.0001 (the paper's "0.1 to 0.0001")
    "gamma": 0.1,
    "warmup_epochs": 2,
    "augment": True,
}
IMAGENET_DATA = {"name": "imagenet", "crop_size": 224, "flip": True}
# small-scale training on the embedded digits: no augmentation, a 1-epoch warm-up
DIGITS_TRAIN = {
    "epochs": 6,
    "batch_size": 64,
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "warmup_epochs": 1,
    "augment": False,
}
SOURCE_T1 = "MimicNorm Table 1 (memory, batch 256; ResNet50 128) and official README (accuracy)"
SOURCE_T3 = "MimicNorm Table 3 (ImageNet, memory at batch 256) and official README (ResNet-50)"

# -- MN-T2: VGG16 on CIFAR-100 across learning rates ----------------------------------------
PAPER_LRS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
SMALL_LRS = (0.01, 0.05, 0.2, 0.5, 1.0)
# (weight_mean, last_bn) per Table 2 column, in the extracted order (see the-last-batchnorm.ipynb:
# column 1 is labelled "None"; column 2 collapses to 1.00 at lr >= 0.2, so it lacks the last BN
# and is weight mean; columns 3 and 4 keep training, so both have the last BN; their order is the
# extraction's, last BN alone before both)
TABLE2_COLUMNS = ((False, False), (True, False), (False, True), (True, True))
TABLE2_NAMES = {
    (False, False): "none",
    (True, False): "weight mean",
    (False, True): "last BN",
    (True, True): "both (MimicNorm)",
}
TABLE2 = {  # lr: accuracy % per column (PAPERS.md MN, Table 2)
    0.01: (22.12, 34.81, 38.39, 37.82),
    0.02: (26.76, 43.07, 44.32, 40.49),
    0.05: (25.63, 42.63, 49.53, 37.97),
    0.1: (1.24, 36.49, 46.92, 32.4),
    0.2: (1.77, 1.00, 39.41, 25.5),
    0.5: (1.00, 1.00, 22.03, 8.26),
    1.0: (1.00, 1.00, 9.83, 3.93),
}
SOURCE_T2 = "MimicNorm Table 2 (values from PAPERS.md's extraction; column order inferred)"

_T2_FULL = {
    "task": "classify",
    "model": {
        "name": "vgg",
        "variant": "16",
        "norm": "mimic",
        "weight_mean": True,
        "last_bn": True,
    },
    "data": CIFAR100_DATA,
    "train": CIFAR100_TRAIN,
}
# a straight 8-conv net (S-plain, no shortcuts) at width 8 on the 8×8 digits
_T2_SMALL = {
    "task": "classify",
    "model": {
        "name": "splain",
        "depth": 8,
        "width": 8,
        "in_channels": 1,
        "norm": "mimic",
        "weight_mean": True,
        "last_bn": True,
    },
    "data": {"name": "digits", "variant": "8x8", "shift": 0},
    "train": DIGITS_TRAIN,
}
_T2_SMOKE = deep_merge(_T2_SMALL, {"train": {"epochs": 2}})
_SWITCHES = {"model.weight_mean": (False, True), "model.last_bn": (False, True)}

register(
    Experiment(
        id="mimicnorm.t2.lr-stability",
        artifact="MN-T2",
        title="Training stability across learning rates: none / weight mean / last BN / both",
        description=(
            "MimicNorm's two parts switched on and off (model norm `mimic` with `weight_mean`"
            " and `last_bn`; both off is the same straight net, same init, no normalization)"
            " over a grid of learning rates; final test accuracy, diverged runs at chance."
            " `full`: VGG16 on CIFAR-100 with MimicNorm's recipe (SGD 0.9, wd 5e-4, batch 256,"
            " 150 epochs, ×0.1 at 80/110/135, 2-epoch warm-up, crop+flip+rotation 15°)."
            " `small`: an 8-conv straight net (S-plain, width 8) on the 8×8 digits, 6 epochs."
        ),
        paper=tuple(
            Reported(
                metric="test_acc",
                value=value,
                unit="%",
                meaning=f"VGG16 CIFAR-100 test accuracy, {TABLE2_NAMES[column]}, lr {lr:g}",
                source=SOURCE_T2,
                point={
                    "train.lr": lr,
                    "model.weight_mean": column[0],
                    "model.last_bn": column[1],
                },
            )
            for lr, values in TABLE2.items()
            for column, value in zip(TABLE2_COLUMNS, values, strict=True)
        ),
        scales={
            "smoke": ScaleSpec(
                config=_T2_SMOKE, grid={"train.lr": (0.05, 1.0), **_SWITCHES}, seeds=1
            ),
            "small": ScaleSpec(
                config=_T2_SMALL, grid={"train.lr": SMALL_LRS, **_SWITCHES}, seeds=3
            ),
            "full": ScaleSpec(config=_T2_FULL, grid={"train.lr": PAPER_LRS, **_SWITCHES}, seeds=1),
        },
    )
)

# -- MN-B2: the running variance of the last BN at a large learning rate -----------------------
B2_SMALL_LR = 0.5
_B2_MEASURE = {LOGIT_VARIANCE: {"trace_steps": 400}}
register(
    Experiment(
        id="mimicnorm.b2.logit-variance",
        artifact="MN-B2",
        title="Variance of the logits (the last BN's running variance) at a large learning rate",
        description=(
            "Per training step, the class-mean variance of the logits entering the last BN,"
            " as BatchNorm's running average (momentum 0.1): the last BN's running_var where the"
            " net has one, what it would track where it has none (measure"
            " `mimicnorm.logit_variance`). `full`: VGG11 on CIFAR-100 at lr 0.1, first two"
            " epochs (the paper's Fig. 10 setting); `small`: the MN-T2 straight net at lr 0.5."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_T2_SMOKE, {"measure": _B2_MEASURE}),
                grid={"model.last_bn": (False, True)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=deep_merge(
                    _T2_SMALL,
                    {"measure": _B2_MEASURE, "train": {"lr": B2_SMALL_LR, "epochs": 4}},
                ),
                grid=_SWITCHES,
                seeds=3,
            ),
            "full": ScaleSpec(
                config=deep_merge(
                    _T2_FULL,
                    {
                        "model": {"variant": "11"},
                        "measure": _B2_MEASURE,
                        "train": {"epochs": 2, "lr": 0.1},
                    },
                ),
                grid=_SWITCHES,
                seeds=1,
            ),
        },
    )
)

# -- MN-T1 / MN-T3: architectures, memory and accuracy -----------------------------------------
# name: (build_model name, options, Table 1 methods); ResNets use resnet_imagenet with the CIFAR stem
CIFAR_ARCHS: dict[str, tuple[str, dict, tuple[str, ...]]] = {
    "vgg11": ("vgg", {"variant": "11"}, ("bn", "mimic", "none")),
    "vgg16": ("vgg", {"variant": "16"}, ("bn", "mimic", "none")),
    "resnet18": ("resnet_imagenet", {"depth": 18, "stem": "cifar"}, ("bn", "fixup", "mimic")),
    "resnet50": ("resnet_imagenet", {"depth": 50, "stem": "cifar"}, ("bn", "fixup", "mimic")),
    "squeezenet": ("squeezenet", {}, ("bn", "mimic")),
    "shufflenetv2": ("shufflenetv2", {"width": 1.0, "stem": "cifar"}, ("bn", "mimic")),
}
CIFAR_BATCH = {"resnet50": 128}  # the paper halves ResNet50's batch; 256 for the others
T1_MEMORY_MB = {  # paper Table 1 (MB, GPU)
    "vgg11": {"bn": 2971, "mimic": 2851, "none": 2831},
    "vgg16": {"bn": 3745, "mimic": 3489, "none": 3469},
    "resnet18": {"bn": 4447, "fixup": 4743, "mimic": 4157},
    "resnet50": {"bn": 8533, "fixup": 10283, "mimic": 7533},
    "squeezenet": {"bn": 3687, "mimic": 2693},
    "shufflenetv2": {"bn": 3915, "mimic": 3141},
}
T1_ACCURACY = {  # official README, CIFAR-100 test accuracy % (the other cells were lost)
    "vgg16": {"bn": 72.28, "mimic": 72.47},
    "resnet18": {"bn": 74.72, "mimic": 74.96},
    "resnet50": {"bn": 78.53, "mimic": 77.91},
    "shufflenetv2": {"bn": 71.10, "mimic": 70.93},
}
IMAGENET_ARCHS: dict[str, tuple[str, dict, tuple[str, ...]]] = {
    "vgg16": ("vgg", {"variant": "16", "head": "imagenet"}, ("bn", "mimic", "none")),
    "resnet18": ("resnet_imagenet", {"depth": 18, "stem": "imagenet"}, ("bn", "mimic")),
    "resnet50": ("resnet_imagenet", {"depth": 50, "stem": "imagenet"}, ("bn", "fixup", "mimic")),
    "resnet101": ("resnet_imagenet", {"depth": 101, "stem": "imagenet"}, ("bn", "mimic")),
    "shufflenetv2-0.5": ("shufflenetv2", {"width": 0.5, "stem": "imagenet"}, ("bn", "mimic")),
}
T3_MEMORY_MB = {  # paper Table 3 (MB, GPU, batch 256)
    "vgg16": {"bn": 62162, "mimic": 56410, "none": 56388},
    "resnet18": {"bn": 8057, "mimic": 5603},
    "resnet50": {"bn": 27083, "fixup": 29267, "mimic": 22489},
    "resnet101": {"bn": 37168, "mimic": 30363},
    "shufflenetv2-0.5": {"bn": 4385, "mimic": 3603},
}
T3_ACCURACY = {"resnet50": {"bn": 76.48, "mimic": 76.84}}  # official README, top-1 %
METHOD_NAMES = {"bn": "BatchNorm", "mimic": "MimicNorm", "none": "NoNorm", "fixup": "Fixup"}
MEMORY_NORMS = ("bn", "mimic", "none", "fixup")  # measured where the family has them
PROBE_BATCHES = [2, 3, 4]


def _memory_norms(methods: tuple[str, ...]) -> tuple[str, ...]:
    """The paper's methods plus ``none`` (what removing every BN would save), in one order."""
    return tuple(n for n in MEMORY_NORMS if n in methods or n == "none")


def _memory_entry(arch: str, table: str) -> None:
    imagenet = table == "t3"
    name, options, methods = (IMAGENET_ARCHS if imagenet else CIFAR_ARCHS)[arch]
    paper_mb = (T3_MEMORY_MB if imagenet else T1_MEMORY_MB)[arch]
    batch = 256 if imagenet else CIFAR_BATCH.get(arch, 256)
    shape = {"channels": 3, "size": 224 if imagenet else 32, "classes": 1000 if imagenet else 100}
    config = {
        "task": MEMORY,
        "model": {"name": name, **options, "norm": "bn"},
        "input": shape,
        "batch_size": batch,
        "probe_batches": PROBE_BATCHES,
    }
    # smoke: the same line at a narrower or smaller configuration (seconds)
    smoke_model = {"width_multiplier": 0.25} if name in ("vgg", "resnet_imagenet") else {}
    smoke = deep_merge(config, {"model": smoke_model, "input": {"size": 64 if imagenet else 32}})
    grid = {"model.norm": _memory_norms(methods)}
    dataset = "ImageNet (3×224×224, 1000 classes)" if imagenet else "CIFAR-100 (3×32×32)"
    register(
        Experiment(
            id=f"mimicnorm.{table}.memory.{arch}",
            artifact="MN-T3" if imagenet else "MN-T1",
            title=f"{arch}: activation memory with BatchNorm, MimicNorm, no norm"
            + (" and Fixup" if "fixup" in methods else ""),
            description=(
                f"Bytes saved for backward by one training-mode forward pass of {arch} on"
                f" {dataset} inputs, counted at batches {PROBE_BATCHES} on the CPU, checked to be"
                f" exactly affine in the batch and extrapolated to the paper's batch {batch}; on"
                " CUDA also measured at that batch, with torch.cuda.max_memory_allocated over one"
                " fp32 SGD step (`cuda_peak_mib`), the number to set beside the paper's MB."
            ),
            paper=tuple(
                Reported(
                    metric="cuda_peak_mib",
                    value=float(mb),
                    unit="MB",
                    meaning=f"{arch} {METHOD_NAMES[norm]}: GPU memory in training, batch {batch}"
                    " (the paper does not say how it was measured)",
                    source=SOURCE_T3 if imagenet else SOURCE_T1,
                    point={"model.norm": norm},
                )
                for norm, mb in paper_mb.items()
            ),
            scales={
                "smoke": ScaleSpec(config=smoke, grid=grid, seeds=1),
                "small": ScaleSpec(config=config, grid=grid, seeds=1),
                "full": ScaleSpec(config=config, grid=grid, seeds=1),
            },
        )
    )


def _accuracy_entry(arch: str, table: str) -> None:
    imagenet = table == "t3"
    name, options, methods = (IMAGENET_ARCHS if imagenet else CIFAR_ARCHS)[arch]
    accuracy = (T3_ACCURACY if imagenet else T1_ACCURACY).get(arch, {})
    train = deep_merge(IMAGENET_TRAIN if imagenet else CIFAR100_TRAIN, {})
    if not imagenet:
        train["batch_size"] = CIFAR_BATCH.get(arch, 256)
    if imagenet and arch.startswith("shufflenet"):
        # the paper: "less data augmentation and 200 epochs" (no further detail): the same
        # recipe stretched to 200 epochs
        train = deep_merge(train, {"epochs": 200, "milestones": [67, 133, 189]})
    full = {
        "task": "classify",
        "model": {"name": name, **options, "norm": "bn"},
        "data": IMAGENET_DATA if imagenet else CIFAR100_DATA,
        "train": train,
    }
    # smoke: the same family, narrow, one epoch on the 32×32 digits (checks the wiring only)
    narrow = {"width_multiplier": 0.125} if name in ("vgg", "resnet_imagenet") else {}
    if name == "shufflenetv2":
        narrow = {"width": 0.5}
    smoke = deep_merge(full, {"model": narrow})
    smoke["data"] = {"name": "digits", "variant": "32x32", "shift": 0}
    smoke["train"] = {**DIGITS_TRAIN, "epochs": 1}
    what = "ImageNet top-1 accuracy" if imagenet else "CIFAR-100 test accuracy"
    register(
        Experiment(
            id=f"mimicnorm.{table}.{arch}",
            artifact="MN-T3" if imagenet else "MN-T1",
            title=f"{arch}: {what} with " + " / ".join(METHOD_NAMES[m] for m in methods),
            description=(
                f"{arch} trained with {', '.join(METHOD_NAMES[m] for m in methods)}. `full`: "
                + (
                    "ILSVRC-2012, SGD 0.9, wd 1e-4, batch 256, 90 epochs with a 2-epoch warm-up,"
                    " lr 0.1 ×0.1 at 30/60/85, random-resized 224 crops + flips (the standard"
                    " PyTorch recipe, as the paper says)"
                    if imagenet
                    else "CIFAR-100 with MimicNorm's recipe (SGD 0.9, lr 0.1, wd 5e-4, batch"
                    f" {train['batch_size']}, 150 epochs, ×0.1 at 80/110/135, 2-epoch warm-up,"
                    " crop+flip+rotation 15°)"
                )
                + ". `smoke`: a narrow copy for one epoch on the 32×32 digits (wiring only)."
            ),
            paper=tuple(
                Reported(
                    metric="test_acc",
                    value=value,
                    unit="%",
                    meaning=f"{arch} {METHOD_NAMES[norm]}, {what}",
                    source=SOURCE_T3 if imagenet else SOURCE_T1,
                    point={"model.norm": norm},
                )
                for norm, value in accuracy.items()
            ),
            scales={
                "smoke": ScaleSpec(config=smoke, grid={"model.norm": methods[:2]}, seeds=1),
                "full": ScaleSpec(config=full, grid={"model.norm": methods}, seeds=1),
            },
        )
    )


for _arch in CIFAR_ARCHS:
    _memory_entry(_arch, "t1")
    _accuracy_entry(_arch, "t1")
for _arch in IMAGENET_ARCHS:
    _memory_entry(_arch, "t3")
    _accuracy_entry(_arch, "t3")

# -- MN-F6-7: reduced ablation curves ------------------------------------------------------------
ABLATION_NORMS = ("bn", "mimic", "none")
_F6_SMALL = {
    "task": "classify",
    "model": {"name": "vgg", "variant": "16", "width_multiplier": 0.0625, "norm": "bn"},
    "data": {"name": "digits", "variant": "32x32", "shift": 0},
    "train": {**DIGITS_TRAIN, "lr": 0.05},  # at 0.1 the narrow MimicNorm VGG16 barely learns
}
_F7_SMALL = {
    "task": "classify",
    "model": {
        "name": "resnet_imagenet",
        "depth": 18,
        "stem": "cifar",
        "width_multiplier": 0.0625,
        "in_channels": 1,
        "norm": "bn",
    },
    "data": {"name": "digits", "variant": "8x8", "shift": 0},
    "train": DIGITS_TRAIN,
}
for _id, _arch, _small, _full_model in (
    ("mimicnorm.f6.vgg16", "VGG16", _F6_SMALL, {"name": "vgg", "variant": "16", "norm": "bn"}),
    (
        "mimicnorm.f7.resnet18",
        "ResNet18",
        _F7_SMALL,
        {"name": "resnet_imagenet", "depth": 18, "stem": "cifar", "norm": "bn"},
    ),
):
    register(
        Experiment(
            id=_id,
            artifact="MN-F6-7",
            title=f"{_arch}: training curves with BatchNorm, MimicNorm and no normalization",
            description=(
                f"Test accuracy per epoch of {_arch} with BN, MimicNorm and no norm."
                " `small`: 1/16 width on the digits (VGG16 on the 32×32 variant: it needs 1×1"
                " after five pools, lr 0.05; ResNet18 with the CIFAR stem on 8×8, lr 0.1), 6"
                " epochs, 1-epoch warm-up, 3 seeds. `full`: CIFAR-100 with MimicNorm's recipe."
            ),
            scales={
                "smoke": ScaleSpec(
                    config=deep_merge(_small, {"train": {"epochs": 2}}),
                    grid={"model.norm": ABLATION_NORMS},
                    seeds=1,
                ),
                "small": ScaleSpec(config=_small, grid={"model.norm": ABLATION_NORMS}, seeds=3),
                "full": ScaleSpec(
                    config={
                        "task": "classify",
                        "model": _full_model,
                        "data": CIFAR100_DATA,
                        "train": CIFAR100_TRAIN,
                    },
                    grid={"model.norm": ABLATION_NORMS},
                    seeds=3,
                ),
            },
        )
    )
