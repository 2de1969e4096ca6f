"""The papers' architectures with pluggable normalization and activation, behind one registry.

``build_model(name, num_classes, **options)``; ``list_models()`` lists the families and
``describe_models()`` the norms, activations and options each accepts.
"""

from normbook.models.hooks import block_io, last_activation
from normbook.models.mlp import MLP
from normbook.models.policy import (
    MODEL_ACTS,
    MODEL_NORMS,
    NormPolicy,
    ResidualBlock,
    count_parameters,
    residual_blocks,
    training_callbacks,
)
from normbook.models.registry import (
    ModelInfo,
    build_model,
    describe_models,
    list_models,
    model_info,
    register_model,
)

# isort: split
# each family registers itself on import
from normbook.models import (  # noqa: E402, F401
    resnet_cifar,
    resnet_imagenet,
    shufflenet,
    splain,
    squeezenet,
    vgg,
    wrn,
)

FAMILIES: tuple[str, ...] = (
    "mlp",
    "resnet_cifar",
    "splain",
    "vgg",
    "wrn",
    "resnet_imagenet",
    "squeezenet",
    "shufflenetv2",
)

__all__ = [
    "FAMILIES",
    "MLP",
    "MODEL_ACTS",
    "MODEL_NORMS",
    "ModelInfo",
    "NormPolicy",
    "ResidualBlock",
    "block_io",
    "build_model",
    "count_parameters",
    "describe_models",
    "last_activation",
    "list_models",
    "model_info",
    "register_model",
    "residual_blocks",
    "training_callbacks",
]
