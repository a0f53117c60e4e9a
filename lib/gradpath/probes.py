"""Probes: what the gradient and the activations look like, layer by layer.

- :func:`gradient_norms_by_layer` reads ``‖∂L/∂W_l‖`` from each weight layer after ``backward``.
- :func:`backward_signal_norms` measures ``‖∂L/∂a_l‖``, the signal that reaches each layer's
  output on its way back, by hooking the layer outputs.
- :func:`activation_statistics` records pre-activations and outputs of every hidden layer and
  reports the saturated fraction (sigmoid/tanh) and the dead fraction (ReLU).
- :func:`global_gradient_norm` and :func:`first_nonfinite` report explosions as numbers.

Numbers that do not lie. A float32 sum of squares overflows once an entry passes about
``1.8e19`` (its square passes float32's ``3.4e38``) and underflows to zero once the entries fall
below about ``1e-19`` (squares below float32's smallest number), although the entries themselves
are perfectly finite. Every norm here (:func:`tensor_norms`) is therefore computed so that finite
entries give the right finite answer: a fast float32 reduction where it is provably exact, and
float64 accumulation (or scaling by the largest entry, where the device has no float64) where it
is not. Whether something is non-finite is decided from the tensors (``torch.isfinite``), never
from a derived norm.

Probes leave a model as they found it: parameters, buffers (BatchNorm's running statistics and
``num_batches_tracked``), ``.grad`` fields, train/eval mode and the global random-number state,
unless the docstring says otherwise (:func:`backward_signal_norms` leaves the gradients of the
pass it ran in ``.grad``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from gradpath.activations import derivative, get_activation

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _fast_norm_list(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's L2 norm as a 0-d tensor on its device, from one fused reduction.

    ``torch._foreach_norm`` for float32 (the common case); float16/bfloat16 are accumulated in
    float32 and float64 in float64. A result can overflow or underflow although every entry is
    finite; :func:`_reliable` says when it cannot have.
    """
    with torch.no_grad():
        if all(t.dtype == torch.float32 for t in tensors):
            if tensors and tensors[0].device.type == "cpu":
                return _cpu_norm_list(tensors)
            return list(torch._foreach_norm(list(tensors)))
        return [torch.linalg.vector_norm(t, dtype=torch.float32 if t.dtype in _LOW_PRECISION
                                         else None) for t in tensors]


# On the CPU, torch._foreach_norm is a loop over the tensors, and (measured with torch 2.13) a
# slower one than calling torch.linalg.vector_norm on each tensor once a tensor has more than a
# few thousand entries; it wins on many small tensors, where it saves the per-call overhead.
_CPU_FOREACH_LIMIT = 1 << 14


def _cpu_norm_list(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """float32 norms on the CPU: one ``_foreach_norm`` for the small tensors, one call per big one.
    """
    small = [i for i, t in enumerate(tensors) if t.numel() < _CPU_FOREACH_LIMIT]
    if len(small) == len(tensors):
        return list(torch._foreach_norm(list(tensors)))
    out: list[torch.Tensor | None] = [None] * len(tensors)
    if small:
        for i, norm in zip(small, torch._foreach_norm([tensors[i] for i in small]), strict=True):
            out[i] = norm
    for i, t in enumerate(tensors):
        if out[i] is None:
            out[i] = torch.linalg.vector_norm(t)
    return cast(list[torch.Tensor], out)


def _stacked(values: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack 0-d tensors in one call, converting to float64 only if some are float64."""
    if any(v.dtype != torch.float32 for v in values):
        dtype = torch.float64 if any(v.dtype == torch.float64 for v in values) else torch.float32
        values = [v.to(dtype) for v in values]
    return torch.stack(list(values))


def _fast_norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """:func:`_fast_norm_list` stacked into one 1-D tensor (float64 if any input is float64)."""
    if not tensors:
        return torch.zeros(0)
    return _stacked(_fast_norm_list(tensors))


_TINY = {torch.float32: torch.finfo(torch.float32).tiny,
         torch.float64: torch.finfo(torch.float64).tiny}


def _reliable_limits(tensors: Sequence[torch.Tensor]) -> list[float]:
    """Per tensor, the smallest square of a fast norm that :func:`_reliable` accepts.

    Each tensor is accumulated in float64 if it is float64, else in float32 (see
    :func:`_fast_norm_list`).
    """
    return [1e9 * max(t.numel(), 1) * _TINY[torch.float64 if t.dtype == torch.float64
                                             else torch.float32] for t in tensors]


def _reliable(value: float, limit: float) -> bool:
    """Whether a fast norm ``value`` is the true norm to rounding error.

    A finite result means no square overflowed (an overflow leaves ``inf`` in the sum). Squares
    below the accumulation dtype's smallest normal number (``tiny``) may be lost or rounded; they
    change the sum of squares by at most ``numel · tiny``, which is below 1e-9 of it when
    ``value² >= limit = 1e9 · numel · tiny`` (:func:`_reliable_limits`). Anything smaller,
    including an exact 0, is recomputed.
    """
    return math.isfinite(value) and value * value >= limit


def _float64_capable(device: torch.device) -> bool:
    return device.type != "mps"


def _exact_norm(t: torch.Tensor) -> float:
    """One tensor's L2 norm, right for every finite entry (float64 sum, or scaled by the max)."""
    t = t.detach()
    if t.numel() == 0:
        return 0.0
    if t.dtype != torch.float64 and _float64_capable(t.device):
        # the square of float32's largest number, 1.2e77, and of its smallest, 2e-90, are both
        # comfortably inside float64, so this sum neither overflows nor underflows.
        return float(torch.linalg.vector_norm(t, dtype=torch.float64))
    work = t.float() if t.dtype in _LOW_PRECISION else t
    peak = float(work.abs().amax())          # nan if any entry is nan, inf if any is infinite
    if peak == 0.0 or not math.isfinite(peak):
        return peak
    return peak * float(torch.linalg.vector_norm(work / peak))


def _settle(values: list[float], tensors: Sequence[torch.Tensor],
            limits: Sequence[float]) -> list[float]:
    """Replace every fast norm that may have overflowed or underflowed by the exact one.

    A non-finite fast norm is kept only if the tensor itself holds a non-finite entry (decided by
    ``torch.isfinite`` on the entries); otherwise the entries are finite and the norm is
    recomputed exactly. ``limits`` come from :func:`_reliable_limits`.
    """
    out = list(values)
    for i, (v, limit) in enumerate(zip(values, limits, strict=True)):
        if _reliable(v, limit):
            continue
        t = tensors[i]
        if not math.isfinite(v) and not bool(torch.isfinite(t.detach()).all()):
            continue
        out[i] = _exact_norm(t)
    return out


def tensor_norms(tensors: Sequence[torch.Tensor]) -> list[float]:
    """The L2 norm of each tensor, as Python floats; right for every finite input.

    One fused reduction on the tensors' device and one transfer to the host; a norm that float32
    could not have computed exactly (entries above about ``1.8e19`` or below about ``1e-19``) is
    recomputed with float64 accumulation (scaled by the largest entry on devices without
    float64). Example: 100 entries of ``1e20`` give ``1e21``, and 100 entries of ``1e-26`` give
    ``1e-25`` (a float32 ``Tensor.norm()`` gives ``inf`` and ``0``).

    Args:
        tensors: any floating tensors (float16, bfloat16, float32, float64), on one device.

    Returns:
        One norm per tensor; ``inf`` or ``nan`` exactly when the tensor has an ``inf`` or ``nan``
        entry. Never raises because of the values.
    """
    ts = list(tensors)
    if not ts:
        return []
    fast = _fast_norms(ts)
    return _settle(fast.tolist(), ts, _reliable_limits(ts))


def tensor_norm(tensor: torch.Tensor) -> float:
    """The L2 norm of one tensor, right for every finite entry (see :func:`tensor_norms`)."""
    return tensor_norms([tensor])[0]


def combined_norm(norms: Sequence[float]) -> float:
    """The norm of several tensors together, ``sqrt(Σ ‖t_i‖²)``, from their separate norms.

    Computed with ``math.hypot`` (scaled, in float64), so it neither overflows nor underflows for
    finite inputs. ``nan`` if any norm is ``nan``, else ``inf`` if any is ``inf``.
    """
    values = [float(n) for n in norms]
    if any(math.isnan(v) for v in values):
        return math.nan
    return math.hypot(*values)


def as_float64(tensor: torch.Tensor) -> torch.Tensor:
    """A detached float64 copy to accumulate in (on the CPU if the device has no float64, MPS).

    Every entry of a float16/bfloat16/float32 tensor squares to a finite, nonzero float64, so
    sums of squares, variances and norms computed from this copy neither overflow nor underflow.
    """
    t = tensor.detach()
    if not _float64_capable(t.device):
        t = t.cpu()
    return t.to(torch.float64)


def float64_statistics(tensor: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of all entries, accumulated in float64 (no overflow)."""
    t = as_float64(tensor)
    return float(t.mean()), float(t.std()) if t.numel() > 1 else math.nan


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Run a block and put back the model's buffers, train/eval modes and the global RNG state.

    Buffers (e.g. BatchNorm's ``running_mean``, ``running_var``, ``num_batches_tracked``) are
    copied back in place; every submodule gets back its own ``training`` flag; the CPU random
    state, and CUDA's or MPS's when they are in use, are restored, so dropout inside the block
    draws numbers that the rest of the program never notices.
    """
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    mps_state = (torch.mps.get_rng_state()
                 if torch.backends.mps.is_available() else None)
    try:
        yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, training in modes:
            m.training = training
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        if mps_state is not None:
            torch.mps.set_rng_state(mps_state)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The model's weight layers from input to output.

    Uses ``model.weight_layers()`` when the model defines it (as :class:`gradpath.models.DeepMLP`
    does); otherwise every ``nn.Linear`` in registration order.
    """
    listed = getattr(model, "weight_layers", None)
    if callable(listed):
        return list(listed())
    layers: list[nn.Module] = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError("model has no nn.Linear layers to probe")
    return layers


def gradient_norms_by_layer(model: nn.Module) -> list[float]:
    """The L2 norm of each weight layer's gradient ``‖∂L/∂W_l‖``, input layer first.

    Call after ``loss.backward()``. Right for every finite gradient (see :func:`tensor_norms`);
    a gradient with an ``inf``/``nan`` entry is reported as ``inf`` or ``nan``, never raised.

    Raises:
        RuntimeError: if no gradient has been computed yet.
    """
    grads = []
    for layer in weight_layers(model):
        grad = cast(torch.Tensor, layer.weight).grad
        if grad is None:
            raise RuntimeError("no gradient on the weights yet: call loss.backward() first")
        grads.append(grad)
    return tensor_norms(grads)


def global_gradient_norm(model: nn.Module) -> float:
    """The L2 norm of all parameter gradients together (what ``clip_grad_norm_`` measures).

    Unlike ``torch.nn.utils.clip_grad_norm_``, which sums float32 squares, it is right for every
    finite gradient: entries of ``1e20`` give a finite norm, not ``inf``.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        raise RuntimeError("no gradients yet: call loss.backward() first")
    return combined_norm(tensor_norms(grads))


def _hidden_outputs(model: nn.Module) -> list[nn.Module]:
    if hasattr(model, "blocks"):
        return list(cast(nn.ModuleList, model.blocks))
    raise ValueError("backward_signal_norms needs a model with a `blocks` list "
                     "(e.g. gradpath.models.DeepMLP)")


def backward_signal_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          loss_fn: LossFn) -> list[float]:
    """``‖∂L/∂a_l‖`` for the output ``a_l`` of every hidden block, input side first.

    Runs one forward and backward pass in the model's current mode, capturing the gradient that
    arrives at each block's output through tensor hooks. Side effect, on purpose: the parameter
    gradients of this pass replace whatever was in ``.grad`` (so :func:`gradient_norms_by_layer`
    can read them next). Everything else is left as found: BatchNorm's running statistics, the
    train/eval mode and the global random state (dropout's draws are undone).

    Returns:
        One norm per block (``len(model.blocks)``), right for every finite gradient; ``nan`` for a
        block the gradient did not reach.
    """
    captured: dict[int, torch.Tensor] = {}
    handles = []

    def keep(index: int) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            def save(grad: torch.Tensor) -> None:
                captured[index] = grad.detach()
            output.register_hook(save)
        return hook

    blocks = _hidden_outputs(model)
    with preserved_state(model):
        for i, block in enumerate(blocks):
            handles.append(block.register_forward_hook(keep(i)))
        try:
            model.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
        finally:
            for h in handles:
                h.remove()
    reached = [i for i in range(len(blocks)) if i in captured]
    norms = dict(zip(reached, tensor_norms([captured[i] for i in reached]), strict=True))
    return [norms.get(i, math.nan) for i in range(len(blocks))]


@dataclass(frozen=True)
class LayerActivations:
    """What one hidden layer computed on a batch.

    Attributes:
        pre_activation: ``z_l``, the input of the activation function (batch × units).
        output: ``f(z_l)`` (batch × units).
        saturated_fraction: share of entries where ``f'(z)`` is below 1% of its maximum.
        dead_fraction: share of units whose output is zero for every example in the batch.
    """

    pre_activation: torch.Tensor
    output: torch.Tensor
    saturated_fraction: float
    dead_fraction: float

    @property
    def mean(self) -> float:
        """Mean of the outputs, accumulated in float64."""
        return float64_statistics(self.output)[0]

    @property
    def std(self) -> float:
        """Standard deviation of the outputs, accumulated in float64 (no float32 overflow)."""
        return float64_statistics(self.output)[1]


def saturated_fraction(activation: str, pre_activation: torch.Tensor,
                       threshold: float = 0.01) -> float:
    """Share of entries whose derivative ``f'(z)`` is below ``threshold × max f'``.

    For sigmoid and tanh this is saturation (|z| large); for ReLU it counts inputs below zero.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    act = get_activation(activation)
    d = derivative(activation, pre_activation.detach().float())
    return float((d.abs() < threshold * act.max_derivative).double().mean())


def dead_fraction(output: torch.Tensor) -> float:
    """Share of units (columns) whose output is exactly zero for every example (row)."""
    if output.dim() != 2:
        raise ValueError(f"expected a (batch, units) tensor, got shape {tuple(output.shape)}")
    return float((output == 0).all(dim=0).double().mean())


@torch.no_grad()
def activation_statistics(model: nn.Module, x: torch.Tensor) -> list[LayerActivations]:
    """Run ``x`` through ``model``; describe the input and output of each block's activation.

    The forward pass runs in the model's current mode (in training mode BatchNorm normalizes with
    the batch's statistics, and dropout drops), but the model is left exactly as found: running
    statistics, ``num_batches_tracked``, mode and the global random state are put back.
    """
    records: list[tuple[torch.Tensor, torch.Tensor]] = []
    handles = []
    blocks = _hidden_outputs(model)

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        records.append((inputs[0].detach().cpu(), output.detach().cpu()))

    for block in blocks:
        handles.append(cast(nn.Module, block.activation).register_forward_hook(hook))
    try:
        with preserved_state(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    name = getattr(model, "activation_name", None)
    if name is None:
        raise ValueError("model must record its activation_name (e.g. gradpath.models.DeepMLP)")
    return [LayerActivations(z, a, saturated_fraction(name, z), dead_fraction(a))
            for z, a in records]


def first_nonfinite(values: Sequence[float]) -> int | None:
    """Index of the first ``nan`` or ``inf`` in ``values``, or ``None`` if all are finite."""
    for i, v in enumerate(values):
        if not math.isfinite(v):
            return i
    return None


def nonfinite_parameters(model: nn.Module) -> list[str]:
    """Names of parameters whose values or gradients contain ``nan`` or ``inf``."""
    bad = []
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all() or (p.grad is not None and not torch.isfinite(p.grad).all()):
            bad.append(name)
    return bad


def _exact_norms_on_device(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Each tensor's L2 norm, right for every finite entry, computed without leaving the device.

    float64 accumulation in one fused call where the device has float64 and no input is float64;
    otherwise each tensor is divided by its largest entry first. Used where a host round trip per
    step would cost a device sync (``train(record_every > 1)``).
    """
    ts = [t.detach() for t in tensors]
    if _float64_capable(ts[0].device) and all(t.dtype != torch.float64 for t in ts):
        return torch.stack(torch._foreach_norm(ts, 2, dtype=torch.float64))
    return torch.stack([_scaled_norm(t.float() if t.dtype in _LOW_PRECISION else t) for t in ts])


def _scaled_norm(t: torch.Tensor) -> torch.Tensor:
    """``max|t| · ‖t / max|t|‖`` as a 0-d tensor: no overflow or underflow for finite entries."""
    peak = t.abs().amax() if t.numel() else t.new_zeros(())
    usable = torch.isfinite(peak) & (peak > 0)
    scaled = torch.linalg.vector_norm(t / torch.where(usable, peak, torch.ones_like(peak)))
    return torch.where(usable, peak * scaled, peak)
# ------------------------------------------------------------------ probes by parameter name
# These work on any module, not only on models built from ``nn.Linear`` layers: a transformer's
# ``nn.MultiheadAttention`` keeps its query, key and value weights in one ``in_proj_weight``
# parameter, which no probe that looks for ``nn.Linear`` would see. (Imported here so that this
# section is a pure addition to the module.)
import re  # noqa: E402
from collections.abc import Mapping  # noqa: E402


def _float64_norm(tensor: torch.Tensor) -> float:
    """The L2 norm of ``tensor``, accumulated in float64 (exact for any finite float32 entries)."""
    return float(torch.linalg.vector_norm(tensor.detach(), dtype=torch.float64))


def gradient_norms_by_name(model: nn.Module, pattern: str | None = None) -> dict[str, float]:
    """``‖∂L/∂θ‖`` for every named parameter ``θ`` of ``model`` that holds a gradient.

    Call after ``loss.backward()``. The norms are accumulated in float64, so a float32 gradient
    whose entries are all finite never reports a norm of ``inf`` (or ``0``) by overflow (or
    underflow) of the sum of squares; a gradient with an ``inf`` or ``nan`` entry reports ``inf``
    or ``nan``. Nothing is modified.

    Args:
        model: any ``nn.Module``; names are those of ``model.named_parameters()``, e.g.
            ``"layers.0.self_attn.in_proj_weight"``.
        pattern: if given, keep only names where this regular expression matches
            (``re.search``).

    Returns:
        ``{name: norm}`` in registration order; parameters without a gradient are left out.

    Raises:
        RuntimeError: if no selected parameter holds a gradient (call ``backward`` first).
        ValueError: if ``pattern`` is not a valid regular expression.
    """
    regex = _compile(pattern)
    norms = {name: _float64_norm(p.grad) for name, p in model.named_parameters()
             if p.grad is not None and (regex is None or regex.search(name))}
    if not norms:
        where = "" if pattern is None else f" matching {pattern!r}"
        raise RuntimeError(f"no parameter{where} holds a gradient: call loss.backward() first")
    return norms


def parameter_norms_by_name(model: nn.Module, pattern: str | None = None) -> dict[str, float]:
    """``‖θ‖`` of every named parameter (float64 accumulation), optionally filtered by ``pattern``.

    With :func:`gradient_norms_by_name` it gives per-parameter ratios such as the update-to-data
    ratio ``lr·‖g‖/‖θ‖``.
    """
    regex = _compile(pattern)
    return {name: _float64_norm(p) for name, p in model.named_parameters()
            if regex is None or regex.search(name)}


def group_norms(norms: Mapping[str, float], key: str | Callable[[str], str | None]
                ) -> dict[str, float]:
    """Combine per-parameter norms into one norm per group: ``sqrt(Σ norm²)`` over each group.

    Args:
        norms: ``{parameter name: norm}``, e.g. from :func:`gradient_norms_by_name`.
        key: how a name maps to its group. A callable returns the group (``None`` drops the
            name). A string is a regular expression: the group is its first capture group, or
            the whole match if it has none; names it does not match are dropped. For example
            ``r"layers\\.(\\d+)\\."`` groups a transformer's parameters by layer, and
            ``r"layers\\.\\d+\\.(self_attn|linear|norm)"`` by sublayer kind.

    Returns:
        ``{group: norm}`` in order of first appearance; the sum of squares is taken in float64.
        A group with a non-finite member is non-finite.

    Raises:
        ValueError: if ``key`` is an invalid regular expression or no name falls into a group.
    """
    grouping: Callable[[str], str | None]
    if isinstance(key, str):
        regex = _compile(key)
        assert regex is not None

        def by_pattern(name: str) -> str | None:
            found = regex.search(name)
            if found is None:
                return None
            return found.group(1) if regex.groups else found.group(0)

        grouping = by_pattern
    else:
        grouping = key
    squares: dict[str, float] = {}
    for name, value in norms.items():
        group = grouping(name)
        if group is not None:
            squares[group] = squares.get(group, 0.0) + float(value) ** 2
    if not squares:
        raise ValueError(f"no parameter name fell into a group (key={key!r}); names look like "
                         f"{', '.join(list(norms)[:3])}")
    return {group: math.sqrt(total) for group, total in squares.items()}


def probe_gradient_norms_by_name(model: nn.Module, loss_fn: Callable[[], torch.Tensor],
                                 pattern: str | None = None) -> dict[str, float]:
    """Run one forward and backward pass and return :func:`gradient_norms_by_name`.

    ``loss_fn`` takes no arguments and returns a scalar loss computed with ``model`` (for
    example ``lambda: criterion(model(x), y)``). The model is left exactly as found: every
    parameter's ``.grad`` (``None`` or a tensor) and every buffer (e.g. batch norm's running
    statistics, which a training-mode forward pass would update) are restored afterwards, and the
    parameters themselves are never changed.

    Raises:
        ValueError: if ``loss_fn`` does not return a scalar tensor.
        RuntimeError: as :func:`gradient_norms_by_name`.
    """
    saved_grads = {name: (None if p.grad is None else p.grad.detach().clone())
                   for name, p in model.named_parameters()}
    saved_buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        model.zero_grad(set_to_none=True)
        loss = loss_fn()
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn must return a scalar tensor (a loss computed with model)")
        loss.backward()
        return gradient_norms_by_name(model, pattern)
    finally:
        for name, p in model.named_parameters():
            p.grad = saved_grads[name]
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(saved_buffers[name])


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {error}"
                         ) from None
