"""Measurements taken while a ``classify`` run trains: ``config["measure"] = {name: options}``.

A measurement is registered by name with a factory ``factory(model, data, **options)`` that
returns a training callback (see :mod:`normbook.train.callbacks`): typically an
``on_epoch_end(state)`` that computes something on ``state.model`` and calls
``state.log(name, value)``, so the value lands in ``history.extras[name]``, one entry per epoch,
and :func:`~normbook.experiments.results.load_curves` can draw it. The options are part of the
resolved configuration, hence of the record's config hash; an optional ``check(options)`` given to
:func:`register_measure` validates them without a model or data (``validate_config`` calls it).
Each book part registers the measurements its figures need (residual Δ per block, FIM condition
number, ...) in its own module, so that one training loop serves them all.

``classify`` promotes the final value of every numeric per-epoch measurement to the record's
metrics (None when the run diverged or stopped early); see
:func:`~normbook.experiments.tasks.classify`.

Built in (registered here, so every part can use it without importing another part's module):

- ``topk``: top-k accuracy of a split (:func:`normbook.analysis.accuracy.topk_accuracy`; IC-F5,
  DBN-T3 and NP-T4 report top-5 next to top-1, and ``fit`` records top-1 only). Options: ``ks``
  (default ``[1, 5]``; a non-empty list of distinct ints >= 1), ``split`` (default ``"test"``; a
  split of the dataset), ``batch_size`` (default None: the run's ``train.eval_batch_size``) and
  ``every_epoch`` (default True: after every evaluated epoch, per ``train.eval_every``, and always
  after the last one; False: after the last epoch only). Logs ``<split>_top<k>_acc`` (fractions);
  ``classify`` adds their final values to the metrics with ``<split>_top<k>_error_pct``
  = 100·(1 − acc), the papers' unit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from normbook.experiments.spec import ConfigError

MeasureFactory = Callable[..., Any]
OptionCheck = Callable[[Mapping[str, Any]], None]

_MEASURES: dict[str, MeasureFactory] = {}
_CHECKS: dict[str, OptionCheck] = {}


def register_measure(
    name: str, *, check: OptionCheck | None = None
) -> Callable[[MeasureFactory], MeasureFactory]:
    """Decorator registering ``factory(model, data, **options) -> callback`` under ``name``.

    ``check(options)``, if given, raises ``ConfigError`` on bad options before any run.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"measure name must be a non-empty str, got {name!r}")

    def decorate(factory: MeasureFactory) -> MeasureFactory:
        if name in _MEASURES:
            raise ValueError(f"a measure named {name!r} is already registered")
        _MEASURES[name] = factory
        if check is not None:
            _CHECKS[name] = check
        return factory

    return decorate


def list_measures() -> list[str]:
    """Registered measurement names, sorted."""
    return sorted(_MEASURES)


def check_measures(spec: Any) -> dict[str, dict[str, Any]]:
    """``config["measure"]`` as ``{name: options}``, every name registered and its options
    passing the measurement's ``check`` (``ConfigError``)."""
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
        if name in _CHECKS:
            _CHECKS[name](options)
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


# -- built in: top-k accuracy (IC-F5, DBN-T3, NP-T4) -------------------------------------------
TOPK = "topk"
TOPK_DEFAULTS: dict[str, Any] = {
    "ks": (1, 5),
    "split": "test",
    "batch_size": None,
    "every_epoch": True,
}


def topk_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``topk`` options completed with :data:`TOPK_DEFAULTS` and checked (``ConfigError``
    naming the option; the split is checked against the data when the run starts)."""
    from normbook.analysis.accuracy import check_ks

    unknown = set(options) - set(TOPK_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"measure {TOPK}: unknown options {sorted(unknown)}; expected {sorted(TOPK_DEFAULTS)}"
        )
    out = {**TOPK_DEFAULTS, **options}
    try:
        out["ks"] = check_ks(out["ks"])
    except ValueError as err:
        raise ConfigError(f"measure {TOPK}: option ks: {err}") from err
    if not isinstance(out["split"], str):
        raise ConfigError(f"measure {TOPK}: option split must be a str, got {out['split']!r}")
    size = out["batch_size"]
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(
            f"measure {TOPK}: option batch_size must be None or an int >= 1, got {size!r}"
        )
    if not isinstance(out["every_epoch"], bool):
        raise ConfigError(
            f"measure {TOPK}: option every_epoch must be a bool, got {out['every_epoch']!r}"
        )
    return out


class TopKAccuracy:
    """Callback of the ``topk`` measurement: ``<split>_top<k>_acc`` of ``state.model`` after
    every evaluated epoch (``every_epoch``) or after the last one only.

    Evaluates like the loop's own evaluation: eval mode, no grad, the run's autocast dtype (bf16
    on CUDA under ``amp="auto"``), batches of ``batch_size`` (the run's ``eval_batch_size`` when
    None) from the loop's data.
    """

    def __init__(
        self, ks: tuple[int, ...], split: str, batch_size: int | None, every_epoch: bool
    ) -> None:
        self.ks, self.split, self.batch_size, self.every_epoch = ks, split, batch_size, every_epoch

    def due(self, state: Any) -> bool:
        config = state.config
        if state.epoch == config.epochs:
            return True
        return self.every_epoch and state.epoch % config.eval_every == 0

    def on_epoch_end(self, state: Any) -> None:
        if not self.due(state):
            return
        from normbook.analysis.accuracy import topk_accuracy
        from normbook.train.loop import resolve_amp

        config = state.config
        batches = state.data.eval_batches(self.split, self.batch_size or config.eval_batch_size)
        amp = resolve_amp(config.amp, state.device)
        for k, acc in topk_accuracy(state.model, batches, self.ks, amp_dtype=amp).items():
            state.log(f"{self.split}_top{k}_acc", acc)


def expected_metrics(spec: Any) -> list[str]:
    """The metric names ``config["measure"]`` promises whatever happens to the run: the built-in
    ``topk``'s ``<split>_top<k>_acc`` (so a run that diverged before logging them still reports
    them, as None)."""
    measures = check_measures(spec)
    if TOPK not in measures:
        return []
    options = topk_options(measures[TOPK])
    return [f"{options['split']}_top{k}_acc" for k in options["ks"]]


@register_measure(TOPK, check=topk_options)
def topk_measure(model: Any, data: Any, **options: Any) -> TopKAccuracy:
    """``config["measure"] = {"topk": {"ks": [1, 5]}}``: top-k accuracy per evaluated epoch."""
    checked = topk_options(options)
    if checked["split"] not in data.splits:
        raise ConfigError(
            f"measure {TOPK}: option split {checked['split']!r} is not a split of the data"
            f" {tuple(data.splits)}"
        )
    return TopKAccuracy(
        checked["ks"], checked["split"], checked["batch_size"], checked["every_epoch"]
    )
