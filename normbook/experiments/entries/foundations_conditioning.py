"""Entries of the foundations chapters on conditioning (``why-normalize``) and whitening
(``standardize-vs-whiten``): a gradient-descent grid over the input correlation and a layer-timing
grid of whitening against BatchNorm."""

from __future__ import annotations

import normbook.experiments.tasks_conditioning  # noqa: F401  (registers the tasks)
from normbook.experiments.registry import register
from normbook.experiments.spec import Experiment, ScaleSpec, deep_merge

PREPROCESSINGS = ("raw", "center", "standardize", "whiten")

_QUADRATIC_GD = {
    "task": "quadratic-gd",
    "data": {"rho": 0.8, "mean": 10.0, "scales": [1.0, 2.0], "num_samples": 256},
    "preprocess": "raw",
    "tolerance": 1e-8,
    "max_iterations": 100_000,
    "max_records": 200,
}

register(
    Experiment(
        id="foundations.conditioning-gd",
        artifact="BOOK-CONDITIONING",
        title="Gradient descent on 2-D least squares: raw, centred, standardized, whitened inputs",
        description=(
            "Full-batch gradient descent at the optimal step size 2/(λ_min + λ_max) on a 2-D"
            " least-squares problem whose inputs have correlation ρ, mean 10·(1, 1) and standard"
            " deviations (1, 2), with the inputs raw, centred, standardized (BatchNorm's transform)"
            " or ZCA-whitened (DBN's). Records the relative excess loss per step and the steps to"
            " reach 1e-8 beside the (κ − 1)/(κ + 1) prediction (LeCun et al. 1998). The sample's"
            " moments are set exactly, so one seed suffices; `full` refines the ρ grid."
        ),
        scales={
            "smoke": ScaleSpec(
                config=_QUADRATIC_GD,
                grid={"data.rho": (0.0, 0.9), "preprocess": PREPROCESSINGS},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=_QUADRATIC_GD,
                grid={
                    "data.rho": (-0.99, -0.9, -0.6, 0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99),
                    "preprocess": PREPROCESSINGS,
                },
                seeds=1,
            ),
            "full": ScaleSpec(
                config=deep_merge(_QUADRATIC_GD, {"max_records": 1000}),
                grid={
                    "data.rho": tuple(round(-0.99 + 0.01 * k, 2) for k in range(199)),
                    "preprocess": PREPROCESSINGS,
                },
                seeds=1,
            ),
        },
    )
)

_WHITENING_COST = {
    "task": "whitening-cost",
    "batch_size": 1024,
    "num_features": 64,
    "group_size": None,
    "repeats": 20,
    "warmup": 3,
    "threads": 1,
}

register(
    Experiment(
        id="foundations.whitening-cost",
        artifact="BOOK-WHITENING-COST",
        title="Cost of whitening: DecorrelatedBatchNorm time relative to BatchNorm, by d and m",
        description=(
            "Median forward+backward time of DecorrelatedBatchNorm (ZCA, analytic backward) over"
            " BatchNorm on the same m×d batch, timed alternately, for full whitening"
            " (O(d²·max(m, d))) and groups of 16 (O(m·d·k_G)), DBN Sec. 3.4 (PAPERS.md DBN-S34)."
            " Seeds repeat the timing on a fresh input; CPU timings use one thread, which other"
            " processes on a shared machine disturb far less. Times depend on the machine (the"
            " record names it); only the ratio is meant to be compared. `full` is the same grid,"
            " larger, on a GPU."
        ),
        scales={
            "smoke": ScaleSpec(
                config=deep_merge(_WHITENING_COST, {"repeats": 3, "warmup": 1}),
                grid={"batch_size": (64,), "num_features": (8, 32), "group_size": (None, 16)},
                seeds=1,
            ),
            "small": ScaleSpec(
                config=_WHITENING_COST,
                grid={
                    "batch_size": (64, 256, 1024),
                    "num_features": (8, 16, 32, 64, 128, 256, 512),
                    "group_size": (None, 16),
                },
                seeds=3,
            ),
            "full": ScaleSpec(
                config=deep_merge(_WHITENING_COST, {"repeats": 50, "warmup": 10, "threads": None}),
                grid={
                    "batch_size": (256, 1024, 4096, 16384),
                    "num_features": (16, 32, 64, 128, 256, 512, 1024, 2048),
                    "group_size": (None, 16),
                },
                seeds=3,
            ),
        },
    )
)
