"""The ``mi-gaussian`` task and the ``foundations.mi-gaussian`` entry (measurements chapter)."""

from __future__ import annotations

import math

import pytest

from normbook.experiments import ConfigError, get_experiment, list_tasks, load, run, validate_config
from normbook.experiments.registry import default_registry

ENTRY = "foundations.mi-gaussian"
BASE = {"task": "mi-gaussian", "rho": 0.5, "sample_size": 200, "k": 3, "bins": "cbrt"}


def test_the_entry_is_registered_with_its_task():
    assert ENTRY in default_registry()
    assert "mi-gaussian" in list_tasks()
    entry = get_experiment(ENTRY)
    assert entry.artifact == "BOOK-MEASUREMENTS"
    small, full = entry.scale("small"), entry.scale("full")
    assert set(small.knobs) == {"rho", "sample_size"}
    assert full.seeds > small.seeds and max(full.grid["sample_size"]) > max(
        small.grid["sample_size"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rho": 1.0}, "rho"),
        ({"sample_size": 3}, "sample_size must be"),
        ({"k": 0}, "k must be"),
        ({"bins": "auto"}, "bins"),
        ({"bins": 1}, "bins"),
        ({"lr": 0.1}, "unknown config keys"),
    ],
)
def test_bad_configurations_are_rejected(change, message):
    validate_config(BASE)
    with pytest.raises(ConfigError, match=message):
        validate_config({**BASE, **change})
    with pytest.raises(ConfigError, match="lacks"):
        validate_config({k: v for k, v in BASE.items() if k != "k"})


def test_smoke_grid_runs_and_loads_with_true_values(tmp_path):
    outcomes = run(ENTRY, "smoke", root=tmp_path, progress=False)
    assert outcomes and all(o.status == "ok" for o in outcomes)
    table = load(ENTRY, "smoke", root=tmp_path)
    for _, row in table.iterrows():
        assert row["mi_true_mean"] == pytest.approx(-0.5 * math.log(1 - row["rho"] ** 2))
        assert row["n"] == row["mi_ksg_n"] == 2  # records (seeds) aggregated per point
        assert abs(row["ksg_error_mean"]) < 0.25  # n >= 100: a few standard errors
    independent = table[(table["rho"] == 0.0) & (table["sample_size"] == 100)].iloc[0]
    assert independent["mi_binned_mean"] > 0  # the plug-in bias is upwards at rho = 0


def test_live_samples_and_the_long_table_share_the_estimator_labels(tmp_path):
    from normbook.experiments.tasks_analysis import (
        MI_ESTIMATORS,
        mi_gaussian_long,
        mi_gaussian_samples,
    )

    samples = mi_gaussian_samples(0.6, 300, seeds=3)
    assert len(samples) == 3 * len(MI_ESTIMATORS)
    assert set(samples["estimator"]) == set(MI_ESTIMATORS) and set(samples["seed"]) == {0, 1, 2}
    true = samples[samples["estimator"] == "true"]["mi"]
    assert (true == -0.5 * math.log(1 - 0.36)).all()
    run(ENTRY, "smoke", root=tmp_path, progress=False, points=[{"rho": 0.9, "sample_size": 100}])
    long = mi_gaussian_long(load(ENTRY, "smoke", root=tmp_path))
    assert len(long) == len(MI_ESTIMATORS)  # points without records are left out
    assert set(long["estimator"]) == set(MI_ESTIMATORS) and (long["n"] == 2).all()
    # the same draw (seed 0) gives the same estimate live and through the runner
    live = mi_gaussian_samples(0.9, 100, seeds=[0, 1])
    ksg_live = live[live["estimator"] == "KSG"]["mi"].mean()
    assert long[long["estimator"] == "KSG"]["mi_mean"].iloc[0] == pytest.approx(ksg_live)
