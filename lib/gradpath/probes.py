"""Probes: what the gradient and the activations look like, layer by layer.

- :func:`gradient_norms_by_layer` reads ``‖∂L/∂W_l‖`` from each weight layer after ``backward``.
- :func:`backward_signal_norms` measures ``‖∂L/∂a_l‖``, the signal that reaches each layer's
  output on its way back, by hooking the layer outputs.
- :func:`activation_statistics` records pre-activations and outputs of every hidden layer and
  reports the saturated fraction (sigmoid/tanh) and the dead fraction (ReLU).
- :func:`global_gradient_norm` and :func:`first_nonfinite` report explosions as numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from gradpath.activations import derivative, get_activation

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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

    Call after ``loss.backward()``. Non-finite gradients are reported as ``inf`` or ``nan``,
    never raised.

    Raises:
        RuntimeError: if no gradient has been computed yet.
    """
    norms = []
    for layer in weight_layers(model):
        grad = cast(torch.Tensor, layer.weight).grad
        if grad is None:
            raise RuntimeError("no gradient on the weights yet: call loss.backward() first")
        norms.append(float(grad.detach().norm()))
    return norms


def global_gradient_norm(model: nn.Module) -> float:
    """The L2 norm of all parameter gradients together (what ``clip_grad_norm_`` measures)."""
    grads = [p.grad.detach().flatten() for p in model.parameters() if p.grad is not None]
    if not grads:
        raise RuntimeError("no gradients yet: call loss.backward() first")
    return float(torch.cat(grads).norm())


def _hidden_outputs(model: nn.Module) -> list[nn.Module]:
    if hasattr(model, "blocks"):
        return list(cast(nn.ModuleList, model.blocks))
    raise ValueError("backward_signal_norms needs a model with a `blocks` list "
                     "(e.g. gradpath.models.DeepMLP)")


def backward_signal_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          loss_fn: LossFn) -> list[float]:
    """``‖∂L/∂a_l‖`` for the output ``a_l`` of every hidden block, input side first.

    Runs one forward and backward pass (it leaves the parameter gradients in place), capturing
    the gradient that arrives at each block's output through tensor hooks.
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
    for i, block in enumerate(blocks):
        handles.append(block.register_forward_hook(keep(i)))
    try:
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
    finally:
        for h in handles:
            h.remove()
    return [float(captured[i].norm()) if i in captured else math.nan for i in range(len(blocks))]


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
        return float(self.output.mean())

    @property
    def std(self) -> float:
        return float(self.output.std())


def saturated_fraction(activation: str, pre_activation: torch.Tensor,
                       threshold: float = 0.01) -> float:
    """Share of entries whose derivative ``f'(z)`` is below ``threshold × max f'``.

    For sigmoid and tanh this is saturation (|z| large); for ReLU it counts inputs below zero.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    act = get_activation(activation)
    d = derivative(activation, pre_activation.detach().float())
    return float((d.abs() < threshold * act.max_derivative).float().mean())


def dead_fraction(output: torch.Tensor) -> float:
    """Share of units (columns) whose output is exactly zero for every example (row)."""
    if output.dim() != 2:
        raise ValueError(f"expected a (batch, units) tensor, got shape {tuple(output.shape)}")
    return float((output == 0).all(dim=0).float().mean())


@torch.no_grad()
def activation_statistics(model: nn.Module, x: torch.Tensor) -> list[LayerActivations]:
    """Run ``x`` through ``model``; describe the input and output of each block's activation."""
    records: list[tuple[torch.Tensor, torch.Tensor]] = []
    handles = []
    blocks = _hidden_outputs(model)

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        records.append((inputs[0].detach().cpu(), output.detach().cpu()))

    for block in blocks:
        handles.append(cast(nn.Module, block.activation).register_forward_hook(hook))
    try:
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
