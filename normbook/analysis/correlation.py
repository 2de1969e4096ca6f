"""Correlation between channels (features) of activations: how decorrelated a layer's output is.

Used by IC-EQ8 (Dropout after BN shrinks the correlation of standardized activations by the keep
probability, ĉ_ij = p·c_ij) and by the DBN part (DBN-EQ3: whitening drives the off-diagonal
correlations of a layer's output to zero). Channels are the variables: an N×C input has N samples
of C variables; an N×C×H×W (or N×C×L) input has N·H·W samples, as BatchNorm and DBN count them.

Constant channels. A channel whose spread is below the rounding of its mean (standard deviation
``<= rtol·|mean|``, ``rtol`` = machine epsilon of the input's dtype by default) is *constant*: its
correlation with every channel, itself included, is defined as 0 (its standardized values are all
zero, as BatchNorm makes them). The matrix is then NaN-free and still positive semi-definite, and a
constant channel adds zeros to :func:`mean_abs_off_diagonal`; :func:`constant_channels` lists them.
"""

from __future__ import annotations

import torch

from normbook.analysis._checks import check_finite, check_tensor


def channel_samples(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N×C or N×C×…) as an M×C float64 matrix of samples: channels are the columns.

    M = N times the product of the trailing (spatial) sizes.
    """
    check_tensor(x, "x", min_dim=2)
    channels = x.shape[1]
    return x.detach().to(torch.float64).movedim(1, -1).reshape(-1, channels)


def _standardize(samples: torch.Tensor, rtol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardized columns (biased std) and the mask of constant columns (set to zero)."""
    mean = samples.mean(dim=0)
    centered = samples - mean
    std = centered.pow(2).mean(dim=0).sqrt()
    constant = std <= rtol * mean.abs()
    scale = torch.where(constant, torch.ones_like(std), std)
    standardized = (centered / scale).masked_fill(constant, 0.0)
    return standardized, constant


def _default_rtol(x: torch.Tensor, rtol: float | None) -> float:
    if rtol is None:
        return float(torch.finfo(x.dtype).eps)
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or rtol < 0:
        raise ValueError(f"rtol must be a float >= 0, got {rtol!r}")
    return float(rtol)


def constant_channels(x: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """Boolean mask (C,) of the channels of ``x`` that are constant over their samples.

    Constant: standard deviation ``<= rtol·|mean|`` (``rtol`` default: the dtype's epsilon), which
    also covers an all-zero channel.
    """
    samples = channel_samples(x)
    check_finite(samples, "x")
    return _standardize(samples, _default_rtol(x, rtol))[1]


def correlation_matrix(x: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """C×C (float64) Pearson correlation between the channels of ``x`` (N×C or N×C×H×W).

    Entry ``(i, j)`` is the mean over samples of the product of channels ``i`` and ``j`` after
    each is standardized (mean 0, biased standard deviation 1). Constant channels (see
    :func:`constant_channels`) have zero correlation with everything, their diagonal included;
    every other diagonal entry is exactly 1. Needs at least two samples per channel.
    """
    samples = channel_samples(x)
    if samples.shape[0] < 2:
        raise ValueError(
            f"x must hold at least two samples per channel, got shape {tuple(x.shape)}"
        )
    check_finite(samples, "x")
    standardized, constant = _standardize(samples, _default_rtol(x, rtol))
    corr = standardized.T @ standardized / samples.shape[0]
    corr = corr.clamp(-1.0, 1.0)
    diagonal = torch.where(
        constant, torch.zeros_like(corr.diagonal()), torch.ones_like(corr.diagonal())
    )
    corr.diagonal().copy_(diagonal)
    return corr


def mean_abs_off_diagonal(corr: torch.Tensor) -> float:
    """Mean of ``|corr[i, j]|`` over the C·(C−1) ordered pairs ``i != j`` (IC-EQ8, DBN-EQ3).

    0 for decorrelated (whitened) channels, 1 when every pair is perfectly (anti-)correlated.
    """
    check_tensor(corr, "corr", min_dim=2)
    if corr.dim() != 2 or corr.shape[0] != corr.shape[1]:
        raise ValueError(f"corr must be a square C×C matrix, got shape {tuple(corr.shape)}")
    channels = corr.shape[0]
    if channels < 2:
        raise ValueError("corr must have at least two channels to have off-diagonal entries")
    off = ~torch.eye(channels, dtype=torch.bool, device=corr.device)
    return float(corr.abs()[off].to(torch.float64).mean())


def mean_abs_correlation(x: torch.Tensor, rtol: float | None = None) -> float:
    """Mean absolute off-diagonal correlation between the channels of ``x``, in one call."""
    return mean_abs_off_diagonal(correlation_matrix(x, rtol))
