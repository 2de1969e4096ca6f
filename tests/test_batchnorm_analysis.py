"""BN's backward step by step (Ioffe & Szegedy 2015, Section 3) against autograd and the layer, and
the train/eval gap measurement (batch statistics vs running statistics)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from normbook.analysis.batchnorm import (
    batch_statistics_gap,
    batchnorm_autograd_steps,
    batchnorm_backward_steps,
    batchnorm_reference,
    mean_and_scale_residual,
)
from normbook.data import load_dataset
from normbook.experiments import run
from normbook.experiments.entries.foundations_batchnorm import LR_BATCH_SIZE
from normbook.experiments.measures_batchnorm import GAP_FIELDS, TRAIN_EVAL_GAP
from normbook.experiments.registry import Registry
from normbook.experiments.spec import Experiment, ScaleSpec
from normbook.layers import BatchNormFromScratch
from normbook.models import build_model

F64 = torch.float64
SHAPES = [(12, 3), (5, 3, 2, 2)]


def _inputs(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=F64) * 2 + 0.7
    dy = torch.randn(shape, generator=g, dtype=F64)
    gamma = torch.rand(shape[1], generator=g, dtype=F64) + 0.5
    beta = torch.randn(shape[1], generator=g, dtype=F64)
    return x, dy, gamma, beta


@pytest.mark.parametrize("shape", SHAPES)
def test_reference_forward_equals_torch_batchnorm(shape):
    x, _, gamma, beta = _inputs(shape)
    expected = nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)
    torch.testing.assert_close(batchnorm_reference(x, gamma, beta, 1e-5), expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_steps_match_autograd_and_the_layer(shape):
    x, dy, gamma, beta = _inputs(shape, seed=1)
    xr = x.clone().requires_grad_()
    gr, br = gamma.clone().requires_grad_(), beta.clone().requires_grad_()
    (batchnorm_reference(xr, gr, br, 1e-5) * dy).sum().backward()
    steps = batchnorm_backward_steps(x, dy, gamma, 1e-5)
    for name, value in (("grad_input", xr.grad), ("grad_weight", gr.grad), ("grad_bias", br.grad)):
        assert (steps[name] - value).abs().max() < 1e-10, name
    assert (steps["grad_input_chain"] - steps["grad_input"]).abs().max() < 1e-10
    assert steps["grad_mean_var_term"].abs().max() < 1e-10  # Σ(x − μ) = 0
    layer = BatchNormFromScratch(shape[1]).double()
    with torch.no_grad():
        layer.weight.copy_(gamma)
        layer.bias.copy_(beta)
    xl = x.clone().requires_grad_()
    (layer(xl) * dy).sum().backward()
    assert (xl.grad - steps["grad_input"]).abs().max() < 1e-10


def test_gradient_is_the_residual_off_mean_and_scale_without_eps():
    x, dy, gamma, _ = _inputs((16, 4), seed=2)
    steps = batchnorm_backward_steps(x, dy, gamma, eps=0.0)
    projected = mean_and_scale_residual(dy, steps["x_hat"])
    scaled = steps["grad_input"] * (steps["std"] / gamma)
    assert (scaled - projected).abs().max() < 1e-10
    assert steps["grad_input"].sum(0).abs().max() < 1e-10
    assert (steps["grad_input"] * steps["x_hat"]).sum(0).abs().max() < 1e-10


def test_steps_and_residual_validate_their_inputs():
    with pytest.raises(ValueError, match="grad_output must have"):
        batchnorm_backward_steps(torch.randn(4, 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match="at least 2 values per channel"):
        batchnorm_reference(torch.randn(1, 3))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        batchnorm_reference([1.0, 2.0])
    with pytest.raises(ValueError, match="values must have"):
        mean_and_scale_residual(torch.randn(4, 2), torch.randn(4, 3))


def test_gap_is_zero_without_batch_statistics_and_positive_with_them():
    data = load_dataset("digits", variant="flat")
    torch.manual_seed(0)
    plain = build_model("mlp", num_classes=10, in_features=64, hidden=[16], norm="none")
    gap = batch_statistics_gap(plain, data, "test", 32)
    assert gap["disagreement"] == 0 and gap["logit_gap"] == 0
    assert gap["batch_stat_loss"] == pytest.approx(gap["running_stat_loss"])
    assert gap["samples"] == (data.num_test // 32) * 32
    torch.manual_seed(0)
    bn = build_model("mlp", num_classes=10, in_features=64, hidden=[16], norm="bn")
    before = [b.clone() for b in bn.buffers()]
    gap = batch_statistics_gap(bn, data, "test", 8)  # fresh running stats (0, 1): far off
    assert gap["logit_gap"] > 0.01
    assert all(torch.equal(a, b) for a, b in zip(before, bn.buffers(), strict=True))
    assert bn.training  # mode restored
    with pytest.raises(ValueError, match="batch_size must be an int >= 2"):
        batch_statistics_gap(bn, data, "test", 1)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        batch_statistics_gap(bn, data, "test", 10_000)


def test_measure_logs_every_field_per_epoch(tmp_path):
    config = LR_BATCH_SIZE.resolve(
        "smoke", {"train.lr": 0.1, "train.batch_size": 32, "model.norm": "bn"}
    )
    assert TRAIN_EVAL_GAP in config["measure"]
    entry = Experiment(
        id="test.bn-gap",
        artifact="BOOK-TEST",
        title="gap measure",
        scales={"smoke": ScaleSpec(config=config)},
    )
    (outcome,) = run("test.bn-gap", "smoke", root=tmp_path, registry=Registry([entry]))
    extras = json.loads(outcome.path.read_text())["history"]["extras"]
    epochs = config["train"]["epochs"]
    for name in GAP_FIELDS.values():
        assert len(extras[name]) == epochs, name
    assert all(0 <= v <= 1 for v in extras["train_eval_disagreement"])


@pytest.mark.parametrize("shape", SHAPES)
def test_every_step_equals_what_autograd_computes(shape):
    x, dy, gamma, beta = _inputs(shape, seed=3)
    steps = batchnorm_backward_steps(x, dy, gamma, 1e-5)
    auto = batchnorm_autograd_steps(x, dy, gamma, beta, 1e-5)
    for name in ("grad_x_hat", "grad_var", "grad_mean", "grad_input", "grad_weight", "grad_bias"):
        assert (steps[name] - auto[name]).abs().max() < 1e-10, name
