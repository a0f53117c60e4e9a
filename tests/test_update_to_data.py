"""The update-to-data ratio: lr·‖g‖/‖W‖ from a training history, and ‖ΔW‖/‖W‖ measured."""

import math

import numpy as np
import pytest
import torch
from gradpath.data import teacher_classification
from gradpath.models import DeepMLP
from gradpath.training import relative_update_norms, train, update_to_data_ratios


def test_sgd_ratio_is_the_relative_size_of_the_step():
    data = teacher_classification(128, features=8, classes=3, seed=0)
    model = DeepMLP(8, 3, width=16, depth=3, init="he_normal",
                    generator=torch.Generator().manual_seed(0))
    before = [layer.weight.detach().clone() for layer in model.weight_layers()]
    history = train(model, data, steps=1, lr=0.05)          # full batch: one known update
    after = [layer.weight.detach() for layer in model.weight_layers()]
    ratios = update_to_data_ratios(history, 0.05)
    assert ratios.shape == (1, 3)
    measured = relative_update_norms(before, after)
    # lr·‖g‖/‖W_after‖ vs ‖ΔW‖/‖W_before‖: equal up to the step's own relative size
    assert ratios[0] == pytest.approx(np.array(measured), rel=0.05)
    with pytest.raises(ValueError):
        update_to_data_ratios(history, 0.0)


def test_relative_update_norms_edge_cases():
    a = torch.full((10,), 1e20)
    assert relative_update_norms([a], [a * 1.001]) == pytest.approx([1e-3], rel=1e-4)  # no overflow
    assert relative_update_norms([torch.zeros(3)], [torch.zeros(3)])[0] != 0.0
    assert math.isinf(relative_update_norms([torch.zeros(3)], [torch.ones(3)])[0])
    with pytest.raises(ValueError):
        relative_update_norms([a], [])
    with pytest.raises(ValueError):
        relative_update_norms([a], [torch.zeros(3)])
