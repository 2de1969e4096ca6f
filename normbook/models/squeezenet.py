"""SqueezeNet (Iandola et al. 2016) for CIFAR, as MimicNorm trains it on CIFAR-100 (PAPERS.md MN-T1).

Our reading. The MimicNorm paper names only "SqueezeNet" (and cites Hu et al.'s SE-Net for it, a
citation slip); its official code (Kid-key/MimicNorm, ``Cifar100/models/squeezenet*.py``) uses the
layout of the "pytorch-cifar100" repository, which is *not* SqueezeNet 1.1 but SqueezeNet 1.0's
channel plan with the paper's "simple bypass" (Iandola et al. Sec. 6), adapted to 32×32 inputs:

- stem: 3×3 stride-1 conv with 96 channels, norm, activation, 2×2 max-pool (32→16);
- Fire modules ``fire2``..``fire9`` with (in, out, squeeze) = (96,128,16), (128,128,16),
  (128,256,32), (256,256,32), (256,384,48), (384,384,48), (384,512,64), (512,512,64) (1.0's
  Table 1); a Fire module is a 1×1 squeeze conv (norm, activation) feeding a 1×1 and a 3×3
  expand conv of out/2 channels each (each with its norm), concatenated, then the activation;
- simple bypass (identity addition) around ``fire3``, ``fire5`` and ``fire7`` (the layout has none
  around ``fire9``, which the paper also bypasses); 2×2 max-pools after ``fire4`` and ``fire8``;
- classifier: ``conv10``, a 1×1 conv (with bias) from 512 channels to ``num_classes``, then global
  average pooling (no activation after ``conv10``, no dropout).

``bypass=False`` removes the three identity additions (plain SqueezeNet 1.0 on CIFAR).

Norms: ``bn`` (BN after every conv but ``conv10``, as in that layout), ``none`` (convs with bias,
Xavier init), ``mimic`` (no BN, :class:`~normbook.layers.LastBatchNorm` after the pooled logits,
conv init N(0, 2.8/fan_in) as the official ``squeezenet_nobn.py`` uses (with its fan-in
k²·max(4, in) for the RGB stem: :func:`~normbook.models.shufflenet.mimic_narrow_fan_in_`), weight mean on every conv
with fan-in > 50 — which includes ``conv10``, a conv, as in the official code — and no scalar on
the bypasses, which the official code does not have either). The layout's convs carry a bias even
before BN; here, as everywhere in normbook, a conv has a bias only where no norm follows it
(``none``) and ``conv10`` always has one. Parameter count for 100 classes: 778,180 with BN
(pytorch-cifar100 reports 0.78M for its version, whose biases on the 25 convs before a BN add 2,976:
781,156), 775,204 for ``none`` and 772,228 for ``mimic`` (the policy's mimic convs have no bias;
the official ``squeezenet_nobn.py`` keeps them: 775,204).

``final_act`` is ``fire9``'s last activation (on the concatenated expand outputs), the input of
``conv10``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from normbook.models.policy import NormPolicy, check_int_option
from normbook.models.registry import ModelInfo, register_model
from normbook.models.resnet_cifar import LayerSequence
from normbook.models.shufflenet import mimic_narrow_fan_in_

FAMILY = "squeezenet"
NORMS: tuple[str, ...] = ("bn", "none", "mimic")
ACTS: tuple[str, ...] = ("relu",)
STEM_CHANNELS = 96
# (in, out, squeeze) channels of fire2..fire9 (Iandola et al. 2016 Table 1, SqueezeNet 1.0)
FIRE_CHANNELS: tuple[tuple[int, int, int], ...] = (
    (96, 128, 16),
    (128, 128, 16),
    (128, 256, 32),
    (256, 256, 32),
    (256, 384, 48),
    (384, 384, 48),
    (384, 512, 64),
    (512, 512, 64),
)
BYPASS_FIRES: tuple[int, ...] = (3, 5, 7)  # simple bypass in the pytorch-cifar100 layout
POOL_AFTER: tuple[int, ...] = (4, 8)  # 2×2 max-pool after these Fire modules
MIMIC_GAIN = 2.8  # official squeezenet_nobn.py: N(0, 2.8/fan_in)


def _conv_norm(policy: NormPolicy, in_channels: int, out_channels: int, kernel_size: int):
    """Conv → norm (no activation), an ``nn.Sequential`` named ``conv1``, ``norm1``."""
    layers = LayerSequence(policy, in_channels)
    return layers.build(("conv", "norm"), [(out_channels, kernel_size, 1)], False).sequential()


class Fire(nn.Module):
    """Fire module: ``act(cat(expand1x1(s), expand3x3(s))) [+ x]`` with ``s = squeeze(x)``.

    ``squeeze`` is conv 1×1 → norm → act; each expand branch is conv → norm; one activation
    module (``expand_act``) follows the concatenation (ReLU acts per element, so this equals an
    activation per branch) so that the Fire output comes from a single module.
    """

    def __init__(
        self,
        policy: NormPolicy,
        in_channels: int,
        out_channels: int,
        squeeze_channels: int,
        *,
        bypass: bool = False,
    ) -> None:
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"{FAMILY}: Fire out_channels must be even, got {out_channels}")
        if bypass and in_channels != out_channels:
            raise ValueError(f"{FAMILY}: a bypass needs in_channels == out_channels")
        squeeze = LayerSequence(policy, in_channels)
        squeeze.build(("conv", "norm", "act"), [(squeeze_channels, 1, 1)], False)
        self.squeeze = squeeze.sequential()
        self.expand1x1 = _conv_norm(policy, squeeze_channels, out_channels // 2, 1)
        self.expand3x3 = _conv_norm(policy, squeeze_channels, out_channels // 2, 3)
        self.expand_act = policy.act()
        self.bypass = bypass
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        out = self.expand_act(torch.cat([self.expand1x1(s), self.expand3x3(s)], dim=1))
        return out + x if self.bypass else out

    def extra_repr(self) -> str:
        return f"bypass={self.bypass}"


class SqueezeNet(nn.Module):
    """CIFAR SqueezeNet: stem → fire2..fire9 (max-pools after fire4, fire8) → conv10 → avgpool →
    head_norm; see the module docstring for the layout and MimicNorm's placement (MN-T1)."""

    def __init__(
        self,
        num_classes: int,
        *,
        bypass: bool = True,
        in_channels: int = 3,
        norm: str = "bn",
        act: str = "relu",
        init: str | None = None,
        norm_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        in_channels = check_int_option(in_channels, "in_channels", FAMILY)
        policy = NormPolicy(
            FAMILY, norm, act, norms=NORMS, acts=ACTS, init=init, **(norm_kwargs or {})
        )
        if not isinstance(bypass, bool):
            raise ValueError(f"{FAMILY}: bypass must be True or False, got {bypass!r}")
        stem = LayerSequence(policy, in_channels)
        stem.build(("conv", "norm", "act"), [(STEM_CHANNELS, 3, 1)], False)
        stem.add("pool", nn.MaxPool2d(2, 2))
        self.stem = stem.sequential()
        fires = []
        for index, (cin, cout, squeeze) in enumerate(FIRE_CHANNELS, start=2):
            fire = Fire(policy, cin, cout, squeeze, bypass=bypass and index in BYPASS_FIRES)
            self.add_module(f"fire{index}", fire)
            fires.append(fire)
            if index in POOL_AFTER:
                self.add_module(f"pool{index}", nn.MaxPool2d(2, 2))
        self.__dict__["_final_act"] = fires[-1].expand_act  # a reference, not a registration
        self.bypass = bypass
        self.num_features = FIRE_CHANNELS[-1][1]
        self.conv10 = nn.Conv2d(self.num_features, num_classes, 1)  # the classifier
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head_norm = policy.head_norm(num_classes)
        self.policy = policy
        policy.initialize(self, mimic_gain=MIMIC_GAIN)
        if policy.init == "mimic":
            mimic_narrow_fan_in_(self)  # official init: fan-in of the RGB stem counted as 9·4

    @property
    def final_act(self) -> nn.Module:
        """``fire9``'s activation: the last one before ``conv10`` and the pooling."""
        return self._final_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for index in range(2, 2 + len(FIRE_CHANNELS)):
            x = getattr(self, f"fire{index}")(x)
            if index in POOL_AFTER:
                x = getattr(self, f"pool{index}")(x)
        x = self.flatten(self.avgpool(self.conv10(x)))
        return self.head_norm(x)


@register_model(
    FAMILY,
    ModelInfo(
        summary="SqueezeNet for CIFAR (1.0 widths + simple bypass, pytorch-cifar100 layout as in"
        " MimicNorm's code; MN-T1)",
        norms=NORMS,
        acts=ACTS,
        input_shape=(3, 32, 32),
        options="bypass (simple bypass around fire3/5/7), init",
        tiny={},
    ),
)
def squeezenet(
    num_classes: int,
    bypass: bool = True,
    in_channels: int = 3,
    norm: str = "bn",
    act: str = "relu",
    init: str | None = None,
    **norm_kwargs,
) -> SqueezeNet:
    """``build_model("squeezenet", num_classes, norm=..., bypass=...)``.

    Extra keyword arguments (``eps``, ``momentum``, ...) go to the normalization layers through
    :class:`~normbook.models.policy.NormPolicy`.
    """
    return SqueezeNet(
        num_classes,
        bypass=bypass,
        in_channels=in_channels,
        norm=norm,
        act=act,
        init=init,
        norm_kwargs=norm_kwargs,
    )
