"""Measurements during a classify run (``config["measure"]``): registered by name, validated,
logged per epoch into ``history.extras``, stored in the record and drawn by ``load_curves``; their
final values promoted to the run's metrics; the built-in ``topk`` measurement (IC-F5, DBN-T3,
NP-T4) and the functions behind it (``normbook.analysis.accuracy``)."""

from __future__ import annotations

import pytest
import torch

from normbook.analysis.accuracy import topk_accuracy, topk_correct
from normbook.experiments import load_curves, run
from normbook.experiments.measures import (
    build_measures,
    expected_metrics,
    list_measures,
    register_measure,
)
from normbook.experiments.registry import Registry, default_registry
from normbook.experiments.spec import ConfigError, Experiment, ScaleSpec, deep_merge
from normbook.experiments.tasks import (
    classification_metrics,
    classify,
    final_extras,
    validate_config,
)

MEASURE = "test.first-weight-norm"


class FirstWeightNorm:
    """Logs the 2-norm of the model's first weight after every epoch."""

    def __init__(self, model, data, *, power: float = 1.0):
        self.power = power

    def on_epoch_end(self, state):
        weight = next(state.model.parameters())
        state.log(MEASURE, float(weight.detach().norm()) ** self.power)


if MEASURE not in list_measures():
    register_measure(MEASURE)(FirstWeightNorm)


def _config(measure):
    base = default_registry().get("foundations.digits-mlp")
    config = base.resolve("smoke", {"train.lr": 0.1, "model.norm": "bn"})
    return deep_merge(config, {"measure": measure})


def test_unknown_or_malformed_measures_are_refused():
    validate_config(_config({MEASURE: {}}))
    with pytest.raises(ConfigError, match="unknown measure 'nope'"):
        validate_config(_config({"nope": {}}))
    with pytest.raises(ConfigError, match="must be a mapping of options"):
        validate_config(_config({MEASURE: 3}))
    with pytest.raises(ConfigError, match="measure 'test.first-weight-norm'"):
        build_measures({MEASURE: {"colour": "red"}}, torch.nn.Linear(2, 2), None)
    with pytest.raises(ValueError, match="already registered"):
        register_measure(MEASURE)(FirstWeightNorm)


def test_measure_is_logged_per_epoch_stored_and_drawn(tmp_path):
    config = _config({MEASURE: {"power": 2.0}})
    entry = Experiment(
        id="test.measured",
        artifact="BOOK-TEST",
        title="digits MLP with a measurement",
        description="test",
        scales={"smoke": ScaleSpec(config=config, grid={"train.lr": (0.1, 0.3)})},
    )
    registry = Registry([entry])
    outcomes = run("test.measured", "smoke", root=tmp_path, registry=registry, progress=False)
    assert len(outcomes) == 2
    curves = load_curves("test.measured", "smoke", (MEASURE,), root=tmp_path, registry=registry)
    epochs = config["train"]["epochs"]
    assert len(curves) == 2 * epochs
    assert (curves[f"{MEASURE}_mean"] > 0).all() and (curves[f"{MEASURE}_n"] == 1).all()


# -- promoting final values to metrics ------------------------------------------------------------
def test_final_extras_are_the_last_number_of_each_column_when_finite():
    assert final_extras({"extras": {"a": [1.0, None], "b": [[1, 2]]}}) == {"a": 1.0}
    extras = {"a": [0.1, 0.2], "b": [0.5, float("nan")], "c": [True], "d": [None, 3]}
    assert final_extras({"extras": extras}) == {"a": 0.2, "d": 3.0}  # NaN last: not a metric


def test_classification_metrics_give_topk_errors_in_percent():
    metrics = classification_metrics({"test_top5_acc": 0.9, "test_acc": 0.5, "val_top1_acc": 1.0})
    assert metrics["test_top5_error_pct"] == pytest.approx(10.0)
    assert metrics["val_top1_error_pct"] == pytest.approx(0.0)
    assert metrics["test_error_pct"] == pytest.approx(50.0)
    # only <split>_top<k>_acc names get an error
    assert set(metrics) - {"test_top5_acc", "test_acc", "val_top1_acc"} == {
        "test_acc_pct",
        "test_error_pct",
        "test_top5_error_pct",
        "val_top1_error_pct",
    }
    assert classification_metrics({"test_top5_acc": None})["test_top5_error_pct"] is None


# -- top-k: counting, accuracy of a model -----------------------------------------------------------
def test_topk_correct_counts_targets_among_the_k_largest_logits():
    logits = torch.tensor([[0.1, 0.9, 0.0, 0.5], [3.0, 2.0, 1.0, 0.0], [0.0, 0.1, 0.2, 0.3]])
    targets = torch.tensor([3, 2, 0])
    # row 0: order 1,3,0,2 -> target 3 at rank 2; row 1: target 2 at rank 3; row 2: rank 4
    # k = 5 >= the 4 classes counts every row
    assert topk_correct(logits, targets, [1, 2, 3, 4, 5]) == [0, 1, 2, 3, 3]
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 10, generator=gen)
    targets = torch.randint(0, 10, (200,), generator=gen)
    rank = (logits > logits.gather(1, targets[:, None])).sum(1)  # 0-based rank of the target
    assert topk_correct(logits, targets, [1, 5]) == [int((rank < 1).sum()), int((rank < 5).sum())]
    assert topk_correct(logits, targets, [1])[0] == int((logits.argmax(1) == targets).sum())
    with pytest.raises(ValueError, match="N×C"):
        topk_correct(logits[0], targets, [1])
    for ks, message in (([], "non-empty"), ([0], "k must be"), ([1, 1], "repeated"), (5, "list")):
        with pytest.raises(ValueError, match=message):
            topk_correct(logits, targets, ks)


def test_topk_accuracy_counts_labels_among_the_largest_logits_in_eval_mode():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3, bias=False), torch.nn.Dropout(0.9))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(3))
    x = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0]])
    batches = [(x, torch.tensor([1, 0]))]
    model.train()
    # eval mode: dropout off, so the identity's logits decide; k beyond the classes: every label
    assert topk_accuracy(model, batches, [1, 2, 5]) == {1: 0.0, 2: 0.5, 5: 1.0}
    assert model.training  # restored
    split = [(x[:1], torch.tensor([1])), (x[1:], torch.tensor([1]))]  # accumulated over batches
    assert topk_accuracy(model, split, [1]) == {1: 0.5}
    assert topk_accuracy(model, batches, [1, 2], amp_dtype=torch.bfloat16) == {1: 0.0, 2: 0.5}
    with pytest.raises(ValueError, match="k must be"):
        topk_accuracy(model, batches, [0])
    with pytest.raises(ValueError, match="no samples"):
        topk_accuracy(model, [], [1])
    assert model.training


# -- the built-in topk measurement in classify runs ------------------------------------------------
CPU = torch.device("cpu")


def _tiny(measure, **train):
    return {
        "model": {"name": "mlp", "in_features": 64, "hidden": [16], "norm": "bn", "act": "relu"},
        "data": {"name": "digits", "variant": "flat"},
        "train": {"epochs": 2, "batch_size": 128, "lr": 0.1, "augment": False, **train},
        "measure": measure,
    }


def test_topk_values_and_errors_land_in_the_metrics():
    config = _tiny({"topk": {"ks": [1, 5]}})
    validate_config(config)
    result = classify(config, seed=0, device=CPU, run_dir=None, progress=False)
    metrics, extras = result["metrics"], result["history"].extras
    assert metrics["test_top1_acc"] == pytest.approx(metrics["test_acc"], abs=1e-12)
    assert metrics["test_top1_error_pct"] == pytest.approx(metrics["test_error_pct"], abs=1e-9)
    assert metrics["test_top5_acc"] >= metrics["test_top1_acc"]
    assert metrics["test_top5_error_pct"] == pytest.approx(100 * (1 - metrics["test_top5_acc"]))
    # every_epoch (the default): a value after every evaluated epoch, top-1 equal to the loop's
    assert extras["test_top1_acc"] == pytest.approx(result["history"].test_acc, abs=1e-12)
    top5, top1 = extras["test_top5_acc"], extras["test_top1_acc"]
    assert len(top5) == 2 and all(t5 >= t1 for t5, t1 in zip(top5, top1, strict=True))
    assert metrics["test_top5_acc"] == extras["test_top5_acc"][-1]


def test_topk_follows_eval_every_or_only_the_last_epoch():
    every = classify(
        _tiny({"topk": {"ks": [5], "split": "train", "batch_size": 100}}, epochs=3, eval_every=2),
        seed=0,
        device=CPU,
        run_dir=None,
        progress=False,
    )
    column = every["history"].extras["train_top5_acc"]
    assert column[0] is None and column[1] is not None and column[2] is not None
    assert every["metrics"]["train_top5_error_pct"] == pytest.approx(100 * (1 - column[2]))
    last = classify(
        _tiny({"topk": {"ks": [1], "every_epoch": False}}, epochs=2),
        seed=0,
        device=CPU,
        run_dir=None,
        progress=False,
    )
    assert last["history"].extras["test_top1_acc"][0] is None
    assert last["metrics"]["test_top1_acc"] == pytest.approx(last["metrics"]["test_acc"])


class _Poison:
    """Test callback: after the first epoch, stop the run or make its weights non-finite."""

    def __init__(self, model, data, *, how: str):
        self.how = how

    def on_epoch_end(self, state):
        if state.epoch != 1:
            return
        if self.how == "stop":
            state.request_stop()
        else:
            with torch.no_grad():
                next(state.model.parameters()).fill_(float("nan"))


POISON = "test.poison"
if POISON not in list_measures():
    register_measure(POISON)(_Poison)


@pytest.mark.parametrize("how", ["stop", "nan"])
def test_topk_metrics_are_none_when_the_run_diverged_or_stopped_early(how):
    config = _tiny({"topk": {"ks": [1, 5]}, MEASURE: {}, POISON: {"how": how}})
    result = classify(config, seed=0, device=CPU, run_dir=None, progress=False)
    history, metrics = result["history"], result["metrics"]
    assert history.extras["test_top5_acc"][0] is not None  # logged in epoch 1 ...
    assert history.diverged == (how == "nan") and len(history.epoch) == 1
    for name in ("test_top1_acc", "test_top5_acc", "test_top5_error_pct", MEASURE):
        assert metrics[name] is None  # ... but no final value
    # a run that diverges in its first epoch logs nothing, and still reports the top-k as None
    diverged = classify(
        _tiny({"topk": {"ks": [5]}}, lr=1e6, momentum=0.9),
        seed=0,
        device=CPU,
        run_dir=None,
        progress=False,
    )
    assert diverged["history"].diverged and "test_top5_acc" not in diverged["history"].extras
    assert diverged["metrics"]["test_top5_acc"] is None
    assert diverged["metrics"]["test_top5_error_pct"] is None


def test_topk_options_are_validated_with_messages_naming_them():
    assert expected_metrics({"topk": {}}) == ["test_top1_acc", "test_top5_acc"]
    assert expected_metrics({"topk": {"ks": [3], "split": "val"}}) == ["val_top3_acc"]
    assert expected_metrics({MEASURE: {}}) == []
    bad = [
        ({"ks": []}, "option ks"),
        ({"ks": [0]}, "option ks"),
        ({"ks": [1, 1]}, "option ks"),
        ({"ks": "5"}, "option ks"),
        ({"ks": 5}, "option ks"),
        ({"batch_size": 0}, "option batch_size"),
        ({"every_epoch": "yes"}, "option every_epoch"),
        ({"split": 3}, "option split"),
        ({"k": 5}, "unknown options"),
    ]
    for options, message in bad:
        with pytest.raises(ConfigError, match=message):
            validate_config(_tiny({"topk": options}))
    with pytest.raises(ConfigError, match="option split 'valid' is not a split"):
        classify(_tiny({"topk": {"split": "valid"}}), seed=0, device=CPU, run_dir=None)
