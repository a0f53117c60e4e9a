"""The course's figures: one style for gradient norms by layer, norm heatmaps and histograms.

Figures use an opaque white background and the Okabe–Ito colour-blind-safe palette, so they read
the same in the book's light and dark modes. Non-finite values are never dropped silently: line
plots mark them with a red ✕ at the top edge and heatmaps paint them in a separate colour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
NONFINITE_COLOR = "#D00000"

COURSE_STYLE: dict[str, Any] = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.dpi": 100,
    "figure.figsize": (7.0, 3.6),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=PALETTE),
    "font.size": 10,
    "legend.frameon": False,
}


def use_course_style() -> None:
    """Apply the course's matplotlib style to every figure made afterwards."""
    plt.style.use(COURSE_STYLE)


def _axes(ax: Axes | None, figsize: tuple[float, float] | None = None) -> Axes:
    if ax is not None:
        return ax
    use_course_style()
    _, new_ax = plt.subplots(figsize=figsize)
    return new_ax


def _mark_nonfinite(ax: Axes, xs: Sequence[float], ys: Sequence[float]) -> int:
    bad = [x for x, y in zip(xs, ys, strict=True) if not math.isfinite(y)]
    if bad:
        ax.scatter(bad, [1.0] * len(bad), transform=ax.get_xaxis_transform(), marker="x",
                   color=NONFINITE_COLOR, clip_on=False, zorder=5, s=40)
    return len(bad)


def plot_gradient_norms_by_layer(series: Mapping[str, Sequence[float]], ax: Axes | None = None,
                                 title: str = "Gradient norm by layer",
                                 ylabel: str = r"$\|\partial L / \partial W_\ell\|$") -> Axes:
    """One line per series: layer index (1 = input side) against norm, on a log scale."""
    if not series:
        raise ValueError("series is empty: pass {label: norms by layer}")
    ax = _axes(ax)
    marked = 0
    for label, norms in series.items():
        ys = [float(v) for v in norms]
        xs = list(range(1, len(ys) + 1))
        masked = [y if math.isfinite(y) and y > 0 else np.nan for y in ys]
        ax.plot(xs, masked, marker="o", markersize=3, label=label)
        marked += _mark_nonfinite(ax, xs, ys)
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = nearest the input)")
    ax.set_ylabel(ylabel)
    ax.set_title(title + (" (✕ = inf/nan)" if marked else ""))
    ax.legend(fontsize=8)
    return ax


def plot_training_curves(series: Mapping[str, Sequence[float]], ax: Axes | None = None,
                         title: str = "Loss during training", ylabel: str = "loss",
                         log: bool = True) -> Axes:
    """One line per run, step on the x axis; a red ✕ marks steps where the value was inf/nan."""
    if not series:
        raise ValueError("series is empty: pass {label: values by step}")
    ax = _axes(ax)
    for label, values in series.items():
        ys = [float(v) for v in values]
        xs = list(range(len(ys)))
        ax.plot(xs, [y if math.isfinite(y) else np.nan for y in ys], label=label)
        _mark_nonfinite(ax, xs, ys)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def plot_norm_heatmap(matrix: np.ndarray | Sequence[Sequence[float]], ax: Axes | None = None,
                      title: str = "Gradient norm over training",
                      label: str = r"$\|\partial L / \partial W_\ell\|$") -> Axes:
    """A (steps × layers) matrix as a heatmap: steps across, layers up, log colour scale."""
    data = np.asarray(matrix, dtype=float)
    if data.ndim != 2 or data.size == 0:
        raise ValueError(f"expected a non-empty (steps, layers) matrix, got shape {data.shape}")
    ax = _axes(ax)
    finite = data[np.isfinite(data) & (data > 0)]
    cmap = mpl.colormaps["viridis"].with_extremes(bad=NONFINITE_COLOR)
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if finite.size else None
    shown = np.ma.masked_invalid(np.where(data > 0, data, np.nan))
    image = ax.imshow(shown.T, aspect="auto", origin="lower", cmap=cmap, norm=norm,
                      interpolation="nearest",
                      extent=(-0.5, data.shape[0] - 0.5, 0.5, data.shape[1] + 0.5))
    ax.figure.colorbar(image, ax=ax, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("layer")
    ax.grid(False)
    ax.set_title(title)
    return ax


def plot_activation_histograms(layers: Mapping[str, np.ndarray | Sequence[float]],
                               title: str = "Activations by layer", bins: int = 50,
                               xlabel: str = "value") -> Figure:
    """Small multiples: one histogram per layer, e.g. ``{"layer 1": values, ...}``."""
    if not layers:
        raise ValueError("layers is empty: pass {layer label: values}")
    use_course_style()
    n = len(layers)
    fig, axes = plt.subplots(1, n, figsize=(min(2.2 * n, 14), 2.6), sharey=True, squeeze=False)
    for ax, (label, values) in zip(axes[0], layers.items(), strict=True):
        v = np.asarray(values, dtype=float).ravel()
        ax.hist(v[np.isfinite(v)], bins=bins, color=PALETTE[0])
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig
