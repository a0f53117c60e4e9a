"""Dead ReLUs: counting them, killing them, and keeping them alive."""

import math

import pytest
import torch
from gradpath.data import digits
from gradpath.experiments.dead_units import (
    dead_fractions,
    dead_unit_run,
    off_fractions,
    shift_biases_,
    unit_states,
)
from gradpath.models import DeepMLP


def test_counts_units_that_are_zero_for_every_example():
    model = DeepMLP(4, 2, width=10, depth=3, activation="relu")
    with torch.no_grad():
        model.blocks[0].linear.weight.zero_()
        model.blocks[0].linear.bias.copy_(torch.tensor([-1.0] * 3 + [1.0] * 7))
    x = torch.randn(50, 4)
    assert dead_fractions(model, x)[0] == pytest.approx(0.3)
    assert off_fractions(model, x)[0] == pytest.approx(0.3)
    states = unit_states(model, x)
    assert states.units == [10, 10]
    assert 0.15 <= states.dead_overall <= 1.0


def test_leaky_units_can_be_off_but_never_dead():
    model = DeepMLP(4, 2, width=10, depth=3, activation="leaky_relu")
    shift_biases_(model, -100.0)
    states = unit_states(model, torch.randn(50, 4))
    assert states.off == [1.0, 1.0] and states.dead == [0.0, 0.0]


def test_bias_shift_kills_relus_and_dead_units_get_no_gradient():
    model = DeepMLP(8, 3, width=16, depth=4, activation="relu", init="he_normal")
    shift_biases_(model, -100.0)
    x = torch.randn(32, 8)
    assert unit_states(model, x).dead_overall == 1.0
    torch.nn.functional.cross_entropy(model(x), torch.randint(0, 3, (32,))).backward()
    for block in model.blocks:
        assert torch.count_nonzero(block.linear.weight.grad) == 0
    assert model.head.weight.grad is not None and model.head.bias.grad.abs().sum() > 0


def test_shifted_relus_stay_dead_while_leaky_relus_recover():
    data = digits(limit=400)
    relu = dead_unit_run(data, activation="relu", depth=4, width=32, optimizer="adam", lr=0.01,
                         bias_shift=-3.0, steps=80, checkpoints=4)
    leaky = dead_unit_run(data, activation="leaky_relu", depth=4, width=32, optimizer="adam",
                          lr=0.01, bias_shift=-3.0, steps=80, checkpoints=4)
    assert relu.dead[0] > 0.2 and relu.dead[-1] > 0.1
    assert leaky.dead == [0.0] * len(leaky.dead)
    assert leaky.off[0] > 0.2 and leaky.off[-1] < leaky.off[0] / 2
    assert leaky.final_loss() < relu.final_loss()
    assert relu.steps == [0, 20, 40, 60, 80] and len(relu.loss) == 80


def test_divergence_is_recorded():
    run = dead_unit_run(digits(limit=200), activation="relu", lr=1e6, steps=30, checkpoints=3)
    assert run.first_nonfinite_step is not None and math.isnan(run.accuracy)


def test_bad_arguments():
    data = digits(limit=50)
    with pytest.raises(ValueError, match="valid choices"):
        dead_unit_run(data, optimizer="lbfgs", steps=5, checkpoints=1)
    with pytest.raises(ValueError):
        dead_unit_run(data, steps=0)
    with pytest.raises(ValueError):
        dead_unit_run(data, steps=5, checkpoints=6)
    with pytest.raises(ValueError):
        shift_biases_(DeepMLP(3, 2, width=4, depth=3), math.nan)
    with pytest.raises(ValueError):
        unit_states(torch.nn.Linear(3, 3), torch.randn(4, 3))
    with pytest.raises(ValueError):
        unit_states(DeepMLP(3, 2, width=4, depth=3), torch.randn(3))


def test_first_layer_units_stay_dead_and_higher_ones_can_revive():
    from gradpath.experiments.dead_units import dead_masks

    data = digits(limit=512)
    run = dead_unit_run(data, activation="relu", depth=4, width=64, optimizer="adam", lr=0.01,
                        bias_shift=-3.0, steps=80, checkpoints=4)
    assert len(run.initial_dead) == len(run.final_dead) == 3
    assert run.initial_dead[0].any() and run.revived()[0] == 0   # layer 1 sees fixed data
    assert sum(run.revived()[1:]) > 0                             # higher layers can come back
    assert len(run.update_ratio) == 80 and all(len(r) == 4 for r in run.update_ratio)
    ratios = run.median_update_ratio()   # 0 at steps where every unit of a batch is off
    assert all(0 <= v < 1 for v in ratios) and max(ratios) > 0
    masks = dead_masks(DeepMLP(4, 2, width=6, depth=3), torch.randn(5, 4))
    assert [m.shape for m in masks] == [torch.Size([6])] * 2 and masks[0].dtype == torch.bool
