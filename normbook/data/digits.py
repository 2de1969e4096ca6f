"""scikit-learn's handwritten digits (UCI, 1797 8×8 images, 10 classes): the embedded dataset.

Shipped with scikit-learn, so it works offline; the live experiments and CI run on it. A fixed,
stratified 1347/450 train/test split (seed 0) keeps numbers comparable across runs and seeds.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from normbook.data.augment import Augmentation
from normbook.data.base import InMemoryDataset, channel_stats, feature_stats, split_train_val

DIGITS_TEST_SIZE = 450
DIGITS_SPLIT_SEED = 0
DIGITS_MAX_VALUE = 16.0
# variant -> (channels, side); "flat" is the 64-d vector for MLPs
DIGITS_VARIANTS: dict[str, tuple[int, int] | None] = {
    "flat": None,
    "8x8": (1, 8),
    "16x16": (1, 16),
    "32x32": (3, 32),
}
# default maximum shift per variant: one pixel at 8×8, scaled with the side (4 px at 32×32 as CIFAR)
DIGITS_DEFAULT_SHIFT = {"flat": 0, "8x8": 1, "16x16": 2, "32x32": 4}


def digits_images(x: torch.Tensor, variant: str) -> torch.Tensor:
    """Turn N×64 digits in [0, 1] into the ``variant``'s samples (flat, or bilinear-upsampled images).

    The 32×32 variant repeats the gray channel three times, for models built for RGB CIFAR input.
    """
    if variant not in DIGITS_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(DIGITS_VARIANTS)}; got {variant!r}")
    layout = DIGITS_VARIANTS[variant]
    if layout is None:
        return x
    channels, side = layout
    images = x.reshape(-1, 1, 8, 8)
    if side != 8:
        images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)
    return images.repeat(1, channels, 1, 1).contiguous()


@functools.lru_cache(maxsize=1)
def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits (pixels 0..16, labels) and the fixed stratified train/test indices,
    read once per process (read-only arrays: every loader builds its own tensors from them)."""
    from sklearn.datasets import load_digits as sklearn_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_load_digits()
    train_idx, test_idx = train_test_split(
        np.arange(len(bunch.target)),
        test_size=DIGITS_TEST_SIZE,
        stratify=bunch.target,
        random_state=DIGITS_SPLIT_SEED,
    )
    arrays = (bunch.data, bunch.target, train_idx, test_idx)
    for array in arrays:
        array.setflags(write=False)
    return arrays


def load_digits(
    *,
    root: object = None,
    download: bool = True,
    variant: str = "flat",
    shift: int | None = None,
    flip: bool = False,
    rotation: float = 0.0,
    subset: int | None = None,
    val_split: float = 0.0,
    seed: int = 0,
) -> InMemoryDataset:
    """The digits dataset as tensors (``root``/``download`` are ignored: it ships with scikit-learn).

    ``variant``: ``flat`` (64-d, standardized per feature with training statistics) or ``8x8`` /
    ``16x16`` / ``32x32`` images (standardized per channel). ``shift`` defaults to 1/2/4 pixels for
    the image variants. ``flip`` is off by default: a mirrored digit is not the same digit (a
    mirrored 3 or 7 is no digit at all), so flipping adds label noise rather than invariance.
    """
    if variant not in DIGITS_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(DIGITS_VARIANTS)}; got {variant!r}")
    if shift is None:
        shift = DIGITS_DEFAULT_SHIFT[variant]
    augmentation = Augmentation(shift=shift, flip=flip, rotation=rotation)
    if variant == "flat" and augmentation.enabled:
        raise ValueError(
            "the flat digits variant cannot be shifted, flipped or rotated; use variant='8x8',"
            f" '16x16' or '32x32' for augmentation (got {augmentation})"
        )

    pixels, labels, train_idx, test_idx = (torch.tensor(a) for a in _digits_split())
    x_all = digits_images(pixels.float() / DIGITS_MAX_VALUE, variant)
    y_all = labels.long()
    num_classes = 10
    splits = split_train_val(
        x_all[train_idx],
        y_all[train_idx],
        subset=subset,
        val_split=val_split,
        seed=seed,
        num_classes=num_classes,
    )
    splits["test"] = (x_all[test_idx], y_all[test_idx])
    x_train = splits["train"][0]
    mean, std = feature_stats(x_train) if variant == "flat" else channel_stats(x_train)
    return InMemoryDataset(
        "digits",
        splits,
        num_classes=num_classes,
        mean=mean,
        std=std,
        value_scale=1.0,
        augmentation=augmentation,
        provenance={
            "variant": variant,
            "source": "sklearn.datasets.load_digits (UCI ML handwritten digits), values / 16",
            "test_split": {
                "size": DIGITS_TEST_SIZE,
                "stratified": True,
                "random_state": DIGITS_SPLIT_SEED,
            },
            "subset": subset,
            "val_split": val_split,
            "seed": seed,
        },
    )
