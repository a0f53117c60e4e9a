"""gradpath.probes' measuring functions against values computed here by hand: saturation at the
default threshold's edge, dead units, activation statistics, non-finite lookups, and the
by-name norms (float64, exact), their grouping and the probe that leaves a model as found."""

from __future__ import annotations

import math

import pytest
import torch
from gradpath.models import Block, DeepMLP
from gradpath.probes import (
    activation_statistics,
    dead_fraction,
    first_nonfinite,
    gradient_norms_by_name,
    group_norms,
    nonfinite_parameters,
    parameter_norms_by_name,
    probe_gradient_norms_by_name,
    saturated_fraction,
)
from torch import nn


def test_saturation_at_the_default_thresholds_edge():
    # tanh'(3.0) = 0.00987 is below 1% of tanh's maximum slope 1; tanh'(2.9) = 0.01203 is not
    assert 1 - math.tanh(3.0) ** 2 < 0.01 < 1 - math.tanh(2.9) ** 2
    z = torch.tensor([2.9, 3.0, -3.0, 0.0])
    assert saturated_fraction("tanh", z) == 0.5
    assert saturated_fraction("tanh", z, threshold=0.02) == 0.75
    # sigmoid's slope s(1-s) peaks at 0.25: the cut is 0.0025; sigmoid'(6) = 0.00247 is below
    s = torch.sigmoid(torch.tensor([5.9, 6.0]))
    assert float((s * (1 - s))[0]) > 0.0025 > float((s * (1 - s))[1])
    assert saturated_fraction("sigmoid", torch.tensor([5.9, 6.0, -6.0, 0.0, 1.0])) == 0.4
    assert saturated_fraction("relu", torch.tensor([[-1.0, -2.0], [3.0, 4.0]]), 0.5) == 0.5
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError,
                match=rf"^threshold must be in the open interval \(0, 1\), got {bad}$"):
            saturated_fraction("tanh", z, threshold=bad)


def test_dead_fraction_counts_columns_zero_on_every_row():
    out = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 2.0, 3.0, 0.0]])
    assert dead_fraction(out) == 0.5
    assert dead_fraction(torch.ones(3, 2)) == 0.0
    with pytest.raises(ValueError, match=r"^expected a \(batch, units\) tensor, got shape "
                                         r"\(4,\)$"):
        dead_fraction(torch.zeros(4))


def test_activation_statistics_are_each_blocks_input_and_output():
    torch.manual_seed(0)
    model = DeepMLP(5, 2, width=6, depth=4, activation="tanh", init="normal", init_scale=2.0)
    x = torch.randn(32, 5)
    stats = activation_statistics(model, x)
    assert len(stats) == 3
    h = x
    for layer, block in zip(stats, model.blocks, strict=True):
        z = block.linear(h).detach()
        h = torch.tanh(z)
        torch.testing.assert_close(layer.pre_activation, z)
        torch.testing.assert_close(layer.output, h)
        assert layer.saturated_fraction == saturated_fraction("tanh", z)
        assert layer.dead_fraction == dead_fraction(h)
        assert layer.mean == pytest.approx(float(h.double().mean()), rel=1e-6)
        assert layer.std == pytest.approx(float(h.double().std()), rel=1e-6)
    assert stats[-1].saturated_fraction > 0.1             # scale 2.0 saturates tanh
    relu = activation_statistics(DeepMLP(5, 2, width=6, depth=3, init="normal", init_scale=3.0),
                                 -10 * torch.ones(4, 5).abs())
    assert all(0 <= s.dead_fraction <= 1 for s in relu)

    class Unnamed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([Block(5, 5, "relu")])

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.blocks[0](v)

    with pytest.raises(ValueError, match=r"^activation_statistics needs a model that records "
                                         r"its activation_name"):
        activation_statistics(Unnamed(), x)


def test_first_nonfinite_and_nonfinite_parameters():
    assert first_nonfinite([1.0, 2.0, math.nan, math.inf]) == 2
    assert first_nonfinite([-math.inf]) == 0
    assert first_nonfinite([1.0, 0.0]) is None and first_nonfinite([]) is None
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    assert nonfinite_parameters(model) == []
    with torch.no_grad():
        model[1].bias[0] = math.inf
    model[0].weight.grad = torch.tensor([[0.0, math.nan], [0.0, 0.0]])
    model[0].bias.grad = torch.zeros(2)
    assert nonfinite_parameters(model) == ["0.weight", "1.bias"]


def _model_with_grads() -> nn.Module:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.copy_(torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape) + i)
    model[0].weight.grad = torch.full((2, 3), 1e20)        # float32 squares would overflow
    model[1].weight.grad = torch.tensor([[3.0, 4.0]])
    return model


def test_gradient_norms_by_name_are_float64_exact_in_order():
    model = _model_with_grads()
    norms = gradient_norms_by_name(model)
    assert list(norms) == ["0.weight", "1.weight"]                # no gradient, left out
    entry = float(torch.tensor(1e20))                          # 1e20 rounded to float32
    assert norms["0.weight"] == pytest.approx(math.sqrt(6) * entry, rel=1e-12)
    assert norms["1.weight"] == 5.0
    assert gradient_norms_by_name(model, r"^1\.") == {"1.weight": 5.0}
    with pytest.raises(RuntimeError, match=r"^no parameter matching 'bias' holds a gradient: "
                                           r"call loss.backward\(\) first$"):
        gradient_norms_by_name(model, "bias")
    with pytest.raises(RuntimeError, match=r"^no parameter holds a gradient: call"):
        gradient_norms_by_name(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"^pattern '\[' is not a valid regular expression: "):
        gradient_norms_by_name(model, "[")


def test_parameter_norms_by_name():
    model = _model_with_grads()
    norms = parameter_norms_by_name(model)
    assert list(norms) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    expected = [math.sqrt(sum(v * v for v in range(6))), math.sqrt(1 + 4),
                math.sqrt(4 + 9), 3.0]
    assert list(norms.values()) == pytest.approx(expected, rel=1e-12)
    assert parameter_norms_by_name(model, "bias") == {"0.bias": pytest.approx(math.sqrt(5)),
                                                      "1.bias": 3.0}


def test_group_norms_combine_in_quadrature():
    norms = {"a.0.w": 3.0, "a.0.b": 4.0, "a.1.w": 1.0, "x": 5.0}
    assert group_norms(norms, r"a\.(\d+)\.") == {"0": 5.0, "1": 1.0}
    assert group_norms(norms, r"a\.\d") == {"a.0": 5.0, "a.1": 1.0}     # no group: whole match
    assert group_norms(norms, lambda n: None if n == "x" else "all") == {
        "all": pytest.approx(math.sqrt(26))}
    assert list(group_norms({"b": 1.0, "a": 1.0}, lambda n: n)) == ["b", "a"]
    assert math.isinf(group_norms({"a": math.inf, "b": 1.0}, lambda n: "g")["g"])
    with pytest.raises(ValueError, match=r"^no parameter name fell into a group \(key='zz'\); "
                                         r"names look like a\.0\.w, a\.0\.b, a\.1\.w$"):
        group_norms(norms, "zz")


def test_probe_gradient_norms_by_name_measures_a_fresh_pass_and_leaves_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
    model.train()
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    stale = torch.full((3, 4), 7.0)
    model[0].weight.grad = stale.clone()                       # one stale gradient, others None
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}

    def loss() -> torch.Tensor:
        return nn.functional.mse_loss(model(x), y)

    norms = probe_gradient_norms_by_name(model, loss, r"weight")
    twin = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
    twin.load_state_dict(model.state_dict())
    twin.train()
    nn.functional.mse_loss(twin(x), y).backward()
    expected = {n: float(p.grad.double().norm()) for n, p in twin.named_parameters()
                if "weight" in n}
    assert norms == pytest.approx(expected, rel=1e-12)
    assert torch.equal(model[0].weight.grad, stale)
    assert all(p.grad is None for n, p in model.named_parameters() if n != "0.weight")
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())
    with pytest.raises(ValueError, match=r"^loss_fn must return a scalar tensor"):
        probe_gradient_norms_by_name(model, lambda: model(x))
    assert torch.equal(model[0].weight.grad, stale)             # restored after an error too


def test_layer_probes_follow_weight_layers_and_name_their_problems():
    from gradpath.probes import global_gradient_norm, gradient_norms_by_layer, weight_layers

    class Partial(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 1)

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(v))

        def weight_layers(self) -> list[nn.Module]:
            return [self.b]

    model = Partial()
    assert weight_layers(model) == [model.b]
    with pytest.raises(RuntimeError, match=r"^no gradient on the weights yet: call "
                                           r"loss.backward\(\) first$"):
        gradient_norms_by_layer(model)
    with pytest.raises(RuntimeError, match=r"^no gradients yet: call loss.backward\(\) first$"):
        global_gradient_norm(model)
    model(torch.ones(2, 3)).sum().backward()
    assert gradient_norms_by_layer(model) == [pytest.approx(float(model.b.weight.grad.norm()))]
    with pytest.raises(ValueError, match=r"^model has no nn.Linear layers to probe$"):
        weight_layers(nn.Sequential(nn.Tanh()))


def test_backward_signal_norms_needs_blocks_and_reports_unreached_blocks_as_nan():
    from gradpath.probes import backward_signal_norms

    with pytest.raises(ValueError,
                       match=r"^backward_signal_norms needs a model with a `blocks` "
                             r"list \(e.g. gradpath.models.DeepMLP\); Linear has none$"):
        backward_signal_norms(nn.Linear(2, 1), torch.ones(1, 2), torch.ones(1, 1),
                              nn.functional.mse_loss)

    class Cut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
            self.spare = nn.Parameter(torch.ones(1))

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.blocks[1](self.blocks[0](v).detach())       # block 0 is cut off

    model = Cut()
    model.spare.grad = torch.ones(1)                                  # stale, unreached
    signal = backward_signal_norms(model, torch.ones(3, 2), torch.ones(3, 2),
                                   nn.functional.mse_loss)
    assert math.isnan(signal[0]) and signal[1] > 0
    assert model.spare.grad is None                                   # replaced by this pass's


def test_leaky_relu_is_never_saturated_and_unused_parameters_have_no_probe_norm():
    # leaky ReLU's slope 0.01 equals 1% of its maximum slope: not below it, so not saturated
    assert saturated_fraction("leaky_relu", torch.tensor([-1.0, -5.0, 2.0])) == 0.0
    model = nn.Linear(2, 1)
    model.spare = nn.Parameter(torch.ones(1))
    model.spare.grad = torch.full((1,), 3.0)                  # stale: not this pass's gradient
    norms = probe_gradient_norms_by_name(model, lambda: model(torch.ones(1, 2)).sum())
    assert list(norms) == ["weight", "bias"]
    assert torch.equal(model.spare.grad, torch.full((1,), 3.0))  # and put back
