"""Stability of training curves and the Dropout-before-BN variance shift (normbook.analysis)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn as nn

from normbook.analysis.stability import (
    epoch_oscillation,
    excess_variation,
    seed_spread,
    stability_table,
)
from normbook.analysis.variance_shift import (
    bn_input_variances,
    dropout_covariance,
    dropout_train_variance,
    ic_batchnorms,
    linear_variance_shift,
    monte_carlo_dropout_variance,
    recalibrate_batchnorm,
    variance_shift,
    variance_shift_profile,
)
from normbook.layers import ICLayer


@pytest.fixture(autouse=True)
def _one_thread():
    """These nets are tiny: one intra-op thread is as fast, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- stability --------------------------------------------------------------------------------------
def test_oscillation_counts_only_falls():
    assert epoch_oscillation([0.1, 0.5, 0.7, 0.9]) == 0.0  # a rising curve does not oscillate
    assert epoch_oscillation([0.5, 0.3, 0.6, 0.4]) == pytest.approx((0.2 + 0.2) / 3)
    assert epoch_oscillation([0.5, 0.3, None, 0.6]) == pytest.approx(0.2 / 2)  # skips None
    assert epoch_oscillation([0.9, 0.1, 0.2, 0.1], start=3) == pytest.approx(0.1)
    assert math.isnan(epoch_oscillation([0.5]))
    curve = [0.2, 0.6, 0.4, 0.8, 0.7]
    assert excess_variation(curve) == pytest.approx(2 * epoch_oscillation(curve))
    with pytest.raises(ValueError, match="start"):
        epoch_oscillation(curve, start=0)
    with pytest.raises(ValueError, match="non-finite"):
        epoch_oscillation([0.1, math.nan])


def test_seed_spread():
    curves = [[0.1, 0.5], [0.3, 0.9]]
    assert seed_spread(curves, epoch=2) == pytest.approx(math.sqrt(0.08))
    assert seed_spread(curves) == pytest.approx((math.sqrt(0.02) + math.sqrt(0.08)) / 2)
    assert math.isnan(seed_spread([[0.1, 0.2]]))
    with pytest.raises(ValueError, match="different lengths"):
        seed_spread([[0.1], [0.1, 0.2]])
    with pytest.raises(ValueError, match="epoch must be"):
        seed_spread(curves, epoch=3)


def test_stability_table_per_group():
    rows = []
    for unit, curves in {"a": [[0.5, 0.4, 0.6], [0.5, 0.5, 0.7]], "b": [[0.2, 0.4, 0.9]]}.items():
        for seed, curve in enumerate(curves):
            rows += [
                {"unit": unit, "seed": seed, "epoch": e + 1, "test_acc": v}
                for e, v in enumerate(curve)
            ]
    table = stability_table(pd.DataFrame(rows), ["unit"]).set_index("unit")
    assert table.loc["a", "n"] == 2 and table.loc["b", "n"] == 1
    assert table.loc["a", "oscillation_mean"] == pytest.approx((0.05 + 0.0) / 2)
    assert table.loc["a", "final_mean"] == pytest.approx(0.65)
    assert table.loc["a", "final_std"] == pytest.approx(math.sqrt(0.005))
    assert table.loc["b", "oscillation_mean"] == 0.0 and math.isnan(table.loc["b", "final_std"])
    with pytest.raises(ValueError, match="lacks column"):
        stability_table(pd.DataFrame(rows).drop(columns="seed"), ["unit"])


# -- variance shift: formulas -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mean", "std", "keep"), [(0.0, 1.0, 0.95), (1.5, 0.5, 0.8), (-0.3, 2.0, 0.5)]
)
def test_dropout_variance_matches_monte_carlo(mean, std, keep):
    estimate, error = monte_carlo_dropout_variance(mean, std, keep, 400_000, seed=1)
    predicted = dropout_train_variance(mean, std**2, keep)
    assert abs(estimate - predicted) < 4 * error
    shift = variance_shift(mean, std**2, keep)
    assert shift == pytest.approx(std**2 / predicted, rel=1e-12) and shift <= 1.0
    assert variance_shift(0.0, 1.0, keep) == pytest.approx(keep, rel=1e-12)  # centred unit: q


def test_linear_shift_is_diluted_by_correlation():
    d, keep = 16, 0.8
    mean = torch.zeros(d, dtype=torch.float64)
    w = torch.ones(1, d, dtype=torch.float64)
    independent = linear_variance_shift(w, mean, torch.eye(d, dtype=torch.float64), keep)
    assert float(independent) == pytest.approx(keep, rel=1e-12)  # diagonal covariance: q
    rho = 0.5
    correlated = (1 - rho) * torch.eye(d, dtype=torch.float64) + rho
    shifted = float(linear_variance_shift(w, mean, correlated, keep))
    expected = (d + d * (d - 1) * rho) / (d + d * (d - 1) * rho + (1 - keep) / keep * d)
    assert shifted == pytest.approx(expected, rel=1e-12) and keep < shifted < 1
    cov = dropout_covariance(mean + 1.0, torch.eye(d, dtype=torch.float64), keep)
    off = cov - torch.diag(cov.diagonal())
    assert torch.equal(off, torch.zeros_like(off))
    assert torch.allclose(
        cov.diagonal(), torch.full((d,), 1 + (1 - keep) / keep * 2, dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="keep_prob"):
        variance_shift(0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="weight must be"):
        linear_variance_shift(torch.ones(1, 3), mean, torch.eye(d), keep)


# -- variance shift: in a network ---------------------------------------------------------------------
def _net(drop: float) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 32),
        ICLayer(32, drop_prob=drop),
        nn.Linear(32, 32),
        ICLayer(32, drop_prob=drop),
        nn.Linear(32, 4),
    )


def _batches(n: int = 8, size: int = 256) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return [
        (torch.randn(size, 8, generator=g) + 0.5, torch.zeros(size, dtype=torch.long))
        for _ in range(n)
    ]


def _train_running_stats(model: nn.Module, batches) -> None:
    model.train()
    with torch.no_grad():
        for _ in range(5):
            for x, _ in batches:
                model(x)


def test_dropout_before_bn_shrinks_test_variance_and_recalibration_removes_it():
    model = _net(0.3)
    batches = _batches()
    _train_running_stats(model, batches)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    profile = variance_shift_profile(model, batches)
    assert list(profile["module"]) == [name for name, _ in ic_batchnorms(model)] == ["1.bn", "3.bn"]
    # layer 1 sees no dropout before it: no shift; layer 2 follows dropout through a linear layer
    assert profile.loc[0, "shift"] == pytest.approx(1.0, abs=1e-6)
    assert profile.loc[1, "shift"] < 0.9 and profile.loc[1, "shift_running"] < 0.9
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # untouched
    model.eval()
    recalibrate_batchnorm(model, batches, dropout=False)
    assert not model.training and all(not m.training for m in model.modules())
    after = variance_shift_profile(model, batches)
    assert after.loc[1, "shift_running"] == pytest.approx(1.0, abs=0.02)
    assert model[1].bn.momentum == 0.1  # momenta restored


def test_recalibration_with_dropout_reproduces_the_training_statistics():
    model = _net(0.3)
    batches = _batches()
    recalibrate_batchnorm(model, batches, dropout=True)
    train = bn_input_variances(model, batches, mode="train", seed=5)
    running = model[3].bn.running_var
    # other dropout masks than the recalibration's: equal up to mask noise, channel by channel
    ratio = train["3.bn"] / running
    assert abs(float(ratio.mean()) - 1.0) < 0.03 and float((ratio - 1).abs().max()) < 0.25


def test_measurements_are_reproducible_and_leave_the_rng_alone():
    model = _net(0.2)
    batches = _batches(2)
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    a = bn_input_variances(model, batches, mode="train", seed=2)
    assert torch.equal(torch.rand(3), expected)  # the caller's stream continues as before
    b = bn_input_variances(model, batches, mode="train", seed=2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="mode must be"):
        bn_input_variances(model, batches, mode="test")
    with pytest.raises(ValueError, match="no layers to measure"):
        bn_input_variances(nn.Sequential(nn.Linear(8, 2)), batches, mode="eval")
    with pytest.raises(ValueError, match="no BatchNorm"):
        recalibrate_batchnorm(nn.Sequential(nn.Linear(8, 2)), batches)
    with pytest.raises(ValueError, match="empty"):
        recalibrate_batchnorm(model, [])
