"""Exploding gradients: how fast a signal grows, and how to spot an explosion in a training run.

- :func:`growth_factor` fits ``value ≈ C·g^position`` and returns the per-layer (or per-step)
  factor ``g``: the number that, raised to the depth, decides between vanishing and exploding.
- :func:`weight_gain`, :func:`rms_derivative` and :func:`predicted_layer_gains` split one layer's
  backward factor into what the weights contribute and what the activation's derivative lets
  through, so ReLU and sigmoid with the same large weights can be compared.
- :func:`loss_spikes` and :func:`detect_explosion` apply the practitioner's rules of thumb
  (a global gradient norm above ``1000``, a loss that jumps, a loss that turns ``inf``/``nan``) to
  a recorded :class:`~gradpath.training.TrainingHistory`.
- :func:`norm_to_running_median` divides each step's gradient norm by the median of the steps
  before it: a scale-free alarm that does not depend on the units of the loss.
- :func:`overflow_trace` runs one forward and backward pass and reports, from the tensors, what
  overflowed: which layer's pre-activations first hold ``inf``/``nan``, whether the loss and the
  gradient entries are finite, and what a float32 norm makes of a finite gradient whose norm is
  above ``1.8e19``.
- :func:`plot_symptoms` draws loss, global gradient norm and weight norms of one run side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from gradpath.activations import derivative
from gradpath.diagnosis import EXPLODING_NORM
from gradpath.models import DeepMLP
from gradpath.numerics import as_float64, combined_norm, tensor_norm, tensor_norms
from gradpath.plots import NONFINITE_COLOR, plot_training_curves, use_course_style
from gradpath.probes import activation_statistics
from gradpath.training import TrainingHistory


def growth_factor(values: Sequence[float], positions: Sequence[float] | None = None) -> float:
    """The factor ``g`` of the least-squares fit ``log value = log C + position · log g``.

    Args:
        values: positive measurements, e.g. gradient norms by layer or by time step.
        positions: where each value was measured (default ``0, 1, 2, …``).

    Returns:
        ``g`` (above 1: growth, below 1: decay), or ``nan`` if fewer than two values are finite
        and positive (the others are left out of the fit).
    """
    v = np.asarray(values, dtype=float)
    x = np.arange(len(v), dtype=float) if positions is None else np.asarray(positions, float)
    if x.shape != v.shape:
        raise ValueError(f"got {len(v)} values but {len(x)} positions")
    keep = np.isfinite(v) & (v > 0) & np.isfinite(x)
    if keep.sum() < 2 or np.ptp(x[keep]) == 0:
        return math.nan
    slope = np.polyfit(x[keep], np.log(v[keep]), 1)[0]
    return float(np.exp(slope))


def weight_gain(weight: torch.Tensor) -> float:
    """How much ``W^T`` scales a random backward signal: ``‖W‖_F / sqrt(fan_out)``.

    For a ``fan_out × fan_in`` matrix with i.i.d. entries of variance ``v`` this is about
    ``sqrt(fan_in · v)``: for ``U(-a, a)`` weights, ``a·sqrt(fan_in / 3)``. The norm is
    :func:`gradpath.numerics.tensor_norm`, right for every finite entry.
    """
    if weight.dim() != 2:
        raise ValueError(f"expected a (fan_out, fan_in) weight matrix, got {tuple(weight.shape)}")
    return tensor_norm(weight) / math.sqrt(weight.shape[0])


def rms_derivative(activation: str, pre_activation: torch.Tensor) -> float:
    """``sqrt(mean f'(z)²)`` over the given pre-activations: what the activation lets through.

    Computed in float64 (:func:`gradpath.numerics.as_float64`), so finite inputs give a finite,
    nonzero answer whenever some derivative is nonzero.
    """
    d = derivative(activation, as_float64(pre_activation))
    return tensor_norm(d) / math.sqrt(max(d.numel(), 1))


@dataclass(frozen=True)
class LayerGain:
    """One hidden layer's predicted backward factor, split into its two parts.

    Attributes:
        weight: :func:`weight_gain` of the layer's weight matrix.
        derivative: :func:`rms_derivative` of the activation at the layer's pre-activations.
        saturated_fraction: share of units whose derivative is below 1% of its maximum.
    """

    weight: float
    derivative: float
    saturated_fraction: float

    @property
    def total(self) -> float:
        """The predicted factor ``weight × derivative`` applied to the backward signal."""
        return self.weight * self.derivative


def predicted_layer_gains(model: DeepMLP, x: torch.Tensor) -> list[LayerGain]:
    """For every width-to-width hidden layer of a :class:`~gradpath.models.DeepMLP`, the factor
    by which it should scale the backward signal: ``weight_gain(W_l) × rms f'(z_l)``.

    The first block (input to width) is left out: its output's gradient never passes back
    through it to another hidden layer.

    Raises:
        ValueError: if ``model`` is not a :class:`~gradpath.models.DeepMLP`.
    """
    if not isinstance(model, DeepMLP):
        raise ValueError(f"predicted_layer_gains needs a gradpath DeepMLP, "
                         f"got {type(model).__name__}")
    stats = activation_statistics(model, x)
    weights = [layer.weight for layer in model.weight_layers()]
    return [LayerGain(weight_gain(w), rms_derivative(model.activation_name, s.pre_activation),
                      s.saturated_fraction)
            for w, s in zip(weights[1:-1], stats[1:], strict=True)]


def loss_spikes(losses: Sequence[float], *, factor: float = 10.0, window: int = 10) -> list[int]:
    """Steps whose finite loss exceeds ``factor ×`` the median of the previous ``window`` losses.

    Non-finite losses are not spikes (they are reported by :func:`detect_explosion` on their own)
    and are left out of the running median. Step 0 has no history and is never a spike.
    """
    if not factor > 1:
        raise ValueError(f"factor must be above 1, got {factor}")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    spikes: list[int] = []
    history: list[float] = []
    for step, value in enumerate(float(v) for v in losses):
        if not math.isfinite(value):
            continue
        if history and value > factor * float(np.median(history[-window:])):
            spikes.append(step)
        history.append(value)
    return spikes


@dataclass(frozen=True)
class ExplosionReport:
    """What the rules of thumb found in one run.

    Attributes:
        first_above_threshold: first step whose global gradient norm exceeded the threshold
            (a non-finite norm counts as exceeding it).
        first_nonfinite: first step whose loss or gradient was ``inf``/``nan``.
        largest_finite_norm: the largest finite global gradient norm of the run.
        spikes: steps flagged by :func:`loss_spikes`.
        threshold: the gradient-norm threshold used.
    """

    first_above_threshold: int | None
    first_nonfinite: int | None
    largest_finite_norm: float
    spikes: list[int] = field(default_factory=list)
    threshold: float = EXPLODING_NORM

    @property
    def exploding(self) -> bool:
        """True if any rule fired."""
        return (self.first_above_threshold is not None or self.first_nonfinite is not None
                or bool(self.spikes))

    @property
    def warning_steps(self) -> int | None:
        """How many steps the norm rule fired before the loss or gradient became non-finite."""
        if self.first_above_threshold is None or self.first_nonfinite is None:
            return None
        return self.first_nonfinite - self.first_above_threshold

    def summary(self) -> str:
        """The findings in one line."""
        if not self.exploding:
            return (f"healthy: the global gradient norm stayed below {self.threshold:g} "
                    f"(largest {self.largest_finite_norm:.3g}), no spikes, no inf/nan")
        parts = []
        if self.first_above_threshold is not None:
            parts.append(f"norm above {self.threshold:g} at step {self.first_above_threshold}")
        if self.spikes:
            parts.append(f"loss spikes at steps {self.spikes[:5]}"
                         + (" …" if len(self.spikes) > 5 else ""))
        if self.first_nonfinite is not None:
            parts.append(f"inf/nan at step {self.first_nonfinite}")
        return "exploding: " + "; ".join(parts)


def detect_explosion(history: TrainingHistory, *, threshold: float = EXPLODING_NORM,
                     spike_factor: float = 10.0, window: int = 10) -> ExplosionReport:
    """Apply the rules of thumb to a run: norm above ``threshold``, loss spikes, inf/nan.

    Uses the pre-clipping global norm, so a clipped run still shows the explosion it prevented.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    norms = [float(v) for v in history.global_norm]
    above = next((i for i, v in enumerate(norms) if not v <= threshold), None)
    finite = [v for v in norms if math.isfinite(v)]
    nonfinite = next((i for i, (loss, norm) in enumerate(zip(history.loss, norms, strict=True))
                      if not (math.isfinite(loss) and math.isfinite(norm))), None)
    return ExplosionReport(above, nonfinite, max(finite) if finite else math.nan,
                           loss_spikes(history.loss, factor=spike_factor, window=window),
                           threshold)


def plot_symptoms(runs: dict[str, TrainingHistory], *, threshold: float = EXPLODING_NORM,
                  title: str = "Symptoms of an exploding run") -> Figure:
    """Three panels per set of runs: loss, global gradient norm (with ``threshold``), and the
    total weight norm ``Σ_l ‖W_l‖``, all against the step. A red ✕ marks inf/nan."""
    if not runs:
        raise ValueError("runs is empty: pass {label: TrainingHistory}")
    use_course_style()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    plot_training_curves({k: h.loss for k, h in runs.items()}, ax=axes[0], title="loss")
    plot_training_curves({k: h.global_norm for k, h in runs.items()}, ax=axes[1],
                         title="global gradient norm", ylabel="‖g‖ (before clipping)")
    axes[1].axhline(threshold, color=NONFINITE_COLOR, ls=":", lw=1)
    axes[1].annotate(f"{threshold:g}", (0, threshold), color=NONFINITE_COLOR, fontsize=8,
                     xytext=(2, 2), textcoords="offset points")
    weights = {k: [float(sum(w)) for w in h.weight_norms] for k, h in runs.items()}
    plot_training_curves(weights, ax=axes[2], title="weight norm", ylabel=r"$\sum_\ell \|W_\ell\|$")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def norm_to_running_median(norms: Sequence[float], *, window: int = 10) -> list[float]:
    """Each step's norm divided by the median of the up to ``window`` finite norms before it.

    A ratio far above one (say ``10``) flags a spike relative to the run's own history, whatever
    the model or the units of its loss. Step 0 has no history and gets ``nan``; so does a step
    whose own norm is not finite (it is reported by the non-finite rule instead). Non-finite norms
    are left out of the running median.

    Raises:
        ValueError: unless ``window`` is a positive integer.
    """
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    ratios: list[float] = []
    history: list[float] = []
    for value in (float(v) for v in norms):
        if history and math.isfinite(value):
            median = float(np.median(history[-window:]))
            ratios.append(value / median if median > 0 else math.inf)
        else:
            ratios.append(math.nan)
        if math.isfinite(value):
            history.append(value)
    return ratios


@dataclass(frozen=True)
class OverflowTrace:
    """What one forward and backward pass computed, read from the tensors themselves.

    Attributes:
        nonfinite_by_layer: per weight layer (input side first), ``(inf entries, nan entries)``
            of its output ``W a + b`` (the pre-activation of a hidden layer, the network's output
            for the last).
        largest_activation: the largest finite ``|entry|`` of any hidden layer's output.
        loss: the loss of the pass (``inf``/``nan`` if it overflowed).
        gradient_finite: whether every entry of every parameter gradient is finite.
        largest_gradient_entry: the largest finite ``|entry|`` of the parameter gradients.
        global_norm: the norm of all parameter gradients together, right for every finite entry
            (:func:`gradpath.probes.tensor_norms`).
        float32_norm: the same norm summed in float32, the way ``clip_grad_norm_`` computes it: it
            is ``inf`` as soon as the norm passes about ``1.8e19`` (one entry above it is enough)
            although every entry is finite.
            This field is float32 on purpose (the chapter shows what ``clip_grad_norm_`` sees);
            every other number here is right for finite entries.
    """

    nonfinite_by_layer: list[tuple[int, int]]
    largest_activation: float
    loss: float
    gradient_finite: bool
    largest_gradient_entry: float
    global_norm: float
    float32_norm: float

    @property
    def first_nonfinite_layer(self) -> int | None:
        """The first weight layer (1 = input side) whose output holds an ``inf``/``nan``."""
        return next((i for i, (inf, nan) in enumerate(self.nonfinite_by_layer, start=1)
                     if inf or nan), None)


def _largest_finite(tensors: Sequence[torch.Tensor]) -> float:
    values = [t.detach().abs()[torch.isfinite(t.detach())] for t in tensors]
    values = [v for v in values if v.numel()]
    return max(float(v.max()) for v in values) if values else math.nan


def overflow_trace(model: DeepMLP, x: torch.Tensor, y: torch.Tensor,
                   loss_fn: nn.Module) -> OverflowTrace:
    """Run one forward and backward pass of a :class:`~gradpath.models.DeepMLP` and report what
    overflowed, entry by entry.

    The model is left as found: its ``.grad`` fields are put back afterwards, and its buffers,
    modes and the random state are untouched (the pass runs in the model's current mode).

    Raises:
        ValueError: if ``model`` is not a :class:`~gradpath.models.DeepMLP`.
    """
    if not isinstance(model, DeepMLP):
        raise ValueError(f"overflow_trace needs a gradpath DeepMLP, got {type(model).__name__}")
    layers = list(model.weight_layers())
    params = list(model.parameters())
    saved = [p.grad for p in params]
    outputs: list[torch.Tensor] = []
    hidden: list[torch.Tensor] = []
    handles = [layer.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
               for layer in layers]
    handles += [block.register_forward_hook(lambda _m, _i, out: hidden.append(out.detach()))
                for block in model.blocks]
    try:
        for p in params:
            p.grad = None
        loss = loss_fn(model(x), y)
        loss.backward()
        grads = [p.grad.detach() if p.grad is not None else torch.zeros_like(p) for p in params]
        counts = [(int(torch.isinf(o).sum()), int(torch.isnan(o).sum())) for o in outputs]
        finite = all(bool(torch.isfinite(g).all()) for g in grads)
        exact = combined_norm(tensor_norms(grads))
        fp32 = [g.float() for g in grads]
        float32 = float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g) for g in fp32])))
        return OverflowTrace(counts, _largest_finite(hidden), float(loss.detach()), finite,
                             _largest_finite(grads), exact, float32)
    finally:
        for h in handles:
            h.remove()
        for p, g in zip(params, saved, strict=True):
            p.grad = g
