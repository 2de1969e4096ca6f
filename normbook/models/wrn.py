"""Wide Residual Networks (Zagoruyko & Komodakis 2016) for DBN-T2 (WRN-28-10, WRN-40-10 on
CIFAR-10/100, BN vs DBN-scale-L1).

WRN-d-k: depth d = 6n + 4, widen factor k. A 3×3 conv stem with 16 channels, three stages of n
pre-activation basic blocks with 16k, 32k and 64k channels at 32×32, 16×16 and 8×8 (stride 2 at
the first block of stages 2 and 3), then norm → act → global average pool → fc. A block is

    norm → act → conv 3×3 (stride) → norm → act → dropout → conv 3×3   (+ shortcut)

with a 1×1 projection (no norm, as in the official code) where the width or the stride changes. As
in the official Torch code (szagoruyko/wide-residual-networks, also used by the DBN authors), a
block with a projection applies its first norm → act to the block input *before* the split, so
branch and projection share it (``preact``); other blocks keep the raw input on the identity path.
``dropout`` (default 0.3, DBN's WRN recipe) is the drop probability between the two convs.

Norms: ``bn``; ``none`` (biases, Xavier init) and ``none-nobias``; ``dbn`` (every norm is DBN);
``dbn-l1``/``dbn-scale-l1``: "only one DBN module before the first residual block" (DBN Sec. 4.3).
The official DBN code (``models/Conv/wr_DBN_scale_L1.lua``) *inserts* that module — DBN with γ, β —
between the stem conv and the first block, and keeps every BN of the baseline (``wr_BN.lua``,
whose stem is a bare conv). So for these two norms (and only these) the stem gets a norm
(``stem_norm``), which is the first norm built and therefore the DBN; the blocks keep BN.
``mimic``: no norm, :class:`~normbook.layers.LastBatchNorm` on the logits, MimicNorm's residual
scale 1.2^2/k at each branch end (``policy.branch_scale(k, 2)``), weight mean. ``fixup``: no norm,
Fixup's scalar biases before every branch conv and activation and before the fc, a scalar
multiplier ending each branch, zero-initialised last branch conv and classifier.

Acts: ``relu``, ``elu``, ``crelu`` (Shang et al. 2017, NP-D1): CReLU is the activation between the
two convs of a branch, whose second conv then takes 2·width channels; the pre-activations (which
feed the identity/projection path in projection blocks) and the final activation stay ReLU, so the
identity path and the filter counts are unchanged.

Parameters, 10 classes: WRN-28-10 36,479,194 and WRN-40-10 55,841,754 with BN (the WRN authors'
36.5M and 55.8M). ``final_act`` is the activation before the pooling.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from normbook.layers import create_act_layer
from normbook.models.policy import (
    NormPolicy,
    ResidualBlock,
    add_stages,
    check_depth,
    check_int_option,
)
from normbook.models.registry import ModelInfo, register_model

FAMILY = "wrn"
STEM_WIDTH = 16
STAGE_WIDTHS = (16, 32, 64)  # × widen_factor
WRN_NORMS: tuple[str, ...] = (
    "bn",
    "none",
    "none-nobias",
    "dbn",
    "dbn-l1",
    "dbn-scale-l1",
    "mimic",
    "fixup",
)
WRN_ACTS: tuple[str, ...] = ("relu", "crelu", "elu")
# norms for which the stem conv is followed by the one DBN module (DBN-T2, wr_DBN_scale_L1.lua)
STEM_NORM_NORMS: tuple[str, ...] = ("dbn-l1", "dbn-scale-l1")


def _path_act(policy: NormPolicy) -> nn.Module:
    """An activation on the identity path or head: the policy's unless it changes the width."""
    return policy.act() if policy.act_multiplier == 1 else create_act_layer("relu")


def _sequential(layers: list[tuple[str, nn.Module]]) -> nn.Sequential:
    """An ``nn.Sequential`` of the named layers, leaving out a policy's identities."""
    return nn.Sequential(OrderedDict((k, m) for k, m in layers if not isinstance(m, nn.Identity)))


class WideBasicBlock(ResidualBlock):
    """Pre-activation wide basic block: ``branch(x') + shortcut(x')`` (see the module docstring).

    ``preact`` (norm → act) runs before the split in a projection block (``x' = preact(x)``) and is
    ``None`` otherwise (the branch starts with its own norm → act and ``x' = x``).
    """

    def __init__(
        self,
        policy: NormPolicy,
        in_channels: int,
        width: int,
        stride: int,
        dropout: float,
        block_index: int,
    ) -> None:
        super().__init__()
        projection = stride != 1 or in_channels != width
        first = [
            ("bias1", policy.scalar_bias()),
            ("norm1", policy.norm(in_channels)),
            ("act1", _path_act(policy)),
        ]
        self.preact = _sequential(first) if projection else None
        inner_act = policy.act()
        layers = ([] if projection else first) + [
            ("bias2", policy.scalar_bias()),
            ("conv1", policy.conv(in_channels, width, 3, stride)),
            ("norm2", policy.norm(width)),
            ("bias3", policy.scalar_bias()),
            ("act2", inner_act),
            ("dropout", nn.Dropout(dropout) if dropout > 0 else nn.Identity()),
            ("bias4", policy.scalar_bias()),
            ("conv2", policy.conv(width * policy.act_multiplier, width, 3)),
            ("scale", policy.branch_scale(block_index, 2)),
        ]
        self.branch = _sequential(layers)
        self.shortcut = (
            policy.shortcut_conv(in_channels, width, stride) if projection else nn.Identity()
        )
        self.acts = [m for name, m in first + layers if name.startswith("act")]
        self.in_channels, self.out_channels, self.stride = in_channels, width, stride

    def branch_weights(self) -> list[nn.Module]:
        return [self.branch.conv1, self.branch.conv2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact is not None:
            x = self.preact(x)
        return self.branch(x) + self.shortcut(x)


class WideResNet(nn.Module):
    """WRN-d-k: ``conv1`` (+ ``stem_norm``) → ``layer1..3`` → ``final`` (norm → act) →
    ``avgpool`` → ``fc`` → ``head_norm`` (PAPERS.md DBN-T2)."""

    def __init__(
        self,
        num_classes: int,
        depth: int = 28,
        widen_factor: int = 10,
        *,
        dropout: float = 0.3,
        in_channels: int = 3,
        norm: str = "bn",
        act: str = "relu",
        init: str | None = None,
        norm_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        in_channels = check_int_option(in_channels, "in_channels", FAMILY)
        policy = NormPolicy(
            FAMILY, norm, act, norms=WRN_NORMS, acts=WRN_ACTS, init=init, **(norm_kwargs or {})
        )
        n = check_depth(depth, FAMILY, 6, offset=4)
        widen_factor = check_int_option(widen_factor, "widen_factor", FAMILY)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"{FAMILY}: dropout must be a float in [0, 1), got {dropout!r}")
        self.depth, self.widen_factor, self.dropout = depth, widen_factor, dropout
        self.widths = tuple(w * widen_factor for w in STAGE_WIDTHS)

        self.conv1 = policy.conv(in_channels, STEM_WIDTH, 3)
        # DBN-T2: the one DBN module "before the first residual block" (family-local rule, see doc)
        self.stem_norm = policy.norm(STEM_WIDTH) if norm in STEM_NORM_NORMS else nn.Identity()
        channels, acts = add_stages(
            self,
            STEM_WIDTH,
            self.widths,
            [n] * len(self.widths),
            lambda c, w, stride, k: WideBasicBlock(policy, c, w, stride, dropout, k),
        )
        final_act = _path_act(policy)
        self.final = _sequential(
            [("bias", policy.scalar_bias()), ("norm", policy.norm(channels)), ("act", final_act)]
        )
        self.__dict__["_final_act"] = final_act  # a reference, not a second registration
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc_bias = policy.scalar_bias()  # Fixup's bias before the classifier
        self.fc = nn.Linear(channels, num_classes)
        self.head_norm = policy.head_norm(num_classes)
        self.policy = policy
        policy.initialize(self)

    @property
    def final_act(self) -> nn.Module:
        """The last activation module before pooling (NP-T1's "after the last ReLU")."""
        return self._final_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_norm(self.conv1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.flatten(self.avgpool(self.final(x)))
        return self.head_norm(self.fc(self.fc_bias(x)))


@register_model(
    FAMILY,
    ModelInfo(
        summary="Wide ResNet WRN-d-k (Zagoruyko & Komodakis 2016; DBN-T2): pre-activation"
        " basic blocks with dropout",
        norms=WRN_NORMS,
        acts=WRN_ACTS,
        input_shape=(3, 32, 32),
        options="depth (6n+4), widen_factor (k), dropout (0.3), init",
        tiny={"depth": 10, "widen_factor": 1},
    ),
)
def wrn(
    num_classes: int,
    depth: int = 28,
    widen_factor: int = 10,
    dropout: float = 0.3,
    in_channels: int = 3,
    norm: str = "bn",
    act: str = "relu",
    init: str | None = None,
    **norm_kwargs,
) -> WideResNet:
    """``build_model("wrn", num_classes, depth=28, widen_factor=10, dropout=0.3, norm=...)``.

    Extra keyword arguments (``group_size``, ``eps``, ...) go to the normalization layers.
    """
    return WideResNet(
        num_classes,
        depth,
        widen_factor,
        dropout=dropout,
        in_channels=in_channels,
        norm=norm,
        act=act,
        init=init,
        norm_kwargs=norm_kwargs,
    )
