"""The experiment registry: every :class:`Experiment` by id, grouped per book part.

Entries are declared in ``normbook/experiments/entries/<part>.py`` and registered into the default
registry when :func:`default_registry` is first used. Tests build their own :class:`Registry`.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Iterator

from normbook.experiments.spec import Experiment


class UnknownExperiment(KeyError):
    """No experiment with this id is registered (the message suggests close ids)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class Registry:
    """Experiments by id; ids are unique."""

    def __init__(self, entries: tuple[Experiment, ...] | list[Experiment] = ()) -> None:
        self._entries: dict[str, Experiment] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: Experiment) -> Experiment:
        """Register ``entry``; a second entry with the same id raises ``ValueError``."""
        if not isinstance(entry, Experiment):
            raise TypeError(f"entry must be an Experiment, got {type(entry).__name__}")
        if entry.id in self._entries:
            raise ValueError(f"an experiment with id {entry.id!r} is already registered")
        self._entries[entry.id] = entry
        return entry

    def get(self, experiment_id: str) -> Experiment:
        """The entry ``experiment_id``; ``UnknownExperiment`` naming close matches otherwise."""
        try:
            return self._entries[experiment_id]
        except KeyError:
            close = difflib.get_close_matches(str(experiment_id), list(self._entries), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see `normbook list`"
            raise UnknownExperiment(f"unknown experiment {experiment_id!r}{hint}") from None

    def __contains__(self, experiment_id: object) -> bool:
        return experiment_id in self._entries

    def __iter__(self) -> Iterator[Experiment]:
        return iter(sorted(self._entries.values(), key=lambda e: e.id))

    def __len__(self) -> int:
        return len(self._entries)

    def ids(self, part: str | None = None) -> list[str]:
        """Sorted ids, optionally only those of book part ``part`` (``dbn``, ``ic``, ...)."""
        return [e.id for e in self if part is None or e.part == part]


_DEFAULT = Registry()
_LOADED = False


def register(entry: Experiment) -> Experiment:
    """Add ``entry`` to the default registry (called at import by the entries modules)."""
    return _DEFAULT.add(entry)


def default_registry() -> Registry:
    """The registry of the book's experiments: every module of ``normbook.experiments.entries``
    (one per book part, found by name, so a chapter adds a file and nothing else) is imported."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        package = importlib.import_module("normbook.experiments.entries")
        for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__)):
            if not module.startswith("_"):
                importlib.import_module(f"{package.__name__}.{module}")
    return _DEFAULT


def get_experiment(experiment_id: str, registry: Registry | None = None) -> Experiment:
    """The entry ``experiment_id`` of ``registry`` (default: the book's)."""
    return (default_registry() if registry is None else registry).get(experiment_id)


def list_experiments(part: str | None = None, registry: Registry | None = None) -> list[Experiment]:
    """Entries sorted by id, optionally of one book part."""
    return [
        e
        for e in (default_registry() if registry is None else registry)
        if part is None or e.part == part
    ]
