"""IC-TH1 / IC-EQ8 analysis (normbook.analysis.gating): exact identities on small pmfs, the
atom-at-zero correction, and the sampling distributions the chapter's Monte-Carlo asserts use."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from normbook.analysis import gating
from normbook.analysis.information import (
    binary_entropy,
    discrete_entropy,
    discrete_mutual_information,
    gaussian_pair,
)
from normbook.layers import ICLayer


def _random_pmf(rows: int, cols: int, seed: int) -> np.ndarray:
    table = np.random.default_rng(seed).random((rows, cols)) ** 3
    return table / table.sum()


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.95, 1.0])
def test_theorem1_holds_exactly_without_an_atom_at_zero(p):
    values_x, values_y = np.array([-2.0, 1.0, 3.0]), np.array([0.5, 1.5, 4.0, 7.0])
    pmf = _random_pmf(3, 4, 0)
    _, _, gated = gating.gate_pmf(values_x, values_y, pmf, p)
    mi = gating.pmf_mutual_information(pmf)
    assert abs(gating.pmf_mutual_information(gated) - p * p * mi) < 1e-12
    h_x, _ = gating.marginal_entropies(pmf)
    assert abs(gating.pmf_entropy(gated.sum(axis=1)) - gating.theorem1_entropy(h_x, p)) < 1e-12


def test_pmf_functionals_match_the_plug_in_estimators_on_an_exact_population():
    # a sample holding each cell k times in proportion IS its own empirical distribution
    counts = np.array([[3, 1], [0, 4], [2, 2]])
    x = np.repeat(np.repeat(np.arange(3), 2), counts.ravel())
    y = np.repeat(np.tile(np.arange(2), 3), counts.ravel())
    pmf = counts / counts.sum()
    assert abs(gating.pmf_mutual_information(pmf) - discrete_mutual_information(x, y)) < 1e-14
    assert abs(gating.pmf_entropy(pmf.sum(axis=1)) - discrete_entropy(x)) < 1e-14
    vx, vy, empirical = gating.empirical_pmf(x, y)
    assert np.allclose(empirical, pmf) and list(vx) == [0, 1, 2] and list(vy) == [0, 1]


def test_an_atom_at_zero_breaks_theorem1_and_the_corrected_formulas_hold():
    values_x, values_y = np.array([0.0, 1.0, 2.0]), np.array([0.0, 5.0])
    pmf = _random_pmf(3, 2, 1)
    p = 0.6
    _, _, gated = gating.gate_pmf(values_x, values_y, pmf, p)
    mi = gating.pmf_mutual_information(pmf)
    h_x, _ = gating.marginal_entropies(pmf)
    zero_mass = pmf.sum(axis=1)[0]
    exact = gating.pmf_entropy(gated.sum(axis=1))
    assert abs(exact - gating.gated_entropy(h_x, p, zero_mass)) < 1e-12
    assert exact < gating.theorem1_entropy(h_x, p) - 1e-3
    assert gating.pmf_mutual_information(gated) < p * p * mi - 1e-4  # data processing
    # the pair u = (g, g·x) keeps the gate: p²·I exactly, whatever the atom
    _, _, with_gate = gating.gate_pmf(values_x, values_y, pmf, p, off_value=-math.inf)
    assert abs(gating.pmf_mutual_information(with_gate) - p * p * mi) < 1e-12
    assert abs(gating.gated_entropy(h_x, p, 0.0) - gating.theorem1_entropy(h_x, p)) < 1e-15


def test_eq8_correlation_of_standardized_and_shifted_pairs_and_inverted_scaling():
    pmf = _random_pmf(3, 3, 2)
    values = np.array([-1.0, 0.3, 2.0])
    m = gating.pmf_moments(values, values, pmf)
    # standardize both variables under the pmf (values keep distinct, 0 is not hit)
    vx = (values - m["mean_x"]) / math.sqrt(m["var_x"])
    vy = (values - m["mean_y"]) / math.sqrt(m["var_y"])
    assert 0.0 not in vx and 0.0 not in vy
    c = gating.pmf_moments(vx, vy, pmf)["corr"]
    for p in (0.1, 0.5, 0.9):
        g = gating.pmf_moments(*gating.gate_pmf(vx, vy, pmf, p))
        assert abs(g["corr"] - p * c) < 1e-12
        inv = gating.pmf_moments(*gating.gate_pmf(vx, vy, pmf, p, inverted=True))
        assert abs(inv["corr"] - p * c) < 1e-12
        assert abs(inv["mean_x"]) < 1e-12 and abs(inv["var_x"] - 1 / p) < 1e-12
        assert abs(inv["cov"] - c) < 1e-12  # the covariance is untouched; the variance grows
        # shifted by 1.5 std: the general formula, not p·c
        shifted = gating.pmf_moments(*gating.gate_pmf(vx + 1.5, vy - 0.5, pmf, p))
        expected = gating.gated_correlation(c, p, 1.5, -0.5)
        assert abs(shifted["corr"] - expected) < 1e-12 and abs(expected - p * c) > 1e-3


def test_discretized_gaussian_pmf_is_normalized_and_matches_a_large_sample():
    edges = gating.gaussian_bin_edges(6, 2.0)
    pmf = gating.discretized_gaussian_pmf(0.7, edges)
    assert pmf.shape == (6, 6) and abs(pmf.sum() - 1) < 1e-12
    assert np.allclose(pmf, pmf.T, atol=1e-12)  # exchangeable pair
    x, y = gaussian_pair(0.7, 200_000, 0)
    counts, _, _ = np.histogram2d(x, y, bins=[edges, edges])
    frequency = counts / counts.sum()
    sd = np.sqrt(pmf * (1 - pmf) / 200_000)
    assert np.all(np.abs(frequency - pmf) < 5 * sd + 1e-9)
    centers = gating.bin_values(gating.gaussian_bin_edges(7, 3.0), "centers")
    assert 0.0 in centers and 0.0 not in gating.bin_values(edges, "codes")


def test_plugin_mi_distribution_predicts_the_monte_carlo_mean_and_spread():
    edges = gating.gaussian_bin_edges(6, 2.5)
    values = gating.bin_values(edges)
    for rho, p in ((0.0, 0.5), (0.8, 0.3)):
        _, _, gated = gating.gate_pmf(
            values, values, gating.discretized_gaussian_pmf(rho, edges), p
        )
        support_x, support_y, _ = gating.gate_pmf(values, values, np.eye(6) / 6, p)
        dist = gating.plugin_mi_distribution(gated, 1000)
        estimates = []
        for seed in range(40):
            gx, gy = gating.sample_pmf(support_x, support_y, gated, 1000, seed)
            estimates.append(discrete_mutual_information(gx.astype(int), gy.astype(int)))
        mean, spread = np.mean(estimates), np.std(estimates)
        assert abs(mean - dist["mean"]) < 4 * dist["sd"] / math.sqrt(40)
        assert 0.6 < spread / dist["sd"] < 1.5


def test_gated_gaussian_correlation_sd_and_generic_influence_sd_agree():
    assert abs(gating.gated_gaussian_correlation_sd(0.5, 1.0, 100) - 0.75 / 10) < 1e-15
    x, y = gaussian_pair(0.6, 100_000, 3)
    points = gating.gate_points(x, y, 0.4)
    generic = gating.correlation_sd(*points, 1000)
    assert abs(generic / gating.gated_gaussian_correlation_sd(0.6, 0.4, 1000) - 1) < 0.05
    gx, gy, gw = points
    assert abs(gw.sum() - 1) < 1e-12 and abs(np.sum(gw * (gx != 0)) - 0.4) < 1e-12


def test_keep_gates_and_the_ic_layer_keep_the_fraction_p():
    gates = gating.keep_gates(200_000, 0.3, 0)
    assert abs(gates.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 200_000)
    layer = ICLayer(4, drop_prob=0.3).train()
    torch.manual_seed(0)
    out = layer(torch.randn(50_000, 4))
    kept = float((out != 0).double().mean())
    assert abs(kept - 0.7) < 4 * math.sqrt(0.21 / 200_000) and layer.keep_prob == 0.7


def test_argument_checks():
    with pytest.raises(ValueError, match="keep_prob"):
        gating.gate_pmf([1.0], [1.0], [[1.0]], 1.5)
    with pytest.raises(ValueError, match="keep_prob"):
        gating.gate_pmf([1.0], [1.0], [[1.0]], 0.0, inverted=True)
    with pytest.raises(ValueError, match="shape"):
        gating.gate_pmf([1.0, 2.0], [1.0], [[1.0]], 0.5)
    with pytest.raises(ValueError, match="sum to 1"):
        gating.gate_pmf([1.0], [1.0], [[0.5]], 0.5)
    with pytest.raises(ValueError, match="rho"):
        gating.discretized_gaussian_pmf(1.0, gating.gaussian_bin_edges(4))
    assert abs(gating.theorem1_entropy(0.0, 0.5) - binary_entropy(0.5)) < 1e-15
