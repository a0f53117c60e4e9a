"""Tests for experiments.gated: the cell equations against torch, the models, the task, fitting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gradpath.experiments.gated import (
    SequenceClassifier,
    cell_from,
    evaluate,
    expected_parameter_count,
    fit,
    forget_gate_bias,
    gru_step,
    layer_weights,
    linear_gradient_growth,
    lstm_step,
    non_normal_matrix,
    parameter_count,
    recall_task,
    rnn_step,
    tune,
)
from gradpath.through_time import input_gradient_norms, state_jacobians, unroll
from torch import nn

# ---------------------------------------------------------------- the equations match torch



def _run(step, x, state):
    outs = []
    for t in range(x.shape[1]):
        state = step(x[:, t], state)
        outs.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(outs, dim=1), state


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_equations_match_nn_rnn(nonlinearity):
    torch.manual_seed(0)
    layer = nn.RNN(3, 5, batch_first=True, nonlinearity=nonlinearity)
    x = torch.randn(4, 7, 3)
    want, h_n = layer(x)
    weights = layer_weights(layer)
    got, h = _run(lambda x_t, h: rnn_step(x_t, h, *weights, nonlinearity=nonlinearity), x,
                  torch.zeros(4, 5))
    assert torch.allclose(got, want, atol=1e-6) and torch.allclose(h, h_n[0], atol=1e-6)


def test_lstm_equations_match_nn_lstm():
    torch.manual_seed(1)
    layer = nn.LSTM(3, 5, batch_first=True)
    x = torch.randn(4, 7, 3)
    want, (h_n, c_n) = layer(x)
    cell = cell_from(layer)
    got, (h, c) = _run(cell, x, (torch.zeros(4, 5), torch.zeros(4, 5)))
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(h, h_n[0], atol=1e-6) and torch.allclose(c, c_n[0], atol=1e-6)


def test_gru_equations_match_nn_gru():
    torch.manual_seed(2)
    layer = nn.GRU(3, 5, batch_first=True)
    x = torch.randn(4, 7, 3)
    want, h_n = layer(x)
    got, h = _run(cell_from(layer), x, torch.zeros(4, 5))
    assert torch.allclose(got, want, atol=1e-6) and torch.allclose(h, h_n[0], atol=1e-6)


def test_gru_interpolates_between_old_state_and_candidate():
    torch.manual_seed(3)
    layer = nn.GRU(2, 4)
    x, h = torch.randn(6, 2), torch.randn(6, 4)
    out = gru_step(x, h, *layer_weights(layer))
    assert torch.allclose(out.h, (1 - out.update_gate) * out.candidate + out.update_gate * h)
    lo = torch.minimum(h, out.candidate) - 1e-7
    hi = torch.maximum(h, out.candidate) + 1e-7
    assert bool(((out.h >= lo) & (out.h <= hi)).all())        # a convex combination


def test_lstm_cell_state_jacobian_is_the_forget_gate():
    # ∂c_t/∂c_{t-1} = diag(f_t): the c→c block of the state Jacobian, read with the core probe
    torch.manual_seed(4)
    layer = nn.LSTM(3, 4, batch_first=True).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    jac = state_jacobians(layer, x)                           # state = [h, c]
    states = unroll(layer, x)
    weights = layer_weights(layer)
    h, c = torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
    for t in range(5):
        step = lstm_step(x[:, t], h, c, *weights)
        block = jac[t][:, 4:, 4:]
        assert torch.allclose(block, torch.diag_embed(step.forget_gate), atol=1e-12)
        h, c = step.h, step.c
        assert torch.allclose(c, states[t][1][0], atol=1e-12)


def test_custom_cell_from_equations_gives_the_same_probe_as_the_module():
    torch.manual_seed(5)
    layer = nn.GRU(3, 4, batch_first=True).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    module_jac = state_jacobians(layer, x)
    cell_jac = state_jacobians(cell_from(layer), x, state=torch.zeros(2, 4, dtype=torch.float64))
    assert torch.allclose(module_jac, cell_jac, atol=1e-12)


def test_cell_from_rejects_what_it_cannot_write_out():
    with pytest.raises(ValueError, match="one-layer"):
        cell_from(nn.LSTM(2, 3, num_layers=2))
    with pytest.raises(ValueError, match="bias"):
        layer_weights(nn.GRU(2, 3, bias=False))
    with pytest.raises(ValueError, match="layer index"):
        layer_weights(nn.GRU(2, 3), index=1)


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_parameter_counts_match_the_formula(kind):
    layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](7, 11)
    assert parameter_count(layer) == expected_parameter_count(kind, 7, 11)


def test_gru_has_three_quarters_of_the_lstms_parameters():
    assert 4 * expected_parameter_count("gru", 9, 32) == 3 * expected_parameter_count("lstm", 9, 32)
    with pytest.raises(ValueError, match="valid choices"):
        expected_parameter_count("transformer", 1, 1)


# ---------------------------------------------------------------- the model


def test_classifier_shapes_seed_and_global_rng():
    rng = torch.get_rng_state()
    a = SequenceClassifier("lstm", 9, 8, 4, seed=3)
    b = SequenceClassifier("lstm", 9, 8, 4, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)                # global RNG untouched
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert a(torch.randn(5, 6, 9)).shape == (5, 4)


def test_initializations():
    rnn = SequenceClassifier("rnn", 3, 16, 2, recurrent_init="orthogonal")
    w = rnn.recurrent.weight_hh_l0.detach().double()
    assert torch.allclose(torch.linalg.svdvals(w), torch.ones(16, dtype=torch.float64), atol=1e-5)
    irnn = SequenceClassifier("rnn", 3, 16, 2, recurrent_init="identity", nonlinearity="relu")
    assert torch.equal(irnn.recurrent.weight_hh_l0, torch.eye(16))
    assert float(irnn.recurrent.bias_hh_l0.detach().abs().max()) == 0.0
    scaled = SequenceClassifier("rnn", 3, 16, 2, recurrent_init="orthogonal", recurrent_scale=1.5)
    s = torch.linalg.svdvals(scaled.recurrent.weight_hh_l0.detach().double())
    assert torch.allclose(s, torch.full_like(s, 1.5), atol=1e-5)
    gru = SequenceClassifier("gru", 3, 8, 2, recurrent_init="orthogonal")
    for block in gru.recurrent.weight_hh_l0.detach().split(8):
        assert torch.allclose(block @ block.T, torch.eye(8), atol=1e-5)
    lstm = SequenceClassifier("lstm", 3, 8, 2, forget_bias=1.0)
    assert torch.equal(forget_gate_bias(lstm), torch.ones(8))
    default = SequenceClassifier("lstm", 3, 8, 2)
    assert float(forget_gate_bias(default).abs().max()) <= 2 / math.sqrt(8)
    chrono = SequenceClassifier("lstm", 3, 64, 2, chrono_length=30)
    b_f = forget_gate_bias(chrono)
    assert float(b_f.min()) >= 0.0 and float(b_f.max()) <= math.log(29) + 1e-6
    b = chrono.recurrent.bias_ih_l0 + chrono.recurrent.bias_hh_l0
    assert torch.allclose(b[:64].detach(), -b_f)                 # input gate: b_i = -b_f


def test_classifier_validates_its_arguments():
    with pytest.raises(ValueError, match="valid choices"):
        SequenceClassifier("transformer", 3, 8, 2)
    with pytest.raises(ValueError, match="forget_bias"):
        SequenceClassifier("gru", 3, 8, 2, forget_bias=1.0)
    with pytest.raises(ValueError, match="identity"):
        SequenceClassifier("lstm", 3, 8, 2, recurrent_init="identity")
    with pytest.raises(ValueError, match="nonlinearity"):
        SequenceClassifier("gru", 3, 8, 2, nonlinearity="relu")
    with pytest.raises(ValueError, match="hidden_size"):
        SequenceClassifier("rnn", 3, 0, 2)
    with pytest.raises(ValueError, match="not both"):
        SequenceClassifier("lstm", 3, 8, 2, forget_bias=1.0, chrono_length=30)
    with pytest.raises(ValueError, match="chrono_length"):
        SequenceClassifier("gru", 3, 8, 2, chrono_length=30)
    with pytest.raises(ValueError, match="truncate"):
        SequenceClassifier("rnn", 3, 8, 2, truncate=0)
    with pytest.raises(ValueError, match="only an LSTM"):
        forget_gate_bias(SequenceClassifier("gru", 3, 8, 2))
    with pytest.raises(ValueError, match=r"\(batch, time, features\)"):
        SequenceClassifier("rnn", 3, 8, 2)(torch.randn(4, 3))


def test_truncation_cuts_the_gradient_beyond_the_window_but_keeps_the_forward_pass():
    full = SequenceClassifier("lstm", 3, 8, 2, seed=1)
    cut = SequenceClassifier("lstm", 3, 8, 2, seed=1, truncate=5)
    x = torch.randn(4, 12, 3)
    assert torch.allclose(full(x), cut(x), atol=1e-6)            # the same outputs
    profile = input_gradient_norms(cut, x)
    assert np.all(profile.norms[:-5] == 0.0) and np.all(profile.norms[-5:] > 0)
    assert np.all(input_gradient_norms(full, x).norms > 0)


# ---------------------------------------------------------------- task and training


def test_recall_task():
    data = recall_task(100, 9, symbols=3, noise_channels=2, seed=0)
    assert data.x.shape == (100, 9, 6) and data.classes == 3 and data.task == "classification"
    assert torch.equal(data.x[:, 0, :3].argmax(dim=1), data.y)
    assert torch.equal(data.x[:, 0, 3], torch.ones(100))
    assert float(data.x[:, 1:, :4].abs().max()) == 0.0           # nothing but noise later
    assert abs(float(data.x[:, :, 4:].std()) - 3.0) < 0.2          # noise_scale 3 by default
    assert torch.equal(recall_task(10, 4, seed=5).x, recall_task(10, 4, seed=5).x)
    assert not torch.equal(recall_task(10, 4, seed=5).x, recall_task(10, 4, seed=6).x)
    with pytest.raises(ValueError, match="symbols"):
        recall_task(10, 4, symbols=1)
    with pytest.raises(ValueError, match="length"):
        recall_task(10, 0)


def test_fit_learns_a_short_recall_and_records_everything():
    train, val = recall_task(512, 3, seed=1), recall_task(256, 3, seed=2)
    model = SequenceClassifier("lstm", 9, 16, 4, seed=0)
    run = fit(model, train, val, steps=120, lr=3e-2, checkpoints=[0, 120], probe_x=val.x[:8],
              evaluate_every=40)
    assert len(run.loss) == len(run.gradient_norm) == 120
    assert set(run.profiles) == {0, 120} and len(run.profiles[0]) == 3
    assert set(run.evaluations) == {40, 80, 120}
    assert run.final["accuracy"] > 0.9 and run.first_nonfinite_step is None
    assert evaluate(model, val) == run.final


def test_fit_stops_early_and_at_nonfinite_and_validates():
    train, val = recall_task(256, 3, seed=1), recall_task(128, 3, seed=2)
    run = fit(SequenceClassifier("lstm", 9, 16, 4), train, val, steps=400, lr=3e-2,
              evaluate_every=25, stop_at_accuracy=0.9)
    assert max(run.evaluations) < 400 and run.final["accuracy"] >= 0.9
    broken = SequenceClassifier("rnn", 9, 4, 4)
    with torch.no_grad():
        broken.readout.weight.fill_(math.inf)
    bad = fit(broken, train, val, steps=10, lr=1e-2)
    assert bad.first_nonfinite_step == 0 and len(bad.loss) == 1
    with pytest.raises(ValueError, match="probe_x"):
        fit(broken, train, val, steps=1, lr=1e-2, checkpoints=[0])
    with pytest.raises(ValueError, match="optimizer"):
        fit(broken, train, val, steps=1, lr=1e-2, optimizer="lbfgs")


def test_tune_keeps_the_learning_rate_with_the_lowest_validation_loss():
    train, val, test = (recall_task(n, 3, seed=s) for n, s in ((256, 1), (128, 2), (128, 3)))
    tuned = tune(lambda: SequenceClassifier("rnn", 9, 8, 4), train, val, test, [1e-4, 3e-2],
                 steps=60)
    assert set(tuned.runs) == {1e-4, 3e-2} and tuned.best_lr == 3e-2
    assert tuned.run.final["loss"] < tuned.runs[1e-4][1].final["loss"]
    assert tuned.test == evaluate(tuned.model, test)
    assert set(tuned.test_accuracies(test)) == {1e-4, 3e-2}
    with pytest.raises(ValueError, match="lrs"):
        tune(lambda: SequenceClassifier("rnn", 9, 8, 4), train, val, test, [])


# ---------------------------------------------------------------- spectral radius vs norm


def test_non_normal_matrix_grows_before_it_decays():
    w = non_normal_matrix(0.9, 2.0)
    assert np.allclose(np.abs(np.linalg.eigvals(w.numpy())), 0.9)
    growth = linear_gradient_growth(w, 60)
    assert growth[0] == 1.0 and growth.max() > 5 and growth[-1] < growth.max()
    k = 7
    exact = np.linalg.norm(np.linalg.matrix_power(w.numpy().T, k), 2)
    assert math.isclose(growth[k], exact, rel_tol=1e-12)
