"""MLP family: builds for each declared norm/position, trains backward, rejects bad options."""

import pytest
import torch

from normbook.layers import LastBatchNorm, NormPropLinear
from normbook.models import build_model, list_models, training_callbacks
from normbook.models.mlp import MLP_NORMS, NORM_POSITIONS, POLICY_NORMS


def test_mlp_is_registered():
    assert "mlp" in list_models()


@pytest.mark.parametrize("position", NORM_POSITIONS)
@pytest.mark.parametrize("norm", sorted(MLP_NORMS))
def test_mlp_forward_backward(norm, position):
    torch.manual_seed(0)
    net = build_model("mlp", 10, in_features=64, hidden=(16, 16), norm=norm, norm_position=position)
    out = net(torch.randn(8, 64))
    assert out.shape == (8, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_mlp_layer_order_and_bias():
    net = build_model("mlp", 10, in_features=64, hidden=(16,), norm="bn")
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds == ["Flatten", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert net.layers[1].bias is None
    plain = build_model("mlp", 10, in_features=64, hidden=(16,), norm="none")
    assert plain.layers[1].bias is not None


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"norm": "bogus"}, "norm"),
        ({"norm_position": "x"}, "norm_position"),
        ({"act": "bogus"}, "bogus"),
        ({"norm": "mimic", "norm_position": "after_act"}, "after the activation"),
        ({"depth": 3, "hidden": (16,)}, "not both"),
        ({"depth": 0}, "depth"),
        ({"norm": "normprop1", "act": "crelu"}, "normprop1"),
    ],
)
def test_mlp_rejects_invalid_options(options, word):
    with pytest.raises(ValueError, match=word):
        build_model("mlp", 10, in_features=64, **{"hidden": (16,), **options})


@pytest.mark.parametrize("norm", POLICY_NORMS)
def test_mlp_policy_norms_forward_backward(norm):
    torch.manual_seed(0)
    net = build_model("mlp", 10, in_features=64, hidden=(16, 16), norm=norm)
    out = net(torch.randn(8, 64))
    assert out.shape == (8, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_mlp_normprop_layers_and_moments():
    """NormProp hidden layers are NormPropLinear with a bias; each row is divided by its norm, so
    the pre-activations of white inputs have variance γ² whatever the init (NP-EQ)."""
    net = build_model("mlp", 10, in_features=64, hidden=(128,), norm="normprop2")
    assert isinstance(net.layers[1], NormPropLinear)
    assert net.layers[1].bias is not None
    x = torch.randn(4096, 64)
    with torch.no_grad():
        z = net.layers[1](x)
    gamma = net.layers[1].gamma_init
    assert abs(float(z.var(dim=0).mean()) / gamma**2 - 1.0) < 0.05


def test_mlp_crelu_doubles_the_next_fan_in():
    net = build_model("mlp", 10, in_features=64, hidden=(16, 8), norm="bn", act="crelu")
    linears = [m for m in net.layers if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 16), (32, 8), (16, 10)]


def test_mlp_mimic_weight_mean_on_linear_rows_and_last_bn():
    """norm='mimic': every linear layer's rows have zero mean at init and after each step (the
    training callback), N(0, 2/fan_in) init, and the last BN on the logits (MN-TH3)."""
    torch.manual_seed(0)
    net = build_model("mlp", 10, in_features=64, hidden=(128, 128), norm="mimic")
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert all(float(m.weight.detach().mean(dim=1).abs().max()) < 1e-6 for m in linears)
    hidden = linears[1].weight.detach()
    assert abs(float(hidden.var()) * 128 / 2.0 - 1.0) < 0.1
    assert isinstance(net.head_norm, LastBatchNorm)
    callbacks = training_callbacks(net)
    assert len(callbacks) == 1
    with torch.no_grad():
        for m in linears:
            m.weight.add_(0.5)
    callbacks[0].on_step_end(None)
    assert all(float(m.weight.detach().mean(dim=1).abs().max()) < 1e-6 for m in linears)


def test_mlp_depth_and_width():
    net = build_model("mlp", 10, in_features=64, depth=3, width=32, norm="bn")
    widths = [m.out_features for m in net.layers if isinstance(m, torch.nn.Linear)]
    assert widths == [32, 32, 32, 10]
    # the default is unchanged: two hidden layers of 128
    default = build_model("mlp", 10, in_features=64)
    assert [m.out_features for m in default.layers if isinstance(m, torch.nn.Linear)] == [
        128,
        128,
        10,
    ]


def test_unknown_model_and_bad_classes():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope", 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("mlp", 1)
