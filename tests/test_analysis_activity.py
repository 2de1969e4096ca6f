"""normbook.analysis.activity: NZR and mean activation (NP-T1), residual Δ (NP-F2), coherence (NP-F3)."""

from __future__ import annotations

import math

import pytest
import torch

from normbook.analysis import (
    activation_stats,
    filter_coherence,
    filter_gram,
    nonzero_ratio,
    residual_delta,
    residual_deltas,
    welch_bound,
)
from normbook.layers import create_act_layer


def test_nonzero_ratio_counts_positive_entries():
    x = torch.tensor([[-1.0, 0.0, 2.0, 3.0], [0.5, -0.5, 0.0, 0.0]])
    assert nonzero_ratio(x) == pytest.approx(3 / 8)
    assert nonzero_ratio(torch.relu(x)) == nonzero_ratio(x)
    stats = activation_stats(torch.relu(x))
    assert stats["mean"] == pytest.approx(5.5 / 8)
    assert stats["std"] == pytest.approx(float(torch.relu(x).double().std(unbiased=False)))
    assert stats["nonzero_ratio"] == pytest.approx(3 / 8)


def test_crelu_output_has_ratio_exactly_one_half():
    """NP-T1: 'when using CReLU, the NZR is automatically 0.5' (any input without zeros)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 5, 4, 4, generator=g) + 0.7  # skewed: a ReLU would keep ~76 %
    out = create_act_layer("crelu")(x)
    assert nonzero_ratio(out) == 0.5
    assert nonzero_ratio(torch.relu(x)) > 0.7


def test_residual_delta_of_a_known_residual():
    """x_{l+1} = x_l + r with ‖r(:, i, j)‖ = 5 at half the positions and 0 elsewhere: Δ = 2.5."""
    x = torch.randn(2, 3, 4, 4)
    r = torch.zeros_like(x)
    r[:, 0, :2, :] = 3.0
    r[:, 2, :2, :] = -4.0
    assert residual_delta(x, x + r) == pytest.approx(2.5, abs=1e-6)
    assert residual_delta(x, x) == 0.0
    flat = torch.zeros(6, 2)
    assert residual_delta(flat, flat + torch.tensor([3.0, 4.0])) == pytest.approx(5.0)


def test_residual_deltas_over_pairs_marks_reshaping_blocks():
    x = torch.zeros(2, 4, 4, 4)
    pairs = [(x, x + 1.0), (x, torch.zeros(2, 8, 2, 2)), (x, x)]
    deltas = residual_deltas(pairs)
    assert deltas[0] == pytest.approx(2.0) and math.isnan(deltas[1]) and deltas[2] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        residual_deltas(pairs, skip_reshaping=False)


def test_coherence_of_orthogonal_parallel_and_equiangular_filters():
    assert filter_coherence(torch.eye(4).reshape(4, 1, 2, 2)) == 0.0
    w = torch.randn(3, 2, 3, 3)
    w[2] = -2.5 * w[0]  # antiparallel pair: |cos| = 1
    assert filter_coherence(w) == pytest.approx(1.0)
    # three unit vectors at 120° in the plane meet the Welch bound √((3−2)/(2·2)) = 1/2
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    frame = torch.stack([angles.cos(), angles.sin()], dim=1)
    assert filter_coherence(frame) == pytest.approx(0.5) == pytest.approx(welch_bound(3, 2))


def test_random_filters_respect_the_welch_bound_and_zero_filters_have_no_cosine():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(64, 8, 2, 2, generator=g)  # 64 filters in 32 dimensions
    assert filter_coherence(w) >= welch_bound(64, 32) > 0
    assert welch_bound(4, 8) == 0.0
    w = torch.randn(3, 5, generator=g)
    w[1] = 0.0
    gram = filter_gram(w)
    assert gram[1].abs().sum() == 0 and gram[0, 0] == 1
    assert filter_coherence(w) == pytest.approx(abs(float(gram[0, 2])))


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        nonzero_ratio(torch.zeros(0))
    with pytest.raises(ValueError, match="NaN"):
        activation_stats(torch.tensor([float("inf")]))
    with pytest.raises(ValueError, match="two filters"):
        filter_coherence(torch.randn(1, 3, 3, 3))
    with pytest.raises(ValueError, match="same shape"):
        residual_delta(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="floating"):
        residual_delta(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
