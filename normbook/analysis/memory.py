"""Activation memory: the bytes autograd keeps from a forward pass for the backward pass (MN-T1).

MimicNorm's memory claim (MN-T1, MN-T3) is that dropping the intermediate BatchNorm layers saves
activation memory: a BN layer saves its input (the conv output, which nothing else saves: the
conv saves *its* input and ReLU its output) plus per-channel statistics. We measure what autograd
saves, with :func:`torch.autograd.graph.saved_tensors_hooks`: every tensor saved for backward
during one forward pass goes through the pack hook, and we add up the bytes of their *storages*,
each storage once (a view or a tensor saved by two ops costs its storage once; keyed by device and
storage address, which cannot be reused while the graph holds the storage). A saved view counts
its whole storage, which is what it keeps alive: slice an input batch with ``.clone()`` to count
only the batch.

Parameters and buffers saved by autograd (a linear layer saves its weight, BatchNorm its weight
and running statistics) are held by the model anyway: they are reported separately as
``parameter_bytes`` and excluded from ``activation_bytes``. Storages of the input batch are
reported as ``input_bytes``. The count depends on shapes and dtypes only, not on the device's
allocator (unlike ``torch.cuda.max_memory_allocated``); backends may save different auxiliaries
(cuDNN BatchNorm keeps a reserve buffer), so compare within one device type. Tensors a custom
``autograd.Function`` stores as ``ctx`` attributes instead of ``ctx.save_for_backward`` are not
seen; the normbook layers use ``save_for_backward``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

MIB = 2**20


@dataclass(frozen=True)
class ActivationMemory:
    """What a forward pass saved for backward, in bytes, by kind of storage."""

    activation_bytes: int
    input_bytes: int
    parameter_bytes: int
    num_saved: int
    num_storages: int

    @property
    def total_bytes(self) -> int:
        """Activations plus the saved input batch: what backward holds beyond the model itself."""
        return self.activation_bytes + self.input_bytes

    @property
    def activation_mib(self) -> float:
        """``activation_bytes`` in MiB (2²⁰ bytes)."""
        return self.activation_bytes / MIB


def _storage_key(t: torch.Tensor) -> tuple[Any, int, int]:
    """(device, address, size in bytes) of ``t``'s storage; tensors without one count their
    elements under their own id."""
    try:
        storage = t.untyped_storage()
        return (str(t.device), storage.data_ptr(), storage.nbytes())
    except (RuntimeError, NotImplementedError, TypeError):
        return ("id", id(t), t.numel() * t.element_size())


class SavedTensorCounter:
    """Context manager counting the storages saved for backward inside it, by category.

    ``known`` maps tensors (parameters, inputs) to a category name; every other saved storage is
    an ``"activation"``. After the block, :attr:`bytes` holds the bytes per category and
    :attr:`num_saved` the number of tensors saved (repeats included).
    """

    def __init__(self, known: Iterable[tuple[torch.Tensor, str]] = ()) -> None:
        self._known = {_storage_key(t)[:2]: category for t, category in known}
        self._seen: dict[tuple[Any, int], tuple[str, int]] = {}
        self.num_saved = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.num_saved += 1
        device, address, nbytes = _storage_key(t)
        key = (device, address)
        if key not in self._seen:
            self._seen[key] = (self._known.get(key, "activation"), nbytes)
        return t

    @staticmethod
    def _unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    def __enter__(self) -> SavedTensorCounter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)

    @property
    def bytes(self) -> dict[str, int]:
        """Bytes of the distinct saved storages, per category."""
        totals: dict[str, int] = {}
        for category, nbytes in self._seen.values():
            totals[category] = totals.get(category, 0) + nbytes
        return totals

    @property
    def num_storages(self) -> int:
        """Number of distinct storages saved."""
        return len(self._seen)


def activation_memory(
    model: nn.Module, *inputs: torch.Tensor, train: bool = True
) -> ActivationMemory:
    """Bytes saved for backward by one forward pass of ``model`` on ``inputs`` (MN-T1).

    Runs the forward pass with gradients enabled in training mode (``train=False``: eval mode),
    then discards the graph and restores the model's mode and buffers (BatchNorm's running
    statistics are not changed by the measurement). The loss is not part of the pass. Nothing is
    saved when no parameter or input requires a gradient.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not inputs or not all(isinstance(x, torch.Tensor) for x in inputs):
        raise TypeError("activation_memory needs the model's input tensor(s) after the model")
    known = [(p, "parameter") for p in model.parameters()]
    known += [(b, "parameter") for b in model.buffers()]
    known += [(x, "input") for x in inputs]
    was_training = model.training
    saved_buffers = [(b, b.detach().clone()) for b in model.buffers()]
    counter = SavedTensorCounter(known)
    try:
        model.train(train)
        with torch.enable_grad(), counter:
            output = model(*inputs)
        del output
    finally:
        model.train(was_training)
        with torch.no_grad():
            for buffer, value in saved_buffers:
                buffer.copy_(value)
    totals = counter.bytes
    return ActivationMemory(
        activation_bytes=totals.get("activation", 0),
        input_bytes=totals.get("input", 0),
        parameter_bytes=totals.get("parameter", 0),
        num_saved=counter.num_saved,
        num_storages=counter.num_storages,
    )
