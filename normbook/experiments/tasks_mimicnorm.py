"""Tasks of the MimicNorm theory chapters (``book/mimicnorm/``): measurements at initialization.

- ``mimicnorm.layer-correlations``: a straight ReLU MLP (plain, BatchNorm or weight mean; no
  training) on a batch of inputs; per hidden layer the mean (± std) pairwise correlation of the
  pre-activations of different inputs beside the infinite-width prediction, their second moment,
  the between-channel share of their variance, and per-channel statistics at chosen layers
  (MN-F2, MN-F3, MN-TH3).
- ``mimicnorm.ntk-condition``: the empirical NTK of such MLPs at several depths on a batch of
  inputs, its condition number, the spread of its diagonal and the condition number of its
  correlation matrix, beside the infinite-width condition number (MN-TH1, MN-TH2, MN-TH3).

A record's ``history`` holds per-layer (or per-depth) lists; :func:`load_profiles` and
:func:`live_profiles` turn records (stored or computed live) into one long table for the figures.
Importing this module registers both tasks (``normbook.experiments.entries.mimicnorm`` imports it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from normbook.experiments.live import point_config
from normbook.experiments.results import profile_stats
from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import register_task

LAYER_CORRELATIONS = "mimicnorm.layer-correlations"
NTK_CONDITION = "mimicnorm.ntk-condition"

_LAYER_KEYS = frozenset({"task", "model", "data", "channel_layers", "channels"})
_NTK_KEYS = frozenset({"task", "model", "data", "depths", "parameterization", "output"})
_MODEL_KEYS = {
    LAYER_CORRELATIONS: {"variant", "width", "depth"},
    NTK_CONDITION: {"variant", "width"},
}
_DATA_KEYS = frozenset({"name", "variant", "inputs"})
_DATASETS = ("digits", "mnist")
# per-layer fields of a layer-correlations record, per-depth fields of an ntk-condition record
PROFILE_FIELDS = ("corr_mean", "corr_std", "theory", "second_moment", "between_share")
NTK_FIELDS = ("kappa", "kappa_corr", "diag_spread", "offdiag_corr", "theory_kappa")


# -- validation --------------------------------------------------------------------------------
def _int_at_least(value: Any, minimum: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an int >= {minimum}, got {value!r}")
    return value


def _mapping(config: Mapping[str, Any], key: str, task: str) -> Mapping[str, Any]:
    value = config.get(key)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{task}: config[{key!r}] must be a mapping, got {value!r}")
    return value


def _validate_common(config: Mapping[str, Any], task: str, keys: frozenset[str]) -> None:
    from normbook.analysis.kernels import VARIANTS

    unknown = set(config) - keys
    if unknown:
        raise ConfigError(f"{task}: unknown config keys {sorted(unknown)}; expected {sorted(keys)}")
    model = _mapping(config, "model", task)
    if set(model) != _MODEL_KEYS[task]:
        expected = sorted(_MODEL_KEYS[task])
        raise ConfigError(
            f"{task}: config['model'] must set exactly {expected}, got {sorted(model)}"
        )
    if model["variant"] not in VARIANTS:
        raise ConfigError(
            f"{task}: model.variant must be one of {list(VARIANTS)}, got {model['variant']!r}"
        )
    _int_at_least(model["width"], 2, f"{task}: model.width")
    data = _mapping(config, "data", task)
    if set(data) != _DATA_KEYS:
        raise ConfigError(f"{task}: config['data'] must set exactly {sorted(_DATA_KEYS)}")
    if data["name"] not in _DATASETS or data["variant"] != "flat":
        raise ConfigError(
            f"{task}: data must be one of {list(_DATASETS)} with variant 'flat', got {dict(data)}"
        )
    _int_at_least(data["inputs"], 3, f"{task}: data.inputs")


def validate_layer_correlations(config: Mapping[str, Any]) -> None:
    """Known keys; a variant, width and depth; flat digits/MNIST; layers to keep channel stats of
    (those deeper than the net are skipped, so a live depth slider can go below them)."""
    task = LAYER_CORRELATIONS
    _validate_common(config, task, _LAYER_KEYS)
    _int_at_least(config["model"]["depth"], 1, f"{task}: model.depth")
    layers = config.get("channel_layers")
    if not isinstance(layers, (list, tuple)) or not all(
        isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in layers
    ):
        raise ConfigError(f"{task}: channel_layers must be a list of ints >= 1, got {layers!r}")
    _int_at_least(config.get("channels"), 1, f"{task}: channels")


def validate_ntk_condition(config: Mapping[str, Any]) -> None:
    """Known keys; a variant and width; increasing depths; a parameterization; an output index."""
    task = NTK_CONDITION
    _validate_common(config, task, _NTK_KEYS)
    depths = config.get("depths")
    if (
        not isinstance(depths, (list, tuple))
        or not depths
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in depths)
        or list(depths) != sorted(set(depths))
    ):
        raise ConfigError(f"{task}: depths must be increasing ints >= 1, got {depths!r}")
    if config.get("parameterization") not in ("ntk", "standard"):
        raise ConfigError(f"{task}: parameterization must be 'ntk' or 'standard'")
    _int_at_least(config.get("output"), 0, f"{task}: output")


# -- inputs ------------------------------------------------------------------------------------
def sphere_inputs(data: Mapping[str, Any], device: torch.device | str = "cpu") -> torch.Tensor:
    """The first ``data["inputs"]`` training inputs, float64, each rescaled to |x|² = n₀.

    The theory assumes inputs of equal norm (the paper normalizes them so); the rescaling leaves
    their correlations, the kernels' starting point, unchanged.
    """
    from normbook.data import load_dataset

    dataset = load_dataset(data["name"], variant=data["variant"])
    x, _ = dataset.tensors("train")
    if data["inputs"] > x.shape[0]:
        raise ConfigError(f"data.inputs={data['inputs']} exceeds the {x.shape[0]} training inputs")
    x = x[: data["inputs"]].to(torch.float64).flatten(1)
    x = x / x.norm(dim=1, keepdim=True) * math.sqrt(x.shape[1])
    return x.to(device)


_THEORY_CACHE: dict[tuple[Any, ...], list[float]] = {}


def _theory_profile(data: Mapping[str, Any], depth: int, variant: str) -> list[float]:
    """Mean off-diagonal infinite-width correlation per layer for these inputs (cached: the same
    for every seed, and the m×m recursion is the costly part of a small run)."""
    from normbook.analysis import kernels

    key = (data["name"], data["variant"], data["inputs"], depth, variant)
    if key not in _THEORY_CACHE:
        x = sphere_inputs(data)
        sigmas = kernels.nngp_kernels(x @ x.T / x.shape[1], depth, variant)
        _THEORY_CACHE[key] = [
            kernels.mean_offdiagonal(kernels.kernel_correlations(s)) for s in sigmas
        ]
    return list(_THEORY_CACHE[key])


# -- tasks -------------------------------------------------------------------------------------
@register_task(LAYER_CORRELATIONS, validate=validate_layer_correlations)
def layer_correlations(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Correlations of different inputs' pre-activations layer by layer, at initialization.

    History: ``layer`` (1..depth) and, per layer, ``corr_mean``/``corr_std`` (off-diagonal
    cosine similarities of the pre-activations), ``theory`` (infinite width, same inputs),
    ``second_moment``, ``between_share``; ``channel_stats``: per-channel mean/std (in units of the
    layer's RMS) of the first ``channels`` channels at ``channel_layers``. Float64.
    """
    from normbook.analysis import kernels

    validate_layer_correlations(config)
    model_cfg = config["model"]
    x = sphere_inputs(config["data"], device)
    torch.manual_seed(seed)
    model = kernels.kernel_mlp(
        model_cfg["variant"], model_cfg["width"], model_cfg["depth"], in_features=x.shape[1]
    ).to(device)
    layers = kernels.preactivations(model, x)
    history: dict[str, Any] = kernels.correlation_profile(layers)
    history["theory"] = _theory_profile(config["data"], model_cfg["depth"], model_cfg["variant"])
    history["channel_stats"] = [
        {"layer": k, **kernels.channel_statistics(layers[k - 1].cpu(), config["channels"])}
        for k in config["channel_layers"]
        if k <= len(layers)
    ]
    gaps = [abs(a - b) for a, b in zip(history["corr_mean"], history["theory"], strict=True)]
    metrics = {
        "corr_last": history["corr_mean"][-1],
        "theory_last": history["theory"][-1],
        "between_share_last": history["between_share"][-1],
        "second_moment_ratio": history["second_moment"][-1] / history["second_moment"][0],
        "max_theory_gap": max(gaps),
    }
    return {"history": history, "metrics": metrics}


@register_task(NTK_CONDITION, validate=validate_ntk_condition)
def ntk_condition(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Empirical NTK of a fresh MLP at each depth of ``depths`` (one net per depth, seeded).

    History: ``depth`` and, per depth, ``kappa`` (condition number of Θ), ``kappa_corr`` (of its
    correlation matrix D^-½ΘD^-½, which discounts the spread of the diagonal), ``diag_spread``
    (max/min of the diagonal), ``offdiag_corr`` (mean off-diagonal of the correlation matrix) and
    ``theory_kappa`` (infinite width, same inputs; None for ``bn``).
    """
    from normbook.analysis import kernels

    validate_ntk_condition(config)
    model_cfg = config["model"]
    variant = model_cfg["variant"]
    x = sphere_inputs(config["data"], device)
    gram0 = (x @ x.T / x.shape[1]).cpu()
    depths = list(config["depths"])
    theory = kernels.ntk_kernels(gram0, depths[-1], variant) if variant != "bn" else None
    history: dict[str, list[Any]] = {"depth": depths, **{f: [] for f in NTK_FIELDS}}
    for index, depth in enumerate(depths):
        torch.manual_seed(seed * 1000 + index)
        model = kernels.kernel_mlp(variant, model_cfg["width"], depth, in_features=x.shape[1])
        theta = kernels.empirical_ntk(
            model.to(device),
            x,
            output=config["output"],
            parameterization=config["parameterization"],
        ).cpu()
        corr = kernels.kernel_correlations(theta)
        history["kappa"].append(kernels.condition_number(theta))
        history["kappa_corr"].append(kernels.condition_number(corr))
        diag = theta.diagonal()
        history["diag_spread"].append(float(diag.max() / diag.min()))
        history["offdiag_corr"].append(kernels.mean_offdiagonal(corr))
        history["theory_kappa"].append(
            None if theory is None else kernels.condition_number(theory[depth - 1])
        )
    metrics = {
        "kappa_deepest": history["kappa"][-1],
        "kappa_corr_deepest": history["kappa_corr"][-1],
        "kappa_min": min(history["kappa"]),
    }
    return {"history": history, "metrics": metrics}


# -- reading records back, and live runs shaped the same way -----------------------------------
def _x_field(task: str) -> tuple[str, tuple[str, ...]]:
    return ("layer", PROFILE_FIELDS) if task == LAYER_CORRELATIONS else ("depth", NTK_FIELDS)


def profile_table(
    runs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], knobs: Sequence[str], task: str
) -> pd.DataFrame:
    """Long table over (point, layer or depth): ``<field>_mean``, ``<field>_std``, ``<field>_n``
    over seeds for each per-layer field, from ``(point, history)`` pairs."""
    x, fields = _x_field(task)
    return profile_stats(runs, knobs, x, fields)


def _records_by_point(
    entry_id: str, scale: str, root: str | os.PathLike | None
) -> list[tuple[dict[str, Any], list[dict[str, Any]], bool]]:
    """Per grid point: its ok records (fresh, else stale ones of the point) and a stale flag."""
    from normbook.experiments.registry import get_experiment
    from normbook.experiments.store import config_hash, iter_records

    entry = get_experiment(entry_id)
    records = [r for _, r in iter_records(root, scale, entry.id) if r["status"] == "ok"]
    out = []
    for point in entry.points(scale):
        hash_ = config_hash(entry.resolve(scale, point))
        fresh = [r for r in records if r["config_hash"] == hash_]
        stale = [r for r in records if r["config_hash"] != hash_ and r["point"] == point]
        chosen = fresh or stale
        if chosen:
            out.append((point, sorted(chosen, key=lambda r: r["seed"]), not fresh))
    return out


def load_profiles(
    entry_id: str, scale: str = "small", root: str | os.PathLike | None = None
) -> pd.DataFrame:
    """The stored records of a layer-correlations or ntk-condition entry as one long table.

    One row per grid point × layer (or depth): the knobs, ``layer``/``depth``, mean/std/n over
    seeds of each field, and ``stale`` (the records no longer match the registry). Empty if the
    store has none.
    """
    from normbook.experiments.registry import get_experiment

    entry = get_experiment(entry_id)
    knobs = list(entry.scale(scale).knobs)
    task = entry.scale(scale).config["task"]
    runs = [
        ({**point, "stale": stale}, record["history"])
        for point, records, stale in _records_by_point(entry_id, scale, root)
        for record in records
    ]
    return profile_table(runs, knobs, task)


def load_channel_stats(
    entry_id: str, scale: str = "small", root: str | os.PathLike | None = None, seed: int = 0
) -> pd.DataFrame:
    """Per-channel statistics (MN-F3) of one seed's records: knobs, layer, channel, mean, std."""
    from normbook.experiments.registry import get_experiment

    knobs = list(get_experiment(entry_id).scale(scale).knobs)
    rows = []
    for point, records, stale in _records_by_point(entry_id, scale, root):
        for record in records:
            if record["seed"] != seed:
                continue
            rows.extend(_channel_rows(point, record["history"], stale))
    return pd.DataFrame(rows, columns=[*knobs, "layer", "channel", "mean", "std", "stale"])


def _channel_rows(
    point: Mapping[str, Any], history: Mapping[str, Any], stale: bool = False
) -> list[dict[str, Any]]:
    return [
        {**point, "layer": block["layer"], "channel": c, "mean": mu, "std": sd, "stale": stale}
        for block in history.get("channel_stats", [])
        for c, mu, sd in zip(block["channel"], block["mean"], block["std"], strict=True)
    ]


def live_profiles(
    entry_id: str,
    scale: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    seeds: int | None = None,
    device: str | torch.device | None = None,
    channels: bool = False,
) -> pd.DataFrame:
    """Run the entry's task with ``overrides`` for ``seeds`` seeds (default: the scale's), without
    storing, and return the table :func:`load_profiles` would (or, with ``channels``, the
    per-channel table of seed 0). Knob columns are the overridden paths."""
    from normbook.config import default_device
    from normbook.experiments.registry import get_experiment
    from normbook.experiments.tasks import get_task

    config = point_config(entry_id, scale, overrides)
    count = get_experiment(entry_id).scale(scale).seeds if seeds is None else int(seeds)
    device = default_device(device)
    task = get_task(config)
    point = dict(overrides or {})
    runs = []
    for seed in range(count):
        result = task.fn(config, seed=seed, device=device, run_dir=None, progress=False)
        runs.append((point, result["history"]))
    if channels:
        return pd.DataFrame(_channel_rows(point, runs[0][1]))
    return profile_table(runs, list(point), config["task"])
