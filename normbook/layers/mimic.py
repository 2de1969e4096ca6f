"""MimicNorm (2021): weight mean, last BN on the logits, residual scale and init (PAPERS.md MN,
"Implementation facts"; MN-TH3).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from normbook.layers._checks import check_features_input, check_positive_int
from normbook.layers.batchnorm import check_bn_args
from normbook.layers.factory import register_norm_layer


def _conv_modules(module: nn.Module, linear: bool = False) -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of every non-transposed Conv1d/2d/3d (weight = out × in/groups × k…),
    and of every ``nn.Linear`` (weight = out × in) when ``linear``."""
    return [
        (name, m)
        for name, m in module.named_modules()
        if (isinstance(m, nn.modules.conv._ConvNd) and not m.transposed)
        or (linear and isinstance(m, nn.Linear))
    ]


def _filter_fan_in(weight: torch.Tensor) -> int:
    """Per-filter fan-in of a conv weight (out, in/groups, k…): in·∏k/groups = weight[0].numel()."""
    return weight[0].numel()


def weight_mean_(module: nn.Module, min_fan_in: int = 50, *, linear: bool = False) -> list[str]:
    """Subtract each conv filter's mean over (in, k…) in place (MimicNorm weight mean, MN-TH3).

    Rule of the official code (PAPERS.md MN): only convs whose per-filter fan-in
    in·kh·kw/groups (= ``weight[0].numel()``) is strictly greater than ``min_fan_in``; this skips
    the RGB stem (3·3·3 = 27), depthwise convs and small 1×1 convs. Linear layers are excluded
    unless ``linear=True`` (fully connected nets, the setting of MN-TH3's derivation: each row of
    the weight matrix loses its mean, with the same fan-in rule). Gradients are not touched.
    Returns the qualified names of the layers it changed.
    """
    check_positive_int(min_fan_in, "min_fan_in", minimum=0)
    touched = []
    with torch.no_grad():
        for name, conv in _conv_modules(module, linear):
            w = conv.weight
            if _filter_fan_in(w) > min_fan_in:
                w.sub_(w.mean(dim=tuple(range(1, w.dim())), keepdim=True))
                touched.append(name)
    return touched


class WeightMean:
    """Re-apply :func:`weight_mean_` to ``module`` after every optimizer step (a projection).

    Use as a training callback (``on_step_end(state)``) or call it directly after
    ``optimizer.step()``; :func:`attach_weight_mean` registers it as an optimizer post-step hook.
    """

    def __init__(self, module: nn.Module, min_fan_in: int = 50, *, linear: bool = False) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
        self.module = module
        self.min_fan_in = check_positive_int(min_fan_in, "min_fan_in", minimum=0)
        self.linear = bool(linear)

    def __call__(self, *_args: object, **_kwargs: object) -> list[str]:
        """Apply the projection now (extra arguments, e.g. from an optimizer hook, are ignored)."""
        return weight_mean_(self.module, self.min_fan_in, linear=self.linear)

    def on_step_end(self, state: object) -> None:
        """Training-loop callback: project after the optimizer step (``state`` is unused)."""
        self()

    def on_epoch_end(self, state: object) -> None:
        """Nothing to do at epoch end (present for the callback protocol)."""


def attach_weight_mean(
    optimizer: torch.optim.Optimizer, model: nn.Module, min_fan_in: int = 50
) -> torch.utils.hooks.RemovableHandle:
    """Apply weight mean now (MimicNorm applies it at init) and after every ``optimizer.step()``.

    Returns the hook handle; ``handle.remove()`` detaches it.
    """
    projection = WeightMean(model, min_fan_in)
    projection()
    return optimizer.register_step_post_hook(projection)


def mimic_init_(module: nn.Module, gain: float = 2.0, *, linear: bool = False) -> list[str]:
    """Initialise every conv weight (and linear weight when ``linear``) from N(0, gain/fan_in),
    biases to zero (MimicNorm init).

    ``gain=2`` is He's; the official VGG code uses 2.8, close to the weight-mean stable value
    σ_w² = 2π/(π−1) ≈ 2.93 derived in PAPERS.md MN (arc-cosine kernel). Returns the names touched.
    """
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain > 0:
        raise ValueError(f"gain must be a positive float, got {gain!r}")
    names = []
    with torch.no_grad():
        for name, conv in _conv_modules(module, linear):
            conv.weight.normal_(0.0, math.sqrt(gain / _filter_fan_in(conv.weight)))
            if conv.bias is not None:
                conv.bias.zero_()
            names.append(name)
    return names


class LastBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d on the logits without affine parameters (MimicNorm "last BN", PAPERS.md MN)."""

    def __init__(self, num_classes: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        check_bn_args(num_classes, eps, momentum, "LastBatchNorm")
        super().__init__(num_classes, eps=eps, momentum=momentum, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features_input(
            x, self.num_features, "LastBatchNorm", ranks=(2,), training=self.training
        )
        return super().forward(x)


@register_norm_layer("last_bn")
def _build_last_bn(num_features: int, *, spatial_dims: int = 0, **kwargs) -> LastBatchNorm:
    """Last BN on N×num_classes logits."""
    return LastBatchNorm(num_features, **kwargs)


class ResidualScale(nn.Module):
    """A learnable scalar multiplying the end of a residual branch (MimicNorm; init 1.2^L/k)."""

    def __init__(self, init: float) -> None:
        super().__init__()
        if isinstance(init, bool) or not isinstance(init, (int, float)) or not math.isfinite(init):
            raise ValueError(f"ResidualScale: init must be a finite float, got {init!r}")
        self.init = float(init)
        self.scale = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.scale.fill_(self.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale.item():.6g}"


def mimic_residual_init(block_index: int, convs_in_branch: int) -> float:
    """Initial residual scale 1.2^L / k (L convs in the branch, k the 1-based block index)."""
    k = check_positive_int(block_index, "block_index")
    n_convs = check_positive_int(convs_in_branch, "convs_in_branch")
    return 1.2**n_convs / k
