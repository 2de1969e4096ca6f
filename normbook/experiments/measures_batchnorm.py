"""Measurements of BatchNorm during a ``classify`` run (see :mod:`normbook.experiments.measures`).

``bn_train_eval_gap``: after every epoch, the test samples through the model with batch
statistics (train mode, batches of the training batch size) and with running statistics (eval
mode), by :func:`normbook.analysis.batchnorm.batch_statistics_gap` (Ioffe & Szegedy 2015,
Section 3.1 and Algorithm 2: inference replaces batch statistics by population estimates).
Values land in ``history.extras`` as ``batch_stat_test_loss``, ``running_stat_test_loss``,
``batch_stat_test_acc``, ``running_stat_test_acc``, ``train_eval_disagreement`` and
``train_eval_logit_gap``. Importing this module registers the measurement (the entries module
that uses it imports it).
"""

from __future__ import annotations

from typing import Any

from normbook.experiments.measures import list_measures, register_measure

TRAIN_EVAL_GAP = "bn_train_eval_gap"
# key of batch_statistics_gap -> name logged per epoch
GAP_FIELDS: dict[str, str] = {
    "batch_stat_loss": "batch_stat_test_loss",
    "running_stat_loss": "running_stat_test_loss",
    "batch_stat_acc": "batch_stat_test_acc",
    "running_stat_acc": "running_stat_test_acc",
    "disagreement": "train_eval_disagreement",
    "logit_gap": "train_eval_logit_gap",
}


class TrainEvalGap:
    """Logs batch-statistics vs running-statistics predictions on ``split`` after every epoch.

    ``batch_size`` defaults to the run's training batch size (full batch: the whole split).
    """

    def __init__(
        self, model: Any, data: Any, *, split: str = "test", batch_size: int | None = None
    ) -> None:
        if split not in data.splits:
            raise ValueError(f"{TRAIN_EVAL_GAP}: split must be one of {data.splits}, got {split!r}")
        self.split = split
        self.batch_size = batch_size

    def on_epoch_end(self, state: Any) -> None:
        from normbook.analysis.batchnorm import batch_statistics_gap

        size = self.batch_size or state.config.batch_size or state.data.split_size(self.split)
        gap = batch_statistics_gap(state.model, state.data, self.split, size)
        for key, name in GAP_FIELDS.items():
            state.log(name, gap[key])


if TRAIN_EVAL_GAP not in list_measures():
    register_measure(TRAIN_EVAL_GAP)(TrainEvalGap)
