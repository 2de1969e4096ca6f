"""Training recipes the papers share, as ``train`` sections of entry configurations.

:data:`HE_CIFAR_TRAIN` is the CIFAR ResNet recipe of He et al. (2016, Sec. 4.2), which the DBN
paper follows for its ResNets (PAPERS.md DBN recipes) and the synthesis part uses at full scale:
SGD with momentum 0.9, weight decay 10⁻⁴, batch 128, learning rate 0.1 divided by 10 at epochs 80
and 120 of 160, the 4-pixel shift and horizontal flip augmentation.
"""

from __future__ import annotations

from types import MappingProxyType

HE_CIFAR_TRAIN = MappingProxyType(
    {
        "epochs": 160,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "schedule": "multistep",
        "milestones": (80, 120),
        "gamma": 0.1,
        "augment": True,
    }
)
