"""IC-S5 analysis (normbook.analysis.zigzag): per-sample weight gradients, their sign coherence,
hyperoctant shares, and gradient descent on least squares with non-negative vs zero-mean inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from normbook.analysis import zigzag
from normbook.models import build_model


def test_per_sample_gradients_of_linear_and_conv_sum_to_the_batch_gradient():
    torch.manual_seed(0)
    for layer, x in (
        (nn.Linear(5, 3), torch.randn(7, 5)),
        (nn.Conv2d(2, 3, 3, padding=1, stride=2), torch.randn(4, 2, 6, 6)),
    ):
        out = layer(x)
        upstream = torch.randn_like(out)
        (out * upstream).sum().backward()
        per_sample = zigzag.per_sample_weight_gradients(layer, x, upstream)
        total = per_sample.sum(dim=0).reshape(layer.weight.shape).float()
        torch.testing.assert_close(total, layer.weight.grad, rtol=1e-5, atol=1e-5)


def test_a_linear_layer_after_relu_has_single_signed_per_sample_row_gradients():
    torch.manual_seed(1)
    x = torch.relu(torch.randn(32, 10))
    delta = torch.randn(32, 4)
    stats = zigzag.sign_coherence(zigzag.per_sample_weight_gradients(nn.Linear(10, 4), x, delta))
    assert stats["coherence"] == 1.0 and stats["same_sign"] == 1.0
    centred = x - x.mean(dim=0)
    mixed = zigzag.sign_coherence(
        zigzag.per_sample_weight_gradients(nn.Linear(10, 4), centred, delta)
    )
    assert mixed["coherence"] < 0.6 and mixed["same_sign"] < 0.1
    dropped = centred * (torch.rand_like(centred) > 0.3)  # zeros, as after Dropout
    delta[0, 1] = 0.0
    full = zigzag.sign_coherence(
        zigzag.per_sample_weight_gradients(nn.Linear(10, 4), dropped, delta)
    )
    assert zigzag.linear_sign_coherence(dropped, delta) == full


def test_sign_agreement_tells_the_placements_apart_and_leaves_grads_alone():
    x = torch.randn(64, 64)
    y = torch.randint(0, 10, (64,))
    results = {}
    for norm, position in (("bn", "before_act"), ("ic", "after_act")):
        torch.manual_seed(0)
        model = build_model(
            "mlp", 10, in_features=64, hidden=(16, 16), norm=norm, norm_position=position
        )
        rows = zigzag.sign_agreement(model, x, y)
        assert [r["layer"] for r in rows] == ["layers.1", "layers.4", "layers.7"]
        assert all(p.grad is None for p in model.parameters())
        results[norm] = rows[1]
    assert results["bn"]["coherence"] == 1.0 and results["bn"]["input_nonneg"] == 1.0
    assert results["ic"]["coherence"] < 0.6 and results["ic"]["input_mean_to_std"] < 0.2


def test_orthant_fraction_matches_monte_carlo():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5):
        share = zigzag.same_sign_rows(rng.standard_normal((100_000, n))).mean()
        expected = zigzag.orthant_fraction(n)
        assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / 100_000) + 1e-12
    with pytest.raises(ValueError):
        zigzag.orthant_fraction(0)


def test_relu_second_moment_and_its_condition_number():
    n = 6
    moment = zigzag.relu_gaussian_second_moment(n)
    z = torch.relu(
        torch.randn(400_000, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ).numpy()
    assert np.abs(z.T @ z / len(z) - moment).max() < 5e-3
    assert abs(zigzag.condition_number(moment) - (math.pi - 1 + n) / (math.pi - 1)) < 1e-10


def test_full_batch_path_matches_the_closed_form_and_zigzags_past_1_over_lambda_max():
    rng = np.random.default_rng(2)
    x = np.maximum(rng.standard_normal((200, 2)), 0) + 0.5
    target = np.array([2.0, 1.0])  # the error has a component along the steep direction
    hessian = x.T @ x / len(x)
    values = np.linalg.eigvalsh(hessian)
    lr = 2 / (values[0] + values[-1])
    path = zigzag.least_squares_path(x, x @ target, np.zeros(2), lr, 60)
    errors = np.linalg.norm(path - target, axis=1)
    assert np.allclose(errors, zigzag.closed_form_errors(hessian, -target, lr, 60), atol=1e-12)
    assert zigzag.turning_fraction(path) > 0.9
    slow = zigzag.least_squares_path(x, x @ target, np.zeros(2), 0.5 / values[-1], 60)
    assert zigzag.turning_fraction(slow) == 0.0
    tol = 1e-6
    assert zigzag.steps_to_tolerance(path, target, tol) == int(np.argmax(errors <= tol))
    assert zigzag.steps_to_tolerance(path[:2], target, tol) is None


def test_one_sample_sgd_steps_stay_in_the_same_sign_quadrants_for_non_negative_inputs():
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((100, 2)), 0)
    path = zigzag.least_squares_path(
        x, x @ np.array([1.0, -1.0]), np.zeros(2), 0.5, 200, batch_size=1
    )
    steps = np.diff(path, axis=0)
    moving = steps[np.abs(steps).sum(axis=1) > 0]
    assert zigzag.same_sign_rows(moving[np.all(moving != 0, axis=1)]).all()
    centred = x - x.mean(axis=0)
    path = zigzag.least_squares_path(
        centred, centred @ np.array([1.0, -1.0]), np.zeros(2), 0.5, 200, batch_size=1
    )
    steps = np.diff(path, axis=0)
    assert zigzag.same_sign_rows(steps[np.all(steps != 0, axis=1)]).mean() < 0.7
