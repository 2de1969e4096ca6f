"""What CReLU keeps and what it costs (Shang et al. 2016, 2017; PAPERS.md NP-D1, NP-F1, NP-T3).

- :func:`crelu_inverse`: CReLU ρc(x) = ([x]+, [−x]+) is injective, x = [x]+ − [−x]+, so the
  layer after it sees x itself (a ReLU forgets every negative value).
- :func:`branch_conv_weights`: the conv weights of one residual branch whose input and output
  widths match (no projection), for ReLU or CReLU inside the branch: CReLU doubles the fan-in of
  the conv after it (basic block: the second conv; bottleneck: the second and third), so a basic
  branch of width w costs 9w² + 9·2w² = 27w² weights instead of 18w², a ratio 3/2 at equal width
  and 3/2·m² at stage widths ×m (Table 3's ×0.75: 27/32 ≈ 0.84).
"""

from __future__ import annotations

import torch

from normbook.analysis._checks import check_tensor


def crelu_inverse(y: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """x from y = CReLU(x) = relu(cat(x, −x), dim): the first half minus the second (NP-D1)."""
    check_tensor(y, "y", min_dim=1)
    size = y.shape[dim]
    if size % 2:
        raise ValueError(f"a CReLU output has an even size along dim {dim}, got {size}")
    positive, negative = torch.split(y, size // 2, dim=dim)
    return positive - negative


def branch_conv_weights(width: int, act_multiplier: int = 1, *, bottleneck: bool = False) -> int:
    """Conv weights of one residual branch without projection (no biases, no norm parameters).

    Basic (two 3×3 convs, ``width`` → ``width``): 9w² + 9·k·w²; bottleneck (1×1 4w → w, 3×3
    w → w, 1×1 w → 4w, CReLU after the first two): 4w² + 9·k·w² + 4·k·w²; k = ``act_multiplier``
    (1 for ReLU, 2 for CReLU).
    """
    for value, name in ((width, "width"), (act_multiplier, "act_multiplier")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    w2, k = width * width, act_multiplier
    if bottleneck:
        return 4 * w2 + 9 * k * w2 + 4 * k * w2
    return 9 * w2 + 9 * k * w2
