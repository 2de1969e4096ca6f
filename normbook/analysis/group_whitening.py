"""How well a batch of ``m`` samples estimates a ``k×k`` covariance: the estimation problem behind
DBN's group whitening (Huang et al. 2018, Sec. 3.4, PAPERS.md DBN-S34).

DBN whitens each group of ``k = k_G`` channels with the covariance of one mini-batch. For
i.i.d. samples with population covariance ``I``, the eigenvalues of the sample covariance spread
over the Marchenko–Pastur interval ``[(1 − √c)², (1 + √c)²]`` with ``c = k/m`` as ``k, m → ∞``
at fixed ratio (Marchenko & Pastur 1967; the extreme eigenvalues converge to the edges, Bai & Yin
1993). Whitening with ``W = S^{-1/2}`` then gives a *population* covariance ``W I Wᵀ = S^{-1}``
whose condition number is ``λ_max(S)/λ_min(S) → ((1 + √c)/(1 − √c))²``: the larger the group for
a given batch, the worse the whitening that the batch's estimate applies to the data it does not
see. DBN centres with the batch mean, which leaves ``m − 1`` degrees of freedom:
``S = (1/m) X_c X_cᵀ`` has the law of ``((m − 1)/m)·`` a sample covariance of ``m − 1`` centred
Gaussian samples, so the edges here use ``c = k/(m − 1)`` and that factor (``centered=True``).
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import torch


def _check_sizes(k: int, m: int) -> None:
    for value, name in ((k, "k"), (m, "m")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _effective(k: int, m: int, centered: bool) -> tuple[float, float]:
    """(ratio c, scale) of the sample covariance's Marchenko–Pastur law (see module docstring)."""
    _check_sizes(k, m)
    if centered:
        if m < 2:
            raise ValueError("a centred covariance needs m >= 2 samples")
        return k / (m - 1), (m - 1) / m
    return k / m, 1.0


def marchenko_pastur_edges(k: int, m: int, *, centered: bool = True) -> tuple[float, float]:
    """Edges ``(scale·(1 − √c)², scale·(1 + √c)²)`` of the non-zero eigenvalues of the sample
    covariance of ``m`` samples in ``k`` dimensions with population covariance ``I``.

    For ``c > 1`` the same interval holds the ``m`` (or ``m − 1``) non-zero eigenvalues; the
    other ``k − m`` are exactly zero.
    """
    c, scale = _effective(k, m, centered)
    root = math.sqrt(c)
    return scale * (1 - root) ** 2, scale * (1 + root) ** 2


def marchenko_pastur_condition(k: int, m: int, *, centered: bool = True) -> float:
    """Limit of ``λ_max/λ_min`` of the sample covariance: ``((1 + √c)/(1 − √c))²``; ``inf`` for
    ``c >= 1`` (a rank-deficient batch: DBN's ``eps`` then sets the smallest eigenvalue)."""
    c, _ = _effective(k, m, centered)
    if c >= 1:
        return math.inf
    root = math.sqrt(c)
    return ((1 + root) / (1 - root)) ** 2


def marchenko_pastur_density(
    x: torch.Tensor, k: int, m: int, *, centered: bool = True
) -> torch.Tensor:
    """Density of the continuous part of the law at ``x`` (float64; 0 outside the edges).

    ``√((b − x)(x − a)) / (2π c x)`` for unit variance, rescaled by ``scale``; it integrates to
    ``min(1, 1/c)`` (the rest is the point mass at 0 when ``c > 1``).
    """
    c, scale = _effective(k, m, centered)
    lower, upper = marchenko_pastur_edges(k, m, centered=centered)
    x = torch.as_tensor(x, dtype=torch.float64)
    inside = (x > lower) & (x < upper)
    y = x / scale
    a, b = lower / scale, upper / scale
    body = torch.sqrt(((b - y) * (y - a)).clamp_min(0.0)) / (2 * math.pi * c * y.clamp_min(1e-300))
    return torch.where(inside, body / scale, torch.zeros_like(x))


def edge_fluctuation_scales(k: int, m: int, *, centered: bool = True) -> tuple[float, float]:
    """Finite-size scales ``(σ_lower, σ_upper)`` of the smallest and largest eigenvalue of the
    sample covariance around the Marchenko–Pastur edges (``k < m``).

    With ``n`` samples (``m − 1`` when centred) and ``p = k``, Johnstone's (2001) scale of the
    largest eigenvalue is ``(√n + √p)(1/√n + 1/√p)^{1/3}/n`` and that of the smallest (Ma 2012)
    ``(√n − √p)(1/√p − 1/√n)^{1/3}/n``; the extremes fluctuate by a few of these (Tracy–Widom
    laws, mean ±1.2 and standard deviation 1.3 scales), shrinking like ``m^{-2/3}``.
    """
    c, scale = _effective(k, m, centered)
    if c >= 1:
        raise ValueError(f"edge fluctuations need k < m (k = {k}, m = {m})")
    n, p = k / c, float(k)
    upper = (math.sqrt(n) + math.sqrt(p)) * (1 / math.sqrt(n) + 1 / math.sqrt(p)) ** (1 / 3) / n
    lower = (math.sqrt(n) - math.sqrt(p)) * (1 / math.sqrt(p) - 1 / math.sqrt(n)) ** (1 / 3) / n
    return scale * lower, scale * upper


def sample_covariance_spectra(
    k: int,
    m: int,
    *,
    trials: int = 1,
    seed: int = 0,
    centered: bool = True,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Eigenvalues (``trials × k``, ascending) of DBN's batch covariance ``(1/m) X_c X_cᵀ`` of
    ``m`` samples of ``N(0, I_k)`` per trial (``centered=False``: no mean subtracted)."""
    _check_sizes(k, m)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a positive int, got {trials!r}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(trials, m, k, generator=gen, dtype=dtype)
    if centered:
        x = x - x.mean(dim=1, keepdim=True)
    cov = x.transpose(1, 2) @ x / m
    return torch.linalg.eigvalsh(cov)


def spread_table(
    group_sizes: list[int],
    batch_sizes: list[int],
    *,
    trials: int = 20,
    seed: int = 0,
    centered: bool = True,
) -> pd.DataFrame:
    """Monte-Carlo extreme eigenvalues of the batch covariance beside Marchenko–Pastur, per (k, m).

    Columns: ``k``, ``m``, ``ratio`` (k/m), ``mc_min``/``mc_max`` (mean over trials of the smallest
    non-zero and the largest eigenvalue) with ``*_std``, ``mc_condition`` (median λ_max/λ_min over
    trials, ``inf`` when rank-deficient), ``mp_lower``, ``mp_upper``, ``mp_condition``.
    """
    rows = []
    for k in group_sizes:
        for m in batch_sizes:
            lam = sample_covariance_spectra(k, m, trials=trials, seed=seed, centered=centered)
            rank = min(k, m - 1 if centered else m)
            smallest = lam[:, k - rank]
            largest = lam[:, -1]
            condition = largest / smallest if rank == k else torch.full_like(largest, math.inf)
            lower, upper = marchenko_pastur_edges(k, m, centered=centered)
            rows.append(
                {
                    "k": k,
                    "m": m,
                    "ratio": k / m,
                    "mc_min": float(smallest.mean()),
                    "mc_min_std": float(smallest.std()) if trials > 1 else 0.0,
                    "mc_max": float(largest.mean()),
                    "mc_max_std": float(largest.std()) if trials > 1 else 0.0,
                    "mc_condition": float(condition.median()),
                    "mp_lower": lower,
                    "mp_upper": upper,
                    "mp_condition": marchenko_pastur_condition(k, m, centered=centered),
                }
            )
    return pd.DataFrame(rows)


def spectrum_figure(
    k: int, m: int, *, trials: int = 20, seed: int = 0, bins: int = 60, title: str | None = None
) -> go.Figure:
    """Histogram of the batch covariance's eigenvalues (``trials`` batches pooled) with the
    Marchenko–Pastur density and its edges (DBN-S34's estimation problem, one ``(k_G, m)``)."""
    lam = sample_covariance_spectra(k, m, trials=trials, seed=seed).reshape(-1)
    lower, upper = marchenko_pastur_edges(k, m)
    top = max(float(lam.max()), upper) * 1.05
    grid = torch.linspace(0.0, top, 400, dtype=torch.float64)
    density = marchenko_pastur_density(grid, k, m)
    nonzero = lam[lam > 1e-9 * float(lam.max())]
    figure = go.Figure()
    figure.add_trace(
        go.Histogram(
            x=nonzero.tolist(),
            histnorm="probability density",
            nbinsx=bins,
            name=f"eigenvalues, {trials} batches",
            marker={"color": "#1f77b4"},
            opacity=0.6,
        )
    )
    scale = nonzero.numel() / lam.numel()  # the histogram shows only the non-zero part
    figure.add_trace(
        go.Scatter(
            x=grid.tolist(),
            y=(density / scale).tolist(),
            mode="lines",
            name="Marchenko–Pastur density",
            line={"color": "#d62728"},
        )
    )
    for edge in (lower, upper):
        figure.add_vline(x=edge, line={"dash": "dash", "color": "#d62728"})
    kappa = marchenko_pastur_condition(k, m)
    kappa_text = "∞" if math.isinf(kappa) else f"{kappa:.1f}"
    figure.update_layout(
        title=title
        or (
            f"Batch covariance of k_G = {k} channels from m = {m} samples (k_G/m = {k / m:.2f})"
            f"<br>MP edges {lower:.2f} … {upper:.2f}; condition number → {kappa_text}"
        ),
        xaxis_title="eigenvalue of the batch covariance (population variance = 1)",
        yaxis_title="density",
        bargap=0.02,
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def matmul_flops(module: torch.nn.Module, x: torch.Tensor, *, seed: int = 0) -> tuple[int, int]:
    """FLOPs of the matrix products in ``module``'s forward and backward on ``x`` (DBN-S34).

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` (2 per multiply-add of
    ``mm``/``bmm``/``baddbmm``, ...); the eigendecomposition (LAPACK, ``O(k³)`` per group) is not
    counted. For DBN with groups of ``k > 1`` the forward's products are the covariances and the
    whitening (``2·m·d·k`` each) and ``W = D Λ^{-1/2} Dᵀ`` (``2·d·k²``). The backward receives a
    random ``∂L/∂y`` drawn with ``seed``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    x = x.detach().requires_grad_(True)
    forward = FlopCounterMode(display=False)
    with forward:
        y = module(x)
    gen = torch.Generator().manual_seed(seed)
    grad = torch.randn(y.shape, generator=gen, dtype=y.dtype)
    backward = FlopCounterMode(display=False)
    with backward:
        y.backward(grad)
    return int(forward.get_total_flops()), int(backward.get_total_flops())
