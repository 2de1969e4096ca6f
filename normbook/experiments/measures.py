"""Measurements taken while a ``classify`` run trains: ``config["measure"] = {name: options}``.

A measurement is registered by name with a factory ``factory(model, data, **options)`` that
returns a training callback (see :mod:`normbook.train.callbacks`): typically an
``on_epoch_end(state)`` that computes something on ``state.model`` and calls
``state.log(name, value)``, so the value lands in ``history.extras[name]``, one entry per epoch,
and :func:`~normbook.experiments.results.load_curves` can draw it. The options are part of the
resolved configuration, hence of the record's config hash. Each book part registers the
measurements its figures need (residual Δ per block, FIM condition number, ...) in its own
module, so that one training loop serves them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from normbook.experiments.spec import ConfigError

MeasureFactory = Callable[..., Any]

_MEASURES: dict[str, MeasureFactory] = {}


def register_measure(name: str) -> Callable[[MeasureFactory], MeasureFactory]:
    """Decorator registering ``factory(model, data, **options) -> callback`` under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"measure name must be a non-empty str, got {name!r}")

    def decorate(factory: MeasureFactory) -> MeasureFactory:
        if name in _MEASURES:
            raise ValueError(f"a measure named {name!r} is already registered")
        _MEASURES[name] = factory
        return factory

    return decorate


def list_measures() -> list[str]:
    """Registered measurement names, sorted."""
    return sorted(_MEASURES)


def check_measures(spec: Any) -> dict[str, dict[str, Any]]:
    """``config["measure"]`` as ``{name: options}``, every name registered (``ConfigError``)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"classify: config['measure'] must be a mapping, got {spec!r}")
    checked = {}
    for name, options in spec.items():
        if name not in _MEASURES:
            known = ", ".join(list_measures()) or "none registered"
            raise ConfigError(f"classify: unknown measure {name!r}; measures: {known}")
        if not isinstance(options, Mapping):
            raise ConfigError(
                f"classify: config['measure'][{name!r}] must be a mapping of options,"
                f" got {options!r}"
            )
        checked[name] = dict(options)
    return checked


def build_measures(spec: Any, model: Any, data: Any) -> list[Any]:
    """One callback per entry of ``config["measure"]``, in the order given."""
    callbacks = []
    for name, options in check_measures(spec).items():
        try:
            callbacks.append(_MEASURES[name](model, data, **options))
        except TypeError as err:
            raise ConfigError(f"classify: measure {name!r}: {err}") from err
    return callbacks
