"""Forward and backward variances layer by layer, and the initialization table."""

import math

import pytest
import torch
from gradpath.experiments.variance import (
    initialization_table,
    log10_drift,
    network_variances,
    per_layer_factor,
    signal_variances,
    table_markdown,
    total_change,
    variance_sweep,
)
from gradpath.models import DeepMLP


def test_linear_network_matches_the_exact_backward_variance():
    # One hidden identity layer: with g ~ N(0, I) at the output, dL/da = W_head^T g exactly.
    model = DeepMLP(8, 5, width=6, depth=2, activation="identity")
    x = torch.randn(4000, 8, generator=torch.Generator().manual_seed(0))
    result = signal_variances(model, x, generator=torch.Generator().manual_seed(1))
    w = model.head.weight.detach()
    expected = float((w**2).sum() / w.shape[1])  # E over units of sum_j W_ji^2
    assert result.activation_gradient[0] == pytest.approx(expected, rel=0.1)
    z = model.blocks[0].linear(x).detach()
    assert result.pre_activation[0] == pytest.approx(float(z.var()), rel=1e-5)
    assert len(result.weight_gradient) == 2 and len(result.forward) == 1


def test_he_preserves_relu_variance_and_xavier_halves_it():
    he = network_variances("he", "relu", depth=30, width=128, samples=512)
    xavier = network_variances("xavier", "relu", depth=30, width=128, samples=512)
    assert 0.85 < per_layer_factor(he.forward) < 1.1
    assert 0.85 < per_layer_factor(list(reversed(he.backward))) < 1.1
    assert per_layer_factor(xavier.forward) == pytest.approx(0.5, abs=0.06)
    assert per_layer_factor(list(reversed(xavier.backward))) == pytest.approx(0.5, abs=0.06)


def test_extremes_are_reported_not_raised():
    small = network_variances("too_small", "tanh", depth=20, samples=64)
    assert small.forward[-1] < 1e-40
    big = network_variances("too_large", "relu", depth=50, samples=64, dtype="float32")
    assert any(math.isinf(v) or math.isnan(v) for v in big.forward)  # overflowed float32
    big64 = network_variances("too_large", "relu", depth=50, samples=64)
    assert all(math.isfinite(v) for v in big64.forward) and big64.forward[-1] > 1e60
    assert max(big.saturated_fraction) <= 1.0


def test_lsuv_network_has_unit_pre_activation_variance():
    result = network_variances("lsuv", "tanh", depth=20, samples=128)
    assert all(abs(v - 1) < 0.1 for v in result.forward)


def test_saturation_is_measured():
    result = network_variances("too_large", "tanh", depth=10, samples=64)
    assert min(result.saturated_fraction) > 0.5


def test_factor_helpers():
    assert per_layer_factor([1.0, 0.5, 0.25]) == pytest.approx(0.5)
    assert per_layer_factor([1.0, 2.0, math.inf]) == math.inf
    assert per_layer_factor([1.0, 0.0]) == 0.0
    assert math.isnan(per_layer_factor([1.0, math.nan]))
    assert total_change([2.0, 4.0, 8.0]) == 4.0
    assert log10_drift([1.0, 1e-3]) == pytest.approx(3.0)
    assert log10_drift([1.0, 0.0]) == math.inf
    with pytest.raises(ValueError):
        per_layer_factor([1.0])


def test_table_picks_he_for_relu_and_xavier_for_identity():
    sweep = variance_sweep(["xavier", "he"], ["identity", "relu"], depth=20, samples=128)
    rows = {r.activation: r for r in initialization_table(sweep)}
    assert rows["relu"].best == "he" and rows["identity"].best == "xavier"
    assert rows["relu"].within_limit == ["he"] and rows["identity"].within_limit == ["xavier"]
    assert rows["relu"].registry == "he"
    text = table_markdown(list(rows.values()))
    assert text.count("\n") == 3 and "He/Kaiming" in text and "within 1000×" in text
    with pytest.raises(ValueError):
        initialization_table(sweep, limit=1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="valid choices"):
        network_variances("kaiming", "relu")
    with pytest.raises(ValueError, match="valid choices"):
        network_variances("he", "relu", dtype="float16")
    with pytest.raises(ValueError):
        signal_variances(torch.nn.Linear(3, 3), torch.randn(4, 3))
    with pytest.raises(ValueError):
        signal_variances(DeepMLP(3, 2, width=4, depth=3), torch.randn(1, 3))
    with pytest.raises(ValueError):
        variance_sweep([], ["relu"])
    with pytest.raises(ValueError):
        initialization_table({})


def test_variances_at_gain_shows_pytorchs_tanh_gain_is_chaotic():
    from gradpath.experiments.variance import total_change, variances_at_gain

    glorot = variances_at_gain("tanh", 1.0, depth=30, width=64)
    pytorch = variances_at_gain("tanh", 5 / 3, depth=30, width=64)
    assert total_change(list(reversed(pytorch.backward))) > 100        # ~1.21 per layer
    assert total_change(list(reversed(glorot.backward))) < 2
    with pytest.raises(ValueError):
        variances_at_gain("tanh", 1.0, dtype="float16")
    with pytest.raises(ValueError):
        variances_at_gain("tanh", -1.0)
