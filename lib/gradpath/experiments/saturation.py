"""Saturation during training: how each hidden layer's activations move as a network learns.

Glorot & Bengio (2010) tracked the mean and spread of every hidden layer's activations while
training deep sigmoid networks and saw the top hidden layer driven into saturation at zero early
in training, where it stayed while the loss sat on a plateau. :func:`saturation_run` repeats that
measurement for any activation and initialization recipe: it trains with plain SGD and records,
at evenly spaced steps, every hidden layer's mean activation, its standard deviation and the
share of its units' inputs where the activation's derivative is below 1% of its peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from gradpath.data import Dataset
from gradpath.init import apply_recipe_
from gradpath.models import DeepMLP
from gradpath.probes import activation_statistics
from gradpath.training import check_run_length, evaluate, train


@dataclass
class SaturationRun:
    """Activation statistics of every hidden layer, measured during training.

    Attributes:
        steps: the steps at which statistics were taken (0 = before training).
        mean: ``mean[l][k]``: mean activation of hidden layer ``l + 1`` at ``steps[k]``.
        std: the same for the standard deviation.
        saturated: the same for the saturated fraction (derivative below 1% of its peak).
        loss: training loss at every step.
        accuracy: final accuracy on the data (classification), ``nan`` if training diverged.
    """

    steps: list[int] = field(default_factory=list)
    mean: list[list[float]] = field(default_factory=list)
    std: list[list[float]] = field(default_factory=list)
    saturated: list[list[float]] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: float = math.nan

    def final_loss(self, window: int = 20) -> float:
        """Mean of the last ``window`` finite losses (``nan`` if none)."""
        finite = [v for v in self.loss if math.isfinite(v)][-window:]
        return sum(finite) / len(finite) if finite else math.nan


def saturation_run(data: Dataset, *, activation: str = "sigmoid", recipe: str = "standard",
                   depth: int = 5, width: int = 128, lr: float = 0.5, steps: int = 400,
                   batch_size: int = 16, checkpoints: int = 8, probe_size: int = 256,
                   seed: int = 0, device: torch.device | str | None = None) -> SaturationRun:
    """Train a :class:`~gradpath.models.DeepMLP` with plain SGD and watch its activations.

    Args:
        activation: the hidden layers' activation.
        recipe: a key of :data:`gradpath.init.RECIPES`; ``"standard"`` is Glorot & Bengio's
            ``U(-1/sqrt(n), 1/sqrt(n))`` and ``"xavier"`` their normalized initialization.
        depth: weight layers (``depth - 1`` hidden layers; Glorot & Bengio's Figure 2 has four).
        checkpoints: how many times to measure during training (plus once before).
        probe_size: how many examples of ``data`` the statistics are measured on.

    Raises:
        ValueError: for non-positive steps, checkpoints outside ``[1, steps]``, or a
            non-positive probe size.
    """
    check_run_length(steps, checkpoints)
    if probe_size < 1:
        raise ValueError(f"probe_size must be positive, got {probe_size!r}")
    if device is not None:
        data = data.to(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DeepMLP(data.features, data.outputs, width=width, depth=depth, activation=activation,
                    generator=generator)
    apply_recipe_(model, recipe, activation=activation, x=data.x[:probe_size].cpu(),
                  generator=generator)
    model = model.to(data.x.device)
    probe = data.x[:probe_size]
    run = SaturationRun(mean=[[] for _ in range(depth - 1)], std=[[] for _ in range(depth - 1)],
                        saturated=[[] for _ in range(depth - 1)])

    def measure(step: int) -> None:
        run.steps.append(step)
        for i, layer in enumerate(activation_statistics(model, probe)):
            run.mean[i].append(layer.mean)
            run.std[i].append(layer.std)
            run.saturated[i].append(layer.saturated_fraction)

    measure(0)
    done = 0
    for k in range(checkpoints):
        bound = round(steps * (k + 1) / checkpoints)
        if bound <= done:
            continue
        # Plain SGD keeps no state, so chunks between measurements make one continuous run.
        history = train(model, data, steps=bound - done, lr=lr, optimizer="sgd",
                        batch_size=batch_size, seed=seed * 1000 + k, description="training")
        run.loss.extend(history.loss)
        done = bound
        if history.diverged:
            return run
        measure(done)
    if data.task == "classification":
        run.accuracy = evaluate(model, data)["accuracy"]
    return run
