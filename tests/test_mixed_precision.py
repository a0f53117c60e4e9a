"""Tests for experiments.mixed_precision (chapter 11)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from gradpath.data import teacher_classification
from gradpath.experiments.mixed_precision import (
    LossScaler,
    TensorMemoryTracker,
    autocast_output_dtypes,
    concat_gradients,
    data_parallel_gradients,
    gradient_zero_fraction,
    log2_histogram,
    lost_update_share,
    make_network,
    plot_format_ranges,
    plot_scale_history,
    ring_all_reduce,
    saved_tensors,
    step_cost,
    train_mixed,
    zero_memory_per_device,
)
from gradpath.precision import ScaleMonitor
from torch import nn

DATA = teacher_classification(256, 8, 4, seed=0)


def _net(seed: int = 0, **kw) -> nn.Module:
    return make_network(8, 4, width=16, depth=4, seed=seed, **kw)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_loss_scaler_matches_gradscaler_step_by_step():
    """The few-line LossScaler and torch.amp.GradScaler: same scales, same skips, same weights."""
    torch.manual_seed(0)
    ours, theirs = _net(), _net()
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9)
    opt_theirs = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24, growth_interval=4)
    monitor = ScaleMonitor(scaler)
    manual = LossScaler(scale=2.0**24, growth_interval=4)
    g = torch.Generator().manual_seed(0)
    for step in range(60):
        idx = torch.randint(0, len(DATA), (32,), generator=g)
        x, y = DATA.x[idx], DATA.y[idx]
        if step in (30, 31):                       # force overflow in the middle of the run
            x = x * 1e4
        scale_before = manual.scale
        assert scale_before == scaler.get_scale()
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16):
                loss = nn.functional.cross_entropy(model(x), y)
            if model is ours:
                (loss * manual.scale).backward()
                took = manual.step(opt)
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                skipped = monitor.update()
        assert took == (not skipped), f"step {step}"
        assert _same_weights(ours, theirs), f"weights differ after step {step}"
    assert any(monitor.skipped[:5]) and monitor.skipped[30]     # backed off at the start and later
    assert max(monitor.scales[5:]) > min(monitor.scales[5:])     # ... and grew in between
    assert manual.scale == scaler.get_scale()


def test_train_mixed_manual_and_dynamic_agree():
    kw = dict(steps=40, lr=0.05, batch_size=32, precision="float16", growth_interval=5,
              init_scale=2.0**20)
    a = train_mixed(_net(), DATA, loss_scaling="dynamic", **kw)
    b = train_mixed(_net(), DATA, loss_scaling="manual", **kw)
    assert a.scales == b.scales and a.skipped == b.skipped and len(a.scales) == 40
    assert _same_weights(a.model, b.model) and a.final_loss == b.final_loss


def test_loss_scaler_rules():
    p = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=1.0)
    s = LossScaler(scale=8.0, growth_interval=2)
    p.grad = torch.tensor([math.inf, 1.0])
    assert not s.step(opt) and s.scale == 4.0 and torch.equal(p, torch.zeros(2))
    p.grad = torch.tensor([4.0, 8.0])
    assert s.step(opt) and s.scale == 4.0 and torch.equal(p, torch.tensor([-1.0, -2.0]))
    p.grad = torch.tensor([4.0, 8.0])
    assert s.step(opt) and s.scale == 8.0                       # two clean steps: doubled
    big = LossScaler(scale=2.0**127, growth_interval=1)
    p.grad = torch.ones(2)
    big.step(opt)
    assert big.scale == 2.0**127                                # would overflow float32: kept


def test_shifting_the_loss_changes_nothing_in_float32_and_bfloat16():
    for precision in ("float32", "bfloat16"):
        runs = [train_mixed(_net(), DATA, steps=15, lr=0.05, batch_size=32, precision=precision,
                            shift=shift) for shift in (0, 20)]
        assert _same_weights(runs[0].model, runs[1].model), precision
        assert runs[0].loss == runs[1].loss


def test_float16_without_scaling_loses_shifted_gradients():
    lost = train_mixed(_net(), DATA, steps=5, lr=0.05, batch_size=32, precision="float16",
                       shift=24)
    assert min(lost.zero_fraction) > 0.99
    kept = train_mixed(_net(), DATA, steps=5, lr=0.05, batch_size=32, precision="float16")
    assert max(kept.zero_fraction) < 0.5


def test_weight_format_rounds_the_weights():
    run = train_mixed(_net(), DATA, steps=5, lr=0.05, batch_size=32, weight_format="bfloat16")
    for p in run.model.parameters():
        assert torch.equal(p, p.to(torch.bfloat16).float())


def test_train_mixed_errors():
    with pytest.raises(ValueError, match="precision"):
        train_mixed(_net(), DATA, steps=1, lr=0.1, batch_size=8, precision="float8_e5m2")
    with pytest.raises(ValueError, match="loss_scaling"):
        train_mixed(_net(), DATA, steps=1, lr=0.1, batch_size=8, loss_scaling="static")
    with pytest.raises(ValueError, match="steps"):
        train_mixed(_net(), DATA, steps=0, lr=0.1, batch_size=8)


def test_gradient_zero_fraction():
    model = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="backward"):
        gradient_zero_fraction(model)
    model(torch.tensor([[1.0, 0.0]])).sum().backward()
    assert gradient_zero_fraction(model) == 2 / 6               # the weights of the zero input


def test_autocast_output_dtypes_on_cpu():
    placed = autocast_output_dtypes("cpu", torch.float16)
    assert placed["linear"] == placed["matmul"] == "float16"
    assert placed["cross_entropy"] == "float32" and placed["gradient of a weight"] == "float32"
    assert placed["gradient of a layer's output"] == "float16"
    assert autocast_output_dtypes("cpu", "bf16")["linear"] == "bfloat16"


def test_saved_tensors_of_a_layer():
    layer = nn.Linear(3, 4)
    a = torch.tanh(layer(torch.randn(2, 3, requires_grad=True)))
    saved = {(node, name): shape for node, name, shape in saved_tensors(a)}
    assert saved[("TanhBackward0", "result")] == (2, 4)
    assert saved[("AddmmBackward0", "mat1")] == (2, 3)
    assert saved[("AddmmBackward0", "mat2")] == (3, 4)


def test_tensor_memory_tracker_counts_new_storages_once():
    x = torch.zeros(256)                                        # made before: not counted
    with TensorMemoryTracker() as tracker:
        y = x + 1                                               # 1 KiB
        view = y[:10]                                           # a view: no new storage
        y.add_(1)                                               # in place: no new storage
        z = y * 2                                               # another 1 KiB
        assert tracker.current == 2048
        del z
        assert tracker.current == 1024                          # freed tensors drop out
    assert tracker.peak == 2048 and view.numel() == 10


def test_step_cost_checkpointing_saves_memory_for_flops():
    model = make_network(8, 4, width=32, depth=16, activation="tanh", init="xavier_normal")
    plain = step_cost(model, DATA, repeats=1)
    ckpt = step_cost(model, DATA, segments=4, repeats=1)
    layer = len(DATA) * 32 * 4
    assert 15 <= plain.held_after_forward / layer < 16           # one output per hidden layer
    assert ckpt.peak < 0.6 * plain.peak and ckpt.held_after_forward < plain.held_after_forward
    assert 1.1 < ckpt.flops / plain.flops < 1.5 and plain.seconds > 0
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="segments"):
        step_cost(model, DATA, segments=0)


def test_data_parallel_average_is_the_full_batch_gradient():
    model = _net()
    x, y = DATA.x[:64], DATA.y[:64]
    averaged, local = data_parallel_gradients(model, x, y, workers=4)
    assert len(local) == 4 and all(p.grad is None for p in model.parameters())
    nn.functional.cross_entropy(model(x), y).backward()
    full = concat_gradients([p.grad for p in model.parameters()])
    assert torch.allclose(concat_gradients(averaged), full, rtol=1e-5, atol=1e-7)
    bn = _net(norm="batch")
    bn_avg, _ = data_parallel_gradients(bn, x, y, workers=4)
    nn.functional.cross_entropy(bn(x), y).backward()
    bn_full = concat_gradients([p.grad for p in bn.parameters()])
    assert not torch.allclose(concat_gradients(bn_avg), bn_full, rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="equal shards"):
        data_parallel_gradients(model, x[:63], y[:63], workers=4)


@pytest.mark.parametrize("workers, size", [(4, 1000), (3, 10), (8, 17)])
def test_ring_all_reduce_sums_and_counts_traffic(workers, size):
    g = torch.Generator().manual_seed(workers)
    vectors = [torch.randn(size, generator=g) for _ in range(workers)]
    results, sent = ring_all_reduce(vectors)
    reference = torch.stack(vectors).sum(0)
    assert all(torch.equal(results[0], r) for r in results)
    assert torch.allclose(results[0], reference, atol=1e-5)
    assert sum(sent) == 2 * (workers - 1) * size
    if size % workers == 0:
        assert sent == [2 * (workers - 1) * size // workers] * workers


def test_ring_all_reduce_errors():
    with pytest.raises(ValueError, match="at least 2"):
        ring_all_reduce([torch.ones(3)])
    with pytest.raises(ValueError, match="same length"):
        ring_all_reduce([torch.ones(3), torch.ones(4)])


def test_zero_memory_matches_the_paper():
    # Rajbhandari et al. 2020, Figure 1: 7.5B parameters, 64 GPUs, K = 12.
    gb = [zero_memory_per_device(7.5e9, 64, stage) / 1e9 for stage in range(4)]
    assert [round(v, 1) for v in gb] == [120.0, 31.4, 16.6, 1.9]
    assert zero_memory_per_device(1e9, 1, 3) == 16e9             # one device: nothing to shard
    with pytest.raises(ValueError, match="stage"):
        zero_memory_per_device(1e9, 8, 4)
    with pytest.raises(ValueError, match="parameters"):
        zero_memory_per_device(0, 8, 1)


def test_histogram_and_figures():
    values = torch.tensor([2.0**-30, 2.0**-10, 2.0**-10, 0.0, math.inf, 2.0**40])
    edges = np.arange(-40.0, 21.0)
    share = log2_histogram(values, edges)
    assert math.isclose(share.sum(), 1.0) and share[edges[:-1].tolist().index(-10.0)] == 0.5
    assert share[-1] == 0.25                                   # clipped into the last bin
    shifted = log2_histogram(values, edges, scale=2.0**4)
    assert shifted[edges[:-1].tolist().index(-6.0)] == 0.5
    ax = plot_format_ranges({"g": values}, ["float16", "bfloat16"])
    assert ax.get_xlim() == (-60.0, 20.0)
    ax2 = plot_scale_history([4.0, 8.0, 4.0], [False, True, False])
    assert ax2.get_yscale() == "log"
    plt.close("all")
    with pytest.raises(ValueError, match="no nonzero"):
        log2_histogram(torch.zeros(3), edges)


def test_lost_update_share():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    with pytest.raises(RuntimeError, match="backward"):
        lost_update_share(model, 0.1, "fp16")
    model.weight.grad = torch.tensor([[1e-3, 1e-1]])            # updates of 1e-4 and 1e-2
    assert lost_update_share(model, 0.1, "float16") == 0.5      # 1e-4 < 2^-11: lost in float16
    assert lost_update_share(model, 0.1, "bfloat16") == 0.5     # 1e-2 > 2^-8: kept in bfloat16
    assert lost_update_share(model, 0.1, "float32") == 0.0
    assert torch.equal(model.weight, torch.tensor([[1.0, 1.0]]))
