"""The synthesis part's measurements from stored runs: leaderboards with the learning rate chosen on
the validation split, the largest stable learning rate, accuracy per batch size and depth, cost.

Every function reads the records of a ``synthesis`` entry (:mod:`normbook.experiments.entries.synthesis`)
through :func:`run_table`, one row per run. The selection rule is the protocol's: for each method
(and batch size or depth), the learning rate with the best mean validation accuracy over seeds,
a diverged seed counting at chance; the test accuracy is then read at that rate only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import pandas as pd

from normbook.experiments.results import stored_runs, summarize
from normbook.experiments.tasks_synthesis import METHOD_NAMES, METHODS, REFERENCE_METHOD

LR = "train.lr"
BATCH = "train.batch_size"
DEPTH = "model.depth"


def run_table(
    entry_id: str, scale: str | None = None, root: str | os.PathLike | None = None
) -> pd.DataFrame:
    """One row per stored run: the knobs, ``seed``, ``diverged``, ``val_acc`` and ``test_acc``
    (chance, 1/classes, for a diverged run: it predicts nothing better), ``chance``, ``stale``."""
    knobs, runs = stored_runs(entry_id, scale, root)
    rows = []
    for point, record, stale in runs:
        classes = record.get("info", {}).get("data", {}).get("num_classes", 10)
        chance = 1.0 / classes
        diverged = record["status"] == "diverged"
        row = dict(point)
        for name in ("val_acc", "test_acc"):
            value = record["metrics"].get(name)
            usable = not diverged and isinstance(value, (int, float)) and math.isfinite(value)
            row[name] = float(value) if usable else chance
        row.update(seed=record["seed"], diverged=diverged, chance=chance, stale=stale)
        rows.append(row)
    columns = [*knobs, "seed", "diverged", "val_acc", "test_acc", "chance", "stale"]
    return pd.DataFrame(rows, columns=columns)


def _summary(group: pd.DataFrame) -> dict[str, float]:
    val_mean, val_std, n = summarize(list(group["val_acc"]))
    test_mean, test_std, _ = summarize(list(group["test_acc"]))
    return {
        "val_mean": val_mean,
        "val_std": val_std,
        "test_mean": test_mean,
        "test_std": test_std,
        "n": n,
        "n_diverged": int(group["diverged"].sum()),
    }


def per_setting(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Mean/std over seeds of validation and test accuracy for every combination of ``keys``."""
    rows = [
        {
            **dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True)),
            **_summary(group),
        }
        for values, group in runs.groupby(list(keys), sort=False)
    ]
    return pd.DataFrame(rows)


def select_lr(
    runs: pd.DataFrame, by: Sequence[str] = ("method",), selection: str = "val"
) -> pd.DataFrame:
    """Per group of ``by``: the learning rate with the best mean ``selection`` accuracy (``val``,
    the protocol's rule; ``test`` shows what choosing on the test set would pick), with that
    rate's validation and test statistics. Ties go to the smaller rate."""
    if selection not in ("val", "test"):
        raise ValueError(f"selection must be 'val' or 'test', got {selection!r}")
    table = per_setting(runs, [*by, LR])
    table = table.sort_values([*by, LR]).reset_index(drop=True)
    best = table.loc[table.groupby(list(by), sort=False)[f"{selection}_mean"].idxmax()]
    return best.rename(columns={LR: "lr"}).reset_index(drop=True)


def leaderboard(runs: pd.DataFrame) -> pd.DataFrame:
    """Methods ranked by test accuracy at their validation-chosen learning rate: ``method``,
    ``name``, ``lr``, ``val_mean``, ``test_mean``, ``test_std``, ``n``, ``n_diverged``, and
    ``lr_if_test`` (the rate a choice on the test set would have made)."""
    chosen = select_lr(runs)
    by_test = select_lr(runs, selection="test").set_index("method")["lr"]
    chosen["lr_if_test"] = chosen["method"].map(by_test)
    chosen.insert(1, "name", chosen["method"].map(METHOD_NAMES))
    return chosen.sort_values("test_mean", ascending=False).reset_index(drop=True)


def largest_stable_lr(runs: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Per method: the largest learning rate of the sweep at which no seed diverged and every seed
    reached ``threshold`` validation accuracy (None if none did), and the smallest at which a seed
    diverged (None if none did)."""
    rows = []
    for method, group in runs.groupby("method", sort=False):
        trains, diverges = [], []
        for lr, at in group.groupby(LR):
            if not at["diverged"].any() and (at["val_acc"] >= threshold).all():
                trains.append(lr)
            if at["diverged"].any():
                diverges.append(lr)
        rows.append(
            {
                "method": method,
                "name": METHOD_NAMES[method],
                "largest_trainable_lr": max(trains) if trains else None,
                "smallest_diverging_lr": min(diverges) if diverges else None,
                "lrs": sorted(group[LR].unique()),
            }
        )
    return pd.DataFrame(rows)


def accuracy_by(runs: pd.DataFrame, knob: str) -> pd.DataFrame:
    """Per method and value of ``knob`` (batch size, depth): the validation-chosen learning rate
    and the test accuracy there (long table)."""
    return select_lr(runs, by=("method", knob))


def breaking_point(table: pd.DataFrame, knob: str, tolerance: float = 0.05) -> pd.DataFrame:
    """Per method, from :func:`accuracy_by`: its best test accuracy over ``knob``, and the values
    of ``knob`` at which it falls more than ``tolerance`` below that best (where it breaks)."""
    rows = []
    for method, group in table.groupby("method", sort=False):
        best = float(group["test_mean"].max())
        broken = sorted(group.loc[group["test_mean"] < best - tolerance, knob])
        rows.append(
            {
                "method": method,
                "name": METHOD_NAMES[method],
                "best_test": best,
                "broken_at": broken,
                "uses_batch_statistics": uses_batch_statistics(method),
            }
        )
    return pd.DataFrame(rows)


def uses_batch_statistics(method: str) -> bool:
    """Whether a method normalizes with statistics of the mini-batch in training (BN, DBN, IC,
    MimicNorm's last BN) rather than none (NormProp, Fixup, plain)."""
    return METHODS[method]["norm"] in ("bn", "dbn", "ic", "mimic")


def cost_table(record_metrics: dict[str, float]) -> pd.DataFrame:
    """A ``synthesis-cost`` record's metrics as one row per method: milliseconds per step, its
    ratio to BN, activation MiB, its ratio to BN, parameters; sorted by the step ratio."""
    methods = [k.removeprefix("step_ratio_") for k in record_metrics if k.startswith("step_ratio_")]
    rows = [
        {
            "method": m,
            "name": METHOD_NAMES[m],
            "step_ms": record_metrics[f"step_ms_{m}"],
            "step_ratio": record_metrics[f"step_ratio_{m}"],
            "activation_mib": record_metrics[f"activation_mib_{m}"],
            "memory_ratio": record_metrics[f"memory_ratio_{m}"],
            "parameters": int(record_metrics[f"parameters_{m}"]),
        }
        for m in methods
    ]
    table = pd.DataFrame(rows).sort_values("step_ratio").reset_index(drop=True)
    if REFERENCE_METHOD not in set(table["method"]):
        raise ValueError(f"a cost record must include the reference method {REFERENCE_METHOD!r}")
    return table
