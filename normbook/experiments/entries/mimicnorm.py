"""Entries of the MimicNorm theory chapters (``book/mimicnorm/``): kernels of straight ReLU MLPs at
initialization (MN-F2, MN-F3, MN-TH1, MN-TH3). Nothing is trained; every number is a measurement
of a freshly initialized net beside its infinite-width prediction."""

from __future__ import annotations

import normbook.experiments.tasks_mimicnorm  # noqa: F401  (registers the tasks)
from normbook.experiments.registry import register
from normbook.experiments.spec import Experiment, ScaleSpec, deep_merge
from normbook.experiments.tasks_mimicnorm import LAYER_CORRELATIONS, NTK_CONDITION

VARIANTS = ("plain", "bn", "weight_mean")
PAPER_DEPTH = 51  # MN Fig. 2: a 51-layer straight ReLU FCNN, batch 2000
PAPER_BATCH = 2000

_CORRELATIONS = {
    "task": LAYER_CORRELATIONS,
    "model": {"variant": "plain", "width": 256, "depth": PAPER_DEPTH},
    "data": {"name": "digits", "variant": "flat", "inputs": 500},
    "channel_layers": [1, 2, 5, 10, 20, 30, 40, 51],
    "channels": 16,
}
_SMOKE_DATA = {"data": {"inputs": 100}}
_FULL_DATA = {"data": {"name": "mnist", "inputs": PAPER_BATCH}}

register(
    Experiment(
        id="mimicnorm.f2.frozen-kernel",
        artifact="MN-F2",
        title="Straight ReLU MLP at He init: inputs' pre-activations correlate with depth",
        description=(
            "A 51-layer straight ReLU MLP (no bias, no normalization, He init) on a batch of"
            " inputs rescaled to equal norm; per layer, the mean pairwise cosine similarity of"
            " the pre-activations of different inputs beside the infinite-width prediction"
            " (iterates of the ReLU dual activation), over a grid of widths. `full` uses 2000"
            " MNIST inputs, the paper's batch."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_CORRELATIONS, _SMOKE_DATA),
                grid={"model.width": (16, 64)},
                seeds=1,
            ),
            "small": ScaleSpec(config=_CORRELATIONS, grid={"model.width": (32, 128, 512)}, seeds=3),
            "full": ScaleSpec(
                config=deep_merge(_CORRELATIONS, _FULL_DATA),
                grid={"model.width": (128, 512, 2048)},
                seeds=5,
            ),
        },
    )
)

register(
    Experiment(
        id="mimicnorm.f3.channel-distributions",
        artifact="MN-F3",
        title="Per-channel pre-activation distributions: plain vs BatchNorm vs weight mean",
        description=(
            "The 51-layer MLP of MN-F2 in three forms (plain, BatchNorm after every hidden linear"
            " layer, weight mean with init 2π/(π−1)): per-channel mean and spread over the inputs"
            " at several layers, and the share of each layer's variance that lies between"
            " channels rather than between inputs."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_CORRELATIONS, {**_SMOKE_DATA, "model": {"width": 32}}),
                grid={"model.variant": VARIANTS},
                seeds=1,
            ),
            "small": ScaleSpec(config=_CORRELATIONS, grid={"model.variant": VARIANTS}, seeds=3),
            "full": ScaleSpec(
                config=deep_merge(_CORRELATIONS, {**_FULL_DATA, "model": {"width": 1024}}),
                grid={"model.variant": VARIANTS},
                seeds=3,
            ),
        },
    )
)

_DECORRELATION = deep_merge(_CORRELATIONS, {"model": {"depth": 30}, "channel_layers": []})

register(
    Experiment(
        id="mimicnorm.th3.decorrelation",
        artifact="MN-TH3",
        title="Weight mean and BatchNorm decorrelate what a plain ReLU MLP correlates",
        description=(
            "Mean pairwise correlation of pre-activations per layer in a 30-layer ReLU MLP, plain"
            " (He init), with BatchNorm, and with weight mean (rows of every weight matrix after"
            " the first centred, init 2π/(π−1)), over a grid of widths, beside the infinite-width"
            " maps ρ(c) and (π·ρ(c) − 1)/(π − 1)."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_DECORRELATION, _SMOKE_DATA),
                grid={"model.variant": VARIANTS, "model.width": (16, 64)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=_DECORRELATION,
                grid={"model.variant": VARIANTS, "model.width": (64, 256, 1024)},
                seeds=3,
            ),
            "full": ScaleSpec(
                config=deep_merge(_DECORRELATION, _FULL_DATA),
                grid={"model.variant": VARIANTS, "model.width": (256, 1024, 2000)},
                seeds=5,
            ),
        },
    )
)

_NTK = {
    "task": NTK_CONDITION,
    "model": {"variant": "plain", "width": 256},
    "data": {"name": "digits", "variant": "flat", "inputs": 32},
    "depths": [1, 2, 4, 8, 16, 32],
    "parameterization": "ntk",
    "output": 0,
}

register(
    Experiment(
        id="mimicnorm.th1.ntk-condition",
        artifact="MN-TH1",
        title="Condition number of the empirical NTK vs depth: plain, BatchNorm, weight mean",
        description=(
            "Empirical NTK (one logit, linear weights, NTK parameterization) of straight ReLU MLPs"
            " at initialization on a batch of equal-norm inputs, one fresh net per depth; its"
            " condition number, the spread of its diagonal and the condition number of its"
            " correlation matrix, beside the infinite-width condition number (plain: critical,"
            " MN-TH1; BatchNorm: MN-TH2; weight mean: MN-TH3). BatchNorm nets are"
            " differentiated in train mode through the batch statistics."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_NTK, {"data": {"inputs": 12}, "depths": [1, 2, 4]}),
                grid={"model.variant": VARIANTS, "model.width": (16, 32)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=_NTK,
                grid={"model.variant": VARIANTS, "model.width": (64, 256)},
                seeds=3,
            ),
            "full": ScaleSpec(
                config=deep_merge(_NTK, {"data": {"name": "mnist", "inputs": 64}}),
                grid={"model.variant": VARIANTS, "model.width": (256, 1024)},
                seeds=5,
            ),
        },
    )
)
