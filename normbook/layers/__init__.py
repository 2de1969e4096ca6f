"""Every normalization layer of the four papers, and one factory that builds them by name.

Each module registers its layers with :mod:`normbook.layers.factory`; importing this package
imports them all, so ``create_norm_layer("dbn", 64)`` works after ``import normbook.layers``.
"""

from normbook.layers._checks import NonFiniteInputError
from normbook.layers.factory import (
    create_act_layer,
    create_norm_layer,
    list_act_layers,
    list_norm_layers,
    register_act_layer,
    register_norm_layer,
)

# isort: split
from normbook.layers.activations import CReLU, act_channel_multiplier
from normbook.layers.batchnorm import BatchNormFromScratch, BatchNormFunction
from normbook.layers.ic import ICLayer
from normbook.layers.mimic import (
    LastBatchNorm,
    ResidualScale,
    WeightMean,
    attach_weight_mean,
    mimic_init_,
    mimic_residual_init,
    weight_mean_,
)
from normbook.layers.normprop import NormPropConv2d, NormPropLinear, NormPropReLU, normprop_weight
from normbook.layers.whitening import DecorrelatedBatchNorm, whitening_matrix

__all__ = [
    "NonFiniteInputError",
    "DecorrelatedBatchNorm",
    "whitening_matrix",
    "CReLU",
    "act_channel_multiplier",
    "ICLayer",
    "BatchNormFromScratch",
    "BatchNormFunction",
    "LastBatchNorm",
    "ResidualScale",
    "WeightMean",
    "attach_weight_mean",
    "mimic_init_",
    "mimic_residual_init",
    "weight_mean_",
    "NormPropConv2d",
    "NormPropLinear",
    "NormPropReLU",
    "normprop_weight",
    "create_act_layer",
    "create_norm_layer",
    "list_act_layers",
    "list_norm_layers",
    "register_act_layer",
    "register_norm_layer",
]
