"""Tasks and record readers of MimicNorm's training chapters (``book/mimicnorm/``).

- ``mimicnorm.memory`` (MN-T1, MN-T3): the activation memory of one forward pass of a model on a
  batch, counted as the bytes autograd saves for backward
  (:func:`normbook.analysis.memory.activation_memory`), at a few small *probe* batch sizes on
  the CPU. Saved bytes are an affine function of the batch size (every saved activation has the
  batch as its leading dimension; only BatchNorm's per-channel statistics do not), so three
  probes check the line exactly and give its value at the paper's batch (``batch_size``), which
  is reported as an *extrapolation*. On CUDA the task also measures it at ``batch_size`` directly
  and runs one real training step (forward, backward, SGD with momentum, fp32) to record
  ``torch.cuda.max_memory_allocated`` (``cuda_peak_mib``), the number closest to the paper's
  GPU memory column.
- Readers: :func:`stability_table` (MN-T2: final test accuracy per grid point with every diverged
  seed counted at chance, as the paper's 1.00 % entries do) and :func:`step_traces` (MN-B2: the
  per-step logit-variance traces of :mod:`normbook.experiments.measures_mimicnorm`).

Importing this module registers the task (``normbook.experiments.entries.mimicnorm_training``
imports it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import register_task

MEMORY = "mimicnorm.memory"
MIB = 2**20
_MEMORY_KEYS = frozenset({"task", "model", "input", "batch_size", "probe_batches"})
_INPUT_KEYS = frozenset({"channels", "size", "classes"})
MOMENTUM_BUFFERS = 1  # SGD with momentum keeps one buffer per parameter (the paper's optimizer)


# -- validation --------------------------------------------------------------------------------
def _int_at_least(value: Any, minimum: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{MEMORY}: {where} must be an int >= {minimum}, got {value!r}")
    return value


def validate_memory(config: Mapping[str, Any]) -> None:
    """Known keys; a registered model with a ``name``; an input shape; a batch size; at least
    three increasing probe batches of 2 or more (BatchNorm1d needs two samples)."""
    from normbook.models import list_models

    unknown = set(config) - _MEMORY_KEYS
    if unknown:
        raise ConfigError(f"{MEMORY}: unknown config keys {sorted(unknown)}")
    model = config.get("model")
    if not isinstance(model, Mapping) or model.get("name") not in list_models():
        raise ConfigError(f"{MEMORY}: config['model'] needs the 'name' of a registered model")
    shape = config.get("input")
    if not isinstance(shape, Mapping) or set(shape) != _INPUT_KEYS:
        raise ConfigError(f"{MEMORY}: config['input'] must set exactly {sorted(_INPUT_KEYS)}")
    for key in sorted(_INPUT_KEYS):
        _int_at_least(shape[key], 1, f"input.{key}")
    _int_at_least(config.get("batch_size"), 2, "batch_size")
    probes = config.get("probe_batches")
    if (
        not isinstance(probes, (list, tuple))
        or len(probes) < 3
        or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 2 for b in probes)
        or list(probes) != sorted(set(probes))
    ):
        raise ConfigError(
            f"{MEMORY}: probe_batches must be >= 3 increasing ints >= 2, got {probes!r}"
        )


# -- the task ----------------------------------------------------------------------------------
def build_memory_model(config: Mapping[str, Any]) -> torch.nn.Module:
    """The model of a memory configuration (``build_model(name, classes, **options)``)."""
    from normbook.models import build_model

    options = dict(config["model"])
    name = options.pop("name")
    return build_model(name, num_classes=config["input"]["classes"], **options)


def _batch(config: Mapping[str, Any], size: int, generator: torch.Generator) -> torch.Tensor:
    shape = config["input"]
    return torch.randn(size, shape["channels"], shape["size"], shape["size"], generator=generator)


def affine_fit(batches: Sequence[int], values: Sequence[int]) -> tuple[float, float, bool]:
    """(intercept, slope, exact) of the line through ``(batch, bytes)`` from the first two points;
    ``exact`` says whether every point lies on it to the byte."""
    (b0, v0), (b1, v1) = (batches[0], values[0]), (batches[1], values[1])
    slope = (v1 - v0) / (b1 - b0)
    intercept = v0 - slope * b0
    exact = all(abs(intercept + slope * b - v) < 0.5 for b, v in zip(batches, values, strict=True))
    return intercept, slope, exact


def model_state_bytes(model: torch.nn.Module) -> dict[str, int]:
    """Bytes of the parameters, their gradients and SGD's momentum buffers, and of the buffers."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return {
        "parameter_bytes": params,
        "buffer_bytes": buffers,
        "state_bytes": params * (2 + MOMENTUM_BUFFERS) + buffers,
    }


def _cuda_peak(model: torch.nn.Module, x: torch.Tensor, classes: int, device: torch.device) -> int:
    """``torch.cuda.max_memory_allocated`` over a second training step (the first allocates the
    gradients and momentum buffers, which stay): forward, cross-entropy, backward, SGD step."""
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = x.to(device)
    y = torch.randint(0, classes, (x.shape[0],), device=device)
    peak = 0
    for _ in range(2):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        optimizer.zero_grad(set_to_none=False)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        del loss
    return int(peak)


@register_task(MEMORY, validate=validate_memory)
def memory(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Saved-for-backward bytes at the probe batches (CPU), the exact line through them and its
    value at ``batch_size``; on CUDA the measured value there and the peak of a training step.

    History: ``batch``, ``activation_bytes``, ``num_saved`` per probe. Metrics (MiB = 2²⁰ bytes):
    ``activation_mib`` (extrapolated to ``batch_size``; the paper's batch), ``activation_mib_per_sample``,
    ``fixed_activation_kib`` (the intercept: per-channel statistics), ``linear_exact``,
    ``input_mib``, ``state_mib`` (parameters, gradients, momentum, buffers), ``footprint_mib``
    (activations + input + state: what training holds, without workspace or allocator cache),
    ``parameters``, and on CUDA ``cuda_activation_mib`` and ``cuda_peak_mib``.
    """
    from normbook.analysis.memory import activation_memory

    validate_memory(config)
    torch.manual_seed(seed)
    model = build_memory_model(config)
    generator = torch.Generator().manual_seed(seed)
    probes = list(config["probe_batches"])
    history: dict[str, list[Any]] = {"batch": probes, "activation_bytes": [], "num_saved": []}
    for size in probes:
        counted = activation_memory(model, _batch(config, size, generator))
        history["activation_bytes"].append(counted.activation_bytes)
        history["num_saved"].append(counted.num_saved)
    intercept, slope, exact = affine_fit(probes, history["activation_bytes"])
    batch_size = config["batch_size"]
    shape = config["input"]
    input_bytes = batch_size * shape["channels"] * shape["size"] ** 2 * 4  # float32 batch
    state = model_state_bytes(model)
    activation = intercept + slope * batch_size
    metrics: dict[str, Any] = {
        "activation_mib": activation / MIB,
        "activation_mib_per_sample": slope / MIB,
        "fixed_activation_kib": intercept / 2**10,
        "linear_exact": exact,
        "input_mib": input_bytes / MIB,
        "state_mib": state["state_bytes"] / MIB,
        "footprint_mib": (activation + input_bytes + state["state_bytes"]) / MIB,
        "parameters": sum(p.numel() for p in model.parameters()),
        "cuda_activation_mib": None,
        "cuda_peak_mib": None,
    }
    if device.type == "cuda":
        x = _batch(config, batch_size, generator).to(device)
        model = model.to(device)
        metrics["cuda_activation_mib"] = activation_memory(model, x).activation_bytes / MIB
        metrics["cuda_peak_mib"] = _cuda_peak(model, x, shape["classes"], device) / MIB
    return {"history": history, "metrics": metrics}


# -- reading records back ----------------------------------------------------------------------
def _fresh_records(
    entry_id: str, scale: str, root: str | os.PathLike | None
) -> list[tuple[dict[str, Any], list[dict[str, Any]], bool]]:
    """Per grid point: its ok and diverged records (fresh, else stale ones of the point)."""
    from normbook.experiments.registry import get_experiment
    from normbook.experiments.store import config_hash, iter_records

    entry = get_experiment(entry_id)
    records = [
        r for _, r in iter_records(root, scale, entry.id) if r["status"] in ("ok", "diverged")
    ]
    out = []
    for point in entry.points(scale):
        hash_ = config_hash(entry.resolve(scale, point))
        fresh = [r for r in records if r["config_hash"] == hash_]
        stale = [r for r in records if r["config_hash"] != hash_ and r["point"] == point]
        chosen = fresh or stale
        if chosen:
            out.append((point, sorted(chosen, key=lambda r: r["seed"]), not fresh))
    return out


def final_accuracy(record: Mapping[str, Any], num_classes: int) -> float:
    """A record's final test accuracy, or chance (1/classes) if it diverged: a diverged net
    predicts no better than chance (the paper's Table 2 writes 1.00 % for CIFAR-100)."""
    if record["status"] == "diverged" or record["metrics"].get("test_acc") is None:
        return 1.0 / num_classes
    return float(record["metrics"]["test_acc"])


def stability_table(
    entry_id: str, scale: str = "small", root: str | os.PathLike | None = None
) -> pd.DataFrame:
    """MN-T2 from the store: one row per grid point with ``acc_mean``/``acc_std``/``n`` over
    seeds (diverged seeds at chance), ``n_diverged`` and ``stale``. Empty if there is none."""
    rows = []
    for point, records, stale in _fresh_records(entry_id, scale, root):
        classes = int(records[0]["info"].get("data", {}).get("num_classes", 10) or 10)
        values = pd.Series([final_accuracy(r, classes) for r in records], dtype=float)
        rows.append(
            {
                **point,
                "acc_mean": float(values.mean()),
                "acc_std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                "n": len(values),
                "n_diverged": sum(r["status"] == "diverged" for r in records),
                "stale": stale,
            }
        )
    return pd.DataFrame(rows)


def trace_rows(
    point: Mapping[str, Any], seed: int, history: Mapping[str, Any], status: str = "ok"
) -> list[dict[str, Any]]:
    """Long rows (point, seed, step, logit_var, logit_batch_var, diverged) of one run's MN-B2
    traces (``history.summary`` of a run with the ``mimicnorm.logit_variance`` measure)."""
    summary = history.get("summary", {})
    running = summary.get("logit_var_steps", [])
    batch = summary.get("logit_batch_var_steps", [])
    return [
        {
            **point,
            "seed": seed,
            "step": step + 1,
            "logit_var": r,
            "logit_batch_var": b,
            "diverged": status == "diverged",
        }
        for step, (r, b) in enumerate(zip(running, batch, strict=True))
    ]


def step_traces(
    entry_id: str, scale: str = "small", root: str | os.PathLike | None = None
) -> pd.DataFrame:
    """MN-B2 from the store: every run's per-step logit-variance traces as one long table
    (knobs, ``seed``, ``step``, ``logit_var``, ``logit_batch_var``, ``diverged``, ``stale``)."""
    rows = []
    for point, records, stale in _fresh_records(entry_id, scale, root):
        for record in records:
            for row in trace_rows(point, record["seed"], record["history"], record["status"]):
                rows.append({**row, "stale": stale})
    return pd.DataFrame(rows)


def memory_lines(
    point: Mapping[str, Any],
    history: Mapping[str, Any],
    metrics: Mapping[str, Any],
    batches: Sequence[int],
) -> list[dict[str, Any]]:
    """Rows (point, batch, activation_mib, measured) of one memory record: its probes as
    measured, and the line through them at ``batches`` (for figures of MiB against batch)."""
    intercept, slope, _ = affine_fit(history["batch"], history["activation_bytes"])
    rows = [
        {**point, "batch": b, "activation_mib": v / MIB, "measured": True}
        for b, v in zip(history["batch"], history["activation_bytes"], strict=True)
    ]
    rows += [
        {**point, "batch": b, "activation_mib": (intercept + slope * b) / MIB, "measured": False}
        for b in batches
    ]
    return rows


def live_memory(
    config: Mapping[str, Any], norms: Sequence[str], batches: Sequence[int] = (2, 16, 64, 256)
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the memory task on the CPU for each norm of ``norms`` (seed 0), without storing.

    Returns (metrics: one row per norm, lines: :func:`memory_lines` rows per norm)."""
    from normbook.experiments.spec import deep_merge

    rows, lines = [], []
    for norm in norms:
        result = memory(
            deep_merge(config, {"model": {"norm": norm}}), seed=0, device=torch.device("cpu")
        )
        rows.append({"model.norm": norm, **result["metrics"]})
        lines += memory_lines({"model.norm": norm}, result["history"], result["metrics"], batches)
    return pd.DataFrame(rows), pd.DataFrame(lines)


def memory_records(
    entry_id: str, scale: str = "small", root: str | os.PathLike | None = None
) -> list[tuple[dict[str, Any], dict[str, Any], bool]]:
    """(point, record, stale) of a memory entry's stored records (seed 0, one per norm)."""
    return [
        (point, records[0], stale)
        for point, records, stale in _fresh_records(entry_id, scale, root)
    ]


__all__ = [
    "MEMORY",
    "affine_fit",
    "build_memory_model",
    "final_accuracy",
    "live_memory",
    "memory_lines",
    "memory_records",
    "memory",
    "model_state_bytes",
    "stability_table",
    "step_traces",
    "trace_rows",
    "validate_memory",
]
