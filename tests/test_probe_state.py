"""Probes leave a model exactly as they found it (issue 9, section 2).

Every public probe runs on a BatchNorm model, a dropout model and a recurrent model, in training
and in eval mode, and the parameters, buffers (running statistics, ``num_batches_tracked``),
``.grad`` fields, every submodule's mode and the global random state are compared before and
after. The exceptions are the ones the docstrings state: ``backward_signal_norms`` leaves its
pass's gradients in ``.grad`` and ``lsuv_`` initializes the weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import torch
from gradpath.init import lsuv_
from gradpath.models import DeepMLP
from gradpath.precision import capture_gradients
from gradpath.probes import (
    activation_statistics,
    backward_signal_norms,
    global_gradient_norm,
    gradient_norms_by_layer,
    gradient_norms_by_name,
    nonfinite_parameters,
    parameter_norms_by_name,
    preserved_rng,
    preserved_state,
    probe_gradient_norms_by_name,
    rng_devices,
    tensor_norms,
)
from gradpath.through_time import (
    input_gradient_norms,
    jacobian_norms,
    state_gradient_norms,
    state_jacobians,
)
from torch import nn

X = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(1))
LOSS = nn.functional.cross_entropy


class TinyRNN(nn.Module):
    """An Elman RNN over the 6 features read as a sequence of 3 steps of 2, and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(2, 8, batch_first=True)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.reshape(x.shape[0], 3, 2))
        return self.head(self.dropout(out[:, -1]))


def bn_model() -> nn.Module:
    return DeepMLP(6, 3, width=16, depth=4, norm="batch",
                   generator=torch.Generator().manual_seed(0))


def dropout_model() -> nn.Module:
    model = DeepMLP(6, 3, width=16, depth=4, activation="tanh",
                    generator=torch.Generator().manual_seed(0))
    for block in model.blocks:
        block.norm = nn.Dropout(0.3)          # a = tanh(dropout(W h + b))
    return model


MODELS: dict[str, Callable[[], nn.Module]] = {"batchnorm": bn_model, "dropout": dropout_model,
                                              "rnn": TinyRNN}

PROBES: dict[str, Callable[[nn.Module], object]] = {
    "gradient_norms_by_layer": gradient_norms_by_layer,
    "global_gradient_norm": global_gradient_norm,
    "backward_signal_norms": lambda m: backward_signal_norms(m, X, Y, LOSS),
    "activation_statistics": lambda m: activation_statistics(m, X),
    "nonfinite_parameters": nonfinite_parameters,
    "tensor_norms": lambda m: tensor_norms([p for p in m.parameters()]),
    "lsuv_": lambda m: lsuv_(m, X, generator=torch.Generator().manual_seed(0)),
    "gradient_norms_by_name": gradient_norms_by_name,
    "parameter_norms_by_name": parameter_norms_by_name,
    "probe_gradient_norms_by_name": lambda m: probe_gradient_norms_by_name(
        m, lambda: LOSS(m(X), Y)),
    "capture_gradients": lambda m: capture_gradients(m, lambda: LOSS(m(X), Y)),
}
CHANGES_GRAD = {"backward_signal_norms"}
CHANGES_WEIGHTS = {"lsuv_"}


def _state(model: nn.Module) -> dict[str, object]:
    return {
        "parameters": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "grads": {n: None if p.grad is None else p.grad.clone()
                  for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in model.named_modules()},
        "rng": torch.get_rng_state().clone(),
    }


def _same(a: dict[str, torch.Tensor | None], b: dict[str, torch.Tensor | None]) -> bool:
    return a.keys() == b.keys() and all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
        for x, y in ((a[k], b[k]) for k in a))


@pytest.mark.parametrize("training", [True, False], ids=["train-mode", "eval-mode"])
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("probe_name", list(PROBES))
def test_probe_leaves_the_model_as_found(probe_name, model_name, training):
    model = MODELS[model_name]()
    model.train()
    LOSS(model(X), Y).backward()               # some gradients to leave alone, moved BN stats
    model.train(training)
    if model_name == "dropout":
        model.blocks[1].train(not training)     # a mixed-mode model must keep its mixture
    before = _state(model)
    try:
        PROBES[probe_name](model)
    except ValueError as error:                 # e.g. activation_statistics needs `blocks`
        assert model_name == "rnn", error
    after = _state(model)
    assert _same(before["buffers"], after["buffers"]), "buffers (running statistics) moved"
    assert before["modes"] == after["modes"], "train/eval mode changed"
    assert torch.equal(before["rng"], after["rng"]), "global random state moved"
    if probe_name not in CHANGES_WEIGHTS:
        assert _same(before["parameters"], after["parameters"]), "parameters changed"
    if probe_name not in CHANGES_GRAD:
        assert _same(before["grads"], after["grads"]), ".grad changed"


def test_backward_signal_norms_leaves_exactly_its_own_gradients():
    model = bn_model()
    LOSS(model(X[:8]), Y[:8]).backward()        # stale gradients from another batch
    signal = backward_signal_norms(model, X, Y, LOSS)
    assert len(signal) == 3
    fresh = bn_model()
    fresh.load_state_dict(model.state_dict())
    LOSS(fresh(X), Y).backward()
    for (_, p), (_, q) in zip(model.named_parameters(), fresh.named_parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad)


def test_one_activation_statistics_call_no_longer_moves_running_mean():
    model = bn_model()
    model.train()
    before = model.blocks[0].norm.running_mean.clone()
    activation_statistics(model, X + 3.0)
    assert torch.equal(model.blocks[0].norm.running_mean, before)
    assert int(model.blocks[0].norm.num_batches_tracked) == 0


SEQUENCE = torch.randn(4, 5, 2, generator=torch.Generator().manual_seed(2))
TIME_PROBES: dict[str, Callable[[nn.Module], object]] = {
    "input_gradient_norms": lambda rnn: input_gradient_norms(rnn, SEQUENCE),
    "state_gradient_norms": lambda rnn: state_gradient_norms(rnn, SEQUENCE),
    "state_jacobians": lambda rnn: state_jacobians(rnn, SEQUENCE),
    "jacobian_norms": lambda rnn: jacobian_norms(rnn, SEQUENCE),
}


@pytest.mark.parametrize("training", [True, False], ids=["train-mode", "eval-mode"])
@pytest.mark.parametrize("kind", [nn.RNN, nn.LSTM, nn.GRU])
@pytest.mark.parametrize("probe_name", list(TIME_PROBES))
def test_through_time_probes_leave_the_recurrent_model_as_found(probe_name, kind, training):
    """Two layers with dropout between them: a training-mode pass would draw random numbers."""
    rnn = kind(2, 6, num_layers=2, dropout=0.3, batch_first=True)
    out = rnn(SEQUENCE)[0]
    out.sum().backward()
    rnn.train(training)
    before = _state(rnn)
    TIME_PROBES[probe_name](rnn)
    after = _state(rnn)
    assert _same(before["parameters"], after["parameters"]), "parameters changed"
    assert _same(before["buffers"], after["buffers"]), "buffers moved"
    assert _same(before["grads"], after["grads"]), ".grad changed"
    assert before["modes"] == after["modes"], "train/eval mode changed"
    assert torch.equal(before["rng"], after["rng"]), "global random state moved"


# --------------------------------------------------------------- one RNG rule for every probe


def test_rng_devices_lists_each_device_of_the_model_and_the_tensors_once():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    assert rng_devices(model) == [torch.device("cpu")]
    meta = nn.Linear(2, 2, device="meta")
    assert rng_devices(model, meta, torch.zeros(1)) == [torch.device("cpu"), torch.device("meta")]
    with pytest.raises(TypeError, match=r"sources\[1\] must be an nn.Module or a torch.Tensor"):
        rng_devices(model, "cuda")


def test_preserved_rng_forks_the_cpu_and_each_accelerator_in_use(monkeypatch):
    """The code path for CUDA and MPS, checked on any machine: which forks are opened."""
    calls = []

    @contextlib.contextmanager
    def recording_fork(devices=None, device_type=None, **_kw):
        calls.append((list(devices), device_type))
        yield

    monkeypatch.setattr(torch.random, "fork_rng", recording_fork)
    with preserved_rng(["cpu", "cuda:1", torch.device("cuda:0"), "cuda:1", "mps:0", "meta"]):
        pass
    assert calls == [([], None), ([1, 0], "cuda"), ([0], "mps")]


def test_preserved_rng_restores_the_cpu_state_even_after_an_error():
    before = torch.get_rng_state().clone()
    with pytest.raises(RuntimeError, match="inside"), preserved_rng([torch.device("cpu")]):
        torch.rand(10)
        raise RuntimeError("inside")
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_preserved_state_restores_cuda_dropout_draws():
    """A probe on a CUDA model: dropout's CUDA draws inside leave the CUDA state as it was."""
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).cuda().train()
    before = torch.cuda.get_rng_state().clone()
    with preserved_state(model):
        model(torch.ones(8, 4, device="cuda"))
        assert not torch.equal(torch.cuda.get_rng_state(), before)   # dropout drew numbers
    assert torch.equal(torch.cuda.get_rng_state(), before)
