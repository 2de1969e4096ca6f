"""Dropout before BatchNorm: the train/test variance shift (Li et al. 2019) that chaining IC layers
sets up, its measurement in a trained net, and the recalibration of BN statistics that removes it
(PAPERS.md IC section: "a BN-statistics recalibration ablation is worth a cell").

Inverted dropout with keep probability ``q`` (the IC paper's ``p``) maps a unit ``x`` with mean
``μ`` and variance ``σ²`` to ``y = g·x/q``, ``g ~ Bernoulli(q)`` independent of ``x``. In training
``E[y] = μ`` and ``E[y²] = E[x²]/q``, so

    Var_train(y) = (σ² + μ²)/q − μ² = σ² + (1 − q)/q · (σ² + μ²),

while at test time dropout is the identity and ``Var_test(y) = σ²``. A BatchNorm that follows
accumulates its running variance from the training-mode inputs and divides the test-mode inputs
by it: the *variance shift* ``Var_test / Var_train = qσ² / (σ² + (1 − q)μ²)`` (≤ 1; ``q`` for a
centred unit). Through a linear layer ``h = w·y`` the gates are independent across inputs, so
only the diagonal of the covariance grows: ``Cov_train(y) = C + (1 − q)/q · diag(C_jj + μ_j²)``
and ``Var_test(h)/Var_train(h) = wᵀCw / (wᵀCw + (1 − q)/q · Σ_j w_j²(C_jj + μ_j²))``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pandas as pd
import torch
import torch.nn as nn

_BatchNorm = nn.modules.batchnorm._BatchNorm


def _check_keep(keep_prob: float) -> float:
    if isinstance(keep_prob, bool) or not isinstance(keep_prob, (int, float)):
        raise TypeError(f"keep_prob must be a number, got {type(keep_prob).__name__}")
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"keep_prob must lie in (0, 1], got {keep_prob}")
    return float(keep_prob)


def dropout_train_variance(mean: float, var: float, keep_prob: float) -> float:
    """Var of ``g·x/q`` in training for ``x`` with ``mean``, ``var`` (module docstring)."""
    q = _check_keep(keep_prob)
    if var < 0:
        raise ValueError(f"var must be >= 0, got {var}")
    return (var + mean**2) / q - mean**2


def variance_shift(mean: float, var: float, keep_prob: float) -> float:
    """``Var_test / Var_train`` of a dropped unit: ``qσ² / (σ² + (1 − q)μ²)``."""
    q = _check_keep(keep_prob)
    if var <= 0:
        raise ValueError(f"var must be > 0, got {var}")
    return q * var / (var + (1.0 - q) * mean**2)


def dropout_covariance(
    mean: torch.Tensor, covariance: torch.Tensor, keep_prob: float
) -> torch.Tensor:
    """Training-mode covariance of ``g ⊙ x / q``: ``C + (1 − q)/q · diag(diag(C) + μ²)``."""
    q = _check_keep(keep_prob)
    if covariance.dim() != 2 or covariance.shape[0] != covariance.shape[1]:
        raise ValueError(f"covariance must be square, got shape {tuple(covariance.shape)}")
    if mean.shape != covariance.shape[:1]:
        raise ValueError(
            f"mean must have shape {tuple(covariance.shape[:1])}, got {tuple(mean.shape)}"
        )
    extra = (1.0 - q) / q * (covariance.diagonal() + mean**2)
    return covariance + torch.diag(extra)


def linear_variance_shift(
    weight: torch.Tensor, mean: torch.Tensor, covariance: torch.Tensor, keep_prob: float
) -> torch.Tensor:
    """Per output of ``h = W y``: ``Var_test(h) / Var_train(h)`` with dropout on ``y`` (docstring)."""
    if weight.dim() != 2 or weight.shape[1] != covariance.shape[0]:
        raise ValueError(
            f"weight must be out×{covariance.shape[0]}, got shape {tuple(weight.shape)}"
        )
    test = torch.einsum("oi,ij,oj->o", weight, covariance, weight)
    train = torch.einsum(
        "oi,ij,oj->o", weight, dropout_covariance(mean, covariance, keep_prob), weight
    )
    return test / train


def monte_carlo_dropout_variance(
    mean: float, std: float, keep_prob: float, samples: int, *, seed: int = 0
) -> tuple[float, float]:
    """Sample variance of ``g·x/q`` (torch's inverted dropout on Gaussian ``x``) over ``samples``
    draws, and its standard error (from the sample fourth central moment), in float64."""
    q = _check_keep(keep_prob)
    generator = torch.Generator().manual_seed(seed)
    x = mean + std * torch.randn(samples, generator=generator, dtype=torch.float64)
    keep = torch.rand(samples, generator=generator, dtype=torch.float64) < q
    y = torch.where(keep, x / q, torch.zeros_like(x))
    centred = y - y.mean()
    var = float(centred.pow(2).mean())
    m4 = float(centred.pow(4).mean())
    return var, math.sqrt(max(m4 - var**2, 0.0) / samples)


def ic_batchnorms(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """``(name, bn)`` of the BatchNorm inside every :class:`~normbook.layers.ICLayer`, in
    registration (= forward, for the book's models) order."""
    from normbook.layers import ICLayer

    return [(f"{name}.bn", m.bn) for name, m in model.named_modules() if isinstance(m, ICLayer)]


@contextmanager
def _forked_rng(device: torch.device | None, seed: int) -> Iterator[None]:
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _model_device(model: nn.Module) -> torch.device | None:
    for p in model.parameters():
        return p.device
    return None


def bn_input_variances(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    mode: str,
    layers: list[tuple[str, _BatchNorm]] | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Per channel, the variance of each BN layer's input, averaged over ``batches`` (unbiased
    within a batch, like the running average), with the whole net in ``mode`` ("train": dropout
    on, batch statistics; "eval": dropout off, running statistics).

    Runs on a deep copy (the model's running statistics and modes are untouched) under
    ``no_grad``, with the global RNG forked and seeded by ``seed`` (dropout masks are
    reproducible and the caller's RNG stream is unchanged). ``layers`` default:
    :func:`ic_batchnorms`.
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    twin = copy.deepcopy(model)
    names = [name for name, _ in (layers if layers is not None else ic_batchnorms(model))]
    modules = dict(twin.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"model has no module(s) {missing}")
    if not names:
        raise ValueError(f"{type(model).__name__} has no layers to measure (no IC layers)")
    sums: dict[str, torch.Tensor] = {}
    counts = {name: 0 for name in names}

    def hook_for(name: str):
        def hook(_module: nn.Module, inputs: tuple) -> None:
            x = inputs[0].detach()
            dims = [d for d in range(x.dim()) if d != 1]
            var = x.to(torch.float64).var(dim=dims, unbiased=True)
            sums[name] = sums.get(name, 0) + var
            counts[name] += 1

        return hook

    handles = [modules[n].register_forward_pre_hook(hook_for(n)) for n in names]
    twin.train(mode == "train")
    try:
        with torch.no_grad(), _forked_rng(_model_device(twin), seed):
            for x, _ in batches:
                twin(x)
    finally:
        for handle in handles:
            handle.remove()
    if not all(counts.values()):
        raise ValueError("batches is empty: nothing was measured")
    return {name: (sums[name] / counts[name]).float() for name in names}


def _channel_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> float:
    """Mean over channels of ``numerator / denominator`` (channels with no spread left out)."""
    live = denominator > 1e-12
    if not bool(live.any()):
        return math.nan
    return float((numerator[live] / denominator[live]).mean())


def variance_shift_profile(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per IC layer's BN (forward order): mean input variance in train and in eval mode,
    the BN's running variance, ``shift`` = mean over channels of Var_eval/Var_train, and
    ``shift_running`` = mean over channels of Var_eval/running_var (what the BN divides by at test
    time: 1 means no shift)."""
    layers = ic_batchnorms(model)
    batches = list(batches)
    train = bn_input_variances(model, batches, mode="train", layers=layers, seed=seed)
    test = bn_input_variances(model, batches, mode="eval", layers=layers, seed=seed)
    rows = []
    for index, (name, bn) in enumerate(layers, start=1):
        running = bn.running_var.detach().float().to(test[name].device)
        rows.append(
            {
                "layer": index,
                "module": name,
                "var_train": float(train[name].mean()),
                "var_eval": float(test[name].mean()),
                "running_var": float(running.mean()),
                "shift": _channel_ratio(test[name], train[name]),
                "shift_running": _channel_ratio(test[name], running),
            }
        )
    return pd.DataFrame(rows)


def recalibrate_batchnorm(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    dropout: bool = False,
) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on ``batches`` (in place).

    The statistics are reset and re-accumulated as a plain average over the batches
    (``momentum=None``) with each BN in training mode (batch statistics) and, with
    ``dropout=False``, every dropout off: IC layers' dropout and ``nn.Dropout`` modules run as at
    test time, so the BNs see the inputs they will normalize at test time (no variance shift).
    ``dropout=True`` re-estimates with dropout on (the statistics training itself produces). The
    modules' modes and momenta are restored afterwards. Returns ``model``.
    """
    from normbook.layers import ICLayer

    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not norms:
        raise ValueError(f"{type(model).__name__} has no BatchNorm layer to recalibrate")
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    try:
        model.train(dropout)  # dropout layers (and IC layers' gates) on or off
        for m in model.modules():
            if isinstance(m, ICLayer):
                m.train(dropout)
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches
            bn.train()
        seen = 0
        with torch.no_grad():
            for x, _ in batches:
                model(x)
                seen += 1
        if seen == 0:
            raise ValueError("batches is empty: no statistics to estimate")
    finally:
        for m, training in modes.items():
            m.training = training
        for bn, momentum in momenta.items():
            bn.momentum = momentum
    return model
