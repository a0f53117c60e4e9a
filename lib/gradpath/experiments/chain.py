"""The gradient as a product: a one-unit-wide chain, and what backpropagation must remember.

A chain ``h_0 = x, h_k = f(w_k h_{k-1})`` has, by the chain rule,
``dh_n/dx = ∏_k f'(w_k h_{k-1}) · w_k``: one factor per layer. :func:`scalar_chain` computes the
factors one by one and the gradient with autograd, so the two can be compared.
:func:`saved_tensor_bytes` measures how much memory autograd keeps from the forward pass for the
backward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from gradpath.activations import derivative, get_activation


@dataclass(frozen=True)
class ChainResult:
    """A forward and backward pass through a scalar chain.

    Attributes:
        output: ``h_n``.
        factors: the local factor ``f'(w_k h_{k-1}) · w_k`` of every layer, first layer first.
        autograd_gradient: ``dh_n/dx`` from ``torch.autograd``.
    """

    output: float
    factors: list[float]
    autograd_gradient: float

    @property
    def product_of_factors(self) -> float:
        return float(torch.tensor(self.factors, dtype=torch.float64).prod())


def scalar_chain(x: float, weights: Sequence[float], activation: str = "sigmoid") -> ChainResult:
    """Push ``x`` through ``len(weights)`` one-unit layers and return factors and gradient."""
    if len(weights) < 1:
        raise ValueError("need at least one weight (one layer)")
    act = get_activation(activation)
    x0 = torch.tensor(float(x), dtype=torch.float64, requires_grad=True)
    h = x0
    factors = []
    for w in weights:
        z = w * h
        factors.append(float(derivative(activation, z.detach()) * w))
        h = act(z)
    (grad,) = torch.autograd.grad(h, x0)
    return ChainResult(float(h.detach()), factors, float(grad))


def power_of_factor(factor: float, layers: int) -> float:
    """``factor ** layers``: the gradient scale after ``layers`` identical factors."""
    if layers < 0:
        raise ValueError(f"layers must be >= 0, got {layers}")
    return float(factor) ** layers


def saved_tensor_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of tensors autograd saves during ``model(x)`` for use in the backward pass.

    Counts every tensor handed to autograd's saved-tensor hooks (each distinct storage once), which
    is the memory that training needs on top of inference.
    """
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(seen.values())
