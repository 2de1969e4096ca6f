"""normbook.train: config validation, determinism, full-batch GD, schedules, callbacks, divergence,
evaluation, history and checkpoint reuse (all on small CPU models over digits)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from normbook.data import load_dataset
from normbook.layers import NonFiniteInputError
from normbook.train import (
    History,
    LRMultiplier,
    TrainConfig,
    evaluate,
    fit,
    load_checkpoint,
    progress_enabled,
    set_seed,
    train_step,
)


@pytest.fixture(scope="module")
def digits_small():
    """256 training samples: 4 steps per epoch at batch 64."""
    return load_dataset("digits", subset=256)


def mlp(seed: int = 0, dropout: float = 0.0) -> torch.nn.Module:
    set_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 32),
        torch.nn.BatchNorm1d(32),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(32, 10),
    )


def cnn(seed: int = 0) -> torch.nn.Module:
    set_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.1),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 64, 10),
    )


def without_wall_time(history: History) -> dict:
    d = history.to_dict()
    d.pop("wall_time")
    return d


# -- TrainConfig ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epochs": 0}, ValueError, "epochs"),
        ({"epochs": 2.5}, TypeError, "epochs"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"optimizer": "rmsprop"}, ValueError, "optimizer"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"lr": float("nan")}, ValueError, "lr"),
        ({"momentum": 1.0}, ValueError, "momentum"),
        ({"optimizer": "adam", "nesterov": True}, ValueError, "nesterov"),
        ({"weight_decay": -1e-4}, ValueError, "weight_decay"),
        ({"schedule": "cosine"}, ValueError, "schedule"),
        ({"schedule": "multistep"}, ValueError, "milestones"),
        ({"schedule": "multistep", "milestones": (5, 3)}, ValueError, "increasing"),
        ({"milestones": (3,)}, ValueError, "only used by schedule='multistep'"),
        ({"schedule": "step"}, ValueError, "step_size"),
        ({"schedule": "halving", "step_size": 0}, ValueError, "step_size"),
        ({"warmup_epochs": -1}, ValueError, "warmup_epochs"),
        ({"label_smoothing": 1.0}, ValueError, "label_smoothing"),
        ({"amp": "fp8"}, ValueError, "amp"),
        ({"channels_last": "yes"}, ValueError, "channels_last"),
        ({"grad_clip": 0.0}, ValueError, "grad_clip"),
        ({"divergence_threshold": 0}, ValueError, "divergence_threshold"),
        ({"eval_every": 0}, ValueError, "eval_every"),
        ({"checkpoint_every": 0}, ValueError, "checkpoint_every"),
        ({"augment": "yes"}, TypeError, "augment"),
    ],
)
def test_train_config_rejects_bad_values(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**{"epochs": 1, **kwargs})


def test_train_config_json_round_trip():
    config = TrainConfig(
        epochs=150,
        schedule="multistep",
        milestones=[80, 110, 135],
        warmup_epochs=2,
        batch_size=None,
    )
    assert config.milestones == (80, 110, 135)
    data = json.loads(json.dumps(dataclasses.asdict(config)))
    assert TrainConfig.from_dict(data) == config
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({**data, "lr_max": 1})


# -- schedules -------------------------------------------------------------------------------


def test_schedule_multipliers_per_epoch():
    def per_epoch(config):
        mult = LRMultiplier.from_config(config, steps_per_epoch=3)
        return [round(mult(3 * e), 12) for e in range(7)]

    multistep = TrainConfig(epochs=7, schedule="multistep", milestones=(2, 5), gamma=0.2)
    assert per_epoch(multistep) == [1, 1, 0.2, 0.2, 0.2, 0.04, 0.04]
    step = TrainConfig(epochs=7, schedule="step", step_size=3, gamma=0.1)
    assert per_epoch(step) == [1, 1, 1, 0.1, 0.1, 0.1, 0.01]
    halving = TrainConfig(epochs=7, schedule="halving", step_size=2)
    assert per_epoch(halving) == [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125]
    assert per_epoch(TrainConfig(epochs=7)) == [1] * 7


def test_fit_applies_warmup_per_step_and_milestones_per_epoch(digits_small):
    config = TrainConfig(
        epochs=5,
        batch_size=64,
        lr=0.1,
        schedule="multistep",
        milestones=(3, 4),
        gamma=0.1,
        warmup_epochs=1.5,  # 6 of the 4-step epochs' steps
        eval_every=10,
    )
    lrs = []
    history = fit(
        mlp(),
        digits_small,
        config,
        callbacks=[lambda s: lrs.append(s.optimizer.param_groups[0]["lr"])],
        progress=False,
    )
    # the rate used by each of the 20 steps (recorded after the step: the next step's rate)
    used = [0.1 / 6] + lrs[:-1]
    expected = [
        0.1 * min(1, (k + 1) / 6) * 0.1 ** ((k // 4 >= 3) + (k // 4 >= 4)) for k in range(20)
    ]
    assert used == pytest.approx(expected, rel=1e-12)
    assert history.lr == pytest.approx([0.1 / 6, 0.1 * 5 / 6, 0.1, 0.01, 0.001], rel=1e-12)
    # evaluated only at the last epoch when eval_every exceeds the run
    assert history.test_acc[:4] == [None] * 4 and history.test_acc[4] is not None


# -- determinism -----------------------------------------------------------------------------


def test_same_seed_same_history_and_different_seed_differs():
    data = load_dataset("digits", variant="8x8", subset=320)  # shifts on: generator in use
    config = TrainConfig(epochs=2, batch_size=64, lr=0.05)
    a = fit(cnn(1), data, config, seed=3, progress=False)
    b = fit(cnn(1), data, config, seed=3, progress=False)
    c = fit(cnn(1), data, config, seed=4, progress=False)
    assert without_wall_time(a) == without_wall_time(b)
    assert a.train_loss != c.train_loss
    assert len(a) == 2 and a.epoch == [1, 2]
    assert not torch.are_deterministic_algorithms_enabled()  # restored after fit


def test_full_batch_gradient_descent_matches_a_manual_loop():
    data = load_dataset("digits")
    config = TrainConfig(epochs=3, batch_size=None, lr=0.5, momentum=0.0, eval_every=10)
    steps = []
    set_seed(0)
    model = torch.nn.Linear(64, 10)
    manual = torch.nn.Linear(64, 10)
    manual.load_state_dict(model.state_dict())
    history = fit(model, data, config, callbacks=[lambda s: steps.append(s.step)], progress=False)
    assert steps == [1, 2, 3]  # one step per epoch
    x, y = data.tensors("train")
    losses = []
    for _ in range(3):
        manual.zero_grad()
        loss = F.cross_entropy(manual(x), y)
        loss.backward()
        losses.append(loss.item())
        with torch.no_grad():
            for p in manual.parameters():
                p -= 0.5 * p.grad
    assert history.train_loss == pytest.approx(losses, rel=1e-5)
    assert torch.allclose(model.weight, manual.weight, atol=1e-6)


def test_train_loss_and_accuracy_are_epoch_means(digits_small):
    losses = []

    def record(state):
        x, y = state.batch
        losses.append(float(state.loss))

    history = fit(
        mlp(),
        digits_small,
        TrainConfig(epochs=1, batch_size=100, drop_last=False),
        callbacks=[record],
    )
    assert len(losses) == 3  # 100 + 100 + 56
    assert history.train_loss[0] == pytest.approx(sum(losses) / 3, rel=1e-6)
    assert 0 <= history.train_acc[0] <= 1 and history.grad_norm[0] > 0
    assert history.peak_memory == [None] and history.wall_time[0] > 0


# -- callbacks -------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.calls = {"on_train_start": 0, "on_step_end": 0, "on_epoch_end": 0, "on_train_end": 0}

    def on_train_start(self, state):
        self.calls["on_train_start"] += 1
        state.log("params", sum(p.numel() for p in state.model.parameters()))

    def on_step_end(self, state):
        self.calls["on_step_end"] += 1

    def on_epoch_end(self, state):
        self.calls["on_epoch_end"] += 1
        state.log("first_weight_norm", state.model[0].weight.norm())
        if state.epoch == 2:
            state.log("only_epoch_2", 2)

    def on_train_end(self, state):
        self.calls["on_train_end"] += 1


def test_callbacks_called_the_right_number_of_times_and_log_to_extras(digits_small):
    recorder = Recorder()
    plain_calls = []
    history = fit(
        mlp(),
        digits_small,
        TrainConfig(epochs=3, batch_size=64),
        callbacks=[recorder, lambda s: plain_calls.append(s.step)],
        progress=False,
    )
    assert recorder.calls == {
        "on_train_start": 1,
        "on_step_end": 12,
        "on_epoch_end": 3,
        "on_train_end": 1,
    }
    assert plain_calls == list(range(1, 13))
    norms = history.extras["first_weight_norm"]
    assert len(norms) == 3 and all(isinstance(v, float) and v > 0 for v in norms)
    assert history.extras["only_epoch_2"] == [None, 2, None]
    assert history.summary == {"params": 64 * 32 + 32 + 64 + 32 * 10 + 10}
    json.dumps(history.to_dict())


def test_callback_can_stop_training(digits_small):
    def stop_after_first_epoch(state):
        state.request_stop()

    class Stopper:
        on_epoch_end = staticmethod(stop_after_first_epoch)

    history = fit(mlp(), digits_small, TrainConfig(epochs=5), callbacks=[Stopper()], progress=False)
    assert history.epoch == [1] and not history.diverged


def test_bad_callback_rejected(digits_small):
    with pytest.raises(TypeError, match="callback"):
        fit(mlp(), digits_small, TrainConfig(epochs=1), callbacks=[42], progress=False)


# -- divergence ------------------------------------------------------------------------------


def test_huge_learning_rate_is_recorded_as_diverged_not_raised(digits_small):
    set_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    history = fit(model, digits_small, TrainConfig(epochs=5, lr=1e4, momentum=0.9), progress=False)
    assert history.diverged and history.diverged_epoch is not None
    assert len(history) == history.diverged_epoch - 1 < 5
    assert "loss" in history.diverged_reason
    final = history.final_metrics()
    assert final["diverged"] and final["test_acc"] is None


class FiniteCheck(torch.nn.Module):
    """Raises on non-finite input, as the normalization layers' input checks do."""

    def forward(self, x):
        if not torch.isfinite(x).all():
            raise ValueError("input contains NaN or Inf")
        return x


def test_layer_error_after_blow_up_counts_as_divergence(digits_small):
    set_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.ReLU(), FiniteCheck(), torch.nn.Linear(64, 10)
    )
    config = TrainConfig(epochs=5, lr=1e12, divergence_threshold=1e300)  # only NaN/Inf count
    history = fit(model, digits_small, config, progress=False)
    assert history.diverged
    assert "ValueError" in history.diverged_reason


class FailsInEval(torch.nn.Module):
    """Refuses its input in evaluation mode only, as DBN does when its running whitening has
    blown up while every training step was still finite."""

    def forward(self, x):
        if not self.training:
            raise NonFiniteInputError("FailsInEval: input contains NaN or Inf")
        return x


def test_non_finite_activations_in_evaluation_count_as_divergence(digits_small):
    set_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 16), FailsInEval(), torch.nn.Linear(16, 10))
    history = fit(model, digits_small, TrainConfig(epochs=3), progress=False)
    assert history.diverged and "in evaluation" in history.diverged_reason
    assert history.epoch == []  # the epoch was not evaluated, so it is not in the curves


def test_unrelated_error_is_raised(digits_small):
    model = torch.nn.Sequential(torch.nn.Linear(63, 10))  # wrong input size
    with pytest.raises(RuntimeError):
        fit(model, digits_small, TrainConfig(epochs=1), progress=False)


# -- steps, evaluation, history ----------------------------------------------------------------


def test_train_step_reports_the_norm_before_clipping():
    set_seed(0)
    model = torch.nn.Linear(5, 3)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    x, y = torch.randn(8, 5) * 100, torch.arange(8) % 3
    loss, correct, norm = train_step(model, optimizer, x, y, grad_clip=0.01)
    step = torch.cat(
        [(b - p.detach()).flatten() for b, p in zip(before, model.parameters(), strict=True)]
    )
    assert norm > 0.01
    assert step.norm() == pytest.approx(0.01, rel=1e-4)  # update = lr × clipped gradient
    assert 0 <= int(correct) <= 8 and loss.requires_grad is False


def test_evaluate_matches_a_manual_computation(digits_small):
    model = mlp()
    model.train()
    loss, acc = evaluate(model, digits_small, "test", batch_size=100)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        x, y = digits_small.tensors("test")
        logits = model(x)
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_history_round_trip_and_final_metrics():
    h = History()
    for e, acc in enumerate([0.5, 0.8, 0.7], start=1):
        h.append_epoch(
            epoch=e,
            train_loss=1.0 / e,
            train_acc=acc,
            test_loss=2.0 / e,
            test_acc=acc,
            val_loss=None,
            val_acc=None,
            lr=0.1,
            grad_norm=1.0,
            wall_time=float(e),
            peak_memory=None,
        )
    h.log_extra("delta", 3.0, 1)
    assert h.extras["delta"] == [None, 3.0]
    again = History.from_dict(json.loads(json.dumps(h.to_dict())))
    assert again.epoch == h.epoch and again.test_acc == h.test_acc
    final = h.final_metrics()
    assert final["test_acc"] == 0.7 and final["best_test_acc"] == 0.8 and final["best_epoch"] == 2
    assert final["epochs"] == 3 and final["wall_time"] == 3.0 and not final["diverged"]
    with pytest.raises(ValueError, match="missing"):
        h.append_epoch(epoch=4)


def test_progress_is_quiet_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert progress_enabled(None) is False
    assert progress_enabled(True) is True


def test_fit_validates_its_arguments(digits_small):
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        fit(mlp(), digits_small, {"epochs": 1})
    with pytest.raises(TypeError, match="data must be"):
        fit(mlp(), (torch.zeros(2, 64), torch.zeros(2)), TrainConfig(epochs=1))


# -- checkpoints -----------------------------------------------------------------------------


def test_finished_run_dir_returns_its_history_without_training(digits_small, tmp_path):
    config = TrainConfig(epochs=2, batch_size=64, checkpoint_every=5)
    first = fit(mlp(), digits_small, config, run_dir=tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2  # saved at the end
    steps = []
    second = fit(
        mlp(), digits_small, config, run_dir=tmp_path, callbacks=[steps.append], progress=False
    )
    assert steps == [] and second.to_dict() == first.to_dict()
    with pytest.raises(ValueError, match="another config or seed"):
        fit(mlp(), digits_small, dataclasses.replace(config, lr=0.2), run_dir=tmp_path)
    with pytest.raises(ValueError, match="other data"):
        fit(mlp(), load_dataset("digits", subset=200), config, run_dir=tmp_path)
    assert not math.isnan(first.train_loss[-1])


def test_last_incomplete_batch_is_dropped_by_default_and_an_empty_epoch_is_refused():
    """A batch of a few samples would give noise statistics (and a DBN group with m < k_G a
    1/sqrt(eps) running whitening): fit skips it, and refuses a batch larger than the data."""

    data = load_dataset("digits", variant="flat")
    assert TrainConfig(epochs=1).drop_last is True
    n = data.num_train
    assert data.num_batches(64, drop_last=True) == n // 64
    with pytest.raises(ValueError, match="batch_size .* exceeds"):
        data.num_batches(n + 1, drop_last=True)
    assert data.num_batches(n + 1, drop_last=False) == 1
