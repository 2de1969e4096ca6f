"""The ic-units task, the variance_shift measure (with the built-in topk one), and per-seed
histories (normbook.experiments.tasks_ic_training; IC-T1, IC-F4, IC-F5)."""

from __future__ import annotations

import pytest
import torch

from normbook.experiments import load, load_curves, run
from normbook.experiments.registry import Registry, default_registry
from normbook.experiments.spec import ConfigError, Experiment, ScaleSpec, deep_merge
from normbook.experiments.tasks import validate_config
from normbook.experiments.tasks_ic_training import (
    IC_UNITS_TASK,
    classify_config,
    ic_units,
    live_histories,
    mean_curves,
    run_histories,
    table1_label,
    unit_curves,
    unit_model_options,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """These nets are tiny: one intra-op thread is as fast, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CPU = torch.device("cpu")
BASE = {
    "task": IC_UNITS_TASK,
    "unit": "relu-ic-conv",
    "drop_prob": 0.1,
    "model": {"name": "resnet_cifar", "depth": 8, "widths": [4, 4, 4], "in_channels": 1},
    "data": {"name": "digits", "variant": "8x8", "subset": 256},
    "train": {"epochs": 2, "batch_size": 64, "optimizer": "adam", "lr": 1e-3},
}


def test_unit_options_and_classify_config():
    assert unit_model_options("baseline", 0.3) == {"unit": "baseline", "norm": "bn"}
    assert unit_model_options("ic-conv-relu", 0.05) == {
        "unit": "ic-conv-relu",
        "norm": "ic",
        "drop_prob": 0.05,
    }
    config = classify_config(BASE)
    assert config["task"] == "classify" and "unit" not in config and "drop_prob" not in config
    assert config["model"]["norm"] == "ic" and config["model"]["drop_prob"] == 0.1
    validate_config(BASE)
    bad = [
        ({"unit": "preact"}, "unit must be one of"),
        ({"drop_prob": 1.0}, "drop_prob must lie"),
        ({"model": {**BASE["model"], "norm": "bn"}}, "must not set"),
        ({"model": {"name": "mlp"}}, "model must be one of"),
        ({"colour": 1}, "unknown config keys"),
    ]
    for change, message in bad:
        with pytest.raises(ConfigError, match=message):
            validate_config({**BASE, **change})
    no_unit = {k: v for k, v in BASE.items() if k != "unit"}
    with pytest.raises(ConfigError, match="needs a 'unit'"):
        classify_config(no_unit)


def test_measures_do_not_change_training_and_land_in_the_metrics():
    plain = ic_units(BASE, seed=0, device=CPU, run_dir=None, progress=False)
    measured_config = deep_merge(
        BASE,
        {"measure": {"topk": {"ks": [2]}, "variance_shift": {"samples": 64, "every": 2}}},
    )
    measured = ic_units(measured_config, seed=0, device=CPU, run_dir=None, progress=False)
    # the measurements fork the RNG: the same dropout masks, the same run
    assert measured["history"].test_acc == plain["history"].test_acc
    assert measured["history"].train_loss == plain["history"].train_loss
    extras = measured["history"].extras
    assert len(extras["test_top2_acc"]) == 2
    assert extras["var_shift_layers"][0] is None  # every=2: the last epoch only
    assert len(extras["var_shift_layers"][-1]) == 7  # 3 blocks × 2 + final
    metrics = measured["metrics"]
    assert metrics["test_top2_acc"] >= metrics["test_acc"]
    assert 0.0 <= metrics["recal_test_acc"] <= 1.0 and metrics["var_shift"] > 0
    assert "var_shift_layers" not in metrics  # only numbers become metrics


def test_histories_from_the_store_and_live(tmp_path):
    entry = Experiment(
        id="test.ic-units",
        artifact="IC-T1",
        title="two units",
        description="test",
        scales={
            "smoke": ScaleSpec(config=BASE, grid={"unit": ("baseline", "relu-ic-conv")}, seeds=2)
        },
    )
    registry = Registry([entry])
    outcomes = run("test.ic-units", "smoke", root=tmp_path, registry=registry, progress=False)
    assert [o.status for o in outcomes] == ["ok"] * 4
    stored = run_histories("test.ic-units", "smoke", root=tmp_path, registry=registry)
    assert len(stored) == 2 * 2 * 2 and set(stored["seed"]) == {0, 1}
    curves = load_curves("test.ic-units", "smoke", ("test_acc",), root=tmp_path, registry=registry)
    mine = mean_curves(stored, ["unit"], ["test_acc"])
    merged = curves.merge(mine, on=["unit", "epoch"], suffixes=("", "_ours"))
    assert len(merged) == 4
    assert (merged["test_acc_mean"] - merged["test_acc_mean_ours"]).abs().max() < 1e-12
    live = live_histories(
        "test.ic-units", "smoke", {"unit": "baseline"}, seeds=[1], registry=registry
    )
    again = stored[(stored["unit"] == "baseline") & (stored["seed"] == 1)]
    assert live["test_acc"].tolist() == again["test_acc"].tolist()  # CPU runs are deterministic
    fig4 = unit_curves(stored, [])  # the Fig. 4 code path, on stored records
    assert set(fig4["curve"]) == {"baseline (Conv-BN-ReLU)", "① ReLU-IC-Conv"}
    assert set(fig4["panel"]) == {"all"} and (fig4["test_acc_n"] == 2).all()
    one_unit = unit_curves(stored.drop(columns="unit"), [], unit="conv-relu-ic")
    assert set(one_unit["curve"]) == {"③ Conv-ReLU-IC"}
    with pytest.raises(ValueError, match="lacks column"):
        unit_curves(stored.drop(columns="unit"), [])
    table = load("test.ic-units", "smoke", root=tmp_path, registry=registry)
    assert (table["n"] == 2).all()
    with pytest.raises(ConfigError, match="history lacks"):
        run_histories("test.ic-units", "smoke", ("nope",), root=tmp_path, registry=registry)


def test_panel_labels_name_the_net_and_dataset():
    point = {"model.depth": 110, "model.bottleneck": True, "data.name": "cifar100", "unit": "x"}
    assert table1_label(point) == "ResNet-B-110, cifar100"
    assert table1_label({"model.depth": 164, "model.bottleneck": False}) == "ResNet-164"
    assert table1_label({"drop_prob": 0.05}) == "drop_prob=0.05"
    assert table1_label({}) == "all"


def test_book_entries_declare_the_paper_recipes():
    registry = default_registry()
    units = registry.get("ic.t1.units")
    full = units.scale("full")
    assert len(full.points()) == 32 and len(units.paper) == 32
    config = units.resolve(
        "full",
        {"unit": "baseline", "data.name": "cifar100", "model.depth": 164, "model.bottleneck": True},
    )
    train = config["train"]
    assert (train["optimizer"], train["lr"], train["epochs"], train["batch_size"]) == (
        "adam",
        1e-3,
        200,
        64,
    )
    assert train["milestones"] == [80, 120, 160] and config["drop_prob"] == 0.05
    number = [
        r
        for r in units.paper
        if r.applies_to(
            {
                "unit": "baseline",
                "data.name": "cifar100",
                "model.depth": 164,
                "model.bottleneck": True,
            }
        )
    ]
    assert [r.value for r in number] == [74.65]
    imagenet = registry.get("ic.f5.resnet50-ic").resolve("full", {"drop_prob": 0.1})
    assert imagenet["model"]["depth"] == 50 and imagenet["unit"] == "relu-ic-conv"
    assert (
        imagenet["train"]["lr"],
        imagenet["train"]["step_size"],
        imagenet["train"]["epochs"],
    ) == (0.1, 30, 90)
    assert imagenet["train"]["batch_size"] == 256 and imagenet["train"]["weight_decay"] == 1e-4
    assert imagenet["measure"]["topk"]["ks"] == [1, 5] and imagenet["ddp"] is True
    drop = registry.get("ic.t1.drop-prob").scale("small").grid["drop_prob"]
    assert 0.05 in drop and 0.03 in drop and 0.0 in drop
