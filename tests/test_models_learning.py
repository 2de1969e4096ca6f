"""A real learning check per norm family (issue "Models"): a narrow depth-20 CIFAR ResNet learns the
embedded digits in a few seconds on the CPU, whatever normalization it carries.

Plus ``in_channels``: every image family takes one-channel digits images as well as RGB.
"""

from __future__ import annotations

import pytest
import torch

from normbook.data import load_dataset
from normbook.models import build_model, list_models, model_info, training_callbacks
from normbook.train import TrainConfig, fit

NORM_FAMILIES = (
    "bn",
    "none",
    "dbn",
    "dbn-scale-l1",
    "ic",
    "normprop1",
    "normprop2",
    "normprop3",
    "mimic",
    "fixup",
)
CHANCE = 0.1  # ten balanced classes
ABOVE_CHANCE = 0.25


@pytest.fixture(scope="module")
def digits8():
    return load_dataset("digits", variant="8x8")


@pytest.mark.slow
@pytest.mark.parametrize("norm", NORM_FAMILIES)
def test_narrow_resnet20_learns_the_digits(digits8, norm):
    torch.manual_seed(0)
    model = build_model("resnet_cifar", 10, depth=20, widths=(8, 16, 16), norm=norm, in_channels=1)
    config = TrainConfig(epochs=3, batch_size=64, optimizer="adam", lr=1e-2)
    history = fit(
        model,
        digits8,
        config,
        seed=0,
        device="cpu",
        callbacks=training_callbacks(model),
        progress=False,
    )
    final = history.final_metrics()
    assert not final["diverged"], final["diverged_reason"]
    assert final["test_acc"] > ABOVE_CHANCE > 2 * CHANCE, final


IMAGE_FAMILIES = [n for n in list_models() if len(model_info(n).input_shape) == 3]


@pytest.mark.parametrize("name", IMAGE_FAMILIES)
def test_image_families_take_one_channel_inputs(name):
    info = model_info(name)
    model = build_model(name, 10, **{**info.tiny, "in_channels": 1})
    x = torch.randn(2, 1, *info.input_shape[1:])
    assert model(x).shape == (2, 10)
    with pytest.raises(ValueError, match="in_channels"):
        build_model(name, 10, **{**info.tiny, "in_channels": 0})
