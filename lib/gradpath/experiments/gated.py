"""Chapter 9: recurrent networks, LSTM and GRU, and the gradient through time.

- :func:`rnn_step`, :func:`lstm_step` and :func:`gru_step` write out the cell equations of
  ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` once, for teaching, with PyTorch's weight layout and
  conventions; :func:`cell_from` turns a layer's weights into a custom cell for
  :mod:`gradpath.through_time`.
- :class:`SequenceClassifier` reads a recurrent layer's last state with a linear layer, with the
  initializations the chapter compares (PyTorch's default, orthogonal, identity; the LSTM's
  forget-gate bias) and truncated backpropagation through time.
- :func:`recall_task` is a long-range memory task made by code; :func:`fit` trains with Adam and
  clipping, recording the loss, the gradient norm and the gradient through time at checkpoints;
  :func:`tune` trains one model per learning rate and keeps the best on held-out data.
- :func:`non_normal_matrix` and :func:`linear_gradient_growth` give the counterexample that a
  spectral radius below one does not make the gradient vanish (Pascanu et al. 2013).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import nn

from gradpath._checks import check_positive_int
from gradpath.data import Dataset
from gradpath.numerics import combined_norm, tensor_norms
from gradpath.through_time import TimeProfile, input_gradient_norms

CELL_KINDS = ("rnn", "lstm", "gru")
RECURRENT_INITS = ("default", "orthogonal", "identity")
NONLINEARITIES = ("tanh", "relu")
_LAYERS: dict[str, Callable[..., nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _check_kind(kind: str) -> None:
    if kind not in CELL_KINDS:
        raise ValueError(f"unknown cell kind {kind!r}; valid choices are {', '.join(CELL_KINDS)}")


# --------------------------------------------------------------------------- the cell equations


class LSTMStep(NamedTuple):
    """One LSTM step: the new state ``(h, c)`` and the four gates, each ``(batch, hidden)``."""

    h: torch.Tensor
    c: torch.Tensor
    input_gate: torch.Tensor
    forget_gate: torch.Tensor
    candidate: torch.Tensor
    output_gate: torch.Tensor


class GRUStep(NamedTuple):
    """One GRU step: the new state ``h``, the reset and update gates and the candidate ``n``."""

    h: torch.Tensor
    reset_gate: torch.Tensor
    update_gate: torch.Tensor
    candidate: torch.Tensor


def rnn_step(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
             b_ih: torch.Tensor, b_hh: torch.Tensor, nonlinearity: str = "tanh") -> torch.Tensor:
    """``h' = f(W_ih x + b_ih + W_hh h + b_hh)``, the update of ``nn.RNN`` (batched rows)."""
    z = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    return torch.tanh(z) if nonlinearity == "tanh" else torch.relu(z)


def lstm_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_ih: torch.Tensor,
              w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor) -> LSTMStep:
    """One step of ``nn.LSTM`` (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et
    al. 2000), in PyTorch's layout: the rows of ``W`` hold the gates in the order i, f, g, o.

    ``i, f, o = σ(·)``, ``g = tanh(·)``, each ``W_i· x + b_i· + W_h· h + b_h·``; then
    ``c' = f ⊙ c + i ⊙ g`` and ``h' = o ⊙ tanh(c')``.
    """
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_new = f * c + i * g
    return LSTMStep(o * torch.tanh(c_new), c_new, i, f, g, o)


def gru_step(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
             b_ih: torch.Tensor, b_hh: torch.Tensor) -> GRUStep:
    """One step of ``nn.GRU`` (Cho et al. 2014), in PyTorch's layout (rows r, z, n).

    ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``, ``z = σ(W_iz x + b_iz + W_hz h + b_hz)``,
    ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`` and ``h' = (1 - z) ⊙ n + z ⊙ h``: here ``z``
    is the share of the old state *kept* (Cho et al.'s convention; others write ``1 - z``), and
    the reset gate multiplies ``W_hn h + b_hn``, after the product, as cuDNN does.
    """
    gi = x @ w_ih.T + b_ih
    gh = h @ w_hh.T + b_hh
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return GRUStep((1 - z) * n + z * h, r, z, n)


Weights = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def layer_weights(layer: nn.RNNBase, index: int = 0) -> Weights:
    """``(W_ih, W_hh, b_ih, b_hh)`` of one layer of an ``nn.RNN``/``nn.LSTM``/``nn.GRU``."""
    if not 0 <= index < layer.num_layers:
        raise ValueError(f"layer index must be in [0, {layer.num_layers - 1}], got {index}")
    if not layer.bias:
        raise ValueError("the layer has no biases (bias=False); the equations here assume them")
    w_ih, w_hh, b_ih, b_hh = (cast(torch.Tensor, getattr(layer, f"{name}_l{index}"))
                              for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    return w_ih, w_hh, b_ih, b_hh


def cell_from(layer: nn.RNNBase) -> Callable[[torch.Tensor, object], object]:
    """A custom cell ``cell(x_t, state) -> state`` that runs the written-out equations with a
    one-layer ``nn.RNN``/``nn.LSTM``/``nn.GRU``'s own weights (state ``h``, or ``(h, c)``)."""
    if layer.num_layers != 1 or layer.bidirectional:
        raise ValueError("cell_from takes a one-layer, one-direction layer")
    weights = layer_weights(layer)
    if isinstance(layer, nn.LSTM):
        def lstm(x: torch.Tensor, state: object) -> tuple[torch.Tensor, torch.Tensor]:
            h, c = cast(tuple[torch.Tensor, torch.Tensor], state)
            out = lstm_step(x, h, c, *weights)
            return out.h, out.c
        return lstm
    if isinstance(layer, nn.GRU):
        return lambda x, h: gru_step(x, cast(torch.Tensor, h), *weights).h
    nonlinearity = getattr(layer, "nonlinearity", "tanh")
    return lambda x, h: rnn_step(x, cast(torch.Tensor, h), *weights, nonlinearity=nonlinearity)


def parameter_count(module: nn.Module) -> int:
    """The number of trainable numbers in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def expected_parameter_count(kind: str, input_size: int, hidden_size: int) -> int:
    """``gates · (H·I + H·H + 2H)``: one weight block per gate on the input and on the state,
    and PyTorch's two bias vectors (``b_ih`` and ``b_hh``); gates = 1, 4, 3 for rnn, lstm, gru."""
    _check_kind(kind)
    h = hidden_size
    return GATES[kind] * (h * input_size + h * h + 2 * h)


# --------------------------------------------------------------------------- the model


class SequenceClassifier(nn.Module):
    """A one-layer ``nn.RNN``/``nn.LSTM``/``nn.GRU`` read at its last step: ``y = W h_T + b``.

    Args:
        kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        input_size: features per time step; inputs are ``(batch, time, features)``.
        hidden_size: units in the state.
        classes: outputs of the linear read-out.
        nonlinearity: ``"tanh"`` or ``"relu"`` (vanilla RNN only).
        recurrent_init: ``"default"`` keeps PyTorch's ``U(-1/√H, 1/√H)``; ``"orthogonal"``
            makes every gate's block of ``W_hh`` a random orthogonal matrix (Saxe et al. 2014);
            ``"identity"`` sets ``W_hh = I`` and the biases to zero (vanilla RNN only; with ReLU
            this is the IRNN of Le et al. 2015).
        recurrent_scale: multiplies ``W_hh`` after its initialization.
        forget_bias: LSTM only: sets the forget gate's total bias ``b_if + b_hf`` to this value
            (``b_hf = 0``); ``None`` keeps PyTorch's random biases (mean 0).
        chrono_length: LSTM only: the chrono initialization of Tallec & Ollivier (2018) for
            dependencies up to this many steps: forget biases ``b_f = log u`` with ``u`` uniform
            in ``[1, chrono_length - 1]`` and input biases ``b_i = -b_f``, so the units' memory
            time constants ``1/(1 - σ(b_f)) ≈ u + 1`` spread from 2 to ``chrono_length`` steps.
        truncate: if set, truncated backpropagation through time: the gradient flows back
            through the last ``truncate`` steps only; the state is carried forward from the
            earlier steps, computed without a graph.
        seed: the initialization's seed (the global random state is left untouched).

    Raises:
        ValueError: for an unknown kind, init or nonlinearity, a setting that does not apply to
            the kind, or non-positive sizes.
        TypeError: for a size that is not an integer (a bool is not one).
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, classes: int, *,
                 nonlinearity: str = "tanh", recurrent_init: str = "default",
                 recurrent_scale: float = 1.0, forget_bias: float | None = None,
                 chrono_length: int | None = None, truncate: int | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        _check_kind(kind)
        input_size = check_positive_int("input_size", input_size)
        hidden_size = check_positive_int("hidden_size", hidden_size)
        classes = check_positive_int("classes", classes)
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; valid choices are "
                             f"{', '.join(NONLINEARITIES)}")
        if nonlinearity != "tanh" and kind != "rnn":
            raise ValueError(f"nonlinearity applies to the vanilla RNN only, not to {kind!r}")
        if recurrent_init not in RECURRENT_INITS:
            raise ValueError(f"unknown recurrent_init {recurrent_init!r}; valid choices are "
                             f"{', '.join(RECURRENT_INITS)}")
        if recurrent_init == "identity" and kind != "rnn":
            raise ValueError("recurrent_init='identity' applies to the vanilla RNN only")
        if forget_bias is not None and kind != "lstm":
            raise ValueError(f"forget_bias applies to the LSTM only, not to {kind!r}")
        if chrono_length is not None:
            if kind != "lstm":
                raise ValueError(f"chrono_length applies to the LSTM only, not to {kind!r}")
            if forget_bias is not None:
                raise ValueError("give forget_bias or chrono_length, not both")
            if not isinstance(chrono_length, int) or chrono_length < 3:
                raise ValueError(f"chrono_length must be an integer >= 3, got {chrono_length!r}")
        if not recurrent_scale > 0:
            raise ValueError(f"recurrent_scale must be positive, got {recurrent_scale}")
        if truncate is not None and (not isinstance(truncate, int) or truncate < 1):
            raise ValueError(f"truncate must be a positive integer or None, got {truncate!r}")
        self.kind = kind
        self.truncate = truncate
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            extra = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
            self.recurrent = _LAYERS[kind](input_size, hidden_size, batch_first=True, **extra)
            self.readout = nn.Linear(hidden_size, classes)
            _initialize_recurrent(self.recurrent, kind, recurrent_init, recurrent_scale,
                                  forget_bias, chrono_length)

    @property
    def hidden_size(self) -> int:
        return self.recurrent.hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"expected inputs of shape (batch, time, features), got "
                             f"{tuple(x.shape)}")
        k = self.truncate
        if k is not None and x.shape[1] > k:
            with torch.no_grad():                    # the early steps: no graph, no gradient
                _, state = self.recurrent(x[:, :-k])
            out, _ = self.recurrent(x[:, -k:], state)
        else:
            out, _ = self.recurrent(x)
        return self.readout(out[:, -1])


def _initialize_recurrent(layer: nn.RNNBase, kind: str, init: str, scale: float,
                          forget_bias: float | None, chrono_length: int | None) -> None:
    h = layer.hidden_size
    w_hh = cast(torch.Tensor, layer.weight_hh_l0)
    with torch.no_grad():
        if init == "orthogonal":
            for block in w_hh.split(h, dim=0):
                nn.init.orthogonal_(block)
        elif init == "identity":
            w_hh.copy_(torch.eye(h))
            cast(torch.Tensor, layer.bias_ih_l0).zero_()
            cast(torch.Tensor, layer.bias_hh_l0).zero_()
        w_hh.mul_(scale)
        b_ih, b_hh = cast(torch.Tensor, layer.bias_ih_l0), cast(torch.Tensor, layer.bias_hh_l0)
        if forget_bias is not None:
            b_ih[h:2 * h].fill_(forget_bias)
            b_hh[h:2 * h].zero_()
        if chrono_length is not None:
            b_f = torch.log(torch.empty(h).uniform_(1.0, chrono_length - 1.0))
            b_ih[h:2 * h].copy_(b_f)
            b_ih[:h].copy_(-b_f)
            b_hh[:2 * h].zero_()


def forget_gate_bias(model: SequenceClassifier) -> torch.Tensor:
    """The LSTM's total forget-gate bias ``b_if + b_hf``, one value per unit."""
    if model.kind != "lstm":
        raise ValueError(f"only an LSTM has a forget gate, not {model.kind!r}")
    h = model.hidden_size
    layer = model.recurrent
    return (cast(torch.Tensor, layer.bias_ih_l0)[h:2 * h]
            + cast(torch.Tensor, layer.bias_hh_l0)[h:2 * h]).detach()


# --------------------------------------------------------------------------- the task


def recall_task(samples: int, length: int, *, symbols: int = 4, noise_channels: int = 4,
                noise_scale: float = 3.0, seed: int = 0) -> Dataset:
    """Remember the first symbol of a noisy sequence: a long-range dependency made by code.

    Each sequence has ``length`` steps of ``symbols + 1 + noise_channels`` features: at step 1 a
    one-hot symbol (one of ``symbols``) and a marker 1; at every step Gaussian noise of standard
    deviation ``noise_scale`` on the noise channels; nothing else. The target is the symbol of
    step 1, read after the last step, so the answer is ``length - 1`` steps behind the question.
    Guessing gives an accuracy of ``1/symbols`` and a cross-entropy of ``ln(symbols)``.

    Returns:
        A classification :class:`~gradpath.data.Dataset` with ``x`` of shape
        ``(samples, length, symbols + 1 + noise_channels)``.
    """
    for name, value, low in (("samples", samples, 1), ("length", length, 1),
                             ("symbols", symbols, 2), ("noise_channels", noise_channels, 0)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not noise_scale >= 0:
        raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, symbols, (samples,), generator=g)
    x = torch.zeros(samples, length, symbols + 1 + noise_channels)
    x[torch.arange(samples), 0, target] = 1.0
    x[:, 0, symbols] = 1.0
    if noise_channels:
        x[:, :, symbols + 1:] = noise_scale * torch.randn(samples, length, noise_channels,
                                                          generator=g)
    return Dataset(x, target, "classification", symbols)


# --------------------------------------------------------------------------- training


@dataclass
class SequenceRun:
    """What :func:`fit` recorded.

    Attributes:
        lr: the learning rate.
        loss: the training loss of every step.
        gradient_norm: the global gradient norm of every step, before clipping (float64).
        profiles: ``{step: gradient through time}`` at the checkpoints (step 0 = before
            training), measured with :func:`gradpath.through_time.input_gradient_norms`.
        evaluations: ``{step: {"loss": …, "accuracy": …}}`` on the validation set.
        first_nonfinite_step: the first step whose loss or a gradient entry was not finite.
    """

    lr: float
    loss: list[float] = field(default_factory=list)
    gradient_norm: list[float] = field(default_factory=list)
    profiles: dict[int, TimeProfile] = field(default_factory=dict)
    evaluations: dict[int, dict[str, float]] = field(default_factory=dict)
    first_nonfinite_step: int | None = None

    @property
    def final(self) -> dict[str, float]:
        """The last validation result."""
        return self.evaluations[max(self.evaluations)]


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset) -> dict[str, float]:
    """Cross-entropy and accuracy of ``model`` on ``data`` (eval mode, then restored)."""
    was = model.training
    model.eval()
    out = model(data.x)
    model.train(was)
    return {"loss": float(nn.functional.cross_entropy(out.double(), data.y)),
            "accuracy": float((out.argmax(dim=1) == data.y).double().mean())}


def _global_norm(model: nn.Module) -> tuple[float, bool]:
    """The norm of all gradients together (right for finite entries) and whether every entry is
    finite; ``inf`` when one is not."""
    norm = combined_norm(tensor_norms([p.grad for p in model.parameters() if p.grad is not None]))
    finite = math.isfinite(norm)        # tensor_norms: non-finite exactly for a non-finite entry
    return (norm if finite else math.inf), finite


def fit(model: nn.Module, train: Dataset, validation: Dataset, *, steps: int, lr: float,
        batch_size: int = 32, clip_norm: float | None = 1.0, optimizer: str = "adam",
        checkpoints: Sequence[int] = (), probe_x: torch.Tensor | None = None,
        evaluate_every: int | None = None, stop_at_accuracy: float | None = None,
        seed: int = 0) -> SequenceRun:
    """Train ``model`` with minibatches, recording what the chapter plots.

    Like :func:`gradpath.training.train`, but it keeps one optimizer across checkpoints where it
    measures the gradient through time on ``probe_x``, and it can stop early once the
    validation accuracy reaches ``stop_at_accuracy`` (a solved run needs no more steps).

    Args:
        optimizer: ``"adam"`` or ``"sgd"`` (plain SGD).
        clip_norm: clip the global gradient norm to this (``clip_grad_norm_``); ``None``: no
            clipping.
        checkpoints: steps (0 = before the first update) at which to probe ``probe_x``.
        evaluate_every: evaluate on ``validation`` every this many steps (and at the end).

    A non-finite loss or gradient stops the run (recorded in ``first_nonfinite_step``).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"unknown optimizer {optimizer!r}; valid choices are adam, sgd")
    if checkpoints and probe_x is None:
        raise ValueError("checkpoints need probe_x, the sequences to probe")
    params = list(model.parameters())
    opt: torch.optim.Optimizer = (torch.optim.Adam(params, lr=lr) if optimizer == "adam"
                                  else torch.optim.SGD(params, lr=lr))
    generator = torch.Generator().manual_seed(seed)
    run = SequenceRun(lr=lr)
    wanted = set(checkpoints)
    every = evaluate_every or steps
    model.train()
    for step in range(steps + 1):
        if step in wanted and probe_x is not None:
            run.profiles[step] = input_gradient_norms(model, probe_x)
        if step > 0 and (step % every == 0 or step == steps):
            run.evaluations[step] = evaluate(model, validation)
            if (stop_at_accuracy is not None
                    and run.evaluations[step]["accuracy"] >= stop_at_accuracy):
                break
        if step == steps:
            break
        idx = torch.randint(0, len(train), (batch_size,), generator=generator)
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(train.x[idx]), train.y[idx])
        loss.backward()
        norm, finite = _global_norm(model)
        run.loss.append(float(loss.detach()))
        run.gradient_norm.append(norm)
        if not (finite and math.isfinite(run.loss[-1])):
            run.first_nonfinite_step = step
            run.evaluations[step] = evaluate(model, validation)
            break
        if clip_norm is not None:
            nn.utils.clip_grad_norm_(params, clip_norm)
        opt.step()
    return run


@dataclass
class Tuned:
    """One model trained at several learning rates, and the best of them.

    Attributes:
        runs: ``{lr: (model, run)}`` for every learning rate tried.
        best_lr: the learning rate whose run ended with the lowest validation loss.
        test: the best model's loss and accuracy on the test set.
    """

    runs: dict[float, tuple[nn.Module, SequenceRun]]
    best_lr: float
    test: dict[str, float]

    @property
    def model(self) -> nn.Module:
        return self.runs[self.best_lr][0]

    @property
    def run(self) -> SequenceRun:
        return self.runs[self.best_lr][1]

    def test_accuracies(self, test: Dataset) -> dict[float, float]:
        """Every learning rate's test accuracy (not only the best one's)."""
        return {lr: evaluate(model, test)["accuracy"] for lr, (model, _) in self.runs.items()}


def tune(make_model: Callable[[], nn.Module], train: Dataset, validation: Dataset,
         test: Dataset, lrs: Sequence[float], **fit_kwargs: Any) -> Tuned:
    """Train a fresh model (``make_model()``, the same seed each time) at every learning rate,
    pick the one with the lowest validation loss, and evaluate it on ``test``.

    ``fit_kwargs`` go to :func:`fit` (``steps``, ``batch_size``, ``clip_norm``, …).
    """
    if not lrs:
        raise ValueError("lrs is empty: pass learning rates such as [3e-3, 1e-2, 3e-2]")
    runs: dict[float, tuple[nn.Module, SequenceRun]] = {}
    for lr in lrs:
        model = make_model()
        runs[float(lr)] = (model, fit(model, train, validation, lr=float(lr), **fit_kwargs))
    best_lr = min(runs, key=lambda lr: runs[lr][1].final["loss"])
    return Tuned(runs, best_lr, evaluate(runs[best_lr][0], test))


# --------------------------------------------------------------------------- spectral radius


def non_normal_matrix(radius: float, coupling: float, size: int = 2) -> torch.Tensor:
    """``radius · I + coupling · N`` with ``N`` the shift (ones above the diagonal).

    Every eigenvalue is ``radius``, but the largest singular value is about ``radius +
    coupling``: the standard example of transient growth in a matrix with ``ρ < 1``.
    """
    if not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an integer >= 2, got {size!r}")
    return radius * torch.eye(size, dtype=torch.float64) + coupling * torch.diag(
        torch.ones(size - 1, dtype=torch.float64), 1)


def linear_gradient_growth(w_hh: torch.Tensor, steps: int) -> np.ndarray:
    """``‖(W_hh^T)^k‖₂`` for ``k = 0..steps``: the gradient factor of a linear recurrence
    over ``k`` steps (its largest singular value), computed in float64."""
    w = w_hh.detach().double()
    out, power = [], torch.eye(w.shape[0], dtype=torch.float64)
    for _ in range(steps + 1):
        out.append(float(torch.linalg.matrix_norm(power, ord=2)))
        power = power @ w.T
    return np.asarray(out)
