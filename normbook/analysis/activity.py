"""Activity of a network's units: non-zero ratio, mean activation, residual-block Δ, filter coherence.

- :func:`activation_stats` / :func:`nonzero_ratio`: NP-T1 (Shang et al. 2017, Table 1), the mean
  (± std over all entries) of the activation after the last ReLU and the fraction of its entries
  that are non-zero. We count *positive* entries: after a ReLU (or CReLU) that is the same thing,
  and on a signed tensor it is the fraction a ReLU would keep. CReLU's output has ratio exactly
  ½ for any input without zeros.
- :func:`residual_delta`: NP-F2, Δ = mean over positions of ‖x_l(:, i, j) − x_{l+1}(:, i, j)‖₂,
  the change a residual block makes, from (input, output) pairs such as
  ``normbook.models.hooks.block_io`` returns; averaged over the batch too.
- :func:`filter_coherence`: NP-F3 (Definition 2 of the paper), μ = max_{i≠j} |⟨w_i, w_j⟩| /
  (‖w_i‖ ‖w_j‖) over the filters (rows) of a weight; :func:`welch_bound` is the smallest μ that
  n filters in d dimensions can have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from normbook.analysis._checks import check_finite, check_tensor


def nonzero_ratio(x: torch.Tensor) -> float:
    """Fraction of the entries of ``x`` that are positive (NP-T1's NZR after a ReLU)."""
    check_tensor(x, "x", min_dim=0)
    if x.numel() == 0:
        raise ValueError("x must not be empty")
    check_finite(x, "x")
    return float((x.detach() > 0).to(torch.float64).mean())


def activation_stats(x: torch.Tensor) -> dict[str, float]:
    """NP-T1's numbers of an activation tensor: ``mean`` and ``std`` over all its entries
    (population std, float64) and ``nonzero_ratio``."""
    check_tensor(x, "x", min_dim=0)
    if x.numel() == 0:
        raise ValueError("x must not be empty")
    check_finite(x, "x")
    values = x.detach().to(torch.float64).reshape(-1)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(unbiased=False)),
        "nonzero_ratio": nonzero_ratio(x),
    }


def residual_delta(block_input: torch.Tensor, block_output: torch.Tensor) -> float:
    """NP-F2's Δ of one residual block: the L2 norm over channels of ``x_l − x_{l+1}`` at each
    position, averaged over positions and samples (N×C×H×W, or N×C: one position).

    Input and output must have the same shape (a block that changes the width or the spatial size
    has no elementwise difference; the paper's downsampling blocks are those spikes, measure them
    on a projection of your choice).
    """
    check_tensor(block_input, "block_input", min_dim=2)
    check_tensor(block_output, "block_output", min_dim=2)
    if block_input.shape != block_output.shape:
        raise ValueError(
            "residual_delta: block input and output must have the same shape, got"
            f" {tuple(block_input.shape)} and {tuple(block_output.shape)}"
        )
    diff = block_input.detach().to(torch.float64) - block_output.detach().to(torch.float64)
    check_finite(diff, "block_output - block_input")
    return float(torch.linalg.vector_norm(diff, ord=2, dim=1).mean())


def residual_deltas(
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], skip_reshaping: bool = True
) -> list[float]:
    """Δ of each (input, output) pair, in order (NP-F2). A pair whose shapes differ (a
    downsampling block) gives NaN when ``skip_reshaping``, else raises ``ValueError``."""
    deltas = []
    for block_input, block_output in pairs:
        if skip_reshaping and block_input.shape != block_output.shape:
            deltas.append(math.nan)
        else:
            deltas.append(residual_delta(block_input, block_output))
    return deltas


def _filters(weight: torch.Tensor) -> torch.Tensor:
    check_tensor(weight, "weight", min_dim=2)
    if weight.shape[0] < 2:
        raise ValueError(
            f"weight must have at least two filters (dim 0), got {tuple(weight.shape)}"
        )
    filters = weight.detach().to(torch.float64).reshape(weight.shape[0], -1)
    check_finite(filters, "weight")
    return filters


def filter_gram(weight: torch.Tensor) -> torch.Tensor:
    """Cosines ⟨w_i, w_j⟩/(‖w_i‖‖w_j‖) between the filters (rows of dim 0, each flattened) of a
    conv (out×in×kh×kw) or linear (out×in) weight, float64; zero filters have cosine 0."""
    filters = _filters(weight)
    norms = torch.linalg.vector_norm(filters, dim=1)
    zero = norms == 0
    unit = filters / torch.where(zero, torch.ones_like(norms), norms).unsqueeze(1)
    gram = (unit @ unit.T).clamp(-1.0, 1.0)
    gram.diagonal().copy_(torch.where(zero, torch.zeros_like(norms), torch.ones_like(norms)))
    return gram


def filter_coherence(weight: torch.Tensor) -> float:
    """Coherence μ = max over distinct filters of |cos(w_i, w_j)| (NP-F3; Definition 2).

    0 for mutually orthogonal filters, 1 when two filters are parallel or antiparallel
    (ReLU networks learn such negatively correlated pairs; CReLU builds them in). A zero filter
    has cosine 0 with every filter.
    """
    gram = filter_gram(weight)
    off = ~torch.eye(gram.shape[0], dtype=torch.bool)
    return float(gram.abs()[off].max())


def welch_bound(num_filters: int, dim: int) -> float:
    """Smallest possible coherence of ``num_filters`` unit vectors in ``dim`` dimensions:
    √((n − d)/(d·(n − 1))) when n > d, else 0 (orthogonal filters exist)."""
    if num_filters < 2 or dim < 1:
        raise ValueError(f"need num_filters >= 2 and dim >= 1, got {num_filters}, {dim}")
    if num_filters <= dim:
        return 0.0
    return math.sqrt((num_filters - dim) / (dim * (num_filters - 1)))
