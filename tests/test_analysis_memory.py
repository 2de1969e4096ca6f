"""normbook.analysis.memory: bytes saved for backward (MN-T1) on stacks with known saved sizes."""

from __future__ import annotations

import torch
import torch.nn as nn

from normbook.analysis import SavedTensorCounter, activation_memory

N = 16
WIDTHS = (12, 20, 7)


def _stack(norm: bool, widths=WIDTHS, dtype=torch.float32) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, width in zip((5, *widths[:-2]), widths[:-1], strict=True):
        layers.append(nn.Linear(fan_in, width))
        if norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU())
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers).to(dtype)


def test_linear_relu_stack_saves_each_hidden_activation_once():
    """ReLU saves its output, the next Linear saves that same tensor as its input: one storage of
    N·h floats per hidden layer. The input batch and the weights are reported apart."""
    x = torch.randn(N, 5)
    memory = activation_memory(_stack(norm=False), x)
    assert memory.activation_bytes == 4 * N * sum(WIDTHS[:-1])
    assert memory.input_bytes == 4 * N * 5
    assert memory.total_bytes == memory.activation_bytes + memory.input_bytes
    assert memory.num_saved > memory.num_storages  # the hidden activations were saved twice
    # only layers whose input needs a gradient save their weight (for the input's gradient)
    assert memory.parameter_bytes == 4 * (WIDTHS[0] * WIDTHS[1] + WIDTHS[1] * WIDTHS[2])
    memory64 = activation_memory(_stack(norm=False, dtype=torch.float64), x.double())
    assert memory64.activation_bytes == 2 * memory.activation_bytes


def test_batchnorm_adds_its_input_and_per_channel_statistics():
    """MN-T1's mechanism: BN saves the linear output (which nothing else saves) plus a few
    per-channel vectors, so each BN layer adds between N·h and N·h + 4h floats."""
    x = torch.randn(N, 5)
    plain = activation_memory(_stack(norm=False), x).activation_bytes
    with_bn = activation_memory(_stack(norm=True), x).activation_bytes
    added = with_bn - plain
    hidden = WIDTHS[:-1]
    assert 4 * N * sum(hidden) <= added <= 4 * (N * sum(hidden) + 4 * sum(hidden))


def test_measurement_leaves_mode_and_running_statistics_unchanged():
    model = _stack(norm=True).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    activation_memory(model, torch.randn(N, 5) + 3.0)
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    eval_bytes = activation_memory(model, torch.randn(N, 5), train=False).activation_bytes
    assert eval_bytes > 0


def test_nothing_is_saved_without_gradients_and_views_count_once():
    model = _stack(norm=False).requires_grad_(False)
    memory = activation_memory(model, torch.randn(N, 5))
    assert memory.activation_bytes == memory.num_saved == 0
    a = torch.randn(10, 10, requires_grad=True)
    with SavedTensorCounter([(a, "input")]) as counter:
        b = a.exp()  # saves its output b (400 bytes)
        c = b[:5] * b[5:]  # saves two views of b's storage
    del c
    assert counter.bytes == {"activation": 400}
    assert counter.num_saved == 3 and counter.num_storages == 1
