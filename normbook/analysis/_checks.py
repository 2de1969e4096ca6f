"""Argument checks shared by the measurement modules: errors that name the argument."""

from __future__ import annotations

import torch


def check_tensor(x: object, name: str, *, min_dim: int = 1, floating: bool = True) -> torch.Tensor:
    """Return ``x`` if it is a tensor of rank ``>= min_dim`` (floating-point when ``floating``)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s), got {tuple(x.shape)}")
    return x


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or Inf (a measurement of it would be meaningless)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or Inf entries")
