"""Tasks and measurements of the IC training chapters (``book/ic/``: residual units, Dropout meets
BatchNorm, ImageNet; PAPERS.md IC-F3, IC-T1, IC-F4, IC-F5).

- task ``ic-units``: a ``classify`` run of a ResNet family with a residual-unit order (IC-F3),
  chosen by one knob: ``config["unit"]`` is ``baseline`` (the classic Conv-BN-ReLU unit, BN, no
  dropout) or one of the three IC units (IC layers with ``config["drop_prob"]``), so that a grid
  over ``unit`` compares the paper's four rows. ``classify`` adds the final values of the
  per-epoch measurements (``history.extras``) to the record's metrics: ``recal_test_acc`` below,
  and IC-F5's ``test_top5_acc`` from the built-in ``topk`` measurement
  (:mod:`normbook.experiments.measures`).
- measure ``variance_shift``: after every ``every``-th epoch, the train/test variance shift at the
  input of every IC layer's BN and the test accuracy after re-estimating the BN statistics with
  dropout off (:mod:`normbook.analysis.variance_shift`). Measurements fork the global RNG, so a
  run's training is the same with or without them.
- :func:`run_histories` / :func:`live_histories`: per-seed histories (stored or computed live) as
  one long table, for the stability measures of :mod:`normbook.analysis.stability`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from normbook.experiments.measures import register_measure
from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import CLASSIFY_KEYS, register_classify_variant

IC_UNITS_TASK = "ic-units"
UNITS: tuple[str, ...] = ("baseline", "relu-ic-conv", "ic-conv-relu", "conv-relu-ic")
UNIT_NAMES: dict[str, str] = {
    "baseline": "baseline (Conv-BN-ReLU)",
    "relu-ic-conv": "① ReLU-IC-Conv",
    "ic-conv-relu": "② IC-Conv-ReLU",
    "conv-relu-ic": "③ Conv-ReLU-IC",
}
UNIT_FAMILIES: tuple[str, ...] = ("resnet_cifar", "resnet_imagenet")  # models with ``unit=``
_TASK_KEYS = frozenset({"unit", "drop_prob"})


# -- the ic-units task ----------------------------------------------------------------------------
def unit_model_options(unit: str, drop_prob: float) -> dict[str, Any]:
    """``build_model`` options of a unit: BN and no dropout for the baseline, IC layers with
    ``drop_prob`` (torch's convention: probability of zeroing; keep = 1 − drop) otherwise."""
    if unit not in UNITS:
        raise ConfigError(f"{IC_UNITS_TASK}: unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if isinstance(drop_prob, bool) or not isinstance(drop_prob, (int, float)):
        raise ConfigError(f"{IC_UNITS_TASK}: drop_prob must be a number, got {drop_prob!r}")
    if not 0.0 <= drop_prob < 1.0:
        raise ConfigError(f"{IC_UNITS_TASK}: drop_prob must lie in [0, 1), got {drop_prob}")
    if unit == "baseline":
        return {"unit": "baseline", "norm": "bn"}
    return {"unit": unit, "norm": "ic", "drop_prob": float(drop_prob)}


def classify_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``classify`` configuration an ``ic-units`` configuration runs."""
    unknown = set(config) - CLASSIFY_KEYS - _TASK_KEYS
    if unknown:
        raise ConfigError(
            f"{IC_UNITS_TASK}: unknown config keys {sorted(unknown)}; expected"
            f" {sorted(CLASSIFY_KEYS | _TASK_KEYS)}"
        )
    if "unit" not in config:
        raise ConfigError(f"{IC_UNITS_TASK}: config needs a 'unit' ({', '.join(UNITS)})")
    model = config.get("model")
    if not isinstance(model, Mapping):
        raise ConfigError(f"{IC_UNITS_TASK}: config['model'] must be a mapping, got {model!r}")
    if model.get("name") not in UNIT_FAMILIES:
        raise ConfigError(
            f"{IC_UNITS_TASK}: model must be one of {', '.join(UNIT_FAMILIES)} (the families with"
            f" residual-unit orders), got {model.get('name')!r}"
        )
    clash = sorted({"unit", "norm", "drop_prob"} & set(model))
    if clash:
        raise ConfigError(
            f"{IC_UNITS_TASK}: config['model'] must not set {clash}: the task sets them from"
            " config['unit'] and config['drop_prob']"
        )
    options = unit_model_options(config["unit"], config.get("drop_prob", 0.05))
    out = {k: copy.deepcopy(v) for k, v in config.items() if k in CLASSIFY_KEYS}
    out["task"] = "classify"
    out["model"] = {**dict(model), **options}
    return out


ic_units = register_classify_variant(IC_UNITS_TASK, classify_config)


# -- measurements ---------------------------------------------------------------------------------
class VarianceShift:
    """Callback: the variance shift at every IC layer's BN and the recalibrated test accuracy.

    Logged per measured epoch: ``var_shift`` (mean over IC layers of Var_eval/Var_train),
    ``var_shift_running`` (mean over layers of Var_eval/running_var), the per-layer lists
    ``var_shift_layers``, ``var_shift_running_layers`` and ``recal_shift_running_layers`` (after
    recalibration), and ``recal_test_acc`` (test accuracy after re-estimating every BN's running
    statistics on the training set with dropout off).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data: Any,
        *,
        samples: int,
        batch_size: int,
        every: int,
        seed: int,
    ) -> None:
        for name, value in (("samples", samples), ("batch_size", batch_size), ("every", every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"measure variance_shift: {name} must be an int >= 1, got {value!r}"
                )
        if batch_size > samples:
            raise ConfigError("measure variance_shift: batch_size must be <= samples")
        self.model, self.data = model, data
        self.samples, self.batch_size, self.every, self.seed = samples, batch_size, every, seed

    def _batches(self, limit: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        generator = self.data.make_generator(self.seed)
        batches = []
        for x, y in self.data.train_batches(
            self.batch_size, generator=generator, augment=False, drop_last=True
        ):
            batches.append((x, y))
            if limit is not None and len(batches) * self.batch_size >= limit:
                break
        return batches

    def on_epoch_end(self, state: Any) -> None:
        if state.epoch % self.every and state.epoch != state.config.epochs:
            return
        from normbook.analysis.variance_shift import (
            recalibrate_batchnorm,
            variance_shift_profile,
        )
        from normbook.train.loop import evaluate_batches

        devices = [state.device.index or 0] if state.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            profile = variance_shift_profile(
                self.model, self._batches(self.samples), seed=self.seed
            )
            twin = copy.deepcopy(self.model)
            recalibrate_batchnorm(twin, self._batches(None), dropout=False)
            _, recal_acc = evaluate_batches(twin, self.data.eval_batches("test", 1024))
            after = variance_shift_profile(twin, self._batches(self.samples), seed=self.seed)
        state.log("var_shift", float(profile["shift"].mean()))
        state.log("var_shift_running", float(profile["shift_running"].mean()))
        state.log("var_shift_layers", profile["shift"].tolist())
        state.log("var_shift_running_layers", profile["shift_running"].tolist())
        state.log("recal_shift_running_layers", after["shift_running"].tolist())
        state.log("recal_test_acc", float(recal_acc))


@register_measure("variance_shift")
def variance_shift_measure(
    model: torch.nn.Module,
    data: Any,
    *,
    samples: int = 512,
    batch_size: int = 64,
    every: int = 1,
    seed: int = 0,
) -> VarianceShift:
    """Variance shift per IC layer on ``samples`` training images (in batches of ``batch_size``,
    the training batch) and the test accuracy after BN recalibration, every ``every`` epochs."""
    return VarianceShift(
        model, data, samples=samples, batch_size=batch_size, every=every, seed=seed
    )


# -- per-seed histories ---------------------------------------------------------------------------
def _history_rows(
    point: Mapping[str, Any], seed: int, history: Mapping[str, Any], fields: Sequence[str]
) -> list[dict[str, Any]]:
    merged = {**history.get("extras", {}), **history}
    missing = [f for f in fields if f not in merged]
    if missing:
        raise ConfigError(f"point {dict(point)} seed {seed}: history lacks {missing}")
    return [
        {**point, "seed": seed, "epoch": epoch, **{f: merged[f][i] for f in fields}}
        for i, epoch in enumerate(merged.get("epoch", []))
    ]


def run_histories(
    entry_id: str,
    scale: str,
    fields: Sequence[str] = ("test_acc",),
    *,
    root: str | os.PathLike | None = None,
    registry: Any = None,
) -> pd.DataFrame:
    """Stored per-seed histories of ``entry_id`` at ``scale``: one row per point × seed × epoch
    (knobs, ``seed``, ``epoch``, ``fields``, ``stale``), the records :func:`load` would use."""
    from normbook.experiments.results import stored_runs

    knobs, runs = stored_runs(entry_id, scale, root, registry)
    rows: list[dict[str, Any]] = [
        {**row, "stale": is_stale}
        for point, record, is_stale in runs
        for row in _history_rows(point, record["seed"], record["history"], fields)
    ]
    columns = [*knobs, "seed", "epoch", *fields, "stale"]
    return pd.DataFrame(rows, columns=columns)


def live_histories(
    entry_id: str,
    scale: str,
    selector: Mapping[str, Any],
    fields: Sequence[str] = ("test_acc",),
    *,
    seeds: int | Sequence[int] | None = None,
    device: str | torch.device | None = None,
    registry: Any = None,
) -> pd.DataFrame:
    """Like :func:`run_histories` for the points matching ``selector``, computed now (not stored)."""
    from normbook.config import default_device
    from normbook.experiments.registry import get_experiment
    from normbook.experiments.runner import execute, seed_list

    entry = get_experiment(entry_id, registry)
    knobs = list(entry.scale(scale).knobs)
    device = default_device(device)
    rows: list[dict[str, Any]] = []
    for point in entry.select_points(scale, [dict(selector)]):
        for seed in seed_list(seeds, entry.scale(scale).seeds):
            record = execute(entry, scale, point, seed, device=device, run_dir=None, progress=False)
            if record["status"] == "failed":
                raise RuntimeError(f"{entry_id} {point} seed {seed} failed: {record.get('error')}")
            rows += _history_rows(point, seed, record["history"], fields)
    return pd.DataFrame(rows, columns=[*knobs, "seed", "epoch", *fields])


def mean_curves(histories: pd.DataFrame, by: Sequence[str], fields: Sequence[str]) -> pd.DataFrame:
    """Mean, std and n over seeds per ``by`` × epoch (the long table ``slider_figure`` draws)."""
    from normbook.experiments.results import curve_stats

    runs = []
    for key, group in histories.groupby([*by, "seed"], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        point = dict(zip([*by, "seed"], key, strict=True))
        point.pop("seed")
        group = group.sort_values("epoch")
        runs.append(
            (point, {"epoch": group["epoch"].tolist(), **{f: group[f].tolist() for f in fields}})
        )
    return curve_stats(runs, list(by), list(fields))


def table1_label(point: Mapping[str, Any]) -> str:
    """``ResNet-B-110, cifar100`` from a point with ``model.bottleneck``/``model.depth``/``data.name``
    (the panels of IC Fig. 4); other knobs are appended as ``name=value``."""
    parts = []
    if "model.depth" in point:
        family = "ResNet-B" if point.get("model.bottleneck") else "ResNet"
        parts.append(f"{family}-{point['model.depth']}")
    if "data.name" in point:
        parts.append(str(point["data.name"]))
    skip = {"model.depth", "model.bottleneck", "data.name", "unit"}
    parts += [f"{k.split('.')[-1]}={v}" for k, v in point.items() if k not in skip]
    return ", ".join(parts) or "all"


def unit_curves(
    histories: pd.DataFrame,
    panel_knobs: Sequence[str],
    *,
    metric: str = "test_acc",
    unit: str | None = None,
) -> pd.DataFrame:
    """Fig. 4-style curves: mean ± std over seeds of ``metric`` per panel × unit × epoch, with a
    ``panel`` label (:func:`table1_label` of the panel knobs) and a ``curve`` label (the unit's
    name, :data:`UNIT_NAMES`), ready for ``slider_figure(..., slider="panel", trace="curve")``.

    ``unit`` names the unit of every run when ``histories`` has no ``unit`` column (an entry whose
    unit is fixed, not a knob)."""
    if "unit" not in histories and unit is not None:
        histories = histories.assign(unit=unit)
    missing = [c for c in [*panel_knobs, "unit", "seed", "epoch", metric] if c not in histories]
    if missing:
        raise ValueError(f"histories lacks column(s) {missing}")
    curves = mean_curves(histories, [*panel_knobs, "unit"], [metric])
    curves["panel"] = [
        table1_label({k: row[k] for k in panel_knobs}) for _, row in curves.iterrows()
    ]
    curves["curve"] = curves["unit"].map(UNIT_NAMES)
    return curves
