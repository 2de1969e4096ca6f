"""Measurements during a classify run (``config["measure"]``): registered by name, validated,
logged per epoch into ``history.extras``, stored in the record and drawn by ``load_curves``."""

from __future__ import annotations

import pytest
import torch

from normbook.experiments import load_curves, run
from normbook.experiments.measures import build_measures, list_measures, register_measure
from normbook.experiments.registry import Registry, default_registry
from normbook.experiments.spec import ConfigError, Experiment, ScaleSpec, deep_merge
from normbook.experiments.tasks import validate_config

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
