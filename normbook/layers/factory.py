"""One factory for normalization and activation layers (the timm ``create_norm_layer`` pattern).

Models never branch on a norm name: they call ``create_norm_layer(norm, num_features, **kw)`` and
``create_act_layer(act)``. Each layer module registers its class under a short name with
``register_norm_layer``/``register_act_layer``; extra keyword arguments are bound to the class.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

NormBuilder = Callable[..., nn.Module]
_NORM_LAYERS: dict[str, NormBuilder] = {}
_ACT_LAYERS: dict[str, Callable[..., nn.Module]] = {}


def register_norm_layer(name: str) -> Callable[[NormBuilder], NormBuilder]:
    """Register ``builder(num_features, *, spatial_dims, **kw)`` (or a class) under ``name``."""

    def wrap(builder: NormBuilder) -> NormBuilder:
        if name in _NORM_LAYERS:
            raise ValueError(f"norm layer {name!r} is already registered")
        _NORM_LAYERS[name] = builder
        return builder

    return wrap


def register_act_layer(name: str) -> Callable:
    """Register an activation class or builder under ``name``."""

    def wrap(builder: Callable) -> Callable:
        if name in _ACT_LAYERS:
            raise ValueError(f"activation {name!r} is already registered")
        _ACT_LAYERS[name] = builder
        return builder

    return wrap


def list_norm_layers() -> list[str]:
    """Names accepted by :func:`create_norm_layer`."""
    return sorted(_NORM_LAYERS)


def list_act_layers() -> list[str]:
    """Names accepted by :func:`create_act_layer`."""
    return sorted(_ACT_LAYERS)


def create_norm_layer(
    name: str, num_features: int, *, spatial_dims: int = 2, **kwargs
) -> nn.Module:
    """Build the normalization layer registered as ``name`` for ``num_features`` channels.

    ``spatial_dims`` is the number of dimensions after N×C of the input (0 for N×C, 2 for
    N×C×H×W); layers that handle every rank ignore it. Extra ``kwargs`` go to the layer.
    """
    try:
        builder = _NORM_LAYERS[name]
    except KeyError:
        raise ValueError(
            f"unknown norm layer {name!r}; expected one of {', '.join(list_norm_layers())}"
        ) from None
    if spatial_dims not in (0, 1, 2, 3):
        raise ValueError(f"spatial_dims must be 0, 1, 2 or 3, got {spatial_dims}")
    return builder(num_features, spatial_dims=spatial_dims, **kwargs)


def create_act_layer(name: str, **kwargs) -> nn.Module:
    """Build the activation registered as ``name`` (``relu``, ``elu``, ``crelu``, ...)."""
    try:
        builder = _ACT_LAYERS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {', '.join(list_act_layers())}"
        ) from None
    return builder(**kwargs)


@register_norm_layer("bn")
def _torch_batchnorm(num_features: int, *, spatial_dims: int = 2, **kwargs) -> nn.Module:
    """PyTorch's BatchNorm (Ioffe & Szegedy 2015) of the right dimensionality."""
    cls = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial_dims]
    return cls(num_features, **kwargs)


@register_norm_layer("none")
def _identity_norm(num_features: int, *, spatial_dims: int = 2, **kwargs) -> nn.Module:
    """No normalization."""
    return nn.Identity()


@register_norm_layer("ln")
def _torch_layernorm(num_features: int, *, spatial_dims: int = 2, **kwargs) -> nn.Module:
    """Layer Normalization (Ba et al. 2016; the LN baseline of DBN Fig. 3): each sample over its
    own features. N×C: ``nn.LayerNorm(C)``; N×C×…: ``nn.GroupNorm(1, C)`` (the statistics over
    channels and positions, per-channel γ, β)."""
    if spatial_dims == 0:
        return nn.LayerNorm(num_features, **kwargs)
    return nn.GroupNorm(1, num_features, **kwargs)


register_act_layer("relu")(lambda inplace=False: nn.ReLU(inplace=inplace))
register_act_layer("elu")(lambda alpha=1.0, inplace=False: nn.ELU(alpha=alpha, inplace=inplace))
register_act_layer("identity")(lambda: nn.Identity())
