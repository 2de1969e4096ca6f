"""How much a part of the book costs at full scale, and the commands that reproduce it.

Each part ends with a page "Reproducing this part at full scale" (CHAPTERS.md) built from
:func:`reproduction_plan`: one row per registry entry of the part, with its runs (grid points ×
seeds), the images its training processes (epochs × training-set size), and a GPU-hour estimate
when a GPU ``normbook bench model <id> --scale full --device cuda`` record exists for it. Without
such a record the row says so and gives the command: no estimate is ever made up. Training-set
sizes of the downloadable datasets are the published ones (they are not downloaded to plan).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from normbook.experiments.registry import Registry, default_registry
from normbook.experiments.spec import Experiment
from normbook.experiments.store import iter_records

# Published training-set sizes (CIFAR: Krizhevsky 2009; MNIST: LeCun et al. 1998; ImageNet-1k
# ILSVRC-2012: Russakovsky et al. 2015); digits is counted from the embedded data.
PUBLISHED_TRAIN_SIZES: dict[str, int] = {
    "cifar10": 50_000,
    "cifar100": 50_000,
    "mnist": 60_000,
    "imagenet": 1_281_167,
}
# Evaluation passes, data loading and checkpoints are not in the bench's training-step timing.
ESTIMATE_NOTE = "training steps only (bench images/s); evaluation and data loading not included"


def train_size(data: Mapping[str, Any]) -> int | None:
    """Training samples per epoch of a ``data`` section (``subset``, ``val_split`` applied), or
    None for a dataset whose size is not known without loading it."""
    options = dict(data)
    name = options.pop("name", None)
    if name in PUBLISHED_TRAIN_SIZES:
        n = PUBLISHED_TRAIN_SIZES[name]
    elif name == "digits":
        from normbook.data import load_dataset

        return load_dataset("digits", **options).num_train
    else:
        return None
    if options.get("subset") is not None:
        n = min(n, int(options["subset"]))
    return int(n - round(n * float(options.get("val_split", 0.0) or 0.0)))


def training_images(config: Mapping[str, Any]) -> int | None:
    """Images one run of ``config`` trains on (epochs × training-set size); None for a
    measurement task without a training section or an unknown dataset."""
    train, data = config.get("train"), config.get("data")
    if not isinstance(train, Mapping) or not isinstance(data, Mapping) or "epochs" not in train:
        return None
    n = train_size(data)
    return None if n is None else int(train["epochs"]) * n


def gpu_bench(
    entry_id: str, scale: str = "full", root: str | os.PathLike | None = None
) -> dict[str, Any] | None:
    """The newest CUDA ``bench model`` record of ``entry_id`` at ``scale`` (None if none)."""
    newest = None
    for _, record in iter_records(root, scale, f"bench.model.{entry_id}"):
        if record.get("hardware", {}).get("device") != "cuda":
            continue
        if newest is None or record["finished_at"] > newest["finished_at"]:
            newest = record
    return newest


def _entry_row(entry: Experiment, scale: str, root: str | os.PathLike | None) -> dict[str, Any]:
    spec = entry.scale(scale)
    points = entry.points(scale)
    runs = len(points) * spec.seeds
    config = entry.resolve(scale, points[0])
    images = training_images(config)
    data = config.get("data", {}).get("name") if isinstance(config.get("data"), Mapping) else None
    epochs = (
        config.get("train", {}).get("epochs") if isinstance(config.get("train"), Mapping) else None
    )
    bench = gpu_bench(entry.id, scale, root) if images is not None else None
    row: dict[str, Any] = {
        "id": entry.id,
        "artifact": entry.artifact,
        "dataset": data or "—",
        "epochs": epochs if epochs is not None else "—",
        "runs": runs,
        "images per run": images,
        "GPU images/s": None,
        "GPU-hours (all runs)": None,
        "estimate from": "",
    }
    if images is None:
        row["estimate from"] = "measurement task (no training loop to time)"
    elif bench is None:
        row["estimate from"] = (
            f"no GPU bench record: normbook bench model {entry.id} --scale {scale} --device cuda"
        )
    else:
        rate = float(bench["metrics"]["images_per_s"])
        row["GPU images/s"] = rate
        row["GPU-hours (all runs)"] = runs * images / rate / 3600.0
        row["estimate from"] = (
            f"{bench['hardware'].get('device_name', 'cuda')}, {bench['git']['commit'][:10]},"
            f" {bench['finished_at'][:10]}"
        )
    return row


def reproduction_plan(
    part: str,
    scale: str = "full",
    *,
    root: str | os.PathLike | None = None,
    registry: Registry | None = None,
) -> pd.DataFrame:
    """One row per entry of book part ``part`` (``"dbn"``, ``"ic"``, ...) that declares ``scale``:
    runs, dataset, epochs, images per run and, from GPU bench records, GPU-hours."""
    registry = default_registry() if registry is None else registry
    entries = [registry.get(i) for i in registry.ids(part)]
    rows = [_entry_row(e, scale, root) for e in entries if scale in e.scales]
    if not rows:
        raise ValueError(f"no entry of part {part!r} declares scale {scale!r}")
    return pd.DataFrame(rows)


def launch_command(
    ids: Sequence[str],
    plan: pd.DataFrame | None = None,
    *,
    scale: str = "full",
    partition: str = "PARTITION",
    margin: float = 1.5,
) -> str:
    """The ``normbook launch`` command for ``ids`` on Slurm. With a ``plan`` whose rows carry GPU
    estimates, ``--time`` is the longest single run's estimate × ``margin`` (minutes, rounded up);
    without one it is left for the user to set (``--time MINUTES``)."""
    if not ids:
        raise ValueError("launch_command needs at least one experiment id")
    minutes = None
    if plan is not None:
        rows = plan[plan["id"].isin(list(ids))]
        per_run = rows["GPU-hours (all runs)"] / rows["runs"]
        if len(rows) == len(ids) and per_run.notna().all():
            minutes = max(1, math.ceil(float(per_run.max()) * 60 * margin))
    time = str(minutes) if minutes is not None else "MINUTES"
    return (
        f"normbook launch {' '.join(ids)} --executor slurm --partition {partition}"
        f" --time {time} --scale {scale}"
    )


__all__ = [
    "ESTIMATE_NOTE",
    "PUBLISHED_TRAIN_SIZES",
    "gpu_bench",
    "launch_command",
    "reproduction_plan",
    "train_size",
    "training_images",
]
