"""The activation functions of the course, and their derivatives computed with autograd.

Every activation is looked up by name in :data:`ACTIVATIONS`; an unknown name raises a
``ValueError`` that lists the valid ones. Each entry records the properties that matter for
gradient flow: the largest value its derivative can take, whether it saturates (its derivative
goes to zero for large inputs), and which initialization family suits it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Saturation = Literal["both sides", "negative side", "none"]


@dataclass(frozen=True)
class Activation:
    """An activation function and the facts about it that matter for gradients.

    Attributes:
        name: registry key, e.g. ``"sigmoid"``.
        make: builds a fresh ``torch.nn`` module.
        max_derivative: the supremum of ``|f'(x)|`` over all real ``x``.
        saturates: where the derivative tends to zero: ``"both sides"`` (sigmoid, tanh),
            ``"negative side"`` (ReLU, ELU, GELU, SiLU) or ``"none"`` (identity, leaky ReLU).
        recommended_init: ``"xavier"`` or ``"he"``: the initialization family that keeps the
            signal's variance for this activation.
        gain_name: the name ``torch.nn.init.calculate_gain`` knows it by (``"linear"`` when
            PyTorch has no specific gain).
    """

    name: str
    make: Callable[[], nn.Module]
    max_derivative: float
    saturates: Saturation
    recommended_init: Literal["xavier", "he"]
    gain_name: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.make()(x)


LEAKY_RELU_SLOPE = 0.01  # PyTorch's default negative_slope for nn.LeakyReLU

ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation("identity", nn.Identity, 1.0, "none", "xavier", "linear"),
    "sigmoid": Activation("sigmoid", nn.Sigmoid, 0.25, "both sides", "xavier", "sigmoid"),
    "tanh": Activation("tanh", nn.Tanh, 1.0, "both sides", "xavier", "tanh"),
    "relu": Activation("relu", nn.ReLU, 1.0, "negative side", "he", "relu"),
    "leaky_relu": Activation(
        "leaky_relu",
        lambda: nn.LeakyReLU(LEAKY_RELU_SLOPE),
        1.0,
        "none",
        "he",
        "leaky_relu",
    ),
    "elu": Activation("elu", nn.ELU, 1.0, "negative side", "he", "relu"),
    # GELU's and SiLU's derivatives overshoot 1 slightly just right of zero.
    "gelu": Activation("gelu", nn.GELU, 1.1289, "negative side", "he", "relu"),
    "silu": Activation("silu", nn.SiLU, 1.0998, "negative side", "he", "relu"),
}


def get_activation(name: str) -> Activation:
    """Look an activation up by name.

    Raises:
        ValueError: if ``name`` is not in :data:`ACTIVATIONS`; the message lists the valid names.
    """
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; valid choices are {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[name]


def derivative(name: str, x: torch.Tensor) -> torch.Tensor:
    """Return ``f'(x)`` for the named activation, computed elementwise with autograd.

    No formula is hard-coded: the value comes from ``torch.autograd.grad`` of the activation
    itself, so it is what backpropagation really multiplies by.
    """
    activation = get_activation(name)
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"x must be a tensor or numbers, got {type(x).__name__}") from None
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    # enable_grad: callers such as probes.activation_statistics run under torch.no_grad().
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)  # keeps the caller's dtype and device
        (grad,) = torch.autograd.grad(activation(x).sum(), x)
    return grad.detach()


def max_derivative_on_grid(name: str, low: float = -10.0, high: float = 10.0,
                           points: int = 200_001) -> tuple[float, float]:
    """Search a grid for the largest derivative; return ``(max f'(x), argmax x)``.

    Raises:
        ValueError: unless ``low`` and ``high`` are finite with ``high > low`` and ``points`` is
            an integer >= 2 (a bool is not).
    """
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float))
            and math.isfinite(low) and math.isfinite(high) and high > low):
        raise ValueError(f"need finite low < high, got low={low!r}, high={high!r}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(f"points must be an integer >= 2, got {points!r}")
    x = torch.linspace(low, high, points, dtype=torch.float64)
    d = derivative(name, x)
    i = int(torch.argmax(d))
    return float(d[i]), float(x[i])
