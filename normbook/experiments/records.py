"""Reading one record: its provenance as a table, what it lacks, and how its configuration
differs from another (the chapter "How to read this book's tables", DESIGN.md "A result is a JSON
record").

* :func:`provenance_table`: the fields that say where, when and with what a record was produced
  (experiment, scale, seed, config hash, wall time, memory, hardware, software, git commit), one
  row each, read from the record itself;
* :func:`missing_provenance`: the provenance a record should carry and does not;
* :func:`config_changes`: the dotted paths at which two configurations differ (why a record went
  stale);
* :func:`with_scale_config`: a copy of a registry entry with one scale's base configuration
  changed, for showing staleness on a temporary store without touching the book's registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pandas as pd

from normbook.experiments.spec import Experiment, ScaleSpec, deep_merge, get_path
from normbook.experiments.store import config_hash

# (label, dotted path in the record): what the book calls each provenance field
PROVENANCE_FIELDS: tuple[tuple[str, str], ...] = (
    ("experiment id", "experiment_id"),
    ("paper artifact", "artifact_id"),
    ("scale", "scale"),
    ("seed", "seed"),
    ("grid point", "point"),
    ("config hash", "config_hash"),
    ("status", "status"),
    ("wall time (s)", "wall_time"),
    ("peak GPU memory (bytes)", "peak_memory"),
    ("peak resident memory (bytes)", "max_rss"),
    ("processes (DDP world size)", "world_size"),
    ("CPU", "hardware.cpu"),
    ("CPU cores", "hardware.cpu_count"),
    ("system", "hardware.system"),
    ("device", "hardware.device_name"),
    ("GPU", "hardware.gpu"),
    ("GPU count", "hardware.gpu_count"),
    ("python", "software.python"),
    ("torch", "software.torch"),
    ("CUDA", "software.cuda"),
    ("numpy", "software.numpy"),
    ("normbook", "software.normbook"),
    ("git commit", "git.commit"),
    ("uncommitted changes", "git.dirty"),
    ("started (UTC)", "started_at"),
    ("finished (UTC)", "finished_at"),
)
# what a record must hold besides the provenance above: the run itself
CONTENT_FIELDS: tuple[str, ...] = ("config", "history", "metrics")
# may be null: peak GPU memory on a CPU run, the GPU of a CPU machine, CUDA of a CPU build,
# the artifact of an untagged run, "dirty" outside a checkout
NULLABLE: frozenset[str] = frozenset(
    {"artifact_id", "peak_memory", "max_rss", "hardware.gpu", "software.cuda", "git.dirty"}
)

_ABSENT = object()


def _value(record: Mapping[str, Any], path: str) -> Any:
    try:
        return get_path(record, path)
    except KeyError:
        return _ABSENT


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def provenance_table(record: Mapping[str, Any]) -> pd.DataFrame:
    """One row per provenance field of ``record``: ``field`` (label), ``key`` (dotted path in
    the JSON) and ``value`` (as text; "—" for null). Absent fields raise ``KeyError``."""
    rows = []
    for label, path in PROVENANCE_FIELDS:
        value = _value(record, path)
        if value is _ABSENT:
            raise KeyError(f"record lacks provenance field {path!r} ({label})")
        rows.append({"field": label, "key": path, "value": _show(value)})
    return pd.DataFrame(rows, columns=["field", "key", "value"])


def missing_provenance(record: Mapping[str, Any]) -> list[str]:
    """Dotted paths of what ``record`` should hold and does not: every provenance field (null
    only where :data:`NULLABLE` allows), a non-empty config whose hash is ``config_hash``, a
    history (non-empty for an ``ok`` run: a run that diverged in its first epoch has none) and
    metrics. Empty for a complete record."""
    missing = []
    for _, path in PROVENANCE_FIELDS:
        value = _value(record, path)
        if value is _ABSENT or (value is None and path not in NULLABLE):
            missing.append(path)
    for path in CONTENT_FIELDS:
        value = _value(record, path)
        # a run that diverged (or failed) in its first epoch has an empty history
        may_be_empty = path == "history" and record.get("status") != "ok"
        if not isinstance(value, Mapping) or not (value or may_be_empty):
            missing.append(path)
    config = _value(record, "config")
    if isinstance(config, Mapping) and config and "config_hash" not in missing:
        if config_hash(config) != record["config_hash"]:
            missing.append("config_hash (not the hash of config)")
    return missing


def config_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = ""
) -> list[tuple[str, Any, Any]]:
    """``(dotted path, old value, new value)`` wherever ``old`` and ``new`` differ, sorted; a key
    present on one side only has ``None`` on the other."""
    changes: list[tuple[str, Any, Any]] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changes.extend(config_changes(a, b, f"{path}."))
        elif a != b or (key in old) != (key in new):
            changes.append((path, a, b))
    return changes


def with_scale_config(entry: Experiment, scale: str, override: Mapping[str, Any]) -> Experiment:
    """A copy of ``entry`` whose ``scale`` base configuration has ``override`` merged in (same
    id, grid and seeds): what the registry would hold after someone edited that scale."""
    spec = entry.scale(scale)
    changed = ScaleSpec(config=deep_merge(spec.config, override), grid=spec.grid, seeds=spec.seeds)
    return dataclasses.replace(entry, scales={**entry.scales, scale: changed})
