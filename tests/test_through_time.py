"""Tests for gradpath.through_time: the gradient through time of any recurrent model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gradpath.through_time import (
    TimeProfile,
    as_recurrence,
    input_gradient_norms,
    jacobian_norms,
    state_gradient_norms,
    state_jacobians,
    unroll,
)
from torch import nn


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Small recurrent nets: extra threads only wait on each other on a busy machine (see
    # gradpath.device); the notebooks get the same setting from pick_device().
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



def _seeded(seed: int = 0) -> None:
    torch.manual_seed(seed)


def _linear_cell(w: float, u: float):
    """h_t = w h_{t-1} + u x_t, one unit: ∂h_T/∂x_t = u w^(T-t) exactly."""
    def cell(x, h):
        return w * h + u * x
    return cell


# ---------------------------------------------------------------- the tiny case, by hand


def test_one_unit_linear_recurrence_matches_the_closed_form():
    w, u, steps = 0.7, 2.0, 9
    x = torch.randn(3, steps, 1, dtype=torch.float64)
    h0 = torch.zeros(3, 1, dtype=torch.float64)

    class Model(nn.Module):
        def forward(self, seq):
            return unroll(_linear_cell(w, u), seq, h0)[-1]

    profile = input_gradient_norms(Model(), x, loss_fn=lambda out: out.sum())
    expected = np.array([u * w ** (steps - t) for t in range(1, steps + 1)])
    assert np.allclose(profile.norms, expected, rtol=1e-12)
    assert np.allclose(profile.per_example, np.tile(expected, (3, 1)), rtol=1e-12)
    assert math.isclose(profile.per_step_factor(), w, rel_tol=1e-9)
    states = state_gradient_norms(_linear_cell(w, u), x, lambda s: s.sum(), state=h0)
    assert np.allclose(states.norms, [w ** (steps - t) for t in range(1, steps + 1)])
    jac = jacobian_norms(_linear_cell(w, u), x, state=h0)
    assert np.allclose(jac.norms, [w ** (steps - t) for t in range(1, steps + 1)])


@pytest.mark.parametrize("layer", [nn.RNN, nn.LSTM, nn.GRU])
def test_jacobian_product_equals_autograds_jacobian(layer):
    _seeded(1)
    model = layer(2, 3, batch_first=True).double()
    x = torch.randn(2, 6, 2, dtype=torch.float64)
    jac = state_jacobians(model, x)
    states = unroll(model, x)
    size = 6 if layer is nn.LSTM else 3
    assert jac.shape == (6, 2, size, size)
    rec = as_recurrence(model)

    def final_from(t: int, flat_state: torch.Tensor) -> torch.Tensor:
        # run steps t+1..T from a given s_t (one example, flattened) and flatten s_T
        if layer is nn.LSTM:
            state = (flat_state[:3].reshape(1, 1, 3), flat_state[3:].reshape(1, 1, 3))
        else:
            state = flat_state.reshape(1, 1, 3)
        for k in range(t, 6):
            state = rec.step(x[b:b + 1, k], state)
        parts = state if isinstance(state, tuple) else (state,)
        return torch.cat([p.reshape(-1) for p in parts])

    profile = jacobian_norms(model, x)
    for b in range(2):
        for t in (1, 3, 5):                      # s_t is states[t-1]
            s = states[t - 1]
            parts = s if isinstance(s, tuple) else (s,)
            flat = torch.cat([p[:, b].reshape(-1) for p in parts]).detach()
            exact = torch.autograd.functional.jacobian(lambda v, t=t: final_from(t, v), flat)
            product = torch.eye(size, dtype=torch.float64)
            for k in range(5, t - 1, -1):        # J_T ⋯ J_{t+1}; jac[k] is J_{k+1}
                product = product @ jac[k, b]
            assert torch.allclose(product, exact, atol=1e-12)
            sigma = float(torch.linalg.matrix_norm(exact, ord=2))
            assert math.isclose(profile.per_example[b, t - 1], sigma, rel_tol=1e-9)
    assert np.allclose(profile.per_example[:, -1], 1.0)


def test_rnn_cell_jacobian_is_diag_tanh_prime_times_w_hh():
    _seeded(2)
    cell = nn.RNNCell(3, 4).double()
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    jac = state_jacobians(cell, x)
    states = unroll(cell, x)
    for t in range(7):
        derivative = 1 - states[t] ** 2                    # tanh' at step t+1
        expected = derivative[:, :, None] * cell.weight_hh[None]
        assert torch.allclose(jac[t], expected, atol=1e-12)


def test_pascanu_bound_holds_for_a_tanh_rnn():
    # ‖∂h_T/∂h_t‖₂ ≤ (σ_max(W_hh) · γ)^(T-t), γ = 1 for tanh
    _seeded(3)
    model = nn.RNN(4, 16, batch_first=True)
    with torch.no_grad():
        model.weight_hh_l0.mul_(3.0)
    x = torch.randn(8, 20, 4)
    sigma = float(torch.linalg.matrix_norm(model.weight_hh_l0.detach().double(), ord=2))
    profile = jacobian_norms(model, x)
    bound = sigma ** profile.distance
    assert np.all(profile.per_example <= bound * (1 + 1e-9))


# ---------------------------------------------------------------- unrolling any model


@pytest.mark.parametrize("layer", [nn.RNN, nn.LSTM, nn.GRU])
@pytest.mark.parametrize("batch_first", [True, False])
def test_unroll_reproduces_torchs_fused_layers(layer, batch_first):
    _seeded(4)
    model = layer(3, 5, num_layers=2, batch_first=batch_first)
    x = torch.randn(4, 9, 3) if batch_first else torch.randn(9, 4, 3)
    _, final = model(x)
    states = unroll(model, x)
    assert len(states) == 9
    got = states[-1] if isinstance(states[-1], tuple) else (states[-1],)
    want = final if isinstance(final, tuple) else (final,)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_unroll_cells_and_lstm_projection():
    _seeded(5)
    x = torch.randn(2, 4, 3)
    for cell in (nn.RNNCell(3, 5), nn.GRUCell(3, 5), nn.LSTMCell(3, 5)):
        states = unroll(cell, x)
        assert len(states) == 4
    lstm = nn.LSTM(3, 6, proj_size=2, batch_first=True)
    _, (h, c) = lstm(x)
    h2, c2 = unroll(lstm, x)[-1]
    assert torch.allclose(h, h2, atol=1e-6) and torch.allclose(c, c2, atol=1e-6)
    assert state_jacobians(lstm, x).shape == (4, 2, 8, 8)   # h (2) and c (6)


def test_state_gradients_match_retain_grad_on_a_custom_cell():
    _seeded(6)
    w = torch.randn(4, 4, dtype=torch.float64) * 0.5
    v = torch.randn(4, 2, dtype=torch.float64)

    def cell(x_t, h):
        return torch.tanh(h @ w.T + x_t @ v.T)

    x = torch.randn(3, 8, 2, dtype=torch.float64)
    h0 = torch.zeros(3, 4, dtype=torch.float64)
    states = unroll(cell, x, h0.clone().requires_grad_(True))
    for s in states:
        s.retain_grad()
    states[-1].pow(2).sum().backward()
    expected = np.array([[float(s.grad[b].norm()) for s in states] for b in range(3)])
    profile = state_gradient_norms(cell, x, lambda s: s.pow(2).sum(), state=h0)
    assert np.allclose(profile.per_example, expected, rtol=1e-12)
    assert np.allclose(profile.norms, np.sqrt((expected ** 2).mean(axis=0)), rtol=1e-12)


def test_input_gradients_work_on_a_whole_classifier_and_time_first_layers():
    _seeded(7)

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 8, batch_first=True)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    x = torch.randn(5, 12, 3)
    profile = input_gradient_norms(Classifier(), x)
    assert len(profile) == 12 and profile.per_example.shape == (5, 12)
    assert profile.norms[-1] > profile.norms[0]
    time_first = nn.LSTM(3, 4)                          # (time, batch, features)
    p = input_gradient_norms(time_first, torch.randn(12, 5, 3))
    assert p.per_example.shape == (5, 12)


# ---------------------------------------------------------------- numerics


def test_float64_measures_what_float32_cannot_represent():
    x = torch.ones(2, 40, 1)
    h0 = torch.zeros(2, 1)

    class Tiny(nn.Module):
        def __init__(self, w: float):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(w))

        def forward(self, seq):
            return unroll(lambda x_t, h: self.w * h + x_t, seq, h0.to(seq.dtype))[-1]

    small = input_gradient_norms(Tiny(1e-2), x, loss_fn=lambda o: o.sum())
    assert math.isclose(small.norms[0], 1e-78, rel_tol=1e-5)  # w is float32(0.01): below float32
    assert input_gradient_norms(Tiny(1e-2), x, loss_fn=lambda o: o.sum(),
                                dtype=None).norms[0] == 0.0            # float32 underflows
    big = input_gradient_norms(Tiny(1e2), x, loss_fn=lambda o: o.sum())
    assert math.isclose(big.norms[0], 1e78, rel_tol=1e-9)             # far above float32


def test_norms_do_not_overflow_for_huge_finite_entries():
    from gradpath.through_time import _norm_per_example, _profile

    t = torch.full((2, 100), 1e200, dtype=torch.float64)
    assert math.isclose(float(_norm_per_example(t)[0]), 1e201, rel_tol=1e-12)
    tiny = torch.full((1, 100), 1e-310, dtype=torch.float64)
    assert float(_norm_per_example(tiny)[0]) > 0
    profile = _profile(torch.tensor([[1e200, 1.0], [1e200, 1.0]], dtype=torch.float64))
    assert math.isclose(profile.norms[0], 1e200, rel_tol=1e-12)


def test_jacobian_products_are_rescaled_beyond_float64():
    x = torch.zeros(1, 400, 1, dtype=torch.float64)
    h0 = torch.zeros(1, 1, dtype=torch.float64)
    profile = jacobian_norms(lambda x_t, h: 0.01 * h + x_t, x, state=h0)
    assert profile.norms[-1] == 1.0
    assert math.isclose(profile.norms[-101], 1e-200, rel_tol=1e-9)
    assert profile.norms[0] == 0.0              # 1e-798 is not a float64; no error, no nan


# ---------------------------------------------------------------- leaves the model as found


@pytest.mark.parametrize("dtype", [torch.float64, None])
def test_probes_leave_the_model_exactly_as_found(dtype):
    _seeded(8)
    model = nn.LSTM(3, 4, num_layers=2, dropout=0.5, batch_first=True)
    model.train()
    x = torch.randn(2, 5, 3)
    model(x)[0].sum().backward()                       # some .grad fields to keep
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    input_gradient_norms(model, x, dtype=dtype)
    state_gradient_norms(model, x, dtype=dtype)
    jacobian_norms(model, x[:, :3], dtype=dtype)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
    assert next(model.parameters()).dtype == torch.float32


def test_eval_mode_model_is_measured_and_stays_in_eval():
    model = nn.GRU(2, 3, batch_first=True).eval()
    input_gradient_norms(model, torch.randn(2, 4, 2))
    assert not model.training


# ---------------------------------------------------------------- bad input


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="bidirectional"):
        unroll(nn.GRU(2, 3, bidirectional=True), torch.randn(4, 2, 2))
    with pytest.raises(ValueError, match="state is required"):
        unroll(lambda x, h: h, torch.randn(2, 3, 1))
    with pytest.raises(ValueError, match="batch_first"):
        as_recurrence(nn.RNN(2, 3, batch_first=True), time_dim=0)
    with pytest.raises(ValueError, match=r"\(batch, time, features\)"):
        input_gradient_norms(nn.RNN(2, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="callable"):
        as_recurrence(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tensor or a tuple"):
        unroll(lambda x, h: "oops", torch.randn(2, 3, 1), torch.zeros(2, 1))


def test_time_profile_helpers():
    profile = TimeProfile(norms=np.array([0.125, 0.25, 0.5, 1.0]),
                          per_example=np.array([[0.125, 0.25, 0.5, 1.0]]))
    assert len(profile) == 4
    assert list(profile.distance) == [3, 2, 1, 0]
    assert profile.at_distance(3) == 0.125 and profile.at_distance(0) == 1.0
    assert math.isclose(profile.per_step_factor(), 0.5, rel_tol=1e-12)
    assert np.allclose(profile.relative(), profile.norms)
    with pytest.raises(ValueError, match="distance"):
        profile.at_distance(4)
    with pytest.raises(ValueError, match="two finite"):
        TimeProfile(np.array([0.0, 1.0]), np.array([[0.0, 1.0]])).per_step_factor()
