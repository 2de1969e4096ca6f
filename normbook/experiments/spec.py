"""An experiment as data: frozen dataclasses for a registry entry, its scales and reported numbers.

An :class:`Experiment` names its paper artifact (PAPERS.md ID), the paper's reported numbers and
one :class:`ScaleSpec` per scale. A scale holds a base configuration (nested mappings:
``task``, ``model``, ``data``, ``train``, ...), an optional grid of knob values at dotted paths
(``{"train.lr": (0.1, 1.0), "model.norm": ("bn", "none")}``) and a number of seeds. The resolved
configuration of a grid point is the base with the knob values substituted at their paths.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from normbook.config import SCALES, check_scale

# PAPERS.md artifact IDs: IC-TH1, DBN-F2, MN-EQ2-4, NP-P1-3, ...; BOOK-* for the book's own
# experiments (foundations, synthesis) that illustrate no single paper artifact.
ARTIFACT_PREFIXES: tuple[str, ...] = ("IC", "DBN", "MN", "NP", "BOOK")
ARTIFACT_PATTERN = re.compile(rf"^({'|'.join(ARTIFACT_PREFIXES)})-[A-Z0-9]+(-[A-Z0-9]+)*$")
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$")

Point = dict[str, Any]


class ConfigError(ValueError):
    """An experiment's configuration is invalid (unknown knob path, bad value, unknown task)."""


def freeze(value: Any) -> Any:
    """Deep-immutable copy: mappings become read-only proxies, lists and tuples become tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain mutable JSON-like copy of a frozen value: dicts and lists."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return copy.deepcopy(value)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in recursively (mappings merge, other values replace).

    For declaring one scale as another plus changes; the result is a fresh plain dict.
    """
    merged = thaw(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = thaw(value)
    return merged


def set_path(config: dict[str, Any], path: str, value: Any, *, where: str = "config") -> None:
    """Set ``config[a][b] = value`` for ``path="a.b"``; the path must already exist."""
    keys = path.split(".")
    node: Any = config
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "(not a mapping)"
            prefix = ".".join(keys[:depth]) or "<top>"
            raise ConfigError(
                f"{where}: unknown key {path!r} (no {key!r} under {prefix}; known: {known})"
            )
        if depth == len(keys) - 1:
            node[key] = thaw(value)
        else:
            node = node[key]


def get_path(config: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path`` of ``config`` (``KeyError`` naming the path if absent)."""
    node: Any = config
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(path)
        node = node[key]
    return node


def _is_json_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, int, bool))


@dataclass(frozen=True)
class Reported:
    """A number the paper reports: ``metric`` is the name of our final metric it compares with.

    ``unit`` and ``meaning`` say what it is ("%", "test error, mean of 5 runs"); ``std`` is the
    paper's spread where it gives one; ``point`` restricts it to grid points with these knob values
    (e.g. one learning rate of MN-T2); ``source`` names the table or figure.
    """

    metric: str
    value: float
    unit: str
    meaning: str
    source: str
    std: float | None = None
    point: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError(f"Reported.metric must be a non-empty str, got {self.metric!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise ConfigError(f"Reported.value must be a number, got {self.value!r}")
        if self.point is not None:
            object.__setattr__(self, "point", freeze(self.point))

    def applies_to(self, point: Mapping[str, Any]) -> bool:
        """Whether this number belongs to grid ``point`` (always, when ``self.point`` is None)."""
        return self.point is None or all(point.get(k) == v for k, v in self.point.items())


@dataclass(frozen=True)
class ScaleSpec:
    """One scale of an experiment: base configuration, grid of knob values, seeds per point."""

    config: Mapping[str, Any]
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    seeds: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.config, Mapping):
            raise ConfigError(f"config must be a mapping, got {type(self.config).__name__}")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"seeds must be an int >= 1, got {self.seeds!r}")
        for path, values in self.grid.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise ConfigError(f"grid[{path!r}] must be a non-empty sequence of values")
            if not all(_is_json_scalar(v) for v in values):
                raise ConfigError(f"grid[{path!r}] values must be JSON scalars, got {values!r}")
            if len(set(map(repr, values))) != len(values):
                raise ConfigError(f"grid[{path!r}] has repeated values: {values!r}")
        object.__setattr__(self, "config", freeze(self.config))
        object.__setattr__(self, "grid", freeze(self.grid))

    @property
    def knobs(self) -> tuple[str, ...]:
        """The grid's dotted paths, in declaration order."""
        return tuple(self.grid)

    def points(self) -> list[Point]:
        """Every grid point (the cartesian product of the knob values); ``[{}]`` without a grid."""
        combos = itertools.product(*self.grid.values())
        return [dict(zip(self.knobs, combo, strict=True)) for combo in combos]


@dataclass(frozen=True)
class Experiment:
    """A registry entry: one paper artifact (or a row of it), at every scale it declares.

    ``id`` is dotted and starts with the book part (``dbn.table1.resnet20.dbn-scale-l1``);
    ``artifact`` is the PAPERS.md ID; ``paper`` holds the paper's reported numbers.
    """

    id: str
    artifact: str
    title: str
    scales: Mapping[str, ScaleSpec]
    description: str = ""
    paper: tuple[Reported, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not ID_PATTERN.match(self.id):
            raise ConfigError(
                f"experiment id must be dotted lower-case words like 'dbn.table1.resnet20',"
                f" got {self.id!r}"
            )
        if not isinstance(self.artifact, str) or not ARTIFACT_PATTERN.match(self.artifact):
            raise ConfigError(
                f"{self.id}: artifact must be a PAPERS.md ID like 'DBN-T1' (prefixes"
                f" {', '.join(ARTIFACT_PREFIXES)}), got {self.artifact!r}"
            )
        if not self.scales:
            raise ConfigError(f"{self.id}: declares no scale")
        for name, spec in self.scales.items():
            if name not in SCALES:
                raise ConfigError(f"{self.id}: unknown scale {name!r}; scales are {SCALES}")
            if not isinstance(spec, ScaleSpec):
                raise ConfigError(f"{self.id}: scales[{name!r}] must be a ScaleSpec")
            for path in spec.knobs:
                try:
                    get_path(spec.config, path)
                except KeyError:
                    raise ConfigError(
                        f"{self.id} [{name}]: grid knob {path!r} is not a key of the base config"
                        " (declare its default value there)"
                    ) from None
        object.__setattr__(self, "scales", MappingProxyType(dict(self.scales)))
        object.__setattr__(self, "paper", tuple(self.paper))

    @property
    def part(self) -> str:
        """The book part the entry belongs to: the first component of its id."""
        return self.id.split(".", 1)[0]

    @property
    def paper_numbers(self) -> dict[str, float]:
        """``{metric: value}`` of the reported numbers that apply to every point."""
        return {r.metric: r.value for r in self.paper if r.point is None}

    def scale(self, name: str) -> ScaleSpec:
        """The spec of scale ``name`` (``ConfigError`` if the entry does not declare it)."""
        check_scale(name)
        if name not in self.scales:
            raise ConfigError(
                f"{self.id} has no {name!r} configuration; it declares {', '.join(self.scales)}"
            )
        return self.scales[name]

    def points(self, scale: str) -> list[Point]:
        """The grid points of ``scale``."""
        return self.scale(scale).points()

    def resolve(self, scale: str, point: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The resolved configuration of ``point`` at ``scale``: base with knob values substituted
        and the ``train`` section completed with :func:`~normbook.train.config.train_defaults`.

        ``point`` must name exactly the grid's knobs (no point: the base, only if there is no grid).
        """
        spec = self.scale(scale)
        point = dict(point or {})
        where = f"{self.id} [{scale}]"
        if set(point) != set(spec.knobs):
            raise ConfigError(
                f"{where}: point must set exactly the grid's knobs {list(spec.knobs)},"
                f" got {sorted(point)}"
            )
        config = thaw(spec.config)
        for path, value in point.items():
            set_path(config, path, value, where=where)
        if isinstance(config.get("train"), dict):  # the defaults a run relies on are in its hash
            from normbook.train.config import train_defaults

            config["train"] = {**train_defaults(), **config["train"]}
        return config

    def select_points(
        self, scale: str, selectors: Sequence[Mapping[str, Any]] | None = None
    ) -> list[Point]:
        """Grid points matching any of ``selectors`` (partial points); all points if None."""
        points = self.points(scale)
        if selectors is None:
            return points
        knobs = set(self.scale(scale).knobs)
        chosen: list[Point] = []
        for selector in selectors:
            unknown = set(selector) - knobs
            if unknown:
                raise ConfigError(
                    f"{self.id} [{scale}]: unknown knob(s) {sorted(unknown)}; knobs are"
                    f" {sorted(knobs)}"
                )
            matches = [p for p in points if all(p[k] == v for k, v in selector.items())]
            if not matches:
                raise ConfigError(f"{self.id} [{scale}]: no grid point matches {dict(selector)}")
            chosen.extend(p for p in matches if p not in chosen)
        return chosen


def iter_resolved(entry: Experiment, scale: str) -> Iterator[tuple[Point, dict[str, Any]]]:
    """``(point, resolved config)`` for every grid point of ``entry`` at ``scale``."""
    for point in entry.points(scale):
        yield point, entry.resolve(scale, point)
