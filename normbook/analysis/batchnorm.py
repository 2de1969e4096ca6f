"""Batch Normalization taken apart: its backward pass step by step, and the train/eval gap
(Ioffe & Szegedy 2015, Algorithm 1, Section 3 and Algorithm 2; the foundations chapter
``book/foundations/batchnorm-from-its-equations.ipynb``).

* :func:`batchnorm_reference`: the training-mode forward written with elementary tensor ops, so
  that autograd differentiates it (the reference the hand-derived backward is checked against);
* :func:`batchnorm_autograd_steps`: the same quantities as autograd computes them;
* :func:`batchnorm_backward_steps`: the chain rule of the paper's Section 3, one named quantity at
  a time (∂ℓ/∂x̂, ∂ℓ/∂σ², ∂ℓ/∂μ, ∂ℓ/∂x), beside the simplified three-term form
  ∂ℓ/∂x_i = γ/(m·σ)·(m·g_i − Σg − x̂_i·Σg·x̂) that :class:`~normbook.layers.BatchNormFunction` uses;
* :func:`mean_and_scale_residual`: the component of a per-channel vector orthogonal to the ones
  vector and to x̂ (least squares), the geometric meaning of the three terms;
* :func:`batch_statistics_gap`: a model's predictions with batch statistics (train mode) against
  those with running statistics (eval mode), on the same samples.

Per-channel quantities are reduced over every dimension but 1 (N×C, N×C×L, N×C×H×W inputs), so
``m`` is N, N·L or N·H·W.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from normbook.analysis._checks import check_tensor


def _dims(x: Tensor) -> list[int]:
    return [d for d in range(x.dim()) if d != 1]


def _view(t: Tensor, ndim: int) -> Tensor:
    return t.view(1, -1, *([1] * (ndim - 2)))


def _check_bn_input(x: Tensor, name: str = "x") -> None:
    check_tensor(x, name)
    if x.dim() < 2:
        raise ValueError(f"{name} must be N×C or N×C×..., got shape {tuple(x.shape)}")
    if x.numel() // x.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 values per channel, got shape {tuple(x.shape)}")


def batchnorm_reference(
    x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Training-mode BN (Ioffe & Szegedy 2015, Alg. 1) in elementary ops that autograd follows:
    μ = mean x, σ² = mean (x − μ)² (biased), x̂ = (x − μ)/√(σ² + ε), y = γ·x̂ + β."""
    _check_bn_input(x)
    dims = _dims(x)
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * _view(weight, x.dim())
    if bias is not None:
        y = y + _view(bias, x.dim())
    return y


def batchnorm_autograd_steps(
    x: Tensor,
    grad_output: Tensor,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> dict[str, Tensor]:
    """What autograd says each quantity of :func:`batchnorm_backward_steps` is: the forward of
    :func:`batchnorm_reference` with μ, σ² and x̂ kept as graph nodes, then ℓ = Σ g·y
    differentiated. ``grad_mean`` is the total derivative through μ (also via σ²), as in the
    paper. Keys: ``grad_x_hat``, ``grad_var``, ``grad_mean``, ``grad_input``, and
    ``grad_weight``/``grad_bias`` when given."""
    _check_bn_input(x)
    dims, n = _dims(x), x.dim()
    x = x.detach().clone().requires_grad_()
    params = {
        name: p.detach().clone().requires_grad_()
        for name, p in (("weight", weight), ("bias", bias))
        if p is not None
    }
    mean = x.mean(dim=dims)
    var = ((x - _view(mean, n)) ** 2).mean(dim=dims)
    x_hat = (x - _view(mean, n)) / _view(torch.sqrt(var + eps), n)
    for node in (mean, var, x_hat):
        node.retain_grad()
    y = x_hat
    if "weight" in params:
        y = y * _view(params["weight"], n)
    if "bias" in params:
        y = y + _view(params["bias"], n)
    (y * grad_output).sum().backward()
    out = {
        "grad_x_hat": x_hat.grad,
        "grad_var": var.grad,
        "grad_mean": mean.grad,
        "grad_input": x.grad,
    }
    out.update({f"grad_{name}": p.grad for name, p in params.items()})
    return out


def batchnorm_backward_steps(
    x: Tensor, grad_output: Tensor, weight: Tensor | None = None, eps: float = 1e-5
) -> dict[str, Any]:
    """Every quantity of BN's backward pass (Ioffe & Szegedy 2015, Section 3), by name.

    With g_i = ∂ℓ/∂y_i and σ = √(σ²_B + ε), per channel:
    ``grad_x_hat`` = g·γ; ``grad_var`` = Σ ∂ℓ/∂x̂_i·(x_i − μ)·(−½)σ⁻³;
    ``grad_mean`` = −Σ ∂ℓ/∂x̂_i/σ + ∂ℓ/∂σ²·(−2/m)Σ(x_i − μ), whose second part
    (``grad_mean_var_term``) vanishes because Σ(x_i − μ) = 0;
    ``grad_input_chain`` = ∂ℓ/∂x̂_i/σ + ∂ℓ/∂σ²·2(x_i − μ)/m + ∂ℓ/∂μ/m (the paper's last line);
    ``terms`` = (m·g_i, Σg, x̂_i·Σg·x̂) and ``grad_input`` = γ/(m·σ)·(term₀ − term₁ − term₂);
    ``grad_weight`` = Σ g·x̂, ``grad_bias`` = Σ g. Also ``mean``, ``var`` (biased), ``std`` (σ),
    ``x_hat`` and ``m``. Per-channel values have shape (C,); the others the input's shape.
    """
    _check_bn_input(x)
    check_tensor(grad_output, "grad_output")
    if grad_output.shape != x.shape:
        raise ValueError(
            f"grad_output must have the input's shape {tuple(x.shape)}, got"
            f" {tuple(grad_output.shape)}"
        )
    dims, n = _dims(x), x.dim()
    m = x.numel() // x.shape[1]
    mean = x.mean(dim=dims)
    centred = x - _view(mean, n)
    var = (centred**2).mean(dim=dims)
    std = torch.sqrt(var + eps)
    x_hat = centred / _view(std, n)
    gamma = torch.ones_like(mean) if weight is None else weight
    g = grad_output
    grad_x_hat = g * _view(gamma, n)
    grad_var = (grad_x_hat * centred).sum(dim=dims) * (-0.5) * std**-3
    grad_mean_var_term = grad_var * (-2.0 / m) * centred.sum(dim=dims)
    grad_mean = -(grad_x_hat.sum(dim=dims)) / std + grad_mean_var_term
    grad_input_chain = (
        grad_x_hat / _view(std, n)
        + _view(grad_var, n) * 2.0 * centred / m
        + _view(grad_mean, n) / m
    )
    sum_g = g.sum(dim=dims)
    sum_g_xhat = (g * x_hat).sum(dim=dims)
    terms = (m * g, _view(sum_g, n).expand_as(g), x_hat * _view(sum_g_xhat, n))
    grad_input = _view(gamma / (m * std), n) * (terms[0] - terms[1] - terms[2])
    return {
        "m": m,
        "mean": mean,
        "var": var,
        "std": std,
        "x_hat": x_hat,
        "grad_x_hat": grad_x_hat,
        "grad_var": grad_var,
        "grad_mean_var_term": grad_mean_var_term,
        "grad_mean": grad_mean,
        "grad_input_chain": grad_input_chain,
        "terms": terms,
        "grad_input": grad_input,
        "grad_weight": sum_g_xhat,
        "grad_bias": sum_g,
    }


def mean_and_scale_residual(values: Tensor, x_hat: Tensor) -> Tensor:
    """Per channel, ``values`` minus its least-squares fit by a·1 + b·x̂ over the m positions:
    the part of a gradient that neither shifts the channel's batch mean nor scales it along x̂."""
    _check_bn_input(x_hat, "x_hat")
    check_tensor(values, "values")
    if values.shape != x_hat.shape:
        raise ValueError(
            f"values must have x_hat's shape {tuple(x_hat.shape)}, got {tuple(values.shape)}"
        )
    channels = x_hat.shape[1]
    v = values.transpose(0, 1).reshape(channels, -1, 1)
    h = x_hat.transpose(0, 1).reshape(channels, -1)
    design = torch.stack([torch.ones_like(h), h], dim=2)  # (C, m, 2)
    coef = torch.linalg.lstsq(design, v).solution
    residual = (v - design @ coef).reshape(channels, *values.transpose(0, 1).shape[1:])
    return residual.transpose(0, 1).contiguous()


@torch.no_grad()
def batch_statistics_gap(
    model: torch.nn.Module, data: Any, split: str = "test", batch_size: int = 64
) -> dict[str, float]:
    """The same samples through ``model`` with batch statistics and with running statistics.

    Batch statistics: a copy of the model in train mode (the model's own running statistics
    stay untouched) over consecutive batches of ``batch_size`` samples of ``split`` (the
    incomplete last batch is left out of both); running statistics: the model in eval mode.
    Returns the mean cross-entropy and accuracy of each (``batch_stat_loss``/``_acc``,
    ``running_stat_loss``/``_acc``), the fraction of samples whose predicted class differs
    (``disagreement``) and the RMS difference of the logits over the RMS of the eval-mode
    logits (``logit_gap``). A model without batch statistics gives gaps of exactly 0.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"batch_size must be an int >= 2, got {batch_size!r}")
    batched = copy.deepcopy(model).train()
    was_training = model.training
    model.eval()
    totals = torch.zeros(7, dtype=torch.float64)
    count = 0
    try:
        for x, y in data.eval_batches(split, batch_size):
            if y.shape[0] < batch_size:
                continue
            running = model(x).double()
            batch = batched(x).double()
            totals += torch.stack(
                [
                    F.cross_entropy(batch, y, reduction="sum"),
                    F.cross_entropy(running, y, reduction="sum"),
                    (batch.argmax(1) == y).sum().double(),
                    (running.argmax(1) == y).sum().double(),
                    (batch.argmax(1) != running.argmax(1)).sum().double(),
                    ((batch - running) ** 2).sum(),
                    (running**2).sum(),
                ]
            ).cpu()
            count += y.shape[0]
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError(f"split {split!r} has fewer than batch_size={batch_size} samples")
    t = totals.tolist()
    return {
        "batch_stat_loss": t[0] / count,
        "running_stat_loss": t[1] / count,
        "batch_stat_acc": t[2] / count,
        "running_stat_acc": t[3] / count,
        "disagreement": t[4] / count,
        "logit_gap": (t[5] / t[6]) ** 0.5 if t[6] > 0 else 0.0,
        "samples": count,
    }
