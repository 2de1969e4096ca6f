"""Entropy and mutual-information estimators (IC-TH1: I(x̂i;x̂j) = p²·I(xi;xj), H(x̂i) = p·H(xi) + H_b(p)).

Three estimators of I(X;Y) from n paired samples, all in nats unless ``base`` is given:

- :func:`discrete_mutual_information`: plug-in (maximum-likelihood) estimate from integer labels,
  H(X) + H(Y) − H(X,Y) of the empirical distributions. Exact for the empirical distribution;
  as an estimate of the population value its bias is about +(|X|−1)(|Y|−1)/(2n) for independent
  variables (:func:`plugin_mi_bias`; Miller–Madow, Panzeri–Treves).
- :func:`binned_mutual_information`: the plug-in estimate after cutting each continuous variable
  into equal-width bins. Two biases of opposite sign: the finite-sample bias above (upwards,
  grows with the number of cells over n) and the discretization loss (downwards: binning is a
  processing of the data, so the binned MI of the population is below the true one, most where
  the dependence is strong and the bins coarse).
- :func:`ksg_mutual_information`: the k-nearest-neighbour estimator 1 of Kraskov, Stögbauer and
  Grassberger (2004) for continuous variables, max-norm in the joint space. Its bias is small:
  for a Gaussian pair at n = 2000, k = 3, the mean error over 100 draws was below 0.01 nat for
  ρ <= 0.9 and about 0.02 nat at ρ = 0.99, against a spread of 0.02-0.03 nat per draw (the tests
  rely on it). It can return slightly negative values for independent variables and is not
  clipped.

:func:`gaussian_mutual_information` gives the reference value −½·log(1−ρ²) of a bivariate Gaussian
with correlation ρ; :func:`binary_entropy` is H_b(p) of IC-TH1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma, xlogy

BIN_RULES: tuple[str, ...] = ("cbrt", "sturges", "sqrt", "fd")


def _log_base(base: float | None) -> float:
    """Divisor turning nats into units of ``base`` (None: nats)."""
    if base is None:
        return 1.0
    if isinstance(base, bool) or not isinstance(base, (int, float)) or base <= 0 or base == 1:
        raise ValueError(f"base must be a positive number other than 1 (or None), got {base!r}")
    return math.log(base)


def _as_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    array = np.asarray(x)
    if array.dtype == object:
        raise TypeError(f"{name} must be numeric, got an array of Python objects")
    return array


def _labels(x: Any, name: str) -> np.ndarray:
    """Integer codes 0..K−1 of a discrete sample: (n,) labels, or (n, d) rows as joint symbols."""
    array = _as_array(x, name)
    if array.ndim not in (1, 2) or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n,) or (n, d) array, got {array.shape}")
    if array.dtype.kind not in "iub":
        raise TypeError(
            f"{name} must hold integer labels, got dtype {array.dtype}"
            " (bin continuous values with binned_mutual_information)"
        )
    if array.ndim == 1:
        return np.unique(array, return_inverse=True)[1].reshape(-1)
    return np.unique(array, axis=0, return_inverse=True)[1].reshape(-1)


def _plugin_entropy(codes: np.ndarray) -> float:
    counts = np.bincount(codes)
    p = counts[counts > 0] / codes.size
    return float(-np.sum(p * np.log(p)))


def discrete_entropy(labels: Any, base: float | None = None) -> float:
    """Plug-in entropy −Σ p̂ log p̂ of a discrete sample (nats, or units of ``base``; 2 gives bits).

    ``labels``: (n,) integer labels, or (n, d) integer rows counted as joint symbols.
    """
    return _plugin_entropy(_labels(labels, "labels")) / _log_base(base)


def binary_entropy(p: Any, base: float | None = None) -> Any:
    """H_b(p) = −p·log p − (1−p)·log(1−p), with H_b(0) = H_b(1) = 0 (IC-TH1).

    ``p`` a float (returns a float), a NumPy array or a tensor (same type back); every value in
    [0, 1].
    """
    scale = _log_base(base)
    if isinstance(p, torch.Tensor):
        if ((p < 0) | (p > 1)).any():
            raise ValueError("p must lie in [0, 1]")
        return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p)) / scale
    array = _as_array(p, "p").astype(np.float64)
    if np.any((array < 0) | (array > 1)) or np.any(np.isnan(array)):
        raise ValueError(f"p must lie in [0, 1], got {p!r}")
    value = -(xlogy(array, array) + xlogy(1 - array, 1 - array)) / scale
    return float(value) if np.ndim(p) == 0 else value


def discrete_mutual_information(x: Any, y: Any, base: float | None = None) -> float:
    """Plug-in I(X;Y) = H(X) + H(Y) − H(X,Y) of the empirical joint distribution of labels.

    ``x``, ``y``: n integer labels each (or (n, d) rows as joint symbols). Exactly 0 when the
    empirical joint distribution factorizes; never negative (up to rounding, clipped at 0).
    """
    cx, cy = _labels(x, "x"), _labels(y, "y")
    if cx.size != cy.size:
        raise ValueError(
            f"x and y must have the same number of samples, got {cx.size} and {cy.size}"
        )
    joint = cx * (int(cy.max()) + 1) + cy
    mi = _plugin_entropy(cx) + _plugin_entropy(cy) - _plugin_entropy(joint)
    return max(mi, 0.0) / _log_base(base)


def histogram_bins(n: int, rule: str | int = "cbrt", values: Any = None) -> int:
    """Number of equal-width bins for ``n`` samples: an int as given, or a rule.

    ``"cbrt"`` ⌈n^(1/3)⌉ (default: the cells grow slower than n, so the finite-sample bias
    (B−1)²/(2n) vanishes as n grows), ``"sturges"`` ⌈log₂ n⌉ + 1, ``"sqrt"`` ⌈√n⌉, ``"fd"``
    Freedman–Diaconis (needs ``values``: bin width 2·IQR·n^(−1/3)).
    """
    if isinstance(rule, bool):
        raise TypeError("bins must be an int >= 2 or one of " + ", ".join(BIN_RULES))
    if isinstance(rule, int):
        if rule < 2:
            raise ValueError(f"bins must be >= 2, got {rule}")
        return rule
    if rule not in BIN_RULES:
        raise ValueError(f"bins must be an int >= 2 or one of {', '.join(BIN_RULES)}; got {rule!r}")
    if rule == "cbrt":
        count = math.ceil(n ** (1 / 3))
    elif rule == "sturges":
        count = math.ceil(math.log2(n)) + 1
    elif rule == "sqrt":
        count = math.ceil(math.sqrt(n))
    else:
        if values is None:
            raise ValueError("bins='fd' needs the values to measure their interquartile range")
        count = len(np.histogram_bin_edges(np.asarray(values, dtype=np.float64), bins="fd")) - 1
    return max(int(count), 2)


def _continuous(x: Any, name: str, *, columns: bool) -> np.ndarray:
    array = _as_array(x, name).astype(np.float64)
    if columns and array.ndim == 1:
        array = array[:, None]
    expected = 2 if columns else 1
    if array.ndim != expected or array.shape[0] == 0:
        shape = "(n,) or (n, d)" if columns else "(n,)"
        raise ValueError(f"{name} must be a non-empty {shape} array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or Inf")
    return array


def bin_codes(x: Any, bins: str | int = "cbrt") -> np.ndarray:
    """Equal-width bin index (0..B−1) of each value of a 1-D continuous sample over its range."""
    values = _continuous(x, "x", columns=False)
    count = histogram_bins(values.size, bins, values)
    low, high = float(values.min()), float(values.max())
    if high == low:
        return np.zeros(values.size, dtype=np.int64)
    codes = np.floor((values - low) / (high - low) * count).astype(np.int64)
    return np.clip(codes, 0, count - 1)


def binned_mutual_information(
    x: Any, y: Any, bins: str | int = "cbrt", base: float | None = None
) -> float:
    """Plug-in I(X;Y) after equal-width binning of each 1-D continuous variable (see module doc).

    ``bins``: the number of bins per variable, or a rule of :func:`histogram_bins` applied to n.
    Biased up by about (B−1)²/(2n) (finite sample) and down by the discretization loss.
    """
    xs, ys = _continuous(x, "x", columns=False), _continuous(y, "y", columns=False)
    if xs.size != ys.size:
        raise ValueError(
            f"x and y must have the same number of samples, got {xs.size} and {ys.size}"
        )
    return discrete_mutual_information(bin_codes(xs, bins), bin_codes(ys, bins), base=base)


def plugin_mi_bias(n: int, bins_x: int, bins_y: int | None = None) -> float:
    """First-order bias (nats) of the plug-in MI of independent variables: (Bx−1)(By−1)/(2n)."""
    bins_y = bins_x if bins_y is None else bins_y
    if n < 1 or bins_x < 1 or bins_y < 1:
        raise ValueError(f"n and the bin counts must be >= 1, got {n}, {bins_x}, {bins_y}")
    return (bins_x - 1) * (bins_y - 1) / (2 * n)


def ksg_mutual_information(x: Any, y: Any, k: int = 3, base: float | None = None) -> float:
    """Kraskov–Stögbauer–Grassberger estimator 1 of I(X;Y) for continuous variables.

    ``x`` (n,) or (n, dx), ``y`` (n,) or (n, dy). With ε_i the max-norm distance from sample i to
    its k-th neighbour in the joint space and n_x(i), n_y(i) the numbers of other samples strictly
    closer than ε_i in each marginal space:

        Î = ψ(k) + ψ(n) − ⟨ψ(n_x + 1) + ψ(n_y + 1)⟩.

    Needs n > k and no repeated joint samples (ties make ε_i = 0: add tiny noise to discrete data).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    xs, ys = _continuous(x, "x", columns=True), _continuous(y, "y", columns=True)
    n = xs.shape[0]
    if ys.shape[0] != n:
        raise ValueError(f"x and y must have the same number of samples, got {n} and {ys.shape[0]}")
    if n <= k:
        raise ValueError(f"need more samples than neighbours: n={n}, k={k}")
    joint = np.hstack([xs, ys])
    distances, _ = cKDTree(joint).query(joint, k=k + 1, p=np.inf)
    eps = distances[:, k]
    if np.any(eps == 0):
        raise ValueError(
            "ksg_mutual_information: repeated samples (k-th neighbour at distance 0); the"
            " estimator assumes continuous variables: add tiny noise or use the discrete one"
        )
    radius = np.nextafter(eps, 0)  # strictly closer than eps
    n_x = cKDTree(xs).query_ball_point(xs, r=radius, p=np.inf, return_length=True) - 1
    n_y = cKDTree(ys).query_ball_point(ys, r=radius, p=np.inf, return_length=True) - 1
    mi = digamma(k) + digamma(n) - np.mean(digamma(n_x + 1) + digamma(n_y + 1))
    return float(mi) / _log_base(base)


def gaussian_mutual_information(rho: float, base: float | None = None) -> float:
    """I(X;Y) = −½·log(1 − ρ²) of a bivariate Gaussian with correlation ``rho`` in (−1, 1)."""
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not -1 < rho < 1:
        raise ValueError(f"rho must be a float in (-1, 1), got {rho!r}")
    return -0.5 * math.log1p(-rho * rho) / _log_base(base)


def gaussian_pair(
    rho: float, n: int, generator: torch.Generator | int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """n samples of a standard bivariate Gaussian with correlation ``rho`` (float64 arrays).

    ``generator`` a ``torch.Generator`` or an int seed, for reproducible draws.
    """
    gaussian_mutual_information(rho)  # validates rho
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    x = z[:, 0]
    y = rho * z[:, 0] + math.sqrt(1 - rho * rho) * z[:, 1]
    return x.numpy(), y.numpy()
