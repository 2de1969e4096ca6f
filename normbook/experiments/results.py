"""Reading the store back: grid tables (mean ± std, n over seeds), curves, and stale records.

A record is *stale* when its config hash is no longer the hash of its registry entry's current
resolved configuration for its grid point (the entry changed, the point left the grid, or the
entry is gone). ``load`` uses a point's fresh records; where a point has none but stale ones, it
shows those with ``stale=True`` so the book can say the number is out of date.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from normbook.config import scale as resolve_scale
from normbook.experiments.registry import Registry, default_registry, get_experiment
from normbook.experiments.spec import ConfigError, Experiment, Point
from normbook.experiments.store import config_hash, iter_records

AGGREGATED_STATUSES: tuple[str, ...] = ("ok", "diverged")


@dataclass(frozen=True)
class StaleRecord:
    """A record that no longer matches the registry, and why."""

    path: Path
    experiment_id: str
    scale: str
    reason: str


def _current_hashes(entry: Experiment, scale: str) -> dict[str, Point]:
    return {config_hash(entry.resolve(scale, p)): p for p in entry.points(scale)}


def stale_reason(record: Mapping[str, Any], registry: Registry | None = None) -> str | None:
    """Why ``record`` is stale against ``registry`` (default: the book's), or None if fresh.

    Bench records describe hardware, not registry entries: they are never stale.
    """
    if record["kind"] != "experiment":
        return None
    registry = default_registry() if registry is None else registry
    if record["experiment_id"] not in registry:
        return "the experiment is no longer registered"
    entry = registry.get(record["experiment_id"])
    scale = record["scale"]
    if scale not in entry.scales:
        return f"the experiment no longer declares scale {scale!r}"
    hashes = _current_hashes(entry, scale)
    if record["config_hash"] in hashes:
        return None
    point = record["point"]
    for current_hash, current_point in hashes.items():
        if current_point == point:
            return f"config changed (record {record['config_hash']}, registry {current_hash})"
    return f"grid point {point} is no longer in the grid"


def stale_records(
    root: str | os.PathLike | None = None, registry: Registry | None = None
) -> list[StaleRecord]:
    """Every stale record under ``root`` (default: the results store), sorted by path."""
    registry = default_registry() if registry is None else registry
    stale = []
    for path, record in iter_records(root):
        reason = stale_reason(record, registry)
        if reason is not None:
            stale.append(StaleRecord(path, record["experiment_id"], record["scale"], reason))
    return stale


def _point_records(
    entry: Experiment, scale: str, root: str | os.PathLike | None
) -> list[tuple[Point, str, list[dict[str, Any]], bool]]:
    """Per grid point: its current hash, the records that stand for it, and whether they are stale."""
    records = [record for _, record in iter_records(root, scale, entry.id)]
    rows = []
    for point in entry.points(scale):
        hash_ = config_hash(entry.resolve(scale, point))
        fresh = [r for r in records if r["config_hash"] == hash_]
        stale = [r for r in records if r["config_hash"] != hash_ and r["point"] == point]
        chosen, is_stale = (fresh, False) if fresh or not stale else (stale, True)
        rows.append((point, hash_, sorted(chosen, key=lambda r: r["seed"]), is_stale))
    return rows


def stored_runs(
    entry_id: str,
    scale: str | None = None,
    root: str | os.PathLike | None = None,
    registry: Registry | None = None,
) -> tuple[list[str], list[tuple[Point, dict[str, Any], bool]]]:
    """The grid's knobs, and ``(point, record, is_stale)`` for every stored run of ``entry_id``
    at ``scale`` that :func:`load` aggregates (status ok or diverged), point by point."""
    entry = get_experiment(entry_id, registry)
    scale = resolve_scale(scale)
    knobs = list(entry.scale(scale).knobs)
    runs = [
        (dict(point), record, is_stale)
        for point, _, records, is_stale in _point_records(entry, scale, root)
        for record in records
        if record["status"] in AGGREGATED_STATUSES
    ]
    return knobs, runs


def _is_value(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def summarize(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std (ddof 1; NaN for one value), n) of ``values``; NaNs for none."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = math.fsum(values) / n
    if n == 1:
        return mean, math.nan, 1
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var), n


def _metric_names(groups: Iterable[list[dict[str, Any]]], extra: Iterable[str]) -> list[str]:
    names: list[str] = []
    for group in groups:
        for record in group:
            for name, value in record["metrics"].items():
                if _is_value(value) and name not in names:
                    names.append(name)
    names.extend(name for name in extra if name not in names)
    return names


def _hardware_name(hardware: Mapping[str, Any]) -> str:
    """The device a run computed on: the GPU's name, or the CPU model for CPU runs."""
    name = hardware["device_name"]
    return f"{hardware['cpu']} ({hardware['cpu_count']} cores)" if name == "cpu" else name


def _provenance(records: list[dict[str, Any]]) -> dict[str, Any]:
    def unique(values: Iterable[Any]) -> str:
        return ", ".join(sorted({str(v) for v in values if v is not None}))

    return {
        "commit": unique(r["git"]["commit"] for r in records),
        "dirty": any(bool(r["git"]["dirty"]) for r in records),
        "hardware": unique(_hardware_name(r["hardware"]) for r in records),
        "date": max((r["finished_at"] for r in records), default=None),
    }


def load(
    entry_id: str,
    scale: str | None = None,
    root: str | os.PathLike | None = None,
    registry: Registry | None = None,
    metrics: Sequence[str] = (),
) -> pd.DataFrame:
    """The grid of ``entry_id`` at ``scale`` as a table, one row per grid point.

    Columns: the knobs (dotted paths), then per final metric ``<m>_mean``, ``<m>_std``, ``<m>_n``
    over the point's ok/diverged seeds; ``n`` (records aggregated), ``n_diverged``, ``n_failed``,
    ``seeds``, ``stale``, ``config_hash`` and provenance ``commit``, ``dirty``, ``hardware``
    (GPU name, or CPU model and cores), ``date`` (latest finish, UTC ISO). A point with no
    record has ``n == 0``. Metric columns: those in the records, the paper's, and ``metrics``.
    """
    entry = get_experiment(entry_id, registry)
    scale = resolve_scale(scale)
    knobs = entry.scale(scale).knobs
    groups = _point_records(entry, scale, root)
    names = _metric_names((g[2] for g in groups), [*(r.metric for r in entry.paper), *metrics])
    rows = []
    for point, hash_, records, is_stale in groups:
        used = [r for r in records if r["status"] in AGGREGATED_STATUSES]
        row: dict[str, Any] = dict(point)
        for name in names:
            values = [float(r["metrics"][name]) for r in used if _is_value(r["metrics"].get(name))]
            row[f"{name}_mean"], row[f"{name}_std"], row[f"{name}_n"] = summarize(values)
        row.update(
            n=len(used),
            n_diverged=sum(r["status"] == "diverged" for r in used),
            n_failed=sum(r["status"] == "failed" for r in records),
            seeds=[r["seed"] for r in used],
            stale=is_stale,
            config_hash=hash_,
            **_provenance(records),
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame[[*knobs, *(c for c in frame.columns if c not in knobs)]]


def load_curves(
    entry_id: str,
    scale: str | None = None,
    metrics: Sequence[str] = ("train_loss", "test_acc"),
    root: str | os.PathLike | None = None,
    registry: Registry | None = None,
) -> pd.DataFrame:
    """Per-epoch curves of every grid point, averaged over seeds (for slider figures).

    One row per point × epoch: the knobs, ``epoch``, ``<m>_mean``, ``<m>_std``, ``<m>_n`` for
    each history field in ``metrics`` (or value logged per epoch in ``history.extras``), and
    ``stale``. Points with no record have no rows.
    """
    entry = get_experiment(entry_id, registry)
    scale = resolve_scale(scale)
    knobs = list(entry.scale(scale).knobs)
    runs = []
    for point, _, records, is_stale in _point_records(entry, scale, root):
        for record in records:
            if record["status"] not in AGGREGATED_STATUSES:
                continue
            history = history_columns(record["history"])
            if not history.get("epoch"):  # diverged before its first epoch ended: no curve
                continue
            missing = [m for m in metrics if m not in history]
            if missing:
                raise ConfigError(
                    f"{entry_id} [{scale}] seed {record['seed']}: history lacks {missing}"
                )
            runs.append(({**point, "stale": is_stale}, history))
    return curve_stats(runs, knobs, metrics, extra={"stale": "any"})


def history_columns(history: Mapping[str, Any]) -> dict[str, Any]:
    """A record's history with the per-epoch values logged by callbacks (``history["extras"]``,
    e.g. measurements) beside the loop's own columns, so that curves can be drawn from either."""
    return {**history.get("extras", {}), **history}


def curve_stats(
    runs: Sequence[tuple[Mapping[str, Any], Mapping[str, Sequence[Any]]]],
    knobs: Sequence[str],
    metrics: Sequence[str],
    extra: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Mean, std and n over seeds of each history field in ``metrics``, per point × epoch.

    ``runs`` pairs a point (knob values, plus the columns named in ``extra``) with a run's history
    (lists per field, ``epoch`` among them); runs with no completed epoch add no rows. ``extra``
    maps further columns to how they combine over seeds (e.g. ``{"stale": "any"}``). One row per
    point × epoch: the knobs, ``epoch``, ``<m>_mean``, ``<m>_std``, ``<m>_n``, then ``extra``.
    """
    extra = dict(extra or {})
    rows = [
        {**point, "epoch": epoch, **{m: history[m][i] for m in metrics}}
        for point, history in runs
        for i, epoch in enumerate(history.get("epoch", []))
    ]
    columns = [*knobs, "epoch"]
    if not rows:
        stats = [f"{m}_{s}" for m in metrics for s in ("mean", "std", "n")]
        return pd.DataFrame(columns=[*columns, *stats, *extra])
    grouped = pd.DataFrame(rows).groupby(columns, sort=False, dropna=False)
    out = grouped[list(metrics)].agg(["mean", "std", "count"])
    out.columns = [f"{m}_{'n' if s == 'count' else s}" for m, s in out.columns]
    for column, how in extra.items():
        out[column] = grouped[column].agg(how)
    return out.reset_index()


def profile_stats(
    runs: Sequence[tuple[Mapping[str, Any], Mapping[str, Sequence[Any]]]],
    knobs: Sequence[str],
    x: str,
    fields: Sequence[str],
) -> pd.DataFrame:
    """Mean, std and n over seeds of per-layer (or per-block, per-depth) history fields.

    Like :func:`curve_stats` with ``x`` (``layer``, ``block``, ...) in place of ``epoch``: one row
    per point × value of ``x`` with ``<field>_mean``, ``<field>_std``, ``<field>_n`` for each of
    ``fields`` present in the histories (None counts as missing), grouped with ``stale`` too when
    the points carry it. No rows: an empty table with the knobs and ``x``.
    """
    rows = [
        {**point, x: value, **{f: history[f][i] for f in fields if f in history}}
        for point, history in runs
        for i, value in enumerate(history[x])
    ]
    if not rows:
        return pd.DataFrame(columns=[*knobs, x])
    frame = pd.DataFrame(rows)
    present = [f for f in fields if f in frame.columns]
    frame[present] = frame[present].apply(pd.to_numeric, errors="coerce")
    group_keys = [*knobs, x, *(["stale"] if "stale" in frame.columns else [])]
    grouped = frame.groupby(group_keys, sort=False, dropna=False)[present]
    out = grouped.agg(["mean", "std", "count"])
    out.columns = [f"{f}_{'n' if s == 'count' else s}" for f, s in out.columns]
    return out.reset_index()


def cache_status(entry: Experiment, scale: str, root: str | os.PathLike | None = None) -> str:
    """``"<fresh records>/<points × seeds>"`` of ``entry`` at ``scale`` (``"-"`` if the scale is
    not declared), with ``!`` appended when some records there are stale."""
    if scale not in entry.scales:
        return "-"
    spec = entry.scales[scale]
    hashes = _current_hashes(entry, scale)
    fresh = stale = 0
    for _, record in iter_records(root, scale, entry.id):
        if record["config_hash"] in hashes and record["seed"] < spec.seeds:
            fresh += record["status"] in AGGREGATED_STATUSES
        elif record["config_hash"] not in hashes:
            stale += 1
    expected = len(hashes) * spec.seeds
    return f"{fresh}/{expected}" + ("!" if stale else "")
