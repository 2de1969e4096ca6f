"""S-plain (Huang et al. 2018, DBN paper Sec. 5.2, Fig. 6; PAPERS.md DBN-F6).

"Follows the design of the residual network but removes the identity maps and uses the same
feature maps": the CIFAR ResNet skeleton (He 2016a) without shortcuts and with one width ``d``
everywhere (48 in Fig. 6a, 42 in Fig. 6b). Depth 6n+2 (20/32/44 in the paper): a 3×3 stem
conv-norm-act, three stages of 2n 3×3 conv-norm-act layers at 32×32, 16×16 and 8×8 (the first conv
of stages 2 and 3 has stride 2), global average pool, fc. ``norm="dbn"`` replaces every BN
(DBN-F6's comparison); ``dbn-l1``/``dbn-scale-l1`` only the stem's. Without residual blocks there
is no Fixup; ``mimic`` is weight mean, the last BN on the logits and MimicNorm's init.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from normbook.models.policy import NormPolicy, check_depth, check_int_option
from normbook.models.registry import ModelInfo, register_model

FAMILY = "splain"
SPLAIN_NORMS: tuple[str, ...] = (
    "bn",
    "none",
    "none-nobias",
    "dbn",
    "dbn-l1",
    "dbn-scale-l1",
    "mimic",
)
SPLAIN_ACTS: tuple[str, ...] = ("relu", "elu")


def _conv_norm_act(policy: NormPolicy, in_channels: int, width: int, stride: int) -> nn.Sequential:
    layers = OrderedDict(
        conv=policy.conv(in_channels, width, 3, stride),
        norm=policy.norm(width),
        act=policy.act(),
    )
    return nn.Sequential(
        OrderedDict((k, m) for k, m in layers.items() if not isinstance(m, nn.Identity))
    )


class SPlain(nn.Module):
    """stem (conv-norm-act) → layer1..3 (2n conv-norm-act each) → avgpool → fc → head_norm."""

    def __init__(
        self,
        num_classes: int,
        depth: int = 20,
        width: int = 48,
        *,
        in_channels: int = 3,
        norm: str = "bn",
        act: str = "relu",
        init: str | None = None,
        norm_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        in_channels = check_int_option(in_channels, "in_channels", FAMILY)
        policy = NormPolicy(
            FAMILY,
            norm,
            act,
            norms=SPLAIN_NORMS,
            acts=SPLAIN_ACTS,
            init=init,
            **(norm_kwargs or {}),
        )
        n = check_depth(depth, FAMILY, 6)
        width = check_int_option(width, "width", FAMILY)
        self.depth, self.width = depth, width
        self.stem = _conv_norm_act(policy, in_channels, width, 1)
        for stage in (1, 2, 3):
            layers = [
                _conv_norm_act(policy, width, width, 2 if stage > 1 and i == 0 else 1)
                for i in range(2 * n)
            ]
            self.add_module(f"layer{stage}", nn.Sequential(*layers))
        self.__dict__["_final_act"] = self.layer3[-1].act  # a reference, not a registration
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(width, num_classes)
        self.head_norm = policy.head_norm(num_classes)
        self.policy = policy
        policy.initialize(self)

    @property
    def final_act(self) -> nn.Module:
        """The last activation before pooling."""
        return self._final_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.head_norm(self.fc(self.flatten(self.avgpool(x))))


@register_model(
    FAMILY,
    ModelInfo(
        summary="S-plain (DBN-F6): the CIFAR ResNet skeleton without shortcuts, constant width",
        norms=SPLAIN_NORMS,
        acts=SPLAIN_ACTS,
        input_shape=(3, 32, 32),
        options="depth (6n+2), width (48; 42 in Fig. 6b), init",
        tiny={"depth": 8, "width": 8},
    ),
)
def splain(
    num_classes: int,
    depth: int = 20,
    width: int = 48,
    in_channels: int = 3,
    norm: str = "bn",
    act: str = "relu",
    init: str | None = None,
    **norm_kwargs,
) -> SPlain:
    """``build_model("splain", num_classes, depth=20, width=48, norm=..., act=...)``.

    Extra keyword arguments (``group_size``, ``eps``, ...) go to the normalization layers.
    """
    return SPlain(
        num_classes,
        depth,
        width,
        in_channels=in_channels,
        norm=norm,
        act=act,
        init=init,
        norm_kwargs=norm_kwargs,
    )
