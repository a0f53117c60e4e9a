"""Tests for gradpath.precision: format limits, the gradient-underflow probe, the scale monitor."""

from __future__ import annotations

import math

import pytest
import torch
from gradpath.models import DeepMLP
from gradpath.precision import (
    FORMATS,
    CastReport,
    GradientSample,
    ScaleMonitor,
    capture_gradients,
    cast_report,
    format_info,
    format_name,
    lost_update_threshold,
    resolve_dtype,
    scale_sweep,
    ulp,
)
from torch import nn


def test_float16_limits_are_the_ieee_half_limits():
    f = format_info(torch.float16)
    assert (f.bits, f.exponent_bits, f.mantissa_bits) == (16, 5, 10)
    assert f.max == 65504.0 and f.smallest_normal == 2.0**-14
    assert f.smallest_subnormal == 2.0**-24 and f.eps == 2.0**-10
    assert f.overflow_threshold == 65520.0
    assert math.isclose(f.smallest_normal, 6.1e-5, rel_tol=0.01)
    assert math.isclose(f.smallest_subnormal, 5.96e-8, rel_tol=0.001)


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_is_consistent_with_torch(name):
    f = format_info(name)
    assert 1 + f.exponent_bits + f.mantissa_bits == f.bits
    smallest = torch.tensor(f.smallest_subnormal, dtype=torch.float64).to(f.dtype)
    assert float(smallest) == f.smallest_subnormal                  # representable ...
    below = torch.tensor(0.49 * f.smallest_subnormal, dtype=torch.float32).to(f.dtype)
    assert float(below) == 0.0                                      # ... and half of it is not
    def stored(v: float) -> float:
        return float(torch.tensor(v, dtype=torch.float64).to(f.dtype))

    assert stored(1.0 + f.eps) == 1.0 + f.eps and stored(1.0 + 0.49 * f.eps) == 1.0
    assert stored(f.max) == f.max and math.isclose(lost_update_threshold(1.0, name), f.eps / 2,
                                                   rel_tol=1e-3)
    assert f.decades > 0


def test_bfloat16_has_float32_range_and_fewer_mantissa_bits():
    bf, fp = format_info("bf16"), format_info("fp32")
    assert bf.exponent_bits == fp.exponent_bits == 8 and bf.mantissa_bits == 7
    assert bf.smallest_normal == fp.smallest_normal and 0.99 < bf.max / fp.max < 1


def test_fp8_formats():
    assert format_info("float8_e4m3fn").max == 448.0
    assert format_info("e5m2").max == 57344.0


def test_resolve_dtype_accepts_aliases_and_rejects_others():
    assert resolve_dtype("half") is torch.float16
    assert resolve_dtype("torch.bfloat16") is torch.bfloat16
    assert format_name("fp32") == "float32"
    with pytest.raises(ValueError, match="unknown format 'fp64'.*float16"):
        resolve_dtype("fp64")
    with pytest.raises(ValueError, match="floating-point"):
        resolve_dtype(torch.int32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("x", [1.0, 3.0, 256.0, 0.0625])
def test_ulp_matches_nextafter(dtype, x):
    t = torch.tensor(x, dtype=dtype)
    expected = float(torch.nextafter(t, torch.tensor(math.inf, dtype=dtype)) - t)
    assert ulp(x, dtype) == expected


def test_ulp_among_subnormals_and_errors():
    assert ulp(1e-7, "fp16") == 2.0**-24 and ulp(0.0, "fp16") == 2.0**-24
    with pytest.raises(ValueError, match="at most 65504"):
        ulp(1e5, "fp16")


def test_lost_update_threshold_is_half_an_ulp():
    u = lost_update_threshold(1.0, "fp16")
    assert 2.0**-11 < u < 2.0**-11 * (1 + 1e-3)
    w = torch.tensor(1.0, dtype=torch.float16)
    w.add_(torch.tensor(u))
    assert float(w) > 1.0                                   # the threshold itself is kept,
    # as an optimizer's in-place add applies it
    w = torch.tensor(1.0, dtype=torch.float16)
    u32 = torch.tensor(u, dtype=torch.float32)
    w.add_(torch.nextafter(u32, torch.zeros(())))           # the next float32 below u
    assert float(w) == 1.0                                  # anything smaller is lost
    assert math.isclose(lost_update_threshold(1.0, "bf16"), 2.0**-8, rel_tol=1e-3)
    assert math.isclose(lost_update_threshold(256.0, "fp16"), 0.125, rel_tol=1e-3)


def test_lost_update_threshold_rejects_unrepresentable_weights():
    with pytest.raises(ValueError, match="not a float16 number"):
        lost_update_threshold(1.0001, "fp16")


def test_cast_report_classifies_each_value():
    values = torch.tensor([1e-9, 2e-8, 1e-6, 1e-3, 1.0, 65519.0, 65520.0, 1e6, 0.0, math.inf])
    r = cast_report(values, "fp16")
    assert isinstance(r, CastReport) and r.count == 8                 # zero and inf left out
    assert r.underflow == 2 / 8 and r.subnormal == 1 / 8 and r.overflow == 2 / 8
    assert math.isclose(r.representable, 4 / 8)
    assert 0 < r.norm_lost < 1e-26 and 0 <= r.relative_error < 2.0**-11
    assert cast_report(values, "bf16").underflow == 0.0


def test_cast_report_with_a_power_of_two_scale():
    values = torch.tensor([1e-9, 1e-8, 1e-3])
    assert cast_report(values, "fp16", 2.0**10).underflow == 0.0
    assert cast_report(values, "fp16", 2.0**30).overflow == 1 / 3
    exact = torch.tensor([0.5, 0.25, 3.0])
    assert cast_report(exact, "fp16", 4.0).relative_error == 0.0


def test_cast_report_errors():
    with pytest.raises(ValueError, match="scale"):
        cast_report(torch.ones(3), "fp16", 0.0)
    with pytest.raises(ValueError, match="no nonzero finite"):
        cast_report(torch.zeros(3), "fp16")


def test_scale_sweep_trades_zeros_for_infs():
    values = torch.logspace(-12, -1, 200)
    sweep = scale_sweep(values, "fp16", range(0, 40, 4))
    zeros = [r.underflow for r in sweep]
    infs = [r.overflow for r in sweep]
    assert zeros == sorted(zeros, reverse=True) and infs == sorted(infs)
    assert zeros[0] > 0.3 and infs[-1] > 0.3
    with pytest.raises(ValueError, match="empty"):
        scale_sweep(values, "fp16", [])


def _mlp(norm: str | None = None) -> DeepMLP:
    return DeepMLP(6, 3, width=8, depth=4, activation="relu", init="he_normal", norm=norm,
                   generator=torch.Generator().manual_seed(0))


def test_capture_gradients_records_module_outputs_once():
    model = _mlp()
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1])
    sample = capture_gradients(model, lambda: nn.functional.cross_entropy(model(x), y))
    assert isinstance(sample, GradientSample)
    # three blocks with a linear layer and a ReLU each (Identity returns the same tensor), a head
    names = set(sample.activations)
    assert "head" in names and "blocks.0.linear" in names and "blocks.0.activation" in names
    assert not any("norm" in n for n in names)              # nn.Identity: already counted
    assert sample.values().numel() == 3 * 2 * 5 * 8 + 5 * 3
    # the parameter gradients are exactly what a plain backward pass gives
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert torch.equal(sample.parameters[name], p.grad.flatten())


def test_capture_gradients_matches_the_output_gradient():
    model = _mlp()
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1])
    sample = capture_gradients(model, lambda: nn.functional.cross_entropy(model(x), y))
    logits = model(x).detach().requires_grad_(True)
    nn.functional.cross_entropy(logits, y).backward()
    assert torch.allclose(sample.activations["head"], logits.grad.flatten())


def test_capture_gradients_leaves_the_model_as_found():
    model = _mlp(norm="batch")
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1])
    nn.functional.cross_entropy(model(x), y).backward()          # gradients and stats exist
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    buffers = [b.clone() for b in model.buffers()]
    weights = [p.detach().clone() for p in model.parameters()]
    capture_gradients(model, lambda: nn.functional.cross_entropy(model(x), y))
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, grads[n])
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), buffers, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), weights, strict=True))
    assert all(not m._forward_hooks for m in model.modules())
    assert model.training


def test_capture_gradients_works_on_other_models():
    lstm = nn.LSTM(4, 5, batch_first=True)
    head = nn.Linear(5, 2)
    model = nn.ModuleDict({"lstm": lstm, "head": head})
    x = torch.randn(3, 7, 4)

    def loss() -> torch.Tensor:
        out, _ = model["lstm"](x)
        return model["head"](out[:, -1]).pow(2).mean()

    sample = capture_gradients(model, loss)
    assert set(sample.activations) == {"lstm", "head"}
    assert sample.activations["lstm"].numel() >= 3 * 7 * 5          # the sequence output at least
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 1))
    images = torch.randn(2, 1, 6, 6)
    only_conv = capture_gradients(conv, lambda: conv(images).sum(), module_types=[nn.Conv2d])
    assert set(only_conv.activations) == {"0"} and only_conv.values().numel() == 2 * 2 * 4 * 4


def test_capture_gradients_errors():
    model = _mlp()
    with pytest.raises(ValueError, match="scalar loss"):
        capture_gradients(model, lambda: model(torch.randn(2, 6)))
    assert all(not m._forward_hooks for m in model.modules())       # hooks removed on error
    with pytest.raises(ValueError, match="no module"):
        capture_gradients(model, lambda: model(torch.randn(2, 6)).sum(), module_types=[nn.LSTM])
    with pytest.raises(ValueError, match="activations"):
        GradientSample().values("weights")
    with pytest.raises(ValueError, match="no parameters"):
        GradientSample().values("parameters")


def _scaler_step(model: nn.Module, scaler: torch.amp.GradScaler, monitor: ScaleMonitor,
                 optimizer: torch.optim.Optimizer, poison: bool) -> bool:
    optimizer.zero_grad()
    scaler.scale(model(torch.ones(2, 3)).sum()).backward()
    if poison:
        next(model.parameters()).grad[0, 0] = math.inf
    scaler.step(optimizer)
    return monitor.update()


def test_scale_monitor_records_skips_and_growth():
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    monitor = ScaleMonitor(scaler)
    poisoned = [False, True, True, False, False, False, False]
    weights = [model.weight.detach().clone()]
    for bad in poisoned:
        assert _scaler_step(model, scaler, monitor, optimizer, bad) == bad
        weights.append(model.weight.detach().clone())
    assert not torch.equal(weights[1], weights[0])           # a clean step moves the weights,
    assert torch.equal(weights[3], weights[1])               # the two skipped steps do not
    assert monitor.skipped == poisoned and monitor.skipped_steps == [1, 2]
    assert [math.log2(s) for s in monitor.scales] == [10, 10, 9, 8, 8, 8, 9]
    assert monitor.steps == 7 and math.isclose(monitor.skip_fraction, 2 / 7)


def test_scale_monitor_needs_an_enabled_scaler():
    with pytest.raises(ValueError, match="disabled"):
        ScaleMonitor(torch.amp.GradScaler("cpu", enabled=False))


def test_lost_update_threshold_for_a_decrease_is_half_the_finer_gap_below():
    # Below a power of two the grid is twice as fine, so a decrease needs only a quarter ulp.
    assert math.isclose(lost_update_threshold(1.0, "float16", decrease=True), 2.0**-12,
                        rel_tol=1e-3)
    assert math.isclose(lost_update_threshold(1.0, "bfloat16", decrease=True), 2.0**-9,
                        rel_tol=1e-3)
    assert math.isclose(lost_update_threshold(1.5, "float16", decrease=True),
                        lost_update_threshold(1.5, "float16"), rel_tol=1e-3)
    w = torch.tensor(1.0, dtype=torch.float16)
    assert float(w - torch.tensor(2.5e-4)) < 1.0 and float((w.float() - 2.4e-4).half()) == 1.0
