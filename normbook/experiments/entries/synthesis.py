"""Entries of the synthesis part (``book/synthesis/``): every method on one protocol.

All training entries run the ``synthesis`` task (:mod:`normbook.experiments.tasks_synthesis`):
one knob, ``method``, names the normalization (:data:`~normbook.experiments.tasks_synthesis.METHODS`),
and every method gets the same model, data, optimizer budget and seeds. Learning rates are swept
and each method is judged at the rate that is best on a held-out validation split of the
training set (``data.val_split``), never on the test set (:mod:`normbook.analysis.synthesis`).

- ``synthesis.protocol.resnet`` / ``synthesis.protocol.mlp`` (BOOK-SYN-PROTOCOL): the leaderboard
  and the learning-rate sweep that the stability page reads (BOOK-SYN-STABILITY).
- ``synthesis.stability.depth`` (BOOK-SYN-STABILITY): straight stacks of growing depth.
- ``synthesis.microbatch.mlp`` (BOOK-SYN-BATCH): batch sizes 2 … 128, learning rate scaled
  linearly with the batch.
- ``synthesis.cost.resnet`` / ``synthesis.cost.mlp`` (BOOK-SYN-COST): time per step and
  activation memory, as ratios to BN measured in one process.

``small`` runs on the 8×8 digits (a narrow ResNet-20 and a 3×128 MLP); ``full`` is the issue's
protocol: ResNet-56 and VGG16 on CIFAR-10/100 with 5 000 training images held out.
"""

from __future__ import annotations

import normbook.experiments.tasks_synthesis  # noqa: F401  (registers the tasks)
from normbook.experiments.recipes import HE_CIFAR_TRAIN
from normbook.experiments.registry import register
from normbook.experiments.spec import Experiment, ScaleSpec, deep_merge
from normbook.experiments.tasks_synthesis import COST_TASK, SYNTHESIS_TASK, methods_for

CNN_METHODS = methods_for("resnet_cifar")
MLP_METHODS = methods_for("mlp")
VGG_METHODS = methods_for("vgg")
SPLAIN_METHODS = methods_for("splain")
LRS = (0.03, 0.1, 0.3, 1.0, 3.0)
FULL_LRS = (0.01, 0.03, 0.1, 0.3, 1.0)
SEEDS = 5
BATCH_SIZES = (2, 4, 8, 16, 32, 128)
DEPTHS = (2, 8, 24)
DEPTH_LRS = (0.03, 0.3)
MICRO_LRS = (0.1, 0.3)
REFERENCE_BATCH = 128  # micro-batch sweeps: train.lr is the rate at batch 128 (linear scaling)
VAL_SPLIT = 0.2  # digits: 270 of the 1 347 training images held out for choosing the lr
FULL_VAL_SPLIT = 0.1  # CIFAR: 5 000 of the 50 000

# -- small: the 8×8 digits ------------------------------------------------------------------------
_SMALL_TRAIN = {
    "epochs": 8,
    "batch_size": 64,
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "multistep",
    "milestones": [4, 6],  # He et al.'s /10 at 50 % and 75 % of the epochs, scaled to 8
    "gamma": 0.1,
}
_RESNET = {
    "task": SYNTHESIS_TASK,
    "method": "bn",
    "model": {"name": "resnet_cifar", "depth": 20, "widths": [8, 16, 32], "in_channels": 1},
    "data": {"name": "digits", "variant": "8x8", "val_split": VAL_SPLIT},
    "train": {**_SMALL_TRAIN, "augment": True},
}
_MLP = {
    "task": SYNTHESIS_TASK,
    "method": "bn",
    "model": {"name": "mlp", "in_features": 64, "depth": 3, "width": 128},
    "data": {"name": "digits", "variant": "flat", "val_split": VAL_SPLIT},
    "train": {**_SMALL_TRAIN, "augment": False},
}
_SMOKE_TRAIN = {"train": {"epochs": 2, "milestones": [1]}}

# -- full: CIFAR ----------------------------------------------------------------------------------
_FULL_TRAIN = HE_CIFAR_TRAIN
_RESNET56 = {
    "task": SYNTHESIS_TASK,
    "method": "bn",
    "model": {"name": "resnet_cifar", "depth": 56},
    "data": {"name": "cifar10", "val_split": FULL_VAL_SPLIT},
    "train": _FULL_TRAIN,
}
_VGG16 = {
    "task": SYNTHESIS_TASK,
    "method": "bn",
    "model": {"name": "vgg", "variant": "16"},
    "data": {"name": "cifar10", "val_split": FULL_VAL_SPLIT},
    "train": _FULL_TRAIN,
}
_PROTOCOL = (
    "Every method trains the same model with the same optimizer budget (SGD with momentum 0.9,"
    " weight decay, /10 at 50 % and 75 % of the epochs) at each learning rate of the sweep, five"
    " seeds each; a held-out validation split of the training set picks each method's learning"
    " rate, and the test set is read only at that rate."
)


def _protocol_entry(
    entry_id: str, model: str, small: dict, full: dict, methods: tuple[str, ...], full_methods
) -> Experiment:
    return Experiment(
        id=entry_id,
        artifact="BOOK-SYN-PROTOCOL",
        title=f"One protocol, every method: {model}",
        description=f"{_PROTOCOL} `small`: {model} on the 8×8 digits, 8 epochs, batch 64,"
        f" learning rates {', '.join(map(str, LRS))}. `full`: the same sweep on CIFAR-10 and"
        " CIFAR-100 (160 epochs, batch 128, 5 000 training images held out).",
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(small, _SMOKE_TRAIN),
                grid={"method": methods, "train.lr": (0.1,)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=small, grid={"method": methods, "train.lr": LRS}, seeds=SEEDS
            ),
            "full": ScaleSpec(
                config=full,
                grid={
                    "method": full_methods,
                    "train.lr": FULL_LRS,
                    "data.name": ("cifar10", "cifar100"),
                },
                seeds=SEEDS,
            ),
        },
    )


register(
    _protocol_entry(
        "synthesis.protocol.resnet",
        "a narrow ResNet-20 (widths 8-16-32; ResNet-56 at full)",
        _RESNET,
        _RESNET56,
        CNN_METHODS,
        CNN_METHODS,
    )
)
register(
    _protocol_entry(
        "synthesis.protocol.mlp",
        "a network without shortcuts (an MLP with 3 × 128 hidden units; VGG16 at full)",
        _MLP,
        _VGG16,
        MLP_METHODS,
        VGG_METHODS,
    )
)

# -- stability: depth of a straight stack ---------------------------------------------------------
register(
    Experiment(
        id="synthesis.stability.depth",
        artifact="BOOK-SYN-STABILITY",
        title="Sensitivity to depth: straight stacks of 2 to 32 layers, every method",
        description=(
            "Straight networks (no shortcuts) of growing depth, each method at the better of two"
            " learning rates on the validation split, three seeds. `small`: MLPs with 2, 8 and 24"
            " hidden layers of 64 units on the flat digits, the protocol's 8-epoch budget."
            " `full`: S-plain (Huang et al. 2018's straight CNN) with 8, 20, 32 and 56 layers on"
            " CIFAR-10, 160 epochs."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_MLP, {**_SMOKE_TRAIN, "model": {"width": 16}}),
                grid={"method": MLP_METHODS, "model.depth": (2, 8), "train.lr": (0.1,)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=deep_merge(_MLP, {"model": {"width": 64}}),
                grid={"method": MLP_METHODS, "model.depth": DEPTHS, "train.lr": DEPTH_LRS},
                seeds=3,
            ),
            "full": ScaleSpec(
                config=deep_merge(_RESNET56, {"model": {"name": "splain", "depth": 20}}),
                grid={
                    "method": SPLAIN_METHODS,
                    "model.depth": (8, 20, 32, 56),
                    "train.lr": (0.01, 0.1),
                },
                seeds=3,
            ),
        },
    )
)

# -- micro-batches --------------------------------------------------------------------------------
register(
    Experiment(
        id="synthesis.microbatch.mlp",
        artifact="BOOK-SYN-BATCH",
        title="Micro-batches: accuracy vs batch size 2 … 128, every method",
        description=(
            "The protocol's model at batch sizes 2, 4, 8, 16, 32 and 128 for the same number of"
            " epochs; `train.lr` is the rate at batch 128 and scales linearly with the batch"
            " (Goyal et al. 2017), two rates, chosen per method and batch size on the"
            " validation split; three seeds. Batch statistics (BN, DBN, IC, MimicNorm's last BN)"
            " are estimated from the mini-batch; NormProp, Fixup and no normalization use none."
            " `small`: the 3×128 MLP on the flat digits, where a DBN group of 16 sees fewer"
            " samples than channels below batch 16. `full`: ResNet-56 on CIFAR-10."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_MLP, {**_SMOKE_TRAIN, "lr_reference_batch": REFERENCE_BATCH}),
                grid={"method": MLP_METHODS, "train.batch_size": (4, 128), "train.lr": (0.1,)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=deep_merge(_MLP, {"lr_reference_batch": REFERENCE_BATCH}),
                grid={
                    "method": MLP_METHODS,
                    "train.batch_size": BATCH_SIZES,
                    "train.lr": MICRO_LRS,
                },
                seeds=3,
            ),
            "full": ScaleSpec(
                config=deep_merge(_RESNET56, {"lr_reference_batch": REFERENCE_BATCH}),
                grid={
                    "method": CNN_METHODS,
                    "train.batch_size": BATCH_SIZES,
                    "train.lr": (0.03, 0.1, 0.3),
                },
                seeds=3,
            ),
        },
    )
)


# -- cost -----------------------------------------------------------------------------------------
def _cost_entry(
    entry_id: str, what: str, small: dict, full: dict, methods, full_methods
) -> Experiment:
    def cost(base: dict, batch_size: int, steps: int, rounds: int, chosen) -> dict:
        return {
            "task": COST_TASK,
            "methods": list(chosen),
            "model": base["model"],
            "data": base["data"],
            "train": base["train"],
            "batch_size": batch_size,
            "steps": steps,
            "rounds": rounds,
        }

    return Experiment(
        id=entry_id,
        artifact="BOOK-SYN-COST",
        title=f"Cost of each method: time per training step and activation memory, {what}",
        description=(
            "Every method's model built with one seed, its training step (forward, backward,"
            " optimizer) timed on random inputs of the data's shape, the methods taking turns"
            " round by round in one process; and the bytes autograd saves for one forward pass."
            " Stored as ratios to BN. `small`: the protocol's digits model on this machine's CPU."
            " `full`: the CIFAR model at batch 128 (run it on the GPU the full runs use)."
        ),
        scales={
            "smoke": ScaleSpec(config=cost(small, 16, 1, 1, methods)),
            "small": ScaleSpec(config=cost(small, 64, 5, 6, methods)),
            "full": ScaleSpec(config=cost(full, 128, 10, 5, full_methods)),
        },
    )


register(
    _cost_entry(
        "synthesis.cost.resnet",
        "narrow ResNet-20 (ResNet-56 at full)",
        _RESNET,
        _RESNET56,
        CNN_METHODS,
        CNN_METHODS,
    )
)
register(
    _cost_entry(
        "synthesis.cost.mlp", "3×128 MLP (VGG16 at full)", _MLP, _VGG16, MLP_METHODS, VGG_METHODS
    )
)
