"""Tables of the book: the paper's numbers beside ours, every one of ours traceable to its runs.

:func:`results_table` reads an entry's grid from the results store at one scale. Each grid point
is a row: its knob values, the paper's number where the paper reports one (labelled as the
paper's), ours as mean ± std over n seeds with the commit, hardware and date of the records, or
"not run yet" with the exact command that would produce it. Stale records are marked.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from IPython.display import HTML

from normbook.experiments.registry import Registry, get_experiment
from normbook.experiments.results import load


def _number(value: float, scale: float, digits: int) -> str:
    return f"{value * scale:.{digits}f}"


def results_frame(
    entry_id: str,
    scale: str,
    metric: str = "test_acc",
    *,
    percent: bool = True,
    digits: int = 2,
    root: str | os.PathLike | None = None,
    registry: Registry | None = None,
) -> pd.DataFrame:
    """The rows of :func:`results_table` as strings (for tests and for notebooks that restyle);
    ``registry`` defaults to the book's."""
    entry = get_experiment(entry_id, registry)
    table = load(entry_id, scale, root=root, registry=registry)
    knobs = list(entry.scale(scale).knobs)
    factor = 100.0 if percent else 1.0
    rows: list[dict[str, Any]] = []
    for _, row in table.iterrows():
        point = {k: row[k] for k in knobs}
        reported = [r for r in entry.paper if r.metric == metric and r.applies_to(point)]
        paper = "—"
        if reported:
            r = reported[0]
            paper = f"{r.value:g}" + (f" ± {r.std:g}" if r.std is not None else "") + f" {r.unit}"
        n = int(row.get(f"{metric}_n", 0) or 0)
        runs = int(row.get("n", 0) or 0)  # ok + diverged records: a diverged run has no value
        if n == 0 and runs == 0:
            selector = " ".join(f"{k}={v}" for k, v in point.items())
            ours = "not run yet"
            source = f"normbook run {entry_id} --scale {scale}" + (
                f"  # point {selector}" if selector else ""
            )
        else:
            if n == 0:
                ours = f"no value: {int(row.get('n_diverged', 0) or 0)} of {runs} runs diverged"
            else:
                mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
                spread = (
                    "" if std is None or math.isnan(std) else f" ± {_number(std, factor, digits)}"
                )
                ours = f"{_number(mean, factor, digits)}{spread} (n={n})"
                if row.get("n_diverged"):
                    ours += f", {int(row['n_diverged'])} diverged"
            commit = str(row.get("commit") or "unknown")[:10]
            source = f"{commit}{' (dirty)' if row.get('dirty') else ''}, {row.get('hardware')}, {str(row.get('date'))[:10]}"
            if row.get("stale"):
                ours += " — stale: config changed since this run"
        rows.append({**point, "paper": paper, "ours": ours, "run": source})
    return pd.DataFrame(rows, columns=[*knobs, "paper", "ours", "run"])


def results_table(
    entry_id: str,
    scale: str = "full",
    metric: str = "test_acc",
    *,
    percent: bool = True,
    digits: int = 2,
    root: str | os.PathLike | None = None,
) -> HTML:
    """An HTML table of ``metric`` for every grid point of ``entry_id`` at ``scale``."""
    frame = results_frame(entry_id, scale, metric, percent=percent, digits=digits, root=root)
    unit = " (%)" if percent else ""
    header = [
        *frame.columns[:-3],
        "paper's number",
        f"ours: {metric}{unit} at {scale}",
        "run / command",
    ]
    return html_table(header, frame.itertuples(index=False), code_columns=(len(header) - 1,))


def html_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], *, code_columns: Sequence[int] = ()
) -> HTML:
    """An escaped HTML table (class ``normbook-results``); cells of ``code_columns`` (indices) are
    set as code (commands, commits)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td><code>{html.escape(str(v))}</code></td>"
            if i in code_columns
            else f"<td>{html.escape(str(v))}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return HTML(
        f'<table class="table normbook-results"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def reproduction_table(
    part: str, scale: str = "full", *, root: str | os.PathLike | None = None
) -> HTML:
    """The "Reproducing this part at full scale" table of book part ``part``: each entry's runs,
    images and GPU-hour estimate from GPU bench records (or the bench command when there is none)."""
    from normbook.experiments.plan import reproduction_plan

    plan = reproduction_plan(part, scale, root=root)

    def fmt(value: Any, spec: str) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        return format(value, spec)

    rows = [
        (
            r["id"],
            r["artifact"],
            r["dataset"],
            r["epochs"],
            r["runs"],
            fmt(r["images per run"], ","),
            fmt(r["GPU images/s"], ",.0f"),
            fmt(r["GPU-hours (all runs)"], ".1f"),
            r["estimate from"],
        )
        for r in plan.to_dict("records")
    ]
    header = [
        "entry",
        "artifact",
        "dataset",
        "epochs",
        "runs (points × seeds)",
        "images per run",
        "GPU images/s",
        "GPU-hours, all runs",
        "estimate from",
    ]
    return html_table(header, rows, code_columns=(0, len(header) - 1))


def _percent(mean: float, std: float | None = None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def _lr(value: Any) -> str:
    return (
        "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:g}"
    )


def leaderboard_table(board: pd.DataFrame) -> HTML:
    """The synthesis leaderboard (:func:`normbook.analysis.synthesis.leaderboard`) as HTML: rank,
    method, the validation-chosen learning rate, validation and test accuracy (%, mean ± std over
    n seeds), diverged seeds, and the rate a test-set choice would have picked."""
    header = [
        "rank",
        "method",
        "lr (chosen on val)",
        "val acc (%)",
        "test acc (%)",
        "seeds",
        "diverged",
        "lr a test-set choice picks",
    ]
    rows = [
        (
            rank,
            row.name,
            _lr(row.lr),
            _percent(row.val_mean, row.val_std),
            _percent(row.test_mean, row.test_std),
            int(row.n),
            int(row.n_diverged),
            _lr(row.lr_if_test),
        )
        for rank, row in enumerate(board.itertuples(index=False), start=1)
    ]
    return html_table(header, rows)


def grid_table(table: pd.DataFrame, knob: str, label: str) -> HTML:
    """A method × ``knob`` table of test accuracy (%, mean ± std at the validation-chosen rate,
    from :func:`normbook.analysis.synthesis.accuracy_by`), one row per method."""
    values = sorted(table[knob].unique())
    header = ["method", *(f"{label} {v:g}" for v in values)]
    rows = []
    for method, group in table.groupby("method", sort=False):
        by_value = group.set_index(knob)
        cells = [
            _percent(by_value.loc[v, "test_mean"], by_value.loc[v, "test_std"])
            if v in by_value.index
            else "not run"
            for v in values
        ]
        rows.append((group["name"].iloc[0] if "name" in group else method, *cells))
    return html_table(header, rows)
