"""Stochastic axis swapping (DBN Sec. 3.1, Fig. 1; PAPERS.md DBN-F1): PCA vs ZCA whitening per batch.

PCA whitening ``W = Λ^{-1/2} Dᵀ`` needs two conventions to be a function of the covariance:
eigenvalues in non-increasing order and a sign per eigenvector (here the package's
:func:`~normbook.layers.whitening.sorted_eigh`: largest-magnitude component positive). When the
covariance of the next mini-batch reorders two eigenvalues, the rows of ``W`` trade places and a
fixed input gets its whitened coordinates permuted. ZCA ``W = D Λ^{-1/2} Dᵀ = Σ^{-1/2}`` needs no
convention and is a continuous function of ``Σ``.

Two measurements:

* a 2-D batch in the style of the paper's Fig. 1 (:func:`swap_demo_batch`): fixed points plus two
  points that move along one principal axis; as they move out, that axis's variance overtakes the
  other's and PCA swaps its axes while ZCA does not (:func:`swap_demo_figure`);
* consecutive mini-batches of real activations (:func:`axis_swap_measurements`): for each pair of
  consecutive batches, which PCA axes were reassigned (matched by largest ``|d_aᵀ d'_b|``), how
  far the whitened coordinates of a fixed probe set moved under PCA and under ZCA, and how far PCA's
  moved once the reassignment and sign flips are undone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from normbook.analysis._checks import check_finite, check_tensor
from normbook.layers._checks import check_positive_int
from normbook.layers.whitening import sorted_eigh, whitening_matrix

F64 = torch.float64

# --- the 2-D example of DBN Fig. 1 ----------------------------------------------------------------

# Fixed ("blue") points in the frame of the principal axes (u1, u2): symmetric about both axes, so
# the batch mean is 0 and u1, u2 stay the eigenvectors wherever the moving points are.
DEMO_FIXED_FRAME: tuple[tuple[float, float], ...] = (
    (1.5, 0.5),
    (-1.5, 0.5),
    (-1.5, -0.5),
    (1.5, -0.5),
    (0.5, 0.3),
    (-0.5, 0.3),
    (-0.5, -0.3),
    (0.5, -0.3),
)
DEMO_ANGLE = 30.0  # degrees between u1 and the first coordinate axis
DEMO_COLORS: tuple[str, ...] = (
    "#1f77b4",
    "#2ca02c",
    "#9467bd",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)
MOVING_COLOR = "#d62728"


def _frame(angle: float) -> Tensor:
    """Columns u1, u2: the principal axes of the demo batch, ``angle`` degrees from e1."""
    a = math.radians(angle)
    return torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=F64)


def swap_demo_batch(offset: float, *, angle: float = DEMO_ANGLE) -> tuple[Tensor, Tensor]:
    """A 2-D batch like DBN Fig. 1: eight fixed points and two moving ones at ``±offset·u2``.

    Returns ``(points, moving)``: a 10×2 float64 batch (rows are samples) and the boolean mask of
    the two moving points. The eigenvectors are ``u1 = (cos a, sin a)`` and ``u2`` (``a`` =
    ``angle`` degrees) for every offset; only the variance along ``u2`` grows with the offset.
    """
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or offset < 0:
        raise ValueError(f"offset must be a number >= 0, got {offset!r}")
    frame = torch.tensor(
        [*DEMO_FIXED_FRAME, (0.0, float(offset)), (0.0, -float(offset))], dtype=F64
    )
    moving = torch.zeros(frame.shape[0], dtype=torch.bool)
    moving[-2:] = True
    return frame @ _frame(angle).T, moving


def demo_crossing_offset() -> float:
    """The offset at which the two eigenvalues of :func:`swap_demo_batch` are equal.

    Along ``u1`` the variance is ``Σa²/n``; along ``u2`` it is ``(Σb² + 2s²)/n``; equal at
    ``s = sqrt((Σa² − Σb²)/2)``.
    """
    sum_a = sum(a * a for a, _ in DEMO_FIXED_FRAME)
    sum_b = sum(b * b for _, b in DEMO_FIXED_FRAME)
    return math.sqrt((sum_a - sum_b) / 2.0)


@dataclass(frozen=True)
class Whitened:
    """One batch whitened: the matrix ``W``, the outputs ``(x − μ) Wᵀ`` (rows are samples), the
    eigenvalues (non-increasing) and eigenvectors (columns, PCA's canonical signs) of ``Σ + εI``."""

    weight: Tensor
    outputs: Tensor
    eigenvalues: Tensor
    eigenvectors: Tensor


def whiten_batch(points: Tensor, method: str, *, eps: float = 0.0) -> Whitened:
    """Whiten the rows of ``points`` (m×d) with their own mean and biased covariance (DBN Eq. 3).

    ``method`` is ``"pca"`` or ``"zca"`` (or ``"newton"``); ``W`` comes from the package's
    :func:`~normbook.layers.whitening_matrix`, the same function the layer's statistics use.
    """
    check_tensor(points, "points", min_dim=2)
    if points.dim() != 2 or points.shape[0] < 2:
        raise ValueError(f"points must be an m×d matrix with m >= 2, got {tuple(points.shape)}")
    x = points.to(F64)
    check_finite(x, "points")
    centred = x - x.mean(dim=0)
    cov = centred.T @ centred / x.shape[0]
    weight = whitening_matrix(cov, method, eps=eps)
    eye = torch.eye(cov.shape[0], dtype=F64)
    lam, vecs = sorted_eigh(cov + eps * eye)
    return Whitened(weight, centred @ weight.T, lam, vecs)


def swap_demo_table(offsets: Sequence[float], *, angle: float = DEMO_ANGLE) -> pd.DataFrame:
    """Long table of the demo at each offset: raw, PCA- and ZCA-whitened coordinates per point.

    Columns: ``offset``, ``panel`` (``raw``, ``pca``, ``zca``), ``point`` (1-based), ``moving``,
    ``x``, ``y``, and per offset the eigenvalues ``lambda1 >= lambda2``.
    """
    rows = []
    for offset in offsets:
        points, moving = swap_demo_batch(float(offset), angle=angle)
        pca, zca = whiten_batch(points, "pca"), whiten_batch(points, "zca")
        lam = pca.eigenvalues.tolist()
        for panel, values in (("raw", points), ("pca", pca.outputs), ("zca", zca.outputs)):
            for index, (x, y) in enumerate(values.tolist()):
                rows.append(
                    {
                        "offset": float(offset),
                        "panel": panel,
                        "point": index + 1,
                        "moving": bool(moving[index]),
                        "x": x,
                        "y": y,
                        "lambda1": lam[0],
                        "lambda2": lam[1],
                    }
                )
    return pd.DataFrame(rows)


_PANELS = (("raw", "the batch"), ("pca", "PCA-whitened"), ("zca", "ZCA-whitened"))


def _demo_traces(offset: float, angle: float) -> tuple[list[go.Scatter], str]:
    points, moving = swap_demo_batch(offset, angle=angle)
    pca, zca = whiten_batch(points, "pca"), whiten_batch(points, "zca")
    fixed = ~moving
    labels = [str(i + 1) for i in range(int(fixed.sum()))]
    traces: list[go.Scatter] = []
    for column, values in enumerate((points, pca.outputs, zca.outputs), start=1):
        axis = "" if column == 1 else str(column)
        common = {"xaxis": f"x{axis}", "yaxis": f"y{axis}", "showlegend": column == 1}
        traces.append(
            go.Scatter(
                x=values[fixed, 0].tolist(),
                y=values[fixed, 1].tolist(),
                mode="markers+text",
                text=labels,
                textposition="top right",
                marker={"size": 9, "color": list(DEMO_COLORS)},
                name="fixed points (numbered)",
                legendgroup="fixed",
                **common,
            )
        )
        traces.append(
            go.Scatter(
                x=values[moving, 0].tolist(),
                y=values[moving, 1].tolist(),
                mode="markers",
                marker={"size": 11, "color": MOVING_COLOR, "symbol": "diamond"},
                name="moving points",
                legendgroup="moving",
                **common,
            )
        )
    for k, dash in ((0, "solid"), (1, "dash")):
        half = 2.0 * math.sqrt(float(pca.eigenvalues[k])) * pca.eigenvectors[:, k]
        traces.append(
            go.Scatter(
                x=[-float(half[0]), float(half[0])],
                y=[-float(half[1]), float(half[1])],
                mode="lines",
                line={"color": "black", "dash": dash, "width": 2},
                name=f"PCA axis {k + 1} (±2 std)",
                xaxis="x",
                yaxis="y",
            )
        )
    lam = pca.eigenvalues.tolist()
    first = "u1" if abs(float(pca.eigenvectors[:, 0] @ _frame(angle)[:, 0])) > 0.5 else "u2"
    title = (
        f"moving points at ±{offset:.2f}·u2: λ1 = {lam[0]:.3f}, λ2 = {lam[1]:.3f}"
        f"<br>PCA axis 1 (largest variance) is {first}"
    )
    return traces, title


def swap_demo_figure(
    offsets: float | Sequence[float], *, angle: float = DEMO_ANGLE, active: int = 0
) -> go.Figure:
    """The demo batch and its PCA and ZCA whitening side by side (DBN Fig. 1).

    One offset: a plain figure (the live panel). Several: one slider frame per offset, so the
    static page can move the points without a kernel. Axes are fixed across frames.
    """
    values = [float(offsets)] if isinstance(offsets, (int, float)) else [float(o) for o in offsets]
    if not values:
        raise ValueError("offsets must hold at least one value")
    figure = make_subplots(
        rows=1, cols=3, subplot_titles=[title for _, title in _PANELS], horizontal_spacing=0.07
    )
    frames = []
    for value in values:
        traces, title = _demo_traces(value, angle)
        frames.append(go.Frame(name=f"{value:.2f}", data=traces, layout={"title": title}))
    active = min(max(active, 0), len(frames) - 1)
    start = frames[active]
    for trace in start.data:
        figure.add_trace(trace)
    limit_raw = max(4.0, 1.15 * max(values) + 0.5)
    limit_white = 2.6
    for column in (1, 2, 3):
        limit = limit_raw if column == 1 else limit_white
        title = ("x₁", "x₂") if column == 1 else ("whitened coordinate 1", "whitened coordinate 2")
        figure.update_xaxes(range=[-limit, limit], title=title[0], row=1, col=column)
        figure.update_yaxes(
            range=[-limit, limit],
            title=title[1],
            scaleanchor=f"x{'' if column == 1 else column}",
            row=1,
            col=column,
        )
    figure.update_layout(
        title=start.layout.title.text,
        height=520 if len(frames) > 1 else 440,
        legend={"orientation": "h", "x": 0.0, "y": -0.2, "yanchor": "top"},
        margin={"b": 40, "t": 110},
    )
    if len(frames) > 1:
        figure.frames = frames
        figure.update_layout(
            sliders=[
                {
                    "active": active,
                    "currentvalue": {"prefix": "offset of the moving points = "},
                    "pad": {"t": 90},
                    "steps": [
                        {
                            "label": frame.name,
                            "method": "animate",
                            "args": [
                                [frame.name],
                                {
                                    "mode": "immediate",
                                    "frame": {"duration": 0, "redraw": True},
                                    "transition": {"duration": 0},
                                },
                            ],
                        }
                        for frame in frames
                    ],
                }
            ]
        )
    return figure


# --- consecutive mini-batches of real activations -------------------------------------------------


@dataclass(frozen=True)
class BatchMoments:
    """Means (B, d) and biased covariances (B, d, d) of B consecutive mini-batches (float64)."""

    means: Tensor
    covariances: Tensor


def consecutive_batches(x: Tensor, batch_size: int, count: int, *, seed: int = 0) -> BatchMoments:
    """Moments of ``count`` consecutive mini-batches of the rows of ``x`` (n×d).

    Drawn like a shuffled data loader with ``drop_last``: batches are disjoint slices of a random
    permutation, and a fresh permutation starts when the next slice would not fit.
    """
    check_tensor(x, "x", min_dim=2)
    check_positive_int(batch_size, "batch_size", minimum=2)
    check_positive_int(count, "count")
    n = x.shape[0]
    if x.dim() != 2 or batch_size > n:
        raise ValueError(
            f"x must be an n×d matrix with n >= batch_size = {batch_size}, got {tuple(x.shape)}"
        )
    data = x.detach().to(F64)
    check_finite(data, "x")
    generator = torch.Generator().manual_seed(seed)
    order, position = torch.randperm(n, generator=generator), 0
    indices = []
    for _ in range(count):
        if position + batch_size > n:
            order, position = torch.randperm(n, generator=generator), 0
        indices.append(order[position : position + batch_size])
        position += batch_size
    batches = data[torch.stack(indices)]  # (B, m, d)
    means = batches.mean(dim=1)
    centred = batches - means.unsqueeze(1)
    covariances = centred.mT @ centred / batch_size
    return BatchMoments(means, covariances)


def match_axes(vecs_a: Tensor, vecs_b: Tensor) -> tuple[Tensor, Tensor]:
    """Which axis of basis ``b`` continues each axis of basis ``a`` (columns are eigenvectors).

    Maximizes the total ``|d_aᵀ d'_{π(a)}|`` over permutations ``π`` (Hungarian algorithm).
    Returns ``(π, signs)``: ``π[a]`` is the partner of axis ``a`` and ``signs[a]`` the sign of
    their dot product (−1: the axis flipped). ``π`` is the identity when nothing was reassigned.
    """
    overlap = (vecs_a.to(F64).mT @ vecs_b.to(F64)).numpy()
    rows, cols = linear_sum_assignment(-abs(overlap))
    perm = torch.as_tensor(cols[rows.argsort()], dtype=torch.long)
    signs = torch.sign(torch.as_tensor(overlap[range(len(perm)), perm.numpy()], dtype=F64))
    return perm, torch.where(signs == 0, torch.ones_like(signs), signs)


def _rms(t: Tensor, dim: int | None = None) -> Tensor:
    return t.square().mean().sqrt() if dim is None else t.square().mean(dim=dim).sqrt()


@dataclass(frozen=True)
class AxisSwapResult:
    """Per consecutive pair of batches (``pairs``), per output coordinate (``axes``), and means.

    ``pairs`` columns: ``pair``, ``reassigned_fraction`` (share of PCA axes whose partner in the
    next batch has another rank), ``any_reassigned``, ``sign_flip_fraction``, ``pca_change``,
    ``pca_aligned_change``, ``zca_change`` (RMS change of the whitened coordinates of the probe
    set, in units of the whitened standard deviation), ``cov_change`` (``‖ΔΣ‖_F``), ``zca_weight_change``
    and ``pca_weight_change`` (``‖ΔW‖_F``), ``zca_bound`` (``½ λ_min^{-3/2} ‖ΔΣ‖_F``, the
    Lipschitz bound on ``‖ΔW_ZCA‖_F``). ``axes`` columns: ``axis`` (1-based rank for PCA, feature
    index for ZCA), ``reassigned`` (probability), ``pca_change``, ``pca_aligned_change``,
    ``zca_change``, ``eigenvalue`` (mean over batches), ``relative_gap`` (median of
    ``(λ_k − λ_{k+1})/λ_k``, 0 for the last axis). ``summary``: the means of ``pairs``.
    """

    pairs: pd.DataFrame
    axes: pd.DataFrame
    summary: dict[str, float]


def axis_swap_measurements(
    x: Tensor,
    batch_size: int,
    *,
    pairs: int = 100,
    eps: float = 1e-5,
    seed: int = 0,
    probe: Tensor | None = None,
) -> AxisSwapResult:
    """Stochastic axis swapping of PCA whitening vs ZCA over ``pairs`` consecutive batch pairs.

    ``x`` (n×d): the activations a DBN group would whiten, rows are samples; mini-batches of
    ``batch_size`` rows are drawn as by :func:`consecutive_batches`. Each batch gets its PCA and ZCA
    whitening of ``Σ + eps·I`` (the layer's ``eps``); both whiten the fixed ``probe`` rows (default:
    all of ``x``) with the batch's mean. Between consecutive batches it records which PCA axes
    were reassigned (:func:`match_axes`) and how much each whitened coordinate of the probe moved.
    """
    check_positive_int(pairs, "pairs")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a number > 0, got {eps!r}")
    moments = consecutive_batches(x, batch_size, pairs + 1, seed=seed)
    d = moments.covariances.shape[-1]
    eye = torch.eye(d, dtype=F64)
    probe = x.detach().to(F64) if probe is None else check_tensor(probe, "probe").to(F64)
    if probe.dim() != 2 or probe.shape[1] != d:
        raise ValueError(f"probe must be a k×{d} matrix, got {tuple(probe.shape)}")
    lam, vecs = sorted_eigh(moments.covariances + eps * eye)
    pca = whitening_matrix(moments.covariances, "pca", eps=eps)
    zca = whitening_matrix(moments.covariances, "zca", eps=eps)
    centred = probe.unsqueeze(0) - moments.means.unsqueeze(1)  # (B, k, d)
    out_pca = centred @ pca.mT
    out_zca = centred @ zca.mT
    rows, reassigned, pca_axis, aligned_axis, zca_axis = [], [], [], [], []
    for k in range(pairs):
        perm, signs = match_axes(vecs[k], vecs[k + 1])
        moved = perm != torch.arange(d)
        aligned_next = out_pca[k + 1][:, perm] * signs
        cov_change = float(
            torch.linalg.matrix_norm(moments.covariances[k + 1] - moments.covariances[k])
        )
        lam_min = float(torch.minimum(lam[k, -1], lam[k + 1, -1]))
        delta_pca = out_pca[k + 1] - out_pca[k]
        delta_aligned = aligned_next - out_pca[k]
        delta_zca = out_zca[k + 1] - out_zca[k]
        reassigned.append(moved.to(F64))
        pca_axis.append(_rms(delta_pca, 0))
        aligned_axis.append(_rms(delta_aligned, 0))
        zca_axis.append(_rms(delta_zca, 0))
        rows.append(
            {
                "pair": k + 1,
                "reassigned_fraction": float(moved.to(F64).mean()),
                "any_reassigned": float(moved.any()),
                "sign_flip_fraction": float((signs < 0).to(F64).mean()),
                "pca_change": float(_rms(delta_pca)),
                "pca_aligned_change": float(_rms(delta_aligned)),
                "zca_change": float(_rms(delta_zca)),
                "cov_change": cov_change,
                "pca_weight_change": float(torch.linalg.matrix_norm(pca[k + 1] - pca[k])),
                "zca_weight_change": float(torch.linalg.matrix_norm(zca[k + 1] - zca[k])),
                "zca_bound": 0.5 * lam_min**-1.5 * cov_change,
            }
        )
    table = pd.DataFrame(rows)
    gaps = torch.zeros_like(lam)
    gaps[:, :-1] = (lam[:, :-1] - lam[:, 1:]) / lam[:, :-1]
    axes = pd.DataFrame(
        {
            "axis": list(range(1, d + 1)),
            "reassigned": torch.stack(reassigned).mean(0).tolist(),
            "pca_change": torch.stack(pca_axis).mean(0).tolist(),
            "pca_aligned_change": torch.stack(aligned_axis).mean(0).tolist(),
            "zca_change": torch.stack(zca_axis).mean(0).tolist(),
            "eigenvalue": lam.mean(0).tolist(),
            "relative_gap": gaps.median(dim=0).values.tolist(),
        }
    )
    summary = {name: float(table[name].mean()) for name in table.columns if name != "pair"}
    return AxisSwapResult(table, axes, summary)


# Summary metrics a record stores, and the per-axis fields of its history.
SUMMARY_METRICS: tuple[str, ...] = (
    "reassigned_fraction",
    "any_reassigned",
    "sign_flip_fraction",
    "pca_change",
    "pca_aligned_change",
    "zca_change",
)
AXIS_FIELDS: tuple[str, ...] = (
    "reassigned",
    "pca_change",
    "pca_aligned_change",
    "zca_change",
    "eigenvalue",
    "relative_gap",
)


def axis_profile_table(
    runs: Sequence[tuple[dict, dict]], knobs: Sequence[str], fields: Sequence[str] = AXIS_FIELDS
) -> pd.DataFrame:
    """Mean, std and n over seeds of the per-axis ``fields`` of several runs.

    ``runs`` pairs a point (knob values) with a history holding ``axis`` and one list per field
    (what the ``dbn.axis-swap`` task stores). One row per point × axis: the knobs, ``axis``,
    ``<field>_mean``, ``<field>_std``, ``<field>_n``.
    """
    # grouped under another name: pandas' aggregation reads a group column called "axis" as its
    # own ``axis`` attribute
    key = "_axis"
    rows = [
        {**point, key: axis, **{f: history[f][i] for f in fields}}
        for point, history in runs
        for i, axis in enumerate(history["axis"])
    ]
    stats = [f"{f}_{s}" for f in fields for s in ("mean", "std", "n")]
    if not rows:
        return pd.DataFrame(columns=[*knobs, "axis", *stats])
    grouped = pd.DataFrame(rows).groupby([*knobs, key], sort=True, dropna=False)
    out = grouped[list(fields)].agg(["mean", "std", "count"])
    out.columns = [f"{f}_{'n' if s == 'count' else s}" for f, s in out.columns]
    return out.reset_index().rename(columns={key: "axis"})
