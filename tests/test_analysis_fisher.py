"""normbook.analysis.fisher: relative FIM of a linear layer (DBN-F3) against hand-built cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from normbook.analysis import (
    fisher_matrix,
    fisher_spectrum,
    last_linear,
    linear_per_sample_gradients,
    per_sample_gradients,
    relative_fisher,
)


def test_single_output_layer_with_known_gradients():
    """z = w·h with δ_1 = 2 at h_1 = e_1 and δ_2 = 1 at h_2 = e_2: F = diag(4, 1)/2, κ = 4."""
    h = torch.eye(2)
    delta = torch.tensor([[2.0], [1.0]])
    rows = linear_per_sample_gradients(h, delta)
    torch.testing.assert_close(fisher_matrix(rows), torch.diag(torch.tensor([2.0, 0.5])).double())
    spectrum = fisher_spectrum(rows)
    torch.testing.assert_close(spectrum.eigenvalues, torch.tensor([2.0, 0.5]).double())
    assert spectrum.condition_number == pytest.approx(4.0)
    assert spectrum.num_zero == 0 and spectrum.rank == 2


def _softmax_layer(d: int, classes: int) -> nn.Linear:
    layer = nn.Linear(d, classes, bias=False)
    nn.init.zeros_(layer.weight)  # uniform predictions p = 1/C
    return layer


def test_softmax_layer_empirical_fisher_is_a_scaled_projection_with_a_d_dim_null_space():
    """h = e_j paired with every label c (N = d·C), p = 1/C: Σ_c (p − e_c)(p − e_c)ᵀ = I − 11ᵀ/C,
    so F = (I − 11ᵀ/C) ⊗ I / (d·C): eigenvalue 1/(d·C) (multiplicity (C−1)·d) and 0 (d times,
    the shift invariance of softmax)."""
    d, classes = 4, 3
    h = torch.eye(d).repeat_interleave(classes, dim=0)
    y = torch.arange(classes).repeat(d)
    spectrum = relative_fisher(_softmax_layer(d, classes), h, y)
    assert spectrum.size == d * classes
    assert spectrum.num_zero == d
    torch.testing.assert_close(
        spectrum.nonzero, torch.full(((classes - 1) * d,), 1 / (d * classes), dtype=torch.float64)
    )
    assert spectrum.condition_number == pytest.approx(1.0, abs=1e-12)
    eye_c, eye_d = torch.eye(classes, dtype=torch.float64), torch.eye(d, dtype=torch.float64)
    expected = torch.kron(eye_c - 1 / classes, eye_d) / (d * classes)
    layer = _softmax_layer(d, classes)
    z = layer(h).double().requires_grad_(True)
    (delta,) = torch.autograd.grad(F.cross_entropy(z, y, reduction="sum"), z)
    torch.testing.assert_close(fisher_matrix(linear_per_sample_gradients(h, delta)), expected)


def test_model_fisher_is_the_expectation_over_the_predicted_labels():
    """labels='model': E_y[δδᵀ] = diag(p) − ppᵀ, so F = (1/N) Σ_i (diag(p_i) − p_i p_iᵀ) ⊗ h_i h_iᵀ."""
    g = torch.Generator().manual_seed(0)
    d, classes, n = 3, 4, 7
    layer = nn.Linear(d, classes, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(classes, d, generator=g))
    h = torch.randn(n, d, generator=g)
    p = layer(h).double().softmax(1).detach()
    hh = h.double()
    expected = (
        sum(
            torch.kron(torch.diag(p[i]) - torch.outer(p[i], p[i]), torch.outer(hh[i], hh[i]))
            for i in range(n)
        )
        / n
    )
    spectrum = relative_fisher(layer, h, torch.zeros(n, dtype=torch.long), labels="model")
    torch.testing.assert_close(
        spectrum.eigenvalues, torch.linalg.eigvalsh(expected).flip(0).clamp_min(0)
    )
    # n·(C−1) = 21 > P − d = 9: exactly the d shift-invariance directions are null
    assert spectrum.num_zero == d


def test_fewer_samples_than_parameters_adds_zero_eigenvalues_from_the_gram_side():
    g = torch.Generator().manual_seed(1)
    rows = torch.randn(5, 40, generator=g, dtype=torch.float64)
    spectrum = fisher_spectrum(rows)
    assert spectrum.size == 40 and spectrum.rank == 5 and spectrum.num_zero == 35
    full = torch.linalg.eigvalsh(fisher_matrix(rows)).flip(0)
    torch.testing.assert_close(spectrum.eigenvalues[:5], full[:5])
    assert spectrum.threshold == pytest.approx(40 * torch.finfo(torch.float64).eps * float(full[0]))
    # the explicit zero rule: raise rtol above the smallest eigenvalue and it counts as zero
    ratio = float(full[4] / full[0])
    assert fisher_spectrum(rows, rtol=ratio * 1.01).rank == 4
    assert fisher_spectrum(rows, rtol=ratio * 0.99).rank == 5
    assert spectrum.percentile_condition_number(1.0) == pytest.approx(spectrum.condition_number)
    assert spectrum.percentile_condition_number(0.2) == 1.0  # the first of five eigenvalues


def test_zero_fisher_has_an_undefined_condition_number():
    spectrum = fisher_spectrum(torch.zeros(3, 4))
    assert spectrum.rank == 0 and math.isnan(spectrum.condition_number)


def test_vmap_per_sample_gradients_agree_with_the_outer_product_form():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5)).eval()
    x, y = torch.randn(20, 6), torch.randint(0, 5, (20,))
    rows = per_sample_gradients(model, x, y, ["2.weight", "2.bias"])
    assert rows.shape == (20, 5 * 8 + 5)
    via_hooks = relative_fisher(model, x, y, bias=True)
    torch.testing.assert_close(
        fisher_spectrum(rows).eigenvalues, via_hooks.eigenvalues, atol=1e-6, rtol=1e-5
    )
    # each row is the gradient of that sample's loss alone
    model.zero_grad()
    F.cross_entropy(model(x[3:4]), y[3:4]).backward()
    torch.testing.assert_close(rows[3, :40].float(), model[2].weight.grad.reshape(-1))
    for p in model.parameters():
        p.grad = None


def test_relative_fisher_uses_batch_statistics_and_leaves_gradients_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).train()
    x, y = torch.randn(30, 5), torch.randint(0, 3, (30,))
    spectrum = relative_fisher(model, x, y)
    assert all(p.grad is None for p in model.parameters())
    assert last_linear(model) is model[3]
    assert spectrum.size == 18 and spectrum.num_zero == 6  # the softmax null space 1 ⊗ v
    assert 1 <= spectrum.condition_number < math.inf


def test_bad_arguments():
    model = nn.Sequential(nn.Linear(3, 2))
    x, y = torch.randn(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="labels must be"):
        relative_fisher(model, x, y, labels="true")
    with pytest.raises(TypeError, match="nn.Linear"):
        relative_fisher(model, x, y, layer=nn.ReLU())
    with pytest.raises(ValueError, match="not called"):
        relative_fisher(model, x, y, layer=nn.Linear(3, 2))
    with pytest.raises(ValueError, match="no nn.Linear"):
        last_linear(nn.ReLU())
    with pytest.raises(ValueError, match="unknown parameter"):
        per_sample_gradients(model, x, y, ["weight"])
    with pytest.raises(ValueError, match="same N"):
        linear_per_sample_gradients(torch.randn(3, 2), torch.randn(4, 1))
    with pytest.raises(ValueError, match="NaN"):
        fisher_spectrum(torch.tensor([[float("nan"), 1.0]]))
