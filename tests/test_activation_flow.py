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
