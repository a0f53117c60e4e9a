"""Dead units: ReLUs that output zero for every input, and so receive no gradient.

A ReLU unit whose pre-activation is negative for every example outputs zero for every example,
and its derivative there is zero too: no gradient reaches its weights or bias, so its own update
cannot bring it back. Whether it stays dead depends on where it sits. A unit in the first hidden
layer sees the data, which never change, so (without weight decay or momentum left over from
before it died) it stays dead for good. A unit higher up sees the outputs of the layers below;
when those change, its pre-activation can turn positive again and the unit revives.

:func:`dead_fractions` measures, layer by layer, the share of units that output exactly zero for
every example of a batch (the dead ones), :func:`dead_masks` says which units they are, and
:func:`off_fractions` the share whose pre-activation is at or below zero for every example (for
ReLU the same units; for leaky ReLU these units are "off" but still pass a small gradient, so they
can recover).

Two ways to kill units are provided: :func:`shift_biases_` pushes every hidden bias down, and a
too-high learning rate does it by itself during training. :func:`dead_unit_run` trains a network
and records the dead fraction as it goes, which units were dead at the start and at the end, and
each step's update-to-data ratio ``‖ΔW‖/‖W‖``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

from gradpath.data import Dataset
from gradpath.models import DeepMLP
from gradpath.probes import weight_layers
from gradpath.progress import progress
from gradpath.training import (
    check_run_length,
    evaluate,
    loss_function,
    make_optimizer,
    relative_update_norms,
)


@dataclass(frozen=True)
class UnitStates:
    """Per hidden layer (input side first), what share of units is dead or switched off.

    Attributes:
        dead: share of units whose output is exactly zero for every example.
        off: share of units whose pre-activation is ``<= 0`` for every example.
        units: hidden units per layer.
    """

    dead: list[float]
    off: list[float]
    units: list[int]

    @property
    def dead_overall(self) -> float:
        """Share of all hidden units that are dead."""
        total = sum(self.units)
        return sum(d * u for d, u in zip(self.dead, self.units, strict=True)) / total

    @property
    def off_overall(self) -> float:
        """Share of all hidden units that are switched off."""
        total = sum(self.units)
        return sum(d * u for d, u in zip(self.off, self.units, strict=True)) / total


def _blocks(model: nn.Module) -> list[nn.Module]:
    blocks = getattr(model, "blocks", None)
    if blocks is None or not all(hasattr(b, "activation") for b in blocks):
        raise ValueError("need a model whose `blocks` each have an `activation` module "
                         "(e.g. gradpath.models.DeepMLP)")
    return list(blocks)


def _activations(model: nn.Module, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per hidden block, the input and output of its activation for the batch ``x`` (run in
    evaluation mode; the model's mode is restored and the hooks removed)."""
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a non-empty (batch, features) tensor, got {tuple(x.shape)}")
    records: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        records.append((inputs[0].detach(), output.detach()))

    handles = [b.activation.register_forward_hook(hook)  # type: ignore[union-attr,operator]
               for b in _blocks(model)]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return records


@torch.no_grad()
def unit_states(model: nn.Module, x: torch.Tensor) -> UnitStates:
    """Run the batch ``x`` through ``model`` and classify every hidden unit.

    Raises:
        ValueError: if the model has no hidden ``blocks`` or ``x`` is not a (batch, features)
            tensor.
    """
    records = _activations(model, x)
    dead = [float((a == 0).all(dim=0).double().mean()) for _, a in records]
    off = [float((z <= 0).all(dim=0).double().mean()) for z, _ in records]
    return UnitStates(dead, off, [int(a.shape[1]) for _, a in records])


@torch.no_grad()
def dead_masks(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Per hidden layer, a boolean vector (on the CPU): which units output exactly zero for every
    example in ``x``. Runs in evaluation mode and restores the model's mode."""
    return [(a == 0).all(dim=0).cpu() for _, a in _activations(model, x)]


def dead_fractions(model: nn.Module, x: torch.Tensor) -> list[float]:
    """Per hidden layer, the share of units that output exactly zero for every example in ``x``."""
    return unit_states(model, x).dead


def off_fractions(model: nn.Module, x: torch.Tensor) -> list[float]:
    """Per hidden layer, the share of units whose pre-activation is ``<= 0`` for every example."""
    return unit_states(model, x).off


@torch.no_grad()
def shift_biases_(model: nn.Module, shift: float) -> nn.Module:
    """Add ``shift`` to the bias of every hidden layer (not the output head); return the model.

    A large negative shift moves every unit's pre-activation below zero for most inputs.
    """
    if not isinstance(shift, (int, float)) or not math.isfinite(shift):
        raise ValueError(f"shift must be a finite number, got {shift!r}")
    for block in _blocks(model):
        linear = getattr(block, "linear", None)
        if linear is None or linear.bias is None:
            raise ValueError("every hidden block needs a `linear` layer with a bias")
        linear.bias.add_(float(shift))
    return model


@dataclass
class DeadUnitRun:
    """A training run with the dead fraction measured along the way.

    Attributes:
        steps: the step counts at which units were counted (0 = before training).
        dead: overall share of dead hidden units at each of those steps.
        off: overall share of switched-off hidden units at each of those steps.
        loss: training loss at every step.
        final_states: per-layer :class:`UnitStates` at the end.
        accuracy: accuracy on ``data`` at the end (classification only, else ``nan``).
        first_nonfinite_step: the step where the loss became ``inf``/``nan``, if it did.
        initial_dead: per hidden layer, which units were dead before training (after the shift).
        final_dead: the same at the end.
        update_ratio: per step taken, ``‖ΔW_l‖/‖W_l‖`` of every weight layer (head last): the
            measured update-to-data ratio, whatever the optimizer.
    """

    steps: list[int] = field(default_factory=list)
    dead: list[float] = field(default_factory=list)
    off: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    final_states: UnitStates | None = None
    accuracy: float = math.nan
    first_nonfinite_step: int | None = None
    initial_dead: list[torch.Tensor] = field(default_factory=list)
    final_dead: list[torch.Tensor] = field(default_factory=list)
    update_ratio: list[list[float]] = field(default_factory=list)

    def revived(self) -> list[int]:
        """Per hidden layer, how many units dead before training are alive at the end."""
        return [int((a & ~b).sum()) for a, b in zip(self.initial_dead, self.final_dead,
                                                     strict=True)]

    def died(self) -> list[int]:
        """Per hidden layer, how many units alive before training are dead at the end."""
        return [int((~a & b).sum()) for a, b in zip(self.initial_dead, self.final_dead,
                                                     strict=True)]

    def median_update_ratio(self) -> list[float]:
        """Per step, the median over weight layers of ``‖ΔW‖/‖W‖``."""
        return [float(torch.tensor(r, dtype=torch.float64).median()) for r in self.update_ratio]

    def final_loss(self, window: int = 10) -> float:
        """Mean of the last ``window`` finite losses (``nan`` if none)."""
        finite = [v for v in self.loss if math.isfinite(v)][-window:]
        return sum(finite) / len(finite) if finite else math.nan


def dead_unit_run(data: Dataset, *, activation: str = "relu", depth: int = 6, width: int = 64,
                  init: str = "he_normal", lr: float = 0.01, optimizer: str = "sgd",
                  bias_shift: float = 0.0, steps: int = 200, batch_size: int = 64,
                  checkpoints: int = 10, seed: int = 0,
                  device: torch.device | str | None = None) -> DeadUnitRun:
    """Build a :class:`~gradpath.models.DeepMLP`, optionally shift its biases, train it, and
    count dead units before training and at ``checkpoints`` evenly spaced steps.

    Units are counted on the whole of ``data``, so "dead" means dead for every example there.
    A loss that becomes ``inf``/``nan`` stops the run and is recorded, never raised.

    Args:
        activation: ``"relu"``, ``"leaky_relu"``, or any name in the activation registry.
        init: an initialization scheme for the model (see :data:`gradpath.init.INITIALIZATIONS`).
        lr: learning rate; a too-high one kills ReLUs on its own.
        optimizer: one of :data:`gradpath.training.OPTIMIZERS` (its state persists over the run).
        bias_shift: added to every hidden bias after initialization (negative kills units).
        checkpoints: how many times to count units during training.

    Raises:
        ValueError: for an unknown optimizer or activation, non-positive steps, or checkpoints
            outside ``[1, steps]``.
    """
    check_run_length(steps, checkpoints)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size!r}")
    if device is not None:
        data = data.to(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DeepMLP(data.features, data.outputs, width=width, depth=depth, activation=activation,
                    init=init, generator=generator).to(data.x.device)
    shift_biases_(model, bias_shift)
    opt = make_optimizer(optimizer, list(model.parameters()), lr)
    criterion = loss_function(data)
    count_at = {round(steps * (i + 1) / checkpoints) for i in range(checkpoints)}
    run = DeadUnitRun()

    def count(step: int) -> None:
        states = unit_states(model, data.x)
        run.steps.append(step)
        run.dead.append(states.dead_overall)
        run.off.append(states.off_overall)

    count(0)
    run.initial_dead = dead_masks(model, data.x)
    weights = [cast(torch.Tensor, layer.weight) for layer in weight_layers(model)]
    n = len(data)
    model.train()
    for step in progress(range(1, steps + 1), "training"):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=generator).to(data.x.device)
        opt.zero_grad(set_to_none=True)
        loss = criterion(model(data.x[idx]), data.y[idx])
        value = float(loss.detach())
        run.loss.append(value)
        if not math.isfinite(value):
            run.first_nonfinite_step = step
            break
        loss.backward()
        before = [w.detach().clone() for w in weights]
        opt.step()
        run.update_ratio.append(relative_update_norms(before, [w.detach() for w in weights]))
        if step in count_at:
            count(step)
    run.final_states = unit_states(model, data.x)
    run.final_dead = dead_masks(model, data.x)
    if data.task == "classification" and run.first_nonfinite_step is None:
        run.accuracy = evaluate(model, data).get("accuracy", math.nan)
    return run
