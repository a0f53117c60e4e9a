"""Chapter experiments report the right finite number for finite extreme inputs (issue 9 §1).

A float32 sum of squares overflows once an entry passes about 1.8e19 and underflows once entries
fall below about 1e-19; each experiment function that reports a norm, a variance or an RMS is
checked here with entries of 1e20 and 1e-26, whose true answers are finite and nonzero.
"""

import math

import pytest
import torch
from gradpath.experiments.explosion import rms_derivative, weight_gain
from gradpath.experiments.normalization import landscape_along_gradient, layer_input_probe
from gradpath.experiments.recurrent import VanillaRNN, gradient_through_time
from gradpath.experiments.residual import residual_stream_statistics
from gradpath.experiments.variance import _variance
from torch import nn

SCALES = [1e20, 1e-26]


@pytest.mark.parametrize("scale", SCALES)
def test_weight_gain_of_extreme_weights(scale):
    w = torch.full((4, 100), scale)            # ‖W‖_F = 20·scale, fan_out 4
    assert math.isclose(weight_gain(w), 10 * scale, rel_tol=1e-6)


@pytest.mark.parametrize("scale", SCALES)
def test_rms_derivative_of_extreme_pre_activations(scale):
    z = torch.full((50,), scale)
    assert rms_derivative("relu", z) == pytest.approx(1.0)
    assert rms_derivative("relu", -z) == 0.0


class _Blocks(nn.Module):
    """Two identity blocks: the stream statistics are those of the input."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Identity(), nn.Identity()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return x


@pytest.mark.parametrize("scale", SCALES)
def test_residual_stream_statistics_of_extreme_outputs(scale):
    x = scale * torch.tensor([[1.0, -1.0], [1.0, -1.0]])
    stats = residual_stream_statistics(_Blocks(), x)
    for mean, std, rms in zip(stats.mean, stats.std, stats.rms, strict=True):
        assert mean == 0.0
        assert math.isclose(std, scale * math.sqrt(4 / 3), rel_tol=1e-6)
        assert math.isclose(rms, scale, rel_tol=1e-6)


@pytest.mark.parametrize("scale", SCALES)
def test_variance_of_extreme_entries(scale):
    t = scale * torch.tensor([1.0, -1.0] * 50)
    assert float(t.var()) in (math.inf, 0.0)                  # what float32 makes of it
    assert math.isclose(_variance(t), scale**2 * 100 / 99, rel_tol=1e-6)
    assert _variance(torch.tensor([scale, math.inf])) == math.inf
    assert math.isnan(_variance(torch.tensor([scale, math.nan])))


@pytest.mark.parametrize("scale", SCALES)
def test_landscape_norms_of_an_extreme_gradient(scale):
    model = nn.Linear(100, 1, bias=False)
    x, y = torch.ones(1, 100), torch.zeros(1, 1)
    # a linear loss: every weight's gradient is `scale`, and it does not change along the path
    probe = landscape_along_gradient(model, x, y, [1e-3], lambda out, _y: scale * out.sum())
    assert math.isclose(probe.gradient_norm, 10 * scale, rel_tol=1e-6)
    assert probe.gradient_changes == [0.0]


@pytest.mark.parametrize("scale", SCALES)
def test_layer_input_probe_statistics_of_extreme_inputs(scale):
    model = _Blocks()
    model.blocks = nn.ModuleList([_WithActivation(), _WithActivation()])
    batch = scale * torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    inputs = layer_input_probe(0, batch)(model, batch, batch)
    assert inputs.std.dtype == torch.float64
    assert math.isclose(float(inputs.std[0]), scale * math.sqrt(4 / 3), rel_tol=1e-6)
    assert float(inputs.mean[0]) == 0.0


class _WithActivation(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.activation = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x)


@pytest.mark.parametrize("scale", SCALES)
def test_gradient_through_time_of_an_extreme_loss(scale):
    torch.manual_seed(0)
    model = VanillaRNN(1, 8, generator=torch.Generator().manual_seed(0))
    x, y = torch.randn(3, 5), torch.zeros(3, 1)
    unit = gradient_through_time(model, x, y, lambda out, _y: out.sum())
    scaled = gradient_through_time(model, x, y, lambda out, _y: scale * out.sum())
    assert all(math.isfinite(v) and v > 0 for v in scaled)
    for a, b in zip(unit, scaled, strict=True):
        assert math.isclose(b, scale * a, rel_tol=1e-5)
