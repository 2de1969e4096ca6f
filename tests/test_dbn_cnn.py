"""DBN CNN chapters: the registry entries of DBN-F5, DBN-F6, DBN-T1, DBN-T2 and DBN-T3 (paper
recipes and numbers, one DBN where the paper puts it; DBN-T3's top-5 comes from the built-in topk
measurement, tested in test_measures.py)."""

from __future__ import annotations

import itertools

import pytest
import torch

import normbook.experiments.entries.dbn_cnn as entries
from normbook.experiments.registry import default_registry
from normbook.layers import DecorrelatedBatchNorm
from normbook.models import build_model

REGISTRY = default_registry()


# -- the entries ------------------------------------------------------------------------------------
F5_IDS = [f"dbn.f5.{p}.{n}" for p, *_ in entries.F5_PANELS for n in entries.NORMS_F5]
F6_IDS = [f"dbn.f6.splain-{v}.{n}" for v in entries.F6_VARIANTS for n in entries.NORMS_F5]
T1_IDS = [f"dbn.t1.resnet-cifar.{n}" for n in entries.T1_ERRORS]
T2_IDS = [f"dbn.t2.wrn.{n}" for n in entries.T2_ERRORS]
T3_IDS = [f"dbn.t3.resnet-imagenet.{n}" for n in entries.T3_ERRORS]
ALL_IDS = F5_IDS + F6_IDS + T1_IDS + T2_IDS + T3_IDS


@pytest.mark.parametrize("entry_id", ALL_IDS)
def test_group_size_is_set_exactly_where_there_is_a_dbn(entry_id):
    entry = REGISTRY.get(entry_id)
    for scale in entry.scales:
        for point in entry.points(scale):
            model = entry.resolve(scale, point)["model"]
            assert ("group_size" in model) == model["norm"].startswith("dbn"), (scale, model)


def test_f5_full_is_the_official_vgg_a_recipe_in_four_configurations():
    configs = {i: REGISTRY.get(i).resolve("full") for i in F5_IDS}
    for c in configs.values():
        assert c["model"]["variant"] == "A" and c["data"]["name"] == "cifar10"
        assert c["train"]["batch_size"] == 256 and c["train"]["epochs"] == 80
        if c["model"]["norm"] == "dbn":
            assert c["model"]["group_size"] == 16
    sgd, adam = configs["dbn.f5.sgd.dbn"]["train"], configs["dbn.f5.adam.dbn"]["train"]
    assert (sgd["optimizer"], sgd["lr"], sgd["weight_decay"]) == ("sgd", 4.0, 5e-4)
    assert (adam["optimizer"], adam["lr"], adam["weight_decay"]) == ("adam", 0.005, 0.0)
    assert configs["dbn.f5.elu.bn"]["model"]["act"] == "elu"
    assert configs["dbn.f5.after-act.dbn"]["model"]["norm_position"] == "after_act"
    reductions = [REGISTRY.get(f"dbn.f5.{p}.dbn").paper[0].value for p, *_ in entries.F5_PANELS]
    assert reductions == [0.61, 1.34, 1.44, 0.38]  # DBN Sec. 4.2.1


def test_f5_small_vgg_a_runs_on_32x32_digits_and_not_on_16x16():
    config = REGISTRY.get("dbn.f5.sgd.dbn").resolve("small")
    options = {k: v for k, v in config["model"].items() if k != "name"}
    model = build_model("vgg", 10, **options).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises((ValueError, RuntimeError)):
        model(torch.zeros(2, 3, 16, 16))  # five 2×2 pools do not fit in 16×16 with a 1×1 head


def test_f6_full_follows_the_official_s_plain_scripts():
    deep = REGISTRY.get("dbn.f6.splain-deep.dbn").resolve("full", {"model.depth": 44})
    high = REGISTRY.get("dbn.f6.splain-high-lr.dbn").resolve("full", {"model.depth": 20})
    assert (deep["model"]["width"], deep["model"]["group_size"], deep["train"]["lr"]) == (
        48,
        16,
        0.1,
    )
    assert deep["train"]["milestones"] == [80, 120] and deep["train"]["epochs"] == 160
    assert (high["model"]["width"], high["model"]["group_size"], high["train"]["lr"]) == (
        42,
        14,
        0.4,
    )
    assert high["train"]["milestones"] == [60, 100, 140, 180] and high["train"]["epochs"] == 200
    for c in (deep, high):
        assert (c["train"]["gamma"], c["train"]["weight_decay"], c["train"]["batch_size"]) == (
            0.2,
            5e-4,
            128,
        )


def test_t1_to_t3_carry_the_papers_tables_point_by_point():
    def numbers(entry_id, metric="test_error_pct", source=None):
        entry = REGISTRY.get(entry_id)
        return {
            tuple(r.point.values()): (r.value, r.std)
            for r in entry.paper
            if r.metric == metric and (source is None or r.source == source)
        }

    t1 = {
        n: numbers(f"dbn.t1.resnet-cifar.{n}", source=entries.T1_SOURCE) for n in entries.T1_ERRORS
    }
    assert [t1["dbn-scale-l1"][(d,)][0] for d in entries.T1_DEPTHS] == [7.77, 6.94, 6.83, 6.49]
    assert [t1["bn"][(d,)][0] for d in entries.T1_DEPTHS] == [7.94, 7.31, 7.17, 7.21]
    he = numbers("dbn.t1.resnet-cifar.bn", source=entries.HE_T1_SOURCE)
    assert [he[(d,)][0] for d in entries.T1_DEPTHS] == [8.75, 7.51, 7.17, 6.97]
    t2 = numbers("dbn.t2.wrn.dbn-scale-l1")
    assert t2[(28, "cifar100")] == (18.36, 0.17) and t2[(40, "cifar10")] == (3.74, 0.11)
    top5 = numbers("dbn.t3.resnet-imagenet.dbn-scale-l1", "test_top5_error_pct")
    assert [top5[(d,)][0] for d in entries.T3_DEPTHS] == [10.36, 8.42, 7.08, 6.09]
    he3 = numbers("dbn.t3.resnet-imagenet.bn", source=entries.HE_T3_SOURCE)
    assert set(he3) == {(50,), (101,)} and he3[(50,)][0] == 24.70


def test_t1_to_t3_full_recipes():
    t1 = REGISTRY.get("dbn.t1.resnet-cifar.dbn-l1")
    assert t1.scale("full").grid["model.depth"] == (20, 32, 44, 56) and t1.scale("full").seeds == 5
    c = t1.resolve("full", {"model.depth": 56})
    assert (c["model"]["group_size"], c["train"]["weight_decay"], c["train"]["gamma"]) == (
        8,
        1e-4,
        0.1,
    )
    assert c["train"]["milestones"] == [80, 120] and c["train"]["epochs"] == 160
    t2 = REGISTRY.get("dbn.t2.wrn.dbn-scale-l1")
    points = t2.points("full")
    assert {(p["model.depth"], p["data.name"]) for p in points} == set(
        itertools.product((28, 40), ("cifar10", "cifar100"))
    )
    c = t2.resolve("full", points[0])
    assert (c["model"]["widen_factor"], c["model"]["dropout"], c["train"]["epochs"]) == (
        10,
        0.3,
        200,
    )
    assert c["train"]["milestones"] == [60, 120, 160] and c["train"]["gamma"] == 0.2
    t3 = REGISTRY.get("dbn.t3.resnet-imagenet.dbn-scale-l1").resolve("full", {"model.depth": 50})
    assert t3["task"] == "classify" and t3["measure"]["topk"]["ks"] == [1, 5]
    assert t3["measure"]["topk"]["every_epoch"] is False  # measured once, after the last epoch
    assert (t3["train"]["epochs"], t3["train"]["milestones"], t3["train"]["batch_size"]) == (
        90,
        [30, 60],
        256,
    )


@pytest.mark.parametrize("entry_id", T1_IDS + T2_IDS + T3_IDS)
def test_l1_entries_build_models_whose_only_dbn_is_the_first_norm(entry_id):
    entry = REGISTRY.get(entry_id)
    config = entry.resolve("smoke", entry.points("smoke")[0])
    options = {k: v for k, v in config["model"].items() if k != "name"}
    model = build_model(config["model"]["name"], 10, **options)
    norms = [
        m for m in model.modules() if isinstance(m, (DecorrelatedBatchNorm, torch.nn.BatchNorm2d))
    ]
    dbns = [m for m in norms if isinstance(m, DecorrelatedBatchNorm)]
    if config["model"]["norm"] == "bn":
        assert not dbns
    else:
        assert dbns == [norms[0]]  # the first norm in forward order, and only it
        assert dbns[0].affine == (config["model"]["norm"] == "dbn-scale-l1")


def test_mean_difference_interval_matches_scipys_welch_test():
    from scipy.stats import ttest_ind

    from normbook.experiments.tasks_dbn_cnn import mean_difference_interval

    gen = torch.Generator().manual_seed(1)
    a = (torch.randn(5, generator=gen, dtype=torch.float64) + 1.0).tolist()
    b = (2 * torch.randn(7, generator=gen, dtype=torch.float64)).tolist()
    t64 = [torch.tensor(v, dtype=torch.float64) for v in (a, b)]
    summary = [(float(v.mean()), float(v.std()), len(v)) for v in t64]
    diff, low, high = mean_difference_interval(*summary)
    ci = ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(sum(a) / 5 - sum(b) / 7, abs=1e-12)
    assert (low, high) == (pytest.approx(ci.low, abs=1e-10), pytest.approx(ci.high, abs=1e-10))
    with pytest.raises(ValueError, match="n >= 2"):
        mean_difference_interval((0.0, 1.0, 1), (0.0, 1.0, 3))


def test_accuracy_with_batch_statistics_switches_only_the_named_modules():
    from normbook.data import load_dataset
    from normbook.experiments.tasks_dbn_cnn import accuracy_with_batch_statistics

    data = load_dataset("digits", variant="8x8")
    torch.manual_seed(0)
    model = build_model("splain", 10, depth=8, width=8, in_channels=1, norm="bn").eval()
    x, y = data.tensors("test")
    with torch.no_grad():
        plain = float((model(x).argmax(1) == y).float().mean())
    before = model.stem.norm.running_mean.clone()
    assert accuracy_with_batch_statistics(model, data) == pytest.approx(plain, abs=1e-12)
    # the stem's BN with the test batch's own statistics differs from its (fresh) running ones
    with torch.no_grad():
        model.stem.norm.train()
        expected = float((model(x).argmax(1) == y).float().mean())
        model.eval()
    model.stem.norm.running_mean.copy_(before)
    model.stem.norm.running_var.fill_(1.0)
    got = accuracy_with_batch_statistics(model, data, ["stem.norm"])
    assert got == pytest.approx(expected, abs=1e-12)
    assert torch.equal(model.stem.norm.running_mean, before)  # the model is not modified
    with pytest.raises(ValueError, match="no module"):
        accuracy_with_batch_statistics(model, data, ["stem.nope"])
