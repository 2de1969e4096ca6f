"""Multilayer perceptrons with a pluggable norm between each linear layer and its activation.

Covers DBN's MLPs (2/4 × 100 units, Yale-B {128, 64, 48, 48}, PIE 5 × 128; DBN-F2/F3/F4, with
``norm_position="after_act"`` for the Fig. 5d-style ordering) and MimicNorm's deep straight FCNN
(MN-F2). The norm layer comes from :func:`normbook.layers.create_norm_layer`; linear layers keep a
bias only when no norm with its own shift follows them (``norm="none"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from normbook.layers import create_act_layer, create_norm_layer
from normbook.models.registry import ModelInfo, register_model

NORM_POSITIONS = ("before_act", "after_act")
# model-level norm names the MLP accepts -> (layer name, bias on linear layers)
MLP_NORMS = {
    "bn": ("bn", False),
    "bn_scratch": ("bn_scratch", False),
    "dbn": ("dbn", False),
    "ic": ("ic", False),
    "ln": ("ln", False),
    "none": ("none", True),
    "none-nobias": ("none", False),
}


class MLP(nn.Module):
    """Flatten → [Linear → norm → act] × len(hidden) → Linear (or norm after act)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (128, 128),
        norm: str = "bn",
        act: str = "relu",
        norm_position: str = "before_act",
        norm_kwargs: dict | None = None,
    ):
        super().__init__()
        if norm not in MLP_NORMS:
            raise ValueError(f"mlp: norm must be one of {', '.join(MLP_NORMS)}, got {norm!r}")
        if norm_position not in NORM_POSITIONS:
            raise ValueError(
                f"mlp: norm_position must be one of {', '.join(NORM_POSITIONS)}, got {norm_position!r}"
            )
        if act == "crelu":
            raise ValueError(
                "mlp: act='crelu' is not supported (it doubles the width); use relu or elu"
            )
        widths = [int(w) for w in hidden]
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"mlp: in_features must be a positive int, got {in_features!r}")
        if any(w < 1 for w in widths):
            raise ValueError(f"mlp: hidden widths must be positive, got {list(hidden)}")
        layer_name, bias = MLP_NORMS[norm]
        # after the activation, the linear layer's bias is not absorbed by the norm's shift
        bias = bias or (norm_position == "after_act" and norm != "none-nobias")
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = in_features
        for width in widths:
            layers.append(nn.Linear(fan_in, width, bias=bias))
            norm_layer = create_norm_layer(layer_name, width, spatial_dims=0, **(norm_kwargs or {}))
            activation = create_act_layer(act)
            layers += (
                [norm_layer, activation]
                if norm_position == "before_act"
                else [activation, norm_layer]
            )
            fan_in = width
        layers.append(nn.Linear(fan_in, num_classes))
        self.layers = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (MSR) initialisation of the linear weights, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register_model(
    "mlp",
    ModelInfo(
        summary="MLP: [Linear → norm → act] × len(hidden) → Linear (DBN F2-F4, MimicNorm MN-F2)",
        norms=tuple(MLP_NORMS),
        acts=("relu", "elu"),
        input_shape=(64,),
        options="in_features, hidden (widths), norm_position (before_act | after_act)",
        tiny={"in_features": 64, "hidden": (16, 16)},
    ),
)
def mlp(
    num_classes: int,
    in_features: int = 64,
    hidden: Sequence[int] = (128, 128),
    norm: str = "bn",
    act: str = "relu",
    norm_position: str = "before_act",
    **norm_kwargs,
) -> MLP:
    """``build_model("mlp", num_classes, in_features=..., hidden=..., norm=..., act=...)``.

    Extra keyword arguments (``group_size``, ``eps``, ``drop_prob``, ...) go to the norm layer.
    """
    return MLP(in_features, num_classes, hidden, norm, act, norm_position, norm_kwargs)
