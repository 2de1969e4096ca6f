"""Tasks of the foundations chapters on conditioning and whitening (``book/foundations/``).

- ``quadratic-gd``: gradient descent at the optimal step size on the 2-D least-squares problem of
  :mod:`normbook.analysis.conditioning` under one input preprocessing (raw, centred, standardized,
  whitened); records the relative excess loss per step, the measured iterations to the tolerance
  and the (κ − 1)/(κ + 1) prediction (LeCun et al. 1998).
- ``whitening-cost``: forward+backward time of full or group ZCA whitening
  (:class:`~normbook.layers.DecorrelatedBatchNorm`) relative to BatchNorm on an m×d batch (DBN
  Sec. 3.4: ``O(d²·max(m, d))`` against ``O(m·d·k_G)``). Timings depend on the machine: the
  record's provenance names it, and only the ratio to BN is meant to be compared.

Importing this module registers both tasks (``normbook.experiments.entries.foundations_conditioning``
imports it, so the registry loads them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import register_task

QUADRATIC_GD_KEYS = frozenset(
    {"task", "data", "preprocess", "tolerance", "max_iterations", "max_records"}
)
QUADRATIC_DATA_KEYS = frozenset({"rho", "mean", "scales", "num_samples"})
WHITENING_COST_KEYS = frozenset(
    {"task", "batch_size", "num_features", "group_size", "repeats", "warmup", "threads"}
)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_at_least(config: Mapping[str, Any], key: str, minimum: int, task: str) -> None:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{task}: config[{key!r}] must be an int >= {minimum}, got {value!r}")


def validate_quadratic_gd(config: Mapping[str, Any]) -> None:
    """Known keys, |ρ| < 1, two positive scales, a preprocessing name, tolerance in (0, 1)."""
    from normbook.analysis.conditioning import PREPROCESSINGS

    task = "quadratic-gd"
    unknown = set(config) - QUADRATIC_GD_KEYS
    if unknown:
        raise ConfigError(f"{task}: unknown config keys {sorted(unknown)}")
    data = config.get("data")
    if not isinstance(data, Mapping) or set(data) != QUADRATIC_DATA_KEYS:
        raise ConfigError(
            f"{task}: config['data'] must set exactly {sorted(QUADRATIC_DATA_KEYS)}, got {data!r}"
        )
    if not _number(data["rho"]) or not -1.0 < data["rho"] < 1.0:
        raise ConfigError(f"{task}: data.rho must lie in (-1, 1), got {data['rho']!r}")
    if not _number(data["mean"]):
        raise ConfigError(f"{task}: data.mean must be a finite number, got {data['mean']!r}")
    scales = data["scales"]
    if (
        not isinstance(scales, (list, tuple))
        or len(scales) != 2
        or not all(_number(s) and s > 0 for s in scales)
    ):
        raise ConfigError(f"{task}: data.scales must be two positive numbers, got {scales!r}")
    _int_at_least(data, "num_samples", 3, f"{task}: data")
    if config.get("preprocess") not in PREPROCESSINGS:
        raise ConfigError(
            f"{task}: preprocess must be one of {list(PREPROCESSINGS)}, got {config.get('preprocess')!r}"
        )
    tolerance = config.get("tolerance")
    if not _number(tolerance) or not 0.0 < tolerance < 1.0:
        raise ConfigError(f"{task}: tolerance must lie in (0, 1), got {tolerance!r}")
    _int_at_least(config, "max_iterations", 1, task)
    _int_at_least(config, "max_records", 2, task)


@register_task("quadratic-gd", validate=validate_quadratic_gd)
def quadratic_gd(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Gradient descent on the chapter's least-squares problem under ``config['preprocess']``.

    Runs in float64 on the CPU whatever ``device`` (a 2×2 problem). The seed draws the Gaussian
    sample, whose mean and covariance are then set exactly, so the results do not depend on it
    beyond round-off. History: ``epoch`` (the step number, one full-batch step per epoch, thinned
    to ``max_records``), ``relative_excess_loss`` and ``weights``; metrics: ``iterations``,
    ``predicted_iterations``, ``condition_number``, ``contraction_factor``, ``step_size``.
    """
    from normbook.analysis.conditioning import conditioning_comparison, contraction_factor

    validate_quadratic_gd(config)
    data = config["data"]
    method = config["preprocess"]
    result = conditioning_comparison(
        data["rho"],
        data["mean"],
        tuple(data["scales"]),
        methods=(method,),
        num_samples=data["num_samples"],
        tolerance=config["tolerance"],
        max_iterations=config["max_iterations"],
        max_records=config["max_records"],
        seed=seed,
    )[method]
    run = result.run
    history = {
        "epoch": list(run.steps),
        "relative_excess_loss": list(run.relative_excess),
        "weights": run.iterates.tolist(),
    }
    metrics = {
        "iterations": run.iterations,
        "predicted_iterations": result.predicted_iterations,
        "condition_number": result.condition_number,
        "contraction_factor": contraction_factor(result.condition_number),
        "step_size": run.step_size,
        "converged": run.converged,
    }
    return {"history": history, "metrics": metrics}


def validate_whitening_cost(config: Mapping[str, Any]) -> None:
    """Known keys, positive sizes, ``group_size`` None (full whitening) or a positive int."""
    task = "whitening-cost"
    unknown = set(config) - WHITENING_COST_KEYS
    if unknown:
        raise ConfigError(f"{task}: unknown config keys {sorted(unknown)}")
    _int_at_least(config, "batch_size", 2, task)
    _int_at_least(config, "num_features", 1, task)
    _int_at_least(config, "repeats", 1, task)
    _int_at_least(config, "warmup", 0, task)
    group = config.get("group_size")
    if group is not None and (isinstance(group, bool) or not isinstance(group, int) or group < 1):
        raise ConfigError(f"{task}: group_size must be None (full) or an int >= 1, got {group!r}")
    threads = config.get("threads")
    if threads is not None:
        _int_at_least(config, "threads", 1, task)


@register_task("whitening-cost", validate=validate_whitening_cost)
def whitening_cost(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Median forward+backward time of DBN (ZCA, analytic backward) and of BatchNorm, and their
    ratio, on a ``batch_size × num_features`` input on ``device`` with ``threads`` CPU threads
    (None: torch's default); the seed draws the input."""
    from normbook.analysis.conditioning import whitening_cost_ratios

    validate_whitening_cost(config)
    table = whitening_cost_ratios(
        [config["num_features"]],
        config["batch_size"],
        group_sizes=(config["group_size"],),
        repeats=config["repeats"],
        warmup=config["warmup"],
        device=device,
        seed=seed,
        threads=config.get("threads"),
    )
    row = table.iloc[0]
    metrics = {
        "ratio_to_bn": float(row["ratio_to_bn"]),
        "dbn_ms": float(row["dbn_ms"]),
        "bn_ms": float(row["bn_ms"]),
    }
    info = {"device": str(device), "threads": config.get("threads") or torch.get_num_threads()}
    return {"history": {}, "metrics": metrics, "info": info}
