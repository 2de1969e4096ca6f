"""Tasks of the DBN part's measurement chapters (``book/dbn/``).

- ``dbn.axis-swap`` (DBN-F1): train the digits MLP briefly, take the pre-normalization activations
  of one hidden layer (one DBN group of contiguous units), draw consecutive mini-batches of a
  given size and measure how often PCA whitening reassigns its axes between them and how far the
  whitened coordinates of a fixed probe set move under PCA and under ZCA
  (:func:`normbook.analysis.axis_swap.axis_swap_measurements`).
- ``dbn.backward-steps`` (DBN-EQ5): CPU time of each step of the whitening forward and of the
  simplified backward (Algorithm 2) on an m×d batch
  (:func:`normbook.analysis.eigen_backward.time_whitening_steps`).
- ``dbn.layer-cost`` (DBN-TB): DBN forward+backward time over BatchNorm's on one N×C×H×W input,
  for one whitening method and group size (:func:`normbook.layers.benchmark.benchmark_layers`).
- ``dbn.appendix-b`` (DBN-TB): the paper's Appendix B case, full whitening of 64×32×32 maps at
  batch 64, and a 3×3 convolution, each over BatchNorm
  (:func:`normbook.layers.benchmark.benchmark_appendix_b`).

Timing records depend on the machine (the record's provenance names it); only ratios measured in
one run are meant to be compared. Importing this module registers the tasks
(``normbook.experiments.entries.dbn`` imports it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import register_task, train_config

AXIS_SWAP = "dbn.axis-swap"
BACKWARD_STEPS = "dbn.backward-steps"
LAYER_COST = "dbn.layer-cost"
APPENDIX_B = "dbn.appendix-b"

_AXIS_SWAP_KEYS = frozenset(
    {"task", "model", "data", "train", "layer", "group_size", "batch_size", "pairs", "eps"}
)
_TIMING_KEYS = frozenset({"repeats", "warmup", "threads"})
_BACKWARD_STEPS_KEYS = frozenset(
    {"task", "batch_size", "num_features", "group_size", "method", *_TIMING_KEYS}
)
_LAYER_COST_KEYS = frozenset({"task", "shape", "method", "group_size", *_TIMING_KEYS})
_APPENDIX_B_KEYS = frozenset({"task", "shape", *_TIMING_KEYS})


# -- validation --------------------------------------------------------------------------------
def _int_at_least(value: Any, minimum: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an int >= {minimum}, got {value!r}")
    return value


def _keys(config: Mapping[str, Any], expected: frozenset[str], task: str) -> None:
    unknown, missing = set(config) - expected, expected - set(config)
    if unknown or missing:
        raise ConfigError(
            f"{task}: config keys must be exactly {sorted(expected)}"
            f" (unknown {sorted(unknown)}, missing {sorted(missing)})"
        )


def _named(config: Mapping[str, Any], key: str, task: str) -> tuple[str, dict[str, Any]]:
    section = config.get(key)
    if not isinstance(section, Mapping) or not isinstance(section.get("name"), str):
        raise ConfigError(
            f"{task}: config[{key!r}] must be a mapping with a 'name', got {section!r}"
        )
    options = dict(section)
    return options.pop("name"), options


def _timing(config: Mapping[str, Any], task: str) -> None:
    _int_at_least(config["repeats"], 1, f"{task}: repeats")
    _int_at_least(config["warmup"], 0, f"{task}: warmup")
    if config["threads"] is not None:
        _int_at_least(config["threads"], 1, f"{task}: threads")


def _shape(value: Any, task: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ConfigError(f"{task}: shape must be [N, C, H, W], got {value!r}")
    for size in value:
        _int_at_least(size, 1, f"{task}: shape entries")
    return tuple(value)


def _group(value: Any, task: str, minimum: int = 1) -> None:
    if value is not None:
        _int_at_least(value, minimum, f"{task}: group_size (None: all features)")


def validate_axis_swap(config: Mapping[str, Any]) -> None:
    """Known keys, a registered model and dataset, a valid ``TrainConfig``, positive sizes."""
    from normbook.data import list_datasets
    from normbook.models import list_models

    task = AXIS_SWAP
    _keys(config, _AXIS_SWAP_KEYS, task)
    model, options = _named(config, "model", task)
    if model not in list_models():
        raise ConfigError(f"{task}: unknown model {model!r}; models: {', '.join(list_models())}")
    data, _ = _named(config, "data", task)
    if data not in list_datasets():
        raise ConfigError(
            f"{task}: unknown dataset {data!r}; datasets: {', '.join(list_datasets())}"
        )
    train_config(config)
    layer = _int_at_least(config["layer"], 1, f"{task}: layer")
    hidden = options.get("hidden")
    if isinstance(hidden, (list, tuple)) and layer > len(hidden):
        raise ConfigError(f"{task}: layer {layer} > the {len(hidden)} hidden layers")
    _group(config["group_size"], task, minimum=2)
    _int_at_least(config["batch_size"], 2, f"{task}: batch_size")
    _int_at_least(config["pairs"], 1, f"{task}: pairs")
    eps = config["eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ConfigError(f"{task}: eps must be a number > 0, got {eps!r}")


def validate_backward_steps(config: Mapping[str, Any]) -> None:
    """Known keys, positive sizes, a group size dividing the features, ZCA or PCA."""
    task = BACKWARD_STEPS
    _keys(config, _BACKWARD_STEPS_KEYS, task)
    _int_at_least(config["batch_size"], 2, f"{task}: batch_size")
    features = _int_at_least(config["num_features"], 1, f"{task}: num_features")
    group = _int_at_least(config["group_size"], 1, f"{task}: group_size")
    if features % group:
        raise ConfigError(f"{task}: group_size {group} must divide num_features {features}")
    if config["method"] not in ("zca", "pca"):
        raise ConfigError(f"{task}: method must be 'zca' or 'pca', got {config['method']!r}")
    _timing(config, task)


def validate_layer_cost(config: Mapping[str, Any]) -> None:
    """Known keys, an N×C×H×W shape, a whitening method, group size None or positive."""
    from normbook.layers.whitening import WHITENING_METHODS

    task = LAYER_COST
    _keys(config, _LAYER_COST_KEYS, task)
    _shape(config["shape"], task)
    if config["method"] not in WHITENING_METHODS:
        raise ConfigError(
            f"{task}: method must be one of {list(WHITENING_METHODS)}, got {config['method']!r}"
        )
    _group(config["group_size"], task)
    _timing(config, task)


def validate_appendix_b(config: Mapping[str, Any]) -> None:
    """Known keys, an N×C×H×W shape, timing settings."""
    _keys(config, _APPENDIX_B_KEYS, APPENDIX_B)
    _shape(config["shape"], APPENDIX_B)
    _timing(config, APPENDIX_B)


# -- dbn.axis-swap ------------------------------------------------------------------------------
def hidden_preactivations(model: torch.nn.Module, x: torch.Tensor, layer: int) -> torch.Tensor:
    """Output of the ``layer``-th ``nn.Linear`` of ``model`` (1-based, module order) on ``x``.

    In the MLP this is the input of that layer's normalization: what a DBN group would whiten.
    Runs under ``no_grad`` in the model's current mode.
    """
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not 1 <= layer <= len(linears):
        raise ValueError(f"layer must lie in 1..{len(linears)}, got {layer}")
    captured: list[torch.Tensor] = []
    handle = linears[layer - 1].register_forward_hook(
        lambda _m, _i, out: captured.append(out.detach())
    )
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return captured[0]


def axis_swap_activations(
    config: Mapping[str, Any], *, seed: int, device: torch.device | str | None = None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Train the configuration's model briefly and return the group's pre-norm activations.

    Returns ``(activations, metrics)``: the training split's ``n × g`` activations of the first
    ``group_size`` units of hidden layer ``layer`` (eval mode, on the CPU) and the training run's
    final metrics.
    """
    from normbook.config import default_device
    from normbook.data import load_dataset
    from normbook.models import build_model
    from normbook.train import fit

    validate_axis_swap(config)
    device = default_device(device)
    data_name, data_options = _named(config, "data", AXIS_SWAP)
    data = load_dataset(data_name, **data_options)
    model_name, model_options = _named(config, "model", AXIS_SWAP)
    torch.manual_seed(seed)
    model = build_model(model_name, num_classes=data.num_classes, **model_options)
    history = fit(model, data, train_config(config), seed=seed, device=device, progress=False)
    x, _ = data.tensors("train")
    model.eval()
    acts = hidden_preactivations(model, x.to(device), config["layer"]).cpu()
    group = config["group_size"] or acts.shape[1]
    if group > acts.shape[1]:
        raise ConfigError(f"{AXIS_SWAP}: group_size {group} > the layer's {acts.shape[1]} units")
    return acts[:, :group], history.final_metrics()


@register_task(AXIS_SWAP, validate=validate_axis_swap)
def axis_swap(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Axis swapping of PCA vs ZCA whitening between consecutive mini-batches (DBN-F1).

    History: per output coordinate (``axis``) the fields of
    :data:`~normbook.analysis.axis_swap.AXIS_FIELDS`; metrics: the pair means of
    :data:`~normbook.analysis.axis_swap.SUMMARY_METRICS`, ``zca_bound_ratio_max`` (largest
    ``‖ΔW_ZCA‖_F`` over its Lipschitz bound, ≤ 1 if the bound holds) and the network's test
    accuracy. The seed trains the network and draws the batches.
    """
    from normbook.analysis.axis_swap import AXIS_FIELDS, SUMMARY_METRICS, axis_swap_measurements

    acts, train_metrics = axis_swap_activations(config, seed=seed, device=device)
    result = axis_swap_measurements(
        acts, config["batch_size"], pairs=config["pairs"], eps=config["eps"], seed=seed
    )
    history = {"axis": result.axes["axis"].tolist()}
    history.update({f: result.axes[f].tolist() for f in AXIS_FIELDS})
    metrics: dict[str, Any] = {name: result.summary[name] for name in SUMMARY_METRICS}
    ratio = result.pairs["zca_weight_change"] / result.pairs["zca_bound"]
    metrics["zca_bound_ratio_max"] = float(ratio.max())
    metrics["test_acc"] = train_metrics.get("test_acc")
    info = {"samples": int(acts.shape[0]), "features": int(acts.shape[1])}
    return {"history": history, "metrics": metrics, "info": info}


def load_axis_profiles(
    entry_id: str, scale: str = "small", root: str | os.PathLike | None = None
) -> pd.DataFrame:
    """The per-axis histories of an axis-swap entry's records as one long table.

    One row per grid point × axis: the knobs, ``axis``, mean/std/n over seeds of each field of
    :data:`~normbook.analysis.axis_swap.AXIS_FIELDS`, and ``stale``. Empty if the store has none.
    """
    from normbook.analysis.axis_swap import axis_profile_table
    from normbook.experiments.results import stored_runs

    knobs, stored = stored_runs(entry_id, scale, root)
    runs = [(point, record["history"]) for point, record, _ in stored]
    stale = {tuple(point[k] for k in knobs): is_stale for point, _, is_stale in stored}
    table = axis_profile_table(runs, knobs)
    table["stale"] = [stale.get(tuple(row[k] for k in knobs), False) for _, row in table.iterrows()]
    return table


# -- dbn.backward-steps ------------------------------------------------------------------------
@register_task(BACKWARD_STEPS, validate=validate_backward_steps)
def backward_steps(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Median CPU time of each forward/backward step of group whitening (DBN-EQ5), per step
    ``<key>_ms`` and ``<key>_share`` (of the steps' sum), the whole layer's and BatchNorm1d's
    forward+backward ms and their ratio. Always on the CPU (the steps are timed without device
    synchronization); the seed draws the input."""
    from normbook.analysis.eigen_backward import time_whitening_steps

    validate_backward_steps(config)
    table = time_whitening_steps(
        config["batch_size"],
        config["num_features"],
        config["group_size"],
        method=config["method"],
        repeats=config["repeats"],
        warmup=config["warmup"],
        seed=seed,
        threads=config["threads"],
    )
    metrics: dict[str, Any] = {}
    for row in table.itertuples(index=False):
        metrics[f"{row.key}_ms"] = float(row.ms)
        if row.key not in ("layer", "bn"):
            metrics[f"{row.key}_share"] = float(row.share)
    metrics["layer_ratio_to_bn"] = metrics["layer_ms"] / metrics["bn_ms"]
    steps = table[~table["key"].isin(["layer", "bn"])]
    metrics["forward_share"] = float(steps.loc[steps["phase"] == "forward", "share"].sum())
    info = {"device": "cpu", "threads": table.attrs["threads"]}
    return {"history": {}, "metrics": metrics, "info": info}


# -- dbn.layer-cost ------------------------------------------------------------------------------
def _device_info(device: torch.device, threads: int | None) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "device": str(device),
        "device_name": name,
        "threads": threads or torch.get_num_threads(),
    }


@register_task(LAYER_COST, validate=validate_layer_cost)
def layer_cost(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """DBN (``method``, ``group_size``; ZCA/PCA with the analytic backward, Newton by autograd)
    forward+backward over BatchNorm2d's on an input of ``shape``, timed alternately on
    ``device``: metrics ``ratio_to_bn``, ``dbn_ms``, ``bn_ms``. The seed draws the input."""
    from normbook.analysis.dbn_cost import layer_cost_table

    validate_layer_cost(config)
    table = layer_cost_table(
        config["shape"],
        group_sizes=(config["group_size"],),
        methods=(config["method"],),
        repeats=config["repeats"],
        warmup=config["warmup"],
        seed=seed,
        threads=config["threads"],
        device=device,
    )
    row = table[table["layer"] == "dbn"].iloc[0]
    metrics = {
        "ratio_to_bn": float(row["ratio_to_bn"]),
        "dbn_ms": float(row["ms"]),
        "bn_ms": float(row["bn_ms"]),
    }
    info = {
        **_device_info(device, config["threads"]),
        "backward": row["backward"],
        "effective_group_size": int(row["effective_group_size"]),
    }
    return {"history": {}, "metrics": metrics, "info": info}


# -- dbn.appendix-b ------------------------------------------------------------------------------
@register_task(APPENDIX_B, validate=validate_appendix_b)
def appendix_b(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Full ZCA whitening (analytic backward) and a 3×3 convolution on an input of ``shape``
    (the paper's: 64×64×32×32), forward+backward, each timed alternately with BatchNorm2d:
    ``dbn_ms``, ``conv_ms``, their ratios to BN and ``dbn_over_conv`` (the paper: 71 ms / 32 ms
    on its GPU)."""
    from normbook.analysis.dbn_cost import appendix_b_table

    validate_appendix_b(config)
    table = appendix_b_table(
        shape=config["shape"],
        repeats=config["repeats"],
        warmup=config["warmup"],
        seed=seed,
        threads=config["threads"],
        device=device,
    ).set_index("layer")
    dbn, conv = table.loc["dbn_full_whitening"], table.loc["conv3x3"]
    metrics = {
        "dbn_ms": float(dbn["ms"]),
        "conv_ms": float(conv["ms"]),
        "bn_ms": float(math.sqrt(dbn["bn_ms"] * conv["bn_ms"])),
        "dbn_ratio_to_bn": float(dbn["ratio_to_bn"]),
        "conv_ratio_to_bn": float(conv["ratio_to_bn"]),
        "dbn_over_conv": float(dbn["ms"] / conv["ms"]),
    }
    return {"history": {}, "metrics": metrics, "info": _device_info(device, config["threads"])}
