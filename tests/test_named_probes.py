"""Probes and initialization by parameter name: they reach weights that are not nn.Linear."""

from __future__ import annotations

import math

import pytest
import torch
from gradpath.init import NAMED_SCHEMES, initialize_by_name_, xavier_std
from gradpath.probes import (
    gradient_norms_by_name,
    group_norms,
    parameter_norms_by_name,
    probe_gradient_norms_by_name,
)
from torch import nn


def _layer() -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)


def _backward(layer: nn.Module) -> None:
    layer(torch.randn(3, 5, 16)).pow(2).mean().backward()


def test_gradient_norms_by_name_sees_the_attention_in_proj_weight():
    layer = _layer()
    _backward(layer)
    norms = gradient_norms_by_name(layer)
    assert "self_attn.in_proj_weight" in norms and "linear1.weight" in norms
    expected = float(layer.self_attn.in_proj_weight.grad.double().norm())
    assert math.isclose(norms["self_attn.in_proj_weight"], expected, rel_tol=1e-12)
    assert list(gradient_norms_by_name(layer, r"norm\d")) == ["norm1.weight", "norm1.bias",
                                                              "norm2.weight", "norm2.bias"]


def test_gradient_norms_are_accumulated_in_float64():
    layer = nn.Linear(10, 10)
    layer.weight.grad = torch.full((10, 10), 1e30)      # squares overflow float32
    layer.bias.grad = torch.full((10,), 1e-30)          # squares underflow float32
    assert not math.isfinite(float(layer.weight.grad.norm()))
    assert float(layer.bias.grad.norm()) == 0.0
    norms = gradient_norms_by_name(layer)
    assert math.isclose(norms["weight"], 1e31, rel_tol=1e-6)
    assert math.isclose(norms["bias"], math.sqrt(10) * 1e-30, rel_tol=1e-6)
    layer.bias.grad[0] = math.nan
    assert math.isnan(gradient_norms_by_name(layer)["bias"])


def test_gradient_norms_by_name_errors():
    layer = _layer()
    with pytest.raises(RuntimeError, match="backward"):
        gradient_norms_by_name(layer)
    _backward(layer)
    with pytest.raises(RuntimeError, match="matching 'nothing'"):
        gradient_norms_by_name(layer, "nothing")
    with pytest.raises(ValueError, match="regular expression"):
        gradient_norms_by_name(layer, "(")


def test_parameter_norms_by_name():
    layer = _layer()
    norms = parameter_norms_by_name(layer, "in_proj_weight")
    assert list(norms) == ["self_attn.in_proj_weight"]
    assert math.isclose(norms["self_attn.in_proj_weight"],
                        float(layer.self_attn.in_proj_weight.detach().double().norm()))


def test_group_norms_adds_squares_per_group():
    norms = {"layers.0.a": 3.0, "layers.0.b": 4.0, "layers.1.a": 1.0, "head.weight": 2.0}
    assert group_norms(norms, r"^layers\.(\d+)\.") == {"0": 5.0, "1": 1.0}
    assert group_norms(norms, r"head") == {"head": 2.0}          # no capture group: the match
    by_letter = group_norms(norms, lambda n: n[-1] if n.startswith("layers") else None)
    assert by_letter == {"a": math.sqrt(10.0), "b": 4.0}
    assert math.isinf(group_norms({"x.1": math.inf, "x.2": 1.0}, "x")["x"])
    with pytest.raises(ValueError, match="no parameter name"):
        group_norms(norms, "nothing")
    with pytest.raises(ValueError, match="regular expression"):
        group_norms(norms, "(")


def test_probe_leaves_the_model_as_found():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    model.train()
    old_grad = torch.randn(8, 4)
    model[0].weight.grad = old_grad.clone()                   # a gradient already there
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    x, y = torch.randn(16, 4) * 3 + 1, torch.randint(0, 2, (16,))
    norms = probe_gradient_norms_by_name(
        model, lambda: nn.functional.cross_entropy(model(x), y))
    assert set(norms) == {n for n, _ in model.named_parameters()}
    assert torch.equal(model[0].weight.grad, old_grad)
    assert all(p.grad is None for n, p in model.named_parameters() if n != "0.weight")
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    assert model.training
    # the same numbers as a plain backward pass
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    assert norms == pytest.approx(gradient_norms_by_name(model), rel=1e-6)
    with pytest.raises(ValueError, match="scalar"):
        probe_gradient_norms_by_name(model, lambda: model(x))


def test_initialize_by_name_gives_each_row_block_its_own_fans():
    layer = _layer()
    names = initialize_by_name_(layer, r"in_proj_weight$", "xavier_normal", row_blocks=3,
                                gain=(1.0, 1.0, 0.5), generator=torch.Generator().manual_seed(0))
    assert names == ["self_attn.in_proj_weight"]
    blocks = layer.self_attn.in_proj_weight.detach().chunk(3)
    target = xavier_std(16, 16)                              # a d × d matrix's fans
    assert all(math.isclose(float(b.std()), target, rel_tol=0.15) for b in blocks[:2])
    assert math.isclose(float(blocks[2].std()), 0.5 * target, rel_tol=0.15)
    # one (3d, d) matrix instead: fan_out = 3d, a smaller std
    initialize_by_name_(layer, r"in_proj_weight$", "xavier_normal",
                        generator=torch.Generator().manual_seed(0))
    assert math.isclose(float(layer.self_attn.in_proj_weight.detach().std()),
                        xavier_std(16, 48), rel_tol=0.1)


def test_initialize_by_name_schemes_and_reproducibility():
    layer = _layer()
    initialize_by_name_(layer, r"\.bias$", "zeros")
    assert all(float(p.detach().abs().max()) == 0
               for n, p in layer.named_parameters() if n.endswith("bias"))
    initialize_by_name_(layer, r"norm1\.weight", "ones")
    initialize_by_name_(layer, r"linear1\.weight", "uniform", scale=0.1)
    assert float(layer.linear1.weight.detach().abs().max()) <= 0.1
    initialize_by_name_(layer, r"linear2\.weight", "he_normal")
    assert math.isclose(float(layer.linear2.weight.detach().std()), math.sqrt(2 / 32), rel_tol=0.15)
    initialize_by_name_(layer, r"out_proj\.weight", "orthogonal")
    w = layer.self_attn.out_proj.weight.detach()
    assert torch.allclose(w @ w.T, torch.eye(16), atol=1e-5)
    draws = []
    for _ in range(2):
        initialize_by_name_(layer, r"linear1\.weight", "normal", scale=0.02,
                            generator=torch.Generator().manual_seed(3))
        draws.append(layer.linear1.weight.detach().clone())
    assert torch.equal(*draws)
    assert set(NAMED_SCHEMES) >= {"xavier_uniform", "he_normal", "zeros"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(pattern="in_proj_weight", scheme="lecun"), "unknown scheme"),
    (dict(pattern="nothing", scheme="zeros"), "matches no parameter; names look like"),
    (dict(pattern="(", scheme="zeros"), "regular expression"),
    (dict(pattern=r"norm1\.weight", scheme="xavier_normal"), "at least 2 dimensions"),
    (dict(pattern="in_proj_weight", scheme="xavier_normal", row_blocks=5), "equal blocks"),
    (dict(pattern="in_proj_weight", scheme="xavier_normal", row_blocks=3, gain=(1, 1)),
     "2 entries"),
    (dict(pattern="in_proj_weight", scheme="xavier_normal", gain=-1.0), "positive"),
    (dict(pattern="in_proj_weight", scheme="normal"), "positive scale"),
    (dict(pattern="in_proj_weight", scheme="zeros", row_blocks=0), "row_blocks"),
])
def test_initialize_by_name_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        initialize_by_name_(_layer(), **kwargs)
