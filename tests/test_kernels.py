"""Kernels of deep ReLU nets (normbook.analysis.kernels) and the MimicNorm theory tasks (MN-EQ2-4,
MN-F2, MN-F3, MN-TH1-3)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call, jacrev, vmap

from normbook.analysis import kernels as K
from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks_mimicnorm import (
    LAYER_CORRELATIONS,
    NTK_CONDITION,
    layer_correlations,
    live_profiles,
    load_channel_stats,
    load_profiles,
    ntk_condition,
    point_config,
    profile_table,
    validate_layer_correlations,
    validate_ntk_condition,
)

PI = math.pi
CPU = torch.device("cpu")


# -- dual activation ---------------------------------------------------------------------------
def test_relu_dual_known_values_and_types():
    assert K.relu_dual(1.0) == pytest.approx(1.0, abs=1e-15)
    assert K.relu_dual(0.0) == pytest.approx(1.0 / PI, abs=1e-15)
    assert K.relu_dual(-1.0) == pytest.approx(0.0, abs=1e-15)
    assert isinstance(K.relu_dual(0.3), float)
    out = K.relu_dual(torch.tensor([0.0, 1.0], dtype=torch.float32))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert K.relu_dual_derivative(1.0) == 1.0 and K.relu_dual_derivative(0.0) == 0.5


@pytest.mark.parametrize("c", [1.5, -1.01, float("nan")])
def test_relu_dual_rejects_values_outside_minus_one_one(c):
    with pytest.raises(ValueError, match="c must"):
        K.relu_dual(c)
    with pytest.raises(TypeError):
        K.relu_dual(True)


@pytest.mark.parametrize("c", [-0.95, -0.4, 0.0, 0.6, 0.97])
def test_relu_dual_agrees_with_monte_carlo_within_five_standard_errors(c):
    estimate, stderr = K.monte_carlo_dual(c, 400_000, seed=1)
    assert abs(estimate - K.relu_dual(c)) < 5 * stderr
    estimate, stderr = K.monte_carlo_dual(c, 400_000, seed=2, derivative=True)
    assert abs(estimate - K.relu_dual_derivative(c)) < 5 * stderr


def test_relu_dual_derivative_is_the_derivative():
    c = torch.linspace(-0.99, 0.99, 41, dtype=torch.float64)
    h = 1e-6
    numeric = (K.relu_dual(c + h) - K.relu_dual(c - h)) / (2 * h)
    assert (numeric - K.relu_dual_derivative(c)).abs().max() < 1e-8


def test_weight_mean_gain_is_one_over_relu_variance():
    mean, second = K.relu_moments()
    assert K.weight_mean_gain() == pytest.approx(2 * PI / (PI - 1), rel=1e-14)
    assert K.WEIGHT_MEAN_GAIN == pytest.approx(K.weight_mean_gain(), rel=1e-14)
    u = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    relu = torch.relu(u)
    assert float(relu.mean()) == pytest.approx(mean, abs=2e-3)
    assert float(relu.pow(2).mean()) == pytest.approx(second, abs=3e-3)


# -- maps and fixed points ---------------------------------------------------------------------
def test_correlation_maps_fixed_points_and_slopes():
    assert K.correlation_map(0.0, "weight_mean") == pytest.approx(0.0, abs=1e-15)
    assert K.correlation_map(1.0, "weight_mean") == pytest.approx(1.0, abs=1e-15)
    c = torch.linspace(-1, 1, 101, dtype=torch.float64)
    wm = K.correlation_map(c, "weight_mean")
    bn = K.correlation_map(c, "bn", batch_correlation=0.0)
    assert (wm - bn).abs().max() < 1e-14  # BN at a decorrelated batch = weight mean
    assert K.chi1("plain") == pytest.approx(1.0, abs=1e-15)
    assert K.chi1("weight_mean") == pytest.approx(PI / (PI - 1), rel=1e-14)
    h = 1e-7
    fd = (K.correlation_map(1.0, "weight_mean") - K.correlation_map(1 - h, "weight_mean")) / h
    assert fd == pytest.approx(K.chi1("weight_mean"), rel=1e-3)
    with pytest.raises(ValueError, match="variant"):
        K.correlation_map(0.5, "layernorm")
    with pytest.raises(ValueError, match="batch_correlation"):
        K.correlation_map(0.5, "bn", batch_correlation=1.0)


def test_fixed_points_plain_one_and_weight_mean_zero():
    plain = K.fixed_points(K.relu_dual, derivative=K.relu_dual_derivative)
    assert len(plain) == 1 and plain[0]["c"] == pytest.approx(1.0) and plain[0]["stable"]
    wm = K.fixed_points(lambda c: K.correlation_map(c, "weight_mean"))
    assert [round(p["c"], 9) for p in wm] == [0.0, 1.0]
    assert wm[0]["stable"] and not wm[1]["stable"]
    assert wm[0]["slope"] == pytest.approx(PI / (2 * (PI - 1)), rel=1e-6)
    # a map with a repelling fixed point only
    assert K.fixed_points(lambda c: 2 * c, lo=-0.4, hi=0.4)[0]["stable"] is False


@pytest.mark.parametrize("sigma_w2", [0.5, 1.0, 1.9, 2.0])
def test_relu_with_bias_is_ordered_or_critical(sigma_w2):
    (point,) = K.fixed_points(lambda c: K.relu_bias_correlation_map(c, sigma_w2))
    assert point["c"] == pytest.approx(1.0) and point["slope"] == pytest.approx(
        sigma_w2 / 2, abs=1e-3
    )
    with pytest.raises(ValueError, match="sigma_w2"):
        K.relu_bias_correlation_map(0.5, 2.5)


def test_plain_correlations_approach_one_like_nine_pi_squared_over_two_l_squared():
    c = K.iterate_correlation(0.0, 20_000)
    assert c.shape == (20_001,)
    assert bool((c[1:] >= c[:-1]).all())
    depth = 20_000
    assert depth**2 * (1 - float(c[-1])) == pytest.approx(9 * PI**2 / 2, rel=0.01)
    with pytest.raises(ValueError, match="depth"):
        K.iterate_correlation(0.0, -1)


# -- m×m kernels -------------------------------------------------------------------------------
def _sphere(m: int, n: int = 64, seed: int = 0) -> torch.Tensor:
    x = torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True) * math.sqrt(n)


def test_nngp_kernels_match_the_pairwise_maps_and_keep_their_scale():
    x = _sphere(6)
    gram0 = x @ x.T / x.shape[1]
    corr0 = K.kernel_correlations(gram0)
    for variant in ("plain", "weight_mean"):
        sigmas = K.nngp_kernels(gram0, 12, variant)
        expected = K.iterate_correlation(corr0, 11, variant)[-1]
        assert (K.kernel_correlations(sigmas[-1]) - expected).abs().max() < 1e-12
        assert (sigmas[-1].diagonal() - sigmas[0].diagonal()).abs().max() < 1e-12
    bn = K.nngp_kernels(gram0, 5, "bn")[-1]
    assert bn.sum(dim=1).abs().max() < 1e-12 and bn.diagonal().mean() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="square"):
        K.nngp_kernels(torch.ones(2, 3), 2)


def test_ntk_critical_vs_chaotic_limits():
    m = 8
    x = _sphere(m)
    gram0 = x @ x.T / x.shape[1]
    deep = K.ntk_kernels(gram0, 4000, "plain")[-1]
    assert K.mean_offdiagonal(K.kernel_correlations(deep)) == pytest.approx(0.25, abs=0.01)
    assert K.condition_number(deep) == pytest.approx(1 + m / 3, rel=0.03)
    chaotic = K.ntk_kernels(gram0, 64, "weight_mean")[-1]
    assert K.condition_number(chaotic) < 1.01
    with pytest.raises(ValueError, match="bn"):
        K.ntk_kernels(gram0, 3, "bn")


def test_condition_number_edges():
    assert K.condition_number(torch.eye(3)) == pytest.approx(1.0)
    assert K.condition_number(torch.diag(torch.tensor([1.0, 4.0]))) == pytest.approx(4.0)
    assert K.condition_number(torch.zeros(2, 2)) == math.inf
    with pytest.raises(ValueError, match="square"):
        K.condition_number(torch.ones(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        K.condition_number(torch.full((2, 2), float("nan")))


# -- nets --------------------------------------------------------------------------------------
def test_weight_mean_linear_centres_rows_and_skips_the_first_layer():
    torch.manual_seed(0)
    model = K.kernel_mlp("plain", 32, 3, dtype=torch.float64)
    first = model.layers[1].weight.detach().clone()
    names = K.weight_mean_linear_(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(names) == len(linears) - 1
    assert torch.equal(linears[0].weight, first)
    for layer in linears[1:]:
        assert layer.weight.mean(dim=1).abs().max() < 1e-14
    wide = K.kernel_mlp("weight_mean", 1024, 2)
    linear_names = [n for n, m in wide.named_modules() if isinstance(m, nn.Linear)]
    assert wide.weight_mean_layers == linear_names[1:] and len(linear_names) == 3
    w = [m for m in wide.modules() if isinstance(m, nn.Linear)][1].weight.detach()
    assert float(w.var() * w.shape[1]) == pytest.approx(K.WEIGHT_MEAN_GAIN, rel=0.02)
    with pytest.raises(ValueError, match="gain"):
        K.weight_mean_linear_init_(model, gain=-1.0)


def test_preactivations_hooks_every_relu_and_removes_the_hooks():
    torch.manual_seed(0)
    model = K.kernel_mlp("bn", 16, 4)
    layers = K.preactivations(model, _sphere(10))
    assert len(layers) == 4 and all(h.shape == (10, 16) for h in layers)
    assert all(not m._forward_hooks for m in model.modules())
    profile = K.correlation_profile(layers)
    assert max(profile["between_share"]) < 1e-12  # BN centres every channel over the batch
    with pytest.raises(ValueError, match="no ReLU"):
        K.preactivations(nn.Linear(3, 3), torch.ones(2, 3))


def test_correlation_profile_of_identical_inputs_is_one():
    torch.manual_seed(0)
    model = K.kernel_mlp("plain", 16, 3)
    x = _sphere(1).repeat(4, 1)
    profile = K.correlation_profile(K.preactivations(model, x))
    assert all(c == pytest.approx(1.0) for c in profile["corr_mean"])
    stats = K.channel_statistics(K.preactivations(model, x)[0], channels=5)
    assert stats["channel"] == list(range(5)) and max(stats["std"]) < 1e-12


def _per_sample_ntk(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Reference: per-sample Jacobians with vmap(jacrev), standard parameterization, weights."""
    weights = {n: p.detach() for n, p in model.named_parameters() if n.endswith("weight")}
    rest = {n: p.detach() for n, p in model.named_parameters() if n not in weights}

    def single(params, xi):
        return functional_call(model, {**rest, **params}, (xi[None],))[0, 0]

    jac = vmap(jacrev(single), in_dims=(None, 0))(weights, x)
    flat = torch.cat([j.reshape(x.shape[0], -1) for j in jac.values()], dim=1)
    return flat @ flat.T


def test_empirical_ntk_matches_per_sample_jacobians_for_a_plain_net():
    torch.manual_seed(0)
    model = K.kernel_mlp("plain", 24, 3)
    x = _sphere(6)
    ours = K.empirical_ntk(model, x, parameterization="standard")
    assert (ours - _per_sample_ntk(model, x)).abs().max() < 1e-10
    assert (ours - ours.T).abs().max() < 1e-12
    with pytest.raises(ValueError, match="parameterization"):
        K.empirical_ntk(model, x, parameterization="mean-field")


def test_empirical_ntk_of_bn_couples_the_batch_and_updates_nothing():
    torch.manual_seed(0)
    model = K.kernel_mlp("bn", 24, 3)
    x = _sphere(6)
    before = {n: b.clone() for n, b in model.named_buffers()}
    coupled = K.empirical_ntk(model, x, parameterization="standard")
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name])
    # the batch Jacobian differs from per-sample Jacobians of the same net on pairs of inputs
    assert torch.linalg.eigvalsh(coupled).min() > -1e-8
    pair = K.empirical_ntk(model, x[:2], parameterization="standard")
    assert (pair - coupled[:2, :2]).abs().max() > 1e-3


def test_empirical_ntk_with_weight_mean_is_the_projected_jacobian():
    torch.manual_seed(0)
    model = K.kernel_mlp("weight_mean", 16, 2)
    x = _sphere(5)
    projected = K.empirical_ntk(model, x, parameterization="standard")
    plain = K.empirical_ntk(model, x, parameterization="standard", weight_mean_layers=())
    weights = {n: p.detach() for n, p in model.named_parameters() if n.endswith("weight")}
    jac = jacrev(lambda p: functional_call(model, p, (x,))[:, 0])(weights)
    kernel = torch.zeros(5, 5, dtype=torch.float64)
    for name, block in jac.items():
        if name.replace(".weight", "") in model.weight_mean_layers:
            block = block - block.mean(dim=-1, keepdim=True)  # J·P: rows of the gradient centred
        flat = block.reshape(5, -1)
        kernel += flat @ flat.T
    assert (projected - kernel).abs().max() < 1e-10
    assert (projected - plain).abs().max() > 1e-6
    with pytest.raises(ValueError, match="no linear layer"):
        K.empirical_ntk(model, x, weight_mean_layers=("nope",))


def test_empirical_ntk_of_a_wide_net_approaches_the_infinite_width_kernel():
    torch.manual_seed(0)
    x = _sphere(5)
    gram0 = x @ x.T / x.shape[1]
    for variant in ("plain", "weight_mean"):
        theory = K.kernel_correlations(K.ntk_kernels(gram0, 2, variant)[-1])
        model = K.kernel_mlp(variant, 2048, 2)
        measured = K.kernel_correlations(K.empirical_ntk(model, x))
        assert (measured - theory).abs().max() < 0.05, variant


# -- tasks -------------------------------------------------------------------------------------
def _layer_config(**changes):
    config = {
        "task": LAYER_CORRELATIONS,
        "model": {"variant": "plain", "width": 16, "depth": 6},
        "data": {"name": "digits", "variant": "flat", "inputs": 20},
        "channel_layers": [1, 6, 60],
        "channels": 4,
    }
    config.update(changes)
    return config


def test_layer_correlations_task_records_profiles_and_channel_stats():
    result = layer_correlations(_layer_config(), seed=0, device=CPU)
    history = result["history"]
    assert history["layer"] == list(range(1, 7)) and len(history["theory"]) == 6
    assert [b["layer"] for b in history["channel_stats"]] == [1, 6]  # 60 > depth: skipped
    assert history["theory"][-1] > history["theory"][1] > history["theory"][0]
    assert 0 <= result["metrics"]["max_theory_gap"] < 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": {"variant": "ln", "width": 8, "depth": 2}}, "variant"),
        ({"model": {"variant": "plain", "width": 8}}, "exactly"),
        ({"data": {"name": "cifar10", "variant": "flat", "inputs": 9}}, "data"),
        ({"channels": 0}, "channels"),
        ({"extra": 1}, "unknown"),
    ],
)
def test_layer_correlations_validation_names_the_problem(change, message):
    with pytest.raises(ConfigError, match=message):
        validate_layer_correlations(_layer_config(**change))


def test_ntk_condition_task_and_validation():
    config = {
        "task": NTK_CONDITION,
        "model": {"variant": "bn", "width": 12},
        "data": {"name": "digits", "variant": "flat", "inputs": 6},
        "depths": [1, 3],
        "parameterization": "ntk",
        "output": 0,
    }
    result = ntk_condition(config, seed=0, device=CPU)
    assert result["history"]["depth"] == [1, 3]
    assert result["history"]["theory_kappa"] == [None, None]
    assert all(k >= 1 for k in result["history"]["kappa"])
    plain = ntk_condition(
        {**config, "model": {"variant": "plain", "width": 12}}, seed=0, device=CPU
    )
    assert all(k >= 1 for k in plain["history"]["theory_kappa"])
    with pytest.raises(ConfigError, match="depths"):
        validate_ntk_condition({**config, "depths": [3, 1]})
    with pytest.raises(ConfigError, match="parameterization"):
        validate_ntk_condition({**config, "parameterization": "mf"})


def test_profile_table_aggregates_seeds():
    runs = [
        ({"model.width": 8}, {"layer": [1, 2], "corr_mean": [0.0, 0.5], "theory": [0.0, 0.4]}),
        ({"model.width": 8}, {"layer": [1, 2], "corr_mean": [0.2, 0.7], "theory": [0.0, 0.4]}),
    ]
    table = profile_table(runs, ["model.width"], LAYER_CORRELATIONS)
    assert list(table["corr_mean_mean"]) == pytest.approx([0.1, 0.6])
    assert list(table["corr_mean_n"]) == [2, 2]
    assert list(table["theory_std"]) == pytest.approx([0.0, 0.0])


def test_store_round_trip_and_live_profiles(tmp_path):
    from normbook.experiments.runner import run

    entry = "mimicnorm.f2.frozen-kernel"
    assert load_profiles(entry, "smoke", root=tmp_path).empty
    outcomes = run(entry, "smoke", root=tmp_path, runs=tmp_path / "runs", progress=False)
    assert all(o.status == "ok" for o in outcomes)
    table = load_profiles(entry, "smoke", root=tmp_path)
    assert set(table["model.width"]) == {16, 64} and not table["stale"].any()
    assert len(table) == 2 * 51
    channels = load_channel_stats(entry, "smoke", root=tmp_path)
    assert set(channels["layer"]) == {1, 2, 5, 10, 20, 30, 40, 51}
    live = live_profiles(entry, "smoke", {"model.width": 8, "model.depth": 4}, seeds=1)
    assert list(live["layer"]) == [1, 2, 3, 4] and set(live["model.depth"]) == {4}
    with pytest.raises(ConfigError, match="unknown key"):
        point_config(entry, "smoke", {"model.heigth": 3})
