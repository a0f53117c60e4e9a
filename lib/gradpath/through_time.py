"""Gradient through time: how much of the gradient reaches each step of a sequence.

A recurrent model updates a state with the same function at every step, ``s_t = F(x_t, s_{t-1})``,
so backpropagation through time (BPTT) multiplies the gradient by one Jacobian
``∂s_t/∂s_{t-1}`` per step: the gradient that reaches step ``t`` from a loss read at step ``T``
has passed through ``T - t`` of them. This module measures that, on any recurrent model:

- torch's recurrent layers ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` (any number of layers,
  ``batch_first`` or not; one direction only);
- their cells ``nn.RNNCell``, ``nn.LSTMCell`` and ``nn.GRUCell``;
- a custom cell: any callable ``cell(x_t, state) -> state``, where ``x_t`` has shape
  ``(batch, features)`` and ``state`` is a tensor or a tuple of tensors whose first dimension is
  the batch (give the initial ``state`` yourself).

Three measurements, each returned as a :class:`TimeProfile` (step 1 first):

- :func:`input_gradient_norms`: ``‖∂L/∂x_t‖`` for every step. It differentiates with respect to
  the input only, so it works on *any* model that maps a sequence to an output, recurrent or not.
- :func:`state_gradient_norms`: ``‖∂L/∂s_t‖`` for every state, stepping the recurrence one step at
  a time (for an LSTM the state is ``(h_t, c_t)`` together).
- :func:`jacobian_norms`: the largest singular value of ``∂s_T/∂s_t``, the product of the
  per-step Jacobians that :func:`state_jacobians` returns. Pascanu, Mikolov & Bengio (2013) bound
  each factor by ``‖W_hh‖₂ · γ`` (``γ`` the bound on ``|f'|``): below one, the product must
  vanish.

Every probe leaves the model as it found it: it runs on a copy in ``dtype`` (float64 by
default, so the norms are the mathematical values even where float32 entries would underflow
or overflow), writes no ``.grad`` field, and restores the random-number state that dropout may
consume. It disables cuDNN for its own passes, so it also works on a CUDA model in eval mode.
Examples in a batch must not interact (no batch norm across the batch): per-example norms are
read from one backward pass of a loss summed over the batch.

Sources: Werbos (1990) for backpropagation through time; Bengio, Simard & Frasconi (1994) and
Pascanu, Mikolov & Bengio (2013) for the product of Jacobians and its bounds.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from gradpath._checks import check_int, check_tensor
from gradpath.probes import preserved_rng, rng_devices

State = torch.Tensor | tuple[torch.Tensor, ...]
Cell = Callable[[torch.Tensor, Any], Any]
LossFn = Callable[[Any], torch.Tensor]

RECURRENT_LAYERS: tuple[type[nn.Module], ...] = (nn.RNN, nn.LSTM, nn.GRU)
RECURRENT_CELLS: tuple[type[nn.Module], ...] = (nn.RNNCell, nn.LSTMCell, nn.GRUCell)


# --- Results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeProfile:
    """A norm measured at every step ``t = 1..T`` of a sequence, step 1 first.

    Attributes:
        norms: shape ``(T,)``, float64: the root mean square over the examples of
            ``per_example`` (a batch-size-free summary, dominated by the largest examples).
        per_example: shape ``(batch, T)``, float64: the norm for each example at each step.

    The entry for step ``t`` has passed back through ``T - t`` steps of the recurrence: its
    *distance* from the loss. Non-finite values are kept as they are, never raised.
    """

    norms: np.ndarray
    per_example: np.ndarray

    def __len__(self) -> int:
        return int(self.norms.shape[0])

    @property
    def distance(self) -> np.ndarray:
        """``T - t`` for every step: ``T-1, T-2, …, 0``."""
        return np.arange(len(self) - 1, -1, -1)

    def at_distance(self, d: int) -> float:
        """The norm ``d`` steps before the last step.

        Raises:
            ValueError: if ``d`` is not in ``[0, T-1]``.
        """
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d < len(self):
            raise ValueError(f"distance must be an integer in [0, {len(self) - 1}], got {d!r}")
        return float(self.norms[len(self) - 1 - int(d)])

    def relative(self) -> np.ndarray:
        """The norms divided by the last step's norm (distance 0), step 1 first (``inf``/``nan``
        where that norm is 0)."""
        return self.norms / self.norms[-1]

    def per_step_factor(self, skip: int = 0) -> float:
        """The geometric factor ``r`` per step in ``norm(d) ≈ C r^d``, fitted by least squares.

        Fits ``log norm`` against the distance ``d`` over the finite, positive entries with
        ``d >= skip`` (``skip`` leaves out the first few steps before the loss, where a model's
        output layer may dominate). ``r < 1`` means the gradient vanishes with distance.

        Raises:
            ValueError: if fewer than two entries are usable.
        """
        check_int("skip", skip, minimum=0)
        d = self.distance
        keep = np.isfinite(self.norms) & (self.norms > 0) & (d >= skip)
        if keep.sum() < 2:
            raise ValueError("need at least two finite, positive norms to fit a factor")
        slope = np.polyfit(d[keep].astype(float), np.log(self.norms[keep]), 1)[0]
        return float(np.exp(slope))


def _profile(per_example: torch.Tensor) -> TimeProfile:
    values = per_example.detach().to("cpu", torch.float64).numpy()
    with np.errstate(over="ignore", invalid="ignore"):
        scale = np.max(np.abs(np.where(np.isfinite(values), values, 0.0)), axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        rms = scale * np.sqrt(np.mean((values / scale) ** 2, axis=0))
    return TimeProfile(norms=rms, per_example=values)


def _norm_per_example(t: torch.Tensor) -> torch.Tensor:
    """``‖t[b]‖`` for every ``b`` along dim 0, in float64 (scaled by the max, so it cannot
    overflow or underflow while the entries are finite)."""
    flat = t.detach().reshape(t.shape[0], -1).to(torch.float64)
    if flat.shape[1] == 0:
        return flat.new_zeros(flat.shape[0])
    biggest = flat.abs().amax(dim=1)
    finite = torch.isfinite(biggest) & (biggest > 0)
    scale = torch.where(finite, biggest, torch.ones_like(biggest))
    return scale * torch.linalg.vector_norm(flat / scale[:, None], dim=1)


# --- Adapting models to one step ----------------------------------------------------------------


@dataclass(frozen=True)
class Recurrence:
    """A recurrent model seen as one step, ``state = step(x_t, state)``.

    Attributes:
        step: the update for one time step; ``x_t`` has shape ``(batch, features)``.
        time_dim: the dimension of the input that indexes time.
        state_batch_dim: the dimension of each state tensor that indexes the batch.
        initial: makes the zero state for a batch of inputs ``x_t`` (``None`` for a custom cell,
            whose initial state must be given).
    """

    step: Cell
    time_dim: int
    state_batch_dim: int
    initial: Callable[[torch.Tensor], State] | None


def as_recurrence(model: nn.Module | Cell, *, time_dim: int | None = None) -> Recurrence:
    """Wrap ``model`` as a one-step update.

    Args:
        model: an ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (unidirectional), an ``nn.RNNCell``/
            ``nn.LSTMCell``/``nn.GRUCell``, or a callable ``cell(x_t, state) -> state``.
        time_dim: where time is in the input. Default: 1 if a recurrent layer is
            ``batch_first`` or the model is a cell (inputs ``(batch, time, features)``), else 0.

    Raises:
        ValueError: for a bidirectional layer (its backward direction needs the future), for a
            ``time_dim`` that contradicts a layer's ``batch_first``, or for anything that is
            neither a recurrent module nor callable.
    """
    if time_dim is not None:
        check_int("time_dim", time_dim)
    if isinstance(model, RECURRENT_LAYERS):
        layer = cast(nn.RNNBase, model)
        if layer.bidirectional:
            raise ValueError("a bidirectional layer cannot be stepped one step at a time: its "
                             "backward direction reads the future; probe each direction alone")
        expected = 1 if layer.batch_first else 0
        if time_dim is not None and time_dim != expected:
            raise ValueError(f"time_dim={time_dim} contradicts batch_first={layer.batch_first}: "
                             f"this layer reads time from dimension {expected}")
        lstm = isinstance(layer, nn.LSTM)
        real = layer.proj_size if lstm and layer.proj_size > 0 else layer.hidden_size

        def layer_step(x_t: torch.Tensor, state: State) -> State:
            _, new = layer(x_t.unsqueeze(expected), state)
            return cast(State, new)

        def layer_initial(x_t: torch.Tensor) -> State:
            shape = (layer.num_layers, x_t.shape[0])
            h = x_t.new_zeros(*shape, real)
            return (h, x_t.new_zeros(*shape, layer.hidden_size)) if lstm else h

        return Recurrence(layer_step, expected, 1, layer_initial)
    if isinstance(model, RECURRENT_CELLS):
        cell = cast(nn.RNNCellBase, model)

        def cell_initial(x_t: torch.Tensor) -> State:
            h = x_t.new_zeros(x_t.shape[0], cell.hidden_size)
            return (h, torch.zeros_like(h)) if isinstance(cell, nn.LSTMCell) else h

        return Recurrence(cell, 1 if time_dim is None else time_dim, 0, cell_initial)
    if callable(model):
        return Recurrence(model, 1 if time_dim is None else time_dim, 0, None)
    raise ValueError(f"expected a recurrent module or a callable cell(x_t, state), got "
                     f"{type(model).__name__}")


def _parts(state: State) -> tuple[torch.Tensor, ...]:
    if isinstance(state, torch.Tensor):
        return (state,)
    if isinstance(state, (tuple, list)) and state and all(isinstance(p, torch.Tensor)
                                                           for p in state):
        return tuple(state)
    raise ValueError(f"a state must be a tensor or a tuple of tensors, got {type(state).__name__}")


def _rebuild(like: State, parts: Sequence[torch.Tensor]) -> State:
    return parts[0] if isinstance(like, torch.Tensor) else tuple(parts)


def _flatten(state: State, batch_dim: int) -> torch.Tensor:
    """All parts of a state side by side: shape ``(batch, state size)``."""
    return torch.cat([p.movedim(batch_dim, 0).reshape(p.shape[batch_dim], -1)
                      for p in _parts(state)], dim=1)


def _check_call(model: Any, x: Any, time_dim: Any, dtype: Any = None, seed: Any = 0) -> None:
    """The argument checks every public function here shares (before any copying)."""
    if not callable(model):
        raise ValueError(f"expected a recurrent module or a callable cell(x_t, state), got "
                         f"{type(model).__name__}")
    check_tensor("x", x)
    if time_dim is not None:
        check_int("time_dim", time_dim)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point torch.dtype (e.g. torch.float64) or "
                        f"None, got {dtype!r}")
    check_int("seed", seed, minimum=0)


def _steps(x: torch.Tensor, time_dim: int) -> list[torch.Tensor]:
    check_tensor("x", x)
    if x.dim() != 3:
        raise ValueError(f"expected a sequence of shape (batch, time, features) or "
                         f"(time, batch, features), got shape {tuple(x.shape)}")
    if not -x.dim() <= time_dim < x.dim():
        raise ValueError(f"time_dim={time_dim} is out of range for a {x.dim()}-d input")
    if x.shape[time_dim] < 1:
        raise ValueError("the sequence has no time steps")
    if x.numel() == 0:
        raise ValueError(f"x is empty (shape {tuple(x.shape)}): it needs at least one example "
                         "and one feature")
    return list(x.unbind(time_dim))


def unroll(model: nn.Module | Cell, x: torch.Tensor, state: State | None = None, *,
           time_dim: int | None = None) -> list[State]:
    """Run ``model`` one step at a time over ``x``; return the state after every step.

    Args:
        model: see :func:`as_recurrence`.
        x: the input sequence, time along ``time_dim``.
        state: the initial state (zeros for torch's modules when ``None``; required for a
            custom cell).

    Returns:
        ``[s_1, …, s_T]``, still in the autograd graph. For ``nn.LSTM`` each is ``(h, c)``.

    Like calling the model, this is a forward pass, not a probe: in training mode a module with
    dropout draws from the global random state. The probes built on it
    (:func:`state_gradient_norms`, :func:`state_jacobians`, :func:`jacobian_norms`) restore it.
    """
    rec = as_recurrence(model, time_dim=time_dim)
    inputs = _steps(x, rec.time_dim)
    if state is None:
        if rec.initial is None:
            raise ValueError("state is required for a custom cell: pass the initial state, "
                             "e.g. torch.zeros(batch, hidden)")
        state = rec.initial(inputs[0])
    states = []
    for x_t in inputs:
        state = rec.step(x_t, state)
        _parts(state)  # checks the cell returned a tensor or a tuple of tensors
        states.append(state)
    return states


# --- Leaving the model as found -----------------------------------------------------------------


@contextlib.contextmanager
def _quiet(devices: Sequence[torch.device]) -> Iterator[None]:
    """Restore the RNG state afterwards (dropout draws from it), by the probes' one rule
    (:func:`gradpath.probes.preserved_rng`); cuDNN off (its RNN backward refuses eval mode and
    float64)."""
    with preserved_rng(devices), torch.backends.cudnn.flags(enabled=False):
        yield


def _working_copy(model: Any, dtype: torch.dtype | None) -> Any:
    if dtype is None or not isinstance(model, nn.Module):
        return model
    return copy.deepcopy(model).to(dtype)


def _devices(x: torch.Tensor, model: Any) -> list[torch.device]:
    # the model may be a plain function of the input (no parameters of its own)
    return rng_devices(x, *([model] if isinstance(model, nn.Module) else []))


def _random_direction(size: int, seed: int, like: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(size, generator=g, dtype=torch.float64)
    return (u / u.norm()).to(like.device, like.dtype)


def _first_tensor(output: Any) -> torch.Tensor:
    while isinstance(output, (tuple, list)):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"the model returned {type(output).__name__}; pass a loss_fn that "
                         f"turns its output into a scalar")
    return output


# --- The probes ---------------------------------------------------------------------------------


def input_gradient_norms(model: nn.Module | Callable[[torch.Tensor], Any], x: torch.Tensor,
                         loss_fn: LossFn | None = None, *, time_dim: int | None = None,
                         dtype: torch.dtype | None = torch.float64,
                         seed: int = 0) -> TimeProfile:
    """``‖∂L/∂x_t‖`` for every step ``t``: how strongly the loss hears each input.

    Args:
        model: any module or callable mapping the sequence ``x`` to an output (a tensor, or a
            tuple whose first element is one, as ``nn.LSTM`` returns).
        x: the input, shape ``(batch, time, features)`` (or time first, see ``time_dim``).
        loss_fn: turns the model's output into a scalar loss summed over the batch. Default: a
            fixed random unit direction ``u`` (from ``seed``) read from the output at the last
            step, ``L = Σ_b u · y_b`` — a loss-free probe that weighs every output unit alike.
            (If the output is 3-d it is a sequence and its last step is read; otherwise it is
            used as it is.)
        time_dim: where time is in ``x``; default 0 for an ``nn.RNN``/``LSTM``/``GRU`` that is
            not ``batch_first``, else 1.
        dtype: run a copy of the model and the input in this precision (default float64, so
            the norms are not limited by float32's range); ``None`` uses the model itself. A
            plain callable (not an ``nn.Module``) cannot be copied: only its input is cast, so
            it must accept that dtype.
        seed: seeds the default readout direction.

    Returns:
        A :class:`TimeProfile` with ``per_example[b, t] = ‖∂L_b/∂x_{b,t}‖``.
    """
    _check_call(model, x, time_dim, dtype, seed)
    if time_dim is None:
        time_dim = 0 if isinstance(model, RECURRENT_LAYERS) and not model.batch_first else 1
    _steps(x, time_dim)
    work = _working_copy(model, dtype)
    with _quiet(_devices(x, model)):
        inp = x.detach().to(dtype if dtype is not None else x.dtype).requires_grad_(True)
        output = work(inp)
        if loss_fn is not None:
            loss = loss_fn(output)
        else:
            out = _first_tensor(output)
            if out.dim() == 3:
                out = out.select(time_dim, -1)
            flat = out.reshape(out.shape[0], -1)
            loss = (flat @ _random_direction(flat.shape[1], seed, flat)).sum()
        (grad,) = torch.autograd.grad(loss, inp)
    by_step = grad.movedim(time_dim, 1)                     # (batch, time, features)
    return _profile(torch.stack([_norm_per_example(by_step[:, t])
                                 for t in range(by_step.shape[1])], dim=1))


def state_gradient_norms(model: nn.Module | Cell, x: torch.Tensor,
                         loss_fn: LossFn | None = None, *, state: State | None = None,
                         time_dim: int | None = None, dtype: torch.dtype | None = torch.float64,
                         seed: int = 0) -> TimeProfile:
    """``‖∂L/∂s_t‖`` for every state ``s_1 … s_T``, the loss read from the last state.

    The recurrence is stepped one step at a time (:func:`unroll`), so every state is a tensor
    the gradient can be read from, even inside torch's fused ``nn.LSTM``. For an LSTM the norm
    covers ``(h_t, c_t)`` together; for a stack of layers, every layer's state.

    Args:
        loss_fn: turns the final state (as the model returns it) into a scalar summed over the
            batch. Default: a fixed random unit direction read from the whole final state.
        state: the initial state (see :func:`unroll`).
        dtype: as in :func:`input_gradient_norms`; a custom cell that is not an ``nn.Module``
            must accept inputs of this dtype (pass ``None`` to keep the input's own).
    """
    _check_call(model, x, time_dim, dtype, seed)
    rec = as_recurrence(model, time_dim=time_dim)
    _steps(x, rec.time_dim)
    work = _working_copy(model, dtype)
    with _quiet(_devices(x, model)):
        inp = x.detach().to(dtype) if dtype is not None else x.detach()
        if state is None:
            if rec.initial is None:
                raise ValueError("state is required for a custom cell: pass the initial state, "
                                 "e.g. torch.zeros(batch, hidden)")
            state = rec.initial(_steps(inp, rec.time_dim)[0])
        # a leaf that requires grad puts every state in the graph, even for a weightless cell
        start = _rebuild(state, [p.detach().to(inp.dtype).requires_grad_(True)
                                 for p in _parts(state)])
        states = unroll(work, inp, start, time_dim=rec.time_dim)
        final = states[-1]
        if loss_fn is not None:
            loss = loss_fn(final)
        else:
            flat = _flatten(final, rec.state_batch_dim)
            loss = (flat @ _random_direction(flat.shape[1], seed, flat)).sum()
        leaves = [p for s in states for p in _parts(s)]
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    per_state = len(_parts(states[0]))
    columns = []
    for t in range(len(states)):
        parts = grads[t * per_state:(t + 1) * per_state]
        squares = sum(_norm_per_example(g.movedim(rec.state_batch_dim, 0)) ** 2
                      for g in parts if g is not None)
        columns.append(torch.as_tensor(squares, dtype=torch.float64).sqrt())
    return _profile(torch.stack(columns, dim=1))


def _rows(out: torch.Tensor, before: list[torch.Tensor], batch_dim: int) -> torch.Tensor:
    """``J[b, i, j] = ∂out[b, i]/∂before[b, j]``: one backward pass per output unit ``i``
    (vectorized over ``i`` with ``is_grads_batched`` where autograd supports it)."""
    batch, size = out.shape

    def flat(grads: Sequence[torch.Tensor | None], lead: tuple[int, ...]) -> torch.Tensor:
        return torch.cat([
            (g if g is not None else b.new_zeros(*lead, *b.shape)).movedim(
                len(lead) + batch_dim, len(lead)).reshape(*lead, batch, -1)
            for g, b in zip(grads, before, strict=True)], dim=-1)

    eye = torch.eye(size, dtype=out.dtype, device=out.device)
    try:
        cotangents = eye[:, None, :].expand(size, batch, size)
        grads = torch.autograd.grad(out, before, cotangents, retain_graph=True,
                                    allow_unused=True, is_grads_batched=True)
        return flat(grads, (size,)).transpose(0, 1)         # (batch, S_out, S_in)
    except RuntimeError:                                    # no batching rule: one at a time
        rows = [flat(torch.autograd.grad(out[:, i].sum(), before, retain_graph=True,
                                         allow_unused=True), ()) for i in range(size)]
        return torch.stack(rows, dim=1)


def state_jacobians(model: nn.Module | Cell, x: torch.Tensor, *, state: State | None = None,
                    time_dim: int | None = None,
                    dtype: torch.dtype | None = torch.float64) -> torch.Tensor:
    """The per-step Jacobians ``J_t = ∂s_t/∂s_{t-1}`` for ``t = 1..T``, one per example.

    The state is flattened to one vector per example (for an LSTM ``[h, c]``; for a stack of
    layers, layer by layer), of size ``S``.

    Returns:
        A tensor of shape ``(T, batch, S, S)`` with ``J[t-1, b, i, j] = ∂s_t[b, i]/∂s_{t-1}[b, j]``,
        in ``dtype`` (or the input's dtype when ``dtype`` is ``None``).
    """
    _check_call(model, x, time_dim, dtype)
    as_recurrence(model, time_dim=time_dim)                    # validates before copying
    work = _working_copy(model, dtype)
    rec = as_recurrence(work, time_dim=time_dim)
    with _quiet(_devices(x, model)):
        inp = x.detach().to(dtype) if dtype is not None else x.detach()
        inputs = _steps(inp, rec.time_dim)
        if state is None:
            if rec.initial is None:
                raise ValueError("state is required for a custom cell: pass the initial state")
            state = rec.initial(inputs[0])
        current = _rebuild(state, [p.detach().to(inp.dtype) for p in _parts(state)])
        jacobians = []
        for x_t in inputs:
            before = [p.detach().requires_grad_(True) for p in _parts(current)]
            after = rec.step(x_t, _rebuild(current, before))
            out = _flatten(after, rec.state_batch_dim)          # (batch, S)
            jacobians.append(_rows(out, before, rec.state_batch_dim))   # (batch, S, S)
            current = _rebuild(after, [p.detach() for p in _parts(after)])
    return torch.stack(jacobians)


def jacobian_norms(model: nn.Module | Cell, x: torch.Tensor, *, state: State | None = None,
                   time_dim: int | None = None,
                   dtype: torch.dtype | None = torch.float64) -> TimeProfile:
    """The largest singular value of ``∂s_T/∂s_t`` for ``t = 1..T`` (``1`` at ``t = T``).

    ``∂s_T/∂s_t = J_T J_{T-1} ⋯ J_{t+1}`` is the product of :func:`state_jacobians`, computed in
    float64 and rescaled as it goes, so a product far below 1e-308 or above 1e308 is still
    measured (its norm is reported as 0 or ``inf`` only if the result itself leaves float64).
    """
    jac = state_jacobians(model, x, state=state, time_dim=time_dim, dtype=dtype)
    jac = jac.to(torch.float64)
    steps, batch, size, _ = jac.shape
    product = torch.eye(size, dtype=torch.float64, device=jac.device).expand(batch, size, size)
    log_scale = torch.zeros(batch, dtype=torch.float64, device=jac.device)
    logs = [torch.zeros(batch, dtype=torch.float64, device=jac.device)]   # at t = T
    for t in range(steps - 1, 0, -1):                  # ∂s_T/∂s_t = (∂s_T/∂s_{t+1}) J_{t+1}
        product = product @ jac[t]
        biggest = product.abs().amax(dim=(1, 2))
        safe = torch.where(biggest > 0, biggest, torch.ones_like(biggest))
        product = product / safe[:, None, None]
        log_scale = log_scale + torch.log(safe)
        sigma = torch.linalg.matrix_norm(product, ord=2)
        logs.append(torch.where(sigma > 0, log_scale + torch.log(sigma),
                                torch.full_like(sigma, -torch.inf)))
    per_example = torch.exp(torch.stack(logs[::-1], dim=1))
    return _profile(per_example)
