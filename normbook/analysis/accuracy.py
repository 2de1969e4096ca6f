"""Top-k accuracy: the share of samples whose label is among the k largest logits.

The training loop (:func:`normbook.train.fit`) records top-1 accuracy only; the ImageNet artifacts
report top-5 as well: IC-F5 (top-1 and top-5 validation error of ResNet-50), DBN-T3 (top-1 and
top-5 errors of ResNet-18/34/50/101) and NP-T4 (top-1 and top-5 errors of ResNet-34/50/101). The
``classify`` task measures it with the built-in ``topk`` measurement
(:mod:`normbook.experiments.measures`), which calls :func:`topk_accuracy`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch


def check_ks(ks: Any) -> tuple[int, ...]:
    """``ks`` as a tuple: a non-empty sequence of distinct ints >= 1 (``ValueError`` otherwise)."""
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not ks:
        raise ValueError(f"ks must be a non-empty list of ints, got {ks!r}")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"every k must be an int >= 1, got {k!r}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"ks has repeated values: {list(ks)}")
    return tuple(ks)


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> list[int]:
    """How many rows of ``logits`` (N×classes) have their target among the ``k`` largest, per k.

    A k at least the number of classes counts every row. Ties are broken by ``torch.topk``.
    The counts behind the top-1/top-5 errors of IC-F5, DBN-T3 and NP-T4.
    """
    ks = check_ks(ks)
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"topk_correct: logits must be N×C and targets N, got {tuple(logits.shape)} and"
            f" {tuple(targets.shape)}"
        )
    largest = min(max(ks), logits.shape[1])
    top = logits.topk(largest, dim=1).indices  # N×largest, best first
    hits = top == targets[:, None]
    return [int(hits[:, : min(k, largest)].any(dim=1).sum()) for k in ks]


def topk_accuracy(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    ks: Sequence[int] = (1, 5),
    *,
    amp_dtype: torch.dtype | None = None,
) -> dict[int, float]:
    """``{k: share of samples whose label is among the k largest logits}`` over ``batches``.

    Runs in eval mode under ``no_grad`` (under ``torch.autocast`` with ``amp_dtype`` when given,
    as the loop's own evaluation does), scores the logits in fp32 and restores the model's train
    mode afterwards. Top-1 is the loop's ``test_acc``; top-5 is the second number of IC-F5,
    DBN-T3 and NP-T4. ``ValueError`` when ``batches`` hold no samples.
    """
    ks = check_ks(ks)
    was_training = model.training
    model.eval()
    correct, count = [0] * len(ks), 0
    try:
        with torch.no_grad():
            for x, y in batches:
                if amp_dtype is not None:
                    with torch.autocast(device_type=x.device.type, dtype=amp_dtype):
                        logits = model(x)
                else:
                    logits = model(x)
                step = topk_correct(logits.float(), y, ks)
                correct = [c + s for c, s in zip(correct, step, strict=True)]
                count += int(y.shape[0])
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("topk_accuracy: no samples")
    return {k: c / count for k, c in zip(ks, correct, strict=True)}
