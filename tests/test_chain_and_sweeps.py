import math

import pytest
import torch
from gradpath.data import teacher_classification
from gradpath.experiments.chain import power_of_factor, saved_tensor_bytes, scalar_chain
from gradpath.models import DeepMLP
from gradpath.sweeps import depth_sweep, geometric_mean, gradient_profile


def test_chain_gradient_is_the_product_of_factors():
    result = scalar_chain(0.3, [1.5, -0.7, 2.0, 0.9], activation="tanh")
    assert math.isclose(result.product_of_factors, result.autograd_gradient, rel_tol=1e-12)
    with pytest.raises(ValueError):
        scalar_chain(0.3, [])


def test_powers_of_factors():
    assert power_of_factor(2.0, 10) == 1024
    assert math.isclose(power_of_factor(0.25, 10), 9.5367e-7, rel_tol=1e-4)
    with pytest.raises(ValueError):
        power_of_factor(0.5, -1)


def test_saved_memory_grows_with_depth_and_is_zero_without_grad():
    x = torch.randn(8, 16)
    small = saved_tensor_bytes(DeepMLP(16, 2, width=32, depth=3), x)
    large = saved_tensor_bytes(DeepMLP(16, 2, width=32, depth=9), x)
    assert large > 2 * small > 0
    with torch.no_grad():
        assert saved_tensor_bytes(DeepMLP(16, 2, width=32, depth=9), x) == 0


def test_gradient_profile_is_reproducible_and_sweeps_shrink_with_depth():
    data = teacher_classification(64, 8, 3)
    a = gradient_profile(data, depth=6, width=16, activation="sigmoid", seed=4)
    b = gradient_profile(data, depth=6, width=16, activation="sigmoid", seed=4)
    assert a == b and len(a) == 6
    sweep = depth_sweep(data, [3, 12], ["sigmoid"], width=16, seeds=2)
    shallow, deep = sweep["sigmoid"][3], sweep["sigmoid"][12]
    assert deep[0] / deep[-1] < shallow[0] / shallow[-1] / 100


def test_geometric_mean_edge_cases():
    assert math.isclose(geometric_mean([1e-4, 1e-2]), 1e-3)
    assert geometric_mean([0.0, 1.0]) == 0.0
    assert math.isnan(geometric_mean([float("nan"), 1.0]))
