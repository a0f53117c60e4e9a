import math

import pytest
import torch
from gradpath.models import DeepMLP
from gradpath.probes import (
    activation_statistics,
    backward_signal_norms,
    dead_fraction,
    first_nonfinite,
    global_gradient_norm,
    gradient_norms_by_layer,
    nonfinite_parameters,
    saturated_fraction,
)
from torch import nn


def _model_and_batch():
    torch.manual_seed(0)
    model = DeepMLP(6, 3, width=10, depth=5, activation="tanh", init="xavier_normal")
    return model, torch.randn(16, 6), torch.randint(0, 3, (16,))


def test_gradient_norms_equal_autograd_by_hand():
    model, x, y = _model_and_batch()
    loss = nn.functional.cross_entropy(model(x), y)
    layers = model.weight_layers()
    by_hand = torch.autograd.grad(loss, [layer.weight for layer in layers], retain_graph=True)
    loss.backward()
    probe = gradient_norms_by_layer(model)
    assert len(probe) == 5
    for p, g in zip(probe, by_hand, strict=True):
        assert math.isclose(p, g.norm().item(), rel_tol=1e-6)


def test_backward_signal_equals_autograd_on_layer_outputs():
    model, x, y = _model_and_batch()
    signal = backward_signal_norms(model, x, y, nn.functional.cross_entropy)
    # By hand: run the blocks one at a time, keep every output, ask autograd for dL/da_l.
    outputs, h = [], x
    for block in model.blocks:
        h = block(h)
        outputs.append(h)
    loss = nn.functional.cross_entropy(model.head(h), y)
    by_hand = torch.autograd.grad(loss, outputs)
    assert len(signal) == len(model.blocks)
    for s, g in zip(signal, by_hand, strict=True):
        assert math.isclose(s, g.norm().item(), rel_tol=1e-6)
    assert all(p.grad is not None for p in model.parameters())


def test_global_norm_matches_clip_grad_norm():
    model, x, y = _model_and_batch()
    nn.functional.cross_entropy(model(x), y).backward()
    ours = global_gradient_norm(model)
    torch_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
    assert math.isclose(ours, float(torch_norm), rel_tol=1e-6)


def test_probes_need_a_backward_pass_first():
    model, _, _ = _model_and_batch()
    with pytest.raises(RuntimeError, match="backward"):
        gradient_norms_by_layer(model)
    with pytest.raises(RuntimeError, match="backward"):
        global_gradient_norm(model)


def test_saturation_and_dead_fractions():
    z = torch.tensor([[-10.0, 0.0, 10.0, 0.5]])
    assert saturated_fraction("sigmoid", z) == pytest.approx(0.5)
    assert saturated_fraction("tanh", torch.zeros(3, 3)) == 0.0
    out = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    assert dead_fraction(out) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        dead_fraction(torch.zeros(3))
    with pytest.raises(ValueError):
        saturated_fraction("sigmoid", z, threshold=2)


def test_activation_statistics_sees_saturation_and_dead_units():
    torch.manual_seed(0)
    big = DeepMLP(6, 3, width=32, depth=4, activation="sigmoid", init="uniform", init_scale=3.0)
    stats = activation_statistics(big, torch.randn(64, 6))
    assert len(stats) == 3 and all(s.saturated_fraction > 0.3 for s in stats[1:])
    dead = DeepMLP(6, 3, width=32, depth=3, activation="relu", init="he_normal")
    with torch.no_grad():
        dead.blocks[1].linear.bias.fill_(-100.0)
    stats = activation_statistics(dead, torch.randn(64, 6))
    assert stats[1].dead_fraction == 1.0 and stats[0].dead_fraction < 0.5


def test_nonfinite_detection():
    assert first_nonfinite([1.0, 2.0, float("nan"), float("inf")]) == 2
    assert first_nonfinite([1.0, 2.0]) is None
    model, _, _ = _model_and_batch()
    assert nonfinite_parameters(model) == []
    with torch.no_grad():
        model.head.weight[0, 0] = float("inf")
    assert nonfinite_parameters(model) == ["head.weight"]


def test_backward_signal_norms_replaces_stale_gradients_and_equals_a_fresh_pass():
    """The documented side effect, exactly: after the probe, every .grad is this pass's gradient
    (stale gradients from another batch are zeroed, not added to), and the norms equal a fresh
    computation on an untouched copy. Parameters are left as found."""
    model, x, y = _model_and_batch()
    twin, _, _ = _model_and_batch()                       # same seed: the same weights
    (1e3 * nn.functional.cross_entropy(model(x[:4]), y[:4])).backward()   # large, stale
    weights = [p.detach().clone() for p in model.parameters()]
    signal = backward_signal_norms(model, x, y, nn.functional.cross_entropy)
    outputs, h = [], x
    for block in twin.blocks:
        h = block(h)
        outputs.append(h)
    loss = nn.functional.cross_entropy(twin.head(h), y)
    by_hand = torch.autograd.grad(loss, outputs, retain_graph=True)
    loss.backward()
    assert signal == [pytest.approx(g.double().norm().item(), rel=1e-6) for g in by_hand]
    for p, q, w in zip(model.parameters(), twin.parameters(), weights, strict=True):
        assert torch.equal(p.grad, q.grad)
        assert torch.equal(p.detach(), w)
