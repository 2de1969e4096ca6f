"""Multilayer perceptrons with a pluggable norm between each linear layer and its activation.

Covers DBN's MLPs (2/4 × 100 units, Yale-B {128, 64, 48, 48}, PIE 5 × 128; DBN-F2/F3/F4, with
``norm_position="after_act"`` for the Fig. 5d-style ordering) and MimicNorm's deep straight FCNN
(MN-F2). The norm layer comes from :func:`normbook.layers.create_norm_layer`; linear layers keep a
bias only when no norm with its own shift follows them (``norm="none"``).

The methods that need no norm layer come from :class:`~normbook.models.policy.NormPolicy`, as in
the convolutional families (the synthesis part compares every method on one MLP):
``normprop1/2/3`` (``NormPropLinear`` hidden layers with bias, Xavier init; NP-EQ) and ``mimic``
(N(0, 2/fan_in) init, weight mean of every linear layer's rows at init and after each step, the
affine-free last BN on the logits; MN-TH3 is derived for exactly this fully connected case).
``act="crelu"`` doubles each following layer's fan-in (NP-D1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from normbook.layers import act_channel_multiplier, create_act_layer, create_norm_layer
from normbook.models.policy import MIMIC_OPTIONS, NormPolicy
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
POLICY_NORMS = ("normprop1", "normprop2", "normprop3", "mimic")  # built by NormPolicy
MLP_ACTS = ("relu", "elu", "crelu")


class MLP(nn.Module):
    """Flatten → [Linear → norm → act] × len(hidden) → Linear (or norm after act) → head norm.

    The head norm is MimicNorm's last BN for ``norm="mimic"`` and the identity otherwise.
    """

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
        if norm not in MLP_NORMS and norm not in POLICY_NORMS:
            names = ", ".join((*MLP_NORMS, *POLICY_NORMS))
            raise ValueError(f"mlp: norm must be one of {names}, got {norm!r}")
        if norm_position not in NORM_POSITIONS:
            raise ValueError(
                f"mlp: norm_position must be one of {', '.join(NORM_POSITIONS)}, got {norm_position!r}"
            )
        if norm in POLICY_NORMS and norm_position != "before_act":
            raise ValueError(f"mlp: norm={norm!r} has no norm layer to move after the activation")
        widths = [int(w) for w in hidden]
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"mlp: in_features must be a positive int, got {in_features!r}")
        if any(w < 1 for w in widths):
            raise ValueError(f"mlp: hidden widths must be positive, got {list(hidden)}")
        self.policy = None
        misplaced = sorted(set(MIMIC_OPTIONS) & set(norm_kwargs or {}))
        if misplaced and norm != "mimic":
            raise ValueError(f"mlp: {', '.join(misplaced)} only apply to norm='mimic'")
        if norm in POLICY_NORMS:
            self.policy = NormPolicy(
                "mlp", norm, act, norms=POLICY_NORMS, acts=MLP_ACTS, **(norm_kwargs or {})
            )
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = in_features
        for width in widths:
            layers += self._hidden_layer(fan_in, width, norm, act, norm_position, norm_kwargs)
            fan_in = width * act_channel_multiplier(act)
        layers.append(nn.Linear(fan_in, num_classes))
        self.layers = nn.Sequential(*layers)
        self.head_norm = self.policy.head_norm(num_classes) if self.policy else nn.Identity()
        self.reset_parameters()

    def _hidden_layer(
        self,
        fan_in: int,
        width: int,
        norm: str,
        act: str,
        norm_position: str,
        norm_kwargs: dict | None,
    ) -> list[nn.Module]:
        if self.policy is not None:  # NormProp / MimicNorm: the weight layer carries the method
            linear = self.policy.linear(fan_in, width)
            return [linear, self.policy.norm(width, spatial_dims=0), self.policy.act()]
        layer_name, bias = MLP_NORMS[norm]
        # after the activation, the linear layer's bias is not absorbed by the norm's shift
        bias = bias or (norm_position == "after_act" and norm != "none-nobias")
        linear = nn.Linear(fan_in, width, bias=bias)
        norm_layer = create_norm_layer(layer_name, width, spatial_dims=0, **(norm_kwargs or {}))
        activation = create_act_layer(act)
        if norm_position == "before_act":
            return [linear, norm_layer, activation]
        return [linear, activation, norm_layer]

    def reset_parameters(self) -> None:
        """He (MSR) initialisation of the linear weights, zero biases; the NormProp and MimicNorm
        norms initialise as their policy says (Xavier; N(0, 2/fan_in) and weight mean)."""
        if self.policy is not None:
            self.policy.initialize(self, mimic_linear=True)
            return
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_norm(self.layers(x))


@register_model(
    "mlp",
    ModelInfo(
        summary="MLP: [Linear → norm → act] × len(hidden) → Linear (DBN F2-F4, MimicNorm MN-F2)",
        norms=(*MLP_NORMS, *POLICY_NORMS),
        acts=MLP_ACTS,
        input_shape=(64,),
        options="in_features, hidden (widths) or depth and width, norm_position (before_act | after_act)",
        tiny={"in_features": 64, "hidden": (16, 16)},
    ),
)
def mlp(
    num_classes: int,
    in_features: int = 64,
    hidden: Sequence[int] | None = None,
    norm: str = "bn",
    act: str = "relu",
    norm_position: str = "before_act",
    depth: int | None = None,
    width: int = 128,
    **norm_kwargs,
) -> MLP:
    """``build_model("mlp", num_classes, in_features=..., hidden=..., norm=..., act=...)``.

    ``hidden`` lists the hidden widths (default two layers of 128); ``depth=d`` instead gives
    ``d`` hidden layers of ``width`` units (a straight stack whose depth is one number, for depth
    sweeps). Extra keyword arguments (``group_size``, ``eps``, ``drop_prob``, ...) go to the norm
    layer.
    """
    if depth is not None:
        if hidden is not None:
            raise ValueError("mlp: give hidden (the widths) or depth and width, not both")
        for name, value in (("depth", depth), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"mlp: {name} must be a positive int, got {value!r}")
        hidden = [width] * depth
    elif hidden is None:
        hidden = (128, 128)
    return MLP(in_features, num_classes, hidden, norm, act, norm_position, norm_kwargs)
