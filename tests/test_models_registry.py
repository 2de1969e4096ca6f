"""Every registered family × every norm × activation it declares: builds, forward, backward.

Plus the norm-policy rules that hold across families (one DBN for the ``*-l1`` norms, no BN but the
last one for ``mimic``, MimicNorm's weight mean at init and after each step, Fixup's zero init)
and the ``describe_models`` table the book's appendix shows.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn

from normbook.layers import DecorrelatedBatchNorm, LastBatchNorm
from normbook.models import (
    FAMILIES,
    NormPolicy,
    build_model,
    describe_models,
    list_models,
    model_info,
    residual_blocks,
    training_callbacks,
)

BATCH = 4


def _combinations() -> list[tuple[str, str, str]]:
    combos = []
    for name in list_models():
        info = model_info(name)
        combos += [(name, norm, act) for norm, act in itertools.product(info.norms, info.acts)]
    return combos


def _tiny(name: str, **options) -> nn.Module:
    info = model_info(name)
    return build_model(name, 10, **{**info.tiny, **options})


def _batch(name: str) -> torch.Tensor:
    return torch.randn(BATCH, *model_info(name).input_shape)


def test_every_family_is_registered_with_its_info():
    assert set(FAMILIES) <= set(list_models())
    for name in list_models():
        info = model_info(name)
        assert info is not None and info.norms and info.acts and info.summary


@pytest.mark.parametrize(("name", "norm", "act"), _combinations())
def test_declared_combination_builds_and_trains(name, norm, act):
    torch.manual_seed(0)
    if norm == "normprop1" and act != "relu":
        with pytest.raises(ValueError, match="normprop1"):
            _tiny(name, norm=norm, act=act)
        return
    model = _tiny(name, norm=norm, act=act)
    out = model(_batch(name))
    assert out.shape == (BATCH, 10)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("name", list_models())
def test_undeclared_norm_and_act_are_rejected(name):
    with pytest.raises(ValueError, match="norm"):
        _tiny(name, norm="groupnorm-of-the-future")
    with pytest.raises(ValueError, match="act"):
        _tiny(name, act="swishy")


def _with_norm(norm: str) -> list[str]:
    return [n for n in list_models() if norm in model_info(n).norms]


@pytest.mark.parametrize("name", _with_norm("dbn-scale-l1"))
@pytest.mark.parametrize("norm", ["dbn-l1", "dbn-scale-l1"])
def test_l1_norms_replace_exactly_one_layer(name, norm):
    model = _tiny(name, norm=norm)
    dbns = [m for m in model.modules() if isinstance(m, DecorrelatedBatchNorm)]
    assert len(dbns) == 1
    assert dbns[0].affine == (norm == "dbn-scale-l1")  # DBN-scale: γ, β after whitening
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", _with_norm("mimic"))
def test_mimic_has_only_the_last_batchnorm_and_keeps_filters_centred(name):
    torch.manual_seed(0)
    model = _tiny(name, norm="mimic")
    norms = [
        m
        for m in model.modules()
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, DecorrelatedBatchNorm))
    ]
    assert len(norms) == 1 and isinstance(norms[0], LastBatchNorm)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight[0].numel() > 50]
    for conv in convs:  # weight mean applied at init
        means = conv.weight.flatten(1).mean(dim=1)
        assert means.abs().max() < 1e-6
    (callback,) = training_callbacks(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(_batch(name)).square().mean().backward()
    optimizer.step()
    moved = max((c.weight.flatten(1).mean(dim=1).abs().max().item() for c in convs), default=0)
    callback.on_step_end(None)
    after = max((c.weight.flatten(1).mean(dim=1).abs().max().item() for c in convs), default=0)
    assert after < 1e-6 and (not convs or moved > after)


@pytest.mark.parametrize("name", _with_norm("mimic"))
def test_mimic_ablation_switches(name):
    no_last = _tiny(name, norm="mimic", last_bn=False)
    assert not any(isinstance(m, LastBatchNorm) for m in no_last.modules())
    no_wm = _tiny(name, norm="mimic", weight_mean=False)
    assert training_callbacks(no_wm) == []
    with pytest.raises(ValueError, match="only apply to norm='mimic'"):
        _tiny(name, norm="none", last_bn=False)


@pytest.mark.parametrize("name", _with_norm("fixup"))
def test_fixup_zero_inits_each_branch_end_and_the_classifier(name):
    model = _tiny(name, norm="fixup")
    blocks = residual_blocks(model)
    assert blocks
    for block in blocks:
        assert torch.count_nonzero(block.branch_weights()[-1].weight) == 0
    classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert torch.count_nonzero(classifier.weight) == 0
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_non_mimic_models_need_no_training_callbacks():
    assert training_callbacks(build_model("mlp", 10, hidden=(8,))) == []


def test_policy_rejects_inconsistent_choices():
    with pytest.raises(ValueError, match="init='fixup'"):
        NormPolicy("x", "bn", init="fixup")
    with pytest.raises(ValueError, match="no normalization layer"):
        NormPolicy("x", "none", group_size=4)
    with pytest.raises(ValueError, match="weight_mean must be True or False"):
        NormPolicy("x", "mimic", weight_mean="yes")


def test_describe_models_lists_every_family():
    rows = describe_models()
    assert [r["model"] for r in rows] == list_models()
    for row in rows:
        assert set(row) == {"model", "summary", "norm", "act", "input", "options"}
        assert row["norm"] and row["act"]
