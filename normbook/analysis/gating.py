"""Exact and Monte-Carlo quantities of gated variables x̂ = g·x (Chen et al. 2019, IC-TH1, IC-EQ8).

The gates g are independent Bernoulli variables that stay OPEN (keep the value) with probability
``keep_prob`` = the paper's p (``drop_prob = 1 − p`` in torch's and :class:`~normbook.layers.ICLayer`'s
convention). Everything here is in nats and float64.

Discrete pairs are ``(values_x, values_y, pmf)``: the sorted support of each variable and the
joint probabilities ``pmf[a, b] = P(x = values_x[a], y = values_y[b])``.

- :func:`gate_pmf` enumerates the exact joint pmf of the gated pair (IC-TH1's left-hand sides);
  ``off_value`` is the value a closed gate outputs (0 for dropout; a value outside the support,
  e.g. ``-inf``, keeps the gate recoverable: the pair u = (g, x̂) of the derivation);
- :func:`pmf_entropy`, :func:`pmf_mutual_information`, :func:`pmf_moments`: exact functionals;
- :func:`theorem1_mutual_information` (p²·I), :func:`theorem1_entropy` (p·H + H_b(p)) and
  :func:`gated_entropy` (the exact entropy when x has an atom of mass π₀ at 0);
- :func:`gated_correlation`: Eq. 8 (ĉ = p·c) and its general form for non-zero means;
- Monte Carlo with known answers: :func:`discretized_gaussian_pmf`, :func:`sample_pmf`,
  :func:`keep_gates`, and the sampling distributions of the estimates,
  :func:`plugin_mi_distribution` (plug-in MI: Miller–Madow bias, delta-method and χ² spread) and
  :func:`correlation_sd` (influence function of the Pearson correlation).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import integrate
from scipy.special import ndtr, xlogy

from normbook.analysis.information import binary_entropy


def _check_keep_prob(keep_prob: Any, *, positive: bool = False) -> float:
    if isinstance(keep_prob, bool) or not isinstance(keep_prob, (int, float, np.floating)):
        raise TypeError(f"keep_prob must be a number in [0, 1], got {keep_prob!r}")
    p = float(keep_prob)
    low_ok = p > 0 if positive else p >= 0
    if not (low_ok and p <= 1):
        interval = "(0, 1]" if positive else "[0, 1]"
        raise ValueError(f"keep_prob must lie in {interval}, got {keep_prob!r}")
    return p


def _check_pmf(values_x: Any, values_y: Any, pmf: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vx = np.asarray(values_x, dtype=np.float64).reshape(-1)
    vy = np.asarray(values_y, dtype=np.float64).reshape(-1)
    table = np.asarray(pmf, dtype=np.float64)
    if table.shape != (vx.size, vy.size):
        raise ValueError(
            f"pmf must have shape (len(values_x), len(values_y)) = {(vx.size, vy.size)},"
            f" got {table.shape}"
        )
    for name, values in (("values_x", vx), ("values_y", vy)):
        if values.size == 0 or np.unique(values).size != values.size:
            raise ValueError(f"{name} must be non-empty and hold distinct values")
    if np.any(table < 0) or not np.all(np.isfinite(table)) or abs(table.sum() - 1) > 1e-9:
        raise ValueError("pmf must be finite, non-negative and sum to 1")
    return vx, vy, table


def gate_pmf(
    values_x: Any,
    values_y: Any,
    pmf: Any,
    keep_prob: float,
    *,
    off_value: float = 0.0,
    inverted: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact joint pmf of (g_i·x, g_j·y) with independent Bernoulli(``keep_prob``) gates (IC-TH1).

    A closed gate outputs ``off_value`` (dropout: 0); where that value is also in a variable's
    support the two events merge into one atom, which is what breaks Theorem 1 when P(x = 0) > 0.
    ``inverted=True`` scales the kept values by 1/p (torch's inverted dropout). Returns the new
    sorted supports and the pmf on them.
    """
    vx, vy, table = _check_pmf(values_x, values_y, pmf)
    p = _check_keep_prob(keep_prob, positive=inverted)
    if inverted:
        vx, vy = vx / p, vy / p
    new_x = np.unique(np.append(vx, off_value))
    new_y = np.unique(np.append(vy, off_value))
    ix, iy = np.searchsorted(new_x, vx), np.searchsorted(new_y, vy)
    ox, oy = int(np.searchsorted(new_x, off_value)), int(np.searchsorted(new_y, off_value))
    out = np.zeros((new_x.size, new_y.size))
    np.add.at(out, (ix[:, None], iy[None, :]), p * p * table)  # both gates open
    np.add.at(out, (ox, iy), (1 - p) * p * table.sum(axis=0))  # g_i closed, g_j open
    np.add.at(out, (ix, oy), p * (1 - p) * table.sum(axis=1))  # g_i open, g_j closed
    out[ox, oy] += (1 - p) ** 2  # both closed
    return new_x, new_y, out


def pmf_entropy(pmf: Any) -> float:
    """Shannon entropy −Σ P log P (nats) of a pmf of any shape (a joint pmf: the joint entropy)."""
    table = np.asarray(pmf, dtype=np.float64)
    if np.any(table < 0) or abs(table.sum() - 1) > 1e-9:
        raise ValueError("pmf must be non-negative and sum to 1")
    return float(-xlogy(table, table).sum())


def pmf_mutual_information(pmf: Any) -> float:
    """I(X;Y) = Σ P(x,y) log[P(x,y)/(P(x)P(y))] (nats) of a 2-D joint pmf, summed directly."""
    table = np.asarray(pmf, dtype=np.float64)
    if table.ndim != 2:
        raise ValueError(f"pmf must be 2-D, got shape {table.shape}")
    pmf_entropy(table)  # validates
    px, py = table.sum(axis=1), table.sum(axis=0)
    mask = table > 0
    ratio = table[mask] / np.outer(px, py)[mask]
    return float(np.sum(table[mask] * np.log(ratio)))


def pmf_moments(values_x: Any, values_y: Any, pmf: Any) -> dict[str, float]:
    """Means, variances, covariance and Pearson correlation of a discrete pair (exact)."""
    vx, vy, table = _check_pmf(values_x, values_y, pmf)
    px, py = table.sum(axis=1), table.sum(axis=0)
    mean_x, mean_y = float(px @ vx), float(py @ vy)
    var_x = float(px @ (vx - mean_x) ** 2)
    var_y = float(py @ (vy - mean_y) ** 2)
    cov = float((vx - mean_x) @ table @ (vy - mean_y))
    corr = cov / math.sqrt(var_x * var_y) if var_x > 0 and var_y > 0 else math.nan
    return {
        "mean_x": mean_x,
        "mean_y": mean_y,
        "var_x": var_x,
        "var_y": var_y,
        "cov": cov,
        "corr": corr,
        "zero_mass_x": float(px[vx == 0].sum()),
        "zero_mass_y": float(py[vy == 0].sum()),
    }


def marginal_entropies(pmf: Any) -> tuple[float, float]:
    """(H(X), H(Y)) of a 2-D joint pmf."""
    table = np.asarray(pmf, dtype=np.float64)
    return pmf_entropy(table.sum(axis=1)), pmf_entropy(table.sum(axis=0))


def theorem1_mutual_information(mutual_information: float, keep_prob: float) -> float:
    """IC-TH1: I(x̂_i; x̂_j) = p²·I(x_i; x_j) (holds when P(x_i = 0) = P(x_j = 0) = 0)."""
    return _check_keep_prob(keep_prob) ** 2 * float(mutual_information)


def theorem1_entropy(entropy: float, keep_prob: float) -> float:
    """IC-TH1: H(x̂_i) = p·H(x_i) + H_b(p) (holds when P(x_i = 0) = 0)."""
    p = _check_keep_prob(keep_prob)
    return p * float(entropy) + binary_entropy(p)


def gated_entropy(entropy: float, keep_prob: float, zero_mass: float = 0.0) -> float:
    """Exact H(g·x) for a discrete x with P(x = 0) = ``zero_mass`` = π₀.

    (g, g·x) has entropy H_b(p) + p·H(x); g·x merges its atoms (g=0, 0) and (g=1, 0), of mass
    1 − p and p·π₀, which removes q₀·H_b(p·π₀/q₀) with q₀ = 1 − p + p·π₀ (= H(g | g·x)). For
    π₀ = 0 this is Theorem 1's p·H(x) + H_b(p).
    """
    p = _check_keep_prob(keep_prob)
    if not 0 <= zero_mass <= 1:
        raise ValueError(f"zero_mass must lie in [0, 1], got {zero_mass!r}")
    merged = 1 - p + p * zero_mass
    loss = merged * binary_entropy(p * zero_mass / merged) if merged > 0 else 0.0
    return theorem1_entropy(entropy, p) - loss


def gated_correlation(
    corr: Any, keep_prob: float, mean_to_std_x: Any = 0.0, mean_to_std_y: Any = 0.0
) -> Any:
    """Correlation of g_i·x_i and g_j·x_j (i ≠ j) from that of x_i, x_j (IC-EQ8, exact).

    Cov(g_i x_i, g_j x_j) = p²·Cov(x_i, x_j) and Var(g x) = p·σ² + p(1−p)·μ², so with m = μ/σ

        ĉ = p·c / √((1 + (1−p)·m_i²)(1 + (1−p)·m_j²)),

    which is Eq. 8's ĉ = p·c for zero-mean inputs (m = 0). Scaling by 1/p (inverted dropout)
    changes neither. Works elementwise on NumPy arrays.
    """
    p = _check_keep_prob(keep_prob, positive=True)
    mx, my = (
        np.asarray(mean_to_std_x, dtype=np.float64),
        np.asarray(mean_to_std_y, dtype=np.float64),
    )
    value = (
        p
        * np.asarray(corr, dtype=np.float64)
        / np.sqrt((1 + (1 - p) * mx**2) * (1 + (1 - p) * my**2))
    )
    return float(value) if value.ndim == 0 else value


# -- Monte Carlo with known answers -------------------------------------------------------------
def gaussian_bin_edges(bins: int, limit: float = 3.0) -> np.ndarray:
    """``bins + 1`` edges: ``bins − 1`` equal cuts of [−limit, limit] between the tails −∞, +∞."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an int >= 2, got {bins!r}")
    if not limit > 0:
        raise ValueError(f"limit must be > 0, got {limit!r}")
    inner = np.linspace(-limit, limit, bins - 1) if bins > 2 else np.array([0.0])
    return np.concatenate([[-np.inf], inner, [np.inf]])


def bin_values(edges: np.ndarray, values: str = "codes") -> np.ndarray:
    """The value each bin stands for: ``"codes"`` 1..B (never 0), or ``"centers"`` (the middle of
    each finite bin, the tails one bin width out: for an odd B the middle bin's value is 0)."""
    bins = len(edges) - 1
    if values == "codes":
        return np.arange(1, bins + 1, dtype=np.float64)
    if values != "centers":
        raise ValueError(f"values must be 'codes' or 'centers', got {values!r}")
    inner = edges[1:-1]
    width = float(inner[1] - inner[0]) if inner.size > 1 else 1.0
    centers = (inner[:-1] + inner[1:]) / 2
    out = np.concatenate([[inner[0] - width / 2], centers, [inner[-1] + width / 2]])
    out[np.abs(out) < 1e-12 * width] = 0.0
    return out


def discretized_gaussian_pmf(rho: float, edges: np.ndarray) -> np.ndarray:
    """Exact pmf of the bin indices of a standard bivariate Gaussian with correlation ρ.

    P(a_k ≤ x < a_{k+1}, b_l ≤ y < b_{l+1}) = ∫ φ(x)[Φ((b_{l+1} − ρx)/s) − Φ((b_l − ρx)/s)] dx,
    s = √(1−ρ²), by adaptive quadrature per x-bin (absolute error ~1e-12).
    """
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not -1 < rho < 1:
        raise ValueError(f"rho must be a float in (-1, 1), got {rho!r}")
    edges = np.asarray(edges, dtype=np.float64)
    scale = math.sqrt(1 - rho * rho)

    def column(x: float) -> np.ndarray:
        cdf = ndtr((edges - rho * x) / scale)
        return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) * np.diff(cdf)

    rows = [
        integrate.quad_vec(column, float(lo), float(hi), epsabs=1e-13, epsrel=1e-11)[0]
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    table = np.clip(np.array(rows), 0.0, None)
    return table / table.sum()


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def sample_pmf(
    values_x: Any, values_y: Any, pmf: Any, n: int, seed: int | np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """n independent draws (x, y) from a discrete joint pmf (float64 arrays)."""
    vx, vy, table = _check_pmf(values_x, values_y, pmf)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    flat = _rng(seed).choice(table.size, size=n, p=table.ravel() / table.sum())
    a, b = np.divmod(flat, vy.size)
    return vx[a], vy[b]


def keep_gates(
    shape: int | tuple[int, ...], keep_prob: float, seed: int | np.random.Generator | None = None
) -> np.ndarray:
    """Independent Bernoulli gates, 1 (open) with probability ``keep_prob`` = p, else 0."""
    p = _check_keep_prob(keep_prob)
    return (_rng(seed).random(shape) < p).astype(np.float64)


def expected_plugin_entropy(pmf: Any, n: int) -> float:
    """Exact E[Ĥ] of the plug-in entropy of n draws from ``pmf`` (any shape; cells are summed).

    Each cell's count is Binomial(n, P), and Ĥ = Σ −(k/n)·log(k/n) is a sum over cells, so
    E[Ĥ] = Σ_cells Σ_k Binom(k; n, P)·(−(k/n) log(k/n)): no asymptotics, exact also for cells too
    rare to be seen (where Miller–Madow's (K − 1)/(2n) is wrong). The sum over k is cut where the
    binomial mass is below 1e-16.
    """
    from scipy.stats import binom

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    probs = np.asarray(pmf, dtype=np.float64).ravel()
    total = 0.0
    for prob in probs[probs > 0]:
        spread = 12 * math.sqrt(n * prob * (1 - prob)) + 12
        lo, hi = max(1, int(n * prob - spread)), min(n, int(math.ceil(n * prob + spread)))
        k = np.arange(lo, hi + 1, dtype=np.float64)
        frac = k / n
        total += float(np.sum(binom.pmf(k, n, prob) * -frac * np.log(frac)))
    return total


def plugin_mi_distribution(pmf: Any, n: int) -> dict[str, float]:
    """Mean and spread of the plug-in MI of n samples from the 2-D ``pmf``.

    Mean: exact, E[Ĥ(X)] + E[Ĥ(Y)] − E[Ĥ(X,Y)] by :func:`expected_plugin_entropy` (its
    difference from I is the bias; for well-filled cells it is Miller–Madow's
    (K_xy − K_x − K_y + 1)/(2n), :func:`~normbook.analysis.information.plugin_mi_bias` for
    independent variables). Spread (first order): Var(i(X;Y))/n with i the pointwise MI
    log P(x,y)/(P(x)P(y)) (delta method), plus the χ² term bias/n (2n·Î ≈ χ² with 2n·bias degrees
    of freedom) that dominates when X and Y are (nearly) independent. Returns ``mi``, ``bias``,
    ``mean``, ``sd``.
    """
    table = np.asarray(pmf, dtype=np.float64)
    mi = pmf_mutual_information(table)
    px, py = table.sum(axis=1), table.sum(axis=0)
    mean = (
        expected_plugin_entropy(px, n)
        + expected_plugin_entropy(py, n)
        - expected_plugin_entropy(table, n)
    )
    mask = table > 0
    pointwise = np.log(table[mask] / np.outer(px, py)[mask])
    variance = float(np.sum(table[mask] * (pointwise - mi) ** 2))
    bias = mean - mi
    sd = math.sqrt(variance / n + max(bias, 0.0) / n)
    return {"mi": mi, "bias": bias, "mean": mean, "sd": sd}


def plugin_entropy_distribution(pmf: Any, n: int) -> dict[str, float]:
    """Mean (exact, :func:`expected_plugin_entropy`) and sd (first order, √(Var(−log P(x))/n))
    of the plug-in entropy of n samples from a 1-D ``pmf``."""
    probs = np.asarray(pmf, dtype=np.float64).ravel()
    entropy = pmf_entropy(probs)
    support = probs[probs > 0]
    variance = float(np.sum(support * (np.log(support) + entropy) ** 2))
    mean = expected_plugin_entropy(probs, n)
    return {"entropy": entropy, "bias": mean - entropy, "mean": mean, "sd": math.sqrt(variance / n)}


def correlation_sd(values_x: Any, values_y: Any, weights: Any, n: int) -> float:
    """Asymptotic standard deviation of the Pearson correlation of n draws from a distribution.

    The distribution is given by weighted points (``values_x[m]``, ``values_y[m]``, ``weights[m]``)
    or, with 1-D supports and a 2-D ``weights``, by a joint pmf. Uses the influence function
    ψ = z_x z_y − (r/2)(z_x² + z_y²) of the correlation (z standardized): sd = √(Var ψ / n).
    """
    w = np.asarray(weights, dtype=np.float64)
    x, y = np.asarray(values_x, dtype=np.float64), np.asarray(values_y, dtype=np.float64)
    if w.ndim == 2:
        x, y = np.meshgrid(x, y, indexing="ij")
    x, y, w = x.ravel(), y.ravel(), w.ravel()
    if not x.size == y.size == w.size or np.any(w < 0):
        raise ValueError("values_x, values_y and weights must match in size; weights >= 0")
    w = w / w.sum()
    zx = (x - w @ x) / math.sqrt(w @ (x - w @ x) ** 2)
    zy = (y - w @ y) / math.sqrt(w @ (y - w @ y) ** 2)
    r = float(w @ (zx * zy))
    psi = zx * zy - 0.5 * r * (zx**2 + zy**2)
    return math.sqrt(float(w @ psi**2) / n)


def gate_points(
    x: Any, y: Any, keep_prob: float, weights: Any = None, *, inverted: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact gated distribution of weighted points: each point (x, y) becomes the four
    points (x, y), (0, y), (x, 0), (0, 0) with weights p², (1−p)p, p(1−p), (1−p)²."""
    p = _check_keep_prob(keep_prob, positive=inverted)
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    w = np.full(x.size, 1.0 / x.size) if weights is None else np.asarray(weights, float).ravel()
    scale = 1 / p if inverted else 1.0
    gx = np.concatenate([x * scale, 0 * x, x * scale, 0 * x])
    gy = np.concatenate([y * scale, y * scale, 0 * y, 0 * y])
    gw = np.concatenate([p * p * w, (1 - p) * p * w, p * (1 - p) * w, (1 - p) ** 2 * w])
    return gx, gy, gw


def empirical_pmf(codes_x: Any, codes_y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The empirical joint pmf of two label arrays: (values_x, values_y, pmf)."""
    a, b = np.asarray(codes_x).ravel(), np.asarray(codes_y).ravel()
    if a.size != b.size or a.size == 0:
        raise ValueError("codes_x and codes_y must be non-empty and of the same length")
    vx, ia = np.unique(a, return_inverse=True)
    vy, ib = np.unique(b, return_inverse=True)
    table = np.zeros((vx.size, vy.size))
    np.add.at(table, (ia.ravel(), ib.ravel()), 1.0)
    return vx.astype(np.float64), vy.astype(np.float64), table / a.size


def gated_gaussian_correlation_sd(rho: float, keep_prob: float, n: int) -> float:
    """Asymptotic sd of the sample correlation of n gated standard Gaussian pairs (IC-EQ8 MC).

    With z = g·x/√p: E[z_x² z_y²] = 1 + 2ρ², E[z⁴] = 3/p, E[z_x³ z_y] = 3ρ, so the influence
    function of the correlation r = p·ρ has variance
    1 + 2ρ² − 6pρ² + (3/2)pρ² + (1/2)p²ρ² + p²ρ⁴ (= (1 − ρ²)² at p = 1, the classic value).
    """
    p = _check_keep_prob(keep_prob, positive=True)
    r2 = float(rho) ** 2
    variance = 1 + 2 * r2 - 6 * p * r2 + 1.5 * p * r2 + 0.5 * p * p * r2 + p * p * r2 * r2
    return math.sqrt(variance / n)
