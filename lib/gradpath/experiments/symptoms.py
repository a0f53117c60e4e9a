"""Symptoms: how vanishing gradients show up in quantities you can measure.

A network whose gradients vanish gives itself away in ways that need no theory to observe:

- **the signal fades**: going forward, each layer's output depends less and less on which example
  went in (:func:`spread_across_examples`, :func:`signal_spread_by_layer`);
- **early layers barely change**: during training the relative weight change
  ``‖W_l(t) − W_l(0)‖ / ‖W_l(0)‖`` of the layers nearest the input is tiny next to that of the
  layers nearest the loss (:func:`weight_snapshot`, :func:`relative_weight_change`);
- **the loss plateaus**: a classifier stays near ``ln C``, the cross-entropy of predicting all
  ``C`` classes with equal probability (:func:`chance_loss`);
- **training longer does not help**: the loss hardly moves in the second half of the run
  (:func:`second_half_improvement`).

:func:`vanishing_symptoms` measures the last three on a finished run and returns a
:class:`SymptomReport` that says which fired.

:func:`update_to_data_ratios` gives the scale-free number practitioners watch next to the norms:
how large each step is relative to the weights it changes (Karpathy's CS231n notes suggest about
``1e-3`` as a rough guide).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gradpath.probes import activation_statistics, tensor_norms, weight_layers
from gradpath.training import TrainingHistory

FROZEN_RATIO = 1e-3
PLATEAU_TOLERANCE = 0.05
PROGRESS_TOLERANCE = 0.02


def spread_across_examples(output: torch.Tensor) -> float:
    """How much a layer's output varies from example to example.

    The standard deviation over the batch (rows) of every unit (column), averaged over units. A
    layer whose spread is near zero gives (almost) the same output whatever the input was: the
    information about the input has faded, even if the output values themselves are not small
    (a sigmoid layer whose outputs all sit near 0.5 has spread near zero).

    Raises:
        ValueError: unless ``output`` is a (batch, units) tensor with at least two rows.
    """
    if output.dim() != 2 or output.shape[0] < 2:
        raise ValueError("expected a (batch, units) tensor with a batch of at least 2, "
                         f"got shape {tuple(output.shape)}")
    return float(output.detach().double().std(dim=0).mean())


def signal_spread_by_layer(model: nn.Module, x: torch.Tensor) -> list[float]:
    """:func:`spread_across_examples` of each hidden layer's output on ``x``, input side first.

    Uses :func:`gradpath.probes.activation_statistics`, so ``model`` must be a
    :class:`gradpath.models.DeepMLP` (or have the same ``blocks`` and ``activation_name``).
    """
    return [spread_across_examples(layer.output) for layer in activation_statistics(model, x)]


def _weight(layer: nn.Module) -> torch.Tensor:
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"{type(layer).__name__} has no weight tensor")
    return weight


def weight_snapshot(model: nn.Module) -> list[torch.Tensor]:
    """Copies of every weight layer's weight matrix (input layer first), to compare with later."""
    return [_weight(layer).detach().clone() for layer in weight_layers(model)]


def relative_weight_change(initial: Sequence[torch.Tensor], model: nn.Module) -> list[float]:
    """``‖W_l(now) − W_l(0)‖ / ‖W_l(0)‖`` for every weight layer, input layer first.

    Args:
        initial: the output of :func:`weight_snapshot` taken before training.
        model: the same model, now.

    A layer that started at exactly zero reports ``inf`` if it moved and ``0`` if it did not.

    Raises:
        ValueError: if the snapshot does not match the model's layers (count or shapes).
    """
    layers = weight_layers(model)
    if len(initial) != len(layers):
        raise ValueError(f"the snapshot has {len(initial)} layers but the model has {len(layers)}; "
                         "take it with weight_snapshot(model) before training")
    changes = []
    for i, (before, layer) in enumerate(zip(initial, layers, strict=True), start=1):
        now = _weight(layer).detach()
        if before.shape != now.shape:
            raise ValueError(f"layer {i}: snapshot shape {tuple(before.shape)} differs from the "
                             f"model's {tuple(now.shape)}")
        moved = float((now.double() - before.to(now.device).double()).norm())
        start = float(before.double().norm())
        if start == 0.0:
            changes.append(math.inf if moved > 0 else 0.0)
        else:
            changes.append(moved / start)
    return changes


def chance_loss(classes: int) -> float:
    """``ln(classes)``: the cross-entropy of a classifier that gives every class equal probability.

    Raises:
        ValueError: unless ``classes`` is an integer >= 2.
    """
    if not isinstance(classes, int) or classes < 2:
        raise ValueError(f"classes must be an integer >= 2, got {classes!r}")
    return math.log(classes)


def second_half_improvement(losses: Sequence[float], window: int | None = None) -> float:
    """The fraction of the loss that the second half of a run removed.

    With ``m`` the mean loss over ``window`` steps centred on the run's midpoint and ``e`` the
    mean over the last ``window`` steps, returns ``(m − e) / |m|``: ``0.6`` means the second half
    took 60 % off the loss, near ``0`` means it bought nothing, negative means the loss rose.
    (``0`` if ``m`` is exactly zero.) ``window`` defaults to a tenth of the run.

    Returns ``nan`` if a loss in either window is not finite (a diverged run is reported, not
    raised).

    Raises:
        ValueError: if the run is shorter than four steps or ``window`` does not fit in half of it.
    """
    values = np.asarray(losses, dtype=float)
    n = values.size
    if n < 4:
        raise ValueError(f"need the losses of at least 4 steps, got {n}")
    w = max(1, n // 10) if window is None else window
    if not isinstance(w, int) or not 1 <= w <= n // 2:
        raise ValueError(f"window must be an integer in [1, {n // 2}] for {n} steps, "
                         f"got {window!r}")
    start = n // 2 - w // 2
    middle, end = values[start:start + w], values[n - w:]
    if not (np.isfinite(middle).all() and np.isfinite(end).all()):
        return math.nan
    m, e = float(middle.mean()), float(end.mean())
    return 0.0 if m == 0 else (m - e) / abs(m)


@dataclass(frozen=True)
class SymptomReport:
    """The three training symptoms of vanishing gradients, measured on one run.

    Attributes:
        weight_change: relative weight change of every layer, input layer first.
        final_loss: mean training loss over the last steps.
        chance_loss: ``ln C`` for a ``C``-class classifier (``None`` for regression).
        late_improvement: :func:`second_half_improvement` of the run (a fraction of the loss).
        frozen_ratio: the first layer counts as frozen if it changed less than this fraction of
            the last layer's change.
        plateau_tolerance: the loss counts as stuck at chance within this distance of ``ln C``.
        progress_tolerance: the second half counts as no progress if it removed less than this
            fraction of the loss (default 2 %).
    """

    weight_change: list[float]
    final_loss: float
    chance_loss: float | None
    late_improvement: float
    frozen_ratio: float = FROZEN_RATIO
    plateau_tolerance: float = PLATEAU_TOLERANCE
    progress_tolerance: float = PROGRESS_TOLERANCE

    @property
    def first_to_last_change(self) -> float:
        """The first layer's relative change divided by the last layer's."""
        first, last = self.weight_change[0], self.weight_change[-1]
        if last == 0:
            return math.inf if first > 0 else math.nan
        return first / last

    @property
    def early_layers_frozen(self) -> bool:
        return self.first_to_last_change < self.frozen_ratio

    @property
    def stuck_at_chance(self) -> bool:
        return (self.chance_loss is not None and math.isfinite(self.final_loss)
                and abs(self.final_loss - self.chance_loss) < self.plateau_tolerance)

    @property
    def no_late_progress(self) -> bool:
        return math.isfinite(self.late_improvement) and \
            self.late_improvement < self.progress_tolerance

    @property
    def symptoms(self) -> list[str]:
        """The symptoms that fired, in words."""
        found = []
        if self.early_layers_frozen:
            found.append(f"early layers barely change (layer 1 moved "
                         f"{self.first_to_last_change:.1e}× as much as the last layer)")
        if self.stuck_at_chance:
            found.append(f"the loss plateaus at {self.final_loss:.3f}, near ln C = "
                         f"{self.chance_loss:.3f}")
        if self.no_late_progress:
            found.append(f"training longer does not help (the second half of the run took "
                         f"{self.late_improvement:.1%} off the loss)")
        return found

    @property
    def vanishing_likely(self) -> bool:
        """All three symptoms at once."""
        return self.early_layers_frozen and self.stuck_at_chance and self.no_late_progress


def vanishing_symptoms(history: TrainingHistory, initial_weights: Sequence[torch.Tensor],
                       model: nn.Module, *, classes: int | None,
                       frozen_ratio: float = FROZEN_RATIO,
                       plateau_tolerance: float = PLATEAU_TOLERANCE,
                       progress_tolerance: float = PROGRESS_TOLERANCE,
                       window: int | None = None) -> SymptomReport:
    """Measure the three training symptoms of vanishing gradients on a finished run.

    Args:
        history: what :func:`gradpath.training.train` returned.
        initial_weights: :func:`weight_snapshot` of ``model`` taken before training.
        model: the trained model.
        classes: number of classes for a classifier (sets ``ln C``), ``None`` for regression.
        window: steps averaged for the final loss and the second-half comparison (default: a
            tenth of the run).

    Raises:
        ValueError: for an empty history, a snapshot that does not match ``model``, or a
            non-positive tolerance.
    """
    if history.steps == 0:
        raise ValueError("the history is empty: train for at least one step first")
    for name, value in (("frozen_ratio", frozen_ratio), ("plateau_tolerance", plateau_tolerance),
                        ("progress_tolerance", progress_tolerance)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    w = window if window is not None else max(1, history.steps // 10)
    return SymptomReport(
        weight_change=relative_weight_change(initial_weights, model),
        final_loss=history.final_loss(w),
        chance_loss=chance_loss(classes) if classes is not None else None,
        late_improvement=second_half_improvement(history.loss, window),
        frozen_ratio=frozen_ratio,
        plateau_tolerance=plateau_tolerance,
        progress_tolerance=progress_tolerance,
    )


def update_to_data_ratios(history: TrainingHistory, lr: float,
                          initial_weights: Sequence[torch.Tensor]) -> list[list[float]]:
    """Per step and weight layer, the update-to-data ratio ``lr·‖g_l‖ / ‖W_l‖`` of plain SGD.

    With plain SGD the update of layer ``l`` at step ``s`` is ``lr`` times its (clipped)
    gradient, so this is exactly ``‖ΔW_l‖ / ‖W_l‖``: the fraction of the layer that one step
    rewrites. It does not depend on the units of the loss (multiply the loss by ``c`` and the
    learning rate by ``1/c`` and nothing changes), which an absolute threshold on ``‖g‖`` does.
    CS231n's rough guide: about ``1e-3``; far below, the layer barely learns; far above, each step
    rewrites a large part of it.

    Args:
        history: a run of :func:`gradpath.training.train` with ``optimizer="sgd"`` (for other
            optimizers the update is not ``lr·g`` and the ratio is not the step's size).
        lr: the learning rate of that run.
        initial_weights: :func:`weight_snapshot` of the model before training (the weight norms
            before step 0; later steps use the norms the history recorded after the previous
            update).

    Returns:
        ``ratios[step][layer]``, input layer first; ``nan``/``inf`` where a norm is not finite.

    Raises:
        ValueError: for a non-positive ``lr``, an empty history, or a snapshot whose layer count
            differs from the history's.
    """
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if history.steps == 0:
        raise ValueError("the history is empty: train for at least one step first")
    before = tensor_norms(list(initial_weights))
    layers = len(history.gradient_norms[0])
    if len(before) != layers:
        raise ValueError(f"the snapshot has {len(before)} layers but the history has {layers}; "
                         "take it with weight_snapshot(model) before training")
    ratios: list[list[float]] = []
    for step in range(history.steps):
        weights = before if step == 0 else history.weight_norms[step - 1]
        total, used = history.global_norm[step], history.clipped_norm[step]
        shrink = used / total if math.isfinite(total) and total > 0 else 1.0
        row = []
        for g, w in zip(history.gradient_norms[step], weights, strict=True):
            if w == 0:
                row.append(math.inf if g > 0 else math.nan)
            else:
                row.append(lr * shrink * g / w)
        ratios.append(row)
    return ratios
