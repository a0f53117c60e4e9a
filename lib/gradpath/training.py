"""A small training loop that records how the gradient behaves at every step.

:func:`train` runs plain minibatch training and records, per step, the loss, each weight layer's
gradient norm, the global gradient norm before and after clipping, and each layer's weight norm.
A loss or gradient that becomes ``inf``/``nan`` is a result, not a crash: the step is recorded in
``first_nonfinite_step`` and training stops there (or carries on, if asked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
from torch import nn

from gradpath.data import Dataset
from gradpath.probes import global_gradient_norm, gradient_norms_by_layer, weight_layers
from gradpath.progress import progress

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")


@dataclass
class TrainingHistory:
    """Everything :func:`train` measured, one entry per step taken.

    Attributes:
        loss: training loss of each step's minibatch.
        gradient_norms: per step, ``‖∂L/∂W_l‖`` of every weight layer (input layer first),
            measured before clipping.
        global_norm: per step, the norm of all gradients together before clipping.
        clipped_norm: per step, the same norm after clipping (equal when no clipping happened).
        weight_norms: per step, ``‖W_l‖`` of every weight layer after the update.
        first_nonfinite_step: the first step whose loss or gradient was ``inf``/``nan``.
        stopped_early: whether training stopped at that step instead of running all steps.
    """

    loss: list[float] = field(default_factory=list)
    gradient_norms: list[list[float]] = field(default_factory=list)
    global_norm: list[float] = field(default_factory=list)
    clipped_norm: list[float] = field(default_factory=list)
    weight_norms: list[list[float]] = field(default_factory=list)
    first_nonfinite_step: int | None = None
    stopped_early: bool = False

    @property
    def steps(self) -> int:
        return len(self.loss)

    @property
    def diverged(self) -> bool:
        return self.first_nonfinite_step is not None

    def gradient_norm_matrix(self) -> np.ndarray:
        """Gradient norms as an array of shape (steps, layers)."""
        return np.asarray(self.gradient_norms, dtype=float)

    def weight_norm_matrix(self) -> np.ndarray:
        """Weight norms as an array of shape (steps, layers)."""
        return np.asarray(self.weight_norms, dtype=float)

    def final_loss(self, window: int = 10) -> float:
        """Mean loss over the last ``window`` finite steps (``nan`` if there are none)."""
        finite = [v for v in self.loss if math.isfinite(v)][-window:]
        return float(np.mean(finite)) if finite else math.nan

    def summary(self) -> str:
        """One sentence on how the run ended."""
        if self.first_nonfinite_step is None:
            return f"ran {self.steps} steps; final loss {self.final_loss():.4g}"
        end = "stopped there" if self.stopped_early else f"ran on to step {self.steps - 1}"
        return f"loss or gradient became non-finite at step {self.first_nonfinite_step}; {end}"


def _weight_norms(layers: list[nn.Module]) -> list[float]:
    return [float(cast(torch.Tensor, layer.weight).detach().norm()) for layer in layers]


def check_run_length(steps: int, checkpoints: int | None = None) -> None:
    """Raise ``ValueError`` unless ``steps >= 1`` and, if given, ``1 <= checkpoints <= steps``."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if checkpoints is not None and (not isinstance(checkpoints, int)
                                    or not 1 <= checkpoints <= steps):
        raise ValueError(f"checkpoints must be an integer in [1, steps], got {checkpoints!r}")


def make_optimizer(name: str, parameters: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Build an optimizer by name: one of :data:`OPTIMIZERS` (``momentum`` is SGD with 0.9)."""
    if not lr > 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; valid choices are {', '.join(OPTIMIZERS)}")


def loss_function(data: Dataset) -> nn.Module:
    """Cross-entropy for classification, mean squared error for regression."""
    return nn.CrossEntropyLoss() if data.task == "classification" else nn.MSELoss()


def train(model: nn.Module, data: Dataset, *, steps: int, lr: float, optimizer: str = "sgd",
          batch_size: int | None = None, clip_norm: float | None = None,
          clip_value: float | None = None, seed: int = 0, stop_at_nonfinite: bool = True,
          description: str = "training") -> TrainingHistory:
    """Train ``model`` on ``data`` and record the gradient at every step.

    Args:
        steps: optimizer steps to take.
        lr: learning rate.
        optimizer: one of :data:`OPTIMIZERS`.
        batch_size: examples per step; ``None`` uses the whole dataset every step.
        clip_norm: if set, rescale all gradients together so their global norm is at most this
            (``torch.nn.utils.clip_grad_norm_``), after ``backward`` and before ``step``.
        clip_value: if set, clamp every gradient entry to ``[-clip_value, clip_value]``
            (``torch.nn.utils.clip_grad_value_``).
        seed: seeds the minibatch order.
        stop_at_nonfinite: stop at the first step whose loss or gradient is ``inf``/``nan``
            (the default), instead of running on with broken weights.

    Returns:
        A :class:`TrainingHistory`. It never raises because training diverged.
    """
    check_run_length(steps)
    for name, value in (("clip_norm", clip_norm), ("clip_value", clip_value)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if batch_size is not None and not 1 <= batch_size:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    device = data.x.device
    model.to(device)
    model.train()
    opt = make_optimizer(optimizer, list(model.parameters()), lr)
    criterion = loss_function(data)
    layers = weight_layers(model)
    generator = torch.Generator().manual_seed(seed)
    history = TrainingHistory()
    n = len(data)
    for step in progress(range(steps), description):
        if batch_size is None or batch_size >= n:
            x, y = data.x, data.y
        else:
            idx = torch.randint(0, n, (batch_size,), generator=generator).to(device)
            x, y = data.x[idx], data.y[idx]
        opt.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        norms = gradient_norms_by_layer(model)
        total = global_gradient_norm(model)
        loss_value = float(loss.detach())
        history.loss.append(loss_value)
        history.gradient_norms.append(norms)
        history.global_norm.append(total)
        finite = math.isfinite(loss_value) and math.isfinite(total)
        if not finite and history.first_nonfinite_step is None:
            history.first_nonfinite_step = step
        if not finite and stop_at_nonfinite:
            history.clipped_norm.append(total)
            history.weight_norms.append(_weight_norms(layers))
            history.stopped_early = step < steps - 1
            break
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        if clip_value is not None:
            torch.nn.utils.clip_grad_value_(model.parameters(), clip_value)
        if clip_norm is not None or clip_value is not None:
            total = global_gradient_norm(model)
        history.clipped_norm.append(total)
        opt.step()
        history.weight_norms.append(_weight_norms(layers))
    return history


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset) -> dict[str, float]:
    """Loss (and accuracy, for classification) of ``model`` on ``data``, in eval mode."""
    was_training = model.training
    model.eval()
    out = model(data.x)
    result = {"loss": float(loss_function(data)(out, data.y))}
    if data.task == "classification":
        result["accuracy"] = float((out.argmax(dim=1) == data.y).float().mean())
    model.train(was_training)
    return result
