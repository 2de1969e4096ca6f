"""The dataset interface used by the training loop, and its in-memory implementation.

A dataset yields ready-to-use ``(x, y)`` batches on its device: shuffled with a caller-owned
``torch.Generator`` (so a run is reproducible and resumable), augmented in batches, and normalized
with statistics of the training split. Small datasets live on the device as raw tensors (uint8 where
the source is 8-bit) and are converted, augmented and normalized one batch at a time.
"""

from __future__ import annotations

import abc
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from normbook.data.augment import Augmentation
from normbook.layers._checks import check_positive_int

SPLITS: tuple[str, ...] = ("train", "val", "test")
DATA_ENV = "NORMBOOK_DATA"
STD_FLOOR = 1e-8

Batch = tuple[torch.Tensor, torch.Tensor]


class DatasetNotAvailable(RuntimeError):
    """A dataset's files are missing and could not be downloaded (offline, or no download allowed)."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where downloadable datasets live: ``root``, else ``$NORMBOOK_DATA``, else ``~/.cache/normbook``."""
    if root is None:
        root = os.environ.get(DATA_ENV) or Path.home() / ".cache" / "normbook"
    return Path(root).expanduser()


def check_batch_size(batch_size: object, name: str = "batch_size", *, allow_none: bool) -> None:
    """Raise unless ``batch_size`` is a positive int (or ``None`` for the full split when allowed)."""
    if batch_size is None:
        if not allow_none:
            raise ValueError(f"{name} must be a positive int for this dataset, got None")
        return
    check_positive_int(batch_size, name)


def check_split(split: object, available: tuple[str, ...]) -> str:
    """Return ``split`` if the dataset has it, else raise ``ValueError`` naming the ones it has."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if split not in available:
        hint = " (load the dataset with val_split > 0)" if split == "val" else ""
        raise ValueError(
            f"this dataset has no {split!r} split{hint}; it has {', '.join(available)}"
        )
    return split  # type: ignore[return-value]


def channel_stats(x: torch.Tensor, *, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std over samples and positions, in float64.

    ``x`` is N×C×H×W (stats per channel) or N×D (one global channel); accumulated in chunks of
    samples so an 8-bit dataset is never expanded to float as a whole.
    """
    dims = (0, 2, 3) if x.dim() == 4 else tuple(range(x.dim()))
    total = torch.zeros((), dtype=torch.float64)
    total_sq = torch.zeros((), dtype=torch.float64)
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk].to(torch.float64)
        total = total + part.sum(dim=dims)
        total_sq = total_sq + part.square().sum(dim=dims)
    count = x.numel() / (x.shape[1] if x.dim() == 4 else 1)
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return mean.reshape(-1), std.reshape(-1)


def feature_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and (population) std of an N×D matrix, in float64 (StandardScaler's)."""
    x64 = x.to(torch.float64)
    return x64.mean(dim=0), x64.std(dim=0, unbiased=False)


def split_train_val(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    subset: int | None,
    val_split: float,
    seed: int,
    num_classes: int,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Keep the first ``subset`` training samples, then hold out a stratified ``val_split`` of them.

    The held-out set is drawn with ``seed`` (scikit-learn's stratified split); both parts keep
    the original sample order.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if subset is not None:
        check_positive_int(subset, "subset")
        if subset > len(y):
            raise ValueError(
                f"subset must be <= {len(y)} (the training split's size), got {subset}"
            )
        x, y = x[:subset], y[:subset]
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float)):
        raise TypeError(f"val_split must be a float in [0, 1), got {type(val_split).__name__}")
    if not 0 <= val_split < 1:
        raise ValueError(f"val_split must lie in [0, 1), got {val_split}")
    if val_split == 0:
        return {"train": (x, y)}
    n_val = math.ceil(val_split * len(y))
    if n_val < num_classes or len(y) - n_val < num_classes:
        raise ValueError(
            f"val_split={val_split} of {len(y)} training samples leaves {n_val} validation and"
            f" {len(y) - n_val} training samples; a stratified split needs >= {num_classes} in each"
        )
    from sklearn.model_selection import train_test_split

    labels = y.cpu().numpy()
    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=n_val, stratify=labels, random_state=seed
    )
    train_idx = torch.from_numpy(np.sort(train_idx))
    val_idx = torch.from_numpy(np.sort(val_idx))
    return {"train": (x[train_idx], y[train_idx]), "val": (x[val_idx], y[val_idx])}


class Dataset(abc.ABC):
    """A classification dataset that serves normalized ``(x, y)`` batches on its device.

    Attributes: ``name``, ``num_classes``, ``input_shape`` ((C, H, W) or (D,)). Subclasses
    implement ``split_size``, ``info``, ``to``, ``train_batches`` and ``eval_batches``.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    allows_full_batch: bool = True

    @property
    @abc.abstractmethod
    def device(self) -> torch.device:
        """The device batches are delivered on."""

    @property
    @abc.abstractmethod
    def splits(self) -> tuple[str, ...]:
        """The splits this dataset has (always ``train`` and ``test``; ``val`` when held out)."""

    @abc.abstractmethod
    def split_size(self, split: str) -> int:
        """Number of samples in ``split``."""

    @abc.abstractmethod
    def info(self) -> dict[str, Any]:
        """JSON-serialisable provenance: name, variant, sizes, normalization, augmentation."""

    @abc.abstractmethod
    def to(self, device: str | torch.device) -> Dataset:
        """Deliver batches on ``device`` (in place, like ``nn.Module.to``); returns ``self``."""

    @abc.abstractmethod
    def train_batches(
        self,
        batch_size: int | None,
        *,
        generator: torch.Generator,
        augment: bool = True,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """One epoch of shuffled (and, with ``augment``, augmented) training batches."""

    @abc.abstractmethod
    def eval_batches(self, split: str = "test", batch_size: int | None = 1024) -> Iterator[Batch]:
        """Batches of ``split`` in order, normalized, never augmented."""

    @property
    def num_train(self) -> int:
        return self.split_size("train")

    @property
    def num_val(self) -> int:
        return self.split_size("val") if "val" in self.splits else 0

    @property
    def num_test(self) -> int:
        return self.split_size("test")

    def num_batches(self, batch_size: int | None, *, drop_last: bool = False) -> int:
        """Number of training batches per epoch at ``batch_size`` (``None``: one full batch)."""
        check_batch_size(batch_size, allow_none=self.allows_full_batch)
        n = self.num_train
        if batch_size is None:
            return 1
        if drop_last and batch_size > n:
            raise ValueError(
                f"batch_size {batch_size} exceeds the {n} training samples: with drop_last=True"
                " an epoch would have no batch (use a smaller batch, batch_size=None for full"
                " batch, or drop_last=False)"
            )
        return n // batch_size if drop_last else math.ceil(n / batch_size)

    def make_generator(self, seed: int) -> torch.Generator:
        """A generator for shuffling/augmentation on the device where this dataset draws them."""
        return torch.Generator(device=self.device).manual_seed(seed)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={self.split_size(s)}" for s in self.splits)
        return (
            f"{type(self).__name__}(name={self.name!r}, input_shape={self.input_shape},"
            f" num_classes={self.num_classes}, {sizes}, device={self.device})"
        )


class InMemoryDataset(Dataset):
    """A dataset held as tensors on one device: raw pixels/features plus normalization constants.

    ``splits`` maps ``train``/``test`` (and optionally ``val``) to ``(x, y)``; ``x`` holds raw values
    (uint8 or float), ``value_scale`` maps them to [0, 1] (255 for 8-bit images). ``mean``/``std``
    are in [0, 1] units, one per channel (N×C×H×W data), per feature or a single global value
    (N×D data); a zero std is replaced by 1. A batch is converted to float32, augmented in raw units (so padding and rotation
    fill with black), then normalized: ``(x / value_scale - mean) / std``.
    """

    def __init__(
        self,
        name: str,
        splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
        *,
        num_classes: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        value_scale: float = 1.0,
        augmentation: Augmentation | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        for required in ("train", "test"):
            if required not in splits:
                raise ValueError(f"splits must contain {required!r}, got {sorted(splits)}")
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"splits has unknown keys {sorted(unknown)}; expected {SPLITS}")
        x_train = splits["train"][0]
        for split, (x, y) in splits.items():
            if x.shape[1:] != x_train.shape[1:] or x.shape[0] != y.shape[0] or y.dim() != 1:
                raise ValueError(
                    f"split {split!r}: x {tuple(x.shape)} and y {tuple(y.shape)} must have"
                    f" matching lengths and x the training split's sample shape"
                )
        augmentation = augmentation or Augmentation()
        if augmentation.enabled and x_train.dim() != 4:
            raise ValueError(
                f"augmentation {augmentation} needs N×C×H×W images; {name!r} has samples of"
                f" shape {tuple(x_train.shape[1:])} (use an image variant or no augmentation)"
            )
        self.name = name
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.input_shape = tuple(int(s) for s in x_train.shape[1:])
        self.value_scale = float(value_scale)
        self.augmentation = augmentation
        self._provenance = dict(provenance or {})
        self._data = {s: (x, y.long()) for s, (x, y) in splits.items()}
        self.mean = mean.to(torch.float64).reshape(-1)
        std = std.to(torch.float64).reshape(-1)
        # constant features (std 0) are only centred, as scikit-learn's StandardScaler does
        self.std = torch.where(std < STD_FLOOR, torch.ones_like(std), std)
        self._device = x_train.device
        self._build_affine()

    def _build_affine(self) -> None:
        """Fold ``value_scale``, ``mean`` and ``std`` into one multiply-add on the data's device."""
        shape = (-1, 1, 1) if len(self.input_shape) == 3 else (-1,)
        mul = 1.0 / (self.value_scale * self.std)
        add = -self.mean / self.std
        self._mul = mul.reshape(shape).to(torch.float32).to(self._device)
        self._add = add.reshape(shape).to(torch.float32).to(self._device)

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if s in self._data)

    def split_size(self, split: str) -> int:
        return int(self._data[check_split(split, self.splits)][1].shape[0])

    def to(self, device: str | torch.device) -> InMemoryDataset:
        device = torch.device(device)
        self._data = {s: (x.to(device), y.to(device)) for s, (x, y) in self._data.items()}
        self._device = self._data["train"][0].device
        self._build_affine()
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw values (any dtype) → float32 inputs standardized with the training statistics."""
        return torch.addcmul(self._add, x.to(torch.float32), self._mul)

    def _prepare(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x = x.to(torch.float32)
        if generator is not None and self.augmentation.enabled:
            x = self.augmentation(x, generator)
        return torch.addcmul(self._add, x, self._mul)

    def tensors(self, split: str = "train", *, normalized: bool = True) -> Batch:
        """The whole split as ``(x, y)``; normalized float32 by default, else the raw storage."""
        x, y = self._data[check_split(split, self.splits)]
        return (self.normalize(x) if normalized else x), y

    def train_batches(
        self,
        batch_size: int | None,
        *,
        generator: torch.Generator,
        augment: bool = True,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        check_batch_size(batch_size, allow_none=True)
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        x, y = self._data["train"]
        aug_gen = generator if augment else None
        if batch_size is None:
            yield self._prepare(x, aug_gen), y
            return
        n = y.shape[0]
        order = torch.randperm(n, generator=generator, device=generator.device).to(self._device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            yield self._prepare(x.index_select(0, idx), aug_gen), y.index_select(0, idx)

    def eval_batches(self, split: str = "test", batch_size: int | None = 1024) -> Iterator[Batch]:
        check_batch_size(batch_size, allow_none=True)
        x, y = self._data[check_split(split, self.splits)]
        step = batch_size or max(y.shape[0], 1)
        for start in range(0, y.shape[0], step):
            yield self._prepare(x[start : start + step], None), y[start : start + step]

    def info(self) -> dict[str, Any]:
        norm_kind = (
            "per-channel"
            if len(self.input_shape) == 3
            else ("per-feature" if self.mean.numel() > 1 else "global")
        )
        return {
            "name": self.name,
            **self._provenance,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "sizes": {s: self.split_size(s) for s in self.splits},
            "storage_dtype": str(self._data["train"][0].dtype).removeprefix("torch."),
            "normalization": {
                "kind": norm_kind,
                "source": "training split",
                "value_scale": self.value_scale,
                "mean": [round(float(v), 6) for v in self.mean],
                "std": [round(float(v), 6) for v in self.std],
            },
            "augmentation": self.augmentation.to_dict(),
        }
