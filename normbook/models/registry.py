"""One registry of model families: ``build_model(name, num_classes, **options)``.

Each family registers its builder with a :class:`ModelInfo` that declares the norms and
activations it accepts, the input it expects and a tiny configuration for CPU tests;
:func:`describe_models` turns the registry into the models × options table of the book.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What a model family accepts: shown by :func:`describe_models`, exercised by the tests."""

    summary: str
    norms: tuple[str, ...]
    acts: tuple[str, ...] = ("relu",)
    input_shape: tuple[int, ...] = (3, 32, 32)
    options: str = ""
    tiny: Mapping[str, Any] = field(default_factory=dict)  # small enough for a CPU forward pass


_MODELS: dict[str, tuple[ModelBuilder, ModelInfo | None]] = {}


def register_model(
    name: str, info: ModelInfo | None = None
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``builder(num_classes, **options) -> nn.Module`` under ``name``."""

    def wrap(builder: ModelBuilder) -> ModelBuilder:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = (builder, info)
        return builder

    return wrap


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_MODELS)


def _entry(name: str) -> tuple[ModelBuilder, ModelInfo | None]:
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; expected one of {', '.join(list_models())}"
        ) from None


def model_info(name: str) -> ModelInfo | None:
    """The :class:`ModelInfo` ``name`` was registered with (None if it declared none)."""
    return _entry(name)[1]


def build_model(name: str, num_classes: int, **options) -> nn.Module:
    """Build the model family ``name`` for ``num_classes`` classes with its ``options``."""
    builder, _ = _entry(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return builder(num_classes, **options)


def _common_options(info: ModelInfo) -> str:
    """Options every image family takes (``in_channels``: 1 for the digits images, 3 for RGB)."""
    return "in_channels (default 3)" if len(info.input_shape) == 3 else ""


def describe_models() -> list[dict[str, str]]:
    """One row per registered family: name, summary, norms, activations, input, options."""
    rows = []
    for name in list_models():
        info = model_info(name)
        if info is None:
            continue
        rows.append(
            {
                "model": name,
                "summary": info.summary,
                "norm": ", ".join(info.norms),
                "act": ", ".join(info.acts),
                "input": "×".join(str(d) for d in info.input_shape),
                "options": ", ".join(filter(None, (info.options, _common_options(info)))),
            }
        )
    return rows
