"""DBN MLP chapters (DBN-F2/F3/F4, DBN-S34): the LN layer, the method task, the FIM measure, the
best-learning-rate protocol, time ratios and the Marchenko–Pastur estimation problem."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn as nn

import normbook.experiments.entries.dbn_mlp  # noqa: F401  (registers the entries)
from normbook.analysis.fisher import relative_fisher
from normbook.analysis.group_whitening import (
    edge_fluctuation_scales,
    marchenko_pastur_condition,
    marchenko_pastur_density,
    marchenko_pastur_edges,
    sample_covariance_spectra,
    spread_table,
)
from normbook.experiments import load_curves, run
from normbook.experiments.spec import ConfigError, deep_merge
from normbook.experiments.tasks import validate_config
from normbook.experiments.tasks_dbn_mlp import (
    FIM_MEASURE,
    FIM_P90,
    FisherCondition,
    best_learning_rates,
    classify_config,
    last_layer_inputs,
    live_method_curves,
    time_ratios,
)
from normbook.layers import DecorrelatedBatchNorm, create_norm_layer
from normbook.models import build_model

F64 = torch.float64


# -- LN ------------------------------------------------------------------------------------------
def test_ln_normalizes_each_sample_over_its_features():
    torch.manual_seed(0)
    layer = create_norm_layer("ln", 6, spatial_dims=0)
    assert isinstance(layer, nn.LayerNorm)
    x = 3 * torch.randn(5, 6, dtype=F64) + 2
    y = layer.to(F64)(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(5, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        y.var(1, unbiased=False), torch.ones(5, dtype=F64), atol=1e-4, rtol=0
    )
    conv = create_norm_layer("ln", 3, spatial_dims=2).to(F64)
    maps = torch.randn(2, 3, 4, 4, dtype=F64)
    torch.testing.assert_close(conv(maps), nn.functional.layer_norm(maps, (3, 4, 4)))
    mlp = build_model("mlp", 10, in_features=64, hidden=(16, 8), norm="ln")
    assert sum(isinstance(m, nn.LayerNorm) for m in mlp.modules()) == 2
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [m.bias is None for m in linears] == [True, True, False]  # LN's β replaces the bias


# -- the method task -----------------------------------------------------------------------------
def _method_config(**changes):
    base = {
        "task": "dbn.mlp-method",
        "method": "dbn-zca",
        "depth": 3,
        "group_size": 4,
        "dbn": {"affine": False},
        "model": {"name": "mlp", "in_features": 64, "hidden": [16], "act": "relu"},
        "data": {"name": "digits", "variant": "flat"},
        "train": {"epochs": 2, "batch_size": None, "lr": 0.1, "momentum": 0.0, "augment": False},
    }
    return deep_merge(base, changes)


def test_methods_become_mlp_options_and_dbn_options_reach_only_dbn():
    zca = classify_config(_method_config())
    assert zca["task"] == "classify"
    assert zca["model"] == {
        "name": "mlp",
        "in_features": 64,
        "hidden": [16, 16, 16],
        "act": "relu",
        "norm": "dbn",
        "whitening": "zca",
        "affine": False,
        "group_size": 4,
    }
    plain = classify_config(_method_config(method="plain", depth=None))
    assert plain["model"]["norm"] == "none" and plain["model"]["hidden"] == [16]
    assert "group_size" not in plain["model"] and "affine" not in plain["model"]
    assert classify_config(_method_config(method="dbn-pca"))["model"]["whitening"] == "pca"
    assert classify_config(_method_config(method="ln"))["model"]["norm"] == "ln"
    validate_config(_method_config())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "nnn"}, "method must be one of"),
        ({"depth": 0}, "depth must be None or an int"),
        ({"group_size": 2.5}, "group_size must be None or an int"),
        ({"model": {"norm": "bn"}}, "must not set"),
        ({"colour": 1}, "unknown"),
    ],
)
def test_invalid_method_configs_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(_method_config(**changes))


def test_group_size_one_mlp_is_the_batchnorm_mlp():
    """k_G = 1 reduces DBN to BN (DBN Sec. 3.4): the same network function and gradients."""
    torch.manual_seed(0)
    dbn = build_model("mlp", 10, in_features=8, hidden=(6, 5), norm="dbn", group_size=1).to(F64)
    torch.manual_seed(0)
    bn = build_model("mlp", 10, in_features=8, hidden=(6, 5), norm="bn").to(F64)
    x = torch.randn(32, 8, dtype=F64)
    out_dbn, out_bn = dbn(x), bn(x)
    torch.testing.assert_close(out_dbn, out_bn, atol=1e-10, rtol=0)
    out_dbn.square().sum().backward()
    out_bn.square().sum().backward()
    for (name, p), q in zip(dbn.named_parameters(), bn.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-9, rtol=0, msg=name)
    layer = DecorrelatedBatchNorm(5, group_size=1).to(F64)
    torch.testing.assert_close(
        layer(x[:, :5]), nn.BatchNorm1d(5).to(F64)(x[:, :5]), atol=1e-10, rtol=0
    )


# -- the FIM measure -----------------------------------------------------------------------------
def test_fisher_condition_matches_relative_fisher_and_leaves_buffers_alone():
    torch.manual_seed(0)
    model = build_model("mlp", 10, in_features=64, hidden=(12, 8), norm="bn").to(F64)
    model.eval()
    x = torch.randn(40, 64, dtype=F64)
    y = torch.arange(40) % 10
    before = {n: b.clone() for n, b in model.named_buffers()}
    values = FisherCondition(model, None).measure(model, x, y)
    assert not model.training
    for name, b in model.named_buffers():
        torch.testing.assert_close(b, before[name], atol=0, rtol=0, msg=name)
    expected = relative_fisher(model.train(), x, y)
    assert values[FIM_MEASURE] == pytest.approx(expected.condition_number, rel=1e-12)
    assert values[FIM_P90] == pytest.approx(expected.percentile_condition_number(0.9), rel=1e-12)
    assert values[FIM_P90] <= values[FIM_MEASURE]
    torch.testing.assert_close(last_layer_inputs(model, x), model.layers[:-1](x).detach())
    with pytest.raises(ValueError, match="every"):
        FisherCondition(model, None, every=0)
    with pytest.raises(ValueError, match="labels"):
        FisherCondition(model, None, labels="guess")


def test_the_conditioning_entry_logs_the_condition_number_per_measured_epoch(tmp_path):
    points = [{"method": "plain"}, {"method": "dbn-zca"}]
    outcomes = run("dbn.f3.conditioning", "smoke", points=points, root=tmp_path, progress=False)
    assert {o.status for o in outcomes} == {"ok"} and len(outcomes) == 2
    curves = load_curves(
        "dbn.f3.conditioning", "smoke", ("train_loss", FIM_MEASURE, "wall_time"), root=tmp_path
    )
    epochs = 6  # smoke: the first and every 2nd epoch measured
    assert len(curves) == 2 * epochs
    measured = curves["epoch"].isin([1, 2, 4, 6])
    assert (curves.loc[measured, f"{FIM_MEASURE}_mean"] >= 1).all()
    assert curves.loc[~measured, f"{FIM_MEASURE}_mean"].isna().all()
    live = live_method_curves(
        "dbn.f3.conditioning",
        "smoke",
        {"method": "bn"},
        overrides={"train": {"lr": 0.1}},
        metrics=("train_loss",),
    )
    assert len(live) == epochs and (live["method"] == "bn").all()


# -- protocol and ratios -------------------------------------------------------------------------
def test_best_learning_rate_prefers_rates_where_every_seed_finished():
    summary = pd.DataFrame(
        {
            "method": ["a", "a", "a", "b", "b", "b", "c"],
            "train.lr": [0.1, 1.0, 5.0, 0.1, 1.0, 5.0, 0.1],
            "train_loss_mean": [0.5, 0.2, 0.01, 2.5, 0.1, math.nan, math.nan],
            "train_loss_std": [0.1, 0.1, 0.0, 0.01, 0.0, math.nan, math.nan],
            "n": [3, 3, 3, 3, 3, 3, 3],
            "n_diverged": [0, 0, 1, 1, 2, 3, 3],
        }
    )
    best = best_learning_rates(summary, ["method"]).set_index("method")
    # a: 5.0 has the lowest loss but a diverged seed; 1.0 wins among complete rates
    assert best.loc["a", "best_lr"] == 1.0 and best.loc["a", "train_loss_mean"] == 0.2
    assert best.loc["a", "all_finished"] and best.loc["a", "diverged_lrs"] == [5.0]
    # b: no complete rate; the one with the most finished seeds (0.1, 2 of 3), not the lowest loss
    assert best.loc["b", "best_lr"] == 0.1 and best.loc["b", "finished"] == 2
    assert not best.loc["b", "all_finished"] and best.loc["b", "diverged_lrs"] == [0.1, 1.0, 5.0]
    # c: everything diverged
    assert math.isnan(best.loc["c", "best_lr"]) and best.loc["c", "finished"] == 0
    with pytest.raises(ValueError, match="lacks"):
        best_learning_rates(summary.drop(columns="n_diverged"), ["method"])


def test_time_ratios_are_per_epoch_over_the_reference():
    summary = pd.DataFrame(
        {
            "method": ["bn", "dbn", "dbn"],
            "wall_time_mean": [2.0, 4.0, 8.0],
            "epochs_mean": [10, 10, 20],
            "n": [1, 1, 1],
        }
    )
    ratios = time_ratios(summary, "method", "bn").set_index("method")
    assert ratios.loc["bn", "ratio"] == 1.0 and ratios.loc["dbn", "ratio"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="reference"):
        time_ratios(summary, "method", "ln")


# -- Marchenko–Pastur ----------------------------------------------------------------------------
def test_marchenko_pastur_formulas():
    lower, upper = marchenko_pastur_edges(16, 64, centered=False)
    assert (lower, upper) == pytest.approx((0.25, 2.25))
    assert marchenko_pastur_condition(16, 64, centered=False) == pytest.approx(9.0)
    assert math.isinf(marchenko_pastur_condition(64, 64, centered=False))
    assert marchenko_pastur_edges(16, 65) == pytest.approx(tuple(64 / 65 * e for e in (0.25, 2.25)))
    for k, m, mass in ((16, 64, 1.0), (128, 64, 0.5)):
        lo, hi = marchenko_pastur_edges(k, m, centered=False)
        grid = torch.linspace(lo, hi, 200001, dtype=F64)
        integral = torch.trapezoid(marchenko_pastur_density(grid, k, m, centered=False), grid)
        assert float(integral) == pytest.approx(mass, abs=2e-3)
    with pytest.raises(ValueError, match="m must"):
        marchenko_pastur_edges(4, 0)


def test_monte_carlo_extreme_eigenvalues_approach_the_edges():
    table = spread_table([64], [256, 1024], trials=8, seed=0)
    for row in table.itertuples():
        lower, upper = edge_fluctuation_scales(row.k, row.m)
        assert abs(row.mc_min - row.mp_lower) < 4 * lower  # Tracy–Widom: a few scales
        assert abs(row.mc_max - row.mp_upper) < 4 * upper
        assert lower < 0.02 and upper < 0.06
    with pytest.raises(ValueError, match="k < m"):
        edge_fluctuation_scales(8, 8)
    lam = sample_covariance_spectra(8, 5, trials=2)  # centred, rank m − 1 = 4
    assert int((lam < 1e-10).sum()) == 2 * 4
    rank_deficient = spread_table([8], [5], trials=2)
    assert math.isinf(rank_deficient["mc_condition"].iloc[0])


def test_a_run_whose_weights_overflow_is_diverged_not_failed():
    """A DBN layer refuses an input whose covariance overflows float32; when that happens after
    steps that succeeded, the loop records the run as diverged (keeping the epochs before)."""
    from normbook.data import load_dataset
    from normbook.train import TrainConfig, fit

    class BlowUp:
        def on_epoch_end(self, state):
            with torch.no_grad():
                next(state.model.parameters()).fill_(1e19)

    torch.manual_seed(0)
    model = build_model("mlp", 10, in_features=64, hidden=(8,), norm="dbn", group_size=None)
    data = load_dataset("digits", variant="flat")
    config = TrainConfig(epochs=3, batch_size=None, augment=False)
    history = fit(model, data, config, callbacks=[BlowUp()], progress=False)
    assert history.diverged and history.diverged_epoch == 2 and len(history) == 1
    assert "non-finite activations" in history.diverged_reason
    model = build_model("mlp", 10, in_features=64, hidden=(8,), norm="dbn", group_size=None)
    with torch.no_grad():
        next(model.parameters()).fill_(1e19)
    with pytest.raises(ValueError, match="NaN or Inf"):  # before any step: an error, not a run
        fit(model, data, config, progress=False)
