"""Gradient clipping, written out: by global norm and by value.

Clipping by global norm (Pascanu, Mikolov & Bengio 2013) rescales *all* gradients together,

``g ← g · threshold / ‖g‖``  when  ``‖g‖ > threshold``,

so the update keeps its direction and only its length is capped. Clipping by value clamps every
entry to ``[-c, c]`` on its own, which can turn the direction. This module has

(chapter 4 writes the global-norm rule out in five lines and checks it against
``torch.nn.utils.clip_grad_norm_``; training uses torch's own clipping functions)

- :func:`clip_by_norm` / :func:`clip_by_value` for a single vector, and :func:`cosine`, to see
  what each rule does to a direction;
- :func:`clipped_fraction` and :func:`suggest_threshold`, to read a recorded gradient-norm
  history: how often clipping acted, and what threshold the history suggests;
- :func:`threshold_sweep`, the same run trained with several thresholds;
- :func:`plot_clipping`, the norm before and after clipping, step by step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from torch import nn

from gradpath.data import Dataset
from gradpath.numerics import tensor_norm
from gradpath.plots import NONFINITE_COLOR, plot_training_curves
from gradpath.training import TrainingHistory, train


def clip_by_norm(vector: torch.Tensor, max_norm: float) -> torch.Tensor:
    """A copy of ``vector`` scaled down to length ``max_norm`` if it is longer.

    The length is measured without float32 overflow (:func:`gradpath.numerics.tensor_norm`), so
    ``clip_by_norm(torch.full((100,), 1e20), 1.0)`` is 100 entries of ``0.1``; the rescaling
    divides by the largest entry first, so it cannot underflow either. (A float32 norm, as in
    ``torch.nn.utils.clip_grad_norm_``, sees ``inf`` there and scales the vector to zeros.) A
    vector with an ``inf``/``nan`` entry has no length to scale to: it comes back as ``nan``.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    norm = tensor_norm(vector)
    if not math.isfinite(norm):
        return torch.full_like(vector, math.nan)
    if not norm > max_norm:
        return vector.clone()
    peak = float(vector.detach().abs().max())
    # (v / peak) has entries in [-1, 1]; peak / norm lies in [1/sqrt(n), 1]: nothing overflows
    return (vector / peak) * (max_norm * (peak / norm))


def clip_by_value(vector: torch.Tensor, clip_value: float) -> torch.Tensor:
    """A copy of ``vector`` with every entry clamped to ``[-clip_value, clip_value]``."""
    if not clip_value > 0:
        raise ValueError(f"clip_value must be positive, got {clip_value}")
    return vector.clamp(-clip_value, clip_value)


def flat_gradient(model: nn.Module) -> torch.Tensor:
    """All of ``model``'s parameter gradients, flattened into one vector (a copy)."""
    grads = [p.grad.detach().flatten() for p in model.parameters() if p.grad is not None]
    if not grads:
        raise RuntimeError("no gradients yet: call loss.backward() first")
    return torch.cat(grads).clone()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of the angle between two vectors (1: same direction)."""
    a, b = a.flatten().double(), b.flatten().double()
    if a.shape != b.shape:
        raise ValueError(f"vectors differ in length: {a.numel()} and {b.numel()}")
    denominator = float(a.norm() * b.norm())
    if denominator == 0:
        raise ValueError("the angle to a zero vector is undefined")
    return float(a @ b) / denominator


def clipped_fraction(history: TrainingHistory, rtol: float = 1e-4) -> float:
    """Share of the recorded steps where clipping shortened the gradient."""
    if not history.global_norm:
        raise ValueError("the history is empty")
    pairs = list(zip(history.global_norm, history.clipped_norm, strict=False))
    changed = sum(1 for before, after in pairs if not math.isfinite(before)
                  or after < before * (1 - rtol))
    return changed / len(pairs)


def suggest_threshold(norms: Sequence[float], *, quantile: float = 0.5) -> float:
    """A clipping threshold read off a gradient-norm history: a quantile of its finite values.

    The median (the default) follows Pascanu et al. (2013): clip at a typical norm seen while
    training behaves, so ordinary steps pass nearly untouched and only the outliers are cut.

    Raises:
        ValueError: if ``quantile`` is outside ``(0, 1]`` or no norm is finite and positive.
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    v = np.asarray(norms, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        raise ValueError("no finite, positive gradient norm in the history")
    return float(np.quantile(v, quantile))


def threshold_sweep(make_model: Callable[[], nn.Module], data: Dataset,
                    thresholds: Sequence[float | None], **train_kwargs: object
                    ) -> dict[float | None, TrainingHistory]:
    """Train a fresh ``make_model()`` once per threshold (``None``: no clipping).

    ``train_kwargs`` go to :func:`gradpath.training.train` (``steps``, ``lr``, …) and must not
    include ``clip_norm``.
    """
    if not thresholds:
        raise ValueError("thresholds is empty: pass e.g. [None, 10.0, 1.0]")
    if "clip_norm" in train_kwargs:
        raise ValueError("pass the thresholds as `thresholds`, not as clip_norm")
    return {t: train(make_model(), data, clip_norm=t, **train_kwargs)  # type: ignore[arg-type]
            for t in thresholds}


def plot_clipping(history: TrainingHistory, threshold: float, ax: Axes | None = None,
                  title: str = "Gradient norm before and after clipping") -> Axes:
    """The recorded global norm before clipping and after it, with the threshold drawn in."""
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    ax = plot_training_curves({"before clipping (recorded)": history.global_norm,
                               "after clipping (used by the step)": history.clipped_norm},
                              ax=ax, title=title, ylabel="global gradient norm")
    ax.axhline(threshold, color=NONFINITE_COLOR, ls=":", lw=1, label=f"threshold {threshold:.3g}")
    ax.legend(fontsize=8)
    return ax
