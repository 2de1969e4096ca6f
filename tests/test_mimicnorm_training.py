"""MimicNorm training chapters: the logit-variance measure (MN-B2), the memory task (MN-T1/T3),
the record readers (MN-T2) and the registry entries."""

from __future__ import annotations

import pytest
import torch

import normbook.experiments.entries.mimicnorm_training as entries
from normbook.data import load_dataset
from normbook.experiments import run
from normbook.experiments.measures_mimicnorm import LogitVariance, last_batchnorm
from normbook.experiments.registry import default_registry
from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks_mimicnorm_training import (
    affine_fit,
    final_accuracy,
    memory,
    stability_table,
    step_traces,
    validate_memory,
)
from normbook.models import build_model, training_callbacks
from normbook.train import TrainConfig, fit


def _tiny(last_bn: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("splain", 10, depth=8, width=8, in_channels=1, norm="mimic", last_bn=last_bn)


def _fit(model, measure, lr=0.05, epochs=1):
    data = load_dataset("digits", variant="8x8", shift=0, subset=256)
    config = TrainConfig(epochs=epochs, batch_size=32, lr=lr, augment=False)
    callbacks = [*training_callbacks(model), measure]
    return fit(model, data, config, seed=0, device="cpu", callbacks=callbacks, progress=False)


def test_logit_variance_is_the_last_bn_running_var():
    model = _tiny(last_bn=True)
    measure = LogitVariance(model, trace_steps=5)
    history = _fit(model, measure)
    bn = last_batchnorm(model)
    assert bn is not None and measure.has_last_bn
    # the moving average is BatchNorm's own: it equals the class-mean of running_var
    expected = float(bn.running_var.double().mean())
    assert history.extras["logit_var"][-1] == pytest.approx(expected, rel=1e-5)
    assert len(history.summary["logit_var_steps"]) == 5  # bounded by trace_steps
    assert len(history.summary["logit_batch_var_steps"]) == 5
    assert history.summary["has_last_bn"] is True


def test_logit_variance_without_last_bn_traces_the_output_and_resumes():
    model = _tiny(last_bn=False)
    assert last_batchnorm(model) is None
    measure = LogitVariance(model)
    history = _fit(model, measure)
    steps = history.summary["logit_var_steps"]
    assert len(steps) == 256 // 32 and all(v is not None and v > 0 for v in steps)
    state = measure.state_dict()
    again = LogitVariance(_tiny(last_bn=False))
    again.load_state_dict(state)
    assert again.running == pytest.approx(measure.running) and again.running_steps == steps
    with pytest.raises(ConfigError, match="trace_steps"):
        LogitVariance(model, trace_steps=-1)
    with pytest.raises(ConfigError, match="momentum"):
        LogitVariance(model, momentum=0.0)


def test_affine_fit_is_exact_on_a_line_and_detects_a_bend():
    assert affine_fit([2, 3, 4], [10, 13, 16]) == (4.0, 3.0, True)
    assert affine_fit([2, 3, 4], [10, 13, 17])[2] is False


MEMORY_CONFIG = {
    "task": "mimicnorm.memory",
    "model": {
        "name": "resnet_imagenet",
        "depth": 18,
        "stem": "cifar",
        "width_multiplier": 0.125,
        "norm": "bn",
    },
    "input": {"channels": 3, "size": 16, "classes": 100},
    "batch_size": 8,
    "probe_batches": [2, 3, 4],
}


def test_memory_is_affine_in_the_batch_and_smaller_without_bn():
    from normbook.analysis.memory import activation_memory
    from normbook.experiments.spec import deep_merge
    from normbook.experiments.tasks_mimicnorm_training import build_memory_model

    device = torch.device("cpu")
    bn = memory(MEMORY_CONFIG, seed=0, device=device)["metrics"]
    mimic = memory(deep_merge(MEMORY_CONFIG, {"model": {"norm": "mimic"}}), seed=0, device=device)
    none = memory(deep_merge(MEMORY_CONFIG, {"model": {"norm": "none"}}), seed=0, device=device)
    assert bn["linear_exact"] and mimic["metrics"]["linear_exact"]
    assert none["metrics"]["activation_mib"] < mimic["metrics"]["activation_mib"]
    assert mimic["metrics"]["activation_mib"] < bn["activation_mib"]
    assert bn["cuda_peak_mib"] is None  # CPU run
    # the extrapolation is the measurement: count batch 8 directly
    model = build_memory_model(MEMORY_CONFIG)
    direct = activation_memory(model, torch.randn(8, 3, 16, 16)).activation_bytes
    assert bn["activation_mib"] * 2**20 == pytest.approx(direct, abs=0.5)
    assert bn["footprint_mib"] > bn["activation_mib"] + bn["state_mib"]


def test_memory_validation_names_the_problem():
    validate_memory(MEMORY_CONFIG)
    for key, value, match in (
        ("probe_batches", [2, 3], "probe_batches"),
        ("probe_batches", [1, 2, 3], "probe_batches"),
        ("batch_size", 1, "batch_size"),
        ("input", {"channels": 3, "size": 16}, "input"),
        ("model", {"name": "nope"}, "registered model"),
    ):
        with pytest.raises(ConfigError, match=match):
            validate_memory({**MEMORY_CONFIG, key: value})
    with pytest.raises(ConfigError, match="unknown config keys"):
        validate_memory({**MEMORY_CONFIG, "extra": 1})


def test_a_diverged_record_counts_at_chance():
    assert final_accuracy({"status": "diverged", "metrics": {"test_acc": None}}, 100) == 0.01
    assert final_accuracy({"status": "ok", "metrics": {"test_acc": 0.5}}, 10) == 0.5


def test_smoke_runs_give_the_stability_grid_and_traces(tmp_path):
    run("mimicnorm.b2.logit-variance", "smoke", root=tmp_path, progress=False)
    traces = step_traces("mimicnorm.b2.logit-variance", "smoke", root=tmp_path)
    assert set(traces["model.last_bn"]) == {False, True} and not traces["stale"].any()
    assert traces["step"].max() == 2 * (1347 // 64)  # two epochs of 21 steps, all traced
    table = stability_table("mimicnorm.b2.logit-variance", "smoke", root=tmp_path)
    assert len(table) == 2 and table["acc_mean"].between(0, 1).all()


def test_entries_declare_the_papers_numbers():
    registry = default_registry()
    t2 = registry.get("mimicnorm.t2.lr-stability")
    assert len(t2.paper) == len(entries.PAPER_LRS) * 4
    assert set(t2.scale("full").grid["train.lr"]) == set(entries.PAPER_LRS)
    assert t2.resolve("full", t2.points("full")[0])["model"]["variant"] == "16"
    memory_ids = [e.id for e in registry if e.id.startswith("mimicnorm.t1.memory.")]
    assert len(memory_ids) == 6
    r50 = registry.get("mimicnorm.t1.memory.resnet50")
    assert r50.resolve("full", {"model.norm": "bn"})["batch_size"] == 128
    assert {r.point["model.norm"] for r in r50.paper} == {"bn", "fixup", "mimic"}


def test_memory_lines_pass_through_the_probes():
    from normbook.experiments.tasks_mimicnorm_training import memory_lines

    history = {"batch": [2, 3, 4], "activation_bytes": [2 * 2**20, 3 * 2**20, 4 * 2**20]}
    rows = memory_lines({"model.norm": "bn"}, history, {}, (2, 256))
    measured = [r for r in rows if r["measured"]]
    line = {r["batch"]: r["activation_mib"] for r in rows if not r["measured"]}
    assert [r["activation_mib"] for r in measured] == [2.0, 3.0, 4.0]
    assert line == {2: 2.0, 256: 256.0}
