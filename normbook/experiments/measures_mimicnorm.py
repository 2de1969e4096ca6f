"""Measurements of MimicNorm's training chapters, taken while a ``classify`` run trains.

``mimicnorm.logit_variance`` (MN-B2, the paper's Fig. 10): the variance of the logits that reach
the last BN, per training step. Every training batch's per-class variance of the logits before
the last BN (for a net without one: of the net's output, the logits that reach the loss) is
averaged over the classes, and folded into an exponential moving average with BatchNorm's own
rule, ``v ← (1 − m)·v + m·var_unbiased`` from ``v = 1``: for a net with a last BN this *is* the
class-mean of its ``running_var`` (what the paper plots), and for a net without one it is what a
last BN would have tracked. Logged per epoch: ``logit_var`` (the moving average at the epoch's
end); at the end of training (also after a divergence, whose epoch gets no per-epoch entry): the
per-step traces ``logit_var_steps`` and ``logit_batch_var_steps`` of the first ``trace_steps``
steps, in ``history.summary``. A value that is no longer finite is stored as ``None``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from normbook.experiments.measures import register_measure
from normbook.experiments.spec import ConfigError
from normbook.layers import LastBatchNorm

LOGIT_VARIANCE = "mimicnorm.logit_variance"
BN_MOMENTUM = 0.1  # torch.nn.BatchNorm1d's default, LastBatchNorm's too


def last_batchnorm(model: nn.Module) -> LastBatchNorm | None:
    """The model's last :class:`~normbook.layers.LastBatchNorm` (MimicNorm's BN on the logits),
    or None for a net without one."""
    found = [m for m in model.modules() if isinstance(m, LastBatchNorm)]
    return found[-1] if found else None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class LogitVariance:
    """Callback: per-step variance of the logits before the last BN and its running average."""

    def __init__(
        self,
        model: nn.Module,
        *,
        momentum: float | None = None,
        trace_steps: int = 400,
    ) -> None:
        if isinstance(trace_steps, bool) or not isinstance(trace_steps, int) or trace_steps < 0:
            raise ConfigError(
                f"measure {LOGIT_VARIANCE}: trace_steps must be an int >= 0, got {trace_steps!r}"
            )
        bn = last_batchnorm(model)
        if momentum is None:
            momentum = bn.momentum if bn is not None and bn.momentum is not None else BN_MOMENTUM
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
            raise ConfigError(f"measure {LOGIT_VARIANCE}: momentum must be a float in (0, 1]")
        if not 0 < momentum <= 1:
            raise ConfigError(
                f"measure {LOGIT_VARIANCE}: momentum must be in (0, 1], got {momentum}"
            )
        self.momentum = float(momentum)
        self.trace_steps = trace_steps
        self.has_last_bn = bn is not None
        self.running = 1.0  # BatchNorm's running_var starts at 1
        self.pending: float | None = None
        self.running_steps: list[float | None] = []
        self.batch_steps: list[float | None] = []
        if bn is not None:  # the logits *entering* the last BN
            bn.register_forward_pre_hook(lambda _m, args: self._capture(args[0]))
        else:  # no last BN: the logits the net gives the loss
            model.register_forward_hook(lambda _m, _args, out: self._capture(out))

    def _capture(self, logits: torch.Tensor) -> None:
        if not (torch.is_grad_enabled() and logits.requires_grad) or logits.shape[0] < 2:
            return  # evaluation passes (no_grad) are not training batches
        with torch.no_grad():
            variance = logits.detach().float().var(dim=0, unbiased=True).mean()
        self.pending = float(variance)

    def on_step_end(self, state: Any) -> None:
        if self.pending is None:
            return
        batch, self.pending = self.pending, None
        self.running = (1 - self.momentum) * self.running + self.momentum * batch
        if len(self.running_steps) < self.trace_steps:
            self.running_steps.append(_finite(self.running))
            self.batch_steps.append(_finite(batch))

    def on_epoch_end(self, state: Any) -> None:
        state.log("logit_var", _finite(self.running))

    def on_train_end(self, state: Any) -> None:
        state.log("logit_var_steps", list(self.running_steps))
        state.log("logit_batch_var_steps", list(self.batch_steps))
        state.log("has_last_bn", self.has_last_bn)

    # checkpoint/resume: the running average and the traces continue where they stopped
    def state_dict(self) -> dict[str, Any]:
        return {
            "running": _finite(self.running),
            "running_steps": list(self.running_steps),
            "batch_steps": list(self.batch_steps),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        running = state["running"]
        self.running = math.inf if running is None else float(running)
        self.running_steps = list(state["running_steps"])
        self.batch_steps = list(state["batch_steps"])


@register_measure(LOGIT_VARIANCE)
def logit_variance_measure(
    model: nn.Module, data: Any, *, momentum: float | None = None, trace_steps: int = 400
) -> LogitVariance:
    """Variance of the logits before the last BN, per step, as its running average (MN-B2,
    Fig. 10); ``momentum`` defaults to the last BN's (0.1), ``trace_steps`` bounds the traces."""
    return LogitVariance(model, momentum=momentum, trace_steps=trace_steps)


__all__ = ["LOGIT_VARIANCE", "LogitVariance", "last_batchnorm", "logit_variance_measure"]
