"""gradpath.training's smaller promises, against values computed here: the history's helpers,
the optimizers by name, the loss by task, evaluate, one exact SGD step with minibatches, the
update-to-data ratios and every refusal's message."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gradpath.data import Dataset, teacher_classification, teacher_regression
from gradpath.training import (
    OPTIMIZERS,
    TrainingHistory,
    check_run_length,
    evaluate,
    loss_function,
    make_optimizer,
    relative_update_norms,
    train,
    update_to_data_ratios,
)
from torch import nn


def test_history_helpers():
    h = TrainingHistory(loss=[4.0, math.nan, 2.0, 1.0], gradient_norms=[[1.0, 2.0]] * 4,
                        weight_norms=[[3.0, 4.0]] * 4)
    assert h.steps == 4
    assert h.final_loss() == pytest.approx(7 / 3)                     # finite steps only
    assert h.final_loss(window=2) == 1.5
    assert h.final_loss(window=1) == 1.0
    assert math.isnan(TrainingHistory(loss=[math.inf]).final_loss())
    assert h.gradient_norm_matrix().shape == (4, 2)
    assert h.weight_norm_matrix()[0].tolist() == [3.0, 4.0]
    assert h.first_nonfinite_step is None and not h.diverged
    assert TrainingHistory(loss=[1.0] * 12).final_loss() == 1.0
    window = TrainingHistory(loss=[100.0] + [1.0] * 10)
    assert window.final_loss() == 1.0                                  # default window 10
    assert TrainingHistory(loss=[1.0, 3.0]).summary() == "ran 2 steps; final loss 2"
    both = TrainingHistory(loss=[1.0] * 5, first_nonfinite_loss_step=4,
                           first_nonfinite_gradient_step=3, stopped_early=True)
    assert both.first_nonfinite_step == 3 and both.diverged
    assert both.summary() == ("loss first non-finite at step 4; gradient first non-finite at "
                              "step 3; stopped there")
    zero = TrainingHistory(loss=[1.0], first_nonfinite_loss_step=0)
    assert zero.first_nonfinite_step == 0 and zero.diverged


def test_check_run_length_messages():
    check_run_length(1)
    check_run_length(5, 1)
    check_run_length(5, 5)
    for steps in (0, -1, 2.0):
        with pytest.raises(ValueError, match=rf"^steps must be a positive integer, got "
                                             rf"{steps!r}$"):
            check_run_length(steps)
    for checkpoints in (0, 6, 2.0):
        with pytest.raises(ValueError, match=rf"^checkpoints must be an integer in \[1, steps\], "
                                             rf"got {checkpoints!r}$"):
            check_run_length(5, checkpoints)


def test_make_optimizer_builds_each_named_optimizer():
    params = [nn.Parameter(torch.zeros(2))]
    kinds = {"sgd": (torch.optim.SGD, 0.0), "momentum": (torch.optim.SGD, 0.9),
             "adam": (torch.optim.Adam, None), "adamw": (torch.optim.AdamW, None),
             "rmsprop": (torch.optim.RMSprop, None)}
    assert set(kinds) == set(OPTIMIZERS)
    for name, (kind, momentum) in kinds.items():
        opt = make_optimizer(name, params, 0.125)
        assert type(opt) is kind and opt.param_groups[0]["lr"] == 0.125
        if momentum is not None:
            assert opt.param_groups[0]["momentum"] == momentum
    with pytest.raises(ValueError, match=r"^unknown optimizer 'lion'; valid choices are sgd, "
                                         r"momentum, adam, adamw, rmsprop$"):
        make_optimizer("lion", params, 0.1)
    for lr in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match=r"^lr must be a finite positive number, got "):
            make_optimizer("sgd", params, lr)


def test_loss_function_and_evaluate():
    cls = teacher_classification(20, 3, 3)
    reg = teacher_regression(20, 3)
    assert isinstance(loss_function(cls), nn.CrossEntropyLoss)
    assert isinstance(loss_function(reg), nn.MSELoss)
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    model.train()
    result = evaluate(model, cls)
    model.eval()
    with torch.no_grad():
        out = model(cls.x)
    assert result["loss"] == pytest.approx(float(nn.functional.cross_entropy(out, cls.y)))
    assert result["accuracy"] == float((out.argmax(1) == cls.y).float().mean())
    model.train()
    evaluate(model, cls)
    assert model.training                                  # the mode is put back
    model.eval()
    evaluate(model, cls)
    assert not model.training
    reg_model = nn.Linear(3, 1)
    assert set(evaluate(reg_model, reg)) == {"loss"}


def test_one_minibatch_sgd_step_is_exact():
    data = teacher_regression(40, 3, seed=1)
    model = nn.Linear(3, 1)
    twin = nn.Linear(3, 1)
    twin.load_state_dict(model.state_dict())
    history = train(model, data, steps=2, lr=0.5, batch_size=8, seed=4)
    g = torch.Generator().manual_seed(4)
    for _ in range(2):
        idx = torch.randint(0, 40, (8,), generator=g)
        twin.zero_grad()
        loss = nn.functional.mse_loss(twin(data.x[idx]), data.y[idx])
        loss.backward()
        with torch.no_grad():
            for p in twin.parameters():
                p -= 0.5 * p.grad
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert history.steps == 2 and len(history.weight_norms) == 2
    assert history.weight_norms[-1] == pytest.approx([float(twin.weight.detach().norm())],
                                                     rel=1e-6)
    whole = train(nn.Linear(3, 1), data, steps=1, lr=0.1, batch_size=40)
    assert whole.steps == 1                                   # a batch of all examples works


def test_train_refusals_name_the_argument():
    data = teacher_regression(8, 3)
    model = nn.Linear(3, 1)
    for name in ("clip_norm", "clip_value"):
        with pytest.raises(ValueError, match=rf"^{name} must be a finite positive number, got 0$"):
            train(model, data, steps=1, lr=0.1, **{name: 0})
    for bad in (0, 2.0):
        with pytest.raises(ValueError, match=rf"^batch_size must be a positive integer, got "
                                             rf"{bad!r}$"):
            train(model, data, steps=1, lr=0.1, batch_size=bad)
        with pytest.raises(ValueError, match=rf"^record_every must be a positive integer, got "
                                             rf"{bad!r}$"):
            train(model, data, steps=1, lr=0.1, record_every=bad)
    with pytest.raises(ValueError, match="^steps must be a positive integer, got 0$"):
        train(model, data, steps=0, lr=0.1)


def test_clip_norm_one_step_is_clip_grad_norm():
    data = teacher_regression(32, 3, seed=2)
    model, twin = nn.Linear(3, 1), nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.fill_(5.0)
    twin.load_state_dict(model.state_dict())
    history = train(model, data, steps=1, lr=0.1, clip_norm=0.5)
    nn.functional.mse_loss(twin(data.x), data.y).backward()
    total = float(torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.5))
    with torch.no_grad():
        for p in twin.parameters():
            p -= 0.1 * p.grad
    assert history.global_norm[0] == pytest.approx(total, rel=1e-6)
    assert history.clipped_norm[0] == pytest.approx(0.5 * total / (total + 1e-6), rel=1e-6)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    small = train(nn.Linear(3, 1), data, steps=1, lr=0.1, clip_norm=1e6)
    assert small.clipped_norm == small.global_norm                   # below the limit: untouched


def test_update_to_data_ratios_exact():
    h = TrainingHistory(loss=[1.0, 1.0], gradient_norms=[[2.0, 0.0], [1.0, math.inf]],
                        weight_norms=[[4.0, 1.0], [8.0, 0.0], [9.0, 9.0]])
    ratios = update_to_data_ratios(h, 0.5)
    assert ratios.shape == (2, 2)
    assert ratios[0].tolist() == [0.25, 0.0]
    assert ratios[1, 0] == 0.0625 and math.isinf(ratios[1, 1])
    for lr in (0.0, -1.0):
        with pytest.raises(ValueError, match=rf"^lr must be a finite positive number, got {lr!r}$"):
            update_to_data_ratios(h, lr)
    with pytest.raises(ValueError, match="^history has no recorded step$"):
        update_to_data_ratios(TrainingHistory(), 0.1)


def test_relative_update_norms_exact():
    before = [torch.tensor([3.0, 4.0]), torch.zeros(2), torch.zeros(1)]
    after = [torch.tensor([3.0, 4.5]), torch.ones(2), torch.zeros(1)]
    out = relative_update_norms(before, after)
    assert out[0] == 0.1 and math.isinf(out[1]) and math.isnan(out[2])
    with pytest.raises(ValueError, match=r"^before has 1 tensors, after has 2$"):
        relative_update_norms(before[:1], after[:2])
    with pytest.raises(ValueError, match=r"^shapes differ: \(2,\) and \(3,\)$"):
        relative_update_norms([torch.zeros(2)], [torch.zeros(3)])
    assert np.isfinite(relative_update_norms([torch.ones(2)], [torch.ones(2)])).all()


def test_ratios_of_zero_weights_warn_nothing_and_small_weights_divide():
    import warnings

    h = TrainingHistory(loss=[1.0], gradient_norms=[[0.0, 1.0]], weight_norms=[[0.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # 0/0 and 1/0 are results, not warnings
        ratios = update_to_data_ratios(h, 1.0)
    assert math.isnan(ratios[0, 0]) and math.isinf(ratios[0, 1])
    # a weight norm below 1 (0.5) still divides: 0.05 / 0.5
    out = relative_update_norms([torch.tensor([0.3, 0.4])], [torch.tensor([0.3, 0.45])])
    assert out[0] == pytest.approx(0.1, rel=1e-6)


def test_matrices_are_float_and_an_all_nonfinite_loss_is_nan_without_warning():
    import warnings

    h = TrainingHistory(loss=[math.nan, math.inf], gradient_norms=[[1, 2]], weight_norms=[[3]])
    assert h.gradient_norm_matrix().dtype == np.float64
    assert h.weight_norm_matrix().dtype == np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # no "mean of empty slice"
        assert math.isnan(h.final_loss())


@pytest.mark.parametrize("record_every", [1, 2])
def test_a_frozen_layer_records_a_zero_gradient_norm(record_every):
    data = teacher_regression(16, 3, seed=0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    model[0].weight.requires_grad_(False)
    history = train(model, data, steps=2, lr=0.1, record_every=record_every)
    assert [row[0] for row in history.gradient_norms] == [0.0, 0.0]
    assert all(row[1] > 0 for row in history.gradient_norms)
    assert all(len(row) == 2 for row in history.gradient_norms)


def _small_gradient_twins() -> tuple[nn.Module, nn.Module, Dataset]:
    data = teacher_regression(16, 3, seed=3)
    data = Dataset(data.x, 1e-3 * data.y, "regression")
    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    twin = nn.Linear(3, 1)
    twin.load_state_dict(model.state_dict())
    return model, twin, data


@pytest.mark.parametrize("record_every", [1, 2])
def test_clip_norm_near_its_epsilon_and_above_the_norm_is_exactly_torchs(record_every):
    # a global norm of about 1e-3 clipped to 1e-5: torch's epsilon 1e-6 is 0.1% of the norm
    for clip in (1e-5, None):
        model, twin, data = _small_gradient_twins()
        nn.functional.mse_loss(twin(data.x), data.y).backward()
        total = float(torch.nn.utils.clip_grad_norm_(twin.parameters(), math.inf))
        limit = clip if clip is not None else 1.5 * total     # above the norm: no change
        twin.zero_grad()
        nn.functional.mse_loss(twin(data.x), data.y).backward()
        torch.nn.utils.clip_grad_norm_(twin.parameters(), limit)
        with torch.no_grad():
            for p in twin.parameters():
                p -= 0.1 * p.grad
        history = train(model, data, steps=1, lr=0.1, clip_norm=limit,
                        record_every=record_every)
        expected = total * min(1.0, limit / (total + 1e-6))
        assert history.clipped_norm[0] == pytest.approx(expected, rel=1e-5)
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-12)


def test_a_batch_of_every_example_is_the_whole_data_set_not_a_sample():
    data = teacher_regression(12, 3, seed=5)
    a, b = nn.Linear(3, 1), nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    full = train(a, data, steps=2, lr=0.1, batch_size=12)
    whole = train(b, data, steps=2, lr=0.1, batch_size=None)
    assert full.loss == whole.loss
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
