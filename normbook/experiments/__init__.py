"""Experiments as data, and the store of their results (DESIGN.md "An experiment is data").

- registry: :class:`Experiment` entries (one per paper artifact or table row, one configuration
  per scale, an optional grid of knob values), declared in ``entries/<part>.py``;
- tasks: what a configuration runs (``classify``; chapters register measurement tasks);
- runner: :func:`run` executes grid points × seeds and writes one JSON record per run;
- store/results: atomic records with provenance, :func:`load` as a table, stale detection;
- launch/bench/cli: Slurm (submitit), local jobs, torchrun/DDP, timing, ``normbook`` subcommands.

Names are imported lazily so that ``normbook --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Experiment": "spec",
    "ScaleSpec": "spec",
    "Reported": "spec",
    "ConfigError": "spec",
    "deep_merge": "spec",
    "Registry": "registry",
    "UnknownExperiment": "registry",
    "register": "registry",
    "default_registry": "registry",
    "get_experiment": "registry",
    "list_experiments": "registry",
    "register_task": "tasks",
    "list_tasks": "tasks",
    "validate_config": "tasks",
    "register_measure": "measures",
    "list_measures": "measures",
    "run": "runner",
    "RunOutcome": "runner",
    "ResultsError": "store",
    "SCHEMA_VERSION": "store",
    "config_hash": "store",
    "read_record": "store",
    "write_record": "store",
    "iter_records": "store",
    "validate_record": "store",
    "results_root": "store",
    "load": "results",
    "load_curves": "results",
    "stale_records": "results",
    "StaleRecord": "results",
    "launch": "launch",
    "Resources": "launch",
    "bench_model": "bench",
    "bench_layers": "bench",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'normbook.experiments' has no attribute {name!r}")
    module = importlib.import_module(f"normbook.experiments.{_EXPORTS[name]}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
