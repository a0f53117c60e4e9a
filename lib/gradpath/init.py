"""Weight-initialization schemes, applied to every ``nn.Linear`` in a model.

The schemes are the ones the course compares: tiny or huge uniform weights, PyTorch's default,
Xavier/Glorot, He/Kaiming and orthogonal. Biases start at zero except under
``"pytorch_default"``, which keeps PyTorch's own bias initialization.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gradpath.activations import get_activation

INITIALIZATIONS = (
    "pytorch_default",
    "uniform",
    "normal",
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
    "orthogonal",
)


def xavier_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """Glorot & Bengio (2010): ``Var(W) = 2 / (fan_in + fan_out)``, times ``gain**2``."""
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def xavier_bound(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """The uniform bound with Xavier's variance: ``gain * sqrt(6 / (fan_in + fan_out))``."""
    return gain * math.sqrt(6.0 / (fan_in + fan_out))


def he_std(fan_in: int, gain: float = math.sqrt(2.0)) -> float:
    """He et al. (2015): ``std = gain / sqrt(fan_in)``, with ``gain = sqrt(2)`` for ReLU."""
    return gain / math.sqrt(fan_in)


def initialize_(model: nn.Module, scheme: str, *, scale: float | None = None,
                activation: str = "relu", generator: torch.Generator | None = None,
                gain: float | None = None) -> nn.Module:
    """Initialize every ``nn.Linear`` weight in ``model`` in place, and return the model.

    Args:
        scheme: one of :data:`INITIALIZATIONS`.
        scale: for ``"uniform"`` the bound ``a`` of U(-a, a); for ``"normal"`` the standard
            deviation. Required for those two, ignored by the others.
        activation: the activation that follows each layer; sets the gain of the Xavier,
            He and orthogonal schemes the way ``torch.nn.init.calculate_gain`` does.
        generator: an optional ``torch.Generator`` for reproducible draws.
        gain: if given, use this gain for the Xavier, He and orthogonal schemes instead of the
            one derived from ``activation`` (e.g. ``gain=1.0`` is Glorot & Bengio's original
            rule whatever the activation).

    Raises:
        ValueError: for an unknown scheme or activation, a missing/non-positive ``scale``, or a
            non-positive ``gain``.
    """
    if scheme not in INITIALIZATIONS:
        raise ValueError(
            f"unknown initialization {scheme!r}; valid choices are {', '.join(INITIALIZATIONS)}"
        )
    if scheme in ("uniform", "normal") and (scale is None or not scale > 0):
        raise ValueError(f"initialization {scheme!r} needs a positive scale, got {scale!r}")
    if gain is not None and not (isinstance(gain, (int, float)) and gain > 0):
        raise ValueError(f"gain must be a positive number, got {gain!r}")
    act = get_activation(activation)
    param = 0.01 if act.gain_name == "leaky_relu" else None
    activation_gain = nn.init.calculate_gain(act.gain_name, param)  # type: ignore[arg-type]
    # "He initialization" means the ReLU-family gain whatever follows the layer, as in
    # torch.nn.init.kaiming_normal_(nonlinearity="relu"); leaky ReLU uses its own slope.
    he_gain = activation_gain if act.gain_name == "leaky_relu" else math.sqrt(2.0)
    if gain is not None:
        activation_gain = he_gain = float(gain)
    gain = activation_gain
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        if scheme == "pytorch_default":
            module.reset_parameters()
            continue
        w = module.weight
        fan_out, fan_in = w.shape
        with torch.no_grad():
            if scheme == "uniform":
                w.uniform_(-float(scale), float(scale), generator=generator)  # type: ignore[arg-type]
            elif scheme == "normal":
                w.normal_(0.0, float(scale), generator=generator)  # type: ignore[arg-type]
            elif scheme == "xavier_uniform":
                b = xavier_bound(fan_in, fan_out, gain)
                w.uniform_(-b, b, generator=generator)
            elif scheme == "xavier_normal":
                w.normal_(0.0, xavier_std(fan_in, fan_out, gain), generator=generator)
            elif scheme == "he_uniform":
                b = math.sqrt(3.0) * he_std(fan_in, he_gain)
                w.uniform_(-b, b, generator=generator)
            elif scheme == "he_normal":
                w.normal_(0.0, he_std(fan_in, he_gain), generator=generator)
            elif scheme == "orthogonal":
                nn.init.orthogonal_(w, gain=gain, generator=generator)
            if module.bias is not None:
                module.bias.zero_()
    return model
