"""The course's figures: one style for gradient norms by layer, norm heatmaps and histograms.

Figures use an opaque white background and the Okabe–Ito colour-blind-safe palette, so they read
the same in the book's light and dark modes. Non-finite values are never dropped silently: line
plots mark them with a ✕ at the top edge (in the run's colour, explained in the legend) and
heatmaps paint them in a separate colour.

Every figure has a text description for readers who cannot see it: :func:`describe` sets one,
and otherwise :func:`figure_description` writes one from the titles, axis labels and legend.
:func:`use_course_style` makes a notebook store that description in each PNG it shows (the PNG's
``Description`` text chunk); the book's build turns it into the image's alt text.
"""

from __future__ import annotations

import math
import re
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
    """Apply the course's matplotlib style to every figure made afterwards.

    In IPython (a notebook) it also makes every figure shown as a PNG carry its text description
    (:func:`figure_description`) in the PNG's ``Description`` text chunk.
    """
    plt.style.use(COURSE_STYLE)
    _store_descriptions_in_pngs()


DESCRIPTION_ATTR = "_gradpath_description"
_TEX_WORDS = {
    "partial": "∂", "ell": "ℓ", "sigma": "σ", "mu": "μ", "rho": "ρ", "alpha": "α",
    "beta": "β", "gamma": "γ", "eta": "η", "lambda": "λ", "theta": "θ", "tau": "τ",
    "epsilon": "ε", "varepsilon": "ε", "sum": "Σ", "prod": "Π", "cdot": "·", "times": "×",
    "le": "≤", "ge": "≥", "approx": "≈", "infty": "∞", "nabla": "∇", "sqrt": "√", "|": "‖",
    "dots": "…", "ldots": "…", "cdots": "⋯", "to": "→",
}


def describe(target: Figure | Axes, text: str) -> None:
    """Set the text description (alt text) of ``target``'s figure; it replaces the automatic one.

    Write what a reader should see: "Gradient norm falls by a factor of about 4 per layer in the
    sigmoid network and stays flat with ReLU."

    Raises:
        ValueError: if ``text`` is empty.
    """
    if not str(text).strip():
        raise ValueError("describe: text is empty; say what the figure shows")
    fig = target.figure if isinstance(target, Axes) else target
    setattr(fig, DESCRIPTION_ATTR, str(text).strip())


def tex_to_text(label: str) -> str:
    """Mathtext or TeX (``$...$``) as plain text, for descriptions.

    ``$\\|\\partial L\\|$`` becomes ``‖∂L‖``; unknown commands lose their backslash."""
    def word(match: Any) -> str:
        return _TEX_WORDS.get(match.group(1), match.group(1))

    text = label.replace("$", "")
    text = re.sub(r"\\[,;:! ]", " ", text)  # TeX spacing commands
    text = re.sub(r"\\(?:mathrm|mathbf|text|operatorname)\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\\([A-Za-z]+|\|)", word, text)
    text = re.sub(r"[{}]", "", text).replace("\\", "")
    return re.sub(r"\s+", " ", text).strip()


def figure_description(fig: Figure) -> str:
    """The figure's text description: the one set with :func:`describe`, else one written from
    its titles, axis labels (with log scales) and legend entries, panel by panel."""
    explicit = getattr(fig, DESCRIPTION_ATTR, None)
    if explicit:
        return str(explicit)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.get_visible()]
    parts = []
    suptitle_artist = getattr(fig, "_suptitle", None)
    suptitle = suptitle_artist.get_text() if suptitle_artist is not None else ""
    if suptitle:
        parts.append(tex_to_text(suptitle) + ".")
    for i, ax in enumerate(panels, start=1):
        bits = []
        title = tex_to_text(ax.get_title())
        if title:
            bits.append(title)
        y, x = tex_to_text(ax.get_ylabel()), tex_to_text(ax.get_xlabel())
        if y and x:
            log = " (log scale)" if ax.get_yscale() == "log" and "log" not in y else ""
            bits.append(f"{y}{log} against {x}")
        elif y or x:
            bits.append(y or x)
        legend = ax.get_legend()
        if legend is not None:
            names = [tex_to_text(t.get_text()) for t in legend.get_texts() if t.get_text()]
            if names:
                bits.append("series: " + ", ".join(names))
        if ax.images:
            bits.append("shown as a colour map")
        if bits:
            prefix = f"Panel {i}: " if len(panels) > 1 else ""
            parts.append(prefix + "; ".join(bits) + ".")
    return " ".join(parts) or "A figure."


_PNG_HOOK_INSTALLED: list[bool] = []


def _store_descriptions_in_pngs() -> None:
    """In IPython, show figures as PNGs whose ``Description`` chunk holds the description."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:  # plain Python: nothing to do
        return
    shell = get_ipython()
    if shell is not None and "inline" in str(mpl.get_backend()):
        # Importing the inline backend registers its own figure formatters (once); do it now, so
        # that the one registered below is not replaced when the first figure is drawn.
        try:
            import matplotlib_inline.backend_inline  # noqa: F401
        except ImportError:  # pragma: no cover - IPython without matplotlib-inline
            pass
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    formatter = shell.display_formatter.formatters.get("image/png")
    if formatter is None:
        return

    def png(fig: Figure) -> bytes | None:
        if not fig.axes and not fig.lines:  # an empty figure displays nothing, as in IPython
            return None
        description = figure_description(fig)
        return print_figure(fig, "png", bbox_inches="tight", base64=False,
                            metadata={"Description": description})

    formatter.for_type(Figure, png)
    _PNG_HOOK_INSTALLED.append(True)


def _axes(ax: Axes | None, figsize: tuple[float, float] | None = None) -> Axes:
    if ax is not None:
        return ax
    use_course_style()
    _, new_ax = plt.subplots(figsize=figsize)
    return new_ax


NONFINITE_LABEL = "✕ = inf/NaN (drawn at the top edge)"


def _mark_nonfinite(ax: Axes, xs: Sequence[float], ys: Sequence[float],
                    color: Any = NONFINITE_COLOR) -> int:
    bad = [x for x, y in zip(xs, ys, strict=True) if not math.isfinite(y)]
    if bad:
        ax.scatter(bad, [1.0] * len(bad), transform=ax.get_xaxis_transform(), marker="x",
                   color=color, clip_on=False, zorder=5, s=40, linewidths=1.5)
    return len(bad)


def _first_nonfinite(ys: Sequence[float]) -> int | None:
    return next((i for i, y in enumerate(ys) if not math.isfinite(y)), None)


def _legend_with_nonfinite_key(ax: Axes, marked: int) -> None:
    """A legend whose extra entry explains the ✕ marks (a key only; nothing is added to ``ax``)."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    if marked:
        handles.append(Line2D([], [], color="#333333", marker="x", linestyle="none",
                              markersize=6, markeredgewidth=1.5))
        labels.append(NONFINITE_LABEL)
    ax.legend(handles, labels, fontsize=8)


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
        (line,) = ax.plot(xs, masked, marker="o", markersize=3, label=label)
        marked += _mark_nonfinite(ax, xs, ys, color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = nearest the input)")
    ax.set_ylabel(ylabel)
    ax.set_title(title + (" (✕ = inf/nan, at the top edge)" if marked else ""))
    ax.legend(fontsize=8)
    return ax


def plot_training_curves(series: Mapping[str, Sequence[float]], ax: Axes | None = None,
                         title: str = "Loss during training", ylabel: str = "loss",
                         log: bool = True) -> Axes:
    """One line per run, step on the x axis; a ✕ at the top edge, in the run's colour, marks each
    step where its value was inf/NaN, and the legend says so. A run whose values turn non-finite
    is labelled with the first such step; finite points with no finite neighbour get a dot, so
    no run is left in the legend without a mark on the plot."""
    if not series:
        raise ValueError("series is empty: pass {label: values by step}")
    ax = _axes(ax)
    marked = 0
    for label, values in series.items():
        ys = [float(v) for v in values]
        xs = list(range(len(ys)))
        finite = [y if math.isfinite(y) else np.nan for y in ys]
        first_bad = _first_nonfinite(ys)
        shown = label if first_bad is None else f"{label} (inf/NaN from step {first_bad})"
        isolated = [math.isfinite(y) and not any(
            0 <= j < len(ys) and math.isfinite(ys[j]) for j in (i - 1, i + 1))
            for i, y in enumerate(ys)]
        (line,) = ax.plot(xs, finite, label=shown,
                          marker="o" if any(isolated) else None,
                          markevery=[i for i, f in enumerate(isolated) if f] or None,
                          markersize=4)
        marked += _mark_nonfinite(ax, xs, ys, color=line.get_color())
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend_with_nonfinite_key(ax, marked)
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
