"""Tasks of the synthesis part (``book/synthesis/``): every method on one protocol.

- task ``synthesis``: a ``classify`` run whose normalization is named by one knob,
  ``config["method"]`` (a key of :data:`METHODS`: ``bn``, ``dbn-g16``, ``mimic``, ...), so that a
  grid over methods × learning rates × batch sizes × depths compares them on the same model, data,
  budget and seeds. ``config["lr_reference_batch"]`` (optional) makes ``train.lr`` the learning
  rate *at that batch size*: the run uses ``lr · batch_size / lr_reference_batch`` (the linear
  scaling rule, Goyal et al. 2017), so a batch-size sweep keeps the step per sample fixed.
- task ``synthesis-cost``: time per training step and activation memory of every method on one
  model, measured in one process, the methods interleaved round by round so that drift of a noisy
  machine hits them alike; stored as ratios to BN (the CPU figures the book reports) beside the
  absolute numbers.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import (
    CLASSIFY_KEYS,
    _named,
    _section,
    register_classify_variant,
    register_task,
    train_config,
    validate_classify,
)

SYNTHESIS_TASK = "synthesis"
COST_TASK = "synthesis-cost"
REFERENCE_METHOD = "bn"
RESIDUAL_FAMILIES: tuple[str, ...] = ("resnet_cifar", "resnet_imagenet", "wrn")

# method -> build_model options (a family's own overrides under the family's name)
METHODS: dict[str, dict[str, Any]] = {
    "none": {"norm": "none"},
    "bn": {"norm": "bn"},
    "dbn-g4": {"norm": "dbn", "group_size": 4},
    "dbn-g16": {"norm": "dbn", "group_size": 16},
    "dbn-newton-g16": {
        "norm": "dbn",
        "group_size": 16,
        "whitening": "newton",
        "backward": "autograd",
    },
    # IC layer before every weight layer (IC paper); in the MLP: Linear → ReLU → IC → Linear
    "ic": {"norm": "ic", "drop_prob": 0.05, "mlp": {"norm_position": "after_act"}},
    "mimic": {"norm": "mimic"},
    "normprop2": {"norm": "normprop2"},
    "normprop3": {"norm": "normprop3"},
    "bn-crelu": {"norm": "bn", "act": "crelu"},
    "normprop2-crelu": {"norm": "normprop2", "act": "crelu"},
    "fixup": {"norm": "fixup", "families": RESIDUAL_FAMILIES},
}
METHOD_NAMES: dict[str, str] = {
    "none": "no normalization",
    "bn": "BatchNorm",
    "dbn-g4": "DBN (ZCA, groups of 4)",
    "dbn-g16": "DBN (ZCA, groups of 16)",
    "dbn-newton-g16": "DBN (Newton T=5, groups of 16)",
    "ic": "IC layer (BN + Dropout 0.05)",
    "mimic": "MimicNorm",
    "normprop2": "NormProp2",
    "normprop3": "NormProp3",
    "bn-crelu": "BatchNorm + CReLU",
    "normprop2-crelu": "NormProp2 + CReLU",
    "fixup": "Fixup (no normalization layer)",
}
BATCH_FREE = ("none", "normprop2", "normprop3", "normprop2-crelu", "fixup")  # no batch statistics
_TASK_KEYS = frozenset({"method", "lr_reference_batch"})
_META_KEYS = ("families", *RESIDUAL_FAMILIES, "mlp", "splain", "vgg")


def _supported(method: str, family: str) -> bool:
    from normbook.models.registry import model_info

    spec, info = METHODS[method], model_info(family)
    if family not in spec.get("families", (family,)):
        return False
    if info is None:
        return True
    return spec["norm"] in info.norms and spec.get("act", "relu") in info.acts


def methods_for(family: str) -> tuple[str, ...]:
    """The methods of :data:`METHODS` that model family ``family`` builds (its registered norms
    and activations; Fixup needs residual branches), in :data:`METHODS` order."""
    return tuple(m for m in METHODS if _supported(m, family))


def method_model_options(method: str, family: str) -> dict[str, Any]:
    """``build_model`` options of ``method`` on ``family`` (``ConfigError`` naming the problem)."""
    if method not in METHODS:
        raise ConfigError(
            f"{SYNTHESIS_TASK}: method must be one of {', '.join(METHODS)}, got {method!r}"
        )
    if not _supported(method, family):
        raise ConfigError(
            f"{SYNTHESIS_TASK}: model family {family!r} cannot build method {method!r}; its"
            f" methods are {', '.join(methods_for(family))}"
        )
    spec = METHODS[method]
    options = {k: copy.deepcopy(v) for k, v in spec.items() if k not in _META_KEYS}
    options.update(copy.deepcopy(spec.get(family, {})))
    return options


def effective_lr(lr: float, batch_size: int, reference_batch: int | None) -> float:
    """``lr`` scaled linearly with the batch size (``lr`` is the rate at ``reference_batch``);
    ``lr`` itself when there is no reference."""
    if reference_batch is None:
        return lr
    if isinstance(reference_batch, bool) or not isinstance(reference_batch, int):
        raise ConfigError(
            f"{SYNTHESIS_TASK}: lr_reference_batch must be an int or null, got {reference_batch!r}"
        )
    if reference_batch < 1:
        raise ConfigError(
            f"{SYNTHESIS_TASK}: lr_reference_batch must be >= 1, got {reference_batch}"
        )
    return lr * batch_size / reference_batch


def classify_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``classify`` configuration a ``synthesis`` configuration runs: the method's model
    options merged into ``config["model"]`` and the learning rate scaled with the batch size."""
    unknown = set(config) - CLASSIFY_KEYS - _TASK_KEYS
    if unknown:
        raise ConfigError(
            f"{SYNTHESIS_TASK}: unknown config keys {sorted(unknown)}; expected"
            f" {sorted(CLASSIFY_KEYS | _TASK_KEYS)}"
        )
    if "method" not in config:
        raise ConfigError(f"{SYNTHESIS_TASK}: config needs a 'method' ({', '.join(METHODS)})")
    family, model_options = _named(_section(config, "model"), "model")
    options = method_model_options(config["method"], family)
    clash = sorted(set(options) & set(model_options))
    if clash:
        raise ConfigError(
            f"{SYNTHESIS_TASK}: config['model'] must not set {clash}: the task sets them from"
            f" config['method'] ({config['method']!r})"
        )
    out = {k: copy.deepcopy(v) for k, v in config.items() if k in CLASSIFY_KEYS}
    out["task"] = "classify"
    out["model"] = {"name": family, **model_options, **options}
    train = _section(config, "train")
    train["lr"] = effective_lr(
        train.get("lr", train_config(config).lr),
        train.get("batch_size", train_config(config).batch_size),
        config.get("lr_reference_batch"),
    )
    out["train"] = train
    return out


synthesis = register_classify_variant(SYNTHESIS_TASK, classify_config)


# -- cost: time per step and activation memory ----------------------------------------------------
COST_KEYS = frozenset(
    {"task", "methods", "model", "data", "train", "batch_size", "steps", "rounds"}
)


def _cost_settings(
    config: Mapping[str, Any],
) -> tuple[list[str], str, dict[str, Any], int, int, int]:
    unknown = set(config) - COST_KEYS
    if unknown:
        raise ConfigError(
            f"{COST_TASK}: unknown config keys {sorted(unknown)}; expected {sorted(COST_KEYS)}"
        )
    family, model_options = _named(_section(config, "model"), "model")
    methods = config.get("methods")
    if (
        not isinstance(methods, Sequence)
        or isinstance(methods, str)
        or REFERENCE_METHOD not in methods
    ):
        raise ConfigError(
            f"{COST_TASK}: config['methods'] must be a list of methods including"
            f" {REFERENCE_METHOD!r} (the reference of the ratios), got {methods!r}"
        )
    for method in methods:
        method_model_options(method, family)
    numbers = []
    for key in ("batch_size", "steps", "rounds"):
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{COST_TASK}: config[{key!r}] must be an int >= 1, got {value!r}")
        numbers.append(value)
    return list(methods), family, model_options, *numbers


def validate_cost(config: Mapping[str, Any]) -> None:
    """Known keys, methods defined for the model family, positive counts, a valid model/data."""
    methods, family, model_options, *_ = _cost_settings(config)
    for method in methods:
        validate_classify(
            {
                "task": "classify",
                "model": {"name": family, **model_options, **method_model_options(method, family)},
                "data": dict(_section(config, "data")),
                "train": dict(_section(config, "train")),
            }
        )


@register_task(COST_TASK, validate=validate_cost)
def synthesis_cost(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Per method: median milliseconds per training step (the training loop's own step, random
    inputs of the dataset's shape, ``rounds`` rounds of ``steps`` timed steps, methods in turn
    within each round) and the bytes autograd saves for one forward pass
    (:func:`normbook.analysis.memory.activation_memory`); their ratios to BN are the metrics
    ``step_ratio_<method>`` and ``memory_ratio_<method>``."""
    from normbook.analysis.memory import activation_memory
    from normbook.data import load_dataset
    from normbook.experiments.bench import time_training_steps
    from normbook.models import build_model, count_parameters

    validate_cost(config)
    methods, family, model_options, batch_size, steps, rounds = _cost_settings(config)
    train = train_config(config)
    data_name, data_options = _named(_section(config, "data"), "data")
    data = load_dataset(data_name, **data_options)
    input_shape = tuple(data.input_shape)
    models = {}
    for method in methods:
        torch.manual_seed(seed)
        options = {**model_options, **method_model_options(method, family)}
        models[method] = build_model(family, num_classes=data.num_classes, **options).to(device)
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    for round_index in range(rounds):
        order = methods if round_index % 2 == 0 else methods[::-1]  # alternate who goes first
        for method in order:
            timing = time_training_steps(
                models[method],
                input_shape,
                data.num_classes,
                batch_size=batch_size,
                steps=steps,
                warmup=1 if round_index else 3,
                device=device,
                train=train,
                seed=seed,
            )
            seconds[method] += timing["step_seconds"]
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, *input_shape), generator=generator).to(device)
    metrics: dict[str, Any] = {}
    table = {}
    for method in methods:
        memory = activation_memory(models[method], x)
        table[method] = {
            "step_ms": 1e3 * statistics.median(seconds[method]),
            "activation_bytes": memory.activation_bytes,
            "parameters": count_parameters(models[method]),
        }
    reference = table[REFERENCE_METHOD]
    for method, row in table.items():
        metrics[f"step_ms_{method}"] = row["step_ms"]
        metrics[f"step_ratio_{method}"] = row["step_ms"] / reference["step_ms"]
        metrics[f"activation_mib_{method}"] = row["activation_bytes"] / 2**20
        metrics[f"memory_ratio_{method}"] = row["activation_bytes"] / reference["activation_bytes"]
        metrics[f"parameters_{method}"] = row["parameters"]
    history = {"step_seconds": {m: seconds[m] for m in methods}}
    return {
        "history": history,
        "metrics": metrics,
        "info": {"batch_size": batch_size, "input_shape": list(input_shape), "device": str(device)},
    }
