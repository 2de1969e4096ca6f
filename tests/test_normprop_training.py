"""NormProp training chapters (PAPERS.md NP-F2, NP-T1..T4): the learning-rate rule "0.1, halved
until trainable" as a task that records every attempt, the per-epoch Δ and last-activation
measures, reading them back, and the registry entries' paper numbers."""

from __future__ import annotations

import math

import pytest
import torch

from normbook.analysis.activity import activation_stats, residual_delta
from normbook.experiments import load, run
from normbook.experiments.registry import Registry, default_registry
from normbook.experiments.spec import ConfigError, Experiment, ScaleSpec
from normbook.experiments.store import iter_records
from normbook.experiments.tasks import validate_config
from normbook.experiments.tasks_normprop_training import (
    DELTA_FIELD,
    HALVING_TASK,
    attempt_lrs,
    block_deltas,
    last_activation_stats,
    live_block_deltas,
    load_attempts,
    load_block_deltas,
    lr_rule,
    run_metrics,
)
from normbook.models import block_io, build_model, residual_blocks
from normbook.train.config import train_defaults

# a one-hidden-layer MLP without normalization on the digits: diverges at lr 16 and 4 (non-finite
# or exploding loss in its first epoch) and trains at lr 1
_MLP = {
    "task": HALVING_TASK,
    "model": {"name": "mlp", "in_features": 64, "hidden": [16], "norm": "none", "act": "relu"},
    "data": {"name": "digits", "variant": "flat"},
    "train": {"epochs": 1, "batch_size": 64, "lr": 16.0, "momentum": 0.9, "augment": False},
    "lr_rule": {"factor": 0.25, "max_attempts": 4},
}
_RESNET = {
    "task": HALVING_TASK,
    "model": {
        "name": "resnet_cifar",
        "depth": 8,
        "widths": [4, 4, 8],
        "in_channels": 1,
        "norm": "bn",
        "act": "relu",
    },
    "data": {"name": "digits", "variant": "8x8", "subset": 256},
    "train": {"epochs": 2, "batch_size": 128, "lr": 0.05, "augment": False},
    "measure": {"residual-delta": {"probe": 32}, "last-activation": {"probe": 32}},
}


def _registry(config, grid=None, entry_id="test.np-rule"):
    entry = Experiment(
        id=entry_id,
        artifact="NP-T2",
        title="t",
        scales={"smoke": ScaleSpec(config=config, grid=grid or {}, seeds=1)},
    )
    return Registry([entry])


def _record(root, entry_id="test.np-rule"):
    ((_, record),) = list(iter_records(root, "smoke", entry_id))
    return record


def test_rule_halves_until_the_engine_stops_recording_divergence(tmp_path):
    registry = _registry(_MLP)
    (outcome,) = run("test.np-rule", "smoke", root=tmp_path, registry=registry, progress=False)
    assert outcome.status == "ok"
    record = _record(tmp_path)
    attempts = record["info"]["lr_attempts"]
    assert [a["lr"] for a in attempts] == [16.0, 4.0, 1.0]
    assert [a["diverged"] for a in attempts] == [True, True, False]
    assert [a["trainable"] for a in attempts] == [False, False, True]
    assert all("diverged in epoch 1" in a["reason"] for a in attempts[:2])
    metrics = record["metrics"]
    assert metrics["lr_used"] == 1.0 and metrics["lr_attempts"] == 3 and metrics["trainable"]
    assert record["history"]["lr"][0] == pytest.approx(1.0)  # the history is the kept attempt's
    assert record["config"]["train"]["lr"] == 16.0  # the spec keeps the rule's starting point
    table = load_attempts("test.np-rule", "smoke", root=tmp_path, registry=registry)
    assert table["lr"].tolist() == [16.0, 4.0, 1.0] and table["trainable"].tolist()[-1]


def test_rule_gives_up_after_max_attempts_and_the_run_is_diverged(tmp_path):
    config = {**_MLP, "train": {**_MLP["train"], "lr": 64.0}, "lr_rule": {"max_attempts": 2}}
    registry = _registry(config)
    (outcome,) = run("test.np-rule", "smoke", root=tmp_path, registry=registry, progress=False)
    assert outcome.status == "diverged"
    record = _record(tmp_path)
    assert [a["lr"] for a in record["info"]["lr_attempts"]] == [64.0, 32.0]
    assert record["metrics"]["trainable"] is False and record["metrics"]["lr_attempts"] == 2


def test_a_run_stuck_below_min_train_acc_is_not_trainable_but_not_diverged(tmp_path):
    config = {**_MLP, "train": {**_MLP["train"], "lr": 1.0}}
    config["lr_rule"] = {"factor": 0.5, "max_attempts": 2, "min_train_acc": 1.0}
    registry = _registry(config)
    (outcome,) = run("test.np-rule", "smoke", root=tmp_path, registry=registry, progress=False)
    record = _record(tmp_path)
    attempts = record["info"]["lr_attempts"]
    assert outcome.status == "ok" and [a["lr"] for a in attempts] == [1.0, 0.5]
    assert not any(a["diverged"] for a in attempts)
    assert all("below min_train_acc" in a["reason"] for a in attempts)
    assert record["metrics"]["trainable"] is False


def test_rule_options_are_validated():
    assert lr_rule({}) == {"factor": 0.5, "max_attempts": 6, "min_train_acc": None}
    assert attempt_lrs(0.1, lr_rule({"lr_rule": {"max_attempts": 4}})) == pytest.approx(
        [0.1, 0.05, 0.025, 0.0125]
    )
    for bad, message in (
        ({"factor": 1.0}, "factor"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"min_train_acc": 2}, "min_train_acc"),
        ({"colour": 1}, "unknown lr_rule keys"),
    ):
        with pytest.raises(ConfigError, match=message):
            validate_config({**_MLP, "lr_rule": bad})
    with pytest.raises(ConfigError, match="unknown config keys"):
        validate_config({**_MLP, "extra": 1})
    with pytest.raises(ConfigError, match="unknown measure"):
        validate_config({**_MLP, "measure": {"nope": {}}})


def _tiny_resnet(norm="bn", act="relu"):
    torch.manual_seed(0)
    return build_model(
        "resnet_cifar", 10, depth=8, widths=(4, 4, 8), in_channels=1, norm=norm, act=act
    )


def test_block_deltas_match_the_definition_block_by_block():
    model = _tiny_resnet().eval()
    x = torch.randn(6, 1, 8, 8)
    deltas = block_deltas(model, x)
    pairs = block_io(model, x)
    assert len(deltas) == len(residual_blocks(model)) == 3  # depth 8: one block per stage
    for (inp, out), delta in zip(pairs, deltas, strict=True):
        if inp.shape != out.shape:
            assert delta is None  # the stride-2 blocks
        else:
            manual = (inp.double() - out.double()).pow(2).sum(dim=1).sqrt().mean()
            assert delta == pytest.approx(float(manual), rel=1e-12)
            assert delta == pytest.approx(residual_delta(inp, out), rel=1e-12)
    assert deltas[0] is not None and deltas[1] is None and deltas[2] is None


def test_last_activation_stats_are_those_of_the_final_activation():
    model = _tiny_resnet(act="crelu").eval()
    x = torch.randn(5, 1, 8, 8)
    captured = {}
    handle = model.final_act.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    with torch.no_grad():
        model(x)
    handle.remove()
    assert last_activation_stats(model, x) == pytest.approx(activation_stats(captured["out"]))


def test_measures_are_logged_every_epoch_stored_and_read_back(tmp_path):
    registry = _registry(_RESNET, grid={"model.act": ("relu", "crelu")}, entry_id="test.np-delta")
    outcomes = run("test.np-delta", "smoke", root=tmp_path, registry=registry, progress=False)
    assert [o.status for o in outcomes] == ["ok", "ok"]
    for _, record in iter_records(tmp_path, "smoke", "test.np-delta"):
        extras = record["history"]["extras"]
        assert len(extras[DELTA_FIELD]) == 2 and len(extras[DELTA_FIELD][0]) == 3
        assert extras[DELTA_FIELD][-1][1] is None  # NaN for a reshaping block is stored as null
        metrics = record["metrics"]
        assert metrics["last_act_mean"] == extras["last_act_mean"][-1]
        assert 0 < metrics["last_act_nzr"] <= 1 and metrics["last_act_std"] > 0
    table = load_block_deltas("test.np-delta", "smoke", root=tmp_path, registry=registry)
    finals = run_metrics("test.np-delta", "smoke", root=tmp_path, registry=registry)
    live, live_finals = live_block_deltas(
        "test.np-delta", "smoke", {"model.act": "relu"}, registry=registry
    )
    assert len(table) == 2 * 2 * 3  # points × epochs × blocks
    assert table["delta_mean"].isna().sum() == 2 * 2 * 2 and (table["delta_n"] <= 1).all()
    assert not table["stale"].any() and set(finals["model.act"]) == {"relu", "crelu"}
    stored = table[table["model.act"] == "relu"].reset_index(drop=True)
    assert live["delta_mean"].tolist() == pytest.approx(stored["delta_mean"].tolist(), nan_ok=True)
    assert live_finals["last_act_mean"].tolist() == pytest.approx(
        finals.loc[finals["model.act"] == "relu", "last_act_mean"].tolist()
    )
    frame = load("test.np-delta", "smoke", root=tmp_path, registry=registry)
    assert (frame["last_act_nzr_n"] == 1).all()


# -- the book's entries ---------------------------------------------------------------------------
REGISTRY = default_registry()


def test_every_full_grid_point_of_tables_2_to_4_has_the_papers_number():
    for entry_id in (
        "normprop.t2.relu",
        "normprop.t2.crelu",
        "normprop.t2.relu-bn-double",
        "normprop.t3.cifar10",
        "normprop.t3.cifar100",
        "normprop.t4.resnet34",
        "normprop.t4.resnet50",
        "normprop.t4.resnet101",
    ):
        entry = REGISTRY.get(entry_id)
        covered = [
            p
            for p in entry.points("full")
            if any(r.metric == "test_error_pct" and r.applies_to(p) for r in entry.paper)
        ]
        expected = 2 if entry.artifact == "NP-T3" else len(entry.points("full"))
        assert len(covered) == expected, entry_id
        assert entry.scale("full").config["task"] == HALVING_TASK
        assert entry.scale("full").config["train"]["lr"] == 0.1


def test_full_configs_follow_the_papers_recipe():
    f2 = REGISTRY.get("normprop.f2.residual-delta").resolve(
        "full", {"model.norm": "bn", "model.act": "crelu"}
    )
    assert f2["model"]["depth"] == 110 and f2["data"]["name"] == "cifar100"
    assert f2["train"]["epochs"] == 164 and f2["train"]["milestones"] == [80, 121]
    assert f2["train"]["nesterov"] and f2["train"]["weight_decay"] == 1e-4
    assert {"residual-delta", "last-activation"} <= set(f2["measure"])
    t4 = REGISTRY.get("normprop.t4.resnet50").resolve(
        "full", {"model.norm": "normprop3", "model.act": "crelu"}
    )
    assert t4["train"]["batch_size"] == 128 and t4["train"]["epochs"] == 150
    assert t4["train"]["schedule"] == "step" and t4["train"]["step_size"] == 30
    assert t4["measure"]["topk"]["ks"] == [1, 5]
    t3 = REGISTRY.get("normprop.t3.cifar100").resolve(
        "full", {"model.act": "crelu", "model.width_multiplier": 0.75}
    )
    assert t3["model"]["widths"] == [32, 64, 128] and t3["train"]["weight_decay"] == 5e-4
    assert set(train_defaults()) <= set(t3["train"])


def test_table1_is_declared_for_every_variant_of_the_figure_2_entry():
    entry = REGISTRY.get("normprop.f2.residual-delta")
    for point in entry.points("full"):
        metrics = {r.metric for r in entry.paper if r.applies_to(point)}
        assert metrics == {"last_act_mean", "last_act_nzr"}
    relu_bn = [r for r in entry.paper if r.applies_to({"model.norm": "bn", "model.act": "relu"})]
    assert {r.metric: r.value for r in relu_bn} == {"last_act_mean": 3.77, "last_act_nzr": 0.51}
    assert math.isclose(next(r.std for r in relu_bn if r.metric == "last_act_mean"), 4.43)
