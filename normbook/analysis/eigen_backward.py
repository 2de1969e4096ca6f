"""The backward pass through DBN's eigendecomposition, step by step (DBN Eq. 5–6, Algorithms 1–2,
Appendix A; PAPERS.md DBN-EQ5).

* :func:`batch_with_covariance`: a batch whose biased covariance is exactly ``R diag(λ) Rᵀ``, so
  eigenvalues can be repeated on purpose (the edge case of ``K_ij = 1/(λ_i − λ_j)``);
* :func:`whitening_steps`: the forward (Algorithm 1) and the simplified backward (Algorithm 2,
  Eq. A.14) of group whitening for an N×C batch, one named step at a time, keeping every
  intermediate so a reader can inspect it; the step that forms ``S − M`` is the layer's own;
* :func:`time_whitening_steps`: the median time of each step on the CPU, beside the whole
  :class:`~normbook.layers.DecorrelatedBatchNorm` and ``torch.nn.BatchNorm1d``.

Shapes: an N×C input is split into ``G = C / g`` contiguous groups held as a (G, g, m) tensor with
``m = N`` columns (the paper's ``X ∈ R^{d×m}`` per group).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from normbook.analysis._checks import check_finite, check_tensor
from normbook.layers._checks import check_positive_int
from normbook.layers.whitening import DecorrelatedBatchNorm, _s_minus_m, sorted_eigh

F64 = torch.float64


def batch_with_covariance(
    eigenvalues: Sequence[float], samples: int, *, seed: int = 0, mean: float = 0.5
) -> Tensor:
    """A ``samples × d`` float64 batch whose biased covariance is ``R diag(λ) Rᵀ`` to round-off.

    The centred columns are orthogonal, orthogonal to the ones vector and of norm ``√(m·λ_k)``
    (QR of ``[1, Gaussian]``), then rotated by a Haar-random ``R`` (``seed``) and shifted by
    ``mean``. Equal entries of ``eigenvalues`` give an exactly repeated eigenvalue.
    """
    lam = torch.as_tensor(list(eigenvalues), dtype=F64)
    d = lam.numel()
    check_positive_int(samples, "samples", minimum=d + 1)
    if d == 0 or not bool((lam > 0).all()):
        raise ValueError(
            f"eigenvalues must be a non-empty list of positive numbers, got {eigenvalues!r}"
        )
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(samples, d, generator=generator, dtype=F64)
    basis, _ = torch.linalg.qr(torch.cat([torch.ones(samples, 1, dtype=F64), raw], dim=1))
    columns = basis[:, 1:] * (samples * lam).sqrt()
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=F64))
    rotation = q * torch.sign(torch.diagonal(r))
    return columns @ rotation.T + mean


# --- the steps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One step of the forward or backward pass: a short key, its name, phase, operation count
    (``m`` columns, ``d`` features, groups of ``g``) and function.

    ``fn(state)`` reads earlier results from the dict ``state`` and returns the new entries.
    """

    key: str
    name: str
    phase: str
    cost: str
    fn: Callable[[dict], dict]


def _centre(s: dict) -> dict:
    x = s["x"]  # (G, g, m)
    mean = x.mean(dim=-1, keepdim=True)
    return {"mean": mean, "xc": x - mean}


def _covariance(s: dict) -> dict:
    xc = s["xc"]
    eye = torch.eye(xc.shape[-2], dtype=xc.dtype)
    return {"cov": xc @ xc.mT / xc.shape[-1] + s["eps"] * eye}


def _eigh(s: dict) -> dict:
    # PCA needs the canonical order and signs (its output depends on them); ZCA does not.
    lam, vecs = sorted_eigh(s["cov"]) if s["method"] == "pca" else torch.linalg.eigh(s["cov"])
    return {"lam": lam.clamp_min(s["eps"]), "vecs": vecs}


def _weight(s: dict) -> dict:
    inv_sqrt = s["lam"].rsqrt()
    u = inv_sqrt.unsqueeze(-1) * s["vecs"].mT  # U = Λ^{-1/2} Dᵀ (PCA whitening)
    return {"u": u, "weight": s["vecs"] @ u if s["method"] == "zca" else u}


def _whiten(s: dict) -> dict:
    return {"y": s["weight"] @ s["xc"]}


def _fc(s: dict) -> dict:
    # F_c = (1/m) G̃ X̃ᵀ with X̃ = U Xc and, for ZCA, G̃ = Dᵀ G (Eq. A.7): the only g×m×g product
    # is G Xcᵀ; the rest is g×g.
    g, m = s["grad"], s["xc"].shape[-1]
    g_xc = g @ s["xc"].mT / m
    f_y = g.mean(dim=-1, keepdim=True)
    fc = g_xc @ s["u"].mT
    if s["method"] == "zca":
        fc = s["vecs"].mT @ fc
    return {"fc": fc, "f_y": f_y}


def _core(s: dict) -> dict:
    # T = Uᵀ (S − M) U, so that dL/dX = Wᵀ(G − f 1ᵀ) + T Xc   (Eq. A.14 / A.20)
    s_minus_m = _s_minus_m(s["fc"], s["lam"], s["method"])
    return {"s_minus_m": s_minus_m, "t": s["u"].mT @ s_minus_m @ s["u"]}


def _input_grad(s: dict) -> dict:
    return {"dx": s["weight"].mT @ (s["grad"] - s["f_y"]) + s["t"] @ s["xc"]}


WHITENING_STEPS: tuple[Step, ...] = (
    Step("centre", "mean and centring", "forward", "O(m·d)", _centre),
    Step("covariance", "covariance Σ = XcXcᵀ/m + εI", "forward", "O(m·d·g)", _covariance),
    Step("eigh", "eigendecomposition Σ = DΛDᵀ", "forward", "O(d·g²)", _eigh),
    Step("weight", "whitening matrix W", "forward", "O(d·g²)", _weight),
    Step("whiten", "whiten Y = W Xc", "forward", "O(m·d·g)", _whiten),
    Step("fc", "F_c = G̃X̃ᵀ/m and f", "backward", "O(m·d·g)", _fc),
    Step("core", "S − M and T = Uᵀ(S − M)U", "backward", "O(d·g²)", _core),
    Step("input_grad", "input gradient Wᵀ(G − f1ᵀ) + T Xc", "backward", "O(m·d·g)", _input_grad),
)


def _groups(t: Tensor, group_size: int) -> Tensor:
    """N×C -> (G, g, N)."""
    n, c = t.shape
    return t.T.reshape(c // group_size, group_size, n)


def _ungroup(t: Tensor) -> Tensor:
    """(G, g, N) -> N×C."""
    return t.reshape(-1, t.shape[-1]).T


def _check_inputs(x: Tensor, grad: Tensor, group_size: int, method: str, eps: float) -> None:
    check_tensor(x, "x", min_dim=2)
    check_tensor(grad, "grad", min_dim=2)
    if x.dim() != 2 or grad.shape != x.shape:
        raise ValueError(
            f"x must be N×C and grad of the same shape, got {tuple(x.shape)}, {tuple(grad.shape)}"
        )
    check_positive_int(group_size, "group_size")
    if x.shape[1] % group_size:
        raise ValueError(f"group_size {group_size} must divide the {x.shape[1]} features")
    if method not in ("zca", "pca"):
        raise ValueError(f"method must be 'zca' or 'pca', got {method!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a number > 0, got {eps!r}")
    check_finite(x, "x")
    check_finite(grad, "grad")


def whitening_steps(
    x: Tensor, grad: Tensor, group_size: int, *, method: str = "zca", eps: float = 1e-5
) -> dict[str, Tensor]:
    """Run the forward and the simplified backward of group whitening step by step.

    ``x`` and ``grad`` (``∂L/∂Y``) are N×C; returns every intermediate (group layout (G, g, m)):
    ``mean``, ``xc``, ``cov``, ``lam``, ``vecs``, ``u``, ``weight``, ``y``, ``fc``, ``f_y``,
    ``s_minus_m``, ``t``, ``dx``, plus ``output`` and ``input_grad`` as N×C. They equal
    ``DecorrelatedBatchNorm(C, group_size, affine=False, whitening=method)``'s output and input
    gradient (the eigenvalues are floored at ``eps`` as in the layer).
    """
    _check_inputs(x, grad, group_size, method, eps)
    state: dict = {
        "x": _groups(x, group_size),
        "grad": _groups(grad.to(x.dtype), group_size),
        "eps": float(eps),
        "method": method,
    }
    for step in WHITENING_STEPS:
        state.update(step.fn(state))
    state["output"] = _ungroup(state["y"])
    state["input_grad"] = _ungroup(state["dx"])
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` CPU threads inside the block (None: leave torch's setting), then restore."""
    if threads is not None:
        check_positive_int(threads, "threads")
    previous = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        yield
    finally:
        torch.set_num_threads(previous)


def _medians(steps: Sequence[Callable[[], object]], repeats: int, warmup: int) -> list[float]:
    """Median seconds of each callable, all timed in turn every repeat (warm-up runs dropped)."""
    times: list[list[float]] = [[] for _ in steps]
    for i in range(warmup + repeats):
        for step, store in zip(steps, times, strict=True):
            start = time.perf_counter()
            step()
            if i >= warmup:
                store.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def time_whitening_steps(
    batch_size: int,
    num_features: int,
    group_size: int,
    *,
    method: str = "zca",
    eps: float = 1e-5,
    repeats: int = 20,
    warmup: int = 3,
    seed: int = 0,
    threads: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> pd.DataFrame:
    """Median CPU time of every step of :func:`whitening_steps` on an ``m × d`` batch.

    Rows: one per step (``step``, ``phase``, ``cost``, ``ms``, ``share`` of the steps' sum,
    ``ratio_to_bn``), then ``DecorrelatedBatchNorm`` forward+backward (analytic backward) and
    ``torch.nn.BatchNorm1d`` forward+backward on the same batch, for reference. All are timed in
    turn every repeat, so a load change on a shared machine hits them alike. ``threads`` as in
    :func:`torch_threads`.
    """
    check_positive_int(batch_size, "batch_size", minimum=2)
    check_positive_int(num_features, "num_features")
    check_positive_int(repeats, "repeats")
    check_positive_int(warmup, "warmup", minimum=0)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, num_features, generator=generator, dtype=dtype)
    x = x @ torch.randn(num_features, num_features, generator=generator, dtype=dtype) * 0.3 + x
    grad = torch.randn(batch_size, num_features, generator=generator, dtype=dtype)
    _check_inputs(x, grad, group_size, method, eps)
    state: dict = {
        "x": _groups(x, group_size),
        "grad": _groups(grad, group_size),
        "eps": float(eps),
        "method": method,
    }
    for step in WHITENING_STEPS:  # every step's inputs, computed once
        state.update(step.fn(state))
    dbn = DecorrelatedBatchNorm(
        num_features, group_size=group_size, eps=eps, affine=False, whitening=method
    ).to(dtype)
    bn = torch.nn.BatchNorm1d(num_features, affine=False).to(dtype)
    leaf = x.clone().requires_grad_()

    def layer_step(layer: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            leaf.grad = None
            layer(leaf).backward(grad)

        return run

    def step_call(step: Step) -> Callable[[], object]:
        return lambda: step.fn(state)

    calls = [step_call(s) for s in WHITENING_STEPS] + [layer_step(dbn), layer_step(bn)]
    with torch_threads(threads):
        seconds = _medians(calls, repeats, warmup)
    bn_seconds = seconds[-1]
    total = sum(seconds[: len(WHITENING_STEPS)])
    rows = [
        {
            "key": step.key,
            "step": step.name,
            "phase": step.phase,
            "cost": step.cost,
            "ms": 1e3 * sec,
            "share": sec / total,
            "ratio_to_bn": sec / bn_seconds,
        }
        for step, sec in zip(WHITENING_STEPS, seconds, strict=False)
    ]
    layers = (
        ("layer", "DecorrelatedBatchNorm (whole layer)", seconds[-2]),
        ("bn", "BatchNorm1d", bn_seconds),
    )
    for key, name, sec in layers:
        rows.append(
            {
                "key": key,
                "step": name,
                "phase": "forward+backward",
                "cost": "O(m·d·g)" if key == "layer" else "O(m·d)",
                "ms": 1e3 * sec,
                "share": sec / total,
                "ratio_to_bn": sec / bn_seconds,
            }
        )
    frame = pd.DataFrame(rows)
    frame.attrs.update(
        batch_size=batch_size,
        num_features=num_features,
        group_size=group_size,
        method=method,
        threads=threads or torch.get_num_threads(),
    )
    return frame
