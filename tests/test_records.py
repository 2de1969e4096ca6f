"""One record read back: provenance table, missing provenance, config changes, edited entries."""

from __future__ import annotations

import copy

import pytest

from normbook.experiments.records import (
    PROVENANCE_FIELDS,
    config_changes,
    missing_provenance,
    provenance_table,
    with_scale_config,
)
from normbook.experiments.results import load, stale_records
from normbook.experiments.runner import run
from normbook.experiments.store import config_hash, read_record
from normbook.experiments.testing import echo_entry, echo_registry


@pytest.fixture
def record_and_root(tmp_path):
    registry = echo_registry(echo_entry(grid={"value": [0.2, 0.6]}))
    outcomes = run("test.echo", "smoke", root=tmp_path, registry=registry, progress=False)
    return read_record(outcomes[0].path), tmp_path, registry


def test_provenance_table_has_one_row_per_field_read_from_the_record(record_and_root):
    record, _, _ = record_and_root
    table = provenance_table(record)
    assert list(table["key"]) == [path for _, path in PROVENANCE_FIELDS]
    values = dict(zip(table["key"], table["value"], strict=True))
    assert values["config_hash"] == record["config_hash"]
    assert values["git.commit"] == record["git"]["commit"]
    assert values["scale"] == "smoke" and values["seed"] == "0"
    broken = copy.deepcopy(record)
    del broken["software"]["torch"]
    with pytest.raises(KeyError, match="software.torch"):
        provenance_table(broken)


def test_missing_provenance_is_empty_for_a_run_and_names_what_is_gone(record_and_root):
    record, _, _ = record_and_root
    assert missing_provenance(record) == []
    broken = copy.deepcopy(record)
    del broken["hardware"]["cpu"]
    broken["wall_time"] = None
    broken["history"] = {}
    assert missing_provenance(broken) == ["wall_time", "hardware.cpu", "history"]
    broken["status"] = "diverged"  # diverged in its first epoch: no history to show
    assert missing_provenance(broken) == ["wall_time", "hardware.cpu"]
    tampered = copy.deepcopy(record)
    tampered["config"]["value"] = 0.9
    assert missing_provenance(tampered) == ["config_hash (not the hash of config)"]


def test_config_changes_lists_dotted_paths():
    old = {"model": {"hidden": [128], "norm": "bn"}, "train": {"lr": 0.1}}
    new = {"model": {"hidden": [64], "norm": "bn"}, "train": {"lr": 0.1, "epochs": 3}}
    assert config_changes(old, new) == [
        ("model.hidden", [128], [64]),
        ("train.epochs", None, 3),
    ]
    assert config_changes(old, copy.deepcopy(old)) == []


def test_with_scale_config_makes_the_records_stale(record_and_root):
    record, root, registry = record_and_root
    entry = registry.get("test.echo")
    edited = with_scale_config(entry, "smoke", {"step": 0.7})
    assert edited.id == entry.id and edited.scale("smoke").grid == entry.scale("smoke").grid
    assert edited.scale("small") is entry.scale("small")
    new_config = edited.resolve("smoke", record["point"])
    assert config_hash(new_config) != record["config_hash"]
    assert config_changes(record["config"], new_config) == [("step", 0.1, 0.7)]
    stale = stale_records(root, echo_registry(edited))
    assert len(stale) == 2 and all("config changed" in s.reason for s in stale)
    assert load("test.echo", "smoke", root=root, registry=echo_registry(edited))["stale"].all()


def test_results_frame_tells_diverged_from_not_run_and_marks_stale(tmp_path):
    from normbook.viz.tables import results_frame

    entry = echo_entry(grid={"value": [0.2, 0.6]})
    diverging = with_scale_config(entry, "smoke", {"diverge": True})
    registry = echo_registry(diverging)
    frame = results_frame("test.echo", "smoke", root=tmp_path, registry=registry)
    assert list(frame["ours"]) == ["not run yet", "not run yet"]
    assert frame["run"][0] == "normbook run test.echo --scale smoke  # point value=0.2"
    run("test.echo", "smoke", root=tmp_path, registry=registry, progress=False)
    frame = results_frame("test.echo", "smoke", root=tmp_path, registry=registry)
    assert list(frame["ours"]) == ["no value: 1 of 1 runs diverged"] * 2
    fresh = echo_registry(entry)
    run("test.echo", "smoke", root=tmp_path, registry=fresh, progress=False)
    frame = results_frame("test.echo", "smoke", root=tmp_path, registry=fresh, percent=False)
    assert frame["ours"][0] == "0.20 (n=1)"
    edited = echo_registry(with_scale_config(entry, "smoke", {"step": 0.2}))
    frame = results_frame("test.echo", "smoke", root=tmp_path, registry=edited, percent=False)
    assert all(v.endswith("stale: config changed since this run") for v in frame["ours"])
