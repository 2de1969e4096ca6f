"""Tasks and measurements of the IC theory chapters (``book/ic/independent-components.ipynb``,
``book/ic/where-batchnorm-goes.ipynb``).

- ``ic.gating-mc`` (IC-TH1, IC-EQ8): n draws of a standard Gaussian pair with correlation ρ,
  gated by independent Bernoulli gates kept with probability ``keep_prob`` = the paper's p. The
  plug-in MI and entropy of the discretized pair (``bins`` bins, values 1..B so that no value is 0)
  and the Pearson correlation of the continuous pair, each beside its exact value (p²·I, p·H +
  H_b(p), p·ρ), the exact mean of its estimator and its standard deviation, and the z-score.
- ``ic.gating-activations`` (IC-TH1, IC-EQ8 on real activations): train a model that has IC layers
  (``fit``), take the inputs of chosen IC layers over a population of training images, and for
  each keep probability gate resampled rows with the IC layer itself: measured correlations vs
  the exact gated correlation (Eq. 8 and its general form for the BN's learned shift β), and the
  plug-in MI of the most correlated pairs (binned, values 1..B) vs p²·I with its interval.
- measurement ``ic.sign-agreement`` (IC-S5) for ``classify`` runs: after every epoch, the sign
  coherence of the per-sample weight gradients of every weight layer but the first
  (:func:`normbook.analysis.zigzag.sign_agreement`) on a fixed batch of training samples, in
  training mode with the normalization buffers and the RNG restored afterwards.

Importing this module registers the tasks and the measurement
(``normbook.experiments.entries.ic_theory`` imports it).
"""

from __future__ import annotations

import copy
import functools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from normbook.experiments.measures import list_measures, register_measure
from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import list_tasks, register_task

# the MI interval is asymptotic: asserted only where n·p² (rows with both gates open) is at least
# this; below it the plug-in estimate's law is a skewed χ²-like law with a long right tail
MIN_BOTH_OPEN = 100
GATING_MC = "ic.gating-mc"
GATING_ACTIVATIONS = "ic.gating-activations"
SIGN_AGREEMENT = "ic.sign-agreement"

_MC_KEYS = frozenset({"task", "rho", "keep_prob", "sample_size", "bins", "limit"})
_ACT_KEYS = frozenset(
    {"task", "model", "data", "train", "keep_probs", "population", "bins", "pairs", "layers"}
)
# MC estimator label -> (estimate, exact mean of the estimator, its sd, exact value of theory)
MC_QUANTITIES: dict[str, tuple[str, str, str, str]] = {
    "mutual information": ("mi_estimate", "mi_expected", "mi_sd", "mi_theory"),
    "entropy": ("entropy_estimate", "entropy_expected", "entropy_sd", "entropy_theory"),
    "correlation": ("corr_estimate", "corr_theory", "corr_sd", "corr_theory"),
}


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_prob(value: Any, low_open: bool = True) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (0 < value <= 1) if low_open else (0 <= value <= 1)


# -- ic.gating-mc --------------------------------------------------------------------------------
def validate_gating_mc(config: Mapping[str, Any]) -> None:
    """Known keys; ρ in (−1, 1); keep_prob in (0, 1]; sample_size >= 10; bins >= 2; limit > 0."""
    unknown = set(config) - _MC_KEYS
    if unknown:
        raise ConfigError(f"{GATING_MC}: unknown config keys {sorted(unknown)}")
    missing = sorted(_MC_KEYS - set(config) - {"task"})
    if missing:
        raise ConfigError(f"{GATING_MC}: config lacks {missing}")
    rho = config["rho"]
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not -1 < rho < 1:
        raise ConfigError(f"{GATING_MC}: rho must be a number in (-1, 1), got {rho!r}")
    if not _is_prob(config["keep_prob"]):
        raise ConfigError(f"{GATING_MC}: keep_prob must lie in (0, 1], got {config['keep_prob']!r}")
    if not _is_int(config["sample_size"], 10):
        raise ConfigError(f"{GATING_MC}: sample_size must be an int >= 10")
    if not _is_int(config["bins"], 2):
        raise ConfigError(f"{GATING_MC}: bins must be an int >= 2")
    limit = config["limit"]
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
        raise ConfigError(f"{GATING_MC}: limit must be a number > 0, got {limit!r}")


@functools.lru_cache(maxsize=512)
def _gating_mc_exact(
    rho: float, p: float, n: int, bins: int, limit: float
) -> tuple[np.ndarray, tuple[float, dict[str, float], float, dict[str, float]]]:
    """Bin edges and the exact side of one ``ic.gating-mc`` point (shared by its seeds): I and H of
    the binned pair and the exact laws of the plug-in estimators after gating."""
    from normbook.analysis import gating

    edges = gating.gaussian_bin_edges(bins, limit)
    values = gating.bin_values(edges, "codes")
    pmf = gating.discretized_gaussian_pmf(rho, edges)
    _, _, gated = gating.gate_pmf(values, values, pmf, p)
    exact = (
        gating.pmf_mutual_information(pmf),
        gating.plugin_mi_distribution(gated, n),
        gating.pmf_entropy(pmf.sum(axis=1)),
        gating.plugin_entropy_distribution(gated.sum(axis=1), n),
    )
    return edges, exact


def gating_mc(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device | None = None,
    run_dir: Path | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """One Monte-Carlo draw of IC-TH1 and IC-EQ8 on a Gaussian pair (CPU, float64)."""
    from normbook.analysis import gating
    from normbook.analysis.information import (
        discrete_entropy,
        discrete_mutual_information,
        gaussian_mutual_information,
        gaussian_pair,
    )

    validate_gating_mc(config)
    rho, p, n = float(config["rho"]), float(config["keep_prob"]), int(config["sample_size"])
    edges, exact = _gating_mc_exact(rho, p, n, int(config["bins"]), float(config["limit"]))
    x, y = gaussian_pair(rho, n, generator=seed)
    gates = gating.keep_gates((2, n), p, np.random.default_rng([seed, 7919]))
    codes_x = np.digitize(x, edges[1:-1]) + 1  # 1..B: the gated value 0 means "gate closed"
    codes_y = np.digitize(y, edges[1:-1]) + 1
    gated_x = (gates[0] * codes_x).astype(np.int64)
    gated_y = (gates[1] * codes_y).astype(np.int64)

    mi, mi_dist, entropy, entropy_dist = exact
    corr = float(np.corrcoef(gates[0] * x, gates[1] * y)[0, 1])
    corr_sd = gating.gated_gaussian_correlation_sd(rho, p, n)
    metrics = {
        "mi_ungated": mi,
        "mi_gaussian": gaussian_mutual_information(rho),
        "mi_theory": gating.theorem1_mutual_information(mi, p),
        "mi_exact": mi_dist["mi"],
        "mi_estimate": discrete_mutual_information(gated_x, gated_y),
        "mi_expected": mi_dist["mean"],
        "mi_sd": mi_dist["sd"],
        "entropy_ungated": entropy,
        "entropy_theory": gating.theorem1_entropy(entropy, p),
        "entropy_exact": entropy_dist["entropy"],
        "entropy_estimate": discrete_entropy(gated_x),
        "entropy_expected": entropy_dist["mean"],
        "entropy_sd": entropy_dist["sd"],
        "corr_theory": p * rho,
        "corr_estimate": corr,
        "corr_sd": corr_sd,
        "keep_fraction": float(gates.mean()),
    }
    metrics["mi_z"] = (metrics["mi_estimate"] - metrics["mi_expected"]) / metrics["mi_sd"]
    metrics["entropy_z"] = (metrics["entropy_estimate"] - metrics["entropy_expected"]) / metrics[
        "entropy_sd"
    ]
    metrics["corr_z"] = (corr - p * rho) / corr_sd
    return {"history": {}, "metrics": metrics}


def gating_mc_samples(
    rho: float,
    keep_prob: float,
    sample_size: int,
    seeds: int | Sequence[int] = 5,
    bins: int = 8,
    limit: float = 3.0,
) -> pd.DataFrame:
    """``ic.gating-mc`` at one point for several seeds, in memory (live panels): one row per seed
    with every metric of the task."""
    config = {
        "task": GATING_MC,
        "rho": rho,
        "keep_prob": keep_prob,
        "sample_size": sample_size,
        "bins": bins,
        "limit": limit,
    }
    chosen = range(seeds) if isinstance(seeds, int) else seeds
    return pd.DataFrame([{"seed": s, **gating_mc(config, seed=s)["metrics"]} for s in chosen])


def gating_mc_long(table: pd.DataFrame, quantity: str = "mutual information") -> pd.DataFrame:
    """A ``load`` grid (or :func:`gating_mc_samples` rows with knob columns) of ``ic.gating-mc`` as
    one row per point × curve: ``Monte Carlo`` (mean ± std over seeds), ``theory`` (IC-TH1 /
    Eq. 8) and, for the mutual information, ``p·I`` (the wrong, linear decay) for contrast.

    Columns ``rho``, ``keep_prob``, ``curve``, ``value``, ``spread``.
    """
    estimate, _, _, theory = MC_QUANTITIES[quantity]
    rows = []
    for _, point in table[table["n"] > 0].iterrows():
        base = {"rho": point["rho"], "keep_prob": point["keep_prob"]}
        rows.append(
            {
                **base,
                "curve": "Monte Carlo (mean ± 1 std over seeds)",
                "value": point[f"{estimate}_mean"],
                "spread": point[f"{estimate}_std"],
            }
        )
        rows.append({**base, "curve": "theory", "value": point[f"{theory}_mean"], "spread": 0.0})
        if quantity == "mutual information":
            value = point["keep_prob"] * point["mi_ungated_mean"]
            rows.append(
                {**base, "curve": "p·I (linear, for contrast)", "value": value, "spread": 0.0}
            )
    return pd.DataFrame(rows)


# -- ic.gating-activations -----------------------------------------------------------------------
def validate_gating_activations(config: Mapping[str, Any]) -> None:
    """A classify-like model/data/train section plus the measurement's keys."""
    from normbook.experiments.tasks import validate_classify

    unknown = set(config) - _ACT_KEYS
    if unknown:
        raise ConfigError(f"{GATING_ACTIVATIONS}: unknown config keys {sorted(unknown)}")
    missing = sorted(_ACT_KEYS - set(config) - {"task"})
    if missing:
        raise ConfigError(f"{GATING_ACTIVATIONS}: config lacks {missing}")
    validate_classify({"task": "classify", **{k: config[k] for k in ("model", "data", "train")}})
    if config["model"].get("norm") != "ic":
        raise ConfigError(f"{GATING_ACTIVATIONS}: the model must have IC layers (norm='ic')")
    probs = config["keep_probs"]
    if not isinstance(probs, Sequence) or not probs or not all(_is_prob(p) for p in probs):
        raise ConfigError(f"{GATING_ACTIVATIONS}: keep_probs must be a list of numbers in (0, 1]")
    for key, minimum in (("population", 10), ("bins", 2), ("pairs", 1)):
        if not _is_int(config[key], minimum):
            raise ConfigError(f"{GATING_ACTIVATIONS}: {key} must be an int >= {minimum}")
    layers = config["layers"]
    if not isinstance(layers, Sequence) or not layers or not all(_is_int(i, 0) for i in layers):
        raise ConfigError(f"{GATING_ACTIVATIONS}: layers must be a list of IC-layer indices >= 0")


def train_ic_model(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device | None = None,
    run_dir: Path | None = None,
    progress: bool | None = None,
) -> tuple[torch.nn.Module, Any, Any]:
    """Build and ``fit`` the model of an ``ic.gating-activations`` config: (model, data, history)."""
    from normbook.data import load_dataset
    from normbook.experiments.tasks import train_config
    from normbook.models import build_model, training_callbacks
    from normbook.train import fit

    data_options = dict(config["data"])
    data = load_dataset(data_options.pop("name"), **data_options)
    model_options = dict(config["model"])
    torch.manual_seed(seed)
    model = build_model(model_options.pop("name"), num_classes=data.num_classes, **model_options)
    history = fit(
        model,
        data,
        train_config(config),
        seed=seed,
        device=device or torch.device("cpu"),
        run_dir=run_dir,
        callbacks=training_callbacks(model),
        progress=progress,
    )
    return model, data, history


def ic_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's :class:`~normbook.layers.ICLayer` modules, in module order."""
    from normbook.layers import ICLayer

    return [m for m in model.modules() if isinstance(m, ICLayer)]


def ic_layer_inputs(
    model: torch.nn.Module, inputs: torch.Tensor, layer: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, BatchNorm output) of IC layer ``layer`` over ``inputs``, as M×C float64 matrices of
    channel samples. One forward pass of a copy of the model in training mode: the BatchNorm
    output is the population-standardized input times γ plus β, the very tensor the IC layer's
    Dropout gates."""
    from normbook.analysis.correlation import channel_samples

    clone = copy.deepcopy(model).train()
    layers = ic_layers(clone)
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer {layer} is not an IC-layer index; the model has {len(layers)}")
    captured: dict[str, torch.Tensor] = {}

    def take_input(_m: torch.nn.Module, args: tuple) -> None:
        captured["input"] = args[0].detach()

    def take_bn(_m: torch.nn.Module, _args: tuple, output: torch.Tensor) -> None:
        captured["bn"] = output.detach()

    handles = [
        layers[layer].register_forward_pre_hook(take_input),
        layers[layer].bn.register_forward_hook(take_bn),
    ]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            clone(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return channel_samples(captured["input"]), channel_samples(captured["bn"])


def gating_profile(
    ic_layer: torch.nn.Module,
    layer_input: torch.Tensor,
    bn_output: torch.Tensor,
    keep_probs: Sequence[float],
    *,
    bins: int = 8,
    pairs: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Monte Carlo of IC-TH1/IC-EQ8 with a real IC layer on real activations (M×C rows).

    The population is the M rows; for each keep probability p, M rows are drawn with
    replacement and passed through a copy of ``ic_layer`` (training mode, ``drop_prob = 1 − p``):
    its output gives the gates (non-zero entries) and the measured correlations. Theory per pair
    (i, j): Eq. 8's p·c_ij and the exact gated correlation for the BN output's mean-to-std ratios
    (:func:`~normbook.analysis.gating.gated_correlation`), with the influence-function sd; for the
    ``pairs`` most correlated pairs also the plug-in MI of the binned BN outputs (values 1..B) after
    the same gates, vs p²·I and the exact mean and sd of the estimator (``both_open`` = M·p², the
    expected number of rows with both gates open: the sd is asymptotic, trust it where this is at
    least :data:`MIN_BOTH_OPEN`).

    One row per p × pair (``pair`` −1: all pairs, slope Σĉc/Σc²), float columns as named.
    """
    from normbook.analysis import gating
    from normbook.analysis.correlation import constant_channels, correlation_matrix
    from normbook.analysis.information import bin_codes, discrete_mutual_information

    z = bn_output.to(torch.float64)
    rows_count, channels = z.shape
    corr = correlation_matrix(z).numpy()
    alive = ~constant_channels(z).numpy()
    zs = z.numpy()
    mean_to_std = zs.mean(axis=0) / np.where(alive, zs.std(axis=0), 1.0)
    upper = np.triu(np.ones((channels, channels), dtype=bool), 1) & np.outer(alive, alive)
    order = np.argsort(-np.abs(np.where(upper, corr, 0.0)), axis=None)[:pairs]
    chosen = [tuple(int(v) for v in np.unravel_index(k, corr.shape)) for k in order]
    codes = {ch: bin_codes(zs[:, ch], bins) + 1 for pair in chosen for ch in pair}
    out = []
    for p in keep_probs:
        p = float(p)
        rng = np.random.default_rng([seed, int(round(p * 1e6))])
        index = rng.integers(0, rows_count, rows_count)
        layer = copy.deepcopy(ic_layer).train()
        layer.drop_prob = 1.0 - p
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**31)))
            gated = layer(layer_input[index].to(next(layer.parameters()).dtype)).double()
        gates = (gated != 0).numpy().astype(np.float64)
        measured = correlation_matrix(gated).numpy()
        theory = gating.gated_correlation(corr, p, mean_to_std[:, None], mean_to_std[None, :])
        c_up = corr[upper]
        out.append(
            {
                "keep_prob": p,
                "pair": -1,
                "keep_fraction": float(gates.mean()),
                "corr_ungated": float(np.mean(np.abs(c_up))),
                "corr_estimate": float(measured[upper] @ c_up / (c_up @ c_up)),
                "corr_eq8": p,
                "corr_theory": float(theory[upper] @ c_up / (c_up @ c_up)),
                "mean_abs_mean_to_std": float(np.mean(np.abs(mean_to_std[alive]))),
            }
        )
        for number, (i, j) in enumerate(chosen):
            x_points, y_points, weights = gating.gate_points(zs[:, i], zs[:, j], p)
            corr_sd = gating.correlation_sd(x_points, y_points, weights, rows_count)
            vx, vy, pmf = gating.empirical_pmf(codes[i], codes[j])
            mi = gating.pmf_mutual_information(pmf)
            dist = gating.plugin_mi_distribution(gating.gate_pmf(vx, vy, pmf, p)[2], rows_count)
            estimate = discrete_mutual_information(
                (gates[:, i] * codes[i][index]).astype(np.int64),
                (gates[:, j] * codes[j][index]).astype(np.int64),
            )
            out.append(
                {
                    "keep_prob": p,
                    "pair": number,
                    "channels": f"{i},{j}",
                    "corr_ungated": float(corr[i, j]),
                    "corr_estimate": float(measured[i, j]),
                    "corr_eq8": p * float(corr[i, j]),
                    "corr_theory": float(theory[i, j]),
                    "corr_sd": corr_sd,
                    "corr_z": (float(measured[i, j]) - float(theory[i, j])) / corr_sd,
                    "corr_z_eq8": (float(measured[i, j]) - p * float(corr[i, j])) / corr_sd,
                    "mi_ungated": mi,
                    "mi_theory": p * p * mi,
                    "mi_estimate": estimate,
                    "mi_expected": dist["mean"],
                    "mi_sd": dist["sd"],
                    "mi_z": (estimate - dist["mean"]) / dist["sd"],
                    "both_open": rows_count * p * p,
                }
            )
    return pd.DataFrame(out)


def gating_activations(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train the config's IC model, then :func:`gating_profile` at each chosen IC layer."""
    validate_gating_activations(config)
    model, data, history = train_ic_model(
        config, seed=seed, device=device, run_dir=run_dir, progress=progress
    )
    model = model.to("cpu").float()
    x, _ = data.tensors("train")
    x = x[: int(config["population"])].to("cpu")
    frames = []
    for layer in config["layers"]:
        layer_input, bn_output = ic_layer_inputs(model, x, int(layer))
        frame = gating_profile(
            ic_layers(model)[int(layer)],
            layer_input,
            bn_output,
            config["keep_probs"],
            bins=int(config["bins"]),
            pairs=int(config["pairs"]),
            seed=seed,
        )
        frames.append(frame.assign(layer=int(layer)))
    table = pd.concat(frames, ignore_index=True)
    pairs = table[table["pair"] >= 0]
    asymptotic = pairs[pairs["both_open"] >= MIN_BOTH_OPEN]
    slopes = table[table["pair"] < 0]
    final = history.final_metrics()
    metrics = {
        "test_acc": final.get("test_acc"),
        "mi_z_max": float(asymptotic["mi_z"].abs().max()),
        "corr_z_max": float(pairs["corr_z"].abs().max()),
        "corr_z_eq8_max": float(pairs["corr_z_eq8"].abs().max()),
        "mi_ratio": float(
            np.mean(
                (asymptotic["mi_estimate"] - (asymptotic["mi_expected"] - asymptotic["mi_theory"]))
                / asymptotic["mi_theory"]
            )
        ),
        "corr_slope_ratio_eq8": float(np.mean(slopes["corr_estimate"] / slopes["corr_eq8"])),
        "corr_slope_ratio_theory": float(np.mean(slopes["corr_estimate"] / slopes["corr_theory"])),
    }
    profile = {
        column: [
            None if isinstance(v, float) and math.isnan(v) else v for v in table[column].tolist()
        ]
        for column in table.columns
    }
    return {"history": {"profile": profile}, "metrics": metrics}


def profile_frame(history: Mapping[str, Any]) -> pd.DataFrame:
    """The per-p × pair table of one ``ic.gating-activations`` record's history."""
    return pd.DataFrame(dict(history["profile"]))


def load_gating_profiles(
    entry_id: str, scale: str = "small", root: str | os.PathLike | None = None
) -> pd.DataFrame:
    """Every stored ``ic.gating-activations`` record of ``entry_id`` as one table (a ``seed`` and
    a ``stale`` column added); empty if the store has none."""
    from normbook.experiments.registry import get_experiment
    from normbook.experiments.store import config_hash, iter_records

    entry = get_experiment(entry_id)
    frames = []
    for point in entry.points(scale):
        hash_ = config_hash(entry.resolve(scale, point))
        for _, record in iter_records(root, scale, entry.id):
            if record["status"] != "ok" or record["point"] != point:
                continue
            frames.append(
                profile_frame(record["history"]).assign(
                    seed=record["seed"], stale=record["config_hash"] != hash_, **point
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# -- ic.sign-agreement (a measurement of classify runs) ------------------------------------------
class SignAgreement:
    """Per-epoch sign coherence of per-sample weight gradients (IC-S5), logged as
    ``sign_coherence`` and ``same_sign_rows`` (means over the weight layers after the first) and
    ``input_nonneg`` (their inputs' fraction of entries >= 0)."""

    def __init__(self, model: torch.nn.Module, data: Any, *, batch: int = 256) -> None:
        if not _is_int(batch, 2):
            raise ValueError(f"{SIGN_AGREEMENT}: batch must be an int >= 2, got {batch!r}")
        x, y = data.tensors("train")
        self.inputs, self.targets = x[:batch], y[:batch]

    def measure(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        from normbook.analysis.zigzag import sign_agreement, weight_layers

        buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
        was_training = model.training
        try:
            model.train()
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                rows = sign_agreement(
                    model,
                    self.inputs.to(device),
                    self.targets.to(device),
                    layers=[name for name, _ in weight_layers(model)[1:]],
                )
        finally:
            with torch.no_grad():
                for name, value in model.named_buffers():
                    value.copy_(buffers[name])
            model.train(was_training)
        return {
            "sign_coherence": float(np.mean([r["coherence"] for r in rows])),
            "same_sign_rows": float(np.mean([r["same_sign"] for r in rows])),
            "input_nonneg": float(np.mean([r["input_nonneg"] for r in rows])),
        }

    def on_epoch_end(self, state: Any) -> None:
        for name, value in self.measure(state.model, state.device).items():
            state.log(name, value)


if GATING_MC not in list_tasks():
    register_task(GATING_MC, validate=validate_gating_mc)(gating_mc)
if GATING_ACTIVATIONS not in list_tasks():
    register_task(GATING_ACTIVATIONS, validate=validate_gating_activations)(gating_activations)
if SIGN_AGREEMENT not in list_measures():
    register_measure(SIGN_AGREEMENT)(SignAgreement)


def per_seed_curves(
    entry_id: str, scale: str, metrics: Sequence[str], root: str | os.PathLike | None = None
) -> pd.DataFrame:
    """One row per grid point × seed × epoch of a classify entry's stored records (ok or diverged):
    the knobs, ``seed``, ``epoch`` and each metric (history field or ``history.extras`` value),
    for claims across seeds (mean ± band of a per-seed summary)."""
    from normbook.experiments.registry import get_experiment
    from normbook.experiments.store import config_hash, iter_records

    entry = get_experiment(entry_id)
    rows = []
    for point in entry.points(scale):
        hash_ = config_hash(entry.resolve(scale, point))
        for _, record in iter_records(root, scale, entry.id):
            if record["config_hash"] != hash_ or record["status"] not in ("ok", "diverged"):
                continue
            history = {**record["history"].get("extras", {}), **record["history"]}
            for i, epoch in enumerate(history.get("epoch", [])):
                rows.append(
                    {
                        **point,
                        "seed": record["seed"],
                        "epoch": epoch,
                        **{m: history[m][i] for m in metrics},
                    }
                )
    return pd.DataFrame(rows)
