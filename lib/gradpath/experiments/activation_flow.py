"""How the choice of activation function shapes the gradient's trip backward.

- :func:`summarize_derivatives` measures, with autograd, what each activation's derivative does:
  its peak, where the peak is, its value at chosen points, and how far out it stays useful.
- :func:`plot_activations_and_derivatives` draws every activation next to its derivative.
- :func:`gradient_norms_at_gain` and :func:`gain_sweep` build deep networks whose weights have
  standard deviation ``gain / sqrt(fan_in)`` and record the gradient norm of every layer, so
  saturating and non-saturating activations can be compared under the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from gradpath.activations import derivative, get_activation, max_derivative_on_grid
from gradpath.data import Dataset
from gradpath.init import initialize_
from gradpath.models import DeepMLP
from gradpath.plots import PALETTE, use_course_style
from gradpath.probes import gradient_norms_by_layer
from gradpath.sweeps import geometric_mean
from gradpath.training import loss_function

GRID = (-10.0, 10.0)


@dataclass(frozen=True)
class DerivativeSummary:
    """What one activation's derivative looks like, measured on a grid with autograd.

    Attributes:
        name: the activation.
        peak: the largest value of ``f'(x)``.
        peak_at: where it is reached.
        values: ``f'(x)`` at the requested points, ``{x: f'(x)}``.
        left_tail: ``f'(-10)``: how much gradient passes far on the negative side.
        right_tail: ``f'(10)``: the same on the positive side.
        saturates: ``"both sides"``, ``"negative side"``, ``"positive side"`` or ``"none"``:
            where the derivative falls below 1% of its peak at ``|x| = 10``.
    """

    name: str
    peak: float
    peak_at: float
    values: dict[float, float]
    left_tail: float
    right_tail: float
    saturates: str


def summarize_derivatives(names: Sequence[str],
                          points: Sequence[float] = (-5.0, -2.0, 0.0, 2.0, 5.0),
                          ) -> list[DerivativeSummary]:
    """One :class:`DerivativeSummary` per activation name (validated against the registry)."""
    if not names:
        raise ValueError("names is empty: pass activation names, e.g. ['sigmoid', 'relu']")
    out = []
    for name in names:
        get_activation(name)
        peak, peak_at = max_derivative_on_grid(name, *GRID)
        xs = torch.tensor([float(p) for p in points] + list(GRID), dtype=torch.float64)
        d = [float(v) for v in derivative(name, xs)]
        values = dict(zip([float(p) for p in points], d[: len(points)], strict=True))
        left, right = d[-2], d[-1]
        low_left, low_right = abs(left) < 0.01 * peak, abs(right) < 0.01 * peak
        sides = {(True, True): "both sides", (True, False): "negative side",
                 (False, True): "positive side", (False, False): "none"}[(low_left, low_right)]
        out.append(DerivativeSummary(name, peak, peak_at, values, left, right, sides))
    return out


def summary_markdown(summaries: Sequence[DerivativeSummary]) -> str:
    """The summaries as a Markdown table (one row per activation)."""
    if not summaries:
        raise ValueError("summaries is empty")
    points = list(summaries[0].values)
    head = ["activation", "max f'(x)", "at x"] + [f"f'({p:g})" for p in points] + ["saturates"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        cells = [s.name, f"{s.peak:.4f}", f"{s.peak_at:.2f}"]
        cells += [f"{s.values[p]:.4f}" for p in points] + [s.saturates]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def useful_range(name: str, level: float, low: float = -10.0, high: float = 10.0,
                 points: int = 200_001) -> tuple[float, float]:
    """The interval outside which ``|f'(x)| < level`` everywhere on ``[low, high]``.

    Returns ``(a, b)``: the smallest and largest grid points where ``|f'(x)| >= level``
    (``(nan, nan)`` if the derivative never reaches ``level``). For tanh and ``level=0.1`` this
    is about ``(-1.82, 1.82)``: beyond ``|x| ≈ 1.82`` less than a tenth of the gradient passes.
    """
    if not level > 0:
        raise ValueError(f"level must be positive, got {level!r}")
    if not high > low or points < 2:
        raise ValueError("need high > low and at least 2 points")
    x = torch.linspace(low, high, points, dtype=torch.float64)
    d = derivative(name, x).abs()
    inside = x[d >= level]
    if inside.numel() == 0:
        return math.nan, math.nan
    return float(inside.min()), float(inside.max())


def plot_activations_and_derivatives(names: Sequence[str], low: float = -5.0,
                                     high: float = 5.0) -> Figure:
    """Two panels: the activations ``f(x)`` on the left, their autograd derivatives on the right."""
    if not names:
        raise ValueError("names is empty")
    use_course_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = torch.linspace(low, high, 1001, dtype=torch.float64)
    for i, name in enumerate(names):
        act = get_activation(name)
        with torch.no_grad():
            y = act(x)
        color = PALETTE[i % len(PALETTE)]
        left.plot(x, y, color=color, label=name)
        right.plot(x, derivative(name, x), color=color, label=name)
    left.set_title("activation $f(x)$")
    right.set_title("derivative $f'(x)$ (autograd)")
    for ax in (left, right):
        ax.set_xlabel("x")
        ax.axhline(0, color="gray", lw=0.5)
    left.set_ylim(-1.5, 3)
    right.set_ylim(-0.2, 1.25)
    right.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def gradient_norms_at_gain(data: Dataset, *, activation: str, gain: float, depth: int = 20,
                           width: int = 64, seed: int = 0,
                           device: torch.device | str | None = None) -> list[float]:
    """Per-layer ``‖∂L/∂W_l‖`` of a fresh network whose weights are ``N(0, gain² / fan_in)``.

    ``gain = sqrt(2)`` is He initialization, ``gain = 1`` LeCun's; biases are zero. One batch
    (all of ``data``) and the task's loss give the gradient.
    """
    if not gain > 0:
        raise ValueError(f"gain must be positive, got {gain!r}")
    generator = torch.Generator().manual_seed(seed)
    model = DeepMLP(data.features, data.outputs, width=width, depth=depth, activation=activation,
                    init="he_normal", generator=generator)
    initialize_(model, "he_normal", gain=gain, generator=generator)
    if device is not None:
        model, data = model.to(device), data.to(device)
    loss_function(data)(model(data.x), data.y).backward()
    return gradient_norms_by_layer(model)


def gain_sweep(data: Dataset, activations: Sequence[str], gains: Sequence[float], *,
               seeds: int = 1, **kwargs: object) -> dict[float, dict[str, list[float]]]:
    """``{gain: {activation: per-layer gradient norms}}``, each a geometric mean over ``seeds``."""
    if not activations or not gains:
        raise ValueError("need at least one activation and one gain")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    out: dict[float, dict[str, list[float]]] = {}
    for g in gains:
        out[g] = {}
        for a in activations:
            runs = [gradient_norms_at_gain(data, activation=a, gain=g, seed=s,
                                           **kwargs)  # type: ignore[arg-type]
                    for s in range(seeds)]
            out[g][a] = [geometric_mean(layer) for layer in zip(*runs, strict=True)]
    return out
