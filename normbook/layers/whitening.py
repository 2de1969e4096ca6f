"""Decorrelated Batch Normalization (Huang et al. 2018): group whitening with an analytic backward.

DBN whitens each group of ``group_size`` contiguous channels over the batch (and every spatial
position): ``Y = W (X − μ1ᵀ)`` with ``Σ = (1/m) Xc Xcᵀ + eps·I`` (DBN Eq. 3, PAPERS.md DBN-EQ3).
The whitening matrix ``W`` is ZCA ``D Λ^{-1/2} Dᵀ`` (Eq. 4, the paper's choice), PCA
``Λ^{-1/2} Dᵀ`` (the stochastic-axis-swapping baseline, Sec. 3.1) or the Newton–Schulz
approximation of ZCA from IterNorm (Huang et al. 2019). Every group has its own mean and ``W``
(DBN-S34); all groups go through one batched ``eigh``/``bmm``. The backward of ZCA/PCA is the
paper's Algorithm 2 / Eq. A.14 (DBN-EQ5) as a custom autograd Function, or autograd through
``torch.linalg.eigh``.

Groups and the remainder: channels split into ``C // g`` full groups plus, when ``g`` does not
divide ``C``, one smaller last group. The full groups form one batch and the remainder a second
batched call of one group (at most two calls, never a loop over groups). The running buffers are
stacked as ``(G, g, g)``; the remainder group's matrix fills the top-left ``r×r`` block of the last
slice and the rest of that slice stays identity (unused).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
from torch import Tensor

from normbook.layers._checks import (
    NonFiniteInputError,
    check_features_input,
    check_positive_int,
    check_probability,
)
from normbook.layers.factory import register_norm_layer

WHITENING_METHODS: tuple[str, ...] = ("zca", "pca", "newton")
BACKWARD_MODES: tuple[str, ...] = ("analytic", "autograd")
RUNNING_MODES: tuple[str, ...] = ("whitening", "covariance")

# Eigenvalue pairs closer than DEGENERACY_FACTOR · g · machine-eps · λ_max are treated as equal:
# symmetric eigensolvers resolve eigenvalues only to about g · eps · ‖Σ‖, so smaller gaps are noise.
DEGENERACY_FACTOR = 10.0


def _check_choice(value: object, name: str, options: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``options``; else raise ``ValueError`` listing them."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def degeneracy_rtol(dtype: torch.dtype, size: int) -> float:
    """Relative eigenvalue gap below which two eigenvalues count as repeated (see DEGENERACY_FACTOR)."""
    return DEGENERACY_FACTOR * size * torch.finfo(dtype).eps


def eigengap_matrix(eigenvalues: Tensor, rtol: float | None = None) -> Tensor:
    """The 0-diagonal ``K`` of DBN Eq. 5 / Algorithm 2 line 5: ``K_ij = 1/(λ_i − λ_j)``, batched.

    Pairs with ``|λ_i − λ_j| <= rtol · max|λ|`` (repeated eigenvalues) get ``K_ij = 0`` instead of
    a huge or infinite value; ``rtol`` defaults to :func:`degeneracy_rtol` of the dtype and size.
    """
    size = eigenvalues.shape[-1]
    if rtol is None:
        rtol = degeneracy_rtol(eigenvalues.dtype, size)
    gap = eigenvalues.unsqueeze(-1) - eigenvalues.unsqueeze(-2)
    scale = eigenvalues.abs().amax(dim=-1, keepdim=True).unsqueeze(-1)
    degenerate = gap.abs() <= rtol * scale
    return gap.masked_fill(degenerate, 1.0).reciprocal().masked_fill(degenerate, 0.0)


def sorted_eigh(cov: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenpairs of symmetric ``cov`` in PCA's canonical form (DBN Sec. 3.1).

    Eigenvalues non-increasing; each eigenvector's largest-magnitude component is positive, so the
    basis is unique for distinct eigenvalues. Returns ``(λ, D)`` with ``cov = D diag(λ) Dᵀ``.
    """
    lam, vecs = torch.linalg.eigh(cov)
    lam, vecs = lam.flip(-1), vecs.flip(-1)
    pivot = vecs.abs().argmax(dim=-2, keepdim=True)
    sign = torch.where(vecs.gather(-2, pivot) < 0, -1.0, 1.0).to(vecs.dtype)
    return lam, vecs * sign


def _check_finite(statistic: Tensor, layer: str) -> None:
    """Raise ``ValueError`` unless ``statistic`` (a sum or covariance of the input) is finite.

    NaN/Inf anywhere in the input make its sum and covariance non-finite, so one small reduction
    replaces an elementwise ``isfinite(x).all()``; it also catches a covariance that overflows.
    """
    if not torch.isfinite(statistic).all():
        raise NonFiniteInputError(
            f"{layer}: input contains NaN or Inf (or values whose covariance overflows"
            f" {statistic.dtype})"
        )


def _eigen_factors(cov: Tensor, method: str, eps: float) -> tuple[Tensor, Tensor]:
    """Eigenpairs of ``cov + eps·I`` (DBN Algorithm 1 lines 5–6).

    Eigenvalues are floored at ``eps``: they are ``>= eps`` exactly, so anything below is solver
    round-off that would otherwise turn ``λ^{-1/2}`` into NaN for ill-scaled activations.
    """
    if eps:
        cov = cov + eps * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    lam, vecs = sorted_eigh(cov) if method == "pca" else torch.linalg.eigh(cov)
    if eps:
        lam = lam.clamp_min(eps)
    return lam, vecs


def _whitening_from_factors(lam: Tensor, vecs: Tensor, method: str) -> Tensor:
    """``W`` from eigenpairs: ZCA ``D Λ^{-1/2} Dᵀ`` (Eq. 4) or PCA ``Λ^{-1/2} Dᵀ`` (Sec. 3.1)."""
    inv_sqrt = lam.rsqrt()
    if method == "zca":
        return (vecs * inv_sqrt.unsqueeze(-2)) @ vecs.mT
    return inv_sqrt.unsqueeze(-1) * vecs.mT


def newton_schulz_whitening(cov: Tensor, iterations: int = 5) -> Tensor:
    """Approximate ZCA ``Σ^{-1/2}`` by IterNorm's Newton–Schulz iteration (Huang et al. 2019).

    ``Σ_N = Σ / tr Σ``, ``P_0 = I``, ``P_k = ½(3 P_{k−1} − P_{k−1}³ Σ_N)``, ``W = P_T / √tr Σ``;
    converges quadratically to ``Σ^{-1/2}`` (slowly at first for small eigenvalues of ``Σ_N``).
    This uncoupled iteration amplifies round-off once converged, so keep ``T`` small (IterNorm uses
    5); tens of steps can diverge in floating point. Differentiable by autograd; batched.
    """
    check_positive_int(iterations, "iterations")
    trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    cov_n = cov / trace
    p = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(cov)
    for _ in range(iterations):
        p = 0.5 * (3.0 * p - torch.linalg.matrix_power(p, 3) @ cov_n)
    return p / trace.sqrt()


def whitening_matrix(
    cov: Tensor, method: str = "zca", *, eps: float = 0.0, iterations: int = 5
) -> Tensor:
    """Whitening matrix ``W`` of ``cov + eps·I`` (batched over leading dims), so ``W Σ Wᵀ = I``.

    ``method``: ``"zca"`` (DBN Eq. 4), ``"pca"`` (Sec. 3.1, sorted and sign-fixed eigenvectors) or
    ``"newton"`` (IterNorm's approximation, ``iterations`` steps). Differentiable by autograd.
    """
    _check_choice(method, "method", WHITENING_METHODS)
    if cov.dim() < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"cov must be a (..., g, g) matrix, got shape {tuple(cov.shape)}")
    if method == "newton":
        if eps:
            cov = cov + eps * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        return newton_schulz_whitening(cov, iterations)
    return _whitening_from_factors(*_eigen_factors(cov, method, eps), method)


# --- grouped layout -------------------------------------------------------------------------------
#
# The paper's per-group data matrix X ∈ R^{g×m} (Sec. 3.3: every sample and spatial position is a
# column) is held as a (R, G, g, L) tensor whose columns are spread over R·L with m = R·L:
# * per-sample layout, R = N, L = H·W: a free view of the N×C×H×W input (no copy); used when the
#   spatial size is large enough for the per-sample g×g×L products to run at BLAS speed;
# * grouped layout, R = 1, L = N·H·W: one permuting copy; used for N×C inputs and small maps.
# Statistics sum over R and L; the output and the input gradient go back to N×C×S. On the CPU every
# fresh activation-sized buffer costs page faults, so the per-sample layout (and in-place
# accumulation in the backward) matters as much as the flop count.

PER_SAMPLE_MIN_SPATIAL = 32


def _per_sample(spatial: int) -> bool:
    """Use the copy-free per-sample layout (large maps) rather than the grouped copy?"""
    return spatial >= PER_SAMPLE_MIN_SPATIAL


def _grouped(x: Tensor, num_groups: int, group_size: int, per_sample: bool) -> Tensor:
    """(N, G·g, S) -> (R, G, g, L): a view (per-sample layout) or a permuted copy (R = 1)."""
    n, _, s = x.shape
    view = x.reshape(n, num_groups, group_size, s)
    if per_sample:
        return view
    return view.permute(1, 2, 0, 3).reshape(1, num_groups, group_size, n * s)


def _ungrouped(t: Tensor, batch: int, spatial: int, per_sample: bool) -> Tensor:
    """(R, G, g, L) -> (N, G·g, S), the inverse of :func:`_grouped`."""
    _, num_groups, group_size, _ = t.shape
    channels = num_groups * group_size
    if per_sample:
        return t.reshape(batch, channels, spatial)
    grouped = t.reshape(num_groups, group_size, batch, spatial).permute(2, 0, 1, 3)
    return grouped.reshape(batch, channels, spatial)


def _centered(
    x: Tensor, num_groups: int, group_size: int, per_sample: bool
) -> tuple[Tensor, Tensor]:
    """Centred data ``Xc`` as (R, G, g, L) and the group means μ as (G, g) (DBN Eq. A.1)."""
    n, _, s = x.shape
    view = x.reshape(n, num_groups, group_size, s)
    mean = view.mean(dim=(0, 3))
    if per_sample:
        return view - mean.unsqueeze(-1), mean
    grouped = view.permute(1, 2, 0, 3)
    shape = (1, num_groups, group_size, n * s)
    if x.requires_grad and torch.is_grad_enabled():
        return (grouped - mean[..., None, None]).reshape(shape), mean
    # No autograd: centre and regroup in one pass into a fresh buffer (never aliases the input).
    xc = torch.empty((num_groups, group_size, n, s), dtype=x.dtype, device=x.device)
    torch.sub(grouped, mean[..., None, None], out=xc)
    return xc.view(shape), mean


# The one-pass covariance (1/m)Σxxᵀ − μμᵀ loses about log10(1 + μ²/σ²) digits to cancellation;
# it is used only while every channel has μ² <= CANCELLATION_LIMIT·σ² (at most ~1.2 digits lost),
# else the data are centred first. It spares an activation-sized centred copy.
CANCELLATION_LIMIT = 16.0


def _batch_moments(
    x: Tensor, num_groups: int, group_size: int, per_sample: bool
) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Grouped data, mean μ (G, g) and biased covariance (G, g, g) of a batch (Eq. A.1–A.2).

    Returns ``(data, mean, cov, centred)``: in the per-sample layout ``data`` is a view of ``x``
    (not centred) when the one-pass covariance is safe (see CANCELLATION_LIMIT), otherwise the
    centred copy ``Xc``. Raises ``ValueError`` for non-finite statistics (NaN/Inf input). For use
    without autograd (the analytic Function).
    """
    m = x.shape[0] * x.shape[2]
    if per_sample:
        data = x.reshape(x.shape[0], num_groups, group_size, x.shape[2])
        mean = data.mean(dim=(0, 3))
        cov = _gram(data, data).div_(m).sub_(mean.unsqueeze(-1) * mean.unsqueeze(-2))
        variance = cov.diagonal(dim1=-2, dim2=-1)
        # False for NaN/Inf too; finite variances bound the whole covariance (Cauchy–Schwarz).
        safe = (mean.square() <= CANCELLATION_LIMIT * variance) & (variance < float("inf"))
        if bool(safe.all()):
            return data, mean, cov, False
    data, mean = _centered(x, num_groups, group_size, per_sample)
    cov = _gram(data, data).div_(m)
    _check_finite(cov, "DecorrelatedBatchNorm")
    return data, mean, cov, True


def _flat_batch(mat: Tensor, data: Tensor) -> tuple[Tensor, Tensor]:
    """(G, g, g) matrices repeated over R and (R, G, g, L) data, both as bmm batches of R·G."""
    r, num_groups, group_size, length = data.shape
    batched = mat.expand(r, num_groups, group_size, group_size).reshape(-1, group_size, group_size)
    return batched, data.reshape(r * num_groups, group_size, length)


def _apply(mat: Tensor, data: Tensor, shift: Tensor | None = None) -> Tensor:
    """``mat @ data (+ shift)`` per group: (G, g, g) on (R, G, g, L), shift (G, g, 1). Autograd-safe."""
    if data.shape[-2] == 1:  # 1×1 blocks: a broadcast multiply (BLAS is slow on 1×1 products)
        return data * mat if shift is None else torch.addcmul(shift, data, mat)
    batched, flat = _flat_batch(mat, data)
    if shift is not None:
        shift = shift.expand(data.shape[0], *shift.shape).reshape(-1, shift.shape[-2], 1)
    if torch.is_grad_enabled():
        result = torch.bmm(batched, flat) if shift is None else torch.baddbmm(shift, batched, flat)
        return result.view(data.shape)
    # Without autograd (inside the custom Function) write into a tensor of the final shape, so that
    # the Function's output is not a view (autograd forbids in-place ops on such views).
    result = data.new_empty(data.shape)
    if shift is None:
        torch.bmm(batched, flat, out=result.view(flat.shape))
    else:
        torch.baddbmm(shift, batched, flat, out=result.view(flat.shape))
    return result


def _apply_accumulate_(out: Tensor, mat: Tensor, data: Tensor) -> Tensor:
    """``out += mat @ data`` in place (no autograd): saves a buffer in the backward."""
    if data.shape[-2] == 1:
        return out.addcmul_(data, mat)
    batched, flat = _flat_batch(mat, data)
    out.view(flat.shape[0], flat.shape[1], -1).baddbmm_(batched, flat)
    return out


def _gram(a: Tensor, b: Tensor) -> Tensor:
    """``Σ_columns a bᵀ`` per group: (R, G, g, L) × (R, G, g, L) -> (G, g, g), no big temporary."""
    return (a @ b.mT).sum(dim=0)


# --- analytic backward (DBN Algorithm 2 / Eq. A.14) -----------------------------------------------


def _s_minus_m(fc: Tensor, lam: Tensor, method: str) -> Tensor:
    """``S − M`` of DBN Eq. A.14 for ZCA or PCA, batched, finite at repeated eigenvalues.

    With ``F = F_c``, ``F_s = (F + Fᵀ)/2`` and ``F_a = (Fᵀ − F)/2``, the paper's
    ``S = 2(Kᵀ ⊙ (ΛFᵀ + Λ^{1/2} F Λ^{1/2}))_sym`` and ``M = F_diag`` give entrywise

    * ZCA: ``(S − M)_ij = −(√λi F_ji + √λj F_ij)/(√λi + √λj) = −F_s,ij − (√λi − √λj)/(√λi + √λj)
      F_a,ij``. The numerator of ``K_ji(A_ij − A_ji)`` carries the factor ``√λi − √λj``, which
      cancels the gap ``λi − λj = (√λi − √λj)(√λi + √λj)``; the result also holds on the diagonal
      (``−F_ii = −M_ii``). It is the Daleckii–Krein limit ``(λi^{-½} − λj^{-½})/(λi − λj) →
      −½ λ^{-3/2}`` of the spectral function ``Σ^{-1/2}``, which is smooth at repeated eigenvalues:
      the formula is exact there (and for rank-deficient batches, whose null space shares the
      eigenvalue ``eps``), with no division by a gap at all.
    * PCA: no back-rotation, so the ``Λ^{1/2} F Λ^{1/2}`` term is absent and ``(S − M)_ij =
      (λi F_ji − λj F_ij)/(λj − λi) = −F_s,ij + (λi + λj) K_ji F_a,ij``. The second term is the
      gradient along a rotation inside the eigenspace of a repeated eigenvalue, where PCA whitening
      is genuinely not differentiable (its basis, hence its output, is arbitrary there). It is
      dropped for degenerate pairs by :func:`eigengap_matrix`'s zero ``K_ij``; the finite part
      ``−F_s`` is kept.
    """
    fs = 0.5 * (fc + fc.mT)
    fa = 0.5 * (fc.mT - fc)
    if method == "zca":
        root = lam.sqrt()
        ratio = (root.unsqueeze(-2) - root.unsqueeze(-1)) / (
            root.unsqueeze(-2) + root.unsqueeze(-1)
        )
        return ratio * fa - fs
    k_t = eigengap_matrix(lam).mT
    return (lam.unsqueeze(-1) + lam.unsqueeze(-2)) * k_t * fa - fs


class _EigenWhiteningFunction(torch.autograd.Function):
    """DBN Algorithm 1 (+ DBN-scale affine) for all groups at once; backward Algorithm 2 / Eq. 6.

    Input ``x`` is (N, G·g, S); ``gamma``/``beta`` are (G, g) or None. The affine step is folded
    into the whitening matmul (``diag(γ) W``) and its gradients come from the same g×g products
    as Eq. A.14 (``dγ = diag(G_out Yᵀ)``, ``dβ = G_out 1``), so it costs no extra pass over the data.
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, num_groups, group_size, eps, method, per_sample):  # noqa: D102
        batch, _, spatial = x.shape
        data, mean, cov, centred = _batch_moments(x, num_groups, group_size, per_sample)
        lam, vecs = _eigen_factors(cov, method, eps)
        weight = _whitening_from_factors(lam, vecs, method)
        shift = None if centred else mean  # W(x − μ) = W x − W μ when data is not centred
        out = _affine_whiten(data, weight, gamma, beta, shift)
        ctx.save_for_backward(data, lam, vecs, weight, gamma, shift)
        ctx.method, ctx.batch, ctx.spatial, ctx.per_sample = method, batch, spatial, per_sample
        ctx.mark_non_differentiable(mean, cov, weight)
        ctx.set_materialize_grads(False)  # no zero gradients for the three statistics
        # The output stays in the (R, G, g, L) layout: regrouping it here would return a view
        # created inside the Function, on which autograd forbids in-place ops (e.g. ReLU(inplace)).
        return out, mean, cov, weight

    @staticmethod
    def backward(ctx, grad_out, _grad_mean, _grad_cov, _grad_weight):  # noqa: D102
        if grad_out is None:  # the whitened output was not used
            return (None,) * 8
        data, lam, vecs, weight, gamma, mean = ctx.saved_tensors  # mean: None if data is centred
        m = ctx.batch * ctx.spatial
        with torch.autocast(device_type=data.device.type, enabled=False):
            go = grad_out.to(data.dtype)  # (R, G, g, L), like the output
            go_mean = go.sum(dim=(0, 3)).div_(m).unsqueeze(-1)  # f of Eq. A.14, output basis
            cx = _gram(go, data).div_(m)  # (1/m) G_out Xcᵀ: the only g×m×g product
            if mean is not None:
                cx.sub_(go_mean * mean.unsqueeze(-2))
            need_gamma, need_beta = ctx.needs_input_grad[1:3]
            grad_gamma = (cx * weight).sum(-1).mul_(m) if need_gamma else None  # diag(G_out Yᵀ)
            grad_beta = go_mean.squeeze(-1) * m if need_beta else None
            if not ctx.needs_input_grad[0]:  # e.g. the network's input: only γ, β need grads
                return None, grad_gamma, grad_beta, None, None, None, None, None
            if gamma is not None:
                cx = gamma.unsqueeze(-1) * cx  # G_Y = diag(γ) G_out
            inv_sqrt = lam.rsqrt()
            # F_c = (1/m) G_X̃ X̃ᵀ with X̃ = Λ^{-1/2} Dᵀ Xc; ZCA's G_X̃ = Dᵀ G_Y (Eq. A.7).
            fc = torch.bmm(cx, vecs).mul_(inv_sqrt.unsqueeze(-2))
            if ctx.method == "zca":
                fc = torch.bmm(vecs.mT, fc)
            # dL/dX = D Λ^{-1/2}(G_X̃ − f1ᵀ + (S − M) X̃)   (Eq. A.14)
            #       = Wᵀ(G_Y − f_Y 1ᵀ) + T Xc,  T = D Λ^{-1/2} (S − M) Λ^{-1/2} Dᵀ.
            core = _s_minus_m(fc, lam, ctx.method).mul_(
                inv_sqrt.unsqueeze(-1) * inv_sqrt.unsqueeze(-2)
            )
            t = torch.bmm(torch.bmm(vecs, core), vecs.mT)
            w_t = weight.mT if gamma is None else weight.mT * gamma.unsqueeze(-2)  # Wᵀ diag(γ)
            shift = torch.bmm(w_t, go_mean).neg_()
            if mean is not None:
                shift.sub_(torch.bmm(t, mean.unsqueeze(-1)))
            dx = _apply_accumulate_(_apply(w_t, go, shift), t, data)
        dx = _ungrouped(dx, ctx.batch, ctx.spatial, ctx.per_sample)
        return dx, grad_gamma, grad_beta, None, None, None, None, None


def _whiten_analytic(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    num_groups: int,
    group_size: int,
    eps: float,
    method: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Whiten (N, G·g, S) with :class:`_EigenWhiteningFunction`; returns (y, μ, Σ, W)."""
    per_sample = _per_sample(x.shape[2])
    out, mean, cov, weight = _EigenWhiteningFunction.apply(
        x, gamma, beta, num_groups, group_size, eps, method, per_sample
    )
    return _ungrouped(out, x.shape[0], x.shape[2], per_sample), mean, cov, weight


def _affine_whiten(
    data: Tensor,
    weight: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    mean: Tensor | None = None,
) -> Tensor:
    """``diag(γ) W (X − μ) + β`` per group in one batched matmul (Eq. 3 + DBN-scale).

    ``mean=None`` means ``data`` is already centred; otherwise ``μ`` enters only through the
    per-row shift ``β − diag(γ) W μ``, so no centred copy of the data is made.
    """
    if gamma is not None:
        weight = gamma.unsqueeze(-1) * weight
    shift = None if mean is None else -(weight @ mean.unsqueeze(-1))
    if beta is not None:
        shift = beta.unsqueeze(-1) if shift is None else shift + beta.unsqueeze(-1)
    return _apply(weight, data, shift)


def _whiten_autograd(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    num_groups: int,
    group_size: int,
    eps: float,
    method: str,
    iterations: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Same outputs as :class:`_EigenWhiteningFunction`, differentiated by autograd."""
    batch, _, spatial = x.shape
    per_sample = _per_sample(spatial)
    xc, mean = _centered(x, num_groups, group_size, per_sample)
    cov = _gram(xc, xc) / (batch * spatial)
    _check_finite(cov.detach(), "DecorrelatedBatchNorm")
    weight = whitening_matrix(cov, method, eps=eps, iterations=iterations)
    out = _ungrouped(_affine_whiten(xc, weight, gamma, beta), batch, spatial, per_sample)
    return out, mean.detach(), cov.detach(), weight.detach()


# --- the layer ------------------------------------------------------------------------------------


class _Chunk(NamedTuple):
    """A run of equal-size groups: channels ``[start, start + num_groups·size)``, groups from ``first_group``."""

    start: int
    num_groups: int
    size: int
    first_group: int

    @property
    def stop(self) -> int:
        return self.start + self.num_groups * self.size


def _group_chunks(num_features: int, group_size: int) -> tuple[_Chunk, ...]:
    """Full groups of ``group_size`` contiguous channels, then the remainder group if any (DBN-S34)."""
    full, rest = divmod(num_features, group_size)
    chunks = [_Chunk(0, full, group_size, 0)] if full else []
    if rest:
        chunks.append(_Chunk(full * group_size, 1, rest, full))
    return tuple(chunks)


class DecorrelatedBatchNorm(nn.Module):
    """Decorrelated Batch Normalization (Huang et al. 2018; PAPERS.md DBN-EQ3, DBN-EQ5, DBN-S34).

    Per group of ``group_size`` contiguous channels, ``y = W(x − μ)`` whitens over ``m = N·L`` or
    ``N·H·W`` samples (Eq. 3–4, Algorithm 1), then ``γ ⊙ y + β`` per channel (DBN-scale). ``W`` is
    ZCA (default), PCA or Newton–Schulz (``whitening``); ``group_size=None`` or ``>= num_features``
    whitens all channels together, ``group_size=1`` is BatchNorm's standardization.

    ``backward="analytic"`` uses Algorithm 2 / Eq. A.14 (exact for ZCA even at repeated
    eigenvalues; PCA drops the undefined in-eigenspace rotation term there), ``"autograd"``
    differentiates through ``torch.linalg.eigh`` (or through the Newton iteration, which requires
    it). Statistics are computed in float32 (float64 for float64 input) with autocast disabled; the
    output has the input's dtype.

    Running statistics (eval mode) are EMAs with ``momentum`` (``None``: cumulative average, as in
    ``torch.nn.BatchNorm``) of the mean and either of ``W`` itself (``running="whitening"``,
    Algorithm 1 lines 10–11) or of the covariance (``running="covariance"``; ``W`` is recomputed
    from it at eval). The batch ``Σ`` is biased (1/m, Eq. 3); ``running_covariance`` stores the
    unbiased ``m/(m − 1)`` estimate like ``BatchNorm``'s ``running_var``, so ``group_size=1`` with
    ``running="covariance"`` reproduces ``BatchNorm`` in eval mode too. ``running_whitening`` is the
    EMA of the biased batch ``W``, as in the paper.
    """

    def __init__(
        self,
        num_features: int,
        group_size: int | None = 16,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        whitening: str = "zca",
        backward: str = "analytic",
        running: str = "whitening",
        iterations: int = 5,
    ) -> None:
        super().__init__()
        check_positive_int(num_features, "num_features")
        if group_size is not None:
            check_positive_int(group_size, "group_size")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)):
            raise TypeError(f"eps must be a float, got {type(eps).__name__}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if momentum is not None:
            check_probability(momentum, "momentum", closed_right=True)
        _check_choice(whitening, "whitening", WHITENING_METHODS)
        _check_choice(backward, "backward", BACKWARD_MODES)
        _check_choice(running, "running", RUNNING_MODES)
        if whitening == "newton" and backward == "analytic":
            raise ValueError(
                "backward='analytic' needs an eigendecomposition (whitening 'zca' or 'pca');"
                " whitening='newton' is differentiated by autograd: pass backward='autograd'"
            )
        check_positive_int(iterations, "iterations")
        self.num_features = num_features
        self.group_size = num_features if group_size is None else min(group_size, num_features)
        self.num_groups = -(-num_features // self.group_size)
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.whitening = whitening
        self.backward = backward
        self.running = running
        self.iterations = iterations
        self._chunks = _group_chunks(num_features, self.group_size)
        if self.affine:
            self.weight = nn.Parameter(torch.empty(num_features))
            self.bias = nn.Parameter(torch.empty(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        matrices = torch.empty(self.num_groups, self.group_size, self.group_size)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer(f"running_{running}", matrices)
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.reset_parameters()

    @property
    def _running_matrices(self) -> Tensor:
        return getattr(self, f"running_{self.running}")

    def reset_running_stats(self) -> None:
        """μ_E = 0 and Σ_E^{-1/2} (or Σ_E) = I, as initialised in DBN Sec. 3.3."""
        self.running_mean.zero_()
        eye = torch.eye(self.group_size, dtype=self.running_mean.dtype)
        self._running_matrices.copy_(eye.expand_as(self._running_matrices))
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Reset the running statistics and set γ = 1, β = 0 (DBN-scale's initialisation)."""
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        text = (
            f"{self.num_features}, group_size={self.group_size}, eps={self.eps}, "
            f"momentum={self.momentum}, affine={self.affine}, whitening={self.whitening!r}, "
            f"backward={self.backward!r}, running={self.running!r}"
        )
        return text + (f", iterations={self.iterations}" if self.whitening == "newton" else "")

    def forward(self, x: Tensor) -> Tensor:
        """Whiten ``x`` (N×C, N×C×L or N×C×H×W) per channel group; see the class docstring."""
        name = type(self).__name__
        check_features_input(x, self.num_features, name, training=self.training, finite=False)
        work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=x.device.type, enabled=False):
            x3 = x.to(work_dtype).reshape(x.shape[0], self.num_features, -1)
            if not self.training:  # training checks the batch covariance instead (no extra pass)
                _check_finite(x3.sum(), name)
            whiten = self._whiten_batch if self.training else self._whiten_running
            parts = [whiten(x3, chunk) for chunk in self._chunks]
            y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return y.reshape(x.shape).to(x.dtype)

    def _affine_of(self, chunk: _Chunk, dtype: torch.dtype) -> tuple[Tensor | None, Tensor | None]:
        """γ and β of the chunk's channels as (G, g), or (None, None) without affine."""
        if not self.affine:
            return None, None
        shape = (chunk.num_groups, chunk.size)
        return tuple(
            self._channels(p, chunk).to(dtype).view(shape) for p in (self.weight, self.bias)
        )

    def _channels(self, t: Tensor, chunk: _Chunk, dim: int = 0) -> Tensor:
        """The chunk's channels of ``t`` along ``dim`` (``t`` itself when the chunk is all)."""
        if chunk.start == 0 and chunk.stop == self.num_features:
            return t
        return t.narrow(dim, chunk.start, chunk.stop - chunk.start)

    def _whiten_batch(self, x: Tensor, chunk: _Chunk) -> Tensor:
        """Whiten the chunk with batch statistics and update the running ones (Algorithm 1)."""
        xs = self._channels(x, chunk, dim=1)
        args = (*self._affine_of(chunk, x.dtype), chunk.num_groups, chunk.size, self.eps)
        if self.backward == "analytic":
            y, mean, cov, weight = _whiten_analytic(xs, *args, self.whitening)
        else:
            y, mean, cov, weight = _whiten_autograd(xs, *args, self.whitening, self.iterations)
        m = x.shape[0] * x.shape[2]
        with torch.no_grad():
            if chunk.start == 0:
                self.num_batches_tracked.add_(1)
            factor = (
                1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            )
            self._channels(self.running_mean, chunk).lerp_(
                mean.reshape(-1).to(self.running_mean.dtype), factor
            )
            new = weight if self.running == "whitening" else cov * (m / (m - 1))
            self._matrices_of(chunk).lerp_(new.to(self.running_mean.dtype), factor)
        return y

    def _whiten_running(self, x: Tensor, chunk: _Chunk) -> Tensor:
        """Whiten the chunk with the running mean and ``W`` (or covariance): inference."""
        weight = self._matrices_of(chunk).to(x.dtype)
        if self.running == "covariance":
            weight = whitening_matrix(
                weight, self.whitening, eps=self.eps, iterations=self.iterations
            )
        mean = self._channels(self.running_mean, chunk).to(x.dtype)
        per_sample = _per_sample(x.shape[2])
        xg = _grouped(self._channels(x, chunk, dim=1), chunk.num_groups, chunk.size, per_sample)
        # W(x − μ) + β as W x + (β − W μ), no centring pass: what torch's BatchNorm does in eval.
        out = _affine_whiten(
            xg, weight, *self._affine_of(chunk, x.dtype), mean.view(chunk.num_groups, -1)
        )
        return _ungrouped(out, x.shape[0], x.shape[2], per_sample)

    def _matrices_of(self, chunk: _Chunk) -> Tensor:
        """The chunk's slice of the stacked (G, g, g) running buffer (top-left block if smaller)."""
        groups = slice(chunk.first_group, chunk.first_group + chunk.num_groups)
        return self._running_matrices[groups, : chunk.size, : chunk.size]


@register_norm_layer("dbn")
def _build_dbn(num_features: int, *, spatial_dims: int = 2, **kwargs) -> DecorrelatedBatchNorm:
    """DBN for any input rank (``spatial_dims`` is not needed); ``kwargs`` go to the class."""
    return DecorrelatedBatchNorm(num_features, **kwargs)
