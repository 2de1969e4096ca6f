"""VGG (Simonyan & Zisserman 2015) for DBN-F5 (VGG-A, CIFAR-10) and MimicNorm (VGG11/16; MN-T1,
MN-T2, MN-F6-7 on CIFAR-100, MN-T3 on ImageNet).

Convolutions (3×3, stride 1, padding 1), ``M`` = 2×2 max-pool:

=========  =================================================================================
variant    layout (configuration of Simonyan & Zisserman Table 1)
=========  =================================================================================
``A``      64 M 128 M 256 256 M 512 512 M 512 512 M  (configuration A, 8 convs)
``11``     the same convs as ``A`` (VGG11)
``16``     64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M  (configuration D)
=========  =================================================================================

Each conv is a unit of ``policy.conv`` → ``policy.norm`` → ``policy.act`` (``norm_position``
below). On 32×32 CIFAR images the five pools leave 1×1×512. Heads (``head``; ``None`` picks the
variant's paper head):

- ``fc512`` (default for ``A``): DBN's VGG-A head (official Lua ``models/Conv/vggA_*.lua``):
  FC-512 (``policy.linear``) → ``policy.norm(512, spatial_dims=0)`` → act → Linear(512, classes).
  The FC layer always keeps the Linear → norm → act order, as in every official VGG-A file.
- ``fc4096`` (default for ``11`` and ``16``): MimicNorm's CIFAR head. Our reading of the official
  code (Kid-key/MimicNorm ``Cifar100/models/vgg.py`` and ``vgg_nobn.py``, the pytorch-cifar100
  layout) is *not* a single linear layer: it is Linear(512, 4096) → ReLU → Dropout →
  Linear(4096, 4096) → ReLU → Dropout → Linear(4096, classes), with no norm in the classifier
  (MimicNorm's last BN follows the logits). The hidden layers are plain ``nn.Linear`` with bias,
  whatever the norm; the activation is the policy's.
- ``linear``: the common CIFAR VGG (conv stack + one Linear(512, classes); 14.7M parameters for
  VGG16 on CIFAR-10), for comparisons with that literature.
- ``imagenet``: VGG for 224×224 images (MN-T3): adaptive average pool to 7×7 (a no-op at 224),
  then the ``fc4096`` head on 512·7·7 features. VGG16 without BN (``norm="none"``) has
  138,357,544 parameters for 1000 classes (Simonyan & Zisserman: 138M).

Parameters with BN (convs without bias, BN's β replaces it): CIFAR VGG16 14,724,042 with
``head="linear"`` and 10 classes (the common 14.7M; kuangliu/pytorch-cifar's 14,728,266 keeps the
4,224 conv biases), 34,011,172 with ``fc4096`` and 100 classes (pytorch-cifar100 reports 34.0M);
VGG-A with ``fc512``, 10 classes: 9,491,530.

``dropout`` (default 0.5) is the drop probability of the ``fc4096``/``imagenet`` heads.
``width_multiplier`` scales every conv width and the hidden FC widths (tiny CPU configurations).

``norm_position`` (DBN-F5):

- ``before_act`` (default): conv → norm → act (Fig. 5 a–c).
- ``after_act``: conv → act → norm, the paper's words for Fig. 5d ("inserting BN/DBN after the
  non-linearity").
- ``before_conv``: norm → conv → act, what the official Fig. 5d models (``vggA_batch_var.lua``,
  ``vggA_DBN_var.lua``) actually build: the norm sits on each conv's *input* — after the previous
  activation and max-pool, and on the RGB image itself for the first conv; the last conv's output
  goes unnormalised into the FC head.

In the last two positions the convs of BN-like norms still have no bias (the policy's rule; the
official Lua convs keep Torch's default bias): the preceding norm's β shifts each conv's input,
which acts as a bias except at the zero-padded borders and, for ``after_act``, the RGB conv.

Norms: ``bn``, ``none`` (biases, Xavier init), ``none-nobias``, ``dbn`` (every norm, the FC-512's
included, becomes DBN; the official Lua keeps a plain BN on the FC layer), ``dbn-l1``/
``dbn-scale-l1`` (the first conv unit's norm only), ``normprop2``/``normprop3`` (NormProp convs and
FC-512), ``mimic`` (no norm, :class:`~normbook.layers.LastBatchNorm` on the logits, weight mean,
convs initialised N(0, 2.8/fan_in) as in the official CIFAR ``vgg_nobn.py``; its ImageNet
``vgg.py`` uses 2.8/fan_out). No residual blocks, so no Fixup. Acts: ``relu``, ``elu`` (DBN-F5c),
``crelu`` (every layer after a CReLU takes twice its channels).

``final_act`` is the last activation before the classifier (the FC head's last activation, or the
last conv unit's for ``head="linear"``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from normbook.models.policy import NormPolicy, check_int_option, stage_widths
from normbook.models.registry import ModelInfo, register_model

FAMILY = "vgg"
POOL = "M"
# conv widths and pools (Simonyan & Zisserman 2015, Table 1: configurations A and D)
CONFIGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    "11": (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    "16": (
        *(64, 64, POOL, 128, 128, POOL),
        *(256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
    ),
}
VARIANTS: tuple[str, ...] = tuple(CONFIGS)
HEADS: tuple[str, ...] = ("fc512", "fc4096", "linear", "imagenet")
DEFAULT_HEAD = {"A": "fc512", "11": "fc4096", "16": "fc4096"}
NORM_POSITIONS: tuple[str, ...] = ("before_act", "after_act", "before_conv")
VGG_NORMS: tuple[str, ...] = (
    "bn",
    "none",
    "none-nobias",
    "dbn",
    "dbn-l1",
    "dbn-scale-l1",
    "normprop2",
    "normprop3",
    "mimic",
)
VGG_ACTS: tuple[str, ...] = ("relu", "crelu", "elu")
FC512_WIDTH = 512
FC4096_WIDTH = 4096
IMAGENET_POOL = 7
MIMIC_GAIN = 2.8  # official code: conv init N(0, 2.8/fan_in) for VGG (PAPERS.md MN)
# the order of a unit's layers per norm_position
_UNIT_ORDER = {
    "before_act": ("conv", "norm", "act"),
    "after_act": ("conv", "act", "norm"),
    "before_conv": ("norm", "conv", "act"),
}


def _sequential(layers: list[tuple[str, nn.Module]]) -> nn.Sequential:
    """An ``nn.Sequential`` of the named layers, leaving out a policy's identities."""
    return nn.Sequential(OrderedDict((k, m) for k, m in layers if not isinstance(m, nn.Identity)))


class VGG(nn.Module):
    """``features`` (conv units and max-pools) → ``avgpool`` → ``flatten`` → ``classifier`` →
    ``head_norm`` (see the module docstring; PAPERS.md DBN-F5, MN-T1, MN-T2, MN-T3)."""

    def __init__(
        self,
        num_classes: int,
        variant: str = "A",
        *,
        head: str | None = None,
        norm_position: str = "before_act",
        width_multiplier: float = 1.0,
        dropout: float = 0.5,
        in_channels: int = 3,
        norm: str = "bn",
        act: str = "relu",
        init: str | None = None,
        norm_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        in_channels = check_int_option(in_channels, "in_channels", FAMILY)
        policy = NormPolicy(
            FAMILY, norm, act, norms=VGG_NORMS, acts=VGG_ACTS, init=init, **(norm_kwargs or {})
        )
        if isinstance(variant, int) and not isinstance(variant, bool):
            variant = str(variant)
        if variant not in CONFIGS:
            raise ValueError(
                f"{FAMILY}: variant must be one of {', '.join(VARIANTS)}, got {variant!r}"
            )
        head = DEFAULT_HEAD[variant] if head is None else head
        if head not in HEADS:
            raise ValueError(f"{FAMILY}: head must be one of {', '.join(HEADS)}, got {head!r}")
        if norm_position not in NORM_POSITIONS:
            raise ValueError(
                f"{FAMILY}: norm_position must be one of {', '.join(NORM_POSITIONS)},"
                f" got {norm_position!r}"
            )
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"{FAMILY}: dropout must be a float in [0, 1), got {dropout!r}")
        config = CONFIGS[variant]
        conv_widths = [w for w in config if w != POOL]
        scaled = iter(stage_widths(conv_widths, width_multiplier, FAMILY))
        fc512, fc4096 = stage_widths((FC512_WIDTH, FC4096_WIDTH), width_multiplier, FAMILY)
        self.variant, self.head, self.norm_position = variant, head, norm_position
        multiplier = policy.act_multiplier

        # features: conv units in forward order (dbn-l1 replaces the first norm built)
        layers: list[tuple[str, nn.Module]] = []
        acts: list[nn.Module] = []
        channels, unit, pool = in_channels, 0, 0
        for item in config:
            if item == POOL:
                pool += 1
                layers.append((f"pool{pool}", nn.MaxPool2d(kernel_size=2, stride=2)))
                continue
            unit += 1
            width = next(scaled)
            for token in _UNIT_ORDER[norm_position]:
                if token == "conv":
                    layers.append((f"conv{unit}", policy.conv(channels, width, 3)))
                    channels = width
                elif token == "norm":
                    layers.append((f"norm{unit}", policy.norm(channels)))
                else:
                    acts.append(policy.act())
                    layers.append((f"act{unit}", acts[-1]))
                    channels *= multiplier
        self.features = _sequential(layers)
        self.num_features = channels
        imagenet = head == "imagenet"
        self.avgpool: nn.Module = nn.AdaptiveAvgPool2d(IMAGENET_POOL) if imagenet else nn.Identity()
        self.flatten = nn.Flatten()

        # classifier
        features = channels * (IMAGENET_POOL**2 if imagenet else 1)
        classifier: list[tuple[str, nn.Module]] = []
        if head == "fc512":
            acts.append(policy.act())
            classifier += [
                ("fc1", policy.linear(features, fc512)),
                ("norm1", policy.norm(fc512, spatial_dims=0)),
                ("act1", acts[-1]),
            ]
            features = fc512 * multiplier
        elif head in ("fc4096", "imagenet"):
            for i in (1, 2):
                acts.append(policy.act())
                classifier += [
                    (f"fc{i}", nn.Linear(features, fc4096)),
                    (f"act{i}", acts[-1]),
                    (f"dropout{i}", nn.Dropout(dropout) if dropout > 0 else nn.Identity()),
                ]
                features = fc4096 * multiplier
        classifier.append(("fc", nn.Linear(features, num_classes)))
        self.classifier = _sequential(classifier)
        self.head_norm = policy.head_norm(num_classes)
        self.__dict__["_final_act"] = acts[-1]  # a reference, not a second registration
        self.policy = policy
        policy.initialize(self, mimic_gain=MIMIC_GAIN)

    @property
    def final_act(self) -> nn.Module:
        """The last activation module before the classifier (NP-T1's "after the last ReLU")."""
        return self._final_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        if self.head != "imagenet" and x.shape[-2:] != (1, 1):
            raise ValueError(
                f"{FAMILY}: head={self.head!r} expects 32×32 inputs (1×1 after the five pools),"
                f" got {tuple(x.shape[-2:])} after them; use head='imagenet' for 224×224 images"
            )
        return self.head_norm(self.classifier(self.flatten(x)))


@register_model(
    FAMILY,
    ModelInfo(
        summary="VGG-A/11/16 (DBN-F5 with FC-512 head; MimicNorm MN-T1/T2 CIFAR, MN-T3 ImageNet)",
        norms=VGG_NORMS,
        acts=VGG_ACTS,
        input_shape=(3, 32, 32),
        options="variant (A | 11 | 16), head (fc512 | fc4096 | linear | imagenet; default by "
        "variant), norm_position (before_act | after_act | before_conv), width_multiplier, "
        "dropout (fc4096/imagenet heads), init",
        tiny={"variant": "A", "width_multiplier": 0.0625},
    ),
)
def vgg(
    num_classes: int,
    variant: str = "A",
    head: str | None = None,
    norm_position: str = "before_act",
    width_multiplier: float = 1.0,
    dropout: float = 0.5,
    in_channels: int = 3,
    norm: str = "bn",
    act: str = "relu",
    init: str | None = None,
    **norm_kwargs,
) -> VGG:
    """``build_model("vgg", num_classes, variant="A" | "11" | "16", head=..., norm=..., act=...)``.

    ``head=None`` is ``fc512`` for ``A`` (DBN-F5) and ``fc4096`` for ``11``/``16`` (MimicNorm's
    CIFAR code); ``head="imagenet"`` takes 224×224 images. Extra keyword arguments
    (``group_size``, ``eps``, ...) go to the normalization layers.
    """
    return VGG(
        num_classes,
        variant,
        head=head,
        norm_position=norm_position,
        width_multiplier=width_multiplier,
        dropout=dropout,
        in_channels=in_channels,
        norm=norm,
        act=act,
        init=init,
        norm_kwargs=norm_kwargs,
    )
