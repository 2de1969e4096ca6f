"""Results store: hashing, atomic writes, schema validation, aggregation, staleness, skipping."""

from __future__ import annotations

import json
import math
import os
import re
import socket

import pytest

from normbook.experiments import store
from normbook.experiments.results import cache_status, load, load_curves, stale_records
from normbook.experiments.runner import run
from normbook.experiments.store import (
    ResultsError,
    config_hash,
    read_record,
    record_path,
    results_root,
    validate_record,
    write_record,
)
from normbook.experiments.testing import CALLS, echo_entry, echo_registry

LR_GRID = {"value": [0.2, 0.6]}


@pytest.fixture
def root(tmp_path):
    return tmp_path / "results"


def _run_echo(root, registry, experiment_id="test.echo", **kwargs):
    return run(experiment_id, "smoke", root=root, registry=registry, progress=False, **kwargs)


def _one_record(root, registry=None):
    registry = registry or echo_registry()
    (outcome,) = _run_echo(root, registry)
    return outcome.path, read_record(outcome.path)


# -- hashing -----------------------------------------------------------------------------------
def test_config_hash_is_canonical_short_sha256():
    a = {"model": {"name": "mlp", "hidden": [128, 128]}, "train": {"lr": 0.1}}
    b = {"train": {"lr": 0.1}, "model": {"hidden": [128, 128], "name": "mlp"}}
    assert config_hash(a) == config_hash(b)
    assert re.fullmatch(r"[0-9a-f]{12}", config_hash(a))
    assert config_hash(a) != config_hash({**a, "train": {"lr": 0.2}})


def test_config_hash_rejects_non_finite_and_non_json():
    with pytest.raises(ValueError, match="JSON"):
        config_hash({"lr": float("nan")})
    with pytest.raises(ValueError, match="JSON"):
        config_hash({"f": object()})


def test_results_root_from_argument_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv(store.RESULTS_ENV, str(tmp_path / "env"))
    assert results_root() == tmp_path / "env"
    assert results_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(store.RESULTS_ENV)
    assert results_root() == store.REPO_DIR / "results"


# -- write / read ------------------------------------------------------------------------------
def test_record_lands_at_scale_id_hash_seed_and_round_trips(root):
    path, record = _one_record(root)
    assert path == root / "smoke" / "test.echo" / f"{record['config_hash']}-seed0.json"
    assert record["config_hash"] == config_hash(record["config"])
    assert record["metrics"]["test_acc"] == pytest.approx(0.5)
    assert record["status"] == "ok"


def test_record_has_every_provenance_field_and_no_hostname(root):
    path, record = _one_record(root)
    assert set(record) == set(store.RECORD_FIELDS)
    assert record["schema_version"] == store.SCHEMA_VERSION
    assert record["artifact_id"] == "BOOK-TEST" and record["experiment_id"] == "test.echo"
    hw, sw, git = record["hardware"], record["software"], record["git"]
    assert hw["cpu"] and hw["cpu_count"] >= 1 and hw["device_name"] == "cpu"
    assert sw["torch"] and sw["python"] and sw["normbook"]
    assert re.fullmatch(r"[0-9a-f]{40}", git["commit"]) and isinstance(git["dirty"], bool)
    assert record["started_at"].endswith("+00:00") and record["finished_at"] >= record["started_at"]
    assert record["wall_time"] >= 0 and record["world_size"] == 1
    host = socket.gethostname()
    if len(host) >= 4 and host not in hw["cpu"]:
        assert host not in path.read_text()


def test_git_commit_is_unknown_outside_a_checkout(tmp_path):
    from normbook.experiments.provenance import git_info

    assert git_info(tmp_path) == {"commit": "unknown", "dirty": None}


def test_crash_mid_write_leaves_no_partial_file(root, monkeypatch):
    path, record = _one_record(root)
    original = path.read_text()

    def crash(fd):
        raise OSError("disk died mid-write")

    monkeypatch.setattr(os, "fsync", crash)
    changed = {**record, "metrics": {"test_acc": 0.99}}
    with pytest.raises(OSError, match="mid-write"):
        write_record(changed, root)
    assert path.read_text() == original  # the old record is intact
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left

    fresh = {**record, "seed": 7}
    with pytest.raises(OSError):
        write_record(fresh, root)
    assert not record_path(root, "smoke", "test.echo", record["config_hash"], 7).exists()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_corrupt_file_raises_naming_the_file(root):
    path, _ = _one_record(root)
    path.write_text('{"schema_version": 1, "kind": ')
    with pytest.raises(ResultsError, match=re.escape(str(path))):
        read_record(path)
    with pytest.raises(ResultsError, match="corrupt"):
        load("test.echo", "smoke", root=root, registry=echo_registry())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "great"}, "status must be one of"),
        ({"seed": -1}, "seed must be"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"metrics": [1]}, "metrics must be an object"),
        ({"config_hash": "0" * 12}, "is not the hash of its config"),
        ({"extra": 1}, "unknown fields"),
    ],
)
def test_schema_invalid_records_raise_naming_the_problem(root, change, message):
    path, record = _one_record(root)
    path.write_text(json.dumps({**record, **change}))
    with pytest.raises(ResultsError, match=re.escape(str(path)) + ".*" + message):
        read_record(path)


def test_missing_field_and_misplaced_file_are_invalid(root):
    path, record = _one_record(root)
    del record["git"]
    with pytest.raises(ResultsError, match=r"missing fields \['git'\]"):
        validate_record(record, path)
    path2, record2 = _one_record(root / "again")
    moved = path2.with_name("000000000000-seed0.json")
    path2.rename(moved)
    with pytest.raises(ResultsError, match="file name does not match"):
        read_record(moved)


def test_non_finite_values_are_stored_as_null(root):
    _, record = _one_record(root)
    record["history"]["train_loss"] = [1.0, float("nan")]
    record["metrics"]["test_loss"] = float("inf")
    path = write_record(record, root)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    stored = read_record(path)
    assert stored["history"]["train_loss"] == [1.0, None] and stored["metrics"]["test_loss"] is None


# -- run: skipping, failures -------------------------------------------------------------------
def test_run_skips_points_already_in_the_store(root):
    registry = echo_registry(echo_entry(grid=LR_GRID, seeds=2))
    CALLS.clear()
    first = _run_echo(root, registry)
    assert len(first) == 4 and len(CALLS) == 4 and not any(o.skipped for o in first)
    second = _run_echo(root, registry)
    assert len(CALLS) == 4 and all(o.skipped for o in second)
    assert [o.path for o in second] == [o.path for o in first]
    _run_echo(root, registry, seeds=3)  # one more seed per point: only those run
    assert len(CALLS) == 6 and sorted(c["seed"] for c in CALLS[4:]) == [2, 2]
    _run_echo(root, registry, force=True, points=[{"value": 0.2}], seeds=[0])
    assert len(CALLS) == 7


def test_failed_run_is_recorded_and_run_again(root):
    registry = echo_registry(echo_entry(grid={"fail": [True]}))
    CALLS.clear()
    (outcome,) = _run_echo(root, registry)
    assert outcome.status == "failed" and "asked to fail" in outcome.error
    assert read_record(outcome.path)["status"] == "failed"
    _run_echo(root, registry)
    assert len(CALLS) == 2  # failed records are not cached


def test_run_rejects_unknown_points_and_scales(root):
    from normbook.experiments.spec import ConfigError

    registry = echo_registry(echo_entry(grid=LR_GRID))
    with pytest.raises(ConfigError, match="unknown knob"):
        _run_echo(root, registry, points=[{"lr": 0.1}])
    with pytest.raises(ConfigError, match="no grid point matches"):
        _run_echo(root, registry, points=[{"value": 0.3}])
    with pytest.raises(ConfigError, match="has no 'full' configuration"):
        run("test.echo", "full", root=root, registry=registry)


# -- load: aggregation -------------------------------------------------------------------------
def test_load_aggregates_seeds_mean_std_n(root):
    registry = echo_registry(echo_entry(grid=LR_GRID, seeds=3, step=0.1))
    _run_echo(root, registry)
    table = load("test.echo", "smoke", root=root, registry=registry)
    assert list(table["value"]) == [0.2, 0.6]
    row = table.iloc[1]
    assert row["test_acc_mean"] == pytest.approx(0.7)  # 0.6, 0.7, 0.8
    assert row["test_acc_std"] == pytest.approx(0.1)
    assert row["test_acc_n"] == 3 and row["n"] == 3 and row["seeds"] == [0, 1, 2]
    assert not row["stale"] and row["commit"] and row["date"]
    assert "cores" in row["hardware"]


def test_load_counts_diverged_and_failed_apart(root):
    registry = echo_registry(echo_entry(grid={"diverge": [False, True]}, seeds=2))
    _run_echo(root, registry)
    broken = echo_registry(echo_entry(grid={"diverge": [False, True], "fail": [True]}, seeds=1))
    _run_echo(root / "other", broken)
    table = load("test.echo", "smoke", root=root, registry=registry)
    ok, diverged = table.iloc[0], table.iloc[1]
    assert ok["n"] == 2 and ok["n_diverged"] == 0 and ok["test_acc_n"] == 2
    assert diverged["n"] == 2 and diverged["n_diverged"] == 2
    assert diverged["test_acc_n"] == 0 and math.isnan(diverged["test_acc_mean"])
    failed = load("test.echo", "smoke", root=root / "other", registry=broken)
    assert list(failed["n"]) == [0, 0] and list(failed["n_failed"]) == [1, 1]


def test_load_lists_points_not_run_yet_and_requested_metrics(root):
    registry = echo_registry(echo_entry(grid=LR_GRID))
    table = load("test.echo", "smoke", root=root, registry=registry, metrics=["test_acc"])
    assert list(table["n"]) == [0, 0] and table["test_acc_mean"].isna().all()
    assert cache_status(registry.get("test.echo"), "smoke", root) == "0/2"
    assert cache_status(registry.get("test.echo"), "full", root) == "-"


def test_load_curves_average_histories_over_seeds(root):
    registry = echo_registry(echo_entry(grid=LR_GRID, seeds=2, step=0.2))
    _run_echo(root, registry)
    curves = load_curves("test.echo", "smoke", metrics=["test_acc"], root=root, registry=registry)
    row = curves[(curves["value"] == 0.2) & (curves["epoch"] == 2)].iloc[0]
    assert row["test_acc_mean"] == pytest.approx(0.3) and row["test_acc_n"] == 2
    assert len(curves) == 4


# -- staleness ---------------------------------------------------------------------------------
def test_changed_registry_config_makes_records_stale(root):
    before = echo_registry(echo_entry(grid=LR_GRID, value=0.5))
    _run_echo(root, before)
    assert stale_records(root, before) == []
    after = echo_registry(echo_entry(grid=LR_GRID, step=0.3))  # a base value changed
    stale = stale_records(root, after)
    assert len(stale) == 2 and all("config changed" in s.reason for s in stale)
    table = load("test.echo", "smoke", root=root, registry=after)
    assert table["stale"].all() and list(table["n"]) == [1, 1]
    assert cache_status(after.get("test.echo"), "smoke", root) == "0/2!"
    _run_echo(root, after)  # fresh records replace the stale ones in the table
    assert not load("test.echo", "smoke", root=root, registry=after)["stale"].any()


def test_removed_point_and_removed_entry_are_stale(root):
    _run_echo(root, echo_registry(echo_entry(grid=LR_GRID)))
    shrunk = echo_registry(echo_entry(grid={"value": [0.2]}))
    (stale,) = stale_records(root, shrunk)
    assert "no longer in the grid" in stale.reason and stale.path.exists()
    other = echo_registry(echo_entry("test.other"))
    assert {s.reason for s in stale_records(root, other)} == {
        "the experiment is no longer registered"
    }


def test_an_empty_registry_is_not_the_book_registry(tmp_path):
    """`Registry([])` has length 0 but is a registry: every record is stale against it."""
    from normbook.experiments.registry import Registry
    from normbook.experiments.results import stale_records

    registry = echo_registry(echo_entry())
    run("test.echo", "smoke", root=tmp_path, registry=registry, progress=False)
    assert stale_records(tmp_path, registry) == []
    stale = stale_records(tmp_path, Registry([]))
    assert len(stale) == 1 and stale[0].experiment_id == "test.echo"
