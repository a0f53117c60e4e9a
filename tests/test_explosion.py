"""Tests for experiments.explosion: growth factors, layer gains, and the explosion detector."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest
import torch
from gradpath.data import teacher_classification, teacher_regression
from gradpath.experiments.explosion import (
    LayerGain,
    detect_explosion,
    growth_factor,
    loss_spikes,
    norm_to_running_median,
    overflow_trace,
    plot_symptoms,
    predicted_layer_gains,
    rms_derivative,
    weight_gain,
)
from gradpath.models import DeepMLP
from gradpath.probes import backward_signal_norms
from gradpath.training import TrainingHistory, loss_function, train


def test_growth_factor_recovers_a_geometric_sequence():
    assert math.isclose(growth_factor([3 * 2.0**k for k in range(8)]), 2.0, rel_tol=1e-9)
    assert math.isclose(growth_factor([0.5**k for k in range(5)]), 0.5, rel_tol=1e-9)
    assert math.isclose(growth_factor([1.0, 10.0], positions=[0, 2]), math.sqrt(10), rel_tol=1e-9)
    # non-finite and zero values are left out of the fit
    assert math.isclose(growth_factor([1.0, 2.0, math.inf, 8.0, 0.0]), 2.0, rel_tol=1e-9)
    assert math.isnan(growth_factor([1.0, math.nan]))
    with pytest.raises(ValueError, match="positions"):
        growth_factor([1.0, 2.0], positions=[0])


def test_weight_gain_of_uniform_weights():
    g = torch.Generator().manual_seed(0)
    w = torch.empty(400, 300).uniform_(-2, 2, generator=g)
    assert math.isclose(weight_gain(w), 2 * math.sqrt(300 / 3), rel_tol=0.02)
    with pytest.raises(ValueError, match="weight matrix"):
        weight_gain(torch.ones(3))


def test_rms_derivative_of_relu_and_saturated_sigmoid():
    z = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    assert math.isclose(rms_derivative("relu", z), math.sqrt(0.5), rel_tol=0.01)
    assert math.isclose(rms_derivative("sigmoid", torch.zeros(10)), 0.25)
    # z ~ N(0, 20²): E[σ'(z)²] ≈ (1/6)·φ(0)/20, since ∫σ'(z)² dz = 1/6
    expected = math.sqrt((1 / 6) / (math.sqrt(2 * math.pi) * 20))
    assert math.isclose(rms_derivative("sigmoid", 20 * z), expected, rel_tol=0.05)


def _profile(activation: str, width: int) -> tuple[list[float], list[LayerGain]]:
    data = teacher_classification(128, 16, 4, seed=0)
    model = DeepMLP(16, 4, width=width, depth=8, activation=activation, init="uniform",
                    init_scale=2.0, generator=torch.Generator().manual_seed(0))
    gains = predicted_layer_gains(model, data.x)
    signal = backward_signal_norms(model, data.x, data.y, loss_function(data))
    return signal, gains


def test_predicted_gains_match_the_measured_backward_growth():
    for activation in ("relu", "sigmoid"):
        signal, gains = _profile(activation, 64)
        assert len(gains) == len(signal) - 1
        measured = 1 / growth_factor(signal)   # signal grows toward the input (layer 1)
        predicted = math.exp(sum(math.log(g.total) for g in gains) / len(gains))
        assert math.isclose(measured, predicted, rel_tol=0.25), activation


def test_large_weights_relu_explodes_sigmoid_saturates():
    relu_signal, relu_gains = _profile("relu", 64)
    sig_signal, sig_gains = _profile("sigmoid", 64)
    assert relu_signal[0] > 1e3 * relu_signal[-1]
    assert all(g.derivative > 0.6 for g in relu_gains)
    assert all(g.derivative < 0.15 for g in sig_gains)
    assert sig_signal[0] < 10 * sig_signal[-1]


def test_loss_spikes():
    losses = [1.0, 0.9, 0.8, 20.0, 0.7, math.nan, 0.6, 100.0]
    assert loss_spikes(losses, factor=10) == [3, 7]
    assert loss_spikes([5.0, 1.0, 1.0]) == []
    with pytest.raises(ValueError, match="factor"):
        loss_spikes(losses, factor=1.0)
    with pytest.raises(ValueError, match="window"):
        loss_spikes(losses, window=0)


def test_detect_explosion_on_recorded_numbers():
    history = TrainingHistory(loss=[1.0, 1.0, 50.0, 1e9, math.nan],
                              global_norm=[1.0, 2.0, 500.0, 5e4, math.nan])
    report = detect_explosion(history)
    assert report.exploding
    assert report.first_above_threshold == 3 and report.first_nonfinite == 4
    assert report.warning_steps == 1 and report.largest_finite_norm == 5e4
    assert report.spikes == [2, 3]
    assert "step 3" in report.summary() and "inf/nan at step 4" in report.summary()
    calm = detect_explosion(TrainingHistory(loss=[1.0, 0.9], global_norm=[3.0, 2.0]))
    assert not calm.exploding and calm.warning_steps is None and "healthy" in calm.summary()
    with pytest.raises(ValueError, match="threshold"):
        detect_explosion(history, threshold=0)


def test_detect_explosion_on_real_runs():
    data = teacher_regression(256, 8, seed=0)

    def model(lr_init: str = "he_normal") -> DeepMLP:
        return DeepMLP(8, 1, width=32, depth=8, activation="relu", init=lr_init,
                       generator=torch.Generator().manual_seed(0))

    healthy = train(model(), data, steps=40, lr=0.01, batch_size=64)
    wild = train(model(), data, steps=40, lr=0.5, batch_size=64, stop_at_nonfinite=False)
    assert not detect_explosion(healthy).exploding
    report = detect_explosion(wild)
    assert report.exploding and report.first_nonfinite is not None
    assert report.first_above_threshold is not None
    assert report.first_above_threshold <= report.first_nonfinite


def test_plot_symptoms_has_three_panels_and_marks_nonfinite():
    history = TrainingHistory(loss=[1.0, 10.0, math.nan], global_norm=[1.0, 2e3, math.inf],
                              weight_norms=[[1.0, 1.0], [2.0, 2.0], [math.nan, math.nan]])
    fig = plot_symptoms({"run": history})
    assert len(fig.axes) == 3
    assert any(len(ax.collections) > 0 for ax in fig.axes)   # the red ✕ markers
    plt.close(fig)
    with pytest.raises(ValueError, match="runs"):
        plot_symptoms({})


def test_predicted_layer_gains_needs_a_deep_mlp():
    with pytest.raises(ValueError, match="DeepMLP"):
        predicted_layer_gains(torch.nn.Linear(3, 3), torch.randn(2, 3))  # type: ignore[arg-type]


def test_norm_to_running_median():
    ratios = norm_to_running_median([1.0, 2.0, 3.0, 30.0, math.inf, 2.0], window=3)
    assert math.isnan(ratios[0]) and ratios[1] == 2.0 and ratios[2] == 2.0   # medians 1, 1.5
    assert ratios[3] == 15.0                                                 # median of 1, 2, 3
    assert math.isnan(ratios[4])                  # a non-finite norm is not a ratio ...
    assert ratios[5] == 2.0 / 3.0                 # ... and stays out of the median (2, 3, 30)
    assert norm_to_running_median([0.0, 1.0]) == [math.nan, math.inf] or math.isinf(
        norm_to_running_median([0.0, 1.0])[1])
    with pytest.raises(ValueError, match="window"):
        norm_to_running_median([1.0], window=0)


def _tiny_mlp(scale: float) -> DeepMLP:
    model = DeepMLP(4, 2, width=4, depth=3, activation="relu", init="uniform", init_scale=1.0,
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for layer in model.weight_layers():
            layer.weight.mul_(scale)
    return model


def test_overflow_trace_reads_the_entries_and_leaves_the_model_as_found():
    x, y = torch.ones(8, 4), torch.zeros(8, 2)
    calm = _tiny_mlp(1.0)
    marker = torch.full_like(calm.head.weight, 7.0)
    calm.head.weight.grad = marker.clone()
    trace = overflow_trace(calm, x, y, torch.nn.MSELoss())
    assert trace.first_nonfinite_layer is None and trace.gradient_finite
    assert math.isfinite(trace.loss) and math.isclose(trace.global_norm, trace.float32_norm,
                                                      rel_tol=1e-5)
    assert torch.equal(calm.head.weight.grad, marker)            # .grad put back
    assert calm.blocks[0].linear.weight.grad is None

    # weights of 1e7: activations reach ~1e28, gradient entries pass 1.8e19 but stay finite
    big = overflow_trace(_tiny_mlp(1e7), x, y, torch.nn.MSELoss())
    assert big.gradient_finite and math.isfinite(big.global_norm)
    assert big.largest_gradient_entry > 1.9e19 and math.isinf(big.float32_norm)
    assert big.global_norm >= big.largest_gradient_entry

    # weights of 1e15: the forward pass itself overflows in a middle layer
    broken = overflow_trace(_tiny_mlp(1e15), x, y, torch.nn.MSELoss())
    assert broken.first_nonfinite_layer is not None and broken.first_nonfinite_layer > 1
    assert not math.isfinite(broken.loss) and not broken.gradient_finite
    with pytest.raises(ValueError, match="DeepMLP"):
        overflow_trace(torch.nn.Linear(4, 2), x, y, torch.nn.MSELoss())  # type: ignore[arg-type]
