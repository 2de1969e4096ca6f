"""Tasks and measurement of the IC theory chapters (normbook.experiments.tasks_ic_theory)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from normbook.analysis.correlation import channel_samples
from normbook.data import load_dataset
from normbook.experiments.registry import default_registry
from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import validate_config
from normbook.experiments.tasks_ic_theory import (
    MIN_BOTH_OPEN,
    SignAgreement,
    gating_mc,
    gating_mc_long,
    gating_mc_samples,
    gating_profile,
    ic_layer_inputs,
    ic_layers,
)
from normbook.layers import ICLayer
from normbook.models import build_model

MC = {
    "task": "ic.gating-mc",
    "rho": 0.8,
    "keep_prob": 0.4,
    "sample_size": 3000,
    "bins": 6,
    "limit": 2.5,
}


def test_gating_mc_validation_names_the_bad_key():
    validate_config(MC)
    for key, value, message in (
        ("rho", 1.0, "rho"),
        ("keep_prob", 0.0, "keep_prob"),
        ("sample_size", 5, "sample_size"),
        ("bins", 1, "bins"),
    ):
        with pytest.raises(ConfigError, match=message):
            validate_config({**MC, key: value})
    with pytest.raises(ConfigError, match="unknown config keys"):
        validate_config({**MC, "colour": 1})


def test_gating_mc_estimates_sit_near_their_exact_means_and_theory_matches_theorem1():
    samples = gating_mc_samples(
        MC["rho"], MC["keep_prob"], MC["sample_size"], seeds=6, bins=6, limit=2.5
    )
    assert (samples[["mi_z", "entropy_z", "corr_z"]].abs() < 4).all().all()
    row = samples.iloc[0]
    assert abs(row["mi_theory"] - 0.16 * row["mi_ungated"]) < 1e-15
    assert abs(row["mi_exact"] - row["mi_theory"]) < 1e-12  # codes 1..B: no atom at zero
    assert abs(row["entropy_exact"] - row["entropy_theory"]) < 1e-12
    assert abs(row["keep_fraction"] - 0.4) < 4 * math.sqrt(0.24 / 6000)
    again = gating_mc(MC, seed=0)["metrics"]
    assert again["mi_estimate"] == samples.iloc[0]["mi_estimate"]  # seeded


def test_gating_mc_long_has_the_three_curves_per_point():
    table = gating_mc_samples(0.5, 0.5, 500, seeds=2)
    grid = table.mean(numeric_only=True).to_frame().T
    grid = grid.rename(columns={c: f"{c}_mean" for c in grid.columns})
    for c in list(grid.columns):
        grid[c.replace("_mean", "_std")] = 0.0
    grid["rho"], grid["keep_prob"], grid["n"] = 0.5, 0.5, 2
    long = gating_mc_long(grid)
    assert sorted(long["curve"]) == sorted(
        ["Monte Carlo (mean ± 1 std over seeds)", "theory", "p·I (linear, for contrast)"]
    )
    assert len(gating_mc_long(grid, "correlation")) == 2


def test_gating_profile_on_an_ic_mlp_agrees_with_the_exact_values():
    torch.manual_seed(0)
    model = build_model(
        "mlp", 10, in_features=64, hidden=(24,), norm="ic", norm_position="after_act"
    )
    x, _ = load_dataset("digits", variant="flat").tensors("train")
    layer_input, bn_output = ic_layer_inputs(model, x, 0)
    assert layer_input.shape == bn_output.shape == (x.shape[0], 24)
    assert bn_output.mean(0).abs().max() < 1e-6  # γ = 1, β = 0 at initialization
    profile = gating_profile(
        ic_layers(model)[0], layer_input, bn_output, [0.5, 0.9], pairs=2, seed=0
    )
    pairs = profile[profile["pair"] >= 0]
    assert len(pairs) == 4 and (pairs["both_open"] >= MIN_BOTH_OPEN).all()
    assert (pairs["mi_z"].abs() < 4).all() and (pairs["corr_z"].abs() < 4).all()
    assert np.allclose(pairs["mi_theory"], pairs["keep_prob"] ** 2 * pairs["mi_ungated"])
    slopes = profile[profile["pair"] < 0]
    assert ((slopes["corr_estimate"] / slopes["corr_eq8"] - 1).abs() < 0.1).all()
    assert ((slopes["keep_fraction"] - slopes["keep_prob"]).abs() < 0.01).all()
    with pytest.raises(ValueError, match="IC-layer index"):
        ic_layer_inputs(model, x, 3)


def test_sign_agreement_measure_restores_buffers_and_rng():
    torch.manual_seed(0)
    model = build_model(
        "mlp", 10, in_features=64, hidden=(16, 16), norm="ic", norm_position="before_act"
    )
    data = load_dataset("digits", variant="flat")
    measure = SignAgreement(model, data, batch=64)
    before = {k: v.clone() for k, v in model.named_buffers()}
    state = torch.get_rng_state()
    values = measure.measure(model.eval(), torch.device("cpu"))
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.named_buffers())
    assert torch.equal(state, torch.get_rng_state())
    assert values["sign_coherence"] == 1.0 and values["input_nonneg"] == 1.0
    with pytest.raises(ValueError, match="batch"):
        SignAgreement(model, data, batch=1)


def test_the_entries_validate_and_use_keep_and_drop_conventions_consistently():
    registry = default_registry()
    for entry_id in ("ic.th1.gating-mc", "ic.th1.activations", "ic.s5.sign-agreement"):
        entry = registry.get(entry_id)
        assert entry.id.startswith("ic.") and entry.artifact in ("IC-TH1", "IC-S5")
        for scale in entry.scales:
            for point in entry.points(scale):
                validate_config(entry.resolve(scale, point))
    full = registry.get("ic.th1.activations").resolve("full")
    assert full["model"]["drop_prob"] == 0.05  # the paper's "dropout rate 0.05": p = 0.95
    layer = ICLayer(3, drop_prob=full["model"]["drop_prob"])
    assert layer.keep_prob == 0.95
    model = build_model("resnet_cifar", 10, depth=110, norm="ic", unit="relu-ic-conv")
    assert len(ic_layers(model)) > max(full["layers"])
    assert channel_samples(torch.zeros(2, 3, 4, 4)).shape == (32, 3)
