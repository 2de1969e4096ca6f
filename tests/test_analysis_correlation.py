"""normbook.analysis.correlation: channel correlations (IC-EQ8, DBN-EQ3), constant channels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normbook.analysis import (
    channel_samples,
    constant_channels,
    correlation_matrix,
    mean_abs_correlation,
    mean_abs_off_diagonal,
)


def test_exactly_known_correlations_and_their_mean_absolute_value():
    a = torch.tensor([1.0, -1.0, 1.0, -1.0])
    b = torch.tensor([1.0, 1.0, -1.0, -1.0])  # orthogonal to a, both mean 0
    x = torch.stack([a, 3 * a + 2, -a, b], dim=1)  # N×C = 4×4
    corr = correlation_matrix(x)
    expected = torch.tensor(
        [[1, 1, -1, 0], [1, 1, -1, 0], [-1, -1, 1, 0], [0, 0, 0, 1]], dtype=torch.float64
    )
    torch.testing.assert_close(corr, expected, atol=1e-15, rtol=0)
    # |off-diagonal| is 1 for the three pairs among a, 3a+2, -a and 0 for the three pairs with b
    assert mean_abs_off_diagonal(corr) == pytest.approx(0.5, abs=1e-15)
    assert mean_abs_correlation(x) == pytest.approx(0.5, abs=1e-15)


def test_matches_numpy_and_treats_spatial_positions_as_samples():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 3, 4, generator=g) @ torch.randn(4, 4, generator=g)
    x = x + torch.randn(1, 5, 1, 1, generator=g)  # per-channel offsets
    samples = x.permute(0, 2, 3, 1).reshape(-1, 5).double()
    torch.testing.assert_close(channel_samples(x), samples)
    reference = torch.from_numpy(np.corrcoef(samples.numpy(), rowvar=False))
    torch.testing.assert_close(correlation_matrix(x), reference, atol=1e-12, rtol=0)
    assert correlation_matrix(x).dtype == torch.float64


def test_invariant_to_per_channel_affine_maps_up_to_sign():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 4, generator=g, dtype=torch.float64)
    x[:, 1] += 0.7 * x[:, 0]
    scale = torch.tensor([2.0, -0.5, 10.0, 1e-3], dtype=torch.float64)
    corr, scaled = correlation_matrix(x), correlation_matrix(x * scale + 5.0)
    sign = torch.sign(scale)
    torch.testing.assert_close(scaled, corr * sign[:, None] * sign[None, :], atol=1e-12, rtol=0)


def test_constant_channels_have_zero_correlation_and_no_nan():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(50, 4, generator=g)
    x[:, 1] = 0.3  # constant, non-zero
    x[:, 3] = 0.0  # all zero
    assert constant_channels(x).tolist() == [False, True, False, True]
    corr = correlation_matrix(x)
    assert torch.isfinite(corr).all()
    assert corr[1].abs().sum() == 0 and corr[:, 3].abs().sum() == 0
    assert corr[0, 0] == 1 and corr[2, 2] == 1 and corr[1, 1] == 0
    assert torch.linalg.eigvalsh(corr).min() > -1e-12  # still positive semi-definite
    with np.errstate(invalid="ignore", divide="ignore"):
        assert np.isnan(np.corrcoef(x.double().numpy(), rowvar=False)).any()  # what we avoid
    # the constant channels add zeros to the mean over the 12 ordered pairs
    only_pair = abs(float(corr[0, 2]))
    assert mean_abs_off_diagonal(corr) == pytest.approx(2 * only_pair / 12)


def test_dropout_gates_shrink_correlation_by_the_keep_probability():
    """IC-EQ8: for standardized x_i, x_j with correlation c and independent Bernoulli(p) gates,
    corr(g_i x_i, g_j x_j) = p·c."""
    g = torch.Generator().manual_seed(3)
    n, c, p = 200_000, 0.8, 0.5
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x = torch.stack([z[:, 0], c * z[:, 0] + (1 - c * c) ** 0.5 * z[:, 1]], dim=1)
    gates = (torch.rand(n, 2, generator=g, dtype=torch.float64) < p).double()
    measured = float(correlation_matrix(gates * x)[0, 1])
    assert measured == pytest.approx(p * c, abs=0.01)  # standard error ≈ 1/√n ≈ 0.002
    assert float(correlation_matrix(x)[0, 1]) == pytest.approx(c, abs=0.01)


def test_bad_inputs_are_rejected_with_the_argument_named():
    with pytest.raises(ValueError, match="x must have at least 2"):
        correlation_matrix(torch.randn(10))
    with pytest.raises(TypeError, match="floating"):
        correlation_matrix(torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="two samples"):
        correlation_matrix(torch.randn(1, 3))
    with pytest.raises(ValueError, match="NaN"):
        correlation_matrix(torch.tensor([[1.0, float("nan")], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="two channels"):
        mean_abs_off_diagonal(torch.ones(1, 1))
    with pytest.raises(ValueError, match="square"):
        mean_abs_off_diagonal(torch.ones(2, 3))
    with pytest.raises(ValueError, match="rtol"):
        correlation_matrix(torch.randn(4, 2), rtol=-1.0)
