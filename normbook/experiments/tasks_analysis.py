"""Measurement tasks of :mod:`normbook.analysis` (see :mod:`normbook.experiments.tasks`).

``mi-gaussian``: draw n = ``sample_size`` samples of a standard bivariate Gaussian with correlation ρ and estimate
I(X;Y) with the KSG k-NN estimator and the binned plug-in estimator, beside the true value
−½·log(1−ρ²). It trains nothing and runs on the CPU whatever the device. Importing this module
registers the task (the entries module that uses it imports it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import list_tasks, register_task

MI_GAUSSIAN_KEYS: frozenset[str] = frozenset({"task", "rho", "sample_size", "k", "bins"})
# estimator label -> metric of a mi-gaussian record
MI_ESTIMATORS: dict[str, str] = {"KSG": "mi_ksg", "binned": "mi_binned", "true": "mi_true"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_mi_gaussian(config: Mapping[str, Any]) -> None:
    """Known keys; ρ in (−1, 1); integer ``sample_size`` n > k >= 1; ``bins`` an int >= 2 or a
    bin rule of :func:`normbook.analysis.histogram_bins`."""
    from normbook.analysis.information import BIN_RULES

    unknown = set(config) - MI_GAUSSIAN_KEYS
    if unknown:
        raise ConfigError(
            f"mi-gaussian: unknown config keys {sorted(unknown)}; expected {sorted(MI_GAUSSIAN_KEYS)}"
        )
    missing = sorted(MI_GAUSSIAN_KEYS - set(config) - {"task"})
    if missing:
        raise ConfigError(f"mi-gaussian: config lacks {missing}")
    rho = config["rho"]
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not -1 < rho < 1:
        raise ConfigError(f"mi-gaussian: rho must be a number in (-1, 1), got {rho!r}")
    k, n = config["k"], config["sample_size"]
    if not _is_int(k) or k < 1:
        raise ConfigError(f"mi-gaussian: k must be an int >= 1, got {k!r}")
    if not _is_int(n) or n <= k:
        raise ConfigError(f"mi-gaussian: sample_size must be an int > k, got {n!r}")
    bins = config["bins"]
    if not ((_is_int(bins) and bins >= 2) or bins in BIN_RULES):
        raise ConfigError(
            f"mi-gaussian: bins must be an int >= 2 or one of {', '.join(BIN_RULES)}, got {bins!r}"
        )


def mi_gaussian(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """KSG and binned estimates of the MI of one Gaussian sample (seeded by ``seed``)."""
    from normbook.analysis.information import (
        binned_mutual_information,
        gaussian_mutual_information,
        gaussian_pair,
        histogram_bins,
        ksg_mutual_information,
    )

    validate_mi_gaussian(config)
    rho, n, k, bins = (
        float(config["rho"]),
        int(config["sample_size"]),
        int(config["k"]),
        config["bins"],
    )
    x, y = gaussian_pair(rho, n, generator=seed)
    true = gaussian_mutual_information(rho)
    ksg = ksg_mutual_information(x, y, k=k)
    binned = binned_mutual_information(x, y, bins=bins)
    metrics = {
        "mi_true": true,
        "mi_ksg": ksg,
        "mi_binned": binned,
        "ksg_error": ksg - true,
        "binned_error": binned - true,
        "bins_x": histogram_bins(n, bins, x),
        "bins_y": histogram_bins(n, bins, y),
    }
    return {"history": {}, "metrics": metrics}


def mi_gaussian_samples(
    rho: float,
    sample_size: int,
    seeds: int | Sequence[int] = 5,
    k: int = 3,
    bins: str | int = "cbrt",
) -> pd.DataFrame:
    """The ``mi-gaussian`` task at one (ρ, n) for several seeds, in memory (live panels).

    Long table: one row per seed × estimator (``KSG``, ``binned``, ``true``) with column ``mi``
    (nats); seeds are ``range(seeds)`` for a count, as :func:`normbook.experiments.run` uses.
    """
    config = {"task": "mi-gaussian", "rho": rho, "sample_size": sample_size, "k": k, "bins": bins}
    validate_mi_gaussian(config)
    chosen = range(seeds) if isinstance(seeds, int) else seeds
    rows = []
    for seed in chosen:
        metrics = mi_gaussian(config, seed=seed, device=torch.device("cpu"), run_dir=None)[
            "metrics"
        ]
        rows += [
            {"seed": seed, "estimator": label, "mi": metrics[metric]}
            for label, metric in MI_ESTIMATORS.items()
        ]
    return pd.DataFrame(rows)


def mi_gaussian_long(table: pd.DataFrame) -> pd.DataFrame:
    """A ``load("foundations.mi-gaussian", ...)`` grid as one row per point × estimator.

    Columns ``rho``, ``sample_size``, ``estimator``, ``mi_mean``, ``mi_std`` (over seeds), ``n``
    (seeds); points with no record are left out.
    """
    rows = []
    for _, point in table[table["n"] > 0].iterrows():
        for label, metric in MI_ESTIMATORS.items():
            rows.append(
                {
                    "rho": point["rho"],
                    "sample_size": point["sample_size"],
                    "estimator": label,
                    "mi_mean": point[f"{metric}_mean"],
                    "mi_std": point[f"{metric}_std"],
                    "n": point["n"],
                }
            )
    return pd.DataFrame(rows)


if "mi-gaussian" not in list_tasks():
    register_task("mi-gaussian", validate=validate_mi_gaussian)(mi_gaussian)
