"""The model-level normalization policy: what every family's blocks ask for, never branching on names.

A model takes ``norm=`` and ``act=`` (DESIGN.md "Models to follow": timm's ``create_norm_layer``,
torchvision's ``norm_layer`` callable). :class:`NormPolicy` turns those strings into layer
builders once; blocks then call ``policy.conv``, ``policy.norm``, ``policy.act``, ... in forward
order. Model-level norm names (issue "Models", PAPERS.md):

========================  =============================================================================
``bn``                    BatchNorm after every weight layer; He (MSR) init
``none``                  no normalization, weight layers with bias; Xavier init (Shang et al. "plain")
``none-nobias``           no normalization and no bias; Xavier init (Shang et al. Table 2 "no bias")
``dbn``                   every BN replaced by :class:`~normbook.layers.DecorrelatedBatchNorm`
``dbn-l1``                only the first BN replaced by DBN without scale/shift (DBN Table 1)
``dbn-scale-l1``          only the first BN replaced by DBN with per-channel γ, β (DBN-scale, Table 1-3)
``ic``                    IC layers (BN + Dropout) before weight layers, placed by the family's unit order
``normprop1/2/3``         NormProp conv/linear layers (NP-EQ); variant 1 uses the NormProp ReLU; BN on
                          the identity path where the spatial size drops (Shang et al. footnote 2)
``mimic``                 no BN except :class:`~normbook.layers.LastBatchNorm` on the logits, learnable
                          residual scales 1.2^L/k, N(0, gain/fan_in) init; weight mean at init and,
                          through :func:`training_callbacks`, after every step (``weight_mean=False``
                          / ``last_bn=False`` switch a part off: MN-T2)
``fixup``                 no normalization; Fixup init (Zhang et al. 2019): scalar biases, a scalar
                          multiplier per branch, zero last layer per branch and zero classifier
========================  =============================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn as nn

from normbook.layers import (
    LastBatchNorm,
    NormPropConv2d,
    NormPropLinear,
    ResidualScale,
    WeightMean,
    act_channel_multiplier,
    create_act_layer,
    create_norm_layer,
    mimic_init_,
    mimic_residual_init,
    weight_mean_,
)

MODEL_NORMS: tuple[str, ...] = (
    "bn",
    "none",
    "none-nobias",
    "dbn",
    "dbn-l1",
    "dbn-scale-l1",
    "ic",
    "normprop1",
    "normprop2",
    "normprop3",
    "mimic",
    "fixup",
)
MIMIC_OPTIONS = ("weight_mean", "last_bn")  # MN-T2 ablation: switch either part of MimicNorm off
WEIGHT_MEAN_MIN_FAN_IN = 50  # official code: only convs with in·kh·kw/groups > 50 (PAPERS.md MN)
MODEL_ACTS: tuple[str, ...] = ("relu", "crelu", "elu")
INITS: tuple[str, ...] = ("he", "xavier", "mimic", "fixup")
NORMPROP = {"normprop1": 1, "normprop2": 2, "normprop3": 3}
_DEFAULT_INIT = {
    "none": "xavier",
    "none-nobias": "xavier",
    "normprop1": "xavier",
    "normprop2": "xavier",
    "normprop3": "xavier",
    "mimic": "mimic",
    "fixup": "fixup",
}
# keyword arguments of the norm layers that a model passes through (``group_size``, ``eps``, ...)
_NO_LAYER_KWARGS = ("none", "none-nobias", "mimic", "fixup")


class ScalarBias(nn.Module):
    """A learnable scalar added to the input (Fixup's bias before each layer), initialised to 0."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class ResidualBlock(nn.Module):
    """Base of every residual block: block hooks (NP-F2's Δ) and Fixup find blocks by this type.

    Subclasses list their residual branch's weight layers, in order, in ``branch_weights()``.
    """

    def branch_weights(self) -> list[nn.Module]:
        raise NotImplementedError


def add_stages(
    model: nn.Module,
    in_channels: int,
    widths: Sequence[int],
    blocks_per_stage: Sequence[int],
    make_block: Callable[[int, int, int, int], ResidualBlock],
) -> tuple[int, list[nn.Module]]:
    """Add the residual stages ``layer1``, ``layer2``, ... to ``model`` (He et al. 2016 layout).

    Stage ``s`` has ``blocks_per_stage[s]`` blocks of width ``widths[s]``; the first block of
    every stage but the first has stride 2. ``make_block(in_channels, width, stride,
    block_index)`` builds a block (``block_index`` counts from 1 over the whole net, as MimicNorm's
    residual scales 1.2^L/k need) with ``out_channels`` and ``acts``. Returns the last stage's
    output channels and every block's activation modules in forward order.
    """
    channels, block_index, acts = in_channels, 0, []
    for stage, (width, n) in enumerate(zip(widths, blocks_per_stage, strict=True), start=1):
        blocks = []
        for i in range(n):
            block_index += 1
            block = make_block(channels, width, 2 if stage > 1 and i == 0 else 1, block_index)
            blocks.append(block)
            acts += block.acts
            channels = block.out_channels
        model.add_module(f"layer{stage}", nn.Sequential(*blocks))
    return channels, acts


class NormPolicy:
    """Layer builders for one model, resolved from ``norm``/``act`` (see the module table).

    Build one policy per model and call its builders in forward order: ``dbn-l1`` and
    ``dbn-scale-l1`` replace the *first* normalization layer built. ``norm_kwargs``
    (``group_size``, ``eps``, ``momentum``, ``drop_prob``, ...) go to the normalization layers.
    """

    def __init__(
        self,
        family: str,
        norm: str = "bn",
        act: str = "relu",
        *,
        norms: Sequence[str] = MODEL_NORMS,
        acts: Sequence[str] = MODEL_ACTS,
        init: str | None = None,
        **norm_kwargs,
    ) -> None:
        if norm not in norms:
            raise ValueError(f"{family}: norm must be one of {', '.join(norms)}, got {norm!r}")
        if act not in acts:
            raise ValueError(f"{family}: act must be one of {', '.join(acts)}, got {act!r}")
        if norm == "normprop1" and act != "relu":
            raise ValueError(
                f"{family}: norm='normprop1' uses NormProp's own ReLU (NP-EQ) and needs act='relu';"
                " use normprop2 or normprop3 with crelu/elu"
            )
        init = init if init is not None else _DEFAULT_INIT.get(norm, "he")
        if init not in INITS:
            raise ValueError(f"{family}: init must be one of {', '.join(INITS)}, got {init!r}")
        if (init == "fixup") != (norm == "fixup"):
            raise ValueError(f"{family}: init='fixup' goes with norm='fixup' (and only with it)")
        mimic_options = {k: norm_kwargs.pop(k) for k in MIMIC_OPTIONS if k in norm_kwargs}
        if mimic_options and norm != "mimic":
            raise ValueError(
                f"{family}: {', '.join(sorted(mimic_options))} only apply to norm='mimic'"
            )
        for key, value in mimic_options.items():
            if not isinstance(value, bool):
                raise ValueError(f"{family}: {key} must be True or False, got {value!r}")
        if norm_kwargs and norm in _NO_LAYER_KWARGS:
            raise ValueError(
                f"{family}: norm={norm!r} has no normalization layer to take"
                f" {', '.join(sorted(norm_kwargs))}"
            )
        self.family, self.norm_name, self.act_name, self.init = family, norm, act, init
        self.norm_kwargs = norm_kwargs
        self.weight_mean = norm == "mimic" and mimic_options.get("weight_mean", True)
        self.last_bn = norm == "mimic" and mimic_options.get("last_bn", True)
        self._norms_built = 0

    # -- what the policy is ---------------------------------------------------------------------
    @property
    def normprop_variant(self) -> int | None:
        """1, 2 or 3 for the NormProp norms, else None."""
        return NORMPROP.get(self.norm_name)

    @property
    def weight_bias(self) -> bool:
        """Whether weight layers carry a bias (no normalization shift follows them)."""
        return self.norm_name in ("none", "normprop1", "normprop2", "normprop3")

    @property
    def act_multiplier(self) -> int:
        """Channels out of the activation per channel in (2 for CReLU: the next fan-in doubles)."""
        return act_channel_multiplier(self.act_name)

    @property
    def is_mimic(self) -> bool:
        return self.norm_name == "mimic"

    @property
    def is_fixup(self) -> bool:
        return self.norm_name == "fixup"

    # -- layers ---------------------------------------------------------------------------------
    def conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
    ) -> nn.Module:
        """A weight layer: ``nn.Conv2d`` (bias per :attr:`weight_bias`) or ``NormPropConv2d``."""
        padding = kernel_size // 2 if padding is None else padding
        variant = self.normprop_variant
        if variant is not None:
            if groups != 1:
                raise ValueError(f"{self.family}: NormProp has no grouped/depthwise convolution")
            return NormPropConv2d(
                in_channels, out_channels, kernel_size, stride, padding, variant=variant
            )
        return nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=groups,
            bias=self.weight_bias,
        )

    def linear(self, in_features: int, out_features: int) -> nn.Module:
        """A hidden fully-connected weight layer (``NormPropLinear`` for the NormProp norms)."""
        variant = self.normprop_variant
        if variant is not None:
            return NormPropLinear(in_features, out_features, variant=variant)
        return nn.Linear(in_features, out_features, bias=self.weight_bias)

    def norm(self, num_features: int, spatial_dims: int = 2) -> nn.Module:
        """The normalization after a weight layer (identity where the policy has none)."""
        first = self._norms_built == 0
        self._norms_built += 1
        name = self.norm_name
        if name in ("bn", "dbn"):
            return create_norm_layer(
                name, num_features, spatial_dims=spatial_dims, **self.norm_kwargs
            )
        if name in ("dbn-l1", "dbn-scale-l1"):
            if first:
                kwargs = {**self.norm_kwargs, "affine": name == "dbn-scale-l1"}
                return create_norm_layer("dbn", num_features, spatial_dims=spatial_dims, **kwargs)
            kwargs = {k: v for k, v in self.norm_kwargs.items() if k in ("eps", "momentum")}
            return create_norm_layer("bn", num_features, spatial_dims=spatial_dims, **kwargs)
        return nn.Identity()

    def ic(self, num_features: int) -> nn.Module:
        """An IC layer (BN + Dropout, IC paper) for the ``ic`` norm; identity otherwise."""
        if self.norm_name != "ic":
            return nn.Identity()
        return create_norm_layer("ic", num_features, **self.norm_kwargs)

    def act(self) -> nn.Module:
        """The activation (NormProp's centred, rescaled ReLU for ``normprop1``)."""
        if self.norm_name == "normprop1":
            return create_act_layer("normprop_relu")
        return create_act_layer(self.act_name)

    def shortcut_norm(self, num_features: int) -> nn.Module:
        """Normalization on a projection shortcut: BN for BN-like and NormProp models (Shang et al.
        footnote 2: BN on the identity path where the spatial size drops), identity otherwise."""
        if self.norm_name in ("bn", "dbn", "dbn-l1", "dbn-scale-l1", "ic") or self.normprop_variant:
            kwargs = {k: v for k, v in self.norm_kwargs.items() if k in ("eps", "momentum")}
            return create_norm_layer("bn", num_features, **kwargs)
        return nn.Identity()

    def shortcut_conv(self, in_channels: int, out_channels: int, stride: int) -> nn.Module:
        """A 1×1 projection on the identity path (plain ``nn.Conv2d`` in every policy)."""
        bias = self.norm_name in ("none", "mimic")
        return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias)

    def scalar_bias(self) -> nn.Module:
        """Fixup's scalar bias (before each weight layer and activation); identity otherwise."""
        return ScalarBias() if self.is_fixup else nn.Identity()

    def branch_scale(self, block_index: int, convs_in_branch: int) -> nn.Module:
        """End of a residual branch: MimicNorm's 1.2^L/k scalar, Fixup's multiplier (init 1)."""
        if self.is_mimic:
            return ResidualScale(mimic_residual_init(block_index, convs_in_branch))
        if self.is_fixup:
            return ResidualScale(1.0)
        return nn.Identity()

    def head_norm(self, num_classes: int) -> nn.Module:
        """MimicNorm's last BN on the logits (affine-free BatchNorm1d); identity otherwise."""
        return LastBatchNorm(num_classes) if self.last_bn else nn.Identity()

    # -- initialisation -------------------------------------------------------------------------
    def initialize(
        self, model: nn.Module, *, mimic_gain: float = 2.0, mimic_linear: bool = False
    ) -> nn.Module:
        """Initialise ``model``'s weight layers as the policy's paper says; returns ``model``.

        he: Kaiming normal (fan_out, fb.resnet.torch's MSR) for convs, torch default for linear
        layers; xavier: Xavier normal, zero biases; mimic: N(0, gain/fan_in) convs (MimicNorm; VGG
        uses ``mimic_gain=2.8``; ``mimic_linear=True`` extends the init and the weight mean to linear
        layers, for fully connected nets); fixup: :func:`fixup_init_`. Norm layers keep γ=1, β=0.
        """
        if self.weight_mean:  # MimicNorm: weight mean at init and after every step
            model.weight_mean_min_fan_in = WEIGHT_MEAN_MIN_FAN_IN
            model.weight_mean_linear = mimic_linear
        if self.init == "mimic":
            mimic_init_(model, gain=mimic_gain, linear=mimic_linear)
            if self.weight_mean:
                weight_mean_(model, WEIGHT_MEAN_MIN_FAN_IN, linear=mimic_linear)
            return model
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                if self.init == "xavier":
                    nn.init.xavier_normal_(module.weight)
                else:
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear) and self.init == "xavier":
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.init == "fixup":
            fixup_init_(model)
        if self.weight_mean:
            weight_mean_(model, WEIGHT_MEAN_MIN_FAN_IN, linear=mimic_linear)
        return model


def training_callbacks(model: nn.Module) -> list[WeightMean]:
    """Callbacks a model needs during training: MimicNorm's weight-mean projection after every
    optimizer step for models built with ``norm="mimic"`` (unwraps DDP's ``.module``)."""
    inner = getattr(model, "module", model)
    min_fan_in = getattr(inner, "weight_mean_min_fan_in", None)
    if min_fan_in is None:
        return []
    return [WeightMean(inner, min_fan_in, linear=getattr(inner, "weight_mean_linear", False))]


def residual_blocks(model: nn.Module) -> list[ResidualBlock]:
    """Every :class:`ResidualBlock` of ``model`` in registration (= forward) order."""
    return [m for m in model.modules() if isinstance(m, ResidualBlock)]


def fixup_init_(model: nn.Module) -> None:
    """Fixup (Zhang et al. 2019): with L residual branches of m weight layers each, scale the He
    init of a branch's first m−1 layers by L^{−1/(2m−2)}, zero its last layer and the classifier.
    Assumes He-initialised weights (call after the He init)."""
    blocks = residual_blocks(model)
    if not blocks:
        raise ValueError("fixup needs residual blocks; this model has none")
    with torch.no_grad():
        for block in blocks:
            layers = block.branch_weights()
            m = len(layers)
            if m > 1:
                factor = len(blocks) ** (-1.0 / (2 * m - 2))
                for layer in layers[:-1]:
                    layer.weight.mul_(factor)
            nn.init.zeros_(layers[-1].weight)
        classifier = _last_linear(model)
        nn.init.zeros_(classifier.weight)
        if classifier.bias is not None:
            nn.init.zeros_(classifier.bias)


def _last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("fixup needs a final nn.Linear classifier")
    return linears[-1]


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def stage_widths(widths: Iterable[int], width_multiplier: float, family: str) -> list[int]:
    """Explicit stage widths scaled by ``width_multiplier`` (rounded, at least 1)."""
    values = [int(w) for w in widths]
    if not values or any(w < 1 for w in values):
        raise ValueError(f"{family}: widths must be positive ints, got {list(widths)}")
    if isinstance(width_multiplier, bool) or not width_multiplier > 0:
        raise ValueError(f"{family}: width_multiplier must be > 0, got {width_multiplier!r}")
    return [max(1, int(round(w * width_multiplier))) for w in values]


def check_int_option(value: object, name: str, family: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a ValueError naming the family and option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{family}: {name} must be an int >= {minimum}, got {value!r}")
    return value


def check_depth(depth: object, family: str, step: int, offset: int = 2) -> int:
    """``depth = step·n + offset`` with n >= 1 (6n+2 basic, 9n+2 bottleneck); returns n."""
    depth = check_int_option(depth, "depth", family, minimum=step + offset)
    if (depth - offset) % step:
        raise ValueError(
            f"{family}: depth must be {step}n+{offset} (e.g. {step * 3 + offset}), got {depth}"
        )
    return (depth - offset) // step


__all__ = [
    "add_stages",
    "INITS",
    "MODEL_ACTS",
    "MODEL_NORMS",
    "NormPolicy",
    "ResidualBlock",
    "ScalarBias",
    "check_depth",
    "check_int_option",
    "count_parameters",
    "fixup_init_",
    "residual_blocks",
    "training_callbacks",
    "stage_widths",
]
