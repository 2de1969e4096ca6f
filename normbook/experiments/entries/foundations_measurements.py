"""Entries of the foundations chapter "Measurements used across parts" (measurements.ipynb).

``foundations.mi-gaussian``: the mutual-information estimators of :mod:`normbook.analysis` (used
by IC-TH1) on a bivariate Gaussian with known I = −½·log(1−ρ²), over ρ and the sample size n (knob ``sample_size``).
CPU-only at every scale: it estimates, it does not train.
"""

from __future__ import annotations

import normbook.experiments.tasks_analysis  # noqa: F401  (registers the "mi-gaussian" task)
from normbook.experiments.registry import register
from normbook.experiments.spec import Experiment, ScaleSpec, deep_merge

_MI_GAUSSIAN = {"task": "mi-gaussian", "rho": 0.5, "sample_size": 1000, "k": 3, "bins": "cbrt"}

register(
    Experiment(
        id="foundations.mi-gaussian",
        artifact="BOOK-MEASUREMENTS",
        title="Mutual-information estimators (KSG and binned) on a Gaussian pair with known MI",
        description=(
            "n samples of a standard bivariate Gaussian with correlation rho; I(X;Y) estimated"
            " by the Kraskov-Stögbauer-Grassberger k-NN estimator 1 (k = 3) and by the plug-in"
            " estimator on equal-width bins (ceil(n^(1/3)) per variable), beside the true value"
            " -0.5*log(1 - rho^2). The static twin of the measurements chapter plots estimate"
            " against n with a slider over rho (mean ± std over seeds)."
        ),
        scales={
            "smoke": ScaleSpec(
                config=_MI_GAUSSIAN,
                grid={"rho": (0.0, 0.9), "sample_size": (100, 1000)},
                seeds=2,
            ),
            "small": ScaleSpec(
                config=_MI_GAUSSIAN,
                grid={
                    "rho": (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99),
                    "sample_size": (100, 300, 1000, 3000),
                },
                seeds=5,
            ),
            "full": ScaleSpec(
                config=deep_merge(_MI_GAUSSIAN, {"sample_size": 10000}),
                grid={
                    "rho": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999),
                    "sample_size": (100, 300, 1000, 3000, 10000, 30000, 100000),
                },
                seeds=20,
            ),
        },
    )
)
