import math

import pytest
import torch
from gradpath.activations import ACTIVATIONS, derivative, get_activation, max_derivative_on_grid


def test_sigmoid_derivative_peaks_at_a_quarter_at_zero():
    peak, where = max_derivative_on_grid("sigmoid")
    assert math.isclose(peak, 0.25, abs_tol=1e-9)
    assert abs(where) < 1e-6


def test_derivative_matches_closed_forms():
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    s = torch.sigmoid(x)
    assert torch.allclose(derivative("sigmoid", x), s * (1 - s))
    assert torch.allclose(derivative("tanh", x), 1 - torch.tanh(x) ** 2)
    relu = derivative("relu", x[x != 0])
    assert set(relu.unique().tolist()) == {0.0, 1.0}
    assert derivative("sigmoid", x).dtype == torch.float64


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_registered_max_derivative_matches_the_grid(name):
    peak, _ = max_derivative_on_grid(name, points=40_001)
    assert math.isclose(peak, ACTIVATIONS[name].max_derivative, rel_tol=2e-3)


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_activation("swishy")
    for name in ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu"):
        assert name in str(err.value)


def test_saturation_labels():
    assert get_activation("sigmoid").saturates == "both sides"
    assert get_activation("relu").saturates == "negative side"
    assert get_activation("leaky_relu").saturates == "none"
