"""A measurement and a task of the DBN part's CNN chapters (``book/dbn/dbn-in-cnns``,
``book/dbn/dbn-l1-on-resnets``).

- measure ``topk_accuracy``: the top-k accuracy of the model on a split (default: the test split,
  k = 1 and 5), logged at the last epoch (or every epoch) into ``history.extras`` as
  ``<split>_top<k>_acc``. The training loop records top-1 only; DBN Table 3 (DBN-T3) reports
  top-1 *and* top-5 ImageNet errors, so its entries need this.
- task ``dbn.classify-topk`` (DBN-T3): the ``classify`` task with that measurement, whose final
  values become metrics: ``test_top<k>_acc`` (fraction) and ``test_top<k>_error_pct`` (percent,
  the paper's unit), next to ``classify``'s own ``test_error_pct``.

Importing this module registers both (``normbook.experiments.entries.dbn_cnn`` imports it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from normbook.experiments.measures import check_measures, register_measure
from normbook.experiments.spec import ConfigError
from normbook.experiments.tasks import classify, register_task, validate_classify
from normbook.train.loop import resolve_amp

TOPK_MEASURE = "topk_accuracy"
CLASSIFY_TOPK = "dbn.classify-topk"
DEFAULT_KS: tuple[int, ...] = (1, 5)


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> list[int]:
    """How many rows of ``logits`` (N×classes) have their target among the ``k`` largest, per k.

    A k at least the number of classes counts every row. Ties are broken by ``torch.topk``.
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"topk_correct: logits must be N×C and targets N, got {tuple(logits.shape)} and"
            f" {tuple(targets.shape)}"
        )
    largest = min(max(ks), logits.shape[1])
    top = logits.topk(largest, dim=1).indices  # N×largest, best first
    hits = top == targets[:, None]
    return [int(hits[:, : min(k, largest)].any(dim=1).sum()) for k in ks]


def _check_ks(ks: Any) -> tuple[int, ...]:
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not ks:
        raise ConfigError(f"{TOPK_MEASURE}: ks must be a non-empty list of ints, got {ks!r}")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"{TOPK_MEASURE}: every k must be an int >= 1, got {k!r}")
    if len(set(ks)) != len(ks):
        raise ConfigError(f"{TOPK_MEASURE}: ks has repeated values: {list(ks)}")
    return tuple(ks)


class TopKAccuracy:
    """Callback: top-k accuracy of ``state.model`` on ``split`` at the last epoch (or every one).

    Runs in eval mode under ``no_grad`` with the run's autocast dtype (bf16 on CUDA), like the
    loop's own evaluation, and logs ``<split>_top<k>_acc`` (fractions).
    """

    def __init__(
        self, ks: Sequence[int] = DEFAULT_KS, split: str = "test", every_epoch: bool = False
    ) -> None:
        self.ks, self.split, self.every_epoch = _check_ks(ks), split, every_epoch

    def on_epoch_end(self, state: Any) -> None:
        if not self.every_epoch and state.epoch != state.config.epochs:
            return
        model = state.model
        was_training = model.training
        model.eval()
        amp = resolve_amp(state.config.amp, state.device)
        correct, count = [0] * len(self.ks), 0
        try:
            with torch.no_grad():
                for x, y in state.data.eval_batches(self.split, state.config.eval_batch_size):
                    with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
                        logits = model(x)
                    step = topk_correct(logits.float(), y, self.ks)
                    correct = [c + s for c, s in zip(correct, step, strict=True)]
                    count += y.shape[0]
        finally:
            model.train(was_training)
        if count == 0:
            raise ValueError(f"{TOPK_MEASURE}: the {self.split!r} split has no samples")
        for k, c in zip(self.ks, correct, strict=True):
            state.log(f"{self.split}_top{k}_acc", c / count)


@register_measure(TOPK_MEASURE)
def topk_accuracy(
    model: Any,
    data: Any,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    split: str = "test",
    every_epoch: bool = False,
) -> TopKAccuracy:
    """``config["measure"] = {"topk_accuracy": {"ks": [1, 5]}}``: top-k accuracy (DBN-T3)."""
    if split not in data.splits:
        raise ConfigError(f"{TOPK_MEASURE}: split {split!r} not in the dataset's {data.splits}")
    if not isinstance(every_epoch, bool):
        raise ConfigError(f"{TOPK_MEASURE}: every_epoch must be a bool, got {every_epoch!r}")
    return TopKAccuracy(ks, split, every_epoch)


def validate_classify_topk(config: Mapping[str, Any]) -> None:
    """``classify``'s checks, plus a ``topk_accuracy`` measurement on the test split."""
    validate_classify(config)
    measures = check_measures(config.get("measure", {}))
    if TOPK_MEASURE not in measures:
        raise ConfigError(f"{CLASSIFY_TOPK}: config['measure'] needs a {TOPK_MEASURE!r} entry")
    options = measures[TOPK_MEASURE]
    _check_ks(options.get("ks", DEFAULT_KS))
    if options.get("split", "test") != "test":
        raise ConfigError(f"{CLASSIFY_TOPK}: the {TOPK_MEASURE} split must be 'test'")


@register_task(CLASSIFY_TOPK, validate=validate_classify_topk)
def classify_topk(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """``classify`` with final top-k test metrics (DBN-T3's top-1/top-5 errors, in percent).

    A diverged run (or one stopped before its last epoch) gets ``None`` for them.
    """
    validate_classify_topk(config)
    result = classify(config, seed=seed, device=device, run_dir=run_dir, progress=progress)
    history = result["history"]
    ks = _check_ks(config["measure"][TOPK_MEASURE].get("ks", DEFAULT_KS))
    finished = not history.diverged and len(history.epoch) == config["train"]["epochs"]
    for k in ks:
        column = history.extras.get(f"test_top{k}_acc", [])
        value = column[-1] if finished and column else None
        result["metrics"][f"test_top{k}_acc"] = value
        result["metrics"][f"test_top{k}_error_pct"] = None if value is None else 100 * (1 - value)
    return result


def mean_difference_interval(
    a: tuple[float, float, int], b: tuple[float, float, int], level: float = 0.95
) -> tuple[float, float, float]:
    """``mean_a − mean_b`` and its Welch confidence interval from ``(mean, std, n)`` summaries.

    For comparing two methods over seeds (the chapters' "several seeds" rule): the standard error
    is ``sqrt(s_a²/n_a + s_b²/n_b)``, the degrees of freedom Welch–Satterthwaite's. Returns
    ``(difference, low, high)``.
    """
    from scipy.stats import t

    (ma, sa, na), (mb, sb, nb) = a, b
    if na < 2 or nb < 2:
        raise ValueError(f"mean_difference_interval needs n >= 2 per side, got {na} and {nb}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    va, vb = sa**2 / na, sb**2 / nb
    se = (va + vb) ** 0.5
    diff = ma - mb
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = float(t.ppf(0.5 + level / 2, dof)) * se
    return diff, diff - half, diff + half


def accuracy_with_batch_statistics(
    model: torch.nn.Module, data: Any, module_names: Sequence[str] = (), split: str = "test"
) -> float:
    """Accuracy on ``split`` (one batch) with the named norm modules using that batch's statistics.

    Every other module is in eval mode (running statistics, as in ``evaluate``); the named ones
    (e.g. ``"stem.norm"``) normalize with the statistics of the evaluated batch itself, as in
    training. Runs on a deep copy, so the model's running buffers are left untouched. With no
    names it is the ordinary eval-mode accuracy. Used to locate DBN's train/test gap (DBN-F5/F6).
    """
    import copy

    probe = copy.deepcopy(model).eval()
    modules = dict(probe.named_modules())
    unknown = [name for name in module_names if name not in modules]
    if unknown:
        raise ValueError(f"accuracy_with_batch_statistics: no module named {unknown}")
    for name in module_names:
        modules[name].train()
    x, y = data.tensors(split)
    device = next(probe.parameters()).device
    with torch.no_grad():
        logits = probe(x.to(device))
    return float((logits.argmax(dim=1) == y.to(device)).float().mean())
