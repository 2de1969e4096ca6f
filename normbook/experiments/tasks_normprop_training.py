"""Tasks and measurements of the NormProp training chapters (``book/normprop/inside-a-resnet``,
``book/normprop/tables-2-4``; PAPERS.md NP-F2, NP-T1, NP-T2, NP-T3, NP-T4).

- measure ``residual-delta``: after every ``every``-th epoch, Δ of every residual block (NP-F2:
  mean over positions of ‖x_l − x_{l+1}‖₂, :func:`normbook.analysis.activity.residual_deltas`)
  on a fixed probe batch (the first ``probe`` images of ``split``), in eval mode; logged as the
  list ``residual_delta`` (one value per block, None where the block changes the shape: the
  elementwise difference is undefined there).
- measure ``last-activation``: NP-T1's numbers of the last activation before pooling
  (:func:`normbook.models.last_activation`) on the probe batch: ``last_act_mean``,
  ``last_act_std`` (over all its entries) and ``last_act_nzr`` (non-zero ratio).
- task ``normprop.halve-lr-until-trainable``: the paper's rule "the default initial learning rate
  is 0.1, but we decrease it by half until training is feasible" (Shang et al. 2017, Experiments).
  A ``classify`` run at ``train.lr``; while the engine records divergence (or, with
  ``lr_rule.min_train_acc``, the final training accuracy stays below it), the run is repeated from
  scratch with the learning rate times ``lr_rule.factor``, at most ``lr_rule.max_attempts`` times.
  Every attempt (lr, diverged, why, epochs, accuracies) is kept in the record (``info.lr_attempts``);
  the history and metrics are those of the first trainable attempt (the last one if none is).
  ``classify`` adds the final value of every per-epoch measurement to the metrics, with the
  papers' units (``test_top5_error_pct`` from the built-in ``topk`` measurement, NP-T4).
- :func:`load_block_deltas` / :func:`live_block_deltas`: per-block Δ of stored (or live) runs as
  one long table for the figures; :func:`run_metrics`: final metrics per run (NP-T1, medians);
  :func:`load_attempts`: every attempt of the learning-rate rule in the stored runs.

Importing this module registers the measures and the task
(``normbook.experiments.entries.normprop_training`` imports it).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from normbook.experiments.measures import register_measure
from normbook.experiments.results import stored_runs
from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import CLASSIFY_KEYS, classify, register_task, validate_classify

HALVING_TASK = "normprop.halve-lr-until-trainable"
RESIDUAL_DELTA = "residual-delta"
LAST_ACTIVATION = "last-activation"
DELTA_FIELD = "residual_delta"
ACTIVATION_FIELDS: tuple[str, ...] = ("last_act_mean", "last_act_std", "last_act_nzr")
LR_RULE_KEY = "lr_rule"
LR_RULE_DEFAULTS: dict[str, Any] = {"factor": 0.5, "max_attempts": 6, "min_train_acc": None}
PAPER_INITIAL_LR = 0.1  # Shang et al. 2017: "the default initial learning rate is 0.1"


# -- measurements ---------------------------------------------------------------------------------
def probe_batch(data: Any, split: str = "test", size: int = 256) -> torch.Tensor:
    """The first ``size`` inputs of ``split`` in evaluation order (no augmentation): the same
    images after every epoch, so a change of Δ is a change of the model, not of the batch."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"probe size must be an int >= 1, got {size!r}")
    if split not in data.splits:
        raise ConfigError(f"probe split {split!r} not in {data.splits}")
    x, _ = next(iter(data.eval_batches(split, size)))
    return x


class _ProbeMeasure:
    """Shared part of the per-epoch probes: a fixed batch, eval mode, no grad, fp32, every k."""

    def __init__(self, model: torch.nn.Module, data: Any, *, probe: int, split: str, every: int):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"measure every must be an int >= 1, got {every!r}")
        if isinstance(probe, bool) or not isinstance(probe, int) or probe < 1:
            raise ConfigError(f"measure probe must be an int >= 1, got {probe!r}")
        if split not in data.splits:
            raise ConfigError(f"measure split {split!r} not in {data.splits}")
        self.model, self.data = model, data
        self.probe, self.split, self.every = probe, split, every
        self._x: torch.Tensor | None = None

    def due(self, state: Any) -> bool:
        return state.epoch % self.every == 0 or state.epoch == state.config.epochs

    def measure(self, fn: Any) -> Any:
        if self._x is None or self._x.device != self.data.device:
            self._x = probe_batch(self.data, self.split, self.probe)
        was_training = self.model.training
        self.model.eval()
        try:
            return fn(self.model, self._x.float())
        finally:
            self.model.train(was_training)


class ResidualDelta(_ProbeMeasure):
    """Callback: Δ of every residual block on the probe batch (NP-F2), as ``residual_delta``."""

    def on_epoch_end(self, state: Any) -> None:
        if not self.due(state):
            return
        state.log(DELTA_FIELD, self.measure(block_deltas))


class LastActivation(_ProbeMeasure):
    """Callback: mean, std and non-zero ratio of the last activation before pooling (NP-T1)."""

    def on_epoch_end(self, state: Any) -> None:
        if not self.due(state):
            return
        stats = self.measure(last_activation_stats)
        state.log("last_act_mean", stats["mean"])
        state.log("last_act_std", stats["std"])
        state.log("last_act_nzr", stats["nonzero_ratio"])


def block_deltas(model: torch.nn.Module, x: torch.Tensor) -> list[float | None]:
    """Δ of every residual block of ``model`` on ``x`` (NP-F2), None for a block that changes
    the shape (stride or width): its input and output have no elementwise difference."""
    from normbook.analysis.activity import residual_deltas
    from normbook.models import block_io

    deltas = residual_deltas(block_io(model, x), skip_reshaping=True)
    return [None if math.isnan(d) else d for d in deltas]


def last_activation_stats(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """NP-T1's mean, std and non-zero ratio of ``model.final_act``'s output on ``x``."""
    from normbook.analysis.activity import activation_stats
    from normbook.models import last_activation

    return activation_stats(last_activation(model, x))


@register_measure(RESIDUAL_DELTA)
def residual_delta_measure(
    model: torch.nn.Module, data: Any, *, probe: int = 256, split: str = "test", every: int = 1
) -> ResidualDelta:
    """Per-block Δ on the first ``probe`` images of ``split`` every ``every`` epochs (NP-F2)."""
    return ResidualDelta(model, data, probe=probe, split=split, every=every)


@register_measure(LAST_ACTIVATION)
def last_activation_measure(
    model: torch.nn.Module, data: Any, *, probe: int = 256, split: str = "test", every: int = 1
) -> LastActivation:
    """Mean ± std and non-zero ratio of the last activation on the probe batch (NP-T1)."""
    return LastActivation(model, data, probe=probe, split=split, every=every)


# -- the learning-rate rule -------------------------------------------------------------------------
def lr_rule(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config["lr_rule"]`` completed with :data:`LR_RULE_DEFAULTS` and checked."""
    given = config.get(LR_RULE_KEY, {})
    if not isinstance(given, Mapping):
        raise ConfigError(f"{HALVING_TASK}: config['lr_rule'] must be a mapping, got {given!r}")
    unknown = set(given) - set(LR_RULE_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"{HALVING_TASK}: unknown lr_rule keys {sorted(unknown)};"
            f" expected {sorted(LR_RULE_DEFAULTS)}"
        )
    rule = {**LR_RULE_DEFAULTS, **given}
    factor, attempts, min_acc = rule["factor"], rule["max_attempts"], rule["min_train_acc"]
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
        raise ConfigError(f"{HALVING_TASK}: lr_rule.factor must lie in (0, 1), got {factor!r}")
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ConfigError(
            f"{HALVING_TASK}: lr_rule.max_attempts must be an int >= 1, got {attempts!r}"
        )
    if min_acc is not None and (
        isinstance(min_acc, bool) or not isinstance(min_acc, (int, float)) or not 0 <= min_acc <= 1
    ):
        raise ConfigError(
            f"{HALVING_TASK}: lr_rule.min_train_acc must be None or in [0, 1], got {min_acc!r}"
        )
    return rule


def attempt_lrs(lr: float, rule: Mapping[str, Any]) -> list[float]:
    """The learning rates the rule may try, in order: lr, lr·factor, lr·factor², ..."""
    return [float(lr) * float(rule["factor"]) ** k for k in range(int(rule["max_attempts"]))]


def classify_config(config: Mapping[str, Any], lr: float | None = None) -> dict[str, Any]:
    """The ``classify`` configuration one attempt runs (``train.lr`` replaced by ``lr``)."""
    unknown = set(config) - CLASSIFY_KEYS - {LR_RULE_KEY}
    if unknown:
        raise ConfigError(
            f"{HALVING_TASK}: unknown config keys {sorted(unknown)}; expected"
            f" {sorted(CLASSIFY_KEYS | {LR_RULE_KEY})}"
        )
    out = {k: copy.deepcopy(v) for k, v in config.items() if k in CLASSIFY_KEYS}
    out["task"] = "classify"
    if lr is not None:
        if not isinstance(out.get("train"), Mapping):
            raise ConfigError(f"{HALVING_TASK}: config['train'] must be a mapping")
        out["train"] = {**out["train"], "lr": float(lr)}
    return out


def validate_halving(config: Mapping[str, Any]) -> None:
    """The rule's options, and the ``classify`` checks on the configuration of the first attempt."""
    lr_rule(config)
    validate_classify(classify_config(config))


def judge_attempt(history: Any, metrics: Mapping[str, Any], rule: Mapping[str, Any]) -> str | None:
    """Why an attempt is not trainable (None if it is): the engine's divergence record, or a final
    training accuracy below ``rule["min_train_acc"]``."""
    if history.diverged:
        return f"diverged in epoch {history.diverged_epoch}: {history.diverged_reason}"
    threshold = rule.get("min_train_acc")
    acc = metrics.get("train_acc")
    if threshold is not None and (acc is None or acc < threshold):
        return f"final training accuracy {acc} below min_train_acc {threshold}"
    return None


@register_task(HALVING_TASK, validate=validate_halving)
def halve_lr_until_trainable(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """``classify`` at ``train.lr``, halved (``lr_rule.factor``) and re-run from scratch until
    the run is trainable; every attempt is recorded in ``info["lr_attempts"]``. The metrics are
    ``classify``'s (with the final measurement values) of the attempt kept."""
    rule = lr_rule(config)
    validate_halving(config)
    attempts: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    why: str | None = None
    for k, lr in enumerate(attempt_lrs(config["train"]["lr"], rule)):
        attempt_dir = None if run_dir is None else Path(run_dir) / f"attempt{k}"
        result = classify(
            classify_config(config, lr),
            seed=seed,
            device=device,
            run_dir=attempt_dir,
            progress=progress,
        )
        history, metrics = result["history"], result["metrics"]
        why = judge_attempt(history, metrics, rule)
        attempts.append(
            {
                "attempt": k,
                "lr": lr,
                "trainable": why is None,
                "diverged": bool(history.diverged),
                "reason": why,
                "epochs": len(history.epoch),
                "train_acc": metrics.get("train_acc"),
                "test_acc": metrics.get("test_acc"),
            }
        )
        if why is None:
            break
    history = result["history"]
    metrics = dict(result["metrics"])
    metrics.update(lr_used=attempts[-1]["lr"], lr_attempts=len(attempts), trainable=why is None)
    info = {**result.get("info", {}), "lr_attempts": attempts}
    return {"history": history, "metrics": metrics, "info": info}


# -- reading records back, and live runs shaped the same way ---------------------------------------
def delta_rows(
    point: Mapping[str, Any], seed: int, history: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One row per epoch × block of a history's ``residual_delta`` (NaN where not measured)."""
    rows = []
    values = history.get("extras", {}).get(DELTA_FIELD, [])
    for epoch, deltas in zip(history.get("epoch", []), values, strict=False):
        if deltas is None:
            continue
        for block, delta in enumerate(deltas, start=1):
            value = math.nan if delta is None else float(delta)
            rows.append({**point, "seed": seed, "epoch": epoch, "block": block, "delta": value})
    return rows


def delta_table(rows: Sequence[Mapping[str, Any]], knobs: Sequence[str]) -> pd.DataFrame:
    """Mean, std and n over seeds of Δ per point × epoch × block (``delta_mean``, ...)."""
    columns = [*knobs, "epoch", "block"]
    if not rows:
        return pd.DataFrame(columns=[*columns, "delta_mean", "delta_std", "delta_n"])
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(columns, sort=False, dropna=False)["delta"]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out = out.rename(columns={"mean": "delta_mean", "std": "delta_std", "count": "delta_n"})
    if "stale" in frame.columns:
        out["stale"] = frame.groupby(columns, sort=False, dropna=False)["stale"].any().values
    return out


def load_block_deltas(
    entry_id: str,
    scale: str = "small",
    root: str | os.PathLike | None = None,
    registry: Any = None,
) -> pd.DataFrame:
    """Per-block Δ of the stored runs of ``entry_id`` at ``scale``: one row per point × epoch ×
    block with ``delta_mean``, ``delta_std``, ``delta_n`` over seeds and ``stale``."""
    knobs, runs = stored_runs(entry_id, scale, root, registry)
    rows = [
        {**row, "stale": is_stale}
        for point, record, is_stale in runs
        for row in delta_rows(point, record["seed"], record["history"])
    ]
    return delta_table(rows, knobs)


def live_block_deltas(
    entry_id: str,
    scale: str,
    selector: Mapping[str, Any],
    *,
    seeds: int | Sequence[int] | None = None,
    device: str | torch.device | None = None,
    registry: Any = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the points of ``entry_id`` matching ``selector`` now (not stored): the table
    :func:`load_block_deltas` would give, and the per-seed final metrics (one row per run)."""
    from normbook.config import default_device
    from normbook.experiments.registry import get_experiment
    from normbook.experiments.runner import execute, seed_list

    entry = get_experiment(entry_id, registry)
    knobs = list(entry.scale(scale).knobs)
    device = default_device(device)
    rows, finals = [], []
    for point in entry.select_points(scale, [dict(selector)]):
        for seed in seed_list(seeds, entry.scale(scale).seeds):
            record = execute(entry, scale, point, seed, device=device, run_dir=None, progress=False)
            if record["status"] == "failed":
                raise RuntimeError(f"{entry_id} {point} seed {seed} failed: {record.get('error')}")
            rows += delta_rows(point, seed, record["history"])
            finals.append({**point, "seed": seed, **record["metrics"]})
    return delta_table(rows, knobs), pd.DataFrame(finals)


def run_metrics(
    entry_id: str,
    scale: str = "small",
    root: str | os.PathLike | None = None,
    registry: Any = None,
) -> pd.DataFrame:
    """Final metrics of every stored run of ``entry_id`` (one row per point × seed, with the
    record's ``lr_attempts`` count and ``stale``): for medians and per-seed checks."""
    knobs, runs = stored_runs(entry_id, scale, root, registry)
    rows = [
        {**point, "seed": record["seed"], **record["metrics"], "stale": is_stale}
        for point, record, is_stale in runs
    ]
    return pd.DataFrame(rows, columns=None if rows else [*knobs, "seed", "stale"])


def load_attempts(
    entry_id: str,
    scale: str = "small",
    root: str | os.PathLike | None = None,
    registry: Any = None,
) -> pd.DataFrame:
    """Every attempt of the learning-rate rule in the stored runs of ``entry_id``: one row per
    point × seed × attempt (knobs, ``seed``, ``attempt``, ``lr``, ``trainable``, ``diverged``,
    ``reason``, ``epochs``, ``train_acc``, ``test_acc``, ``stale``)."""
    knobs, runs = stored_runs(entry_id, scale, root, registry)
    fields = ["attempt", "lr", "trainable", "diverged", "reason", "epochs", "train_acc", "test_acc"]
    rows = [
        {**point, "seed": record["seed"], **{f: attempt.get(f) for f in fields}, "stale": stale}
        for point, record, stale in runs
        for attempt in record["info"].get("lr_attempts", [])
    ]
    return pd.DataFrame(rows, columns=[*knobs, "seed", *fields, "stale"])
