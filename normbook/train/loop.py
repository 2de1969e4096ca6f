"""``fit`` and ``evaluate``: the one training loop every experiment runs, at every scale.

Per step the loop keeps loss, correct count and gradient norm on the device (no host sync); one
transfer per epoch turns them into the history. On CUDA it uses bf16 autocast, channels-last
memory and optional ``torch.compile``; on the CPU it is deterministic for a seed. With a
``run_dir`` it checkpoints every ``checkpoint_every`` epochs and resumes from the checkpoint it
finds there, ending with the history the uninterrupted run would have had.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from normbook.config import default_device
from normbook.data.base import Dataset
from normbook.layers import NonFiniteInputError
from normbook.train.callbacks import CallbackList, TrainState
from normbook.train.checkpoint import (
    CHECKPOINT_NAME,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from normbook.train.config import TrainConfig
from normbook.train.history import History
from normbook.train.optim import build_optimizer, build_scheduler
from normbook.train.progress import progress_bar, progress_enabled

STEP_BAR_MIN_STEPS = 50  # show a per-step bar only for epochs with at least this many steps


def set_seed(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and CUDA) global generators."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # numpy takes 32-bit seeds
    torch.manual_seed(seed)


def data_seed(seed: int) -> int:
    """Seed of the dedicated shuffling/augmentation generator: a separate stream from ``seed``'s."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1, np.uint64)[0] >> 1)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Turn on ``torch.use_deterministic_algorithms(True, warn_only=True)``; restore on exit."""
    if not enabled:
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def resolve_amp(amp: str | None, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: ``"auto"`` → bf16 on CUDA, none elsewhere; ``"bf16"`` → bf16; None → none."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if amp == "bf16":
        return torch.bfloat16
    if amp is None:
        return None
    raise ValueError(f"amp must be 'auto', 'bf16' or None, got {amp!r}")


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def gradient_norm(parameters: Sequence[torch.nn.Parameter]) -> torch.Tensor:
    """Total 2-norm of the parameters' gradients, as a device tensor (no sync)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros((), device=parameters[0].device if parameters else None)
    if hasattr(torch.nn.utils, "get_total_norm"):
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    amp_dtype: torch.dtype | None = None,
    grad_clip: float | None = None,
    parameters: Sequence[torch.nn.Parameter] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One cross-entropy optimizer step.

    Returns the detached mean loss, the number of correct predictions and the gradient 2-norm
    before clipping, all as device tensors (nothing is synchronised to the host).
    """
    if parameters is None:
        parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer.zero_grad(set_to_none=True)
    with _autocast(x.device, amp_dtype):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    loss.backward()
    if grad_clip is not None:
        norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    else:
        norm = gradient_norm(parameters)
    optimizer.step()
    correct = (logits.detach().argmax(dim=1) == y).sum()
    return loss.detach(), correct, norm.detach()


def evaluate_batches(
    model: torch.nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``batches``, in eval mode, no grad."""
    was_training = model.training
    model.eval()
    total: torch.Tensor | None = None
    count = 0
    try:
        with torch.no_grad():
            for x, y in batches:
                if channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                with _autocast(x.device, amp_dtype):
                    logits = model(x)
                logits = logits.float()
                step = torch.stack(
                    [
                        F.cross_entropy(logits, y, reduction="sum"),
                        (logits.argmax(dim=1) == y).sum().to(logits.dtype),
                    ]
                ).to(_accumulator_dtype(x.device))
                total = step if total is None else total + step
                count += y.shape[0]
    finally:
        model.train(was_training)
    if total is None or count == 0:
        raise ValueError("evaluate: the split has no samples")
    loss_sum, correct = total.tolist()
    return loss_sum / count, correct / count


def _accumulator_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _model_device(model: torch.nn.Module) -> torch.device | None:
    for tensor in model.parameters():
        return tensor.device
    return None


def evaluate(
    model: torch.nn.Module,
    data: Dataset,
    split: str = "test",
    *,
    batch_size: int | None = 1024,
    device: str | torch.device | None = None,
    amp: str | None = "auto",
) -> tuple[float, float]:
    """(loss, accuracy) of ``model`` on ``data``'s ``split`` in eval mode under ``no_grad``.

    ``device`` defaults to the model's; in-memory data is moved there (in place).
    """
    device = torch.device(device) if device is not None else _model_device(model)
    device = default_device(device)
    model.to(device)
    data.to(device)
    batches = data.eval_batches(split, batch_size)
    return evaluate_batches(model, batches, amp_dtype=resolve_amp(amp, device))


@dataclass
class _Setup:
    """Resolved device-dependent choices of one ``fit`` call."""

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    steps_per_epoch: int


def _resolve_setup(data: Dataset, config: TrainConfig, device: torch.device) -> _Setup:
    images = len(data.input_shape) == 3
    if config.channels_last == "auto":
        channels_last = images and device.type == "cuda"
    else:
        channels_last = bool(config.channels_last) and images
    return _Setup(
        device=device,
        amp_dtype=resolve_amp(config.amp, device),
        channels_last=channels_last,
        steps_per_epoch=data.num_batches(config.batch_size, drop_last=config.drop_last),
    )


def _check_fit_args(model: Any, data: Any, config: Any, seed: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a normbook.data.Dataset, got {type(data).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def _divergence_reason(
    loss_sum: float, max_loss: float, steps: int, threshold: float
) -> str | None:
    if not math.isfinite(loss_sum) or not math.isfinite(max_loss):
        return f"non-finite training loss (epoch mean {loss_sum / max(steps, 1)})"
    if max_loss > threshold:
        return f"training loss {max_loss:.4g} above divergence_threshold {threshold:g}"
    return None


def _nonfinite_parameters(model: torch.nn.Module) -> bool:
    return any(not torch.isfinite(p).all() for p in model.parameters())


def _nonfinite_activations(err: Exception) -> bool:
    """Whether a step failed because a normalization layer refused non-finite (or overflowing)
    activations; after earlier steps succeeded, the run blew up (finite but huge weights)."""
    return isinstance(err, NonFiniteInputError)


class _Run:
    """State and steps of one ``fit`` call (kept in a class so each piece stays small)."""

    def __init__(
        self,
        model: torch.nn.Module,
        data: Dataset,
        config: TrainConfig,
        *,
        seed: int,
        setup: _Setup,
        run_dir: Path | None,
        callbacks: CallbackList,
        progress: bool,
    ) -> None:
        self.model, self.data, self.config, self.seed = model, data, config, seed
        self.setup = setup
        self.callbacks = callbacks
        self.progress = progress
        self.checkpoint_path = run_dir / CHECKPOINT_NAME if run_dir is not None else None
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.forward = torch.compile(model) if config.compile else model
        optimizer = build_optimizer(self.parameters, config)
        generator = data.make_generator(data_seed(seed))
        self.state = TrainState(
            model=model,
            optimizer=optimizer,
            scheduler=build_scheduler(optimizer, config, setup.steps_per_epoch),
            data=data,
            device=setup.device,
            config=config,
            history=History(),
            generator=generator,
        )
        self.wall_time = 0.0

    # -- checkpoints -------------------------------------------------------------------------
    def save(self) -> None:
        if self.checkpoint_path is None:
            return
        s = self.state
        save_checkpoint(
            self.checkpoint_path,
            {
                "epoch": s.epoch,
                "step": s.step,
                "seed": self.seed,
                "config": self.config.to_dict(),
                "data": self.data.info(),
                "model": self.model.state_dict(),
                "optimizer": s.optimizer.state_dict(),
                "scheduler": s.scheduler.state_dict(),
                "history": s.history.to_dict(),
                "rng": capture_rng_state(s.generator),
                "callbacks": self.callbacks.state_dicts(),
                "stop_requested": s.stop_requested,
            },
        )

    def resume(self) -> bool:
        """Load the run directory's checkpoint if any; return whether one was loaded."""
        if self.checkpoint_path is None:
            return False
        payload = load_checkpoint(self.checkpoint_path)
        if payload is None:
            return False
        if payload["config"] != self.config.to_dict() or payload["seed"] != self.seed:
            raise ValueError(
                f"{self.checkpoint_path} belongs to a run with another config or seed"
                f" (seed {payload['seed']}); use a fresh run_dir or delete the checkpoint"
            )
        if payload["data"] != self.data.info():
            raise ValueError(
                f"{self.checkpoint_path} was trained on other data ({payload['data'].get('name')},"
                f" {payload['data'].get('sizes')}); use a fresh run_dir or delete the checkpoint"
            )
        s = self.state
        self.model.load_state_dict(payload["model"])
        s.optimizer.load_state_dict(payload["optimizer"])
        s.scheduler.load_state_dict(payload["scheduler"])
        s.history = History.from_dict(payload["history"])
        s.epoch, s.step = payload["epoch"], payload["step"]
        self.callbacks.load_state_dicts(payload["callbacks"])
        restore_rng_state(payload["rng"], s.generator)
        self.wall_time = s.history.wall_time[-1] if s.history.wall_time else 0.0
        return True

    # -- one epoch ----------------------------------------------------------------------------
    def train_epoch(self) -> tuple[list[float], str | None]:
        """Run one epoch's steps; return ``[loss_sum, correct, grad_norm_sum, max_step_loss]`` and
        a divergence reason when a step raised after the run had already blown up (else None)."""
        s, cfg, setup = self.state, self.config, self.setup
        acc_dtype = _accumulator_dtype(setup.device)
        sums = torch.zeros(3, dtype=acc_dtype, device=setup.device)
        max_loss = torch.zeros((), dtype=acc_dtype, device=setup.device)  # cross-entropy >= 0
        self.samples = self.steps = 0
        batches = self.data.train_batches(
            cfg.batch_size, generator=s.generator, augment=cfg.augment, drop_last=cfg.drop_last
        )
        bar = progress_bar(
            self.setup.steps_per_epoch,
            enabled=self.progress and self.setup.steps_per_epoch >= STEP_BAR_MIN_STEPS,
            leave=False,
            desc=f"epoch {s.epoch}",
        )
        try:
            for x, y in batches:
                if setup.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                loss, correct, norm = train_step(
                    self.forward,
                    s.optimizer,
                    x,
                    y,
                    label_smoothing=cfg.label_smoothing,
                    amp_dtype=setup.amp_dtype,
                    grad_clip=cfg.grad_clip,
                    parameters=self.parameters,
                )
                s.scheduler.step()
                sums += torch.stack([loss.to(acc_dtype), correct.to(acc_dtype), norm.to(acc_dtype)])
                max_loss = torch.maximum(max_loss, loss.to(acc_dtype))
                self.samples += y.shape[0]
                self.steps += 1
                s.step += 1
                s.batch, s.loss = (x, y), loss
                self.callbacks("on_step_end", s)
                bar.update()
        except Exception as err:
            values = [*sums.tolist(), max_loss.item()]
            reason = _divergence_reason(values[0], values[3], self.steps, cfg.divergence_threshold)
            if reason is None and _nonfinite_parameters(self.model):
                reason = "non-finite parameters"
            elif reason is None and self.state.step > 0 and _nonfinite_activations(err):
                reason = "non-finite activations"
            if reason is None:
                raise
            return values, f"{reason}; then {type(err).__name__}: {err}"
        finally:
            bar.close()
        return [*sums.tolist(), max_loss.item()], None

    def evaluate(self, split: str) -> tuple[float, float]:
        return evaluate_batches(
            self.forward,
            self.data.eval_batches(split, self.config.eval_batch_size),
            amp_dtype=self.setup.amp_dtype,
            channels_last=self.setup.channels_last,
        )

    def run_epoch(self) -> None:
        s, cfg, cuda = self.state, self.config, self.setup.device.type == "cuda"
        s.epoch += 1
        s.in_epoch = True
        self.model.train()
        lr = float(s.optimizer.param_groups[0]["lr"])
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.setup.device)
        start = time.perf_counter()
        (loss_sum, correct, norm_sum, max_loss), error_reason = self.train_epoch()
        self.wall_time += time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(self.setup.device) if cuda else None
        reason = error_reason or _divergence_reason(
            loss_sum, max_loss, self.steps, cfg.divergence_threshold
        )
        if reason is not None:
            s.history.mark_diverged(s.epoch, reason)
            s.in_epoch = False
            return
        evaluate_now = s.epoch % cfg.eval_every == 0 or s.epoch == cfg.epochs
        try:
            test = self.evaluate("test") if evaluate_now else (None, None)
            val = (
                self.evaluate("val") if evaluate_now and "val" in self.data.splits else (None, None)
            )
        except NonFiniteInputError as err:  # trained, but its running statistics blew up
            reason = f"non-finite activations in evaluation; {type(err).__name__}: {err}"
            s.history.mark_diverged(s.epoch, reason)
            s.in_epoch = False
            return
        s.history.append_epoch(
            epoch=s.epoch,
            train_loss=loss_sum / self.steps,
            train_acc=correct / self.samples,
            test_loss=test[0],
            test_acc=test[1],
            val_loss=val[0],
            val_acc=val[1],
            lr=lr,
            grad_norm=norm_sum / self.steps,
            wall_time=self.wall_time,
            peak_memory=peak,
        )
        self.callbacks("on_epoch_end", s)
        s.in_epoch = False

    # -- whole run ----------------------------------------------------------------------------
    def finished(self) -> bool:
        s = self.state
        return s.history.diverged or s.stop_requested or s.epoch >= self.config.epochs

    def run(self) -> History:
        s = self.state
        if self.resume() and self.finished():
            return s.history
        self.callbacks("on_train_start", s)
        bar = progress_bar(
            self.config.epochs, enabled=self.progress, initial=s.epoch, desc="training"
        )
        try:
            while not self.finished():
                self.run_epoch()
                last = self.finished()
                if last or s.epoch % self.config.checkpoint_every == 0:
                    self.save()
                bar.update()
                if s.history.train_loss and not s.history.diverged:
                    bar.set_postfix(
                        loss=f"{s.history.train_loss[-1]:.4f}",
                        acc=s.history.test_acc[-1],
                        refresh=False,
                    )
        finally:
            bar.close()
        self.callbacks("on_train_end", s)
        return s.history


def fit(
    model: torch.nn.Module,
    data: Dataset,
    config: TrainConfig,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    run_dir: str | os.PathLike | None = None,
    callbacks: Sequence[Any] = (),
    progress: bool | None = None,
) -> History:
    """Train ``model`` on ``data`` with ``config``; return the per-epoch ``History``.

    The model and in-memory data are moved to ``device`` (default: CUDA if present, else CPU) in
    place. ``seed`` seeds the global generators (dropout etc.) and, through ``data_seed``, the
    dedicated shuffling/augmentation generator. A diverging run (non-finite loss, or a step loss
    above ``config.divergence_threshold``) stops and is recorded in the history; it does not
    raise. With ``run_dir`` the run checkpoints there and resumes from an existing checkpoint.
    """
    _check_fit_args(model, data, config, seed)
    device = default_device(device)
    setup = _resolve_setup(data, config, device)
    model.to(device)
    if setup.channels_last:
        model.to(memory_format=torch.channels_last)
    data.to(device)
    set_seed(seed)
    run = _Run(
        model,
        data,
        config,
        seed=seed,
        setup=setup,
        run_dir=Path(run_dir) if run_dir is not None else None,
        callbacks=CallbackList(callbacks),
        progress=progress_enabled(progress),
    )
    with deterministic_algorithms(config.deterministic and device.type == "cpu"):
        return run.run()
