"""Sweeps: the same measurement repeated over depths, activations or initializations.

:func:`gradient_profile` builds one freshly initialized :class:`~gradpath.models.DeepMLP`, runs
one batch through it and returns ``‖∂L/∂W_l‖`` for every layer. The sweeps call it over a grid and
average over seeds, so chapters can show how depth and design choices shape the gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gradpath._checks import check_device, check_int, check_positive_int
from gradpath.data import Dataset
from gradpath.device import pick_device
from gradpath.models import DeepMLP
from gradpath.probes import gradient_norms_by_layer
from gradpath.progress import progress
from gradpath.training import loss_function


def gradient_profile(data: Dataset, *, depth: int, width: int = 64, activation: str = "sigmoid",
                     init: str = "pytorch_default", init_scale: float | None = None,
                     norm: str | None = None, residual: bool = False, seed: int = 0,
                     device: torch.device | None = None) -> list[float]:
    """Per-layer weight-gradient norms of a fresh network on one batch (input layer first).

    Raises:
        TypeError, ValueError: for a ``data`` that is not a :class:`~gradpath.data.Dataset`, an
            empty one, a negative or non-integer seed, an unknown device, or any argument
            :class:`~gradpath.models.DeepMLP` refuses.
    """
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a gradpath.data.Dataset, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("data has no examples: there is no batch to take the gradient on")
    check_int("seed", seed, minimum=0)
    device = check_device("device", device) if device is not None else pick_device()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DeepMLP(data.features, data.outputs, width=width, depth=depth, activation=activation,
                    init=init, init_scale=init_scale, norm=norm, residual=residual,
                    generator=generator).to(device)
    batch = data.to(device)
    loss_function(batch)(model(batch.x), batch.y).backward()
    return gradient_norms_by_layer(model)


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean, the right average for quantities that multiply.

    Returns ``0.0`` if any value is exactly zero (a gradient that underflowed), and ``nan`` if any
    value is negative or not finite.

    Raises:
        TypeError: if ``values`` is a string or holds something that is not a number.
    """
    if isinstance(values, (str, bytes)) or any(isinstance(v, (str, bytes)) for v in values):
        raise TypeError(f"values must be a sequence of numbers, got {values!r}")
    v = np.asarray(values, dtype=float)
    if v.size == 0 or np.any(~np.isfinite(v)) or np.any(v < 0):
        return float("nan")
    if np.any(v == 0):
        return 0.0
    return float(np.exp(np.log(v).mean()))


def profile_over_seeds(data: Dataset, seeds: int, **kwargs: object) -> list[float]:
    """:func:`gradient_profile` averaged (geometric mean) over ``seeds`` initializations.

    Raises:
        TypeError, ValueError: unless ``seeds`` is a positive integer; as
            :func:`gradient_profile`.
    """
    check_positive_int("seeds", seeds)
    runs = [gradient_profile(data, seed=s, **kwargs) for s in range(seeds)]  # type: ignore[arg-type]
    return [geometric_mean(layer) for layer in zip(*runs, strict=True)]


def depth_sweep(data: Dataset, depths: Sequence[int], activations: Sequence[str], *,
                seeds: int = 1, **kwargs: object) -> dict[str, dict[int, list[float]]]:
    """``{activation: {depth: per-layer gradient norms}}`` for every pair of the grid."""
    if isinstance(depths, (str, bytes)) or isinstance(activations, str):
        raise TypeError("depths must be a sequence of integers and activations a sequence of "
                        f"names, got {depths!r} and {activations!r}")
    if not depths or not activations:
        raise ValueError("need at least one depth and one activation")
    grid = [(a, d) for a in activations for d in depths]
    result: dict[str, dict[int, list[float]]] = {a: {} for a in activations}
    for activation, depth in progress(grid, "depth sweep"):
        result[activation][depth] = profile_over_seeds(
            data, seeds, depth=depth, activation=activation, **kwargs)
    return result
