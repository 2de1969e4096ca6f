"""Tasks and measurements of the DBN part's MLP chapters (``book/dbn/``): DBN-F2, DBN-F3, DBN-F4.

- ``dbn.mlp-method``: a ``classify`` run of the MLP with one *method* of the paper's figures
  (``plain``, ``bn``, ``ln``, ``dbn-zca``, ``dbn-pca``; :data:`MLP_METHODS`) as a grid knob, the
  number of hidden layers ``depth`` (DBN Fig. 2's 2- and 4-layer MLPs have 1 and 3 hidden layers)
  and DBN's group size ``group_size`` (DBN-F4) as knobs of their own. The record is a classify
  record: ``load_curves`` draws its ``train_loss``, ``wall_time`` and logged measurements.
- measure ``fim_condition`` (DBN-F3): after every ``every``-th epoch, the condition number of the
  relative Fisher information of the last linear layer
  (:func:`normbook.analysis.fisher.relative_fisher`), logged as ``fim_condition`` and
  ``fim_condition_p90`` (λ_max over the eigenvalue at 90 % of the non-zero spectrum).
- :func:`best_learning_rates` / :func:`best_lr_curves`: the paper's protocol "best learning rate
  with respect to the training loss" (DBN Fig. 2, Sec. 4.1), applied to a grid in the store.
- :func:`time_ratios`: per-step wall time of each method over a reference method's (DBN-F3/F4
  loss-vs-time plots; only ratios measured on one machine are compared).

Importing this module registers the task and the measure
(``normbook.experiments.entries.dbn_mlp`` imports it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from normbook.experiments.measures import register_measure
from normbook.experiments.spec import ConfigError, thaw
from normbook.experiments.tasks import classify, register_task, validate_classify

MLP_METHOD = "dbn.mlp-method"
FIM_MEASURE = "fim_condition"
FIM_P90 = "fim_condition_p90"

# method name of the paper's figures -> the MLP's options (DBN Fig. 2: plain / DBN-PCA / DBN-ZCA;
# Fig. 3: plain / NNN / LN / BN / DBN; NNN is not implemented, see the conditioning chapter)
MLP_METHODS: dict[str, dict[str, Any]] = {
    "plain": {"norm": "none"},
    "bn": {"norm": "bn"},
    "ln": {"norm": "ln"},
    "dbn-zca": {"norm": "dbn", "whitening": "zca"},
    "dbn-pca": {"norm": "dbn", "whitening": "pca"},
}
METHOD_LABELS: dict[str, str] = {
    "plain": "plain",
    "bn": "BN",
    "ln": "LN",
    "dbn-zca": "DBN-ZCA",
    "dbn-pca": "DBN-PCA",
}
_KEYS = frozenset(
    {"task", "method", "depth", "group_size", "dbn", "model", "data", "train", "measure"}
)


def _positive_int_or_none(value: Any, where: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{MLP_METHOD}: {where} must be None or an int >= 1, got {value!r}")


def classify_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``classify`` configuration that a ``dbn.mlp-method`` configuration stands for.

    ``model`` is the MLP's options; ``method`` adds its ``norm`` (and DBN's ``whitening``);
    ``depth`` (None: ``model.hidden`` as given) repeats the first hidden width ``depth`` times;
    ``group_size`` and the ``dbn`` options (``affine``, ``eps``, ...) go to DBN layers only.
    """
    unknown, missing = set(config) - _KEYS, _KEYS - set(config) - {"measure"}
    if unknown or missing:
        raise ConfigError(
            f"{MLP_METHOD}: config keys must be {sorted(_KEYS)} ('measure' optional);"
            f" unknown {sorted(unknown)}, missing {sorted(missing)}"
        )
    method = config["method"]
    if method not in MLP_METHODS:
        raise ConfigError(
            f"{MLP_METHOD}: method must be one of {', '.join(MLP_METHODS)}, got {method!r}"
        )
    _positive_int_or_none(config["depth"], "depth")
    _positive_int_or_none(config["group_size"], "group_size")
    if not isinstance(config["dbn"], Mapping):
        raise ConfigError(
            f"{MLP_METHOD}: dbn must be a mapping of DBN options, got {config['dbn']!r}"
        )
    model = thaw(config["model"])
    if not isinstance(model, dict) or model.get("name") != "mlp":
        raise ConfigError(f"{MLP_METHOD}: model must be a mapping with name 'mlp', got {model!r}")
    clashes = {"norm", "whitening", "group_size"} & set(model)
    if clashes:
        raise ConfigError(
            f"{MLP_METHOD}: model must not set {sorted(clashes)}: method and group_size do"
        )
    hidden = list(model.get("hidden", ()))
    if config["depth"] is not None:
        if not hidden:
            raise ConfigError(f"{MLP_METHOD}: depth needs a width: model.hidden = [width]")
        model["hidden"] = [hidden[0]] * config["depth"]
    model.update(MLP_METHODS[method])
    if model["norm"] == "dbn":
        model.update(thaw(config["dbn"]))
        model["group_size"] = config["group_size"]
    out = {"task": "classify", "model": model, "data": thaw(config["data"])}
    out["train"] = thaw(config["train"])
    if config.get("measure"):
        out["measure"] = thaw(config["measure"])
    return out


def validate_mlp_method(config: Mapping[str, Any]) -> None:
    """Known keys and method, then the classify configuration it stands for."""
    validate_classify(classify_config(config))


@register_task(MLP_METHOD, validate=validate_mlp_method)
def mlp_method(
    config: Mapping[str, Any],
    *,
    seed: int,
    device: torch.device,
    run_dir: Path | None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train the MLP of :func:`classify_config` (DBN-F2/F3/F4); a classify record."""
    result = classify(
        classify_config(config), seed=seed, device=device, run_dir=run_dir, progress=progress
    )
    result["info"]["model"] = classify_config(config)["model"]
    return result


# -- the relative-FIM condition number during training (DBN-F3) --------------------------------
class FisherCondition:
    """Per-epoch condition number of the relative FIM of the model's last ``nn.Linear`` (DBN-F3).

    Measured after the first epoch, every ``every``-th and the last, on the first ``samples``
    training samples (all by default) with the model in training mode, so BatchNorm and DBN use
    the statistics of that batch, which in full-batch training is the batch the step saw; the
    normalization layers' running statistics are restored afterwards, so the measurement changes
    nothing in the run. ``labels``: ``empirical`` (the data's labels) or ``model``
    (see :func:`normbook.analysis.fisher.relative_fisher`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data: Any,
        *,
        every: int = 1,
        samples: int | None = None,
        labels: str = "empirical",
    ) -> None:
        from normbook.analysis.fisher import LABELS

        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        if samples is not None and (
            isinstance(samples, bool) or not isinstance(samples, int) or samples < 2
        ):
            raise ValueError(f"samples must be None or an int >= 2, got {samples!r}")
        if labels not in LABELS:
            raise ValueError(f"labels must be one of {', '.join(LABELS)}, got {labels!r}")
        self.every, self.samples, self.labels = every, samples, labels

    def measure(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """``{fim_condition, fim_condition_p90}`` of ``model`` on ``(x, y)``, buffers untouched."""
        from normbook.analysis.fisher import relative_fisher

        buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
        was_training = model.training
        model.train()
        try:
            spectrum = relative_fisher(model, x, y, labels=self.labels)
        finally:
            model.train(was_training)
            with torch.no_grad():
                for name, b in model.named_buffers():
                    b.copy_(buffers[name])
        return {
            FIM_MEASURE: spectrum.condition_number,
            FIM_P90: spectrum.percentile_condition_number(0.9),
        }

    def on_epoch_end(self, state: Any) -> None:
        first, last = state.epoch == 1, state.epoch == state.config.epochs
        if state.epoch % self.every and not (first or last):
            return
        x, y = state.data.tensors("train")
        if self.samples is not None:
            x, y = x[: self.samples], y[: self.samples]
        for name, value in self.measure(state.model, x, y).items():
            state.log(name, value)


@register_measure(FIM_MEASURE)
def _fim_condition(model: torch.nn.Module, data: Any, **options: Any) -> FisherCondition:
    return FisherCondition(model, data, **options)


# -- the paper's protocol: best learning rate by final training loss ----------------------------
def best_learning_rates(
    summary: pd.DataFrame,
    by: Sequence[str],
    *,
    lr: str = "train.lr",
    metric: str = "train_loss",
) -> pd.DataFrame:
    """Per group of knobs ``by``, the learning rate with the lowest mean final ``metric``.

    ``summary`` is :func:`normbook.experiments.load`'s table. Learning rates at which every seed
    ran to the end without diverging compete first (``all_finished`` True). If there is none, the
    learning rates with the most finished seeds compete (``all_finished`` False: the mean is over
    the finished seeds only, and the others diverged); a group where every run diverged gets
    ``best_lr`` NaN. Columns: ``by``, ``best_lr``, ``<metric>_mean``, ``<metric>_std``,
    ``finished`` (seeds that finished at the best rate), ``n`` (seeds run there),
    ``all_finished``, ``diverged_lrs`` (the learning rates at which some seed diverged).
    """
    missing = [c for c in (*by, lr, f"{metric}_mean", "n", "n_diverged") if c not in summary]
    if missing:
        raise ValueError(f"summary lacks columns {missing}")
    rows = []
    for key, group in summary.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        group = group.assign(finished=group["n"] - group["n_diverged"])
        candidates = group[(group["finished"] > 0) & group[f"{metric}_mean"].notna()]
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        if candidates.empty:
            row.update(best_lr=math.nan, finished=0, n=int(group["n"].max()), all_finished=False)
            row[f"{metric}_mean"] = row[f"{metric}_std"] = math.nan
        else:
            complete = candidates[candidates["n_diverged"] == 0]
            pool = (
                complete
                if not complete.empty
                else candidates[candidates["finished"] == candidates["finished"].max()]
            )
            best = pool.loc[pool[f"{metric}_mean"].idxmin()]
            row.update(
                best_lr=best[lr],
                finished=int(best["finished"]),
                n=int(best["n"]),
                all_finished=not complete.empty,
            )
            row[f"{metric}_mean"] = best[f"{metric}_mean"]
            row[f"{metric}_std"] = best.get(f"{metric}_std", math.nan)
        row["diverged_lrs"] = sorted(group.loc[group["n_diverged"] > 0, lr].tolist())
        rows.append(row)
    return pd.DataFrame(rows)


def best_lr_curves(
    entry_id: str,
    scale: str,
    by: Sequence[str],
    metrics: Sequence[str] = ("train_loss",),
    *,
    lr: str = "train.lr",
    metric: str = "train_loss",
    root: str | os.PathLike | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(curves, best)``: the per-epoch curves of each group's best learning rate, and the table
    of :func:`best_learning_rates`. ``curves`` is ``load_curves``' table restricted to those
    points, with a ``best_lr`` column; empty when the store has no records of the entry."""
    from normbook.experiments.results import load, load_curves

    summary = load(entry_id, scale, root=root)
    curves = load_curves(entry_id, scale, tuple(metrics), root=root)
    if curves.empty:
        return curves, best_learning_rates(summary, by, lr=lr, metric=metric)
    best = best_learning_rates(summary, by, lr=lr, metric=metric)
    chosen = best.dropna(subset=["best_lr"])[[*by, "best_lr"]]
    merged = curves.merge(chosen, on=list(by), how="inner")
    merged = merged[merged[lr] == merged["best_lr"]].reset_index(drop=True)
    return merged, best


def time_ratios(
    summary: pd.DataFrame,
    by: str,
    reference: Any,
    *,
    time: str = "wall_time",
    steps: str = "epochs",
) -> pd.DataFrame:
    """Training seconds per epoch of each value of knob ``by`` over ``reference``'s.

    ``summary`` is :func:`normbook.experiments.load`'s table (one row per point; rows with the
    same ``by`` value, e.g. several learning rates, are averaged). Columns: ``by``,
    ``seconds_per_epoch``, ``ratio``. Wall time on a shared machine is noisy; ratios of runs made
    in one session are what the chapters compare.
    """
    for column in (by, f"{time}_mean", f"{steps}_mean"):
        if column not in summary:
            raise ValueError(f"summary lacks column {column!r}")
    ok = summary[summary["n"] > 0]
    per_epoch = (ok[f"{time}_mean"] / ok[f"{steps}_mean"]).groupby(ok[by]).mean()
    if reference not in per_epoch.index:
        raise ValueError(f"no record for the reference {by}={reference!r}")
    out = per_epoch.rename("seconds_per_epoch").reset_index()
    out["ratio"] = out["seconds_per_epoch"] / per_epoch[reference]
    return out


def live_method_curves(
    entry_id: str,
    scale: str,
    selector: Mapping[str, Any],
    *,
    overrides: Mapping[str, Any] | None = None,
    metrics: Sequence[str] = ("train_loss",),
    seeds: int | Sequence[int] | None = None,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Like :func:`normbook.experiments.live.live_curves`, with the entry's ``scale`` configuration
    changed by ``overrides`` (a nested mapping merged into it, e.g. ``{"train": {"lr": 0.1}}``):
    the live panels vary settings that are fixed in the registry (a learning rate, a batch size).
    Runs are not stored; a failed run raises ``RuntimeError``."""
    from dataclasses import replace

    from normbook.config import default_device
    from normbook.experiments.registry import get_experiment
    from normbook.experiments.results import curve_stats
    from normbook.experiments.runner import execute, seed_list
    from normbook.experiments.spec import ScaleSpec, deep_merge

    entry = get_experiment(entry_id)
    spec = entry.scale(scale)
    if overrides:
        spec = ScaleSpec(
            config=deep_merge(spec.config, overrides), grid=dict(spec.grid), seeds=spec.seeds
        )
        entry = replace(entry, scales={**entry.scales, scale: spec})
    device = default_device(device)
    runs = []
    for point in entry.select_points(scale, [dict(selector)]):
        for seed in seed_list(seeds, spec.seeds):
            record = execute(entry, scale, point, seed, device=device, run_dir=None, progress=False)
            if record["status"] == "failed":
                raise RuntimeError(f"{entry_id} {point} seed {seed} failed: {record.get('error')}")
            history = {**record["history"].get("extras", {}), **record["history"]}
            runs.append((point, history))
    return curve_stats(runs, list(spec.knobs), metrics)


def last_layer_inputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input ``h`` of ``model``'s last ``nn.Linear`` on ``x`` (detached), in the model's
    current mode: the vectors whose second moment is the ``h hᵀ`` factor of the relative FIM
    (DBN-F3; :func:`normbook.analysis.fisher.relative_fisher`)."""
    from normbook.analysis.fisher import _layer_io, last_linear

    with torch.no_grad():
        h, _, _ = _layer_io(model, last_linear(model), x)
    return h.detach()
