"""What whitening costs (DBN Appendix B, Tables B.1–B.4; PAPERS.md DBN-TB) and how accurate
IterNorm's Newton iteration is compared with the exact eigendecomposition.

* :func:`layer_cost_table` / :func:`appendix_b_table`: the package's layer benchmark
  (:mod:`normbook.layers.benchmark`: DBN and ``BatchNorm2d`` forward+backward, timed alternately)
  as tables, with a CPU thread count chosen for the measurement;
* :func:`paper_time_ratios`: the paper's Table B.1 times (s/epoch) turned into ratios to BN;
* :func:`eigh_batching_table`: one batched eigendecomposition of all groups against a loop over
  the groups (the paper's implementation whitened the groups one after another);
* :func:`newton_residuals`: ``‖W Σ Wᵀ − I‖_F`` of the Newton–Schulz whitening after each number
  of iterations, beside the value the scalar recursion predicts from the eigenvalues of ``Σ``
  alone, and beside exact ZCA.

Timings describe the machine that measured them: only ratios measured on one machine, in one run,
are compared, and the tables carry the device name and thread count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from normbook.analysis._checks import check_finite, check_tensor
from normbook.analysis.eigen_backward import torch_threads
from normbook.layers._checks import check_positive_int
from normbook.layers.whitening import newton_schulz_whitening, whitening_matrix

F64 = torch.float64


def _rows_frame(rows: Sequence[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["ms"] = 1e3 * frame["seconds"]
    frame["bn_ms"] = 1e3 * frame["bn_seconds"]
    frame["group"] = [
        _group_label(g, layer) for g, layer in zip(frame["group_size"], frame["layer"], strict=True)
    ]
    return frame


def _group_label(group_size: Any, layer: str) -> str:
    """``"full"`` for DBN whitening every channel, ``"-"`` for a layer without groups, else G."""
    if group_size is None or pd.isna(group_size):
        return "-" if layer in ("bn", "conv3x3") else "full"
    return str(int(group_size))


def layer_cost_table(
    shape: Sequence[int],
    *,
    group_sizes: Iterable[int | None] = (1, 8, 16, 64),
    methods: Iterable[str] = ("zca", "pca", "newton"),
    backwards: Iterable[str] = ("analytic",),
    repeats: int = 10,
    warmup: int = 2,
    seed: int = 0,
    threads: int | None = None,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """DBN forward+backward time per method × group size on one N×C×H×W input, and ratio to BN.

    Wraps :func:`normbook.layers.benchmark.benchmark_layers` (its rows, plus ``ms``, ``bn_ms`` and
    a ``group`` label, ``"full"`` for whitening all channels). The first row is BatchNorm itself.
    """
    from normbook.layers.benchmark import benchmark_layers

    with torch_threads(threads):
        rows = benchmark_layers(
            device=device,
            shapes=[tuple(shape)],
            group_sizes=tuple(group_sizes),
            methods=tuple(methods),
            backwards=tuple(backwards),
            repeats=repeats,
            warmup=warmup,
            seed=seed,
        )
    return _rows_frame(rows)


def appendix_b_table(
    *,
    shape: Sequence[int] | None = None,
    repeats: int = 10,
    warmup: int = 2,
    seed: int = 0,
    threads: int | None = None,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """DBN Appendix B's case (full ZCA whitening of 64×32×32 maps, batch 64) and a 3×3
    convolution, each timed against BatchNorm2d: :func:`~normbook.layers.benchmark.benchmark_appendix_b`
    as a table with the paper's GPU milliseconds (``paper_ms``). ``shape`` only for quick checks."""
    from normbook.layers.benchmark import APPENDIX_B_SHAPE, benchmark_appendix_b

    with torch_threads(threads):
        rows = benchmark_appendix_b(
            device=device,
            repeats=repeats,
            warmup=warmup,
            seed=seed,
            shape=APPENDIX_B_SHAPE if shape is None else tuple(shape),
        )
    return _rows_frame(rows)


def paper_time_ratios(reported: Iterable[Any], baseline: str, metric: str) -> pd.DataFrame:
    """The paper's times as ratios to its BN time: rows ``group_size``, ``paper_seconds``,
    ``paper_ratio_to_bn``, sorted by group size.

    ``reported``: :class:`~normbook.experiments.spec.Reported` numbers; the one with metric
    ``baseline`` is BN's time, those with ``metric`` and a ``group_size`` in their point are DBN's.
    """
    reported = list(reported)
    base = [r for r in reported if r.metric == baseline]
    if len(base) != 1:
        raise ValueError(f"expected one reported {baseline!r}, found {len(base)}")
    rows = [
        {
            "group_size": int(r.point["group_size"]),
            "paper_seconds": float(r.value),
            "paper_ratio_to_bn": float(r.value) / float(base[0].value),
            "source": r.source,
        }
        for r in reported
        if r.metric == metric and r.point is not None and "group_size" in r.point
    ]
    if not rows:
        raise ValueError(f"no reported {metric!r} with a group_size")
    return pd.DataFrame(rows).sort_values("group_size", ignore_index=True)


def eigh_batching_table(
    channels: int,
    group_sizes: Iterable[int],
    *,
    repeats: int = 20,
    warmup: int = 2,
    seed: int = 0,
    threads: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> pd.DataFrame:
    """Eigendecomposition of ``channels / g`` covariance matrices of size g×g: one batched
    ``torch.linalg.eigh`` call against one call per group (what the paper's Torch7 code did,
    Appendix B: "we whiten each group sequentially"), median seconds on the CPU.

    Rows: ``group_size``, ``groups``, ``batched_ms``, ``loop_ms``, ``loop_over_batched``.
    """
    from normbook.analysis.eigen_backward import _medians

    check_positive_int(channels, "channels")
    check_positive_int(repeats, "repeats")
    check_positive_int(warmup, "warmup", minimum=0)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    with torch_threads(threads):
        for g in group_sizes:
            check_positive_int(g, "group_size")
            if channels % g:
                raise ValueError(f"group size {g} must divide channels {channels}")
            a = torch.randn(channels // g, g, 2 * g, generator=generator, dtype=dtype)
            covs = a @ a.mT / (2 * g) + 1e-3 * torch.eye(g, dtype=dtype)
            batched, loop = _medians(
                [
                    lambda c=covs: torch.linalg.eigh(c),
                    lambda c=covs: [torch.linalg.eigh(m) for m in c],
                ],
                repeats,
                warmup,
            )
            rows.append(
                {
                    "group_size": g,
                    "groups": channels // g,
                    "batched_ms": 1e3 * batched,
                    "loop_ms": 1e3 * loop,
                    "loop_over_batched": loop / batched,
                }
            )
    return pd.DataFrame(rows)


# --- Newton–Schulz accuracy -----------------------------------------------------------------------


def newton_scalar_residuals(normalized_eigenvalues: Tensor, iterations: int) -> Tensor:
    """Eigenvalues ``r_T`` of ``I − W Σ Wᵀ`` after ``T`` Newton–Schulz steps, in exact arithmetic.

    All iterates are polynomials in ``Σ_N = Σ / tr Σ``, so each eigenvalue ``λ`` of ``Σ_N`` runs
    the scalar recursion ``q ← q(3 − q²)/2`` from ``q₀ = √λ``, and ``W Σ Wᵀ`` has eigenvalue
    ``q_T²``; equivalently ``r ← r²(3 + r)/4`` from ``r₀ = 1 − λ``. Returns ``1 − q_T²``.
    """
    check_positive_int(iterations, "iterations", minimum=0)
    r = 1.0 - normalized_eigenvalues.to(F64)
    for _ in range(iterations):
        r = r.square() * (3.0 + r) / 4.0
    return r


def newton_residuals(
    covariances: Tensor, iterations: Sequence[int], *, eps: float = 1e-5, dtype: torch.dtype = F64
) -> pd.DataFrame:
    """``‖W Σ_ε Wᵀ − I‖_F`` of Newton–Schulz whitening (IterNorm) after each ``T`` in ``iterations``.

    ``covariances``: (B, g, g) or (g, g) symmetric positive semi-definite; ``Σ_ε = Σ + eps·I`` (the
    layer's regularized covariance). Computed in ``dtype``; rows per ``T``: ``iterations``,
    ``residual`` (mean over the B matrices), ``residual_max``, ``predicted`` (the exact-arithmetic
    value from :func:`newton_scalar_residuals`, mean over B), ``zca_residual`` (exact ZCA
    ``(Σ_ε)^{-1/2}`` in the same dtype), and ``min_normalized_eigenvalue`` (smallest ``λ/tr Σ_ε``,
    which sets how many steps are needed).
    """
    check_tensor(covariances, "covariances", min_dim=2)
    cov = covariances.detach().to(F64)
    if cov.dim() == 2:
        cov = cov.unsqueeze(0)
    if cov.dim() != 3 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"covariances must be (B, g, g), got {tuple(covariances.shape)}")
    check_finite(cov, "covariances")
    g = cov.shape[-1]
    eye = torch.eye(g, dtype=F64)
    cov = cov + eps * eye
    trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1, keepdim=True)
    normalized = torch.linalg.eigvalsh(cov) / trace
    work = cov.to(dtype)
    eye_w = eye.to(dtype)

    def residual(weight: Tensor) -> Tensor:
        return torch.linalg.matrix_norm((weight @ work @ weight.mT - eye_w).to(F64))

    zca = residual(whitening_matrix(work, "zca")).mean().item()
    rows = []
    for steps in iterations:
        check_positive_int(steps, "iterations")
        measured = residual(newton_schulz_whitening(work, steps))
        predicted = torch.linalg.vector_norm(newton_scalar_residuals(normalized, steps), dim=-1)
        rows.append(
            {
                "iterations": steps,
                "residual": float(measured.mean()),
                "residual_max": float(measured.max()),
                "predicted": float(predicted.mean()),
                "zca_residual": zca,
                "min_normalized_eigenvalue": float(normalized.min()),
            }
        )
    return pd.DataFrame(rows)
