"""normbook.analysis.information: entropies and MI estimators against known values (IC-TH1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from normbook.analysis import (
    bin_codes,
    binary_entropy,
    binned_mutual_information,
    discrete_entropy,
    discrete_mutual_information,
    gaussian_mutual_information,
    gaussian_pair,
    histogram_bins,
    ksg_mutual_information,
    plugin_mi_bias,
)

SEEDS = range(8)
N = 2000


# -- discrete: exact cases ---------------------------------------------------------------------
def test_binary_entropy_values_and_types():
    assert binary_entropy(0.5) == pytest.approx(math.log(2), abs=1e-15)
    assert binary_entropy(0.5, base=2) == pytest.approx(1.0, abs=1e-15)
    assert binary_entropy(0.0) == 0.0 and binary_entropy(1.0) == 0.0
    assert binary_entropy(0.1) == pytest.approx(binary_entropy(0.9))
    p = np.array([0.0, 0.25, 1.0])
    np.testing.assert_allclose(
        binary_entropy(p), [0, -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), 0]
    )
    t = binary_entropy(torch.tensor([0.5, 1.0]))
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.tensor([math.log(2), 0.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_entropy(1.5)


def test_discrete_entropy_of_a_balanced_sample_is_log_k():
    labels = np.repeat(np.arange(5), 7)
    assert discrete_entropy(labels) == pytest.approx(math.log(5), abs=1e-14)
    assert discrete_entropy(torch.tensor(labels), base=5) == pytest.approx(1.0, abs=1e-14)
    assert discrete_entropy([3, 3, 3]) == 0.0
    rows = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])  # four joint symbols
    assert discrete_entropy(rows, base=2) == pytest.approx(2.0)


def test_discrete_mutual_information_exact_cases():
    x = np.repeat(np.arange(4), 5)
    assert discrete_mutual_information(x, x) == pytest.approx(math.log(4), abs=1e-14)
    assert discrete_mutual_information(x, 10 - 3 * x) == pytest.approx(math.log(4), abs=1e-14)
    grid_x, grid_y = np.meshgrid(np.arange(3), np.arange(4), indexing="ij")
    assert discrete_mutual_information(grid_x.ravel(), grid_y.ravel()) == pytest.approx(
        0, abs=1e-15
    )
    # y = x mod 2 with x uniform on 4 values: I = H(y) = 1 bit
    assert discrete_mutual_information(x, x % 2, base=2) == pytest.approx(1.0, abs=1e-14)


def test_gated_entropy_identity_of_ic_th1_on_an_exact_sample():
    """H(g·x) = p·H(x) + H_b(p) for x uniform on {1..4} (never 0) and g ~ Bernoulli(1/2):
    the sample holding each (x, g) pair once is the population."""
    x = np.tile(np.arange(1, 5), 2)
    g = np.repeat([0, 1], 4)
    p = 0.5
    assert discrete_entropy(g * x) == pytest.approx(p * discrete_entropy(x) + binary_entropy(p))


def test_discrete_inputs_are_checked():
    with pytest.raises(TypeError, match="integer labels"):
        discrete_entropy(np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="same number of samples"):
        discrete_mutual_information([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="base"):
        discrete_entropy([0, 1], base=1)


# -- continuous: Gaussian pairs with known MI --------------------------------------------------
def test_gaussian_reference_value():
    assert gaussian_mutual_information(0.0) == 0.0
    assert gaussian_mutual_information(0.6) == pytest.approx(-0.5 * math.log(1 - 0.36))
    assert gaussian_mutual_information(-0.6) == gaussian_mutual_information(0.6)
    with pytest.raises(ValueError, match="rho"):
        gaussian_mutual_information(1.0)
    x, y = gaussian_pair(0.6, 50_000, generator=0)
    assert np.corrcoef(x, y)[0, 1] == pytest.approx(0.6, abs=0.01)
    assert np.array_equal(gaussian_pair(0.6, 10, 3)[0], gaussian_pair(0.6, 10, 3)[0])


@pytest.mark.parametrize(("rho", "tol"), [(0.0, 0.02), (0.5, 0.035), (0.9, 0.04)])
def test_ksg_recovers_the_gaussian_mi_within_its_known_small_error(rho, tol):
    """Over 100 seeds at n = 2000, k = 3 the mean error of KSG-1 is -0.001 (rho 0), +0.001 (0.5),
    +0.009 (0.9) nats, with per-sample std 0.017-0.027; the mean of 8 seeds must lie within
    |bias| + 3 std/√8 of the truth."""
    true = gaussian_mutual_information(rho)
    estimates = [ksg_mutual_information(*gaussian_pair(rho, N, s)) for s in SEEDS]
    assert np.mean(estimates) == pytest.approx(true, abs=tol)


def test_ksg_is_invariant_to_marginal_reparametrization_and_works_in_bits():
    x, y = gaussian_pair(0.7, 1000, 5)
    base = ksg_mutual_information(x, y)
    # scaling both variables by one factor scales every distance: the neighbour counts are equal
    assert ksg_mutual_information(2 * x, 2 * y) == pytest.approx(base, abs=1e-12)
    assert ksg_mutual_information(x, y, base=2) == pytest.approx(base / math.log(2))
    # x can be multi-dimensional: I((x, noise); y) stays close to I(x; y)
    noise = np.random.default_rng(0).normal(size=x.size)
    assert ksg_mutual_information(np.stack([x, noise], 1), y) == pytest.approx(base, abs=0.1)


def test_ksg_rejects_ties_and_too_few_samples():
    with pytest.raises(ValueError, match="repeated samples"):
        ksg_mutual_information(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="more samples than neighbours"):
        ksg_mutual_information(np.arange(3.0), np.arange(3.0), k=3)
    with pytest.raises(ValueError, match="k must be"):
        ksg_mutual_information(np.arange(5.0), np.arange(5.0), k=0)


def test_binned_estimate_of_independent_variables_is_biased_up_by_about_cells_over_2n():
    """The finite-sample bias of the plug-in MI, (B−1)²/(2n) = 0.036 nats for B = 13, n = 2000;
    the edge bins are sparsely filled (few effective cells), so the measured bias is a little
    smaller (0.032 over 100 seeds)."""
    bins = histogram_bins(N, "cbrt")
    assert bins == 13
    estimates = [binned_mutual_information(*gaussian_pair(0.0, N, s)) for s in SEEDS]
    predicted = plugin_mi_bias(N, bins)
    assert 0.7 * predicted < np.mean(estimates) < 1.05 * predicted


def test_binned_estimate_of_strong_dependence_is_biased_down_by_discretization():
    """At rho = 0.99 (I = 1.96 nats) 13 bins cannot resolve the dependence: the estimate is about
    0.56 nats low (100 seeds), while KSG stays within 0.02."""
    true = gaussian_mutual_information(0.99)
    pairs = [gaussian_pair(0.99, N, s) for s in SEEDS[:4]]
    binned = np.mean([binned_mutual_information(x, y) for x, y in pairs])
    ksg = np.mean([ksg_mutual_information(x, y) for x, y in pairs])
    assert binned < true - 0.4
    assert abs(ksg - true) < 0.05
    # more bins reduce the discretization loss
    finer = np.mean([binned_mutual_information(x, y, bins=40) for x, y in pairs])
    assert binned < finer < true


def test_bin_rules_and_codes():
    assert histogram_bins(1000, "cbrt") == 10
    assert histogram_bins(1000, "sturges") == 11
    assert histogram_bins(1000, "sqrt") == 32
    assert histogram_bins(1000, 7) == 7
    assert histogram_bins(1000, "fd", np.random.default_rng(0).normal(size=1000)) >= 2
    with pytest.raises(ValueError, match="bins must be"):
        histogram_bins(1000, "auto")
    with pytest.raises(ValueError, match="needs the values"):
        histogram_bins(1000, "fd")
    codes = bin_codes(np.array([0.0, 0.49, 0.5, 1.0]), bins=2)
    assert codes.tolist() == [0, 0, 1, 1]
    assert bin_codes(np.ones(4), bins=3).tolist() == [0, 0, 0, 0]


def _ksg_brute_force(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """KSG estimator 1 from its definition, O(n²): max-norm, strict counts, self excluded."""
    from scipy.special import digamma

    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    dx = np.abs(x[:, None, :] - x[None, :, :]).max(-1)
    dy = np.abs(y[:, None, :] - y[None, :, :]).max(-1)
    dz = np.maximum(dx, dy)
    np.fill_diagonal(dz, np.inf)
    eps = np.sort(dz, axis=1)[:, k - 1]
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    n_x = (dx < eps[:, None]).sum(1)
    n_y = (dy < eps[:, None]).sum(1)
    n = len(x)
    return digamma(k) + digamma(n) - np.mean(digamma(n_x + 1) + digamma(n_y + 1))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_ksg_matches_a_brute_force_evaluation_of_its_definition(k):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(60, 2))
    y = x[:, :1] + 0.5 * rng.normal(size=(60, 1))
    assert ksg_mutual_information(x, y, k=k) == pytest.approx(_ksg_brute_force(x, y, k), abs=1e-12)
