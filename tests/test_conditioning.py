"""Conditioning and whitening (normbook.analysis.conditioning) and the two foundations tasks.

The gradient-descent checks compare with closed forms: in two dimensions at the optimal step size
both eigen-components of the error shrink by exactly (κ − 1)/(κ + 1) per step (LeCun et al. 1998),
so the iteration count is predicted exactly.
"""

from __future__ import annotations

import math

import pytest
import torch

from normbook.analysis.conditioning import (
    PREPROCESSINGS,
    LeastSquares,
    bivariate_covariance,
    comparison_table,
    condition_number,
    conditioning_comparison,
    contraction_factor,
    contraction_rate,
    correlated_inputs,
    gd_paths_figure,
    gradient_descent,
    log_log_slope,
    mahalanobis_distance,
    moments,
    optimal_step_size,
    predicted_iterations,
    preprocess_inputs,
    random_orthogonal,
    rotated_covariance,
    scatter_panels,
    second_moment,
    whitened_coordinates,
    whitening_cost_ratios,
    whitening_distortion,
    whitening_error,
    whitening_label,
)
from normbook.experiments.registry import get_experiment
from normbook.experiments.runner import run
from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import validate_config
from normbook.layers import whitening_matrix

F64 = torch.float64


# --- spectra and rates --------------------------------------------------------------------------


def test_condition_number_of_diagonal_and_singular_matrices():
    assert condition_number(torch.diag(torch.tensor([4.0, 1.0, 2.0]))) == pytest.approx(4.0)
    assert condition_number(torch.eye(3)) == pytest.approx(1.0)
    assert math.isinf(condition_number(torch.tensor([[1.0, 1.0], [1.0, 1.0]])))
    with pytest.raises(ValueError, match="square"):
        condition_number(torch.ones(2, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        condition_number([[1.0]])


def test_optimal_step_minimizes_the_contraction_and_gives_kappa_rate():
    h = torch.diag(torch.tensor([10.0, 1.0], dtype=F64))
    eta = optimal_step_size(h)
    assert eta == pytest.approx(2 / 11)
    best = contraction_rate(h, eta)
    assert best == pytest.approx(contraction_factor(10.0)) == pytest.approx(9 / 11)
    for other in torch.linspace(0.01, 0.2, 50).tolist():
        assert contraction_rate(h, other) >= best - 1e-12


def test_contraction_factor_and_predicted_iterations_edges():
    assert contraction_factor(1.0) == 0.0
    assert contraction_factor(math.inf) == 1.0
    with pytest.raises(ValueError, match="kappa"):
        contraction_factor(0.5)
    assert predicted_iterations(1.0, 1e-8) == 1
    assert predicted_iterations(1.0 + 1e-15, 1e-8) == 1
    # κ = 3: q = 1/2, q^(2t) <= 1e-6 first at t = ceil(6 ln10 / (2 ln 2)) = 10
    assert predicted_iterations(3.0, 1e-6) == 10
    with pytest.raises(ValueError, match="tolerance"):
        predicted_iterations(3.0, 1.5)
    with pytest.raises(ValueError, match="infinite"):
        predicted_iterations(math.inf, 1e-3)


# --- inputs and preprocessing --------------------------------------------------------------------


def test_correlated_inputs_have_exact_moments():
    cov = bivariate_covariance(0.7, (1.0, 3.0))
    x = correlated_inputs(100, cov, (2.0, -1.0), seed=3)
    mu, sigma = moments(x)
    assert torch.allclose(mu, torch.tensor([2.0, -1.0], dtype=F64), atol=1e-12)
    assert torch.allclose(sigma, cov, atol=1e-12)
    assert torch.allclose(second_moment(x), sigma + torch.outer(mu, mu), atol=1e-12)
    rough = correlated_inputs(100, cov, 0.0, seed=3, exact=False)
    assert not torch.allclose(moments(rough)[1], cov, atol=1e-3)


def test_bivariate_covariance_validates():
    assert torch.equal(bivariate_covariance(0.0), torch.eye(2, dtype=F64))
    with pytest.raises(ValueError, match="rho"):
        bivariate_covariance(1.0)
    with pytest.raises(ValueError, match="scales"):
        bivariate_covariance(0.1, (1.0, -1.0))
    with pytest.raises(ValueError, match="num_samples > d"):
        correlated_inputs(2, torch.eye(2))


@pytest.mark.parametrize("method", PREPROCESSINGS)
def test_preprocessings_give_their_textbook_hessians(method):
    rho, mean, scales = 0.8, 3.0, (1.0, 2.0)
    x = correlated_inputs(64, bivariate_covariance(rho, scales), mean, seed=1)
    h = second_moment(preprocess_inputs(x, method))
    cov = bivariate_covariance(rho, scales)
    expected = {
        "raw": cov + mean**2 * torch.ones(2, 2, dtype=F64),
        "center": cov,
        "standardize": bivariate_covariance(rho),
        "whiten": torch.eye(2, dtype=F64),
        "pca-whiten": torch.eye(2, dtype=F64),
    }[method]
    assert torch.allclose(h, expected, atol=1e-10)


def test_preprocess_rejects_unknown_methods_and_shapes():
    with pytest.raises(ValueError, match="method"):
        preprocess_inputs(torch.zeros(4, 2), "bn")
    with pytest.raises(ValueError, match="m×d"):
        preprocess_inputs(torch.zeros(4), "raw")


# --- gradient descent --------------------------------------------------------------------------


def test_least_squares_quadratic_matches_the_data_loss():
    x = correlated_inputs(50, bivariate_covariance(0.3), 1.0, seed=0)
    y = x @ torch.tensor([0.5, 2.0], dtype=F64) + 0.1 * torch.randn(50, dtype=F64)
    problem = LeastSquares.from_data(x, y)
    w = torch.tensor([0.3, -0.7], dtype=F64)
    direct = ((x @ w - y) ** 2).mean() / 2
    assert float(problem.loss(w)) == pytest.approx(float(direct), rel=1e-12)
    w_auto = w.clone().requires_grad_()
    (((x @ w_auto - y) ** 2).mean() / 2).backward()
    assert torch.allclose(problem.gradient(w), w_auto.grad, atol=1e-12)
    assert float(problem.excess_loss(w)) == pytest.approx(
        float(problem.loss(w) - problem.loss(problem.minimizer)), rel=1e-9
    )
    with pytest.raises(ValueError, match="y must"):
        LeastSquares.from_data(x, y[:-1])


def test_gd_in_two_dimensions_contracts_by_exactly_q_squared_per_step():
    problem = LeastSquares.from_data(*_data(0.9, 2.0))
    q = contraction_factor(problem.condition_number)
    run_ = gradient_descent(problem, tolerance=1e-10, max_records=None)
    excess = torch.tensor(run_.relative_excess, dtype=F64)
    ratios = excess[1:] / excess[:-1]
    assert torch.allclose(ratios, torch.full_like(ratios, q * q), rtol=1e-8)
    assert run_.iterations == predicted_iterations(problem.condition_number, 1e-10)
    assert run_.steps == list(range(run_.iterations + 1))


def test_gd_thinning_keeps_first_and_last_and_reports_non_convergence():
    problem = LeastSquares.from_data(*_data(0.99, 0.0))
    run_ = gradient_descent(problem, max_records=20)
    assert len(run_.steps) == 20 and run_.steps[0] == 0 and run_.steps[-1] == run_.iterations
    short = gradient_descent(problem, max_iterations=5)
    assert not short.converged and short.iterations is None and short.steps[-1] == 5
    diverging = gradient_descent(problem, step_size=10.0, max_iterations=10_000)
    assert not diverging.converged and len(diverging.steps) <= 200
    with pytest.raises(ValueError, match="start"):
        gradient_descent(problem, start=torch.zeros(3))


def _data(rho, mean):
    x = correlated_inputs(64, bivariate_covariance(rho, (1.0, 2.0)), mean, seed=0)
    return x, x @ torch.tensor([1.0, -1.0], dtype=F64)


@pytest.mark.parametrize("rho", [-0.6, 0.0, 0.8, 0.99])
def test_comparison_iterations_match_the_prediction_and_whitening_takes_one_step(rho):
    results = conditioning_comparison(rho, 3.0, (1.0, 2.0), num_samples=64)
    for result in results.values():
        assert abs(result.run.iterations - result.predicted_iterations) <= 1
    assert results["whiten"].run.iterations == 1
    assert results["whiten"].condition_number == pytest.approx(1.0, abs=1e-10)
    assert results["standardize"].condition_number == pytest.approx(
        (1 + abs(rho)) / (1 - abs(rho)), rel=1e-9
    )
    table = comparison_table(results)
    assert list(table["preprocessing"]) == ["raw", "center", "standardize", "whiten"]


def test_results_do_not_depend_on_the_seed_beyond_round_off():
    a = conditioning_comparison(0.8, 3.0, (1.0, 2.0), seed=0)
    b = conditioning_comparison(0.8, 3.0, (1.0, 2.0), seed=7)
    for name in a:
        assert a[name].run.iterations == b[name].run.iterations
        assert a[name].condition_number == pytest.approx(b[name].condition_number, rel=1e-9)


# --- whitening identities ----------------------------------------------------------------------


def test_every_rotation_of_zca_whitens_and_zca_has_least_distortion():
    x = correlated_inputs(200, bivariate_covariance(0.95, (1.0, 1.5)), 0.0, seed=2)
    _, cov = moments(x)
    zca, pca = whitening_matrix(cov, "zca"), whitening_matrix(cov, "pca")
    base = whitening_distortion(zca, x)
    for seed in range(5):
        w = random_orthogonal(2, seed=seed) @ zca
        assert whitening_error(w, cov) < 1e-10
        assert whitening_distortion(w, x) >= base - 1e-12
    assert whitening_distortion(pca, x) > base
    closed = float(torch.trace(cov) + 2 - 2 * torch.linalg.eigvalsh(cov).sqrt().sum())
    assert base == pytest.approx(closed, rel=1e-10)
    assert whitening_error(torch.eye(2, dtype=F64), cov) > 0.5


def test_random_orthogonal_is_orthogonal():
    q = random_orthogonal(5, seed=1)
    assert torch.allclose(q @ q.T, torch.eye(5, dtype=F64), atol=1e-12)
    assert not torch.allclose(q, random_orthogonal(5, seed=2))


def test_whitened_norm_is_the_mahalanobis_distance():
    x = correlated_inputs(100, bivariate_covariance(-0.5, (2.0, 1.0)), 1.0, seed=4)
    mu, cov = moments(x)
    reference = torch.sqrt(torch.einsum("ni,ij,nj->n", x - mu, torch.linalg.inv(cov), x - mu))
    for method in ("zca", "pca"):
        w = whitening_matrix(cov, method)
        assert torch.allclose(((x - mu) @ w.T).norm(dim=1), reference, atol=1e-10)
    assert torch.allclose(mahalanobis_distance(x, mu, cov), reference, atol=1e-10)


def test_pca_coordinates_swap_when_the_eigenvalue_order_flips_but_zca_does_not():
    covs = {gap: rotated_covariance(0.5, (1 + gap, 1 - gap)) for gap in (-1e-3, 1e-3)}
    table = whitened_coordinates((1.0, 0.5), covs)
    pca = table[table["method"] == "pca"].pivot(index="label", columns="coordinate", values="value")
    zca = table[table["method"] == "zca"].pivot(index="label", columns="coordinate", values="value")
    assert (pca.loc[-1e-3] - pca.loc[1e-3]).abs().max() > 0.1
    assert (zca.loc[-1e-3] - zca.loc[1e-3]).abs().max() < 1e-2
    # swapped: the coordinates at one side are those of the other, up to sign
    assert sorted(pca.loc[-1e-3].abs().round(2)) == sorted(pca.loc[1e-3].abs().round(2))


def test_log_log_slope_recovers_a_power():
    xs = [1.0, 2.0, 4.0, 8.0]
    assert log_log_slope(xs, [3 * v**2.5 for v in xs]) == pytest.approx(2.5)
    with pytest.raises(ValueError):
        log_log_slope([1.0], [1.0])


def test_whitening_cost_ratios_table():
    table = whitening_cost_ratios([4, 8], 32, group_sizes=(None, 4), repeats=2, warmup=0)
    assert list(table.columns) == [
        "d",
        "m",
        "group_size",
        "whitening",
        "dbn_ms",
        "bn_ms",
        "ratio_to_bn",
    ]
    assert len(table) == 4 and (table["ratio_to_bn"] > 0).all()
    assert set(table["whitening"]) == {"full whitening", "groups of 4"}
    assert whitening_label(float("nan")) == "full whitening"
    before = torch.get_num_threads()
    whitening_cost_ratios([4], 32, repeats=1, warmup=0, threads=1)
    assert torch.get_num_threads() == before  # restored
    with pytest.raises(ValueError, match="threads"):
        whitening_cost_ratios([4], 32, threads=0)


def test_figures_have_one_panel_per_input():
    results = conditioning_comparison(0.5, 1.0, max_records=30)
    figure = gd_paths_figure(results, title="t")
    assert len(figure.data) == 3 * len(results)
    assert len(figure.layout.annotations) == len(results)
    x = torch.randn(20, 2, dtype=F64)
    scatter = scatter_panels({"a": x, "b": 2 * x}, color=x[:, 0].tolist())
    assert len(scatter.data) == 2


# --- tasks and entries ---------------------------------------------------------------------------


def test_entries_validate_and_reject_bad_configs():
    gd = get_experiment("foundations.conditioning-gd")
    config = gd.resolve("smoke", gd.points("smoke")[0])
    validate_config(config)
    for bad in (
        {**config, "preprocess": "bn"},
        {**config, "data": {**config["data"], "rho": 1.0}},
        {**config, "data": {**config["data"], "scales": [1.0]}},
        {**config, "tolerance": 0.0},
        {**config, "extra": 1},
    ):
        with pytest.raises(ConfigError):
            validate_config(bad)
    cost = get_experiment("foundations.whitening-cost")
    config = cost.resolve("smoke", cost.points("smoke")[0])
    validate_config(config)
    bad_configs = (
        {**config, "group_size": 0},
        {**config, "batch_size": 1},
        {**config, "threads": 0},
        {**config, "x": 1},
    )
    for bad in bad_configs:
        with pytest.raises(ConfigError):
            validate_config(bad)


def test_tasks_run_at_smoke_and_store_records(tmp_path):
    outcomes = run("foundations.conditioning-gd", "smoke", root=tmp_path, progress=False)
    assert {o.status for o in outcomes} == {"ok"}
    from normbook.experiments.results import load, load_curves

    table = load("foundations.conditioning-gd", "smoke", root=tmp_path)
    diff = (table["iterations_mean"] - table["predicted_iterations_mean"]).abs()
    assert (diff <= 1).all()
    curves = load_curves(
        "foundations.conditioning-gd", "smoke", metrics=("relative_excess_loss",), root=tmp_path
    )
    assert curves["relative_excess_loss_mean"].max() == pytest.approx(1.0)
    outcomes = run(
        "foundations.whitening-cost", "smoke", root=tmp_path, progress=False, device="cpu"
    )
    assert {o.status for o in outcomes} == {"ok"}
    table = load("foundations.whitening-cost", "smoke", root=tmp_path)
    assert (table["ratio_to_bn_mean"] > 0).all() and (table["n"] == 1).all()
