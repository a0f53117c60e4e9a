"""Probes: what the gradient and the activations look like, layer by layer.

- :func:`gradient_norms_by_layer` reads ``‖∂L/∂W_l‖`` from each weight layer after ``backward``.
- :func:`backward_signal_norms` measures ``‖∂L/∂a_l‖``, the signal that reaches each layer's
  output on its way back, by hooking the layer outputs.
- :func:`activation_statistics` records pre-activations and outputs of every hidden layer and
  reports the saturated fraction (sigmoid/tanh) and the dead fraction (ReLU).
- :func:`global_gradient_norm` and :func:`first_nonfinite` report explosions as numbers.

Every norm, mean and standard deviation is computed with :mod:`gradpath.numerics`, so finite
entries give the right finite answer however large or small they are (a float32 sum of squares
overflows once the norm passes about ``1.8e19``, and loses precision once the entries fall below
about ``1e-19``), and whether
something is non-finite is decided from the tensors (``torch.isfinite``), never from a norm.

Probes leave a model as they found it: parameters, buffers (BatchNorm's running statistics and
``num_batches_tracked``), ``.grad`` fields, train/eval mode and the global random-number state,
unless the docstring says otherwise (:func:`backward_signal_norms` leaves the gradients of the
pass it ran in ``.grad``). :func:`preserved_state` is the context manager that does it, and
:func:`preserved_rng` its random-number part: one rule, the CPU's state and that of every
accelerator device the model's tensors live on (:func:`rng_devices`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from gradpath._checks import check_fraction, check_pattern, check_tensor
from gradpath.activations import derivative, get_activation
from gradpath.numerics import (
    accurate_norm,
    as_float64,
    combined_norm,
    float64_statistics,
    tensor_norm,
    tensor_norms,
)

__all__ = [
    "LayerActivations", "activation_statistics", "as_float64", "backward_signal_norms",
    "combined_norm", "dead_fraction", "first_nonfinite", "float64_statistics",
    "global_gradient_norm", "gradient_norms_by_layer", "nonfinite_parameters",
    "preserved_rng", "preserved_state", "rng_devices", "saturated_fraction", "tensor_norm",
    "tensor_norms", "weight_layers",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def rng_devices(*sources: nn.Module | torch.Tensor) -> list[torch.device]:
    """The devices that the given modules' parameters and buffers, and the given tensors, live
    on, each once, in order of first appearance (the CPU included when it is one of them).

    Raises:
        TypeError: for a source that is neither an ``nn.Module`` nor a tensor.
    """
    found: list[torch.device] = []
    for i, source in enumerate(sources):
        if isinstance(source, nn.Module):
            tensors: list[torch.Tensor] = [*source.parameters(), *source.buffers()]
        elif isinstance(source, torch.Tensor):
            tensors = [source]
        else:
            raise TypeError(f"sources[{i}] must be an nn.Module or a torch.Tensor, got "
                            f"{type(source).__name__}")
        for t in tensors:
            if t.device not in found:
                found.append(t.device)
    return found


def _rng_forks(devices: Iterable[torch.device | str]) -> dict[str, list[int]]:
    """Per accelerator type (``"cuda"``, ``"mps"``, ...), the device indices whose random state
    :func:`preserved_rng` saves; the CPU (always saved) and ``meta`` (no state) are left out."""
    forks: dict[str, list[int]] = {}
    for d in devices:
        device = torch.device(d)
        if device.type in ("cpu", "meta"):
            continue
        index = device.index
        if index is None:                 # "cuda" means the current device; MPS has one, 0
            module = torch.get_device_module(device.type)
            index = int(module.current_device()) if hasattr(module, "current_device") else 0
        indices = forks.setdefault(device.type, [])
        if index not in indices:
            indices.append(index)
    return forks


@contextlib.contextmanager
def preserved_rng(devices: Iterable[torch.device | str] = ()) -> Iterator[None]:
    """Run a block and put back the global random state of the CPU and of every accelerator
    device in ``devices`` (e.g. :func:`rng_devices` of a model and its input).

    One rule for every probe: ``torch.random.fork_rng`` over the devices in use, one fork per
    device type. A device's state is saved on entry even when nothing has used that device yet
    (saving it initializes it), so dropout drawn inside the block, on the CPU or on the device,
    leaves no trace outside it.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=[]))       # the CPU
        for kind, indices in _rng_forks(devices).items():
            stack.enter_context(torch.random.fork_rng(devices=indices, device_type=kind))
        yield


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Run a block and put back the model's buffers, train/eval modes and the global RNG state.

    Buffers (e.g. BatchNorm's ``running_mean``, ``running_var``, ``num_batches_tracked``) are
    copied back in place; every submodule gets back its own ``training`` flag; the random state
    of the CPU and of every accelerator device the model's parameters and buffers live on is
    restored (:func:`preserved_rng`), so dropout inside the block draws numbers that the rest of
    the program never notices.
    """
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        with preserved_rng(rng_devices(model)):
            yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, training in modes:
            m.training = training


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The model's weight layers from input to output.

    Uses ``model.weight_layers()`` when the model defines it (as :class:`gradpath.models.DeepMLP`
    does); otherwise every ``nn.Linear`` in registration order.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``.
        ValueError: if it has no ``nn.Linear`` layer (and no ``weight_layers``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
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

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``.
        RuntimeError: if no parameter holds a gradient yet.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        raise RuntimeError("no gradients yet: call loss.backward() first")
    return combined_norm(tensor_norms(grads))


def _hidden_outputs(model: nn.Module, caller: str) -> list[nn.Module]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{caller} needs a torch.nn.Module, got {type(model).__name__}")
    if hasattr(model, "blocks"):
        return list(cast(nn.ModuleList, model.blocks))
    raise ValueError(f"{caller} needs a model with a `blocks` list (e.g. "
                     f"gradpath.models.DeepMLP); {type(model).__name__} has none")


def _check_batch(caller: str, x: torch.Tensor) -> None:
    check_tensor("x", x, min_dim=1)
    if x.shape[0] == 0:
        raise ValueError(f"{caller}: x is an empty batch (shape {tuple(x.shape)}); pass at least "
                         "one example")


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
        block the gradient did not reach (a block the forward pass skipped).

    Raises:
        TypeError: if ``x`` is not a tensor.
        ValueError: for a model without ``blocks``, an empty batch, a loss that is not a scalar
            tensor, or a loss that does not depend on the model's output (no gradient reached
            any block: the norms would all be ``nan``, which is no measurement).
    """
    captured: dict[int, torch.Tensor] = {}
    handles = []

    def keep(index: int) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            def save(grad: torch.Tensor) -> None:
                captured[index] = grad.detach()
            output.register_hook(save)
        return hook

    blocks = _hidden_outputs(model, "backward_signal_norms")
    _check_batch("backward_signal_norms", x)
    with preserved_state(model):
        for i, block in enumerate(blocks):
            handles.append(block.register_forward_hook(keep(i)))
        try:
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
                raise ValueError(f"loss_fn must return a scalar loss tensor, got {shape}; reduce "
                                 "it (e.g. .mean()) before the probe")
            if not loss.requires_grad:
                raise ValueError("the loss does not depend on the model's output (it needs no "
                                 "gradient): loss_fn must compute the loss from the output it is "
                                 "given, outside torch.no_grad()")
            loss.reshape(()).backward()
        finally:
            for h in handles:
                h.remove()
    reached = [i for i in range(len(blocks)) if i in captured]
    if blocks and not reached:
        raise ValueError("the loss does not depend on any block's output: no gradient reached "
                         "the model, so there is nothing to measure (loss_fn must compute the "
                         "loss from the output it is given)")
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

    Returns:
        A share in [0, 1]; ``nan`` if ``pre_activation`` holds a ``nan`` entry (a ``nan`` is
        neither saturated nor not: the forward pass already broke). ``±inf`` entries count as
        saturated wherever the derivative there is 0.

    Raises:
        TypeError: if ``pre_activation`` is not a tensor.
        ValueError: for an unknown activation, a threshold outside (0, 1), or an empty tensor.
    """
    check_fraction("threshold", threshold)
    act = get_activation(activation)
    check_tensor("pre_activation", pre_activation)
    if pre_activation.numel() == 0:
        raise ValueError(f"pre_activation is empty (shape {tuple(pre_activation.shape)}): no "
                         "entry to measure")
    if bool(torch.isnan(pre_activation).any()):
        return math.nan
    d = derivative(activation, pre_activation.detach().float())
    return float((d.abs() < threshold * act.max_derivative).double().mean())


def dead_fraction(output: torch.Tensor) -> float:
    """Share of units (columns) whose output is exactly zero for every example (row).

    Returns:
        A share in [0, 1]; ``nan`` if ``output`` holds a ``nan`` entry (whether a unit that
        outputs ``nan`` is dead cannot be told).

    Raises:
        TypeError: if ``output`` is not a tensor.
        ValueError: unless ``output`` has shape (batch, units) with at least one example and one
            unit (an empty batch says nothing about any unit).
    """
    check_tensor("output", output)
    if output.dim() != 2:
        raise ValueError(f"expected a (batch, units) tensor, got shape {tuple(output.shape)}")
    if output.shape[0] == 0 or output.shape[1] == 0:
        raise ValueError(f"output has shape {tuple(output.shape)}: dead_fraction needs at least "
                         "one example (row) and one unit (column)")
    if bool(torch.isnan(output).any()):
        return math.nan
    return float((output == 0).all(dim=0).double().mean())


@torch.no_grad()
def activation_statistics(model: nn.Module, x: torch.Tensor) -> list[LayerActivations]:
    """Run ``x`` through ``model``; describe the input and output of each block's activation.

    The forward pass runs in the model's current mode (in training mode BatchNorm normalizes with
    the batch's statistics, and dropout drops), but the model is left exactly as found: running
    statistics, ``num_batches_tracked``, mode and the global random state are put back.

    A ``nan`` in a layer's input or output gives that layer ``nan`` fractions (see
    :func:`saturated_fraction` and :func:`dead_fraction`), never a made-up 0%.

    Raises:
        TypeError: if ``x`` is not a tensor.
        ValueError: for a model without ``blocks`` or without ``activation_name``, or an empty
            batch.
    """
    records: list[tuple[torch.Tensor, torch.Tensor]] = []
    handles = []
    blocks = _hidden_outputs(model, "activation_statistics")
    _check_batch("activation_statistics", x)
    name = getattr(model, "activation_name", None)
    if name is None:
        raise ValueError("activation_statistics needs a model that records its activation_name "
                         f"(e.g. gradpath.models.DeepMLP); {type(model).__name__} has none")

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
    return [LayerActivations(z, a, saturated_fraction(name, z), dead_fraction(a))
            for z, a in records]


def first_nonfinite(values: Sequence[float]) -> int | None:
    """Index of the first ``nan`` or ``inf`` in ``values``, or ``None`` if all are finite.

    Raises:
        TypeError: if ``values`` is a string or holds something that is not a number.
    """
    if isinstance(values, (str, bytes)):
        raise TypeError(f"values must be a sequence of numbers, got the string {values!r}")
    for i, v in enumerate(values):
        if isinstance(v, (str, bytes)):
            raise TypeError(f"values[{i}] must be a number, got {v!r}")
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


# ------------------------------------------------------------------ probes by parameter name
# These work on any module, not only on models built from ``nn.Linear`` layers: a transformer's
# ``nn.MultiheadAttention`` keeps its query, key and value weights in one ``in_proj_weight``
# parameter, which no probe that looks for ``nn.Linear`` would see. (Imported here so that this
# section is a pure addition to the module.)
import re  # noqa: E402
from collections.abc import Mapping  # noqa: E402


def gradient_norms_by_name(model: nn.Module, pattern: str | None = None) -> dict[str, float]:
    """``‖∂L/∂θ‖`` for every named parameter ``θ`` of ``model`` that holds a gradient.

    Call after ``loss.backward()``. The norms come from :func:`gradpath.numerics.accurate_norm`
    (accumulated in float64), so a gradient
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
    norms = _norms_by_name({name: p.grad for name, p in model.named_parameters()
                            if p.grad is not None and (regex is None or regex.search(name))})
    if not norms:
        where = "" if pattern is None else f" matching {pattern!r}"
        raise RuntimeError(f"no parameter{where} holds a gradient: call loss.backward() first")
    return norms


def parameter_norms_by_name(model: nn.Module, pattern: str | None = None) -> dict[str, float]:
    """``‖θ‖`` of every named parameter (:func:`gradpath.numerics.accurate_norm`, float64
    accumulation), optionally filtered by ``pattern``.

    With :func:`gradient_norms_by_name` it gives per-parameter ratios such as the update-to-data
    ratio ``lr·‖g‖/‖θ‖``.
    """
    regex = _compile(pattern)
    return _norms_by_name({name: p for name, p in model.named_parameters()
                           if regex is None or regex.search(name)})


def _norms_by_name(tensors: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """``{name: ‖t‖}``, each from :func:`gradpath.numerics.accurate_norm` (float64 accumulation:
    exact to float64 rounding, not only to float32's, for any finite entries; any device)."""
    return {name: float(accurate_norm(t)) for name, t in tensors.items()}


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
        ``{group: norm}`` in order of first appearance, from :func:`combined_norm` (no overflow or
        underflow for finite norms). A group with a non-finite member is non-finite.

    Raises:
        ValueError: if ``key`` is an invalid regular expression or no name falls into a group.
    """
    grouping: Callable[[str], str | None]
    if not isinstance(key, str) and not callable(key):
        raise TypeError(f"key must be a regular expression (a string) or a function of the name, "
                        f"got {key!r} ({type(key).__name__})")
    negative = [name for name, value in norms.items() if float(value) < 0]
    if negative:
        raise ValueError(f"a norm cannot be negative: {negative[0]} = {norms[negative[0]]!r}")
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
    members: dict[str, list[float]] = {}
    for name, value in norms.items():
        group = grouping(name)
        if group is not None:
            members.setdefault(group, []).append(float(value))
    if not members:
        raise ValueError(f"no parameter name fell into a group (key={key!r}); names look like "
                         f"{', '.join(list(norms)[:3])}")
    return {group: combined_norm(values) for group, values in members.items()}


def probe_gradient_norms_by_name(model: nn.Module, loss_fn: Callable[[], torch.Tensor],
                                 pattern: str | None = None) -> dict[str, float]:
    """Run one forward and backward pass and return :func:`gradient_norms_by_name`.

    ``loss_fn`` takes no arguments and returns a scalar loss computed with ``model`` (for
    example ``lambda: criterion(model(x), y)``). The model is left exactly as found: every
    parameter's ``.grad`` (``None`` or a tensor) and every buffer (e.g. batch norm's running
    statistics, which a training-mode forward pass would update), every submodule's train/eval
    mode and the global random state (dropout's draws) are restored afterwards, and the
    parameters themselves are never changed.

    Raises:
        ValueError: if ``loss_fn`` does not return a scalar tensor.
        RuntimeError: as :func:`gradient_norms_by_name`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a function of no arguments returning the loss, got "
                        f"{type(loss_fn).__name__}")
    saved_grads = {name: (None if p.grad is None else p.grad.detach().clone())
                   for name, p in model.named_parameters()}
    try:
        with preserved_state(model):        # buffers, modes and the global RNG (dropout)
            model.zero_grad(set_to_none=True)
            loss = loss_fn()
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise ValueError("loss_fn must return a scalar tensor (a loss computed with "
                                 "model)")
            loss.backward()
            return gradient_norms_by_name(model, pattern)
    finally:
        for name, p in model.named_parameters():
            p.grad = saved_grads[name]


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return check_pattern("pattern", pattern, optional=True)
