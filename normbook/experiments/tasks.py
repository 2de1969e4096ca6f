"""Tasks: what a resolved configuration runs. ``classify`` trains a model; chapters add measurements.

A task is a function ``fn(config, *, seed, device, run_dir, progress) -> {"history": ...,
"metrics": {...}}`` registered with ``@register_task(name, validate=check)``. ``history`` is a
``History`` or a plain dict; ``metrics`` a flat dict of final numbers (``diverged: True`` marks a
diverged run); an optional ``info`` dict (e.g. the dataset's sizes and normalization) is stored in
the record too. ``validate(config)`` checks a configuration without running it (the registry test
calls it for every entry at every scale).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from normbook.experiments import distributed
from normbook.experiments.measures import build_measures, check_measures, expected_metrics
from normbook.experiments.spec import ConfigError

TaskFn = Callable[..., dict[str, Any]]
Validator = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class Task:
    """A registered task: its name, function and configuration check."""

    name: str
    fn: TaskFn
    validate: Validator | None = None


_TASKS: dict[str, Task] = {}


def register_task(name: str, *, validate: Validator | None = None) -> Callable[[TaskFn], TaskFn]:
    """Decorator registering ``fn`` as task ``name`` (``config["task"]`` selects it)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"task name must be a non-empty str, got {name!r}")

    def decorate(fn: TaskFn) -> TaskFn:
        if name in _TASKS:
            raise ValueError(f"a task named {name!r} is already registered")
        _TASKS[name] = Task(name, fn, validate)
        return fn

    return decorate


def list_tasks() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_TASKS)


def get_task(config: Mapping[str, Any]) -> Task:
    """The task named by ``config["task"]`` (default ``classify``)."""
    name = config.get("task", "classify")
    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r}; registered tasks: {', '.join(list_tasks())}")
    return _TASKS[name]


def validate_config(config: Mapping[str, Any]) -> None:
    """Check ``config`` with its task's validator (``ConfigError`` naming the problem)."""
    task = get_task(config)
    if task.validate is not None:
        task.validate(config)


# -- classify ----------------------------------------------------------------------------------
CLASSIFY_KEYS: frozenset[str] = frozenset({"task", "model", "data", "train", "ddp", "measure"})
PRIVATE_KEYS: frozenset[str] = frozenset({"root"})  # local paths may hold user names


def _section(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    if not isinstance(value, Mapping):
        raise ConfigError(f"classify: config[{key!r}] must be a mapping, got {value!r}")
    return dict(value)


def _named(section: dict[str, Any], key: str) -> tuple[str, dict[str, Any]]:
    options = dict(section)
    name = options.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"classify: config[{key!r}] needs a 'name' (str), got {name!r}")
    return name, options


def train_config(config: Mapping[str, Any]) -> Any:
    """The ``TrainConfig`` of a classify configuration (``ConfigError`` on bad fields)."""
    from normbook.train import TrainConfig

    try:
        return TrainConfig.from_dict(_section(config, "train"))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"classify: config['train']: {err}") from err


def validate_classify(config: Mapping[str, Any]) -> None:
    """Known top-level keys, a registered model and dataset, a valid ``TrainConfig``."""
    from normbook.data import list_datasets
    from normbook.models import list_models

    unknown = set(config) - CLASSIFY_KEYS
    if unknown:
        raise ConfigError(
            f"classify: unknown config keys {sorted(unknown)}; expected {sorted(CLASSIFY_KEYS)}"
        )
    if not isinstance(config.get("ddp", False), bool):
        raise ConfigError(f"classify: config['ddp'] must be a bool, got {config['ddp']!r}")
    model, _ = _named(_section(config, "model"), "model")
    if model not in list_models():
        raise ConfigError(f"classify: unknown model {model!r}; models: {', '.join(list_models())}")
    data, _ = _named(_section(config, "data"), "data")
    if data not in list_datasets():
        raise ConfigError(
            f"classify: unknown dataset {data!r}; datasets: {', '.join(list_datasets())}"
        )
    train_config(config)
    check_measures(config.get("measure", {}))


TOPK_METRIC = re.compile(r"^(?P<split>.+)_top(?P<k>[0-9]+)_acc$")


def classification_metrics(final: Mapping[str, Any]) -> dict[str, Any]:
    """``History.final_metrics()`` plus the papers' units: test accuracy and error in percent,
    and for every top-k accuracy ``<split>_top<k>_acc`` (the ``topk`` measurement) its error
    ``<split>_top<k>_error_pct`` = 100·(1 − acc) (IC-F5, DBN-T3, NP-T4); None stays None."""
    metrics = dict(final)
    acc = final.get("test_acc")
    metrics["test_acc_pct"] = None if acc is None else 100.0 * acc
    metrics["test_error_pct"] = None if acc is None else 100.0 * (1.0 - acc)
    for name, value in final.items():
        match = TOPK_METRIC.match(name)
        if match:
            error = f"{match['split']}_top{match['k']}_error_pct"
            metrics[error] = None if value is None else 100.0 * (1.0 - float(value))
    return metrics


def final_extras(history: Any) -> dict[str, float]:
    """The last value of every per-epoch measurement in ``history.extras`` (a ``History`` or its
    dict): the last number of each column, kept when finite; lists and other values are not
    metrics."""
    extras = history.extras if hasattr(history, "extras") else history.get("extras", {})
    out = {}
    for name, values in extras.items():
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if numbers and math.isfinite(float(numbers[-1])):
            out[name] = float(numbers[-1])
    return out


@register_task("classify", validate=validate_classify)
def classify(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Build the model, load the dataset, ``fit`` with the ``TrainConfig``; history and metrics.

    ``config["measure"]`` adds the registered measurements of :mod:`normbook.experiments.measures`
    (values per epoch in ``history.extras``); the final value of every numeric one
    (:func:`final_extras`) joins the metrics, all None when the run diverged or stopped before
    its last epoch. The top-k accuracies of the built-in ``topk`` measurement,
    ``<split>_top<k>_acc`` (always present, None if never logged), also get their error in
    percent, ``<split>_top<k>_error_pct`` (:func:`classification_metrics`; IC-F5, DBN-T3,
    NP-T4). Under ``torchrun`` (``normbook run --ddp``) the model is wrapped in DDP and each rank
    trains on its shard of every global batch.
    """
    from normbook.data import load_dataset
    from normbook.models import build_model, training_callbacks
    from normbook.train import fit

    validate_classify(config)
    train = train_config(config)
    data_name, data_options = _named(_section(config, "data"), "data")
    data = load_dataset(data_name, **data_options)
    model_name, model_options = _named(_section(config, "model"), "model")
    torch.manual_seed(seed)  # model initialisation depends on the run's seed
    model = build_model(model_name, num_classes=data.num_classes, **model_options)
    callbacks = training_callbacks(model)  # e.g. MimicNorm's weight mean after every step
    callbacks += build_measures(config.get("measure", {}), model, data)  # logged per epoch
    context = distributed.current()
    if context is not None:
        model = distributed.wrap_model(model, context)
        data = distributed.ShardedDataset(data, context.rank, context.world_size)
        if run_dir is not None and context.world_size > 1:
            run_dir = run_dir / f"rank{context.rank}"
    history = fit(
        model,
        data,
        train,
        seed=seed,
        device=device,
        run_dir=run_dir,
        callbacks=callbacks,
        progress=progress,
    )
    extras = {name: None for name in expected_metrics(config.get("measure", {}))}
    extras.update(final_extras(history))
    if history.diverged or len(history.epoch) < train.epochs:
        extras = {name: None for name in extras}
    return {
        "history": history,
        "metrics": classification_metrics({**history.final_metrics(), **extras}),
        "info": {"data": {k: v for k, v in data.info().items() if k not in PRIVATE_KEYS}},
    }


def register_classify_variant(
    name: str, to_classify: Callable[[Mapping[str, Any]], dict[str, Any]]
) -> TaskFn:
    """Register task ``name`` that runs ``classify`` on ``to_classify(config)``: a task whose
    knobs (``unit``, ``method``, ...) only rewrite the configuration. Its validator is
    :func:`validate_classify` of the rewritten configuration; returns the task function."""

    def validate(config: Mapping[str, Any]) -> None:
        validate_classify(to_classify(config))

    def task(
        config: Mapping[str, Any],
        *,
        seed: int,
        device: torch.device,
        run_dir: Path | None,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        return classify(
            to_classify(config), seed=seed, device=device, run_dir=run_dir, progress=progress
        )

    task.__doc__ = f"``classify`` on the configuration :func:`{to_classify.__qualname__}` makes."
    return register_task(name, validate=validate)(task)
