"""Helpers of the DBN part's CNN chapters (``book/dbn/dbn-in-cnns``,
``book/dbn/dbn-l1-on-resnets``).

- :func:`mean_difference_interval`: the difference of two methods' means over seeds with its Welch
  confidence interval.
- :func:`accuracy_with_batch_statistics`: accuracy with chosen norm modules normalizing with the
  evaluated batch's statistics (DBN-F5/F6's train/test gap).

DBN Table 3 (DBN-T3) reports top-1 *and* top-5 ImageNet errors: its entries run ``classify`` with
the built-in ``topk`` measurement (:mod:`normbook.experiments.measures`), whose final values the
task turns into the metrics ``test_top<k>_acc`` and ``test_top<k>_error_pct``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


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
