"""How stable a training run is: oscillation of its test-accuracy curve and spread over seeds
(PAPERS.md IC-F4: "more stable training process").

The IC paper judges stability by eye from single curves (Fig. 4). The book measures two things:

- **epoch-to-epoch oscillation** of one run's test accuracy :math:`a_1, \\dots, a_T`: the mean
  fall :math:`\\frac{1}{T-1}\\sum_{t=2}^T \\max(0, a_{t-1} - a_t)`, i.e. how much accuracy is lost
  from one epoch to the next, on average. A curve that only rises scores 0, however fast it
  rises; a curve that rises and falls back scores the falls. (It equals half of the total
  variation in excess of the net change: :math:`\\tfrac12(\\sum|a_t - a_{t-1}| - (a_T - a_1))`
  divided by :math:`T-1`.) ``start`` restricts it to epochs from a given one on (e.g. after
  the first learning-rate drop).
- **seed spread**: the standard deviation over seeds of the test accuracy at an epoch (final
  accuracy, or averaged over epochs), i.e. how much the outcome depends on the seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd


def _values(curve: Sequence[float | None], name: str) -> list[float]:
    if isinstance(curve, (str, bytes)) or not isinstance(curve, Sequence | pd.Series):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(curve).__name__}")
    values = [float(v) for v in curve if v is not None]
    if any(not math.isfinite(v) for v in values):
        raise ValueError(f"{name} has non-finite values")
    return values


def epoch_oscillation(curve: Sequence[float | None], *, start: int = 1) -> float:
    """Mean epoch-to-epoch fall of ``curve`` from the ``start``-th (1-based) value on (see the
    module docstring); ``None`` entries (epochs not evaluated) are skipped. NaN with fewer than
    two values."""
    if isinstance(start, bool) or not isinstance(start, int) or start < 1:
        raise ValueError(f"start must be an int >= 1, got {start!r}")
    values = _values(list(curve)[start - 1 :], "curve")
    if len(values) < 2:
        return math.nan
    falls = [max(0.0, a - b) for a, b in zip(values[:-1], values[1:], strict=True)]
    return math.fsum(falls) / len(falls)


def excess_variation(curve: Sequence[float | None], *, start: int = 1) -> float:
    """Total variation of ``curve`` minus its net change, per step: the back-and-forth part.

    Equals ``2 · epoch_oscillation`` when the curve ends above where it started.
    """
    values = _values(list(curve)[start - 1 :], "curve")
    if len(values) < 2:
        return math.nan
    total = math.fsum(abs(b - a) for a, b in zip(values[:-1], values[1:], strict=True))
    return (total - abs(values[-1] - values[0])) / (len(values) - 1)


def seed_spread(curves: Sequence[Sequence[float | None]], *, epoch: int | None = None) -> float:
    """Sample standard deviation over seeds (ddof 1) of the curves' value at ``epoch`` (1-based;
    ``None``: the mean over epochs of the per-epoch standard deviation). Curves must have equal
    lengths; NaN for fewer than two curves."""
    rows = [_values(c, "curve") for c in curves]
    if len(rows) < 2:
        return math.nan
    length = len(rows[0])
    if any(len(r) != length for r in rows):
        raise ValueError(f"curves have different lengths: {[len(r) for r in rows]}")
    if length == 0:
        return math.nan

    def std(column: list[float]) -> float:
        mean = math.fsum(column) / len(column)
        return math.sqrt(math.fsum((v - mean) ** 2 for v in column) / (len(column) - 1))

    if epoch is not None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= length:
            raise ValueError(f"epoch must be an int in [1, {length}], got {epoch!r}")
        return std([r[epoch - 1] for r in rows])
    return math.fsum(std([r[t] for r in rows]) for t in range(length)) / length


def stability_table(
    runs: pd.DataFrame,
    by: Sequence[str],
    *,
    metric: str = "test_acc",
    start: int = 1,
) -> pd.DataFrame:
    """Per group of ``by`` (e.g. the unit): final ``metric`` mean and seed spread, mean per-seed
    oscillation (± its std over seeds) and mean per-epoch seed spread.

    ``runs`` is long-form, one row per run × epoch, with columns ``by``, ``seed``, ``epoch`` and
    ``metric`` (:func:`normbook.experiments.tasks_ic_training.run_histories` returns it).
    """
    missing = [c for c in [*by, "seed", "epoch", metric] if c not in runs.columns]
    if missing:
        raise ValueError(f"runs lacks column(s) {missing}; it has {list(runs.columns)}")
    rows: list[dict[str, Any]] = []
    for key, group in runs.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        curves = [
            g.sort_values("epoch")[metric].tolist() for _, g in group.groupby("seed", sort=True)
        ]
        oscillations = [epoch_oscillation(c, start=start) for c in curves]
        finals = [c[-1] for c in curves]
        n = len(curves)
        mean_osc = math.fsum(oscillations) / n
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        row.update(
            n=n,
            final_mean=math.fsum(finals) / n,
            final_std=seed_spread([[f] for f in finals], epoch=1) if n > 1 else math.nan,
            oscillation_mean=mean_osc,
            oscillation_std=(
                math.sqrt(math.fsum((o - mean_osc) ** 2 for o in oscillations) / (n - 1))
                if n > 1
                else math.nan
            ),
            seed_spread=seed_spread(curves) if n > 1 else math.nan,
        )
        rows.append(row)
    return pd.DataFrame(rows)
