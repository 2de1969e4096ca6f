"""``TrainConfig``: every knob of a training run, validated, JSON-serialisable via ``asdict``."""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")
SCHEDULES: tuple[str, ...] = ("constant", "multistep", "step", "halving")
AMP_MODES: tuple[str | None, ...] = ("auto", "bf16", None)


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _check_int(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_float(
    value: object, name: str, *, low: float, high: float = math.inf, low_open: bool = False
) -> None:
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    ok = (value > low if low_open else value >= low) and value <= high and math.isfinite(value)
    if not ok:
        left = "(" if low_open else "["
        right = "]" if math.isfinite(high) else ")"
        raise ValueError(f"{name} must lie in {left}{low}, {high}{right}, got {value}")


def _check_bool(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


@dataclass
class TrainConfig:
    """How to train: optimizer, learning-rate schedule, precision, evaluation and checkpointing.

    ``batch_size=None`` is full-batch gradient descent (DBN Fig. 2–3 MLPs). Schedules are the
    papers' (PAPERS.md recipes): ``multistep`` multiplies by ``gamma`` at each epoch in
    ``milestones`` (ResNet /10 at 80/120; WRN ×0.2 at 60/120/160; MimicNorm ×0.1 at 80/110/135
    with ``warmup_epochs=2``), ``step`` every ``step_size`` epochs (ImageNet /10 every 30),
    ``halving`` halves every ``step_size`` epochs (``gamma`` unused). Warm-up is linear per step.
    ``amp="auto"`` and ``channels_last="auto"`` switch on bf16 autocast and channels-last memory
    on CUDA only. ``deterministic`` applies on the CPU. ``drop_last`` (default) skips each epoch's
    last incomplete batch, a different one every epoch since batches are reshuffled: a batch of
    a few samples gives batch statistics that are noise, and a DBN group with fewer samples than
    channels would write a rank-deficient (1/√eps-gain) whitening into the running average.
    """

    epochs: int
    batch_size: int | None = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    step_size: int | None = None
    warmup_epochs: float = 0
    augment: bool = True
    label_smoothing: float = 0.0
    amp: str | None = "auto"
    channels_last: bool | str = "auto"
    compile: bool = False
    grad_clip: float | None = None
    divergence_threshold: float = 1e3
    eval_every: int = 1
    eval_batch_size: int = 1024
    deterministic: bool = True
    checkpoint_every: int = 1
    drop_last: bool = True

    def __post_init__(self) -> None:
        _check_int(self.epochs, "epochs", 1)
        if self.batch_size is not None:
            _check_int(self.batch_size, "batch_size", 1)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        _check_float(self.lr, "lr", low=0.0, low_open=True)
        _check_float(self.momentum, "momentum", low=0.0, high=1.0)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be < 1, got {self.momentum}")
        _check_bool(self.nesterov, "nesterov")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov=True needs optimizer='sgd' and momentum > 0")
        _check_float(self.weight_decay, "weight_decay", low=0.0)
        self._check_schedule()
        _check_bool(self.augment, "augment")
        _check_float(self.label_smoothing, "label_smoothing", low=0.0, high=1.0)
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be < 1, got {self.label_smoothing}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.channels_last not in (True, False, "auto") or (
            isinstance(self.channels_last, int) and not isinstance(self.channels_last, bool)
        ):
            raise ValueError(
                f"channels_last must be True, False or 'auto', got {self.channels_last!r}"
            )
        _check_bool(self.compile, "compile")
        if self.grad_clip is not None:
            _check_float(self.grad_clip, "grad_clip", low=0.0, low_open=True)
        _check_float(self.divergence_threshold, "divergence_threshold", low=0.0, low_open=True)
        _check_int(self.eval_every, "eval_every", 1)
        _check_int(self.eval_batch_size, "eval_batch_size", 1)
        _check_bool(self.deterministic, "deterministic")
        _check_int(self.checkpoint_every, "checkpoint_every", 1)
        _check_bool(self.drop_last, "drop_last")

    def _check_schedule(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if isinstance(self.milestones, list):
            self.milestones = tuple(self.milestones)  # JSON round trip gives a list
        if not isinstance(self.milestones, tuple):
            raise TypeError(
                f"milestones must be a tuple of ints, got {type(self.milestones).__name__}"
            )
        for m in self.milestones:
            _check_int(m, "milestones entry", 1)
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones must be strictly increasing, got {self.milestones}")
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("schedule='multistep' needs milestones (epochs at which lr *= gamma)")
        if self.schedule != "multistep" and self.milestones:
            raise ValueError(
                f"milestones are only used by schedule='multistep', not {self.schedule!r}"
            )
        _check_float(self.gamma, "gamma", low=0.0, low_open=True)
        if self.schedule in ("step", "halving"):
            if self.step_size is None:
                raise ValueError(f"schedule={self.schedule!r} needs step_size (epochs)")
            _check_int(self.step_size, "step_size", 1)
        elif self.step_size is not None:
            raise ValueError(f"step_size is only used by 'step'/'halving', not {self.schedule!r}")
        _check_float(self.warmup_epochs, "warmup_epochs", low=0.0)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (milestones as a list), ready for JSON."""
        out = asdict(self)
        out["milestones"] = list(self.milestones)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from ``to_dict``/``asdict`` output; unknown keys raise ``ValueError``."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**data)


def train_defaults() -> dict[str, Any]:
    """Every :class:`TrainConfig` field that has a default, as JSON values (tuples as lists).

    Experiment configurations are resolved over these, so that a record's config hash covers the
    defaults it ran with: changing a default makes the records that relied on it stale.
    """
    return {
        f.name: list(f.default) if isinstance(f.default, tuple) else f.default
        for f in fields(TrainConfig)
        if f.default is not MISSING
    }
