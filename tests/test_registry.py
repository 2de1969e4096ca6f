"""Experiment registry: entries as frozen data, dotted-path grids, validation of every entry."""

from __future__ import annotations

import pytest

from normbook.config import SCALES
from normbook.experiments.registry import Registry, UnknownExperiment, default_registry
from normbook.experiments.spec import (
    ARTIFACT_PATTERN,
    ConfigError,
    Experiment,
    Reported,
    ScaleSpec,
    deep_merge,
)
from normbook.experiments.store import config_hash
from normbook.experiments.tasks import (
    get_task,
    list_tasks,
    register_task,
    validate_config,
)
from normbook.experiments.testing import echo_entry
from normbook.train.config import train_defaults

BASE = {"task": "echo", "value": 0.5, "step": 0.0, "fail": False, "diverge": False}


def _entry(**changes):
    fields = dict(
        id="test.entry",
        artifact="DBN-T1",
        title="t",
        scales={"smoke": ScaleSpec(config=BASE, grid={"value": (0.1, 0.2)})},
    )
    fields.update(changes)
    return Experiment(**fields)


# -- every registered entry --------------------------------------------------------------------
REGISTRY = default_registry()
ENTRY_SCALES = [(e.id, s) for e in REGISTRY for s in e.scales]


def test_the_book_registry_has_the_foundations_entry_and_unique_ids():
    ids = REGISTRY.ids()
    assert "foundations.digits-mlp" in ids
    assert len(ids) == len(set(ids)) == len(REGISTRY)
    with pytest.raises(ValueError, match="already registered"):
        REGISTRY.add(REGISTRY.get("foundations.digits-mlp"))


@pytest.mark.parametrize("entry", list(REGISTRY), ids=lambda e: e.id)
def test_every_entry_has_an_artifact_id_of_the_papers_form(entry):
    assert ARTIFACT_PATTERN.match(entry.artifact), entry.artifact
    assert set(entry.scales) <= set(SCALES) and entry.title
    for reported in entry.paper:
        assert reported.unit and reported.meaning and reported.source


@pytest.mark.parametrize(("experiment_id", "scale"), ENTRY_SCALES)
def test_every_entry_resolves_and_validates_at_every_declared_scale(experiment_id, scale):
    entry = REGISTRY.get(experiment_id)
    points = entry.points(scale)
    hashes = set()
    for point in points:
        config = entry.resolve(scale, point)
        validate_config(config)
        hashes.add(config_hash(config))
    assert len(hashes) == len(points)  # every grid point is a distinct configuration
    for reported in entry.paper:
        if reported.point is not None:
            assert set(reported.point) <= set(entry.scale(scale).knobs)


def test_digits_mlp_sweeps_norm_and_learning_rate():
    entry = REGISTRY.get("foundations.digits-mlp")
    for scale in SCALES:
        spec = entry.scale(scale)
        assert spec.grid["model.norm"] == ("bn", "none")
        assert len(spec.grid["train.lr"]) >= 2
    configs = [entry.resolve("smoke", p) for p in entry.points("smoke")]
    assert {(c["model"]["norm"], c["train"]["lr"]) for c in configs} == {
        (n, lr) for n in ("bn", "none") for lr in entry.scale("smoke").grid["train.lr"]
    }
    assert entry.resolve("full", entry.points("full")[0])["data"]["name"] == "mnist"


# -- spec ----------------------------------------------------------------------------------------
def test_resolve_substitutes_knobs_at_dotted_paths_and_returns_fresh_dicts():
    entry = _entry(
        scales={
            "smoke": ScaleSpec(
                config={"task": "echo", "model": {"norm": "bn", "hidden": [8]}, "train": {"lr": 1}},
                grid={"train.lr": (0.1, 1.0), "model.norm": ("bn", "none")},
            )
        }
    )
    points = entry.points("smoke")
    assert points[1] == {"train.lr": 0.1, "model.norm": "none"} and len(points) == 4
    config = entry.resolve("smoke", points[1])
    assert config == {
        "task": "echo",
        "model": {"norm": "none", "hidden": [8]},
        "train": {**train_defaults(), "lr": 0.1},  # defaults are part of the resolved config
    }
    config["model"]["hidden"].append(16)
    assert entry.resolve("smoke", points[1])["model"]["hidden"] == [8]
    with pytest.raises(TypeError):
        entry.scales["smoke"].config["task"] = "other"  # frozen


def test_unknown_grid_path_fails_at_declaration_naming_it():
    with pytest.raises(ConfigError, match="'train.lr'"):
        _entry(scales={"smoke": ScaleSpec(config=BASE, grid={"train.lr": (0.1,)})})


def test_resolve_needs_exactly_the_grid_knobs():
    entry = _entry()
    with pytest.raises(ConfigError, match="exactly the grid's knobs"):
        entry.resolve("smoke", {})
    with pytest.raises(ConfigError, match="exactly the grid's knobs"):
        entry.resolve("smoke", {"value": 0.1, "step": 1.0})


def test_select_points_by_partial_point():
    entry = _entry(scales={"smoke": ScaleSpec(config=BASE, grid={"value": (1, 2), "step": (3, 4)})})
    assert entry.select_points("smoke", [{"value": 2}]) == [
        {"value": 2, "step": 3},
        {"value": 2, "step": 4},
    ]
    with pytest.raises(ConfigError, match="unknown knob"):
        entry.select_points("smoke", [{"lr": 1}])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": "NoDots"}, "experiment id"),
        ({"artifact": "table-1"}, "artifact must be a PAPERS.md ID"),
        ({"artifact": "XYZ-T1"}, "artifact must be a PAPERS.md ID"),
        ({"scales": {}}, "declares no scale"),
        ({"scales": {"huge": ScaleSpec(config=BASE)}}, "unknown scale 'huge'"),
    ],
)
def test_invalid_entries_are_rejected(changes, message):
    with pytest.raises(ConfigError, match=message):
        _entry(**changes)


@pytest.mark.parametrize(
    ("grid", "seeds", "message"),
    [
        ({"value": ()}, 1, "non-empty sequence"),
        ({"value": "ab"}, 1, "non-empty sequence"),
        ({"value": (1, 1)}, 1, "repeated values"),
        ({"value": ([1],)}, 1, "JSON scalars"),
        ({}, 0, "seeds must be"),
    ],
)
def test_invalid_scale_specs_are_rejected(grid, seeds, message):
    with pytest.raises(ConfigError, match=message):
        ScaleSpec(config=BASE, grid=grid, seeds=seeds)


def test_scale_lookup_errors():
    entry = _entry()
    with pytest.raises(ConfigError, match="has no 'full' configuration"):
        entry.scale("full")
    with pytest.raises(ValueError, match="scale must be one of"):
        entry.scale("huge")


def test_reported_numbers_apply_to_their_points():
    everywhere = Reported("test_error_pct", 7.77, "%", "test error, mean of 5", "DBN Table 1")
    one_lr = Reported("test_acc_pct", 34.81, "%", "accuracy", "MN Table 2", point={"value": 0.1})
    entry = _entry(paper=(everywhere, one_lr))
    assert entry.paper_numbers == {"test_error_pct": 7.77}
    assert one_lr.applies_to({"value": 0.1}) and not one_lr.applies_to({"value": 0.2})
    assert everywhere.applies_to({"value": 0.2})


def test_deep_merge_overrides_nested_values_without_touching_the_base():
    base = {"model": {"hidden": [128], "norm": "bn"}, "train": {"lr": 0.1}}
    merged = deep_merge(base, {"model": {"hidden": [32]}, "train": {"epochs": 2}})
    assert merged == {"model": {"hidden": [32], "norm": "bn"}, "train": {"lr": 0.1, "epochs": 2}}
    assert base["model"]["hidden"] == [128]


# -- registry and tasks --------------------------------------------------------------------------
def test_unknown_id_suggests_close_ones():
    registry = Registry([echo_entry("test.echo")])
    with pytest.raises(UnknownExperiment, match="did you mean test.echo"):
        registry.get("test.ehco")
    assert registry.ids("test") == ["test.echo"] and registry.ids("dbn") == []


def test_tasks_are_registered_once_and_looked_up_by_config():
    assert {"classify", "echo"} <= set(list_tasks())
    assert get_task({}).name == "classify"
    with pytest.raises(ValueError, match="already registered"):
        register_task("classify")(lambda config, **kw: {})
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        get_task({"task": "nope"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": 1}, "unknown config keys"),
        ({"model": {"name": "no-such-model"}}, "unknown model 'no-such-model'"),
        ({"data": {"name": "no-such-data"}}, "unknown dataset 'no-such-data'"),
        ({"train": {"epochs": 0}}, "epochs must be >= 1"),
        ({"train": {"epochs": 1, "learning_rate": 0.1}}, "learning_rate"),
        ({"ddp": "yes"}, "ddp"),
    ],
)
def test_classify_validation_names_the_problem(change, message):
    config = REGISTRY.get("foundations.digits-mlp").resolve(
        "smoke", {"train.lr": 0.1, "model.norm": "bn"}
    )
    with pytest.raises(ConfigError, match=message):
        validate_config({**config, **change})


def test_a_changed_train_default_changes_the_config_hash(monkeypatch):
    """Records that relied on a default go stale when it changes (the hash covers the defaults)."""
    import normbook.train.config as train_config

    entry = _entry(scales={"smoke": ScaleSpec(config={"task": "echo", "train": {"lr": 1}})})
    before = config_hash(entry.resolve("smoke"))
    defaults = train_config.train_defaults()
    monkeypatch.setattr(
        train_config, "train_defaults", lambda: {**defaults, "drop_last": not defaults["drop_last"]}
    )
    assert config_hash(entry.resolve("smoke")) != before
