"""The theory behind Normalization Propagation, and why a ResNet's identity path breaks it.

Shang, Chiu & Sohn 2017, supplement (PAPERS.md NP-EQ, NP-P1-3), from Arpit et al. 2016:

- Prop. 2 (ReLU moments): for z ~ N(0, 1), E[ReLU(z)] = 1/√(2π) (the paper prints 1/(2π), an
  erratum) and Var[ReLU(z)] = ½(1 − 1/π). :func:`relu_moments_quadrature` integrates them
  numerically; :func:`sample_moments` gives Monte-Carlo estimates with standard errors.
- Prop. 1 (canonical error bound): for x with E[xxᵀ] = σ²I, Σ = σ²WWᵀ is within
  σ²μ·√(Σ_{i≠j}‖W_i‖²‖W_j‖²) of its closest diagonal in Frobenius norm (μ: the coherence of the
  rows, Definition 2). :func:`canonical_error_bound` computes both sides and the bound as printed
  (without the squares, which only agrees for unit-norm rows).
- Prop. 3: for x ~ N(0, I) and orthogonal W, Cov(Wx + x) = (W + I)(W + I)ᵀ = 2I + W + Wᵀ (the
  paper prints 2(W + I), an erratum): :func:`residual_covariance`, :func:`haar_orthogonal`,
  :func:`covariance_z_scores`.
- NormProp's γ initialisation 1/1.21: :func:`jacobian_gamma` = √((π − 1)/π) ≈ 1/1.2113 makes the
  mean squared singular value of a NormProp layer's Jacobian one.

Stacks at initialization (built from :mod:`normbook.layers`, float64):

- :func:`normprop_stack`: a straight MLP, plain (Xavier, bias, ReLU) or NormProp 1/2/3, and
  :func:`layer_moments`: per layer the per-unit mean and variance over the inputs of the
  pre-activations (NormProp's promise: 0 and 1), with :func:`stack_moment_theory` (one-layer laws).
- :func:`residual_stack_moments`: x ← b(x) + x for a linear (orthogonal or Gaussian) or NormProp
  branch b, per block; :func:`residual_growth_theory`: (1 + κγ²)^l with κ the branch's variance
  gain, the law of a branch that scales with its input and is uncorrelated with it.
- :func:`block_output_moments`: the same statistics at the output of every residual block of a
  real model (``normbook.models.block_io``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from normbook.analysis._checks import check_finite, check_tensor
from normbook.analysis.activity import filter_coherence
from normbook.layers import NormPropLinear, NormPropReLU

PI = math.pi
RELU_MEAN = 1.0 / math.sqrt(2.0 * PI)  # E[ReLU(z)], z ~ N(0, 1) (Prop. 2, corrected)
RELU_VAR = 0.5 * (1.0 - 1.0 / PI)  # Var[ReLU(z)] (Prop. 2)
PRINTED_RELU_MEAN = 1.0 / (2.0 * PI)  # Prop. 2 as printed (erratum, PAPERS.md NP)
NORMPROP3_GAMMA = 1.0 / 1.21  # NormProp3's fixed γ, Arpit et al.'s initial value
STACK_NORMS: tuple[str, ...] = ("none", "normprop1", "normprop2", "normprop3")
RESIDUAL_BRANCHES: tuple[str, ...] = ("orthogonal", "gaussian", "normprop1", "normprop2")


def jacobian_gamma() -> float:
    """γ = √((π − 1)/π): with it, a NormProp layer (γ·W/‖W_i‖, then (ReLU − 1/√(2π))/√Var) has
    E‖J v‖² = ‖v‖² (ReLU passes half the units; γ²·½/Var[ReLU(z)] = γ²π/(π − 1) = 1)."""
    return math.sqrt((PI - 1.0) / PI)


# -- moments ------------------------------------------------------------------------------------
def sample_moments(values: torch.Tensor) -> dict[str, float]:
    """Mean and variance of a sample with their standard errors (float64; NP-P1-3's MC checks).

    ``mean_se`` = s/√N; ``var_se`` = √((m₄ − s⁴)/N), the large-N standard error of the sample
    variance (m₄: the sample's fourth central moment). ``var`` is unbiased.
    """
    check_tensor(values, "values", min_dim=1)
    v = values.detach().to(torch.float64).reshape(-1)
    n = v.numel()
    if n < 3:
        raise ValueError(f"values needs at least 3 entries, got {n}")
    check_finite(v, "values")
    mean = v.mean()
    centred = v - mean
    var = centred.pow(2).sum() / (n - 1)
    m4 = centred.pow(4).mean()
    return {
        "n": n,
        "mean": float(mean),
        "mean_se": float(var.sqrt() / math.sqrt(n)),
        "var": float(var),
        "var_se": float(((m4 - var**2).clamp_min(0.0) / n).sqrt()),
    }


def relu_moments_quadrature() -> dict[str, float]:
    """E[ReLU(z)] and Var[ReLU(z)] for z ~ N(0, 1) by adaptive quadrature (scipy) on [0, 40]
    (the tail beyond carries less than e^{-800}), with the larger of the two integrals' error
    estimates (Prop. 2)."""
    from scipy import integrate

    def density(z: float) -> float:
        return math.exp(-0.5 * z * z) / math.sqrt(2.0 * PI)

    first, err1 = integrate.quad(lambda z: z * density(z), 0.0, 40.0, epsabs=1e-14, epsrel=1e-14)
    second, err2 = integrate.quad(
        lambda z: z * z * density(z), 0.0, 40.0, epsabs=1e-14, epsrel=1e-14
    )
    return {"mean": first, "var": second - first * first, "error": max(err1, err2)}


# -- Prop. 1: the canonical error bound ---------------------------------------------------------
def canonical_error_bound(weight: torch.Tensor, sigma2: float = 1.0) -> dict[str, float]:
    """Both sides of Prop. 1 for y = Wx with E[xxᵀ] = σ²I (so Σ = σ²WWᵀ), rows of ``weight``
    (a conv weight is flattened per output filter), float64.

    ``distance`` = min_α ‖Σ − diag(α)‖_F (attained at α_i = σ²‖W_i‖², so it is the norm of Σ's
    off-diagonal part); ``bound`` = σ²μ√(Σ_{i≠j}‖W_i‖²‖W_j‖²); ``bound_as_printed`` =
    σ²μ√(Σ_{i≠j}‖W_i‖‖W_j‖), the form of the paper's Eq. (1), equal to ``bound`` for unit rows;
    ``coherence`` = μ; ``alpha_gap`` = max_i |Σ_ii − σ²‖W_i‖²|.
    """
    check_tensor(weight, "weight", min_dim=2)
    if not (isinstance(sigma2, (int, float)) and not isinstance(sigma2, bool) and sigma2 > 0):
        raise ValueError(f"sigma2 must be a positive number, got {sigma2!r}")
    w = weight.detach().to(torch.float64).reshape(weight.shape[0], -1)
    check_finite(w, "weight")
    sigma = sigma2 * (w @ w.T)
    norms = torch.linalg.vector_norm(w, dim=1)
    alpha = sigma2 * norms**2
    off = sigma - torch.diag(sigma.diagonal())
    mu = filter_coherence(w)
    outer = torch.outer(norms, norms)
    mask = ~torch.eye(w.shape[0], dtype=torch.bool)
    return {
        "distance": float(torch.linalg.matrix_norm(off)),
        "bound": sigma2 * mu * float(outer[mask].pow(2).sum().sqrt()),
        "bound_as_printed": sigma2 * mu * float(outer[mask].sum().sqrt()),
        "coherence": mu,
        "alpha_gap": float((sigma.diagonal() - alpha).abs().max()),
    }


# -- Prop. 3: the identity path -----------------------------------------------------------------
def haar_orthogonal(
    n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """A Haar-random n×n orthogonal matrix (QR of a Gaussian matrix with R's signs fixed)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    signs = torch.sign(r.diagonal())
    signs[signs == 0] = 1.0
    return (q * signs).to(dtype)


def _square(weight: torch.Tensor) -> torch.Tensor:
    check_tensor(weight, "weight", min_dim=2)
    if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
        raise ValueError(f"weight must be a square matrix, got shape {tuple(weight.shape)}")
    w = weight.detach().to(torch.float64)
    check_finite(w, "weight")
    return w


def residual_covariance(weight: torch.Tensor) -> torch.Tensor:
    """Cov(Wx + x) = (W + I)(W + I)ᵀ for x ~ N(0, I) (Prop. 3), float64; = 2I + W + Wᵀ when W is
    orthogonal."""
    w = _square(weight)
    a = w + torch.eye(w.shape[0], dtype=torch.float64)
    return a @ a.T


def printed_residual_covariance(weight: torch.Tensor) -> torch.Tensor:
    """The covariance as Prop. 3 prints it, 2(W + I) (an erratum: not even symmetric unless W is)."""
    w = _square(weight)
    return 2.0 * (w + torch.eye(w.shape[0], dtype=torch.float64))


def covariance_z_scores(samples: torch.Tensor, covariance: torch.Tensor) -> torch.Tensor:
    """(Σ̂ − Σ)/se entrywise: the sample covariance of the rows of ``samples`` (N×n, known zero
    mean) against ``covariance``, in units of its standard error √((Σ_iiΣ_jj + Σ_ij²)/N) under a
    Gaussian (Wishart) law. Entries of |z| ≲ 4 are what sampling noise gives."""
    check_tensor(samples, "samples", min_dim=2)
    x = samples.detach().to(torch.float64)
    sigma = covariance.detach().to(torch.float64)
    if sigma.shape != (x.shape[1], x.shape[1]):
        raise ValueError(
            f"covariance must be {x.shape[1]}×{x.shape[1]}, got {tuple(covariance.shape)}"
        )
    n = x.shape[0]
    estimate = x.T @ x / n
    diag = sigma.diagonal()
    se = ((torch.outer(diag, diag) + sigma**2) / n).sqrt()
    return (estimate - sigma) / se


# -- straight stacks ----------------------------------------------------------------------------
def _check_gamma(gamma: float) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
        raise ValueError(f"gamma must be a positive number, got {gamma!r}")
    return float(gamma)


def _check_size(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def normprop_stack(
    norm: str,
    width: int,
    depth: int,
    *,
    in_features: int = 64,
    gamma: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> nn.Sequential:
    """[Linear → activation] × ``depth`` (no classifier), for the moment measurements (NP-EQ).

    ``none``: ``nn.Linear`` with zero bias, Xavier normal (Shang et al.'s init without
    normalization), ReLU; ``normprop1``: :class:`~normbook.layers.NormPropLinear` (variant 1,
    γ = ``gamma``, β = 0) then :class:`~normbook.layers.NormPropReLU`; ``normprop2``/``normprop3``:
    NormPropLinear (variant 2/3) then ReLU (WeightNorm + ReLU; NormProp3's γ is a buffer). The
    NormProp weights are Xavier normal too (only their directions matter).
    """
    if norm not in STACK_NORMS:
        raise ValueError(f"norm must be one of {', '.join(STACK_NORMS)}, got {norm!r}")
    width, depth = _check_size(width, "width"), _check_size(depth, "depth")
    in_features = _check_size(in_features, "in_features")
    gamma = _check_gamma(gamma)
    layers: list[nn.Module] = []
    fan_in = in_features
    for _ in range(depth):
        if norm == "none":
            linear: nn.Module = nn.Linear(fan_in, width)
            nn.init.zeros_(linear.bias)
            activation: nn.Module = nn.ReLU()
        else:
            variant = int(norm[-1])
            linear = NormPropLinear(fan_in, width, variant=variant, gamma_init=gamma)
            activation = NormPropReLU() if variant == 1 else nn.ReLU()
        nn.init.xavier_normal_(linear.weight)
        layers += [linear, activation]
        fan_in = width
    return nn.Sequential(*layers).to(dtype)


def unit_moments(h: torch.Tensor) -> dict[str, float]:
    """Per-unit statistics over the inputs (rows) of an N×units tensor, summarised over units:
    ``mean`` (average of the unit means), ``mean_rms`` (their root mean square), ``var`` (average
    of the unit variances, population), ``var_spread`` (std of the unit variances)."""
    check_tensor(h, "h", min_dim=2)
    x = h.detach().to(torch.float64).flatten(1)
    means = x.mean(dim=0)
    variances = x.var(dim=0, unbiased=False)
    return {
        "mean": float(means.mean()),
        "mean_rms": float(means.pow(2).mean().sqrt()),
        "var": float(variances.mean()),
        "var_spread": float(variances.std(unbiased=False)),
    }


def layer_moments(model: nn.Module, x: torch.Tensor) -> dict[str, list[float]]:
    """:func:`unit_moments` of the pre-activation (the input of every ReLU/NormPropReLU) of each
    layer of ``model`` on ``x``, as per-layer lists (``layer`` is 1-based)."""
    from normbook.analysis.kernels import preactivations

    layers = preactivations(model, x, activation=(nn.ReLU, NormPropReLU))  # type: ignore[arg-type]
    out: dict[str, list[float]] = {
        "layer": [],
        "mean": [],
        "mean_rms": [],
        "var": [],
        "var_spread": [],
    }
    for index, h in enumerate(layers, start=1):
        stats = unit_moments(h)
        out["layer"].append(index)
        for key, value in stats.items():
            out[key].append(value)
    return out


def stack_moment_theory(
    norm: str,
    depth: int,
    *,
    gamma: float = 1.0,
    input_var: float = 1.0,
    in_features: int = 64,
    width: int = 64,
) -> list[float]:
    """Per-layer pre-activation variance predicted by the one-layer laws, for inputs with
    uncorrelated coordinates of variance ``input_var``: exact at the first layer, the
    infinite-width recursion after it (it ignores the unit means and correlations a finite net
    builds up, which :func:`layer_moments` measures).

    NormProp (γ·W/‖W_i‖, centred and rescaled ReLU): v₁ = γ²·input_var, v_{l+1} = γ²v_l (the
    output of NormPropReLU has variance v when its input is N(0, v)); NormProp2/3 (uncentred
    ReLU): v_{l+1} = γ²·Var[ReLU(z)]·v_l; plain, Xavier normal (variance 2/(fan_in + fan_out)):
    v₁ = 2·in_features/(in_features + width)·input_var, v_{l+1} = Var[ReLU(z)]·v_l.
    """
    if norm not in STACK_NORMS:
        raise ValueError(f"norm must be one of {', '.join(STACK_NORMS)}, got {norm!r}")
    depth = _check_size(depth, "depth")
    in_features, width = _check_size(in_features, "in_features"), _check_size(width, "width")
    gamma = _check_gamma(gamma)
    if norm == "none":
        first, step = input_var * 2.0 * in_features / (in_features + width), RELU_VAR
    elif norm == "normprop1":
        first, step = input_var * gamma**2, gamma**2
    else:
        first, step = input_var * gamma**2, gamma**2 * RELU_VAR
    return [first * step**k for k in range(depth)]


# -- residual stacks ----------------------------------------------------------------------------
def residual_growth_theory(branch: str, depth: int, *, gamma: float = 1.0) -> list[float]:
    """Predicted variance after each of ``depth`` blocks x ← b(x) + x, from unit-variance input:
    (1 + κ)^l with κ = Var[b(x)]/Var[x] at N(0, 1) input and b(x) uncorrelated with x.

    orthogonal/gaussian linear branch: κ = 1 (exact in expectation over W: E[Wᵀ] = 0, so
    E‖Wx + x‖² = 2‖x‖², the doubling of Prop. 3); NormProp branch (centred, rescaled ReLU of
    γ·Wx/‖W_i‖): κ = γ²; NormProp2 (uncentred ReLU): κ = γ²·Var[ReLU(z)], the first block only
    (its mean and its correlation with x change the next blocks).
    """
    if branch not in RESIDUAL_BRANCHES:
        raise ValueError(f"branch must be one of {', '.join(RESIDUAL_BRANCHES)}, got {branch!r}")
    depth = _check_size(depth, "depth")
    gamma = _check_gamma(gamma)
    kappa = {
        "orthogonal": 1.0,
        "gaussian": 1.0,
        "normprop1": gamma**2,
        "normprop2": gamma**2 * RELU_VAR,
    }[branch]
    return [(1.0 + kappa) ** k for k in range(1, depth + 1)]


def residual_stack_moments(
    branch: str,
    width: int,
    depth: int,
    x: torch.Tensor,
    *,
    gamma: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, list[float]]:
    """x_{l+1} = b_l(x_l) + x_l for ``depth`` blocks on inputs ``x`` (N×width), float64, no grad;
    per block :func:`unit_moments` of x_{l+1} and ``ratio`` = var_{l+1}/var_l (Prop. 3's
    simplified NormProp block, Fig. 3b).

    ``orthogonal``: b(x) = Wx with W Haar orthogonal (:func:`haar_orthogonal`), a fresh one per
    block; ``gaussian``: W with N(0, 1/n) entries; ``normprop1``: NormPropReLU(NormPropLinear(x))
    with γ = ``gamma``; ``normprop2``: ReLU(NormPropLinear(x)) (WeightNorm + ReLU).
    """
    if branch not in RESIDUAL_BRANCHES:
        raise ValueError(f"branch must be one of {', '.join(RESIDUAL_BRANCHES)}, got {branch!r}")
    width, depth = _check_size(width, "width"), _check_size(depth, "depth")
    gamma = _check_gamma(gamma)
    check_tensor(x, "x", min_dim=2)
    if x.dim() != 2 or x.shape[1] != width:
        raise ValueError(f"x must be N×{width}, got {tuple(x.shape)}")
    h = x.detach().to(torch.float64)
    out: dict[str, list[float]] = {
        "block": [],
        "mean": [],
        "mean_rms": [],
        "var": [],
        "var_spread": [],
        "ratio": [],
    }
    previous = unit_moments(h)["var"]
    with torch.no_grad():
        for block in range(1, depth + 1):
            if branch == "orthogonal":
                b = h @ haar_orthogonal(width, generator).T
            elif branch == "gaussian":
                w = torch.randn(width, width, generator=generator, dtype=torch.float64)
                b = h @ (w / math.sqrt(width)).T
            else:
                variant = 1 if branch == "normprop1" else 2
                layer = NormPropLinear(width, width, variant=variant, gamma_init=gamma).double()
                w = torch.randn(width, width, generator=generator, dtype=torch.float64)
                layer.weight.copy_(w)
                b = layer(h)
                b = NormPropReLU()(b) if variant == 1 else torch.relu(b)
            h = b + h
            stats = unit_moments(h)
            out["block"].append(block)
            for key, value in stats.items():
                out[key].append(value)
            out["ratio"].append(stats["var"] / previous)
            previous = stats["var"]
    return out


def block_output_moments(model: nn.Module, x: torch.Tensor) -> dict[str, list[float]]:
    """:func:`unit_moments` of the output of every residual block of ``model`` on ``x``
    (channels × positions as units, the batch as inputs), with each block's stride/width change
    flagged in ``reshapes`` (True where the block's output shape differs from its input's)."""
    from normbook.models import block_io

    out: dict[str, list] = {
        "block": [],
        "mean": [],
        "mean_rms": [],
        "var": [],
        "var_spread": [],
        "reshapes": [],
    }
    for index, (block_in, block_out) in enumerate(block_io(model, x), start=1):
        stats = unit_moments(block_out.flatten(1))
        out["block"].append(index)
        for key, value in stats.items():
            out[key].append(value)
        out["reshapes"].append(tuple(block_in.shape) != tuple(block_out.shape))
    return out


def growth_ratios(values: Sequence[float], skip: Sequence[bool] | None = None) -> list[float]:
    """values[l]/values[l − 1] for l ≥ 1, leaving out the steps flagged in ``skip`` (e.g. the
    blocks that change the shape, where a projection with BN resets the scale)."""
    ratios = []
    for index in range(1, len(values)):
        if skip is not None and skip[index]:
            continue
        ratios.append(values[index] / values[index - 1])
    return ratios
