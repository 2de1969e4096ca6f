"""Entries of the NormProp theory chapters (``book/normprop/normprop``, ``identity-breaks-normprop``):
Shang, Chiu & Sohn 2017's supplement and the NormProp premises it builds on (PAPERS.md NP-EQ,
NP-P1-3, NP-F3).

- ``normprop.eq.layer-moments``: per-layer pre-activation mean and variance of straight stacks at
  initialization (plain, NormProp, NormProp2): does NormProp keep them at 0 and 1?
- ``normprop.p3.residual-variance``: per-block variance of x ← b(x) + x at initialization, for
  Prop. 3's linear orthogonal block, a Gaussian linear block and NormProp branches.
- ``normprop.f3.coherence``: coherence μ of every conv of a NormProp2 (and a BN) ResNet, ReLU and
  CReLU, at initialization and after training (Fig. 3), with the paper's learning-rate rule
  (``normprop.halve-lr-until-trainable``, :mod:`normbook.experiments.tasks_normprop_training`).

The Table 3 comparison (NP-T3) the CReLU chapter reads is ``normprop.t3.cifar10`` /
``normprop.t3.cifar100`` in :mod:`normbook.experiments.entries.normprop_training`.
"""

from __future__ import annotations

import normbook.experiments.tasks_normprop_theory  # noqa: F401  (registers tasks and measure)
from normbook.experiments.registry import register
from normbook.experiments.spec import Experiment, ScaleSpec, deep_merge
from normbook.experiments.tasks_normprop_theory import (
    FILTER_COHERENCE,
    LAYER_MOMENTS,
    RESIDUAL_VARIANCE,
)
from normbook.experiments.tasks_normprop_training import HALVING_TASK, PAPER_INITIAL_LR

# -- NP-EQ: per-layer moments of straight stacks ------------------------------------------------
MOMENT_NORMS = ("none", "normprop1", "normprop2")
_MOMENTS = {
    "task": LAYER_MOMENTS,
    "model": {"norm": "normprop1", "width": 256, "depth": 40, "gamma": 1.0},
    "data": {"name": "gaussian", "inputs": 500},
}

register(
    Experiment(
        id="normprop.eq.layer-moments",
        artifact="NP-EQ",
        title="Pre-activation mean and variance layer by layer: plain vs NormProp vs NormProp2",
        description=(
            "Straight stacks of square layers at initialization on N(0, I) inputs (64"
            " dimensions): plain (Xavier normal, zero bias, ReLU), NormProp (γ·W/‖W_i‖, β = 0,"
            " then (ReLU − 1/√(2π))/√(½ − 1/(2π))) and NormProp2 (the same weights, plain ReLU),"
            " γ = 1. Per layer, over the inputs: the mean and variance of each unit's"
            " pre-activation, averaged over units, beside the one-layer laws, over a grid of"
            " widths. NormProp's promise is mean 0 and variance 1 at every layer."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_MOMENTS, {"model": {"depth": 12}, "data": {"inputs": 200}}),
                grid={"model.norm": MOMENT_NORMS, "model.width": (64, 128)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=_MOMENTS,
                grid={"model.norm": MOMENT_NORMS, "model.width": (64, 256, 1024)},
                seeds=3,
            ),
            "full": ScaleSpec(
                config=deep_merge(_MOMENTS, {"model": {"depth": 60}, "data": {"inputs": 4000}}),
                grid={"model.norm": MOMENT_NORMS, "model.width": (256, 1024, 4096)},
                seeds=5,
            ),
        },
    )
)

# -- NP-P1-3: variance across a stack of residual blocks ----------------------------------------
RESIDUAL_BRANCH_GRID = ("orthogonal", "gaussian", "normprop1", "normprop2")
_RESIDUAL = {
    "task": RESIDUAL_VARIANCE,
    "model": {"branch": "orthogonal", "width": 256, "depth": 12, "gamma": 1.0},
    "data": {"name": "gaussian", "inputs": 500},
}

register(
    Experiment(
        id="normprop.p3.residual-variance",
        artifact="NP-P1-3",
        title="Variance after each of a stack of residual blocks x ← b(x) + x at initialization",
        description=(
            "From N(0, I) inputs, blocks x ← b(x) + x with a fresh branch each: Prop. 3's linear"
            " block with a Haar-orthogonal W, the same with a Gaussian W (entries N(0, 1/n)), a"
            " NormProp branch (NormProp layer then NormProp's ReLU, γ = 1) and a NormProp2"
            " branch (plain ReLU). Per block: the variance of each coordinate over the inputs,"
            " averaged, its growth ratio, and the law (1 + κγ²)^l of a branch that scales with its"
            " input and is uncorrelated with it, over a grid of widths."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_RESIDUAL, {"model": {"depth": 6}, "data": {"inputs": 200}}),
                grid={"model.branch": RESIDUAL_BRANCH_GRID, "model.width": (64, 128)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=_RESIDUAL,
                grid={"model.branch": RESIDUAL_BRANCH_GRID, "model.width": (64, 256, 1024)},
                seeds=3,
            ),
            "full": ScaleSpec(
                config=deep_merge(_RESIDUAL, {"model": {"depth": 20}, "data": {"inputs": 4000}}),
                grid={"model.branch": RESIDUAL_BRANCH_GRID, "model.width": (256, 1024, 4096)},
                seeds=5,
            ),
        },
    )
)

# -- NP-F3: coherence of trained filters --------------------------------------------------------
COHERENCE_GRID = {"model.norm": ("normprop2", "bn"), "model.act": ("relu", "crelu")}
# fb.resnet.torch's CIFAR recipe (as normprop_training's entries): 164 epochs, batch 128, SGD
# with Nesterov momentum 0.9, wd 1e-4, lr /10 from (0-based) epochs 80 and 121, shifts and flips
_COHERENCE_FULL = {
    "task": HALVING_TASK,
    "model": {
        "name": "resnet_cifar",
        "depth": 110,
        "widths": [16, 32, 64],
        "in_channels": 3,
        "norm": "normprop2",
        "act": "relu",
    },
    "data": {"name": "cifar100"},
    "train": {
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
    },
    "lr_rule": {"factor": 0.5, "max_attempts": 6, "min_train_acc": 0.2},
    "measure": {FILTER_COHERENCE: {"every": 4}},
}
# briefly trained on the 8×8 digits: a ResNet-8 of widths 16-32-64 for 10 epochs
_COHERENCE_SMALL = deep_merge(
    _COHERENCE_FULL,
    {
        "model": {"depth": 8, "in_channels": 1},
        "data": {"name": "digits", "variant": "8x8"},
        "train": {"epochs": 10, "batch_size": 64, "milestones": [6, 8]},
        "lr_rule": {"max_attempts": 3},
        "measure": {FILTER_COHERENCE: {"every": 1}},
    },
)
_COHERENCE_SMOKE = deep_merge(
    _COHERENCE_SMALL,
    {"model": {"widths": [8, 8, 16]}, "train": {"epochs": 2, "milestones": [1]}},
)

register(
    Experiment(
        id="normprop.f3.coherence",
        artifact="NP-F3",
        title="Coherence μ of every conv's filters, at initialization and after training",
        description=(
            "ResNets with NormProp2 (Fig. 3's models) or BN, with ReLU or CReLU inside the"
            " branches, trained with the paper's recipe and learning-rate rule; the coherence μ"
            " (largest |cosine| between two filters) of the stem and every branch conv is"
            " measured at initialization and during training, beside each layer's Welch bound"
            " (the least μ its filters can have). NormProp's Prop. 1 needs μ ≈ 0. `full`:"
            " ResNet-110 on CIFAR-100, one seed; `small`: a ResNet-8 on the 8×8 digits."
        ),
        scales={
            "smoke": ScaleSpec(config=_COHERENCE_SMOKE, grid=COHERENCE_GRID, seeds=1),
            "small": ScaleSpec(config=_COHERENCE_SMALL, grid=COHERENCE_GRID, seeds=3),
            "full": ScaleSpec(config=_COHERENCE_FULL, grid=COHERENCE_GRID, seeds=1),
        },
    )
)
