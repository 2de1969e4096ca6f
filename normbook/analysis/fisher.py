"""Condition number of the (relative) Fisher information matrix of one layer's weights (DBN-F3).

DBN Fig. 3 plots "the condition number of the relative FIM with respect to the last layer" over
training (Huang et al. 2018, Sec. 4.1, citing Sun & Nielsen's relative Fisher information). Our
reading, which the authors' released Lua code (``Linear_Validation``) also computes: the relative
FIM of a linear layer ``z = W h`` treats the layer's input ``h`` as given (whatever the layers below
did to it, BatchNorm or whitening included) and is the second moment of the per-sample gradients
of the loss with respect to ``W`` only (no bias):

    F = (1/N) Σ_i vec(δ_i h_iᵀ) vec(δ_i h_iᵀ)ᵀ = (1/N) Σ_i (δ_i δ_iᵀ) ⊗ (h_i h_iᵀ),
    δ_i = ∂ℓ/∂z_i (ℓ the summed negative log-likelihood over the batch).

``labels="empirical"`` uses the data's labels (the released code, the "empirical Fisher");
``labels="model"`` takes the expectation over y ~ p(y | x) of the network, the true Fisher of
Sun & Nielsen, for which E_y[δδᵀ] = diag(p) − ppᵀ under softmax cross-entropy.

Zero eigenvalues. Softmax is invariant to adding the same number to every logit, so every δ_i
sums to 0 over classes and F has the d-dimensional null space {1 ⊗ v}; with fewer samples than
parameters it has at least P − N more. A zero eigenvalue makes λ_max/λ_min infinite and says
nothing about conditioning, so the condition number here is over the non-zero spectrum: an
eigenvalue counts as zero when it is ``<= rtol · λ_max`` with ``rtol = max(N, P) · ε_float64`` by
default (NumPy's ``matrix_rank`` rule; F is formed and diagonalized in float64). The number of
zero eigenvalues is reported beside it (:attr:`FisherSpectrum.num_zero`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from normbook.analysis._checks import check_finite, check_tensor

LABELS: tuple[str, ...] = ("empirical", "model")
LossFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class FisherSpectrum:
    """Eigenvalues of a Fisher matrix (float64, non-increasing, all P of them) and the zero rule."""

    eigenvalues: torch.Tensor
    threshold: float
    num_samples: int

    @property
    def size(self) -> int:
        """P, the number of parameters (the matrix is P×P)."""
        return int(self.eigenvalues.numel())

    @property
    def nonzero(self) -> torch.Tensor:
        """The eigenvalues above :attr:`threshold`, non-increasing."""
        return self.eigenvalues[self.eigenvalues > self.threshold]

    @property
    def rank(self) -> int:
        """Number of non-zero eigenvalues."""
        return int(self.nonzero.numel())

    @property
    def num_zero(self) -> int:
        """Number of eigenvalues counted as zero (``<= threshold``)."""
        return self.size - self.rank

    @property
    def condition_number(self) -> float:
        """λ_max / smallest non-zero λ (1 for a multiple of a projection; NaN if F = 0)."""
        nonzero = self.nonzero
        if nonzero.numel() == 0:
            return math.nan
        return float(nonzero[0] / nonzero[-1])

    def percentile_condition_number(self, q: float = 0.9) -> float:
        """λ_max / the eigenvalue at fraction ``q`` of the non-zero spectrum (non-increasing order).

        The released DBN code also prints a "90 %" condition number (λ_1 / λ_⌊0.9·P⌋); this one
        ignores the zero eigenvalues, so it is finite.
        """
        if not 0 < q <= 1:
            raise ValueError(f"q must lie in (0, 1], got {q!r}")
        nonzero = self.nonzero
        if nonzero.numel() == 0:
            return math.nan
        index = max(math.ceil(q * nonzero.numel()) - 1, 0)
        return float(nonzero[0] / nonzero[index])


def fisher_matrix(per_sample_grads: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
    """F = (1/N) Σ_rows g gᵀ (P×P, float64) from per-sample gradient rows ``g`` (R×P).

    ``num_samples`` N defaults to the number of rows R (one row per sample); the ``model``
    Fisher passes one row per (sample, class) already weighted by √p, and N samples.
    """
    grads = _grads(per_sample_grads)
    count = grads.shape[0] if num_samples is None else int(num_samples)
    return grads.T @ grads / count


def _grads(per_sample_grads: torch.Tensor) -> torch.Tensor:
    check_tensor(per_sample_grads, "per_sample_grads", min_dim=2)
    if per_sample_grads.dim() != 2 or per_sample_grads.shape[0] == 0:
        raise ValueError(
            f"per_sample_grads must be a non-empty R×P matrix, got {tuple(per_sample_grads.shape)}"
        )
    grads = per_sample_grads.detach().to(torch.float64)
    check_finite(grads, "per_sample_grads")
    return grads


def fisher_spectrum(
    per_sample_grads: torch.Tensor, num_samples: int | None = None, rtol: float | None = None
) -> FisherSpectrum:
    """Eigenvalues of :func:`fisher_matrix` without forming it when R < P.

    The non-zero eigenvalues of GᵀG/N and GGᵀ/N coincide, so the smaller Gram matrix is
    diagonalized (``eigvalsh``, float64) and the rest of the P eigenvalues are zeros. Eigenvalues
    ``<= rtol · λ_max`` count as zero; ``rtol`` defaults to ``max(R, P) · ε_float64``.
    """
    grads = _grads(per_sample_grads)
    rows, size = grads.shape
    count = rows if num_samples is None else int(num_samples)
    if count < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples!r}")
    gram = grads @ grads.T if rows < size else grads.T @ grads
    values = torch.linalg.eigvalsh(gram / count).flip(0).clamp_min(0.0)
    if values.numel() < size:
        values = torch.cat([values, values.new_zeros(size - values.numel())])
    if rtol is None:
        rtol = max(rows, size) * torch.finfo(torch.float64).eps
    elif isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or rtol < 0:
        raise ValueError(f"rtol must be a float >= 0, got {rtol!r}")
    threshold = float(rtol) * float(values[0])
    return FisherSpectrum(values, threshold, count)


def linear_per_sample_gradients(
    inputs: torch.Tensor, output_grads: torch.Tensor, bias: bool = False
) -> torch.Tensor:
    """Rows vec(δ_i h_iᵀ) (and δ_i when ``bias``) of a linear layer, N×(k·d [+ k]), float64.

    ``inputs`` h (N×d) and ``output_grads`` δ = ∂ℓ/∂z (N×k): the gradient of ``z = W h`` with
    respect to ``W`` (k×d, row-major like ``nn.Linear.weight``) for each sample.
    """
    check_tensor(inputs, "inputs", min_dim=2)
    check_tensor(output_grads, "output_grads", min_dim=2)
    if inputs.dim() != 2 or output_grads.dim() != 2 or inputs.shape[0] != output_grads.shape[0]:
        raise ValueError(
            "inputs (N×d) and output_grads (N×k) must be matrices with the same N, got"
            f" {tuple(inputs.shape)} and {tuple(output_grads.shape)}"
        )
    h, delta = inputs.detach().to(torch.float64), output_grads.detach().to(torch.float64)
    rows = torch.einsum("nk,nd->nkd", delta, h).reshape(h.shape[0], -1)
    return torch.cat([rows, delta], dim=1) if bias else rows


def last_linear(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of ``model`` in module order (the classifier of an MLP)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer")
    return linears[-1]


def _layer_io(
    model: nn.Module, layer: nn.Module, inputs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward ``inputs`` with grad enabled; return (layer input, layer output, model output)."""
    captured: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if "z" in captured:
            raise ValueError("the layer is called more than once in a forward pass")
        captured["h"], captured["z"] = args[0], output

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            output = model(inputs)
    finally:
        handle.remove()
    if "z" not in captured:
        raise ValueError("the layer was not called in the model's forward pass")
    return captured["h"], captured["z"], output


def relative_fisher(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    layer: nn.Linear | None = None,
    *,
    labels: str = "empirical",
    loss_fn: LossFn = F.cross_entropy,
    bias: bool = False,
    rtol: float | None = None,
) -> FisherSpectrum:
    """Spectrum of the relative FIM of ``layer``'s weights (default: the last ``nn.Linear``), DBN-F3.

    One forward pass of the whole batch in the model's current mode (train mode: BatchNorm and
    DBN use the batch's statistics, as in the paper's full-batch training), ``h`` captured at the
    layer; δ = ∂(Σ_i ℓ_i)/∂z from the loss evaluated in float64 (so the softmax null space is
    exact), then the outer-product form of :func:`linear_per_sample_gradients`. Parameters'
    ``.grad`` are not touched. ``labels="model"`` (true Fisher) needs a classifier output and a
    cross-entropy ``loss_fn``; it weights the gradient for each class c by √p_c.

    Running statistics of normalization layers are updated by the forward pass in train mode;
    call ``model.eval()`` to measure with running statistics instead.
    """
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)}; got {labels!r}")
    layer = last_linear(model) if layer is None else layer
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
    h, z, output = _layer_io(model, layer, inputs)
    if h.dim() != 2:
        raise ValueError(f"the layer's input must be N×d, got {tuple(h.shape)}")
    logits = output.to(torch.float64)
    if labels == "empirical":
        loss = loss_fn(logits, targets, reduction="sum")
        (delta,) = torch.autograd.grad(loss, z)
        rows = linear_per_sample_gradients(h, delta, bias=bias)
    else:
        if logits.dim() != 2:
            raise ValueError(f"labels='model' needs N×C logits, got {tuple(logits.shape)}")
        probs = logits.detach().softmax(dim=1)
        blocks = []
        classes = logits.shape[1]
        for c in range(classes):
            target = torch.full((logits.shape[0],), c, dtype=torch.long, device=logits.device)
            weights = probs[:, c].sqrt()
            loss = (weights * loss_fn(logits, target, reduction="none")).sum()
            (delta,) = torch.autograd.grad(loss, z, retain_graph=c < classes - 1)
            blocks.append(linear_per_sample_gradients(h, delta, bias=bias))
        rows = torch.cat(blocks, dim=0)
    return fisher_spectrum(rows, num_samples=h.shape[0], rtol=rtol)


def per_sample_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    params: Sequence[str] | None = None,
    loss_fn: LossFn = F.cross_entropy,
) -> torch.Tensor:
    """N×P matrix of per-sample gradients of ``loss_fn`` w.r.t. the named parameters (float64).

    ``torch.func.vmap`` over ``torch.func.grad`` of a one-sample ``functional_call``: any layer
    type, but samples must not interact, so the model must have no batch statistics in use (call
    ``model.eval()`` for BatchNorm). ``params`` defaults to every parameter; columns follow their
    order, each flattened row-major.
    """
    from torch.func import functional_call, grad, vmap

    named = dict(model.named_parameters())
    names = list(named) if params is None else list(params)
    unknown = [n for n in names if n not in named]
    if unknown:
        raise ValueError(f"unknown parameter name(s) {unknown}; the model has {list(named)}")
    chosen = {n: named[n].detach() for n in names}
    frozen = {n: p.detach() for n, p in named.items() if n not in chosen}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def sample_loss(theta: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (theta, frozen, buffers), (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))(chosen, inputs, targets)
    return torch.cat([grads[n].reshape(inputs.shape[0], -1) for n in names], dim=1).to(
        torch.float64
    )
