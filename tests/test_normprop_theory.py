"""NormProp theory (NP-EQ, NP-P1-3): moments, Prop. 1's bound, Prop. 3's covariance, stacks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from normbook.analysis import normprop_theory as theory
from normbook.layers import NormPropLinear, NormPropReLU


def test_relu_moments_closed_forms_quadrature_and_jacobian_gamma():
    quad = theory.relu_moments_quadrature()
    assert abs(quad["mean"] - 1 / math.sqrt(2 * math.pi)) < 1e-10
    assert abs(quad["var"] - 0.5 * (1 - 1 / math.pi)) < 1e-10
    assert quad["error"] < 1e-10
    assert abs(theory.RELU_MEAN - quad["mean"]) < 1e-12 and theory.PRINTED_RELU_MEAN < 0.2
    gamma = theory.jacobian_gamma()
    assert abs(gamma**2 * 0.5 / theory.RELU_VAR - 1) < 1e-12
    assert abs(1 / gamma - 1.21) < 2e-3  # NormProp's 1/1.21


def test_sample_moments_standard_errors_match_the_normal_law():
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    stats = theory.sample_moments(x)
    assert abs(stats["mean"]) < 4 * stats["mean_se"]
    assert abs(stats["var"] - 1) < 4 * stats["var_se"]
    assert abs(stats["var_se"] - math.sqrt(2 / x.numel())) < 2e-4  # m4 - s^4 = 2 for N(0, 1)
    with pytest.raises(ValueError, match="at least 3"):
        theory.sample_moments(torch.ones(2))


def test_canonical_error_bound_holds_and_the_printed_form_needs_unit_rows():
    g = torch.Generator().manual_seed(1)
    q = theory.haar_orthogonal(16, g)
    assert torch.allclose(q @ q.T, torch.eye(16, dtype=torch.float64), atol=1e-12)
    ortho = theory.canonical_error_bound(q[:10])
    assert ortho["distance"] < 1e-12 and ortho["coherence"] < 1e-12 and ortho["alpha_gap"] < 1e-12
    w = torch.randn(12, 20, generator=g, dtype=torch.float64)
    rnd = theory.canonical_error_bound(w, sigma2=2.0)
    assert 0 < rnd["distance"] <= rnd["bound"]
    unit = theory.canonical_error_bound(w / w.norm(dim=1, keepdim=True))
    assert abs(unit["bound"] - unit["bound_as_printed"]) < 1e-12
    big = theory.canonical_error_bound(10 * w)  # Σ scales as 100, the printed bound as 10
    assert big["distance"] <= big["bound"] and big["distance"] > big["bound_as_printed"]
    with pytest.raises(ValueError, match="sigma2"):
        theory.canonical_error_bound(w, sigma2=0)


def test_residual_covariance_of_orthogonal_w_and_the_printed_erratum():
    q = theory.haar_orthogonal(8, torch.Generator().manual_seed(2))
    eye = torch.eye(8, dtype=torch.float64)
    cov = theory.residual_covariance(q)
    assert (cov - (2 * eye + q + q.T)).abs().max() < 1e-12
    printed = theory.printed_residual_covariance(q)
    assert (printed - printed.T).abs().max() > 0.1  # not symmetric: no covariance
    x = torch.randn(20_000, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z = theory.covariance_z_scores(x @ (q + eye).T, cov)
    assert z.abs().max() < 5
    with pytest.raises(ValueError, match="square"):
        theory.residual_covariance(torch.ones(2, 3))


@pytest.mark.parametrize("norm", theory.STACK_NORMS)
def test_normprop_stack_layers_and_first_layer_law(norm):
    torch.manual_seed(0)
    model = theory.normprop_stack(norm, 128, 3, in_features=64, gamma=0.5)
    kinds = [type(m) for m in model]
    weight_type = nn.Linear if norm == "none" else NormPropLinear
    act_type = NormPropReLU if norm == "normprop1" else nn.ReLU
    assert kinds == [weight_type, act_type] * 3
    if norm == "normprop3":
        assert "gamma" in dict(model[0].named_buffers())
    x = torch.randn(4000, 64, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    moments = theory.layer_moments(model, x)
    law = theory.stack_moment_theory(norm, 3, gamma=0.5, in_features=64, width=128)
    assert moments["layer"] == [1, 2, 3]
    assert abs(moments["var"][0] / law[0] - 1) < 0.1  # exact law at layer 1, up to sampling
    assert abs(moments["mean"][0]) < 0.05


def test_normprop_keeps_unit_variance_for_a_few_layers_and_plain_does_not():
    x = torch.randn(1000, 64, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.manual_seed(0)
    normprop = theory.layer_moments(theory.normprop_stack("normprop1", 256, 5), x)
    torch.manual_seed(0)
    plain = theory.layer_moments(theory.normprop_stack("none", 256, 5), x)
    assert all(0.85 < v < 1.15 for v in normprop["var"])
    assert plain["var"][-1] < 0.05


def test_residual_stacks_follow_their_first_block_law():
    x = torch.randn(2000, 128, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    for branch in theory.RESIDUAL_BRANCHES:
        out = theory.residual_stack_moments(
            branch, 128, 3, x, gamma=1.0, generator=torch.Generator().manual_seed(7)
        )
        law = theory.residual_growth_theory(branch, 3)
        assert out["block"] == [1, 2, 3] and len(out["ratio"]) == 3
        assert abs(out["ratio"][0] / (law[0]) - 1) < 0.1, (branch, out["ratio"], law)
    assert theory.residual_growth_theory("orthogonal", 3) == [2.0, 4.0, 8.0]
    with pytest.raises(ValueError, match="branch"):
        theory.residual_growth_theory("bn", 3)
    with pytest.raises(ValueError, match="N×128"):
        theory.residual_stack_moments("orthogonal", 128, 2, x[:, :64])


def test_block_output_moments_and_growth_ratios_on_a_normprop_resnet():
    from normbook.models import build_model

    torch.manual_seed(0)
    model = build_model(
        "resnet_cifar", 10, depth=14, widths=(8, 16, 16), in_channels=1, norm="normprop1"
    ).double()
    x = torch.randn(64, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    out = theory.block_output_moments(model, x)
    assert out["block"] == list(range(1, 7))
    assert out["reshapes"] == [False, False, True, False, True, False]
    ratios = theory.growth_ratios(out["var"], out["reshapes"])
    assert len(ratios) == 3 and all(r > 1.3 for r in ratios)  # variance grows inside a stage
    assert theory.growth_ratios([1.0, 2.0, 8.0]) == [2.0, 4.0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="norm"):
        theory.normprop_stack("bn", 4, 2)
    with pytest.raises(ValueError, match="gamma"):
        theory.normprop_stack("normprop1", 4, 2, gamma=-1.0)
    with pytest.raises(ValueError, match="width"):
        theory.normprop_stack("none", 0, 2)
    with pytest.raises(ValueError, match="n must"):
        theory.haar_orthogonal(0)
    with pytest.raises(ValueError, match="covariance must"):
        theory.covariance_z_scores(torch.ones(5, 3), torch.eye(2))
