"""Synthesis part: the method knob, linear lr scaling, the cost task, and the selection analysis."""

import pandas as pd
import pytest
import torch

from normbook.analysis.synthesis import (
    BATCH,
    LR,
    accuracy_by,
    breaking_point,
    cost_table,
    largest_stable_lr,
    leaderboard,
    run_table,
    select_lr,
    uses_batch_statistics,
)
from normbook.experiments import get_experiment, run
from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import validate_config
from normbook.experiments.tasks_synthesis import (
    METHOD_NAMES,
    METHODS,
    classify_config,
    effective_lr,
    method_model_options,
    methods_for,
    synthesis_cost,
)
from normbook.models import build_model
from normbook.viz import bar_figure, grid_table, leaderboard_table

BASE = {
    "task": "synthesis",
    "method": "bn",
    "model": {"name": "mlp", "in_features": 64, "depth": 2, "width": 16},
    "data": {"name": "digits", "variant": "flat", "val_split": 0.2},
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.1},
}


@pytest.mark.parametrize(
    ("family", "options", "shape"),
    [
        ("mlp", {"in_features": 64, "hidden": (16, 16)}, (8, 64)),
        ("resnet_cifar", {"depth": 8, "widths": [4, 8, 8], "in_channels": 1}, (8, 1, 8, 8)),
    ],
)
def test_every_method_builds_on_both_protocol_models(family, options, shape):
    for method in methods_for(family):
        torch.manual_seed(0)
        net = build_model(family, num_classes=10, **options, **method_model_options(method, family))
        out = net(torch.randn(*shape))
        assert out.shape == (8, 10) and torch.isfinite(out).all(), method
    assert set(METHOD_NAMES) == set(METHODS)


def test_fixup_is_only_for_residual_families_and_unknown_methods_are_named():
    assert "fixup" in methods_for("resnet_cifar") and "fixup" not in methods_for("mlp")
    with pytest.raises(ConfigError, match="cannot build method 'fixup'"):
        method_model_options("fixup", "mlp")
    with pytest.raises(ConfigError, match="method must be one of"):
        method_model_options("batchnorm", "mlp")
    # the IC layer goes before the weight layer: after the activation in the MLP
    assert method_model_options("ic", "mlp")["norm_position"] == "after_act"
    assert "norm_position" not in method_model_options("ic", "resnet_cifar")


def test_linear_lr_scaling():
    assert effective_lr(0.4, 2, 128) == pytest.approx(0.4 * 2 / 128)
    assert effective_lr(0.4, 64, None) == 0.4
    with pytest.raises(ConfigError, match="lr_reference_batch"):
        effective_lr(0.1, 4, 0)
    with pytest.raises(ConfigError, match="lr_reference_batch"):
        effective_lr(0.1, 4, 12.5)
    scaled = classify_config({**BASE, "lr_reference_batch": 128})
    assert scaled["train"]["lr"] == pytest.approx(0.1 * 32 / 128)
    assert scaled["task"] == "classify" and scaled["model"]["norm"] == "bn"
    assert classify_config(BASE)["train"]["lr"] == 0.1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "nope"}, "method must be one of"),
        ({"extra": 1}, "unknown config keys"),
        ({"model": {**BASE["model"], "norm": "bn"}}, "must not set"),
    ],
)
def test_synthesis_validation_names_the_problem(change, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({**BASE, **change})
    config = dict(BASE)
    del config["method"]
    with pytest.raises(ConfigError, match="needs a 'method'"):
        validate_config(config)


def test_every_synthesis_entry_compares_the_same_methods_on_each_model():
    for entry_id in ("synthesis.protocol.resnet", "synthesis.protocol.mlp"):
        spec = get_experiment(entry_id).scale("small")
        assert spec.seeds >= 5  # the protocol: at least five seeds
        assert spec.config["data"]["val_split"] > 0  # the lr is chosen on held-out data
        family = spec.config["model"]["name"]
        assert tuple(spec.grid["method"]) == methods_for(family)


COST = {
    "task": "synthesis-cost",
    "methods": ["bn", "none", "mimic", "bn-crelu"],
    "model": {"name": "mlp", "in_features": 64, "depth": 2, "width": 16},
    "data": {"name": "digits", "variant": "flat"},
    "train": {"epochs": 1, "lr": 0.1},
    "batch_size": 8,
    "steps": 1,
    "rounds": 2,
}


def test_cost_task_reports_ratios_to_bn_and_exact_memory():
    result = synthesis_cost(COST, seed=0, device=torch.device("cpu"), run_dir=None)
    metrics = result["metrics"]
    assert metrics["step_ratio_bn"] == 1.0 and metrics["memory_ratio_bn"] == 1.0
    assert len(result["history"]["step_seconds"]["bn"]) == COST["steps"] * COST["rounds"]
    table = cost_table(metrics).set_index("method")
    # no BN layers to save inputs for: less memory; CReLU doubles the activations: more
    assert table.loc["none", "memory_ratio"] < 1 < table.loc["bn-crelu", "memory_ratio"]
    assert table.loc["mimic", "memory_ratio"] < 1
    assert table.loc["bn-crelu", "parameters"] > table.loc["bn", "parameters"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"methods": ["none", "mimic"]}, "including 'bn'"),
        ({"methods": ["bn", "fixup"]}, "cannot build method 'fixup'"),
        ({"steps": 0}, "steps"),
        ({"warmup": 3}, "unknown config keys"),
    ],
)
def test_cost_validation_names_the_problem(change, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({**COST, **change})


def _runs(rows):
    return pd.DataFrame(rows, columns=["method", LR, "seed", "diverged", "val_acc", "test_acc"])


def test_the_lr_is_chosen_on_validation_not_test():
    runs = _runs(
        [("bn", 0.1, s, False, 0.90, 0.80) for s in range(3)]
        + [("bn", 1.0, s, False, 0.85, 0.95) for s in range(3)]
        + [("none", 0.1, s, False, 0.5 + 0.1 * s, 0.5) for s in range(3)]
        + [("none", 1.0, s, True, 0.1, 0.1) for s in range(3)]
    )
    board = leaderboard(runs).set_index("method")
    assert board.loc["bn", "lr"] == 0.1 and board.loc["bn", "lr_if_test"] == 1.0
    assert board.loc["bn", "test_mean"] == pytest.approx(0.80)  # read at the val-chosen rate
    assert board.loc["none", "n_diverged"] == 0 and board.loc["none", "val_std"] == pytest.approx(
        0.1
    )
    assert list(board.index) == ["bn", "none"]  # ranked by test accuracy
    assert select_lr(runs, selection="test").set_index("method").loc["bn", "lr"] == 1.0
    with pytest.raises(ValueError, match="selection"):
        select_lr(runs, selection="train")
    assert "0.1" in leaderboard_table(leaderboard(runs)).data


def test_largest_stable_lr_separates_not_training_from_diverging():
    runs = _runs(
        [("bn", lr, 0, False, acc, acc) for lr, acc in ((0.1, 0.9), (1.0, 0.8), (3.0, 0.3))]
        + [
            ("none", lr, 0, div, acc, acc)
            for lr, div, acc in ((0.1, False, 0.7), (1.0, True, 0.1), (3.0, True, 0.1))
        ]
    )
    table = largest_stable_lr(runs).set_index("method")
    assert table.loc["bn", "largest_trainable_lr"] == 1.0
    assert pd.isna(table.loc["bn", "smallest_diverging_lr"])  # failing to train is not diverging
    assert table.loc["none", "largest_trainable_lr"] == 0.1
    assert table.loc["none", "smallest_diverging_lr"] == 1.0


def test_breaking_point_per_batch_size():
    rows = []
    for batch, acc_bn, acc_np in ((2, 0.5, 0.88), (16, 0.85, 0.9), (128, 0.9, 0.9)):
        rows += [("bn", 0.1, s, False, acc_bn, acc_bn, batch) for s in range(2)]
        rows += [("normprop2", 0.1, s, False, acc_np, acc_np, batch) for s in range(2)]
    runs = pd.DataFrame(
        rows, columns=["method", LR, "seed", "diverged", "val_acc", "test_acc", BATCH]
    )
    table = accuracy_by(runs, BATCH)
    broken = breaking_point(table, BATCH).set_index("method")
    assert broken.loc["bn", "broken_at"] == [2] and broken.loc["bn", "uses_batch_statistics"]
    assert broken.loc["normprop2", "broken_at"] == []
    assert not uses_batch_statistics("fixup") and uses_batch_statistics("mimic")
    assert "batch 128" in grid_table(table.assign(name=table["method"]), BATCH, "batch").data


def test_run_table_counts_a_diverged_run_at_chance(tmp_path):
    run(
        "synthesis.protocol.mlp",
        "smoke",
        root=tmp_path,
        points=[{"method": "bn", "train.lr": 0.1}],
        progress=False,
    )
    runs = run_table("synthesis.protocol.mlp", "smoke", root=tmp_path)
    assert len(runs) == 1 and not runs["stale"].any()
    assert 0.0 <= runs.loc[0, "val_acc"] <= 1.0 and runs.loc[0, "chance"] == pytest.approx(0.1)


def test_bar_figure_draws_groups_and_a_reference_line():
    table = pd.DataFrame(
        {
            "name": ["a", "b", "c"],
            "y": [0.5, 0.7, 0.2],
            "s": [0.1, 0.0, 0.05],
            "g": ["yes", "no", "yes"],
        }
    )
    figure = bar_figure(
        table, x="name", y="y", std="s", color="g", reference=0.1, reference_label="chance"
    )
    assert len(figure.data) == 2 and list(figure.layout.xaxis.categoryarray) == ["a", "b", "c"]
    assert len(figure.layout.shapes) == 1
    with pytest.raises(ValueError, match="non-empty"):
        bar_figure(table.iloc[:0], x="name", y="y")
