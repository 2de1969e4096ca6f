"""Input validation shared by every layer: clear errors that name the argument and the expectation."""

from __future__ import annotations

import torch


class NonFiniteInputError(ValueError):
    """A normalization layer got NaN/Inf input (or input whose statistics overflow). A
    ``ValueError``; the training loop records it as divergence when earlier steps succeeded."""


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an int ``>= minimum``; else raise ``TypeError``/``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_probability(value: object, name: str, *, closed_right: bool = False) -> float:
    """Return ``value`` as float if it lies in [0, 1) (or [0, 1] with ``closed_right``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    value = float(value)
    ok = 0.0 <= value <= 1.0 if closed_right else 0.0 <= value < 1.0
    if not ok:
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return value


def check_features_input(
    x: object,
    num_features: int,
    layer: str,
    *,
    ranks: tuple[int, ...] = (2, 3, 4),
    training: bool = False,
    finite: bool = True,
) -> torch.Tensor:
    """Validate an N×C(×L)(×H×W) input of a normalization layer and return it.

    Raises ``TypeError`` for a non-tensor or non-floating dtype and ``ValueError`` for a wrong
    rank, a channel count different from ``num_features``, a single sample per channel in
    training (batch statistics undefined), or NaN/Inf entries.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{layer}: input must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{layer}: input must have a floating dtype, got {x.dtype}")
    if x.dim() not in ranks:
        shapes = {2: "N×C", 3: "N×C×L", 4: "N×C×H×W", 5: "N×C×D×H×W"}
        expected = " or ".join(shapes.get(r, f"{r}-D") for r in ranks)
        raise ValueError(f"{layer}: input must be {expected}, got shape {tuple(x.shape)}")
    if x.shape[1] != num_features:
        raise ValueError(
            f"{layer}: input has {x.shape[1]} channels (dim 1) but num_features={num_features}"
        )
    if training and x.numel() // max(x.shape[1], 1) < 2:
        raise ValueError(
            f"{layer}: training needs more than one value per channel to compute batch statistics,"
            f" got input of shape {tuple(x.shape)}"
        )
    # One reduction first (cheap); the element-wise scan only confirms when the sum is not finite,
    # so finite inputs whose sum overflows are not rejected.
    if finite and not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise NonFiniteInputError(f"{layer}: input contains NaN or Inf")
    return x
