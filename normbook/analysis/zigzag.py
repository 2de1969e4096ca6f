"""Why a weight layer should not see non-negative inputs (Chen et al. 2019, Section 5, IC-S5).

For y = W x, the gradient of one sample's loss with respect to row w_j is ∂l/∂y_j · xᵀ: when x is
the output of a ReLU (x ≥ 0) every non-zero component has the sign of ∂l/∂y_j, so a per-sample
step moves all incoming weights of a neuron up together or down together. This module measures
that in networks and shows its consequence on a least-squares toy:

- :func:`per_sample_weight_gradients`, :func:`sign_coherence`, :func:`sign_agreement`: the
  per-sample gradient of each ``nn.Linear``/``nn.Conv2d`` weight row and how often its components
  share one sign (1 for a linear layer after a ReLU, by the identity above);
- :func:`orthant_fraction`, :func:`same_sign_rows`: the share 1/2^{n−1} of directions in the two
  hyperoctants (+,…,+), (−,…,−) that such steps can point into;
- :func:`relu_gaussian_second_moment`, :func:`least_squares_path`, :func:`closed_form_errors`,
  :func:`steps_to_tolerance`, :func:`turning_fraction`: the input second moment E[x xᵀ] (the
  Hessian of least squares; LeCun et al.'s argument for zero-mean inputs) and gradient-descent
  paths on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from normbook.analysis._checks import check_tensor

WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)


# -- hyperoctants ---------------------------------------------------------------------------------
def orthant_fraction(n: int) -> float:
    """Share of the directions of R^n in the hyperoctants (+,…,+) and (−,…,−): 2/2^n = 1/2^{n−1}."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    return 2.0 ** (1 - n)


def same_sign_rows(w: Any) -> np.ndarray:
    """Boolean per row of ``w`` (m×n): every entry > 0, or every entry < 0."""
    array = np.asarray(w.detach().cpu() if isinstance(w, torch.Tensor) else w, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"w must be a matrix (rows × n), got shape {array.shape}")
    return np.all(array > 0, axis=1) | np.all(array < 0, axis=1)


# -- least squares toy ----------------------------------------------------------------------------
def relu_gaussian_second_moment(n: int) -> np.ndarray:
    """E[x xᵀ] for x = ReLU(z), z ~ N(0, I_n): (1/2 − 1/(2π))·I + 1/(2π)·11ᵀ.

    Diagonal E[relu(z)²] = 1/2, off-diagonal E[relu(z_i)]E[relu(z_j)] = (1/√(2π))² = 1/(2π).
    Eigenvalues 1/2 − 1/(2π) + n/(2π) (along 1) and 1/2 − 1/(2π) (n − 1 times): condition
    number (π − 1 + n)/(π − 1), growing with the width n.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    return (0.5 - 0.5 / math.pi) * np.eye(n) + np.full((n, n), 0.5 / math.pi)


def condition_number(matrix: Any) -> float:
    """λ_max/λ_min of a symmetric positive definite matrix."""
    values = np.linalg.eigvalsh(np.asarray(matrix, dtype=np.float64))
    if values[0] <= 0:
        raise ValueError("matrix must be positive definite")
    return float(values[-1] / values[0])


def least_squares_path(
    inputs: Any,
    targets: Any,
    w0: Any,
    lr: float,
    steps: int,
    *,
    batch_size: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Iterates of (stochastic) gradient descent on L(w) = (1/2N) Σ_i (y_i − wᵀx_i)².

    ``batch_size=None``: full-batch gradient descent, w ← w − lr·(H w − b) with H = XᵀX/N. Else
    mini-batches of that size, reshuffled every pass (``seed``). Returns (steps + 1) × d, float64.
    """
    x = np.asarray(inputs, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64).reshape(-1)
    w = np.asarray(w0, dtype=np.float64).copy()
    if x.ndim != 2 or x.shape[0] != y.size or w.shape != (x.shape[1],):
        raise ValueError(f"inputs N×d, targets N, w0 d: got {x.shape}, {y.shape}, {w.shape}")
    rng = np.random.default_rng(seed)
    path = [w.copy()]
    order: list[int] = []
    for _ in range(int(steps)):
        if batch_size is None:
            rows = slice(None)
        else:
            if len(order) < batch_size:
                order += rng.permutation(x.shape[0]).tolist()
            rows, order = order[:batch_size], order[batch_size:]
        xb, yb = x[rows], y[rows]
        w = w - lr * xb.T @ (xb @ w - yb) / xb.shape[0]
        path.append(w.copy())
    return np.array(path)


def closed_form_errors(hessian: Any, e0: Any, lr: float, steps: int) -> np.ndarray:
    """‖e_t‖ for t = 0..steps of full-batch GD on a quadratic: e_t = Σ_k (1 − lr·λ_k)^t (v_kᵀe₀) v_k."""
    values, vectors = np.linalg.eigh(np.asarray(hessian, dtype=np.float64))
    coords = vectors.T @ np.asarray(e0, dtype=np.float64)
    t = np.arange(int(steps) + 1)[:, None]
    return np.sqrt(np.sum((coords * (1 - lr * values) ** t) ** 2, axis=1))


def steps_to_tolerance(path: Any, target: Any, tol: float) -> int | None:
    """First t with ‖w_t − target‖ ≤ tol (``None`` if the path never gets there)."""
    distance = np.linalg.norm(np.asarray(path) - np.asarray(target), axis=1)
    hits = np.nonzero(distance <= tol)[0]
    return int(hits[0]) if hits.size else None


def turning_fraction(path: Any) -> float:
    """Share of consecutive steps that turn by more than 90° (negative dot product): zig-zag."""
    steps = np.diff(np.asarray(path, dtype=np.float64), axis=0)
    steps = steps[np.linalg.norm(steps, axis=1) > 0]
    if len(steps) < 2:
        return 0.0
    return float(np.mean(np.sum(steps[1:] * steps[:-1], axis=1) < 0))


# -- per-sample gradients of weight layers ---------------------------------------------------------
def per_sample_weight_gradients(
    layer: nn.Module, inputs: torch.Tensor, output_grads: torch.Tensor
) -> torch.Tensor:
    """N × out × fan-in: each sample's gradient of the layer's weight (float64), bias excluded.

    Linear: δ_i x_iᵀ. Conv2d: Σ over output positions of δ_i(pos) ⊗ patch_i(pos) (the patches by
    ``F.unfold``; groups = 1). ``output_grads`` δ = ∂L/∂(layer output) of the summed loss.
    """
    check_tensor(inputs, "inputs", min_dim=2)
    check_tensor(output_grads, "output_grads", min_dim=2)
    x, delta = inputs.detach().to(torch.float64), output_grads.detach().to(torch.float64)
    if isinstance(layer, nn.Linear):
        return torch.einsum("no,ni->noi", delta, x.reshape(x.shape[0], -1))
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise ValueError("per_sample_weight_gradients: grouped convolutions are not supported")
        patches = F.unfold(
            x,
            layer.kernel_size,
            dilation=layer.dilation,
            padding=layer.padding,
            stride=layer.stride,
        )
        return torch.einsum("nol,nkl->nok", delta.flatten(2), patches)
    raise TypeError(f"layer must be nn.Linear or nn.Conv2d, got {type(layer).__name__}")


def sign_coherence(grads: torch.Tensor) -> dict[str, float]:
    """How often a weight row's per-sample gradient components share one sign (IC-S5).

    ``grads`` N × rows × fan-in. Per (sample, row) with at least two non-zero components:
    coherence |Σ_k sign g_k| / #{k: g_k ≠ 0} (1: one sign; about √(2/(π n)) for random signs) and
    whether it is exactly 1. Returns their means (``coherence``, ``same_sign``) and ``rows``
    counted.
    """
    signs = torch.sign(grads)
    nonzero = signs.abs().sum(dim=-1)
    valid = nonzero >= 2
    coherence = signs.sum(dim=-1).abs()[valid] / nonzero[valid]
    return {
        "coherence": float(coherence.mean()) if coherence.numel() else math.nan,
        "same_sign": float((coherence == 1).double().mean()) if coherence.numel() else math.nan,
        "rows": int(valid.sum()),
    }


def linear_sign_coherence(inputs: torch.Tensor, output_grads: torch.Tensor) -> dict[str, float]:
    """:func:`sign_coherence` of a linear layer's per-sample gradients δ_ij·x_iᵀ without forming
    them: sign(δ_ij x_ik) = sign(δ_ij)·sign(x_ik), so row j of sample i has coherence
    |Σ_k sign x_ik| / #{k: x_ik ≠ 0} whenever δ_ij ≠ 0 (the same for every row of the sample)."""
    x = inputs.detach().reshape(inputs.shape[0], -1).to(torch.float64)
    delta = output_grads.detach().to(torch.float64)
    signs = torch.sign(x)
    nonzero = signs.abs().sum(dim=1, keepdim=True)
    per_sample = signs.sum(dim=1, keepdim=True).abs() / nonzero.clamp_min(1)
    valid = (delta != 0) & (nonzero >= 2)
    coherence = per_sample.expand_as(delta)[valid]
    return {
        "coherence": float(coherence.mean()) if coherence.numel() else math.nan,
        "same_sign": float((coherence == 1).double().mean()) if coherence.numel() else math.nan,
        "rows": int(valid.sum()),
    }


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, module) of every ``nn.Linear`` and ``nn.Conv2d`` of ``model``, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def sign_agreement(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    layers: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Per weight layer: its input's sign statistics and the sign coherence of its per-sample
    weight gradients, from one forward/backward of the summed cross-entropy (model's mode).

    Rows: ``layer``, ``kind``, ``input_nonneg`` (fraction of input entries ≥ 0),
    ``input_mean_to_std`` (mean over input channels of |mean|/std), ``coherence``, ``same_sign``.
    ``.grad`` of the parameters is not touched.
    """
    chosen = weight_layers(model)
    if layers is not None:
        chosen = [(n, m) for n, m in chosen if n in set(layers)]
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []
    for name, module in chosen:

        def hook(_m: nn.Module, args: tuple, output: torch.Tensor, name: str = name) -> None:
            output.retain_grad()
            captured[name] = (args[0].detach(), output)

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.enable_grad():
            loss = F.cross_entropy(model(inputs), targets, reduction="sum")
            outputs = [captured[name][1] for name, _ in chosen]
            grads = torch.autograd.grad(loss, outputs)
    finally:
        for handle in handles:
            handle.remove()
    rows = []
    for (name, module), grad in zip(chosen, grads, strict=True):
        x = captured[name][0]
        if isinstance(module, nn.Linear):
            coherence = linear_sign_coherence(x, grad)
        else:
            coherence = sign_coherence(per_sample_weight_gradients(module, x, grad))
        channels = x.transpose(0, 1).reshape(x.shape[1], -1).to(torch.float64)
        std = channels.std(dim=1).clamp_min(1e-12)
        rows.append(
            {
                "layer": name,
                "kind": type(module).__name__,
                "input_nonneg": float((x >= 0).double().mean()),
                "input_mean_to_std": float((channels.mean(dim=1).abs() / std).mean()),
                **coherence,
            }
        )
    return rows
