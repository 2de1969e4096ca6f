"""Live runs for the book's widget panels: grid points computed in memory, shaped like the store.

:func:`live_curves` runs the grid points of an entry that match a partial point (for example one
learning rate, every norm) for a few seeds, without writing records, and returns the same long
table as :func:`normbook.experiments.results.load_curves`, so a live panel and its static twin
draw with the same figure builder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from normbook.config import default_device
from normbook.experiments.registry import get_experiment
from normbook.experiments.results import curve_stats, history_columns
from normbook.experiments.runner import execute, seed_list


def live_curves(
    entry_id: str,
    scale: str,
    selector: Mapping[str, Any],
    *,
    metrics: Sequence[str] = ("train_loss", "test_acc"),
    seeds: int | Sequence[int] | None = None,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Per-epoch ``metrics`` (mean, std, n over seeds) of the points matching ``selector``.

    Runs are not stored. A run that fails raises ``RuntimeError`` with its error; a diverged
    run contributes the epochs it completed.
    """
    entry = get_experiment(entry_id)
    points = entry.select_points(scale, [dict(selector)])
    knobs = list(entry.scale(scale).knobs)
    device = default_device(device)
    runs = []
    for point in points:
        for seed in seed_list(seeds, entry.scale(scale).seeds):
            record = execute(entry, scale, point, seed, device=device, run_dir=None, progress=False)
            if record["status"] == "failed":
                raise RuntimeError(f"{entry_id} {point} seed {seed} failed: {record.get('error')}")
            runs.append((point, history_columns(record["history"])))
    return curve_stats(runs, knobs, metrics)


def point_config(
    entry_id: str, scale: str, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The entry's configuration at ``scale`` for its first grid point, with ``overrides``
    (dotted paths, any value, inside or outside the grid) substituted and validated: what a live
    panel runs when a control leaves the grid."""
    from normbook.experiments.spec import set_path, thaw
    from normbook.experiments.tasks import validate_config

    entry = get_experiment(entry_id)
    config = thaw(entry.resolve(scale, entry.points(scale)[0]))
    for path, value in (overrides or {}).items():
        set_path(config, path, value, where=f"{entry_id} [{scale}] override")
    validate_config(config)
    return config
