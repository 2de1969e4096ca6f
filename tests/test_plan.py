"""The full-scale reproduction plan of a part: runs, images, GPU-hours only from GPU bench records."""

from __future__ import annotations

import pytest

from normbook.experiments.bench import bench_model
from normbook.experiments.plan import (
    PUBLISHED_TRAIN_SIZES,
    launch_command,
    reproduction_plan,
    train_size,
    training_images,
)
from normbook.experiments.registry import Registry, default_registry
from normbook.experiments.spec import Experiment, ScaleSpec, deep_merge
from normbook.experiments.store import write_record


def _registry() -> Registry:
    digits = default_registry().get("foundations.digits-mlp")
    full = deep_merge(digits.scale("full").config, {"train": {"epochs": 3}})
    full["data"] = {"name": "cifar10", "val_split": 0.1}
    entry = Experiment(
        id="plantest.cifar",
        artifact="BOOK-TEST",
        title="plan test",
        description="plan test",
        scales={
            "smoke": ScaleSpec(config=digits.scale("smoke").config),
            "full": ScaleSpec(config=full, grid={"train.lr": (0.1, 0.2)}, seeds=5),
        },
    )
    return Registry([entry, digits])


def test_train_sizes_are_published_or_counted():
    assert train_size({"name": "cifar100"}) == PUBLISHED_TRAIN_SIZES["cifar100"] == 50_000
    assert train_size({"name": "cifar10", "val_split": 0.1}) == 45_000
    assert train_size({"name": "mnist", "subset": 1000}) == 1000
    assert 1000 < train_size({"name": "digits", "variant": "flat"}) < 1797
    assert train_size({"name": "somewhere-else"}) is None
    assert training_images({"data": {"name": "cifar10"}, "train": {"epochs": 160}}) == 8_000_000
    assert training_images({"task": "measure-only"}) is None


def test_no_gpu_record_means_no_estimate_and_the_bench_command(tmp_path):
    plan = reproduction_plan("plantest", root=tmp_path, registry=_registry())
    row = plan.iloc[0]
    assert row["runs"] == 10 and row["images per run"] == 3 * 45_000
    assert row["GPU-hours (all runs)"] is None
    assert "normbook bench model plantest.cifar --scale full --device cuda" in row["estimate from"]
    command = launch_command(["plantest.cifar"], plan)
    assert "--time MINUTES" in command and "--executor slurm" in command
    with pytest.raises(ValueError, match="declares scale"):
        reproduction_plan("nosuchpart", root=tmp_path, registry=_registry())


def test_a_gpu_bench_record_gives_gpu_hours_and_a_time_limit(tmp_path):
    registry = _registry()
    record = bench_model(
        "mlp",
        is_entry=False,
        scale="full",
        steps=2,
        warmup=1,
        device="cpu",
        input_shape=(64,),
        model_options={"in_features": 64, "hidden": [8]},
        write=False,
    )
    # stand in for a record made on a GPU: same schema, CUDA hardware, a known throughput
    record["experiment_id"] = "bench.model.plantest.cifar"
    record["hardware"] = {**record["hardware"], "device": "cuda", "device_name": "Test GPU"}
    record["metrics"]["images_per_s"] = 1000.0
    write_record(record, tmp_path)
    plan = reproduction_plan("plantest", root=tmp_path, registry=registry)
    row = plan.iloc[0]
    assert row["GPU images/s"] == 1000.0
    assert row["GPU-hours (all runs)"] == pytest.approx(10 * 135_000 / 1000 / 3600)
    assert row["estimate from"].startswith("Test GPU")
    per_run_minutes = 135_000 / 1000 / 60  # 2.25 min, x1.5 margin -> 4
    assert f"--time {int(-(-per_run_minutes * 1.5 // 1))}" in launch_command(
        ["plantest.cifar"], plan
    )


def test_reproduction_table_renders_every_entry_of_a_part(tmp_path):
    from normbook.viz import html_table, reproduction_table

    page = reproduction_table("foundations", root=tmp_path).data
    for entry_id in default_registry().ids("foundations"):
        if "full" in default_registry().get(entry_id).scales:
            assert f"<code>{entry_id}</code>" in page
    assert "no GPU bench record" in page
    escaped = html_table(["a<b"], [("<script>",)], code_columns=(0,)).data
    assert "<script>" not in escaped and "&lt;script&gt;" in escaped and "a&lt;b" in escaped
