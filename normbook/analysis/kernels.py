"""Infinite-width kernels of deep ReLU nets and their finite-width measurements (MimicNorm:
MN-EQ2-4, MN-TH1-3, MN-F2-F3).

Theory (float64, no randomness):

- :func:`relu_dual` is the normalized arc-cosine kernel of degree 1 (Cho & Saul 2009):
  ``ρ(c) = 2·E[relu(u) relu(v)]`` for unit Gaussians with correlation ``c``;
  :func:`relu_dual_derivative` is ``ρ'(c) = 2·E[relu'(u) relu'(v)]``.
- :func:`correlation_map` is one layer's map of the pre-activation correlation of two inputs for a
  straight ReLU net at He init (``plain``: ``ρ``), with weight mean (``weight_mean``: every
  weight row centred, init ``σ_w² = 2π/(π−1)``: ``(π·ρ(c) − 1)/(π − 1)``), or with BatchNorm
  after the linear layer (``bn``: a large full batch whose typical correlation is
  ``batch_correlation``).
- :func:`nngp_kernels` / :func:`ntk_kernels` iterate the m×m kernels layer by layer from an input
  Gram matrix (NTK parameterization, no biases); :func:`fixed_points` finds a map's fixed points.

Measurements on finite nets: :func:`preactivations` (forward hooks on the ReLUs' inputs),
:func:`correlation_profile`, :func:`channel_statistics`, :func:`empirical_ntk` (``torch.func``),
:func:`condition_number`; :func:`weight_mean_linear_` is weight mean for linear layers (the
package's :func:`normbook.layers.weight_mean_` only touches convolutions); :func:`kernel_mlp` builds
the three nets the chapter compares.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn

PI = math.pi
VARIANTS: tuple[str, ...] = ("plain", "weight_mean", "bn")
# stable init of a weight-mean layer: 1 / Var[relu(u)] for u ~ N(0, 1), i.e. 2π/(π−1) (MN-TH3)
WEIGHT_MEAN_GAIN = 2.0 * PI / (PI - 1.0)
HE_GAIN = 2.0  # 1 / E[relu(u)²]

Number = float | torch.Tensor


# -- dual activation ---------------------------------------------------------------------------
def _as_float64(c: Number) -> tuple[torch.Tensor, bool]:
    if isinstance(c, bool):
        raise TypeError("c must be a float or a tensor of correlations, got a bool")
    if isinstance(c, torch.Tensor):
        return c.to(torch.float64), True
    if isinstance(c, (int, float)):
        return torch.tensor(float(c), dtype=torch.float64), False
    return torch.as_tensor(c, dtype=torch.float64), True


def _check_correlation(c: torch.Tensor, name: str = "c", slack: float = 1e-9) -> torch.Tensor:
    if not torch.isfinite(c).all():
        raise ValueError(f"{name} must be finite")
    if (c.abs() > 1.0 + slack).any():
        raise ValueError(f"{name} must lie in [-1, 1], got values up to {c.abs().max().item():.6g}")
    return c.clamp(-1.0, 1.0)


def _out(value: torch.Tensor, tensor: bool) -> Number:
    return value if tensor else float(value)


def relu_dual(c: Number) -> Number:
    """ρ(c) = (√(1−c²) + (π − arccos c)·c)/π: normalized ReLU dual activation (MN-EQ2-4).

    Equal to ``2·E[relu(u)·relu(v)]`` for standard Gaussians ``u, v`` with correlation ``c``
    (Cho & Saul's arc-cosine kernel of degree 1 divided by its value at ``c = 1``). Floats in,
    float out; tensors in, float64 tensor out.
    """
    t, tensor = _as_float64(c)
    t = _check_correlation(t)
    return _out((torch.sqrt(1.0 - t * t) + (PI - torch.arccos(t)) * t) / PI, tensor)


def relu_dual_derivative(c: Number) -> Number:
    """ρ'(c) = (π − arccos c)/π = ``2·E[1{u>0}·1{v>0}]`` (finite at c = 1, where it equals 1)."""
    t, tensor = _as_float64(c)
    t = _check_correlation(t)
    return _out((PI - torch.arccos(t)) / PI, tensor)


def monte_carlo_dual(
    c: float, samples: int = 1_000_000, *, seed: int = 0, derivative: bool = False
) -> tuple[float, float]:
    """Monte-Carlo estimate of ρ(c) = 2·E[relu(u)relu(v)] (or ρ'(c) = 2·E[1{u>0}1{v>0}]) and its
    standard error, from ``samples`` pairs of standard Gaussians with correlation ``c`` (float64).

    ``v = c·u + √(1−c²)·z`` with ``u, z`` independent; seeded, so the estimate is reproducible.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ValueError(f"samples must be an int >= 2, got {samples!r}")
    c = float(_check_correlation(torch.tensor(float(c), dtype=torch.float64)))
    generator = torch.Generator().manual_seed(seed)
    u, z = torch.randn(2, samples, generator=generator, dtype=torch.float64)
    v = c * u + math.sqrt(max(0.0, 1.0 - c * c)) * z
    if derivative:
        values = 2.0 * ((u > 0) & (v > 0)).to(torch.float64)
    else:
        values = 2.0 * torch.relu(u) * torch.relu(v)
    return float(values.mean()), float(values.std() / math.sqrt(samples))


def relu_moments() -> tuple[float, float]:
    """(E[relu(u)], E[relu(u)²]) for u ~ N(0, 1): (1/√(2π), 1/2)."""
    return 1.0 / math.sqrt(2.0 * PI), 0.5


def weight_mean_gain() -> float:
    """σ_w² (per fan-in) keeping the pre-activation variance of a weight-mean ReLU layer: 2π/(π−1).

    With every weight row centred, a layer's pre-activation variance is σ_w²·Var[relu(u)]·q
    (the mean ``E[relu(u)]`` is removed); stability needs σ_w² = 1/Var[relu(u)] (MN-TH3).
    """
    mean, second = relu_moments()
    return 1.0 / (second - mean * mean)


# -- one layer's correlation map ---------------------------------------------------------------
def _check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    return variant


def correlation_map(c: Number, variant: str = "plain", *, batch_correlation: float = 0.0) -> Number:
    """Pre-activation correlation of two inputs one layer deeper, in the infinite-width limit.

    ``plain``: ρ(c) (He init, no bias). ``weight_mean``: (π·ρ(c) − 1)/(π − 1) (rows of W centred,
    init 2π/(π−1)). ``bn``: (ρ(c) − ρ(c̄))/(1 − ρ(c̄)) for a pair inside a large batch whose other
    pairs have correlation ``c̄ = batch_correlation`` (BatchNorm subtracts the batch mean of each
    unit); at c̄ = 0 it is the weight-mean map (MN-TH2, MN-TH3).
    """
    _check_variant(variant)
    rho = relu_dual(c)
    if variant == "plain":
        return rho
    if variant == "weight_mean":
        return (PI * rho - 1.0) / (PI - 1.0)
    bulk = relu_dual(float(batch_correlation))
    if not bulk < 1.0:
        raise ValueError("bn: batch_correlation must be < 1 (a batch of identical inputs)")
    return (rho - bulk) / (1.0 - bulk)


def correlation_map_slope(
    c: Number, variant: str = "plain", *, batch_correlation: float = 0.0
) -> Number:
    """Derivative of :func:`correlation_map` in ``c`` (analytic, via ρ'); at c = 1 it is χ₁."""
    _check_variant(variant)
    slope = relu_dual_derivative(c)
    if variant == "plain":
        return slope
    if variant == "weight_mean":
        return PI * slope / (PI - 1.0)
    bulk = relu_dual(float(batch_correlation))
    return slope / (1.0 - bulk)


def chi1(variant: str = "plain") -> float:
    """χ₁ of Xiao et al.: slope of the correlation map at c = 1 (1: critical; > 1: chaotic)."""
    return float(correlation_map_slope(1.0, variant))


def relu_bias_correlation_map(c: Number, sigma_w2: float) -> Number:
    """Correlation map of a ReLU layer with bias at its variance fixed point q* = 1 (σ_w² ≤ 2).

    σ_b² = 1 − σ_w²/2 keeps q* = 1, and the map is (σ_w²/2)·ρ(c) + (1 − σ_w²/2): slope
    χ₁ = σ_w²/2 at c = 1 (ordered for σ_w² < 2, critical at 2). Above 2 there is no finite q*.
    """
    if isinstance(sigma_w2, bool) or not isinstance(sigma_w2, (int, float)):
        raise TypeError(f"sigma_w2 must be a float, got {type(sigma_w2).__name__}")
    if not 0.0 < sigma_w2 <= 2.0:
        raise ValueError(
            f"sigma_w2 must lie in (0, 2] (a ReLU layer has a variance fixed point only there),"
            f" got {sigma_w2}"
        )
    half = sigma_w2 / 2.0
    return half * relu_dual(c) + (1.0 - half)


def iterate_correlation(
    c0: Number, depth: int, variant: str = "plain", *, batch_correlation: float = 0.0
) -> torch.Tensor:
    """Correlations at layers 0..depth: ``c0`` then ``depth`` applications of the map.

    Returns a float64 tensor of shape ``(depth + 1, *c0.shape)``.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be an int >= 0, got {depth!r}")
    c, _ = _as_float64(c0)
    c = _check_correlation(c, "c0")
    out = [c]
    for _ in range(depth):
        c = correlation_map(c, variant, batch_correlation=batch_correlation)
        out.append(c)
    return torch.stack(out)


def fixed_points(
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    derivative: Callable[[torch.Tensor], torch.Tensor] | None = None,
    lo: float = -1.0,
    hi: float = 1.0,
    points: int = 4001,
    tol: float = 1e-13,
    probe: float = 1e-4,
) -> list[dict[str, Any]]:
    """Fixed points of a map ``fn`` of [lo, hi] (float64 tensors in and out), with their stability.

    Scans ``g(c) = fn(c) − c`` on a grid, refines every sign change by bisection and keeps grid
    zeros. ``slope`` is ``derivative(c*)`` if given, else a finite difference. ``stable`` says
    whether the fixed point attracts: one step from ``c* ± probe`` (inside [lo, hi]) lands closer
    to ``c*`` (this also decides the marginal case slope = 1, e.g. plain ReLU at c* = 1).
    Returns dicts ``{"c", "slope", "stable"}`` sorted by ``c``.
    """
    if points < 3:
        raise ValueError(f"points must be >= 3, got {points}")

    def at(c: float) -> float:
        return float(fn(torch.tensor(c, dtype=torch.float64)))

    grid = torch.linspace(lo, hi, points, dtype=torch.float64)
    g = fn(grid) - grid
    roots: list[float] = []
    for i in range(points):
        if abs(float(g[i])) <= tol:
            roots.append(float(grid[i]))
        elif i + 1 < points and float(g[i]) * float(g[i + 1]) < 0 and abs(float(g[i + 1])) > tol:
            a, b, ga = float(grid[i]), float(grid[i + 1]), float(g[i])
            for _ in range(200):
                mid = 0.5 * (a + b)
                gm = at(mid) - mid
                if gm == 0.0 or b - a < 1e-15:
                    break
                if (gm < 0) == (ga < 0):
                    a, ga = mid, gm
                else:
                    b = mid
            roots.append(0.5 * (a + b))
    merged: list[float] = []
    for r in sorted(roots):
        if not merged or r - merged[-1] > 1e-9:
            merged.append(r)
    out = []
    h = 1e-6
    for r in merged:
        if derivative is not None:
            slope = float(derivative(torch.tensor(r, dtype=torch.float64)))
        else:
            left, right = max(lo, r - h), min(hi, r + h)
            slope = (at(right) - at(left)) / (right - left)
        sides = [c for c in (r - probe, r + probe) if lo <= c <= hi]
        stable = all(abs(at(c) - r) < abs(c - r) for c in sides)
        out.append({"c": r, "slope": slope, "stable": stable})
    return out


# -- m×m kernels, layer by layer ---------------------------------------------------------------
def _check_gram(gram: torch.Tensor) -> torch.Tensor:
    if not isinstance(gram, torch.Tensor):
        raise TypeError(f"gram must be a torch.Tensor, got {type(gram).__name__}")
    if gram.dim() != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be a square m×m matrix, got shape {tuple(gram.shape)}")
    gram = gram.to(torch.float64)
    if not torch.isfinite(gram).all() or (gram.diagonal() <= 0).any():
        raise ValueError("gram must be finite with a positive diagonal")
    return gram


def kernel_correlations(gram: torch.Tensor) -> torch.Tensor:
    """The correlation matrix K_ab / √(K_aa K_bb) of a kernel (Gram) matrix, clamped to [−1, 1]."""
    gram = _check_gram(gram)
    scale = gram.diagonal().sqrt()
    return (gram / scale[:, None] / scale[None, :]).clamp(-1.0, 1.0)


def relu_expectations(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For h ~ N(0, gram): (E[relu(h_a) relu(h_b)], E[relu'(h_a) relu'(h_b)], E[relu(h_a)]).

    Arc-cosine kernels: √(K_aa K_bb)·ρ(c_ab)/2, ρ'(c_ab)/2 and √(K_aa/(2π)).
    """
    gram = _check_gram(gram)
    scale = gram.diagonal().sqrt()
    corr = kernel_correlations(gram)
    outer = scale[:, None] * scale[None, :]
    return (
        outer * relu_dual(corr) / 2.0,
        relu_dual_derivative(corr) / 2.0,
        scale / math.sqrt(2 * PI),
    )


def _next_layer(
    sigma: torch.Tensor, variant: str, gain: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features' kernel that the next weights see, derivative kernel) for one layer."""
    act, dact, mean = relu_expectations(sigma)
    if variant == "weight_mean":
        act = act - mean[:, None] * mean[None, :]
    return gain * act, gain * dact


def nngp_kernels(
    gram0: torch.Tensor, depth: int, variant: str = "plain", *, gain: float | None = None
) -> list[torch.Tensor]:
    """Pre-activation kernels Σ¹..Σ^depth of an infinitely wide ReLU net (MN-EQ2-4, MN-TH3).

    ``gram0`` is the input Gram matrix (x_a·x_b / n₀); the first layer is plain with He gain 2
    (its input is the data, not a ReLU output); later layers follow ``variant``: ``plain`` (gain 2),
    ``weight_mean`` (rows centred, gain 2π/(π−1)) or ``bn`` (full-batch BatchNorm: centred over the
    batch and scaled to unit average variance, the law-of-large-numbers limit of MN-TH2).
    """
    _check_variant(variant)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    gain = _default_gain(variant) if gain is None else float(gain)
    sigma = HE_GAIN * _check_gram(gram0)
    if variant == "bn":
        sigma = _batch_normalize(sigma)
    out = [sigma]
    for _ in range(depth - 1):
        sigma, _ = _next_layer(sigma, "weight_mean" if variant == "weight_mean" else "plain", gain)
        if variant == "bn":
            sigma = _batch_normalize(sigma)
        out.append(sigma)
    return out


def _default_gain(variant: str) -> float:
    return WEIGHT_MEAN_GAIN if variant == "weight_mean" else HE_GAIN


def _batch_normalize(sigma: torch.Tensor) -> torch.Tensor:
    """P Σ P / (tr(P Σ P)/m): BatchNorm over the m inputs in the large-width limit."""
    m = sigma.shape[0]
    centred = sigma - sigma.mean(0, keepdim=True)
    centred = centred - centred.mean(1, keepdim=True)
    return centred / (centred.diagonal().sum() / m)


def ntk_kernels(
    gram0: torch.Tensor, depth: int, variant: str = "plain", *, gain: float | None = None
) -> list[torch.Tensor]:
    """Infinite-width NTK of a scalar readout after 1..depth hidden ReLU layers (NTK
    parameterization, no biases; Jacot et al. 2018).

    Θ¹ = Σ¹ (first-layer weights); for each further weight layer Θ ← K + K̇ ⊙ Θ with K the kernel
    of the features that layer's weights see (centred for ``weight_mean``) and
    K̇ = σ_w²·E[relu'·relu'].
    Returns the readout NTKs for depths 1..depth, each divided by its mean diagonal (the scale
    grows like χ₁^depth; condition numbers and correlations do not depend on it). ``bn`` is not
    covered (its Jacobian couples the batch; the chapter measures it empirically).
    """
    if variant == "bn":
        raise ValueError("ntk_kernels covers plain and weight_mean; measure bn with empirical_ntk")
    _check_variant(variant)
    gain = _default_gain(variant) if gain is None else float(gain)
    sigmas = nngp_kernels(gram0, depth, variant, gain=gain)
    # Θ = scale·theta with theta of unit mean diagonal: Θ grows like χ₁^depth (it overflows float64
    # within a few thousand chaotic layers), its shape does not.
    theta = sigmas[0] / sigmas[0].diagonal().mean()
    log_scale = math.log(float(sigmas[0].diagonal().mean()))
    out = []
    for index, sigma in enumerate(sigmas):
        feat, dact = _next_layer(sigma, variant, gain)
        readout = feat * math.exp(-log_scale) + dact * theta  # a readout (same gain) on top
        out.append(readout / readout.diagonal().mean())
        if index + 1 < len(sigmas):
            theta = sigmas[index + 1] * math.exp(-log_scale) + dact * theta
            norm = float(theta.diagonal().mean())
            theta, log_scale = theta / norm, log_scale + math.log(norm)
    return out


def condition_number(kernel: torch.Tensor) -> float:
    """λ_max/λ_min of a symmetric PSD kernel matrix (float64 eigvalsh; ``inf`` if λ_min ≤ 0)."""
    if not isinstance(kernel, torch.Tensor) or kernel.dim() != 2:
        raise ValueError("kernel must be a 2-D tensor")
    if kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel must be square, got shape {tuple(kernel.shape)}")
    k = kernel.detach().to(torch.float64)
    if not torch.isfinite(k).all():
        raise ValueError("kernel has NaN or Inf entries")
    eig = torch.linalg.eigvalsh(0.5 * (k + k.T))
    return float(eig[-1] / eig[0]) if eig[0] > 0 else math.inf


def mean_offdiagonal(matrix: torch.Tensor) -> float:
    """Mean of the off-diagonal entries of a square matrix."""
    m = matrix.shape[0]
    if matrix.dim() != 2 or m != matrix.shape[1] or m < 2:
        raise ValueError(f"need a square matrix of size >= 2, got shape {tuple(matrix.shape)}")
    total = matrix.sum() - matrix.diagonal().sum()
    return float(total / (m * (m - 1)))


# -- measurements on finite nets ---------------------------------------------------------------
def preactivations(
    model: nn.Module, x: torch.Tensor, activation: type[nn.Module] = nn.ReLU
) -> list[torch.Tensor]:
    """The inputs of every ``activation`` module of ``model`` on ``x``, in forward order.

    Registers forward hooks, runs one forward pass under ``no_grad`` in the model's current mode
    (train mode: BatchNorm uses the statistics of ``x``), removes the hooks. For the MLP these are
    the pre-activations h^l (after the norm, if any), flattened to N×features.
    """
    modules = [m for m in model.modules() if isinstance(m, activation)]
    if not modules:
        raise ValueError(f"{type(model).__name__} has no {activation.__name__} module")
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
        captured.append(inputs[0].detach().flatten(1))

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def feature_correlations(h: torch.Tensor) -> torch.Tensor:
    """m×m cosine similarities of the rows of ``h`` (the empirical NNGP correlation), float64."""
    if not isinstance(h, torch.Tensor) or h.dim() != 2 or h.shape[0] < 2:
        raise ValueError("h must be an N×features tensor with N >= 2")
    h = h.detach().to(torch.float64)
    norms = h.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError("a row of h is all zeros: its correlation is undefined")
    unit = h / norms
    return (unit @ unit.T).clamp(-1.0, 1.0)


def correlation_profile(layers: Sequence[torch.Tensor]) -> dict[str, list[float]]:
    """Per layer: mean and std of the off-diagonal correlations, second moment, between-channel
    share (MN-F2, MN-F3).

    ``between_share`` = Var_j(mean_a h_aj) / (that + mean_j Var_a h_aj): the share of a layer's
    variance that separates channels rather than inputs (1: every channel outputs one constant,
    the frozen kernel of MN-F2/F3; 0 after BatchNorm, which centres every channel over the batch).
    """
    out: dict[str, list[float]] = {
        "layer": [],
        "corr_mean": [],
        "corr_std": [],
        "second_moment": [],
        "between_share": [],
    }
    for index, h in enumerate(layers, start=1):
        corr = feature_correlations(h)
        m = corr.shape[0]
        pairs = m * (m - 1)
        diagonal = corr.diagonal()
        total = float(corr.sum() - diagonal.sum())
        squares = float(corr.pow(2).sum() - diagonal.pow(2).sum())
        mean = total / pairs
        var = max(0.0, (squares - pairs * mean * mean) / (pairs - 1)) if pairs > 1 else 0.0
        hd = h.detach().to(torch.float64)
        between = float(hd.mean(0).var(unbiased=False))
        within = float(hd.var(0, unbiased=False).mean())
        out["layer"].append(index)
        out["corr_mean"].append(mean)
        out["corr_std"].append(math.sqrt(var))
        out["second_moment"].append(float(hd.pow(2).mean()))
        out["between_share"].append(between / (between + within) if between + within > 0 else 0.0)
    return out


def channel_statistics(h: torch.Tensor, channels: int = 16) -> dict[str, list[float]]:
    """Mean and std over the inputs of the first ``channels`` channels of ``h``, in units of the
    layer's RMS (so layers and nets of different scales compare): MN-F3's per-channel
    distributions."""
    hd = h.detach().to(torch.float64)
    channels = min(int(channels), hd.shape[1])
    rms = float(hd.pow(2).mean().sqrt())
    if rms == 0.0:
        raise ValueError("h is all zeros")
    part = hd[:, :channels] / rms
    return {
        "channel": list(range(channels)),
        "mean": part.mean(0).tolist(),
        "std": part.std(0, unbiased=False).tolist(),
    }


# -- weight mean for linear layers, and the chapter's three nets -------------------------------
def _linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def weight_mean_linear_(model: nn.Module, *, skip_first: bool = True) -> list[str]:
    """Centre every row of every ``nn.Linear`` weight in place (weight mean for MLPs, MN-TH3).

    Each output unit's weights lose their mean over the inputs, so the unit ignores the common
    (mean) component of its input: the positive mean of ReLU features. ``skip_first`` leaves the
    first linear layer alone (its input is the data, not a ReLU output). Returns the names touched.
    Re-apply after every optimizer step to keep the projection, as MimicNorm does for convs.
    """
    layers = _linear_layers(model)
    if skip_first:
        layers = layers[1:]
    with torch.no_grad():
        for _, layer in layers:
            layer.weight.sub_(layer.weight.mean(dim=1, keepdim=True))
    return [name for name, _ in layers]


def weight_mean_linear_init_(
    model: nn.Module, *, gain: float = WEIGHT_MEAN_GAIN, skip_first: bool = True
) -> list[str]:
    """Re-draw the linear weights that weight mean touches from N(0, gain/fan_in), then centre them.

    The default gain 2π/(π−1) keeps the pre-activation variance constant through centred layers
    (MN-TH3; the official VGG code uses 2.8). Biases, if any, are zeroed. Returns the names.
    """
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain > 0:
        raise ValueError(f"gain must be a positive float, got {gain!r}")
    layers = _linear_layers(model)
    if skip_first:
        layers = layers[1:]
    with torch.no_grad():
        for _, layer in layers:
            layer.weight.normal_(0.0, math.sqrt(gain / layer.in_features))
            if layer.bias is not None:
                layer.bias.zero_()
    return weight_mean_linear_(model, skip_first=skip_first)


def kernel_mlp(
    variant: str,
    width: int,
    depth: int,
    *,
    in_features: int = 64,
    num_classes: int = 10,
    dtype: torch.dtype = torch.float64,
) -> nn.Module:
    """The straight MLP (``depth`` hidden layers of ``width``, ReLU, no biases) in three forms.

    ``plain``: ``norm="none-nobias"`` at He init; ``bn``: ``norm="bn"`` (BatchNorm after every
    hidden linear layer); ``weight_mean``: ``norm="none-nobias"`` with
    :func:`weight_mean_linear_init_` (its ``weight_mean_layers`` attribute names the centred
    layers, for :func:`empirical_ntk`).
    Built by :func:`normbook.models.build_model`; returned in train mode.
    """
    from normbook.models import build_model

    _check_variant(variant)
    norm = "bn" if variant == "bn" else "none-nobias"
    model = build_model(
        "mlp", num_classes, in_features=in_features, hidden=[int(width)] * int(depth), norm=norm
    )
    model = model.to(dtype)
    if variant == "weight_mean":
        model.weight_mean_layers = weight_mean_linear_init_(model)
    return model.train()


def empirical_ntk(
    model: nn.Module,
    x: torch.Tensor,
    *,
    output: int = 0,
    parameterization: str = "ntk",
    weight_mean_layers: Sequence[str] | None = None,
) -> torch.Tensor:
    """Empirical NTK Θ_ab = Σ_θ ∂f_a/∂θ · ∂f_b/∂θ of logit ``output`` over the weights of the
    linear layers, on the batch ``x`` (MN-TH1/TH2; Jacot et al. 2018), float64 m×m.

    The Jacobian of the whole batch's outputs is taken at once (``torch.func.jacrev`` of
    ``θ ↦ f(x; θ)``), so with BatchNorm in train mode each output depends on every input through
    the batch statistics and the NTK includes that coupling (a copy of the model with running
    statistics switched off is used, so nothing is updated). Layers named in
    ``weight_mean_layers`` (default: the model's ``weight_mean_layers`` attribute) are centred
    inside the function, so their Jacobian is the projected one, as in training with the
    projection after every step. ``parameterization="ntk"`` scales each layer's block by the mean
    square of its weights (σ²/fan_in at init), which is the NTK parameterization of the theory;
    ``"standard"`` is PyTorch's own. Biases and BatchNorm's γ, β are left out.
    """
    from torch.func import functional_call, jacrev

    if parameterization not in ("ntk", "standard"):
        raise ValueError(f"parameterization must be 'ntk' or 'standard', got {parameterization!r}")
    if not isinstance(x, torch.Tensor) or x.shape[0] < 2:
        raise ValueError("x must be a batch of at least two inputs")
    if weight_mean_layers is None:
        weight_mean_layers = getattr(model, "weight_mean_layers", ())
    net = copy.deepcopy(model)
    torch.func.replace_all_batch_norm_modules_(net)  # batch statistics, no running-stat updates
    dtype = next(net.parameters()).dtype
    x = x.to(dtype)
    centred = {f"{name}.weight" for name in weight_mean_layers}
    weights = {f"{name}.weight": m.weight.detach() for name, m in _linear_layers(net)}
    unknown = centred - set(weights)
    if unknown:
        raise ValueError(f"weight_mean_layers name no linear layer: {sorted(unknown)}")
    others = {k: v.detach() for k, v in net.named_parameters() if k not in weights}
    others.update({k: v.detach() for k, v in net.named_buffers()})

    def outputs(params: dict[str, torch.Tensor]) -> torch.Tensor:
        params = {
            k: (v - v.mean(dim=1, keepdim=True)) if k in centred else v for k, v in params.items()
        }
        return functional_call(net, {**others, **params}, (x,))[:, output]

    jac = jacrev(outputs)(weights)
    m = x.shape[0]
    kernel = torch.zeros(m, m, dtype=torch.float64, device=x.device)
    for name, block in jac.items():
        flat = block.reshape(m, -1).to(torch.float64)
        scale = float(weights[name].double().pow(2).mean()) if parameterization == "ntk" else 1.0
        kernel += scale * (flat @ flat.T)
    return kernel
