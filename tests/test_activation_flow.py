"""Activation derivatives compared, and gradient norms under a common weight gain."""

import math

import matplotlib.pyplot as plt
import pytest
from gradpath.activations import LEAKY_RELU_SLOPE
from gradpath.data import digits
from gradpath.experiments.activation_flow import (
    gain_sweep,
    gradient_norms_at_gain,
    plot_activations_and_derivatives,
    summarize_derivatives,
    summary_markdown,
    useful_range,
)


def test_summaries_measure_the_known_derivatives():
    s = {d.name: d for d in summarize_derivatives(["sigmoid", "tanh", "relu", "leaky_relu", "elu"])}
    assert s["sigmoid"].peak == pytest.approx(0.25) and abs(s["sigmoid"].peak_at) < 1e-6
    assert s["tanh"].peak == pytest.approx(1.0) and s["tanh"].values[2.0] < 0.1
    assert s["relu"].values[-5.0] == 0.0 and s["relu"].values[5.0] == 1.0
    assert s["relu"].values[0.0] == 0.0  # PyTorch's choice at the kink
    assert s["leaky_relu"].values[-5.0] == pytest.approx(LEAKY_RELU_SLOPE)
    assert s["elu"].values[-2.0] == pytest.approx(math.exp(-2.0))
    assert s["sigmoid"].saturates == "both sides" and s["relu"].saturates == "negative side"
    assert s["leaky_relu"].saturates == "none"
    table = summary_markdown(list(s.values()))
    assert table.count("\n") == 6 and "f'(0)" in table


def test_useful_range():
    low, high = useful_range("tanh", 0.1)
    assert high == pytest.approx(1.818, abs=1e-3) and low == pytest.approx(-high)
    assert all(math.isnan(v) for v in useful_range("sigmoid", 0.3))
    with pytest.raises(ValueError):
        useful_range("tanh", 0.0)


def test_figure_has_two_panels():
    fig = plot_activations_and_derivatives(["sigmoid", "relu"])
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) >= 2
    plt.close(fig)
    with pytest.raises(ValueError):
        plot_activations_and_derivatives([])


def test_gain_controls_the_gradient():
    data = digits(limit=128)
    relu = gain_sweep(data, ["relu"], [1.0, 4.0], depth=12, width=32)
    assert relu[4.0]["relu"][0] > 1e4 * relu[1.0]["relu"][0]  # large weights explode ReLU
    sig = gradient_norms_at_gain(data, activation="sigmoid", gain=1.0, depth=12, width=32)
    assert sig[0] < 1e-4 * sig[-1]  # sigmoid vanishes at a unit gain
    with pytest.raises(ValueError):
        gradient_norms_at_gain(data, activation="relu", gain=0.0)
    with pytest.raises(ValueError):
        gain_sweep(data, [], [1.0])
    with pytest.raises(ValueError, match="valid choices"):
        summarize_derivatives(["swish"])


def test_mean_field_matches_known_critical_gains():
    import torch
    from gradpath.experiments.activation_flow import critical_gain, fixed_point_curve, mean_field

    assert critical_gain("relu") == pytest.approx(math.sqrt(2), rel=1e-6)
    assert critical_gain("tanh") == pytest.approx(1.0, abs=1e-3)
    sigmoid = critical_gain("sigmoid")
    assert 10.1 < sigmoid < 10.2                      # the sigmoid's edge of chaos, zero biases
    assert mean_field("sigmoid", sigmoid).chi == pytest.approx(1.0, abs=1e-4)
    # sigmoid - 1/2 = tanh(z/2)/2 has slope 1/4 at 0 and no mean: its edge is the "4x" rule
    assert critical_gain(lambda z: torch.sigmoid(z) - 0.5) == pytest.approx(4.0, rel=1e-3)
    four = mean_field("sigmoid", 4.0)
    assert 0.35 < four.chi < 0.45 and four.q > 5       # the mean pushes q* up, chi_1 below 1
    assert mean_field("relu", 1.0).chi == pytest.approx(0.5, rel=1e-6)
    tanh = mean_field("tanh", 5 / 3)
    assert 1.15 < tanh.chi < 1.25 and tanh.converged   # PyTorch's tanh gain: chaotic
    assert tanh.backward_change(2) == pytest.approx(tanh.chi**2)
    gains, chis = fixed_point_curve("relu", [0.5, 2.0])
    assert gains == pytest.approx([math.sqrt(2)] * 2) and chis == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError):
        mean_field("sigmoid", 0.0)
    with pytest.raises(ValueError):
        critical_gain("sigmoid", q_range=(1.0, 0.5))
    with pytest.raises(ValueError):
        fixed_point_curve("tanh", [-1.0])


def test_network_at_gain_and_shared_fraction():
    import torch
    from gradpath.experiments.activation_flow import network_at_gain, shared_fraction

    model = network_at_gain(8, 3, activation="sigmoid", gain=10.0, depth=4, width=256, seed=1)
    hidden = model.blocks[1].linear.weight
    assert float(hidden.detach().std()) == pytest.approx(10 / 16, rel=0.05)
    assert float(model.head.weight.detach().std()) == pytest.approx(math.sqrt(2 / 259), rel=0.1)
    assert all(float(b.linear.bias.abs().max()) == 0.0 for b in model.blocks)
    same = torch.ones(5, 4)
    assert shared_fraction(same) == pytest.approx(1.0)
    assert shared_fraction(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == 0.0
    with pytest.raises(ValueError):
        shared_fraction(torch.zeros(3, 2))
    with pytest.raises(ValueError):
        shared_fraction(torch.ones(1, 2))
