"""Norms that do not lie: finite inputs give the right finite answer, whatever their scale.

A float32 sum of squares overflows for entries above about 1.8e19 and underflows for entries
below about 1e-19; every norm gradpath reports must survive both (issue 9, section 1).
"""

import math

import numpy as np
import pytest
import torch
from gradpath.data import Dataset
from gradpath.experiments.clipping import clip_by_norm
from gradpath.models import DeepMLP
from gradpath.numerics import (
    _exact_norms_on_device,
    _scaled_norm,
    accurate_norm,
    combined_norm,
    tensor_norm,
    tensor_norms,
    trusted_norms,
)
from gradpath.probes import (
    LayerActivations,
    activation_statistics,
    global_gradient_norm,
    gradient_norms_by_layer,
)
from gradpath.training import train
from torch import nn


def _truth(t: torch.Tensor) -> float:
    """The norm in exact-enough arithmetic: numpy float64 after scaling by the largest entry."""
    v = t.detach().double().numpy().ravel()
    peak = np.abs(v).max()
    return 0.0 if peak == 0 else float(peak * np.linalg.norm(v / peak))


def _mixed() -> torch.Tensor:
    return torch.cat([torch.full((10,), 1e20), torch.full((1000,), 1e-26), torch.ones(5),
                      torch.full((3,), -3e-30)])


CASES = {
    "1e20 (float32 squares overflow)": torch.full((100,), 1e20),
    "1e20, 200 x 200 (the CPU's per-tensor path)": torch.full((200, 200), 1e20),
    "1e-26, 200 x 200": torch.full((200, 200), 1e-26),
    "1e-26 (float32 squares underflow)": torch.full((100,), 1e-26),
    "1e-40 (float32 subnormal entries)": torch.full((100,), 1e-40),
    "3e38 (float32's largest)": torch.full((1000,), 3e38),
    "mixed scales": _mixed(),
    "ordinary": torch.randn(64, 64, generator=torch.Generator().manual_seed(0)),
    "zeros": torch.zeros(7, 3),
    "float16 6e4 (float16's largest)": torch.full((1000,), 6e4, dtype=torch.float16),
    "float16 1e-7 (subnormal)": torch.full((1000,), 1e-7, dtype=torch.float16),
    "bfloat16 1e30": torch.full((100,), 1e30, dtype=torch.bfloat16),
    "bfloat16 1e-30": torch.full((100,), 1e-30, dtype=torch.bfloat16),
    "float64 1e200": torch.full((100,), 1e200, dtype=torch.float64),
    "float64 1e-200": torch.full((100,), 1e-200, dtype=torch.float64),
}


def test_the_issue_examples_exactly():
    assert tensor_norm(torch.full((100,), 1e20)) == pytest.approx(1e21, rel=1e-6)
    assert tensor_norm(torch.full((100,), 1e-26)) == pytest.approx(1e-25, rel=1e-6)
    # what a float32 reduction gives, and why this module exists
    assert torch.full((100,), 1e20).norm().item() == math.inf
    assert torch.full((100,), 1e-26).norm().item() == 0.0


@pytest.mark.parametrize("name", list(CASES))
def test_every_norm_path_is_right_for_finite_entries(name):
    t = CASES[name]
    truth = _truth(t)
    assert math.isfinite(truth)
    rel = 1e-3 if t.dtype in (torch.float16, torch.bfloat16) else 1e-6
    assert tensor_norm(t) == pytest.approx(truth, rel=rel, abs=0.0)
    assert tensor_norms([t, t * 0])[0] == pytest.approx(truth, rel=rel, abs=0.0)
    assert float(accurate_norm(t)) == pytest.approx(truth, rel=rel, abs=0.0)   # the one fallback
    assert float(accurate_norm(t.to_sparse())) == pytest.approx(truth, rel=rel, abs=0.0)
    on_device = _exact_norms_on_device([t]).item()             # train(record_every > 1)
    assert on_device == pytest.approx(truth, rel=rel, abs=0.0)
    work = t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
    if truth < torch.finfo(work.dtype).max:     # on MPS a float32 result holds up to 3.4e38
        assert _scaled_norm(work).item() == pytest.approx(truth, rel=rel, abs=0.0)   # MPS path


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_nonfinite_entries_and_only_those_give_nonfinite_norms(bad):
    t = torch.ones(50)
    t[7] = bad
    expected_nan = math.isnan(bad)
    for value in (tensor_norm(t), _exact_norms_on_device([t]).item(), _scaled_norm(t).item(),
                  float(accurate_norm(t)), float(accurate_norm(t.double()))):
        assert not math.isfinite(value)
        assert math.isnan(value) == expected_nan
    assert math.isfinite(tensor_norm(torch.full((10,), 3e38)))


def test_combined_norm_is_the_norm_of_the_concatenation():
    parts = [torch.full((10,), 1e20), torch.full((10,), 1e-26), torch.ones(4)]
    together = combined_norm(tensor_norms(parts))
    assert together == pytest.approx(_truth(torch.cat(parts)), rel=1e-9)
    assert combined_norm([1e300, 1e300]) == pytest.approx(math.sqrt(2) * 1e300)
    assert math.isnan(combined_norm([1.0, math.nan, math.inf]))
    assert combined_norm([1.0, math.inf]) == math.inf


def _model_with_gradients(*values: float) -> nn.Module:
    model = nn.Sequential(*[nn.Linear(10, 10) for _ in values])
    for layer, value in zip(model, values, strict=True):
        layer.weight.grad = torch.full_like(layer.weight, value)
        layer.bias.grad = torch.zeros_like(layer.bias)
    return model


def test_probes_report_huge_and_tiny_gradients_correctly():
    model = _model_with_gradients(1e20, 1e-26, 1.0)
    assert gradient_norms_by_layer(model) == pytest.approx([1e21, 1e-25, 10.0], rel=1e-6)
    assert global_gradient_norm(model) == pytest.approx(1e21, rel=1e-6)
    tiny = _model_with_gradients(1e-26, 1e-26)
    assert global_gradient_norm(tiny) == pytest.approx(math.sqrt(2) * 1e-25, rel=1e-6)


def test_float16_and_bfloat16_gradients():
    for dtype, value in ((torch.float16, 6e4), (torch.bfloat16, 1e30), (torch.bfloat16, 1e-30)):
        model = nn.Linear(10, 10).to(dtype)
        model.weight.grad = torch.full_like(model.weight, value)
        model.bias.grad = torch.full_like(model.bias, value)
        stored = float(model.weight.grad[0, 0])          # the value as the dtype holds it
        assert gradient_norms_by_layer(model)[0] == pytest.approx(10 * stored, rel=1e-6)
        assert global_gradient_norm(model) == pytest.approx(math.sqrt(110) * stored, rel=1e-6)


def test_activation_statistics_do_not_overflow():
    out = torch.full((8, 4), 1e20)
    out[0] = 3e20
    stats = LayerActivations(out, out, 0.0, 0.0)
    truth = out.double()
    assert stats.mean == pytest.approx(truth.mean().item(), rel=1e-9)
    assert stats.std == pytest.approx(truth.std().item(), rel=1e-9)
    assert out.std().item() == math.inf or not math.isfinite(out.var().item())   # float32 fails
    model = DeepMLP(4, 2, width=8, depth=3, init="uniform", init_scale=1e12,
                    generator=torch.Generator().manual_seed(0))
    deep = activation_statistics(model, torch.randn(16, 4))[-1]
    assert deep.output.abs().max().item() > 1e19 and math.isfinite(deep.std)


def test_clip_by_norm_survives_huge_entries():
    clipped = clip_by_norm(torch.full((100,), 1e20), 1.0)
    assert torch.allclose(clipped, torch.full((100,), 0.1))
    tiny = clip_by_norm(torch.full((100,), 1e-26), 1.0)
    assert torch.equal(tiny, torch.full((100,), 1e-26))              # already short
    assert torch.isnan(clip_by_norm(torch.tensor([1.0, math.inf]), 1.0)).all()


def _huge_but_finite_regression() -> tuple[nn.Module, Dataset]:
    """A linear model whose MSE gradient entries are about 2e20: finite, but float32 squares
    of them are not. Its loss, about 1e20, is finite too."""
    x = torch.full((4, 10), 1e10)
    y = torch.zeros(4, 1)
    model = nn.Linear(10, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    return model, Dataset(x, y, "regression")


def test_train_records_true_norms_of_finite_huge_gradients():
    model, data = _huge_but_finite_regression()
    history = train(model, data, steps=1, lr=1e-40)
    # loss = (10 · 1e10)² = 1e22; dL/dw_j = 2 · 1e11 · 1e10 = 2e21, ten entries
    assert history.loss[0] == pytest.approx(1e22, rel=1e-6)
    assert history.global_norm[0] == pytest.approx(2e21 * math.sqrt(10), rel=1e-6)
    assert not history.diverged and history.first_nonfinite_gradient_step is None
    model, data = _huge_but_finite_regression()
    clipped = train(model, data, steps=1, lr=1e-40, clip_norm=1.0)
    assert clipped.clipped_norm[0] == pytest.approx(1.0, rel=1e-5)   # scaled, not zeroed


def test_record_every_gives_the_same_history_on_huge_gradients():
    model, data = _huge_but_finite_regression()
    a = train(model, data, steps=4, lr=1e-40, clip_norm=1.0)
    model, data = _huge_but_finite_regression()
    b = train(model, data, steps=4, lr=1e-40, clip_norm=1.0, record_every=3)
    assert a.global_norm == pytest.approx(b.global_norm, rel=1e-6)
    assert a.clipped_norm == pytest.approx(b.clipped_norm, rel=1e-5)
    assert np.allclose(a.weight_norm_matrix(), b.weight_norm_matrix(), rtol=1e-6, atol=0)


def test_trusted_norms_is_the_one_rule_for_keeping_a_fast_norm():
    """A fast float32 norm is kept only when finite and ``norm² >= 1e9 · numel · tiny``."""
    fast = [float(torch.full((100,), e).norm()) for e in (1e20, 1e-26, 1e-18, 1.0)]
    assert fast[:2] == [math.inf, 0.0]                    # what float32 makes of them
    kept = trusted_norms(fast, [100] * 4)
    assert kept.tolist() == [False, False, False, True]    # 1e-17 is below the limit, 3.4e-14
    limit = math.sqrt(1e9 * 100 * torch.finfo(torch.float32).tiny)
    assert trusted_norms([limit * 1.001, limit * 0.999], [100, 100]).tolist() == [True, False]
    assert trusted_norms([math.nan, 0.0], [1, 0]).tolist() == [False, False]
    assert trusted_norms([1e-40], [4], torch.float64).tolist() == [True]
    with pytest.raises(ValueError, match="differ in length"):
        trusted_norms([1.0, 2.0], [3])
    with pytest.raises(ValueError, match="accumulated_in"):
        trusted_norms([1.0], [3], torch.float16)


def test_accurate_norm_rejects_what_is_not_a_floating_tensor():
    with pytest.raises(TypeError, match="got list"):
        accurate_norm([1.0])
    with pytest.raises(TypeError, match="dtype torch.int64"):
        accurate_norm(torch.ones(3, dtype=torch.int64))
    assert float(accurate_norm(torch.zeros(0))) == 0.0


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_group_norms_combine_without_overflow_or_underflow(scale):
    from gradpath.probes import group_norms
    grouped = group_norms({"a.w": 3 * scale, "a.b": 4 * scale, "c.w": math.nan}, r"^(\w)\.")
    assert grouped["a"] == pytest.approx(5 * scale, rel=1e-12)
    assert math.isnan(grouped["c"])


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("layout", ["coo", "csr", "csc", "bsr", "bsc"])
def test_sparse_layouts_give_the_norm_of_their_stored_values(layout):
    """Every sparse layout torch has: the norm of the stored values, no error (CSR used to raise a
    RuntimeError from inside torch)."""
    dense = torch.zeros(4, 4)
    dense[0, 1], dense[2, 3], dense[3, 0] = 3e20, -4e20, 1e-3
    sparse = {"coo": lambda: dense.to_sparse(), "csr": dense.to_sparse_csr,
              "csc": dense.to_sparse_csc, "bsr": lambda: dense.to_sparse_bsr((2, 2)),
              "bsc": lambda: dense.to_sparse_bsc((2, 2))}[layout]()
    assert float(accurate_norm(sparse)) == pytest.approx(5e20, rel=1e-6)
    assert tensor_norm(sparse) == pytest.approx(5e20, rel=1e-6)
    duplicated = torch.sparse_coo_tensor([[0, 0]], [3.0, 4.0], (2,))   # one entry stored twice
    assert tensor_norm(duplicated) == pytest.approx(7.0)


def test_the_overflow_threshold_is_on_the_norm_not_the_entries():
    """No entry is near 1.8e19, yet a float32 sum of squares overflows: the norm is 2e19."""
    t = torch.full((10**6,), 2e16)
    assert t.norm().item() == math.inf
    assert tensor_norm(t) == pytest.approx(2e19, rel=1e-6)
    # small entries: precision is lost below about 1e-19, zero only below about 2.6e-23
    assert torch.full((100,), 1e-20).norm().item() == pytest.approx(1e-19, rel=1e-4)
    assert torch.full((100,), 2e-23).norm().item() == 0.0
    assert tensor_norm(torch.full((100,), 2e-23)) == pytest.approx(2e-22, rel=1e-6)


def test_a_norm_beyond_float64_is_inf_although_the_entries_are_finite():
    """Documented limit: finite whenever the norm is representable (float64: below 1.8e308)."""
    t = torch.full((10,), 1.7e308, dtype=torch.float64)
    assert bool(torch.isfinite(t).all())
    assert math.isinf(float(accurate_norm(t)))
    assert math.isinf(tensor_norm(t))
