"""NormProp theory tasks, the filter-coherence measure, CReLU helpers and the NormProp ReLU box."""

from __future__ import annotations

import pytest
import torch

from normbook.analysis.crelu import branch_conv_weights, crelu_inverse
from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import get_task, validate_config
from normbook.experiments.tasks_normprop_theory import (
    FILTER_COHERENCE,
    LAYER_MOMENTS,
    RESIDUAL_VARIANCE,
    band_depth,
    coherence_layers,
    coherence_rows,
    layer_welch_bounds,
    profile_table,
)
from normbook.layers import CReLU, NormPropReLU
from normbook.models import build_model

CPU = torch.device("cpu")
MOMENTS = {
    "task": LAYER_MOMENTS,
    "model": {"norm": "normprop1", "width": 32, "depth": 4, "gamma": 1.0},
    "data": {"name": "gaussian", "inputs": 100},
}
RESIDUAL = {
    "task": RESIDUAL_VARIANCE,
    "model": {"branch": "orthogonal", "width": 32, "depth": 3, "gamma": 1.0},
    "data": {"name": "gaussian", "inputs": 100},
}


def _run(config, seed=0):
    validate_config(config)
    return get_task(config).fn(config, seed=seed, device=CPU, run_dir=None, progress=False)


def test_layer_moments_task_history_metrics_and_seeding():
    result = _run(MOMENTS)
    history = result["history"]
    assert history["layer"] == [1, 2, 3, 4] and len(history["theory_var"]) == 4
    assert 0 <= result["metrics"]["band_depth"] <= 4
    again = _run(MOMENTS)
    assert again["history"]["var"] == history["var"]  # seeded
    digits = _run({**MOMENTS, "data": {"name": "digits", "inputs": 50}})
    assert len(digits["history"]["var"]) == 4
    table = profile_table([({"k": 1}, history), ({"k": 1}, again["history"])], ["k"], LAYER_MOMENTS)
    assert list(table["layer"]) == [1, 2, 3, 4] and (table["var_n"] == 2).all()


def test_residual_variance_task_doubles_for_an_orthogonal_branch():
    result = _run({**RESIDUAL, "data": {"name": "gaussian", "inputs": 2000}})
    assert result["history"]["block"] == [1, 2, 3]
    assert abs(result["metrics"]["ratio_mean"] - 2) < 0.2


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"extra": 1}, "unknown config keys"),
        ({"model": {"norm": "bn", "width": 4, "depth": 2, "gamma": 1.0}}, "model.norm"),
        ({"model": {"norm": "none", "width": 4, "depth": 0, "gamma": 1.0}}, "model.depth"),
        ({"model": {"norm": "none", "width": 4, "depth": 2, "gamma": 0}}, "model.gamma"),
        ({"model": {"norm": "none", "width": 4}}, "exactly"),
        ({"data": {"name": "cifar10", "inputs": 10}}, "data.name"),
    ],
)
def test_layer_moments_validation(change, match):
    with pytest.raises(ConfigError, match=match):
        validate_config({**MOMENTS, **change})


def test_residual_variance_validation():
    with pytest.raises(ConfigError, match="model.branch"):
        validate_config({**RESIDUAL, "model": {**RESIDUAL["model"], "branch": "bn"}})
    with pytest.raises(ConfigError, match="data.name"):
        validate_config({**RESIDUAL, "data": {"name": "digits", "inputs": 10}})


def test_band_depth():
    assert band_depth([1.0, 1.1, 0.7, 1.0]) == 2
    assert band_depth([2.0]) == 0 and band_depth([]) == 0


def test_filter_coherence_measure_in_a_classify_run():
    config = {
        "task": "classify",
        "model": {
            "name": "resnet_cifar",
            "depth": 8,
            "widths": [4, 8, 8],
            "in_channels": 1,
            "norm": "normprop2",
            "act": "crelu",
        },
        "data": {"name": "digits", "variant": "8x8", "subset": 128},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "augment": False},
        "measure": {FILTER_COHERENCE: {"every": 2}},
    }
    result = _run(config)
    history = result["history"].to_dict()
    torch.manual_seed(0)
    model = build_model(
        "resnet_cifar", 10, **{k: v for k, v in config["model"].items() if k != "name"}
    )
    layers = coherence_layers(model)
    assert [n for n, _ in layers] == history["summary"]["coherence_layers"]
    assert not any("shortcut" in n for n, _ in layers) and len(layers) == 7  # stem + 3 × 2
    assert history["extras"]["coherence"][0] is None  # every=2: epoch 1 not measured
    assert len(history["extras"]["coherence"][1]) == len(layers)
    assert history["summary"]["coherence_welch"] == layer_welch_bounds(model)
    assert all(b >= 0 for b in history["summary"]["coherence_welch"])
    rows = coherence_rows({"p": 1}, 0, history)
    assert len(rows) == len(layers) and all(0 <= r["mu_final"] <= 1 for r in rows)
    assert coherence_rows({"p": 1}, 0, {"summary": {}, "extras": {}}) == []


def test_filter_coherence_measure_options():
    from normbook.experiments.tasks_normprop_theory import filter_coherence_measure

    model = build_model("resnet_cifar", 10, depth=8, widths=(4, 4, 4), in_channels=1)
    with pytest.raises(ConfigError, match="every"):
        filter_coherence_measure(model, None, every=0)
    with pytest.raises(ConfigError, match="no conv"):
        filter_coherence_measure(torch.nn.Linear(3, 3), None)


def test_crelu_inverse_and_branch_weights_match_the_models():
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    assert torch.equal(crelu_inverse(CReLU()(x)), x)
    with pytest.raises(ValueError, match="even"):
        crelu_inverse(torch.ones(2, 3))
    for act, k in (("relu", 1), ("crelu", 2)):
        for bottleneck, depth in ((False, 14), (True, 20)):
            model = build_model(
                "resnet_cifar", 10, depth=depth, bottleneck=bottleneck, widths=(4, 8, 8),
                act=act, norm="bn",
            )  # fmt: skip
            block = model.layer1[1]  # identity-shaped: no projection
            convs = sum(c.weight.numel() for c in block.branch_weights())
            assert convs == branch_conv_weights(4, k, bottleneck=bottleneck), (act, bottleneck)


def test_normprop_relu_has_its_own_diagram_box():
    from normbook.viz.diagrams import layer_style

    assert layer_style(NormPropReLU()) == ("act", "NormProp<br>ReLU")
