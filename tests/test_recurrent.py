"""Tests for experiments.recurrent: spectral radius, gradient through time, the adding problem, and
the one-unit cliff."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gradpath.experiments.recurrent import (
    VanillaRNN,
    adding_problem,
    cliff_final_state,
    cliff_scan,
    gradient_through_time,
    recurrent_matrix,
    spectral_radius,
    spectral_radius_sweep,
)
from gradpath.probes import gradient_norms_by_layer, weight_layers
from gradpath.training import train


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", ["orthogonal", "gaussian"])
@pytest.mark.parametrize("radius", [0.5, 1.0, 2.5])
def test_recurrent_matrix_has_the_requested_spectral_radius(kind, radius):
    w = recurrent_matrix(16, radius, kind=kind, generator=_gen())
    assert w.shape == (16, 16) and w.dtype == torch.float32
    assert math.isclose(spectral_radius(w), radius, rel_tol=1e-4)


def test_orthogonal_recurrent_matrix_scales_every_vector_by_the_radius():
    w = recurrent_matrix(12, 1.3, generator=_gen()).double()
    singular = torch.linalg.svdvals(w)
    assert torch.allclose(singular, torch.full_like(singular, 1.3), atol=1e-5)
    v = torch.randn(12, dtype=torch.float64, generator=_gen(1))
    assert math.isclose(float((torch.linalg.matrix_power(w, 5) @ v).norm()),
                        1.3**5 * float(v.norm()), rel_tol=1e-4)


def test_gaussian_matrix_singular_values_spread_unlike_orthogonal():
    w = recurrent_matrix(32, 1.0, kind="gaussian", generator=_gen())
    singular = torch.linalg.svdvals(w.double())
    assert float(singular.max()) > 1.5 and float(singular.min()) < 0.5


def test_recurrent_matrix_is_reproducible_and_validates():
    assert torch.equal(recurrent_matrix(8, 1.0, generator=_gen(3)),
                       recurrent_matrix(8, 1.0, generator=_gen(3)))
    with pytest.raises(ValueError, match="valid choices"):
        recurrent_matrix(8, 1.0, kind="identity")
    with pytest.raises(ValueError, match="radius"):
        recurrent_matrix(8, 0.0)
    with pytest.raises(ValueError, match="size"):
        recurrent_matrix(0, 1.0)
    with pytest.raises(ValueError, match="square"):
        spectral_radius(torch.zeros(2, 3))


def test_rnn_shapes_layers_and_radius():
    model = VanillaRNN(2, 8, 3, radius=1.7, generator=_gen())
    x = torch.randn(5, 7, 2)
    assert model(x).shape == (5, 3)
    assert len(model.states(x)) == 7 and model.states(x)[0].shape == (5, 8)
    assert math.isclose(model.spectral_radius(), 1.7, rel_tol=1e-4)
    assert weight_layers(model) == [model.input, model.recurrent, model.readout]
    one_feature = VanillaRNN(1, 4, generator=_gen())
    assert one_feature(torch.randn(3, 6)).shape == (3, 1)  # (batch, time) means one feature


def test_rnn_validates_arguments_and_inputs():
    with pytest.raises(ValueError, match="valid choices"):
        VanillaRNN(1, 4, activation="softmax")
    with pytest.raises(ValueError, match="hidden_size"):
        VanillaRNN(1, 0)
    with pytest.raises(ValueError, match="input_scale"):
        VanillaRNN(1, 4, input_scale=0.0)
    with pytest.raises(ValueError, match="expected inputs"):
        VanillaRNN(2, 4)(torch.randn(3, 5, 3))


def test_rnn_computes_the_recurrence_it_documents():
    model = VanillaRNN(1, 3, activation="tanh", radius=0.9, generator=_gen())
    x = torch.randn(2, 4, 1)
    h = torch.zeros(2, 3)
    for t in range(4):
        h = torch.tanh(x[:, t] @ model.input.weight.T + model.input.bias
                       + h @ model.recurrent.weight.T)
    assert torch.allclose(model.states(x)[-1], h, atol=1e-6)


@pytest.mark.parametrize("radius", [0.7, 1.0, 1.2])
def test_linear_rnn_gradient_through_time_is_exactly_a_power_of_the_radius(radius):
    data = adding_problem(32, 12, seed=0)
    model = VanillaRNN(2, 16, activation="identity", radius=radius, generator=_gen())
    grads = gradient_through_time(model, data.x, data.y)
    assert len(grads) == 12
    for t in range(11):
        assert math.isclose(grads[t] / grads[t + 1], radius, rel_tol=1e-3)


def test_tanh_rnn_gradient_vanishes_below_one_and_grows_above():
    sweep = spectral_radius_sweep([0.5, 2.0], adding_problem(64, 30, seed=0), hidden_size=16,
                                  input_scale=0.1)
    low, high = sweep[0.5], sweep[2.0]
    assert low[0] < 1e-6 * low[-1]   # 0.5^29 ≈ 2e-9: the first step gets nothing
    assert high[0] > 10 * high[-1]   # the gradient reaching step 1 has grown


def test_spectral_radius_sweep_validates():
    with pytest.raises(ValueError, match="radii"):
        spectral_radius_sweep([], adding_problem(8, 4))


def test_gradient_through_time_leaves_parameter_gradients():
    model = VanillaRNN(2, 4, generator=_gen())
    data = adding_problem(8, 5)
    gradient_through_time(model, data.x, data.y)
    assert all(n > 0 for n in gradient_norms_by_layer(model))


def test_adding_problem_structure():
    data = adding_problem(200, 20, seed=1)
    assert data.x.shape == (200, 20, 2) and data.y.shape == (200, 1)
    assert data.task == "regression" and data.outputs == 1
    markers = data.x[..., 1]
    assert torch.all(markers.sum(dim=1) == 2)
    assert torch.all(markers[:, :10].sum(dim=1) == 1) and torch.all(markers[:, 10:].sum(dim=1) == 1)
    assert torch.allclose((data.x[..., 0] * markers).sum(dim=1, keepdim=True), data.y)
    # predicting the mean sum (1.0) gives an error near Var(U1 + U2) = 1/6
    assert abs(float(((data.y - 1.0) ** 2).mean()) - 1 / 6) < 0.04
    assert torch.equal(adding_problem(10, 6, seed=4).x, adding_problem(10, 6, seed=4).x)
    with pytest.raises(ValueError, match="length"):
        adding_problem(10, 1)
    with pytest.raises(ValueError, match="samples"):
        adding_problem(0, 10)


def test_train_works_on_the_rnn_and_records_its_three_layers():
    data = adding_problem(128, 10, seed=0)
    model = VanillaRNN(2, 16, radius=0.9, generator=_gen())
    history = train(model, data, steps=60, lr=0.1, batch_size=32, optimizer="momentum")
    assert history.first_nonfinite_step is None
    assert history.gradient_norm_matrix().shape == (60, 3)
    assert history.final_loss() < history.loss[0]


def test_cliff_recurrence_matches_a_plain_loop():
    x = 0.0
    for _ in range(20):
        x = 5.0 * (1 / (1 + math.exp(-x))) - 2.0
    assert math.isclose(float(cliff_final_state(-2.0, steps=20)), x, rel_tol=1e-12)
    with pytest.raises(ValueError, match="steps"):
        cliff_final_state(0.0, steps=0)


def test_cliff_scan_finds_the_wall_at_the_unstable_fixed_point():
    scan = cliff_scan(np.linspace(-4, -1, 3001))
    # from x0 = 0, b = -w/2 makes x = 0 a fixed point: x1 = 5·σ(0) - 2.5 = 0
    assert abs(scan.wall - (-2.5)) < 2e-3
    left, right = scan.final_state[scan.b < -2.6], scan.final_state[scan.b > -2.4]
    assert left.max() < -1.5 and right.min() > 1.5   # two attractors, one on each side
    assert scan.steepest_gradient > 1e3 * np.median(np.abs(scan.gradient))


def test_cliff_gradient_is_the_backpropagated_sum_of_powers():
    # at b = -2.5 the state stays at 0, each step multiplies by w·σ'(0) = 1.25
    scan = cliff_scan([-2.5, 0.0], steps=30)
    expected = 2 * (0.0 - 0.7) * (1.25**30 - 1) / 0.25
    assert math.isclose(scan.gradient[0], expected, rel_tol=1e-9)
    assert scan.loss[0] == pytest.approx(0.49)


def test_cliff_gradient_agrees_with_finite_differences_off_the_wall():
    b = np.array([-4.0, -1.0])
    h = 1e-6
    up = cliff_scan(b + h).loss
    down = cliff_scan(b - h).loss
    assert np.allclose(cliff_scan(b).gradient, (up - down) / (2 * h), rtol=1e-4, atol=1e-8)
    with pytest.raises(ValueError, match="two biases"):
        cliff_scan([0.0])
