"""Measurements of the DBN part's first chapters: axis swapping (DBN-F1), the eigendecomposition
backward step by step (DBN-EQ5), layer cost and Newton–Schulz accuracy (DBN-TB), and their tasks
and registry entries."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from normbook.analysis.axis_swap import (
    AXIS_FIELDS,
    SUMMARY_METRICS,
    axis_profile_table,
    axis_swap_measurements,
    consecutive_batches,
    demo_crossing_offset,
    match_axes,
    swap_demo_batch,
    swap_demo_figure,
    swap_demo_table,
    whiten_batch,
)
from normbook.analysis.dbn_cost import (
    appendix_b_table,
    eigh_batching_table,
    layer_cost_table,
    newton_residuals,
    newton_scalar_residuals,
    paper_time_ratios,
)
from normbook.analysis.eigen_backward import (
    WHITENING_STEPS,
    batch_with_covariance,
    time_whitening_steps,
    torch_threads,
    whitening_steps,
)
from normbook.experiments import ConfigError, get_experiment, load, run, validate_config
from normbook.experiments.registry import default_registry
from normbook.experiments.tasks_dbn import (
    APPENDIX_B,
    AXIS_SWAP,
    BACKWARD_STEPS,
    LAYER_COST,
    hidden_preactivations,
    load_axis_profiles,
)
from normbook.layers import DecorrelatedBatchNorm

F64 = torch.float64
ENTRIES = ("dbn.f1.axis-swap", "dbn.eq5.backward-steps", "dbn.tb.layer-cost", "dbn.tb.appendix-b")


def _cov(x: torch.Tensor) -> torch.Tensor:
    xc = x - x.mean(0)
    return xc.T @ xc / x.shape[0]


# --- the 2-D demo ---------------------------------------------------------------------------------


def test_demo_eigenvectors_stay_fixed_and_the_eigenvalues_cross_at_the_computed_offset():
    s_star = demo_crossing_offset()
    u = torch.tensor([math.cos(math.radians(30)), math.sin(math.radians(30))], dtype=F64)
    for offset in (0.5, s_star - 0.1, s_star + 0.1, 3.0):
        points, moving = swap_demo_batch(offset)
        assert points.shape == (10, 2) and int(moving.sum()) == 2
        assert points.mean(0).abs().max() < 1e-12
        cov = _cov(points)
        assert abs(float(u @ cov @ torch.tensor([-u[1], u[0]]))) < 1e-12  # u1, u2 diagonalize Σ
    lam = torch.linalg.eigvalsh(_cov(swap_demo_batch(s_star)[0]))
    assert float(lam[1] - lam[0]) < 1e-12


def test_pca_swaps_its_axes_at_the_crossing_and_zca_moves_continuously():
    s_star, delta = demo_crossing_offset(), 1e-3
    before, after = (swap_demo_batch(s_star + d)[0] for d in (-delta, delta))
    pca = [whiten_batch(p, "pca") for p in (before, after)]
    zca = [whiten_batch(p, "zca") for p in (before, after)]
    fixed = ~swap_demo_batch(0.0)[1]
    jump_pca = (pca[1].outputs[fixed] - pca[0].outputs[fixed]).abs().max()
    jump_zca = (zca[1].outputs[fixed] - zca[0].outputs[fixed]).abs().max()
    assert jump_pca > 0.5 and jump_zca < 1e-2
    # the PCA outputs trade places: coordinate 1 after the crossing is coordinate 2 before
    torch.testing.assert_close(
        pca[1].outputs[fixed].flip(1), pca[0].outputs[fixed], atol=2e-3, rtol=0
    )
    for w in (*pca, *zca):  # every output batch is white
        torch.testing.assert_close(_cov(w.outputs), torch.eye(2, dtype=F64), atol=1e-10, rtol=0)


def test_demo_table_and_figure_have_one_frame_per_offset():
    table = swap_demo_table([1.0, 3.0])
    assert set(table["panel"]) == {"raw", "pca", "zca"} and len(table) == 2 * 3 * 10
    assert (table["lambda1"] >= table["lambda2"]).all()
    figure = swap_demo_figure([1.0, 2.0, 3.0], active=1)
    assert len(figure.frames) == 3 and len(figure.data) == len(figure.frames[0].data)
    assert figure.layout.sliders[0].active == 1
    assert not swap_demo_figure(1.5).frames
    with pytest.raises(ValueError, match="offset"):
        swap_demo_batch(-1.0)


# --- consecutive batches and axis matching --------------------------------------------------------


def test_consecutive_batches_are_disjoint_within_an_epoch_and_reproducible():
    x = torch.arange(40, dtype=F64).reshape(20, 2)
    a = consecutive_batches(x, 5, 4, seed=3)
    b = consecutive_batches(x, 5, 4, seed=3)
    torch.testing.assert_close(a.covariances, b.covariances)
    assert a.means.shape == (4, 2) and a.covariances.shape == (4, 2, 2)
    # four disjoint batches of 5 cover the 20 rows: their means average to the overall mean
    torch.testing.assert_close(a.means.mean(0), x.mean(0))
    with pytest.raises(ValueError, match="batch_size"):
        consecutive_batches(x, 21, 2)


def test_match_axes_finds_permutations_and_sign_flips():
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=F64, generator=torch.Generator().manual_seed(0)))
    perm, signs = match_axes(q, q)
    assert perm.tolist() == list(range(5)) and (signs == 1).all()
    order = torch.tensor([2, 0, 1, 4, 3])
    flip = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=F64)
    perm, signs = match_axes(q, q[:, order] * flip)
    moved = q[:, order] * flip
    for a in range(5):  # axis a of q continues as axis perm[a] of the permuted basis
        torch.testing.assert_close(moved[:, perm[a]] * signs[a], q[:, a])
    assert (signs < 0).sum() == 2


def test_axis_swap_measurements_separate_stable_and_degenerate_spectra():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 4, generator=gen, dtype=F64)
    separated = z * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=F64)
    isotropic = z
    stable = axis_swap_measurements(separated, 512, pairs=20, seed=1)
    swapping = axis_swap_measurements(isotropic, 512, pairs=20, seed=1)
    assert stable.summary["reassigned_fraction"] == 0.0
    assert swapping.summary["reassigned_fraction"] > 0.3
    for result in (stable, swapping):
        assert set(SUMMARY_METRICS) <= set(result.summary)
        assert list(result.axes.columns) == ["axis", *AXIS_FIELDS]
        assert (result.pairs["zca_weight_change"] <= result.pairs["zca_bound"] + 1e-12).all()
        # ZCA moves the whitened coordinates less than PCA, and undoing the swaps helps PCA
        assert result.summary["zca_change"] < result.summary["pca_change"]
        assert result.summary["pca_aligned_change"] <= result.summary["pca_change"] + 1e-12
    assert swapping.summary["pca_change"] > 3 * swapping.summary["zca_change"]
    assert (stable.axes["relative_gap"].iloc[:-1] > 0.5).all()
    with pytest.raises(ValueError, match="eps"):
        axis_swap_measurements(separated, 64, eps=0.0)


def test_axis_profile_table_aggregates_over_seeds():
    runs = [
        ({"batch_size": 8}, {"axis": [1, 2], "reassigned": [0.0, 1.0]}),
        ({"batch_size": 8}, {"axis": [1, 2], "reassigned": [0.5, 0.0]}),
    ]
    table = axis_profile_table(runs, ["batch_size"], fields=("reassigned",))
    assert table["reassigned_mean"].tolist() == [0.25, 0.5]
    assert table["reassigned_n"].tolist() == [2, 2]
    assert axis_profile_table([], ["batch_size"]).empty


# --- the backward step by step --------------------------------------------------------------------


def test_batch_with_covariance_is_exact_and_can_repeat_eigenvalues():
    x = batch_with_covariance([3.0, 1.0, 1.0, 0.5], 24)
    assert x.shape == (24, 4) and x.dtype == F64
    lam = torch.linalg.eigvalsh(_cov(x))
    torch.testing.assert_close(
        lam, torch.tensor([0.5, 1.0, 1.0, 3.0], dtype=F64), atol=1e-13, rtol=0
    )
    torch.testing.assert_close(x.mean(0), torch.full((4,), 0.5, dtype=F64))
    with pytest.raises(ValueError):
        batch_with_covariance([1.0, 2.0], 2)
    with pytest.raises(ValueError, match="positive"):
        batch_with_covariance([1.0, -1.0], 10)


@pytest.mark.parametrize("method", ["zca", "pca"])
@pytest.mark.parametrize("group_size", [3, 6])
def test_whitening_steps_equal_the_layer_output_and_input_gradient(method, group_size):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 6, generator=gen, dtype=F64) @ torch.randn(6, 6, generator=gen, dtype=F64)
    grad = torch.randn(40, 6, generator=gen, dtype=F64)
    steps = whitening_steps(x, grad, group_size, method=method)
    layer = DecorrelatedBatchNorm(6, group_size=group_size, affine=False, whitening=method).double()
    leaf = x.clone().requires_grad_()
    out = layer(leaf)
    out.backward(grad)
    torch.testing.assert_close(steps["output"], out.detach(), atol=1e-10, rtol=0)
    torch.testing.assert_close(steps["input_grad"], leaf.grad, atol=1e-10, rtol=0)
    assert steps["fc"].shape == (6 // group_size, group_size, group_size)


def test_whitening_steps_reject_bad_arguments():
    x = torch.randn(10, 4, dtype=F64)
    with pytest.raises(ValueError, match="divide"):
        whitening_steps(x, x, 3)
    with pytest.raises(ValueError, match="method"):
        whitening_steps(x, x, 2, method="newton")
    with pytest.raises(ValueError, match="same shape"):
        whitening_steps(x, x[:5], 2)


def test_time_whitening_steps_reports_every_step_and_restores_threads():
    before = torch.get_num_threads()
    table = time_whitening_steps(64, 8, 4, repeats=2, warmup=0, threads=1)
    assert torch.get_num_threads() == before
    assert table["key"].tolist() == [s.key for s in WHITENING_STEPS] + ["layer", "bn"]
    steps = table.iloc[: len(WHITENING_STEPS)]
    assert steps["share"].sum() == pytest.approx(1.0)
    assert (table["ms"] > 0).all() and table.iloc[-1]["ratio_to_bn"] == pytest.approx(1.0)
    with torch_threads(None):
        assert torch.get_num_threads() == before


# --- cost and Newton–Schulz -----------------------------------------------------------------------


def test_newton_residuals_follow_the_scalar_recursion_and_decrease():
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=F64))
    cov = q @ torch.diag(torch.logspace(0, -1, 8, dtype=F64)) @ q.T
    table = newton_residuals(cov, range(1, 9), eps=0.0)
    assert table["residual"].is_monotonic_decreasing
    torch.testing.assert_close(
        torch.tensor(table["residual"].tolist()),
        torch.tensor(table["predicted"].tolist()),
        rtol=1e-6,
        atol=1e-12,
    )
    assert table["zca_residual"].iloc[0] < 1e-12
    # the recursion itself: r <- r²(3 + r)/4, from r0 = 1 − λ
    r = newton_scalar_residuals(torch.tensor([0.25], dtype=F64), 1)
    assert float(r) == pytest.approx(0.75**2 * 3.75 / 4)
    assert float(newton_scalar_residuals(torch.tensor([1.0], dtype=F64), 5)) == 0.0


def test_paper_time_ratios_divide_by_the_baseline():
    reported = get_experiment("dbn.tb.layer-cost").paper
    ratios = paper_time_ratios(reported, "bn_train_epoch_s", "dbn_train_epoch_s")
    assert ratios["group_size"].tolist() == [8, 16, 64, 256, 512]
    assert ratios["paper_ratio_to_bn"].iloc[0] == pytest.approx(707.47 / 163.68)
    with pytest.raises(ValueError, match="expected one"):
        paper_time_ratios(reported, "nothing", "dbn_train_epoch_s")


def test_layer_and_appendix_b_tables_label_groups():
    table = layer_cost_table(
        (4, 8, 2, 2), group_sizes=(2, None), methods=("zca",), repeats=1, warmup=0
    )
    assert table["group"].tolist() == ["-", "2", "full"] and table["ratio_to_bn"].iloc[0] == 1.0
    b = appendix_b_table(shape=(4, 8, 4, 4), repeats=1, warmup=0, threads=1)
    assert set(b["layer"]) == {"dbn_full_whitening", "conv3x3"}
    assert b.set_index("layer").loc["dbn_full_whitening", "group"] == "full"
    assert b.set_index("layer").loc["conv3x3", "group"] == "-"
    assert b["paper_ms"].tolist() == [71.0, 32.0]


def test_eigh_batching_table_times_both_ways():
    table = eigh_batching_table(16, (2, 8), repeats=2, warmup=0, threads=1)
    assert table["groups"].tolist() == [8, 2]
    assert (table[["batched_ms", "loop_ms"]] > 0).all().all()
    with pytest.raises(ValueError, match="divide"):
        eigh_batching_table(16, (3,))


# --- tasks and entries ----------------------------------------------------------------------------


def test_entries_are_registered_and_validate_at_every_scale():
    registry = default_registry()
    for entry_id in ENTRIES:
        entry = registry.get(entry_id)
        assert entry.artifact.startswith("DBN-")
        for scale in ("smoke", "small", "full"):
            for point in entry.points(scale):
                validate_config(entry.resolve(scale, point))


@pytest.mark.parametrize(
    ("entry_id", "change", "message"),
    [
        ("dbn.f1.axis-swap", {"layer": 3}, "layer 3"),
        ("dbn.f1.axis-swap", {"group_size": 1}, "group_size"),
        ("dbn.f1.axis-swap", {"eps": 0}, "eps"),
        ("dbn.f1.axis-swap", {"extra": 1}, "unknown"),
        ("dbn.eq5.backward-steps", {"group_size": 5}, "divide"),
        ("dbn.eq5.backward-steps", {"method": "newton"}, "method"),
        ("dbn.tb.layer-cost", {"shape": [1, 2, 3]}, "shape"),
        ("dbn.tb.layer-cost", {"method": "svd"}, "method"),
        ("dbn.tb.layer-cost", {"threads": 0}, "threads"),
        ("dbn.tb.appendix-b", {"repeats": 0}, "repeats"),
    ],
)
def test_bad_configurations_are_rejected(entry_id, change, message):
    entry = get_experiment(entry_id)
    config = entry.resolve("smoke", entry.points("smoke")[0])
    validate_config(config)
    with pytest.raises(ConfigError, match=message):
        validate_config({**config, **change})


def test_task_names():
    assert {AXIS_SWAP, BACKWARD_STEPS, LAYER_COST, APPENDIX_B} <= {
        get_experiment(e).scale("smoke").config["task"] for e in ENTRIES
    }


def test_hidden_preactivations_is_the_linear_output():
    from normbook.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", 3, in_features=5, hidden=(4, 6), norm="bn").eval()
    x = torch.randn(7, 5)
    first = hidden_preactivations(model, x, 1)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][0]
    torch.testing.assert_close(first, linear(x).detach())
    assert hidden_preactivations(model, x, 2).shape == (7, 6)
    with pytest.raises(ValueError, match="layer"):
        hidden_preactivations(model, x, 4)


def test_smoke_grids_run_and_load(tmp_path):
    for entry_id in ENTRIES:
        outcomes = run(entry_id, "smoke", root=tmp_path, progress=False, device="cpu")
        assert outcomes and all(o.status == "ok" for o in outcomes), entry_id
    swap = load("dbn.f1.axis-swap", "smoke", root=tmp_path)
    assert (swap["zca_change_mean"] < swap["pca_change_mean"]).all()
    assert (swap["zca_bound_ratio_max_mean"] <= 1.0).all()
    profiles = load_axis_profiles("dbn.f1.axis-swap", "smoke", root=tmp_path)
    assert len(profiles) == 2 * 8 and not profiles["stale"].any()
    cost = load("dbn.tb.layer-cost", "smoke", root=tmp_path)
    assert (cost["ratio_to_bn_mean"] > 0).all() and (cost["n"] == 1).all()
    steps = load("dbn.eq5.backward-steps", "smoke", root=tmp_path)
    assert steps["forward_share_mean"].between(0, 1).all()
    appendix = load("dbn.tb.appendix-b", "smoke", root=tmp_path)
    assert appendix["dbn_over_conv_mean"].iloc[0] == pytest.approx(
        appendix["dbn_ms_mean"].iloc[0] / appendix["conv_ms_mean"].iloc[0]
    )
    assert isinstance(load_axis_profiles("dbn.f1.axis-swap", "small", root=tmp_path), pd.DataFrame)
