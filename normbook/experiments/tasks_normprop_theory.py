"""Tasks and a measurement of the NormProp theory chapters (``book/normprop/normprop``,
``identity-breaks-normprop``, ``crelu``; PAPERS.md NP-EQ, NP-P1-3, NP-F3).

- task ``normprop.layer-moments``: a straight stack (:func:`~normbook.analysis.normprop_theory.
  normprop_stack`: plain, NormProp 1/2/3) at initialization on a batch of inputs; per layer the
  per-unit mean and variance of the pre-activations over the inputs (NormProp's promise: 0 and 1)
  beside the one-layer laws.
- task ``normprop.residual-variance``: a stack of blocks x ← b(x) + x (linear orthogonal or
  Gaussian branch: Prop. 3's simplified NormProp block; NormProp branches) at initialization; per
  block the variance and its growth ratio beside the law (1 + κγ²)^l.
- measure ``filter-coherence``: the coherence μ (Definition 2) of every conv of the stem and the
  residual branches (projection shortcuts left out) after every ``every``-th epoch, as the list
  ``coherence`` and its mean/max ``coherence_mean``/``coherence_max``; at the first start also
  ``coherence_init`` (the initialization's), ``coherence_welch`` (each layer's Welch bound) and
  ``coherence_layers`` (module names) in ``history.summary`` (NP-F3).

:func:`load_profiles` / :func:`live_profiles` turn records (stored, or computed now) into one long
table per layer or block; :func:`load_coherence` per conv layer. Importing this module registers
the tasks and the measure (``normbook.experiments.entries.normprop_theory`` imports it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from normbook.experiments.live import point_config
from normbook.experiments.measures import register_measure
from normbook.experiments.results import profile_stats, stored_runs
from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import register_task

LAYER_MOMENTS = "normprop.layer-moments"
RESIDUAL_VARIANCE = "normprop.residual-variance"
FILTER_COHERENCE = "filter-coherence"
INPUTS = ("gaussian", "digits")
IN_FEATURES = 64  # the digits' 8×8 pixels; Gaussian inputs use the same dimension
MOMENT_FIELDS = ("mean", "mean_rms", "var", "var_spread", "theory_var")
RESIDUAL_FIELDS = ("mean", "mean_rms", "var", "var_spread", "ratio", "theory_var")
BAND = (0.8, 1.25)  # "unit variance" within ±25 %: where a stack's promise holds
_KEYS = frozenset({"task", "model", "data"})
_MODEL_KEYS = {
    LAYER_MOMENTS: {"norm", "width", "depth", "gamma"},
    RESIDUAL_VARIANCE: {"branch", "width", "depth", "gamma"},
}


# -- validation --------------------------------------------------------------------------------
def _int_at_least(value: Any, minimum: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an int >= {minimum}, got {value!r}")
    return value


def _validate(config: Mapping[str, Any], task: str) -> None:
    from normbook.analysis.normprop_theory import RESIDUAL_BRANCHES, STACK_NORMS

    unknown = set(config) - _KEYS
    if unknown:
        raise ConfigError(
            f"{task}: unknown config keys {sorted(unknown)}; expected {sorted(_KEYS)}"
        )
    model = config.get("model")
    if not isinstance(model, Mapping) or set(model) != _MODEL_KEYS[task]:
        raise ConfigError(f"{task}: config['model'] must set exactly {sorted(_MODEL_KEYS[task])}")
    kind, choices = (
        ("norm", STACK_NORMS) if task == LAYER_MOMENTS else ("branch", RESIDUAL_BRANCHES)
    )
    if model[kind] not in choices:
        raise ConfigError(
            f"{task}: model.{kind} must be one of {list(choices)}, got {model[kind]!r}"
        )
    _int_at_least(model["width"], 2, f"{task}: model.width")
    _int_at_least(model["depth"], 1, f"{task}: model.depth")
    gamma = model["gamma"]
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
        raise ConfigError(f"{task}: model.gamma must be a positive number, got {gamma!r}")
    data = config.get("data")
    if not isinstance(data, Mapping) or set(data) != {"name", "inputs"}:
        raise ConfigError(f"{task}: config['data'] must set exactly ['inputs', 'name']")
    allowed = INPUTS if task == LAYER_MOMENTS else ("gaussian",)
    if data["name"] not in allowed:
        raise ConfigError(f"{task}: data.name must be one of {list(allowed)}, got {data['name']!r}")
    _int_at_least(data["inputs"], 3, f"{task}: data.inputs")


def validate_layer_moments(config: Mapping[str, Any]) -> None:
    """Known keys; a stack norm, width, depth and γ; Gaussian or flat-digits inputs."""
    _validate(config, LAYER_MOMENTS)


def validate_residual_variance(config: Mapping[str, Any]) -> None:
    """Known keys; a branch, width, depth and γ; Gaussian inputs."""
    _validate(config, RESIDUAL_VARIANCE)


def stack_inputs(
    data: Mapping[str, Any], features: int, seed: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Inputs of the stacks, float64: ``gaussian``: N(0, I) of dimension ``features`` (seeded);
    ``digits``: the first ``inputs`` flat training digits, standardized per pixel (64 features)."""
    if data["name"] == "gaussian":
        generator = torch.Generator().manual_seed(10_000 + seed)
        x = torch.randn(data["inputs"], features, generator=generator, dtype=torch.float64)
    else:
        from normbook.data import load_dataset

        images, _ = load_dataset("digits", variant="flat").tensors("train")
        if data["inputs"] > images.shape[0]:
            raise ConfigError(f"data.inputs={data['inputs']} exceeds {images.shape[0]} digits")
        x = images[: data["inputs"]].to(torch.float64).flatten(1)
    return x.to(device)


# -- tasks -------------------------------------------------------------------------------------
@register_task(LAYER_MOMENTS, validate=validate_layer_moments)
def layer_moments_task(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Per-layer pre-activation moments of a fresh stack (NP-EQ). History: ``layer`` and per
    layer ``mean``, ``mean_rms``, ``var``, ``var_spread``, ``theory_var``; metrics: the last
    layer's variance, the deepest layer still in :data:`BAND` (``band_depth``, 0 if none)."""
    from normbook.analysis import normprop_theory as theory

    validate_layer_moments(config)
    model_cfg = config["model"]
    x = stack_inputs(config["data"], IN_FEATURES, seed, device)
    torch.manual_seed(seed)
    model = theory.normprop_stack(
        model_cfg["norm"],
        model_cfg["width"],
        model_cfg["depth"],
        in_features=x.shape[1],
        gamma=float(model_cfg["gamma"]),
    ).to(device)
    history: dict[str, Any] = theory.layer_moments(model, x)
    input_var = float(x.var(dim=0, unbiased=False).mean())
    history["theory_var"] = theory.stack_moment_theory(
        model_cfg["norm"],
        model_cfg["depth"],
        gamma=float(model_cfg["gamma"]),
        input_var=input_var,
        in_features=x.shape[1],
        width=model_cfg["width"],
    )
    metrics = {
        "var_first": history["var"][0],
        "var_last": history["var"][-1],
        "mean_rms_last": history["mean_rms"][-1],
        "band_depth": band_depth(history["var"]),
        "input_var": input_var,
    }
    return {"history": history, "metrics": metrics}


def band_depth(variances: Sequence[float], band: tuple[float, float] = BAND) -> int:
    """How many layers from the first keep their variance inside ``band`` (0: not even the first)."""
    depth = 0
    for value in variances:
        if not band[0] <= value <= band[1]:
            break
        depth += 1
    return depth


@register_task(RESIDUAL_VARIANCE, validate=validate_residual_variance)
def residual_variance_task(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Per-block variance of x ← b(x) + x from N(0, I) inputs (NP-P1-3). History: ``block`` and
    per block ``mean``, ``mean_rms``, ``var``, ``var_spread``, ``ratio``, ``theory_var``;
    metrics: the first and mean growth ratio and the last variance over its law."""
    from normbook.analysis import normprop_theory as theory

    validate_residual_variance(config)
    model_cfg = config["model"]
    width, depth, gamma = model_cfg["width"], model_cfg["depth"], float(model_cfg["gamma"])
    x = stack_inputs(config["data"], width, seed, "cpu")
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, Any] = theory.residual_stack_moments(
        model_cfg["branch"], width, depth, x, gamma=gamma, generator=generator
    )
    input_var = float(x.var(dim=0, unbiased=False).mean())
    law = theory.residual_growth_theory(model_cfg["branch"], depth, gamma=gamma)
    history["theory_var"] = [input_var * v for v in law]
    ratios = history["ratio"]
    metrics = {
        "ratio_first": ratios[0],
        "ratio_mean": math.exp(sum(math.log(r) for r in ratios) / len(ratios)),
        "var_last": history["var"][-1],
        "var_over_law_last": history["var"][-1] / history["theory_var"][-1],
    }
    return {"history": history, "metrics": metrics}


# -- the coherence measurement -----------------------------------------------------------------
def coherence_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The convs whose coherence NP-F3 plots: every ``nn.Conv2d``/``NormPropConv2d`` with at least
    two filters, in registration (forward) order, except projection shortcuts."""
    from normbook.layers import NormPropConv2d

    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, NormPropConv2d)):
            continue
        if any(part in ("shortcut", "downsample") for part in name.split(".")):
            continue
        if module.weight.shape[0] >= 2:
            layers.append((name, module))
    return layers


def layer_coherences(model: nn.Module) -> list[float]:
    """μ of each of :func:`coherence_layers` (Definition 2, :func:`~normbook.analysis.activity.
    filter_coherence`; scale-free, so NormProp's γ·W/‖W_i‖ and W give the same value)."""
    from normbook.analysis.activity import filter_coherence

    return [filter_coherence(module.weight) for _, module in coherence_layers(model)]


def layer_welch_bounds(model: nn.Module) -> list[float]:
    """The Welch bound of each of :func:`coherence_layers`: the least μ its n filters of
    dimension in·kh·kw can have (0 when n ≤ dimension)."""
    from normbook.analysis.activity import welch_bound

    bounds = []
    for _, module in coherence_layers(model):
        weight = module.weight
        bounds.append(welch_bound(weight.shape[0], int(weight[0].numel())))
    return bounds


class FilterCoherence:
    """Callback of the ``filter-coherence`` measure (see the module docstring)."""

    def __init__(self, model: nn.Module, every: int = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(
                f"measure {FILTER_COHERENCE}: every must be an int >= 1, got {every!r}"
            )
        if not coherence_layers(model):
            raise ConfigError(f"measure {FILTER_COHERENCE}: the model has no conv with 2+ filters")
        self.model, self.every = model, every

    def on_train_start(self, state: Any) -> None:
        if state.epoch == 0 and state.step == 0:  # a fresh start, not a resume
            values = layer_coherences(self.model)
            state.log("coherence_init", values)
            state.log("coherence_init_mean", sum(values) / len(values))
            state.log("coherence_welch", layer_welch_bounds(self.model))
            state.log("coherence_layers", [name for name, _ in coherence_layers(self.model)])

    def on_epoch_end(self, state: Any) -> None:
        if state.epoch % self.every and state.epoch != state.config.epochs:
            return
        values = layer_coherences(self.model)
        state.log("coherence", values)
        state.log("coherence_mean", sum(values) / len(values))
        state.log("coherence_max", max(values))


@register_measure(FILTER_COHERENCE)
def filter_coherence_measure(model: nn.Module, data: Any, *, every: int = 1) -> FilterCoherence:
    """Coherence μ of every branch conv after every ``every``-th epoch and the last (NP-F3)."""
    return FilterCoherence(model, every=every)


# -- reading records back, and live runs shaped the same way -----------------------------------
def _task_fields(task: str) -> tuple[str, tuple[str, ...]]:
    return ("layer", MOMENT_FIELDS) if task == LAYER_MOMENTS else ("block", RESIDUAL_FIELDS)


def profile_table(
    runs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], knobs: Sequence[str], task: str
) -> pd.DataFrame:
    """Long table over (point, layer or block): ``<field>_mean``, ``<field>_std``, ``<field>_n``
    over seeds, from ``(point, history)`` pairs (plus ``stale`` when the points carry it)."""
    x, fields = _task_fields(task)
    return profile_stats(runs, knobs, x, fields)


def load_profiles(
    entry_id: str, scale: str = "small", root: str | os.PathLike | None = None
) -> pd.DataFrame:
    """The stored records of a layer-moments or residual-variance entry as one long table (one row
    per grid point × layer/block, mean/std/n over seeds, ``stale``); empty if there are none."""
    from normbook.experiments.registry import get_experiment

    task = get_experiment(entry_id).scale(scale).config["task"]
    knobs, runs = stored_runs(entry_id, scale, root)
    pairs = [({**point, "stale": stale}, record["history"]) for point, record, stale in runs]
    return profile_table(pairs, knobs, task)


def live_profiles(
    entry_id: str,
    scale: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    seeds: int | None = None,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Run the entry's task with ``overrides`` for ``seeds`` seeds (default: the scale's), not
    stored, and return the table :func:`load_profiles` would; knob columns are the overrides."""
    from normbook.config import default_device
    from normbook.experiments.registry import get_experiment
    from normbook.experiments.tasks import get_task

    config = point_config(entry_id, scale, overrides)
    count = get_experiment(entry_id).scale(scale).seeds if seeds is None else int(seeds)
    device = default_device(device)
    task = get_task(config)
    point = dict(overrides or {})
    runs = [
        (point, task.fn(config, seed=s, device=device, run_dir=None, progress=False)["history"])
        for s in range(count)
    ]
    return profile_table(runs, list(point), config["task"])


def coherence_rows(
    point: Mapping[str, Any], seed: int, history: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One row per conv layer of a run measured with ``filter-coherence``: its name, μ at
    initialization and after the last measured epoch, and its Welch bound."""
    summary = history.get("summary", {})
    finals = [v for v in history.get("extras", {}).get("coherence", []) if v is not None]
    if not finals or "coherence_init" not in summary:
        return []
    return [
        {
            **point,
            "seed": seed,
            "layer": index,
            "module": name,
            "mu_init": mu0,
            "mu_final": mu1,
            "welch": bound,
        }
        for index, (name, mu0, mu1, bound) in enumerate(
            zip(
                summary["coherence_layers"],
                summary["coherence_init"],
                finals[-1],
                summary["coherence_welch"],
                strict=True,
            ),
            start=1,
        )
    ]


def load_coherence(
    entry_id: str, scale: str = "small", root: str | os.PathLike | None = None
) -> pd.DataFrame:
    """Per conv layer of the stored runs of an entry measured with ``filter-coherence``: one row
    per point × seed × layer (:func:`coherence_rows`) with ``stale``."""
    knobs, runs = stored_runs(entry_id, scale, root)
    rows = [
        {**row, "stale": stale}
        for point, record, stale in runs
        for row in coherence_rows(point, record["seed"], record["history"])
    ]
    columns = [*knobs, "seed", "layer", "module", "mu_init", "mu_final", "welch", "stale"]
    return pd.DataFrame(rows, columns=None if rows else columns)


def live_coherence(
    entry_id: str,
    scale: str,
    selector: Mapping[str, Any],
    *,
    seeds: int | Sequence[int] | None = None,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Train the points of ``entry_id`` matching ``selector`` now (not stored) and return their
    :func:`coherence_rows`, as :func:`load_coherence` would (without ``stale``)."""
    from normbook.config import default_device
    from normbook.experiments.registry import get_experiment
    from normbook.experiments.runner import execute, seed_list

    entry = get_experiment(entry_id)
    device = default_device(device)
    rows = []
    for point in entry.select_points(scale, [dict(selector)]):
        for seed in seed_list(seeds, entry.scale(scale).seeds):
            record = execute(entry, scale, point, seed, device=device, run_dir=None, progress=False)
            if record["status"] == "failed":
                raise RuntimeError(f"{entry_id} {point} seed {seed} failed: {record.get('error')}")
            rows += coherence_rows(point, seed, record["history"])
    return pd.DataFrame(rows)


COHERENCE_CURVES = {
    "mu_init": "at initialization",
    "mu_final": "after training",
    "welch": "Welch bound",
}


def coherence_curves(table: pd.DataFrame, knobs: Sequence[str]) -> pd.DataFrame:
    """Per point × layer × curve (initialization, after training, Welch bound): ``value`` (mean
    over seeds) and ``spread`` (std, 0 for one seed), for the figures of NP-F3."""
    columns = [*knobs, "layer", "curve", "value", "spread"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    grouped = table.groupby([*knobs, "layer"], sort=True)
    parts = []
    for field, label in COHERENCE_CURVES.items():
        stats = grouped[field].agg(["mean", "std"]).reset_index()
        parts.append(
            stats.assign(curve=label, value=stats["mean"], spread=stats["std"].fillna(0.0))[columns]
        )
    return pd.concat(parts, ignore_index=True)
