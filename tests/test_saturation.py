"""Tracking each hidden layer's activations during training (Glorot & Bengio's Figure 2)."""

import math

import pytest
from gradpath.data import digits
from gradpath.experiments.saturation import saturation_run


def test_sigmoid_top_layer_is_pushed_to_zero_while_tanh_learns():
    data = digits(limit=600)
    sigmoid = saturation_run(data, activation="sigmoid", recipe="standard", depth=5, width=64,
                             lr=0.5, steps=200, checkpoints=4)
    assert sigmoid.steps == [0, 50, 100, 150, 200]
    assert len(sigmoid.mean) == 4 and all(len(m) == 5 for m in sigmoid.mean)
    assert abs(sigmoid.mean[-1][0] - 0.5) < 0.05 and sigmoid.mean[-1][-1] < 0.2
    assert abs(sigmoid.mean[0][-1] - 0.5) < 0.05
    assert sigmoid.final_loss() > 0.95 * math.log(10)
    tanh = saturation_run(data, activation="tanh", recipe="standard", depth=5, width=32,
                          lr=0.5, steps=150, checkpoints=3)
    assert tanh.final_loss() < 0.6 * math.log(10) and tanh.accuracy > 0.7
    assert all(0 <= s <= 1 for layer in tanh.saturated for s in layer)


def test_divergence_stops_the_run_without_raising():
    run = saturation_run(digits(limit=100), activation="relu", recipe="too_large", depth=6,
                         width=32, lr=10.0, steps=20, checkpoints=2)
    assert math.isnan(run.accuracy) and len(run.loss) < 10  # diverged within a few steps
    assert run.steps == [0]  # stopped before the first checkpoint


def test_bad_arguments():
    data = digits(limit=50)
    with pytest.raises(ValueError):
        saturation_run(data, steps=0)
    with pytest.raises(ValueError):
        saturation_run(data, steps=5, checkpoints=6)
    with pytest.raises(ValueError):
        saturation_run(data, steps=5, checkpoints=1, probe_size=0)
    with pytest.raises(ValueError, match="valid choices"):
        saturation_run(data, recipe="glorot", steps=5, checkpoints=1)
