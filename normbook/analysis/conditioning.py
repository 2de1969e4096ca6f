"""Conditioning and whitening: why normalized inputs make gradient descent fast, and what whitening
adds to standardization.

Gradient descent on a quadratic converges at a rate set by the condition number κ of its Hessian:
at the optimal step size ``2/(λ_min + λ_max)`` the error contracts by ``(κ − 1)/(κ + 1)`` per step
(LeCun et al., "Efficient BackProp", 1998; restated in the IC paper's Sec. 2). For least squares the
Hessian is the inputs' second-moment matrix ``Σ + μμᵀ``: a mean inflates κ, unequal scales and
correlations inflate it further; centring, scaling and decorrelating (whitening, DBN Eq. 3,
PAPERS.md DBN-EQ3) remove one cause each. This module holds the pieces the foundations chapters
measure with: correlated inputs with exact moments, the four input preprocessings, the
least-squares quadratic, gradient descent with its predicted iteration count, whitening identities
(non-uniqueness up to rotation, ZCA's minimal distortion, the Mahalanobis norm), the cost of
whitening measured against BatchNorm, and the two plotly figures those chapters draw.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from normbook.layers._checks import check_positive_int
from normbook.layers.whitening import whitening_matrix

F64 = torch.float64

# Input preprocessings, each removing one more cause of ill-conditioning (LeCun et al. 1998):
# raw x; centred x − μ; standardized (x − μ)/σ per coordinate (what BatchNorm does); ZCA-whitened
# Σ^{-1/2}(x − μ) (what DBN does); PCA-whitened Λ^{-1/2}Dᵀ(x − μ) (DBN's stochastic-axis-swapping
# baseline). Targets are centred together with centred inputs (a bias absorbs the mean).
PREPROCESSINGS: tuple[str, ...] = ("raw", "center", "standardize", "whiten", "pca-whiten")
CENTRED: frozenset[str] = frozenset({"center", "standardize", "whiten", "pca-whiten"})


def _check_choice(value: object, name: str, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def _check_square(matrix: object, name: str) -> Tensor:
    if not isinstance(matrix, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(matrix).__name__}")
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty square matrix, got shape {tuple(matrix.shape)}"
        )
    return matrix


def _check_tolerance(tolerance: object) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
        raise TypeError(f"tolerance must be a float, got {type(tolerance).__name__}")
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"tolerance must lie in (0, 1), got {tolerance}")
    return float(tolerance)


# --- spectra ------------------------------------------------------------------------------------


def symmetric_eigenvalues(matrix: Tensor) -> Tensor:
    """Eigenvalues (ascending, float64) of the symmetric part of ``matrix``."""
    matrix = _check_square(matrix, "matrix").to(F64)
    return torch.linalg.eigvalsh(0.5 * (matrix + matrix.T))


def condition_number(matrix: Tensor) -> float:
    """κ = λ_max / λ_min of a symmetric positive semi-definite ``matrix`` (``inf`` if singular).

    Computed in float64 from the eigenvalues of the symmetric part; an eigenvalue ``<= 0`` (a
    singular or indefinite matrix, up to round-off) gives ``inf``.
    """
    lam = symmetric_eigenvalues(matrix)
    if lam[0] <= 0:
        return math.inf
    return float(lam[-1] / lam[0])


def optimal_step_size(hessian: Tensor) -> float:
    """The step size ``2/(λ_min + λ_max)`` that minimizes the worst per-step contraction of gradient
    descent on a quadratic with this Hessian (LeCun et al. 1998)."""
    lam = symmetric_eigenvalues(hessian)
    if lam[0] < 0:
        raise ValueError(
            f"hessian must be positive semi-definite; its smallest eigenvalue is {lam[0]}"
        )
    return float(2.0 / (lam[0] + lam[-1]))


def contraction_rate(hessian: Tensor, step_size: float) -> float:
    """Spectral radius ``max_k |1 − η λ_k|`` of ``I − ηH``: the per-step error contraction."""
    lam = symmetric_eigenvalues(hessian)
    return float((1.0 - step_size * lam).abs().max())


def contraction_factor(kappa: float) -> float:
    """``(κ − 1)/(κ + 1)``: the error contraction per step at the optimal step size."""
    if not kappa >= 1.0:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    if math.isinf(kappa):
        return 1.0
    return (kappa - 1.0) / (kappa + 1.0)


def predicted_iterations(kappa: float, tolerance: float) -> int:
    """Steps of gradient descent at the optimal step size until the relative excess loss
    ``(L_t − L*)/(L_0 − L*)`` falls to ``tolerance``: ``⌈ln ε / (2 ln q)⌉`` with ``q = (κ−1)/(κ+1)``.

    Exact in two dimensions (both eigen-components shrink by exactly ``q`` per step); an upper
    bound in higher dimensions. ``κ = 1`` (whitened) gives one step; ``κ = inf`` raises.
    """
    tolerance = _check_tolerance(tolerance)
    q = contraction_factor(kappa)
    if q >= 1.0:
        raise ValueError("an infinite condition number never reaches the tolerance")
    if q == 0.0:
        return 1
    return max(1, math.ceil(math.log(tolerance) / (2.0 * math.log(q))))


# --- inputs -------------------------------------------------------------------------------------


def bivariate_covariance(rho: float, scales: Sequence[float] = (1.0, 1.0)) -> Tensor:
    """The 2×2 covariance ``diag(s) [[1, ρ], [ρ, 1]] diag(s)`` (float64); ``|ρ| < 1``, ``s > 0``."""
    if isinstance(rho, bool) or not isinstance(rho, (int, float)):
        raise TypeError(f"rho must be a float, got {type(rho).__name__}")
    if not -1.0 < rho < 1.0:
        raise ValueError(f"rho must lie in (-1, 1), got {rho}")
    s = torch.as_tensor(scales, dtype=F64)
    if s.shape != (2,) or not bool((s > 0).all()):
        raise ValueError(f"scales must be two positive numbers, got {scales!r}")
    corr = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=F64)
    return s[:, None] * corr * s[None, :]


def correlated_inputs(
    num_samples: int,
    covariance: Tensor,
    mean: float | Sequence[float] | Tensor = 0.0,
    *,
    seed: int = 0,
    exact: bool = True,
) -> Tensor:
    """``num_samples`` Gaussian inputs (rows, float64) with the given mean and covariance.

    With ``exact`` the *sample* mean and biased (1/m) covariance equal ``mean`` and ``covariance``
    to round-off: the Gaussian draw is centred and whitened by its own moments before being
    coloured, so a chapter's ρ is the data's ρ. Needs ``num_samples > d`` when exact.
    """
    check_positive_int(num_samples, "num_samples", minimum=2)
    covariance = _check_square(covariance, "covariance").to(F64)
    d = covariance.shape[0]
    if exact and num_samples <= d:
        raise ValueError(f"exact moments need num_samples > d = {d}, got {num_samples}")
    mu = torch.as_tensor(mean, dtype=F64).expand(d).clone()
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(num_samples, d, generator=generator, dtype=F64)
    if exact:
        z = z - z.mean(dim=0)
        z = z @ whitening_matrix(z.T @ z / num_samples, "zca").T
    chol = torch.linalg.cholesky(covariance)
    return z @ chol.T + mu


def moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Sample mean and biased (1/m) covariance of the rows of ``x`` (float64), as BN/DBN use."""
    x = x.to(F64)
    mu = x.mean(dim=0)
    xc = x - mu
    return mu, xc.T @ xc / x.shape[0]


def second_moment(x: Tensor) -> Tensor:
    """``(1/m) Σ x_i x_iᵀ = Σ + μμᵀ``: the least-squares Hessian of inputs ``x`` (float64)."""
    x = x.to(F64)
    return x.T @ x / x.shape[0]


def preprocess_inputs(x: Tensor, method: str, *, eps: float = 0.0) -> Tensor:
    """``x`` (m×d) after one of :data:`PREPROCESSINGS`, with the batch's own statistics (float64).

    ``standardize`` divides by ``sqrt(var + eps)`` (BatchNorm's training-mode transform, no affine);
    ``whiten``/``pca-whiten`` multiply by the ZCA/PCA whitening matrix of ``Σ + eps·I``
    (:func:`normbook.layers.whitening_matrix`, DBN Eq. 3–4).
    """
    _check_choice(method, "method", PREPROCESSINGS)
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"x must be an m×d tensor, got {getattr(x, 'shape', type(x).__name__)}")
    x = x.to(F64)
    if method == "raw":
        return x.clone()
    mu, cov = moments(x)
    xc = x - mu
    if method == "center":
        return xc
    if method == "standardize":
        return xc / (cov.diagonal() + eps).sqrt()
    kind = "zca" if method == "whiten" else "pca"
    return xc @ whitening_matrix(cov, kind, eps=eps).T


# --- least squares and gradient descent ---------------------------------------------------------


@dataclass(frozen=True)
class LeastSquares:
    """The quadratic ``L(w) = (1/2m)‖Xw − y‖² = ½ wᵀHw − bᵀw + c`` (float64).

    ``H = XᵀX/m`` is the inputs' second moment, ``b = Xᵀy/m``, ``c = ‖y‖²/(2m)``.
    """

    hessian: Tensor
    linear: Tensor
    constant: float

    @classmethod
    def from_data(cls, x: Tensor, y: Tensor) -> LeastSquares:
        """The least-squares quadratic of inputs ``x`` (m×d) and targets ``y`` (m)."""
        if not isinstance(x, Tensor) or x.dim() != 2:
            raise ValueError(f"x must be an m×d tensor, got {getattr(x, 'shape', None)}")
        if not isinstance(y, Tensor) or y.shape != (x.shape[0],):
            raise ValueError(
                f"y must be a tensor of shape ({x.shape[0]},), got {getattr(y, 'shape', None)}"
            )
        x, y = x.to(F64), y.to(F64)
        m = x.shape[0]
        return cls(x.T @ x / m, x.T @ y / m, float(y @ y / (2 * m)))

    @property
    def dim(self) -> int:
        """Number of weights ``d``."""
        return self.hessian.shape[0]

    def loss(self, w: Tensor) -> Tensor:
        """``L(w)`` for ``w`` of shape (d,) or a batch (..., d)."""
        w = w.to(F64)
        quad = 0.5 * ((w @ self.hessian) * w).sum(-1)
        return quad - w @ self.linear + self.constant

    def gradient(self, w: Tensor) -> Tensor:
        """``∇L(w) = Hw − b``."""
        return w.to(F64) @ self.hessian - self.linear

    @property
    def minimizer(self) -> Tensor:
        """``w*`` with ``Hw* = b`` (least-norm solution when H is singular)."""
        return torch.linalg.lstsq(self.hessian, self.linear[:, None]).solution[:, 0]

    def excess_loss(self, w: Tensor) -> Tensor:
        """``L(w) − L* = ½ (w − w*)ᵀ H (w − w*)``, computed from the error (no cancellation)."""
        e = w.to(F64) - self.minimizer
        return 0.5 * ((e @ self.hessian) * e).sum(-1)

    @property
    def condition_number(self) -> float:
        """κ of the Hessian."""
        return condition_number(self.hessian)


@dataclass(frozen=True)
class GradientDescentRun:
    """A gradient-descent run on a :class:`LeastSquares` problem.

    ``steps`` are the recorded iteration numbers (0 = start; all of them, or an even thinning
    that keeps the first and last), ``iterates`` the weights there (len(steps)×d) and
    ``relative_excess`` ``(L_t − L*)/(L_0 − L*)`` there. ``iterations`` is the first step whose
    relative excess is ``<= tolerance`` (None if ``max_iterations`` ran out).
    """

    steps: list[int]
    iterates: Tensor
    relative_excess: list[float]
    iterations: int | None
    step_size: float
    tolerance: float

    @property
    def converged(self) -> bool:
        """Whether the tolerance was reached."""
        return self.iterations is not None


def _thin(count: int, max_records: int | None) -> list[int]:
    """Indices 0..count−1, evenly thinned to at most ``max_records`` (first and last kept)."""
    if max_records is None or count <= max_records:
        return list(range(count))
    picks = {round(i * (count - 1) / (max_records - 1)) for i in range(max_records)}
    return sorted(picks)


def gradient_descent(
    problem: LeastSquares,
    start: Tensor | None = None,
    *,
    step_size: float | None = None,
    tolerance: float = 1e-8,
    max_iterations: int = 100_000,
    max_records: int | None = 200,
) -> GradientDescentRun:
    """Full-batch gradient descent ``w ← w − η ∇L(w)`` from ``start`` (default 0), float64.

    ``step_size`` defaults to :func:`optimal_step_size` of the problem's Hessian. Stops at the
    first step where ``(L_t − L*)/(L_0 − L*) <= tolerance`` or after ``max_iterations``; the
    path is kept at every step (``max_records=None``) or thinned to ``max_records`` points.
    """
    tolerance = _check_tolerance(tolerance)
    check_positive_int(max_iterations, "max_iterations")
    if max_records is not None:
        check_positive_int(max_records, "max_records", minimum=2)
    eta = optimal_step_size(problem.hessian) if step_size is None else float(step_size)
    if not eta > 0:
        raise ValueError(f"step_size must be > 0, got {eta}")
    w = torch.zeros(problem.dim, dtype=F64) if start is None else start.to(F64).clone()
    if w.shape != (problem.dim,):
        raise ValueError(f"start must have shape ({problem.dim},), got {tuple(w.shape)}")
    initial = float(problem.excess_loss(w))
    path, excess = [w], [1.0]
    iterations: int | None = 0 if initial == 0.0 else None
    step = 0
    while iterations is None and step < max_iterations:
        w = w - eta * problem.gradient(w)
        step += 1
        ratio = float(problem.excess_loss(w)) / initial
        path.append(w)
        excess.append(ratio)
        if ratio <= tolerance:
            iterations = step
        elif not math.isfinite(ratio):
            break  # diverged (a step size above 2/λ_max)
    keep = _thin(len(path), max_records)
    return GradientDescentRun(
        steps=keep,
        iterates=torch.stack([path[i] for i in keep]),
        relative_excess=[excess[i] for i in keep],
        iterations=iterations,
        step_size=eta,
        tolerance=tolerance,
    )


@dataclass(frozen=True)
class ConditioningResult:
    """One preprocessing of one input distribution: its problem, run, κ and predicted steps."""

    method: str
    problem: LeastSquares
    run: GradientDescentRun
    condition_number: float
    predicted_iterations: int


def least_squares_inputs(
    rho: float,
    mean: float = 0.0,
    scales: Sequence[float] = (1.0, 1.0),
    *,
    num_samples: int = 256,
    weights: Sequence[float] = (1.0, -1.0),
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """The 2-D least-squares data of the chapter: inputs with exact correlation ``rho``, mean
    ``mean·(1, 1)`` and standard deviations ``scales``; noise-free targets ``y = x·weights``."""
    x = correlated_inputs(num_samples, bivariate_covariance(rho, scales), mean, seed=seed)
    return x, x @ torch.as_tensor(weights, dtype=F64)


def conditioning_comparison(
    rho: float,
    mean: float = 0.0,
    scales: Sequence[float] = (1.0, 1.0),
    *,
    methods: Iterable[str] = ("raw", "center", "standardize", "whiten"),
    num_samples: int = 256,
    tolerance: float = 1e-8,
    max_iterations: int = 100_000,
    max_records: int | None = 200,
    seed: int = 0,
) -> dict[str, ConditioningResult]:
    """Gradient descent (optimal step, from 0) on the same data under each preprocessing.

    Centred preprocessings fit centred targets. Returns one :class:`ConditioningResult` per
    method, in the order given.
    """
    x, y = least_squares_inputs(rho, mean, scales, num_samples=num_samples, seed=seed)
    results = {}
    for method in methods:
        inputs = preprocess_inputs(x, method)
        targets = y - y.mean() if method in CENTRED else y
        problem = LeastSquares.from_data(inputs, targets)
        kappa = problem.condition_number
        run = gradient_descent(
            problem, tolerance=tolerance, max_iterations=max_iterations, max_records=max_records
        )
        results[method] = ConditioningResult(
            method, problem, run, kappa, predicted_iterations(kappa, tolerance)
        )
    return results


def comparison_table(results: Mapping[str, ConditioningResult]) -> pd.DataFrame:
    """One row per preprocessing: κ, contraction per step, predicted and measured iterations."""
    return pd.DataFrame(
        [
            {
                "preprocessing": name,
                "condition number": r.condition_number,
                "contraction per step": contraction_factor(r.condition_number),
                "predicted iterations": r.predicted_iterations,
                "measured iterations": r.run.iterations,
            }
            for name, r in results.items()
        ]
    )


# --- whitening identities (DBN Eq. 3; Kessy et al. 2018) ----------------------------------------


def random_orthogonal(d: int, *, seed: int = 0) -> Tensor:
    """A Haar-random d×d orthogonal matrix (float64): QR of a Gaussian with R's signs fixed."""
    check_positive_int(d, "d")
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=F64))
    return q * torch.sign(torch.diagonal(r))


def whitening_error(weight: Tensor, covariance: Tensor) -> float:
    """``max |W Σ Wᵀ − I|``: zero (to round-off) exactly when ``W`` whitens ``Σ``."""
    weight, covariance = weight.to(F64), covariance.to(F64)
    eye = torch.eye(weight.shape[0], dtype=F64)
    return float((weight @ covariance @ weight.T - eye).abs().max())


def whitening_distortion(weight: Tensor, x: Tensor) -> float:
    """Mean squared distance ``E‖x_c − W x_c‖²`` between centred inputs and their transform: the
    distortion ZCA minimizes among all whitening matrices (Kessy et al. 2018)."""
    x = x.to(F64)
    xc = x - x.mean(dim=0)
    return float(((xc - xc @ weight.to(F64).T) ** 2).sum(-1).mean())


def mahalanobis_distance(x: Tensor, mean: Tensor, covariance: Tensor) -> Tensor:
    """``sqrt((x − μ)ᵀ Σ^{-1} (x − μ))`` for each row of ``x`` (float64, by a solve, not an inverse)."""
    diff = x.to(F64) - mean.to(F64)
    solved = torch.linalg.solve(covariance.to(F64), diff.T).T
    return (diff * solved).sum(-1).clamp_min(0).sqrt()


def rotated_covariance(angle: float, eigenvalues: Sequence[float]) -> Tensor:
    """``V diag(λ) Vᵀ`` with ``V`` the rotation by ``angle`` radians (2×2, float64): a covariance
    whose eigenvectors and eigenvalues are set directly (for the PCA axis-swap examples)."""
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, -s], [s, c]], dtype=F64)
    return rot @ torch.diag(torch.as_tensor(eigenvalues, dtype=F64)) @ rot.T


def whitened_coordinates(
    point: Sequence[float],
    covariances: Mapping[float, Tensor],
    methods: Sequence[str] = ("pca", "zca"),
) -> pd.DataFrame:
    """Coordinates of one ``point`` under the PCA and ZCA whitening of each covariance.

    ``covariances`` maps a label (e.g. an eigenvalue gap) to a d×d covariance. Long table: one
    row per label × method × coordinate, columns ``label``, ``method``, ``coordinate``, ``value``,
    ``trace`` (``"<method> x<k>"``).
    """
    p = torch.as_tensor(point, dtype=F64)
    rows = []
    for label, cov in covariances.items():
        for method in methods:
            values = whitening_matrix(cov.to(F64), method) @ p
            for k, value in enumerate(values.tolist(), start=1):
                rows.append(
                    {
                        "label": label,
                        "method": method,
                        "coordinate": k,
                        "value": value,
                        "trace": f"{method.upper()} coordinate {k}",
                    }
                )
    return pd.DataFrame(rows)


# --- cost of whitening against BatchNorm (DBN Sec. 3.4 and Appendix B) --------------------------


def whitening_cost_ratios(
    dims: Iterable[int],
    batch_size: int,
    *,
    group_sizes: Iterable[int | None] = (None, 16),
    repeats: int = 10,
    warmup: int = 2,
    device: str | torch.device = "cpu",
    seed: int = 0,
    threads: int | None = None,
) -> pd.DataFrame:
    """Forward+backward time of :class:`~normbook.layers.DecorrelatedBatchNorm` (ZCA, analytic
    backward) relative to ``torch.nn.BatchNorm2d`` on an ``m×d`` batch, for each ``d``.

    ``group_size=None`` whitens all ``d`` features together (cost ``O(d²·max(m, d))``); an integer
    whitens groups of that size (``O(m·d·k_G)``). The two layers are timed alternately on the
    same input (:func:`normbook.layers.benchmark.benchmark_layers`), so the ratio survives load
    changes that absolute times do not. ``threads`` sets torch's CPU thread count for the
    measurement (restored afterwards; None leaves it): one thread is far less sensitive to other
    processes on a shared machine. Columns: ``d``, ``m``, ``group_size``, ``whitening`` (label),
    ``dbn_ms``, ``bn_ms``, ``ratio_to_bn``.
    """
    from normbook.layers.benchmark import benchmark_layers

    check_positive_int(batch_size, "batch_size", minimum=2)
    if threads is not None:
        check_positive_int(threads, "threads")
    group_sizes = tuple(group_sizes)
    rows = []
    previous = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        timings = []
        for d in dims:
            check_positive_int(d, "d")
            timed = benchmark_layers(
                device=device,
                shapes=[(batch_size, d, 1, 1)],
                group_sizes=group_sizes,
                methods=("zca",),
                repeats=repeats,
                warmup=warmup,
                seed=seed,
            )
            timings.append((d, timed))
    finally:
        torch.set_num_threads(previous)
    for d, timed in timings:
        for row in timed[1:]:  # the first row is BatchNorm against itself
            rows.append(
                {
                    "d": d,
                    "m": batch_size,
                    "group_size": row["group_size"],
                    "whitening": whitening_label(row["group_size"]),
                    "dbn_ms": 1e3 * row["seconds"],
                    "bn_ms": 1e3 * row["bn_seconds"],
                    "ratio_to_bn": row["ratio_to_bn"],
                }
            )
    return pd.DataFrame(rows)


def whitening_label(group_size: Any) -> str:
    """``"full whitening"`` for ``None``/NaN, else ``"groups of <k>"`` (figure legends)."""
    if group_size is None or (isinstance(group_size, float) and math.isnan(group_size)):
        return "full whitening"
    return f"groups of {int(group_size)}"


def log_log_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x``: the exponent ``p`` of ``y ∝ x^p``."""
    lx = torch.log(torch.as_tensor(list(x), dtype=F64))
    ly = torch.log(torch.as_tensor(list(y), dtype=F64))
    if lx.numel() < 2:
        raise ValueError("log_log_slope needs at least two points")
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())


# --- figures ------------------------------------------------------------------------------------

TITLES: dict[str, str] = {
    "raw": "raw inputs",
    "center": "centred",
    "standardize": "standardized (BN)",
    "whiten": "ZCA-whitened (DBN)",
    "pca-whiten": "PCA-whitened",
}


def _window(points: Tensor, pad: float = 0.15) -> tuple[tuple[float, float], tuple[float, float]]:
    """A square window around ``points`` (n×2), so that equal axes show the true ellipse shape."""
    low, high = points.min(dim=0).values, points.max(dim=0).values
    centre = (low + high) / 2
    half = float((high - low).max()) / 2 * (1 + pad) + 1e-9
    return (
        (float(centre[0]) - half, float(centre[0]) + half),
        (float(centre[1]) - half, float(centre[1]) + half),
    )


def _rounded(values: Tensor, digits: int) -> list:
    """``values`` as (nested) lists of floats rounded to ``digits`` decimals (smaller pages)."""
    return torch.round(values.to(F64), decimals=digits).tolist()


def gd_paths_figure(
    results: Mapping[str, ConditioningResult],
    *,
    title: str = "",
    columns: int = 2,
    grid: int = 60,
    max_path: int = 400,
    levels: tuple[float, float, float] = (-8.0, 1.0, 0.5),
) -> Any:
    """Loss contours and gradient-descent paths, one panel per preprocessing (plotly).

    Each panel draws ``log10`` of the relative excess loss over the weight plane of that
    preprocessing (equal axes, so round contours mean a well-conditioned problem; contour levels
    ``(start, end, size)`` shared by all panels), the path from 0 to the minimizer (its first
    ``max_path`` recorded iterates: run with ``max_records=None`` to see every step), and states
    κ and the measured and predicted iterations in its title.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(results)
    rows = -(-len(names) // columns)
    subtitles = []
    for name in names:
        r = results[name]
        steps = r.run.iterations
        measured = "not reached" if steps is None else f"{steps} step{'s' if steps != 1 else ''}"
        subtitles.append(
            f"{TITLES.get(name, name)}: κ = {r.condition_number:.3g},"
            f" {measured} (predicted {r.predicted_iterations})"
        )
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=subtitles)
    for index, name in enumerate(names):
        r = results[name]
        row, col = index // columns + 1, index % columns + 1
        w_star = r.problem.minimizer
        path = r.run.iterates[:max_path]
        steps_shown = r.run.steps[:max_path]
        points = torch.cat([path, w_star[None]])
        (x0, x1), (y0, y1) = _window(points, pad=0.3)
        gx = torch.linspace(x0, x1, grid, dtype=F64)
        gy = torch.linspace(y0, y1, grid, dtype=F64)
        ww = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)
        initial = float(r.problem.excess_loss(r.run.iterates[0])) or 1.0
        z = torch.log10(r.problem.excess_loss(ww) / initial + 10.0 ** (levels[0] - 1))
        figure.add_trace(
            go.Contour(  # rounded: the page stores every number of the figure as text
                x=_rounded(gx, 5),
                y=_rounded(gy, 5),
                z=_rounded(z, 3),
                colorscale="Blues",
                reversescale=True,
                showscale=index == 0,
                colorbar={"title": "log10 rel. excess loss", "len": 0.9},
                contours={
                    "coloring": "fill",
                    "showlines": True,
                    "start": levels[0],
                    "end": levels[1],
                    "size": levels[2],
                },
                zmin=levels[0],
                zmax=levels[1],
                zauto=False,
                hovertemplate="w1=%{x:.3g}<br>w2=%{y:.3g}<br>log10 excess=%{z:.2f}<extra></extra>",
                name=f"{name} loss",
                showlegend=False,
            ),
            row=row,
            col=col,
        )
        figure.add_trace(
            go.Scatter(
                x=_rounded(path[:, 0], 6),
                y=_rounded(path[:, 1], 6),
                mode="lines+markers",
                line={"color": "#d62728", "width": 1.5},
                marker={"size": 3},
                name="GD path",
                legendgroup="path",
                showlegend=index == 0,
                customdata=steps_shown,
                hovertemplate="step %{customdata}<br>w=(%{x:.3g}, %{y:.3g})<extra></extra>",
            ),
            row=row,
            col=col,
        )
        figure.add_trace(
            go.Scatter(
                x=[float(w_star[0])],
                y=[float(w_star[1])],
                mode="markers",
                marker={"symbol": "star", "size": 12, "color": "#2ca02c"},
                name="minimizer w*",
                legendgroup="star",
                showlegend=index == 0,
            ),
            row=row,
            col=col,
        )
        axis = "" if index == 0 else str(index + 1)
        figure.update_xaxes(title_text="weight w1", range=[x0, x1], row=row, col=col)
        figure.update_yaxes(
            title_text="weight w2",
            range=[y0, y1],
            scaleanchor=f"x{axis}",
            scaleratio=1,
            row=row,
            col=col,
        )
    figure.update_annotations(font_size=12)
    figure.update_layout(title=title, height=430 * rows, legend={"orientation": "h", "y": -0.08})
    return figure


def scatter_panels(
    panels: Mapping[str, Tensor],
    *,
    color: Sequence[float] | None = None,
    color_title: str = "",
    title: str = "",
    axis_titles: tuple[str, str] = ("coordinate 1", "coordinate 2"),
) -> Any:
    """Side-by-side 2-D scatter plots with equal axes (plotly), points coloured by ``color``.

    For comparing what transforms do to one point cloud: the same colour marks the same sample in
    every panel, so a rotation (PCA whitening) shows as rotated colours.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(panels)
    figure = make_subplots(rows=1, cols=len(names), subplot_titles=names)
    for index, name in enumerate(names):
        pts = panels[name].to(F64)
        (x0, x1), (y0, y1) = _window(pts, pad=0.1)
        marker = {"size": 4}
        if color is not None:
            marker.update(
                color=list(color),
                colorscale="Viridis",
                showscale=index == len(names) - 1,
                colorbar={"title": color_title},
            )
        figure.add_trace(
            go.Scatter(
                x=_rounded(pts[:, 0], 4),
                y=_rounded(pts[:, 1], 4),
                mode="markers",
                marker=marker,
                name=name,
                showlegend=False,
            ),
            row=1,
            col=index + 1,
        )
        axis = "" if index == 0 else str(index + 1)
        figure.update_xaxes(title_text=axis_titles[0], range=[x0, x1], row=1, col=index + 1)
        figure.update_yaxes(
            title_text=axis_titles[1] if index == 0 else None,
            range=[y0, y1],
            scaleanchor=f"x{axis}",
            scaleratio=1,
            row=1,
            col=index + 1,
        )
    figure.update_annotations(font_size=12)
    figure.update_layout(title=title, height=380)
    return figure
