"""A small training loop that records how the gradient behaves at every step.

:func:`train` runs plain minibatch training and records, per step, the loss, each weight layer's
gradient norm, the global gradient norm before and after clipping, and each layer's weight norm.
A loss or gradient that becomes ``inf``/``nan`` is a result, not a crash: the first step with a
non-finite loss and the first step with a non-finite gradient entry are recorded separately, and
training stops there (or carries on, if asked).

Recording is cheap: every step, all the norms come from one batched reduction on the device
(``torch._foreach_norm``) and reach the host in one transfer, so a GPU syncs once per step (or once
every ``record_every`` steps), not once per layer. ``make bench`` measures the cost against a bare
training loop. The norms are right for every finite gradient
and weight (see :func:`gradpath.numerics.tensor_norms`); whether a loss or a gradient is non-finite
is decided from the tensors themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
from torch import nn

from gradpath._checks import check_choice, check_finite_positive, check_int
from gradpath.data import Dataset
from gradpath.numerics import (
    _exact_norms_on_device,
    _fast_norm_list,
    _reliable_limits,
    _scaled_norm,
    _settle,
    _stacked,
    combined_norm,
    tensor_norms,
)
from gradpath.probes import weight_layers
from gradpath.progress import progress

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")

# torch.nn.utils.clip_grad_norm_ divides by (norm + 1e-6); train() clips with the same rule.
_CLIP_EPS = 1e-6


@dataclass
class TrainingHistory:
    """Everything :func:`train` measured, one entry per step taken.

    Attributes:
        loss: training loss of each step's minibatch.
        gradient_norms: per step, ``‖∂L/∂W_l‖`` of every weight layer (input layer first),
            measured before clipping.
        global_norm: per step, the norm of all gradients together before clipping.
        clipped_norm: per step, the same norm after clipping (equal when no clipping happened).
        weight_norms: per step, ``‖W_l‖`` of every weight layer after the update (at a step where
            training stopped, the weights it stopped with: that step's update was not taken).
        first_nonfinite_loss_step: the first step whose loss was ``inf``/``nan``.
        first_nonfinite_gradient_step: the first step with an ``inf``/``nan`` gradient entry.
        stopped_early: whether training stopped at a non-finite step instead of running all steps.

    Every norm is the true norm of finite entries, even past float32's reach for sums of squares
    (a norm above about ``1.8e19``): ``inf``/``nan`` appear exactly where a tensor holds one.
    """

    loss: list[float] = field(default_factory=list)
    gradient_norms: list[list[float]] = field(default_factory=list)
    global_norm: list[float] = field(default_factory=list)
    clipped_norm: list[float] = field(default_factory=list)
    weight_norms: list[list[float]] = field(default_factory=list)
    first_nonfinite_loss_step: int | None = None
    first_nonfinite_gradient_step: int | None = None
    stopped_early: bool = False

    @property
    def steps(self) -> int:
        return len(self.loss)

    @property
    def first_nonfinite_step(self) -> int | None:
        """The first step whose loss or any gradient entry was ``inf``/``nan`` (the earlier)."""
        found = [s for s in (self.first_nonfinite_loss_step, self.first_nonfinite_gradient_step)
                 if s is not None]
        return min(found) if found else None

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
        """Mean loss over the last ``window`` finite steps (``nan`` if there are none).

        Raises:
            TypeError, ValueError: unless ``window`` is a positive integer (``window=0`` would
                otherwise average every step).
        """
        check_int("window", window, minimum=1)
        finite = [v for v in self.loss if math.isfinite(v)][-window:]
        return float(np.mean(finite)) if finite else math.nan

    def summary(self) -> str:
        """One sentence on how the run ended."""
        if self.first_nonfinite_step is None:
            return f"ran {self.steps} steps; final loss {self.final_loss():.4g}"
        parts = []
        for what, step in (("loss", self.first_nonfinite_loss_step),
                           ("gradient", self.first_nonfinite_gradient_step)):
            parts.append(f"{what} first non-finite at step {step}" if step is not None
                         else f"{what} finite throughout")
        end = "stopped there" if self.stopped_early else f"ran on to step {self.steps - 1}"
        return f"{'; '.join(parts)}; {end}"

    def _note_nonfinite(self, step: int, loss_finite: bool, gradient_finite: bool) -> None:
        if not loss_finite and self.first_nonfinite_loss_step is None:
            self.first_nonfinite_loss_step = step
        if not gradient_finite and self.first_nonfinite_gradient_step is None:
            self.first_nonfinite_gradient_step = step


def check_run_length(steps: int, checkpoints: int | None = None) -> None:
    """Raise ``ValueError`` unless ``steps >= 1`` and, if given, ``1 <= checkpoints <= steps``.

    A bool is not a step count: ``steps=True`` raises (it would otherwise run one step).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if checkpoints is not None and (isinstance(checkpoints, bool)
                                    or not isinstance(checkpoints, int)
                                    or not 1 <= checkpoints <= steps):
        raise ValueError(f"checkpoints must be an integer in [1, steps], got {checkpoints!r}")


def make_optimizer(name: str, parameters: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Build an optimizer by name: one of :data:`OPTIMIZERS` (``momentum`` is SGD with 0.9).

    Raises:
        ValueError: for an unknown name, a learning rate that is not finite and positive
            (``inf`` and ``nan`` included), or no parameters.
        TypeError: for a learning rate that is not a number.
    """
    check_choice("optimizer", name, OPTIMIZERS)
    lr = check_finite_positive("lr", lr)
    parameters = list(parameters)
    if not parameters:
        raise ValueError("make_optimizer got no parameters to optimize (is every parameter "
                         "frozen, requires_grad=False?)")
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
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a gradpath.data.Dataset, got {type(data).__name__}")
    return nn.CrossEntropyLoss() if data.task == "classification" else nn.MSELoss()


def train(model: nn.Module, data: Dataset, *, steps: int, lr: float, optimizer: str = "sgd",
          batch_size: int | None = None, clip_norm: float | None = None,
          clip_value: float | None = None, seed: int = 0, stop_at_nonfinite: bool = True,
          record_every: int = 1, description: str = "training") -> TrainingHistory:
    """Train ``model`` on ``data`` and record the gradient at every step.

    Args:
        steps: optimizer steps to take.
        lr: learning rate.
        optimizer: one of :data:`OPTIMIZERS`.
        batch_size: examples per step; ``None`` uses the whole dataset every step.
        clip_norm: if set, rescale all gradients together so their global norm is at most this,
            after ``backward`` and before ``step``: ``torch.nn.utils.clip_grad_norm_``'s rule
            (multiply by ``min(1, clip_norm / (norm + 1e-6))``), but with the global norm computed
            without float32 overflow, so a finite gradient whose norm is above ``1.8e19`` is
            scaled down instead of being zeroed.
        clip_value: if set, clamp every gradient entry to ``[-clip_value, clip_value]``
            (``torch.nn.utils.clip_grad_value_``).
        seed: seeds the minibatch order.
        stop_at_nonfinite: stop at the first step whose loss or any gradient entry is
            ``inf``/``nan`` (the default), before its update, instead of running on with broken
            weights.
        record_every: move the recorded numbers from the device to the host once every this many
            steps (default 1: every step, which is free on a CPU). Larger values spare a GPU the
            per-step sync. The history recorded is the same; only a run that stops at a
            non-finite step notices it at the next transfer, so the model itself has taken the
            updates up to there (the history still ends at the first non-finite step).

    Returns:
        A :class:`TrainingHistory`. It never raises because training diverged.

    Raises:
        ValueError: for an empty data set, ``steps``, ``batch_size`` or ``record_every`` that
            is not a positive integer (a bool is not), an ``lr``, ``clip_norm`` or
            ``clip_value`` that is not finite and positive, an unknown optimizer, or a model
            whose input or output does not fit the data (see :func:`check_fits` and
            :func:`check_output`).
        TypeError: if ``model`` is not an ``nn.Module`` or ``data`` not a ``Dataset``.
    """
    check_run_length(steps)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    loss_function(data)   # checks data's type
    if len(data) == 0:
        raise ValueError("data has no examples: there is nothing to train on")
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_finite_positive("lr", lr)
    check_int("seed", seed, minimum=0)
    for name, value in (("clip_norm", clip_norm), ("clip_value", clip_value)):
        if value is not None:
            check_finite_positive(name, value)
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not (isinstance(batch_size, int) and batch_size >= 1)):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(record_every, bool) or not isinstance(record_every, int) or record_every < 1:
        raise ValueError(f"record_every must be a positive integer, got {record_every!r}")
    device = data.x.device
    model.to(device)
    model.train()
    check_fits(model, data)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(optimizer, params, lr)
    criterion = loss_function(data)
    weights = [cast(torch.Tensor, layer.weight) for layer in weight_layers(model)]
    plan = _MeasurementPlan(params, weights)
    generator = torch.Generator().manual_seed(seed)
    recorder = _Recorder(TrainingHistory(), len(weights), stop_at_nonfinite)
    n = len(data)
    for step in progress(range(steps), description):
        if batch_size is None or batch_size >= n:
            x, y = data.x, data.y
        else:
            idx = torch.randint(0, n, (batch_size,), generator=generator).to(device)
            x, y = data.x[idx], data.y[idx]
        opt.zero_grad(set_to_none=True)
        out = model(x)
        if step == 0:
            check_output(out, data, y)
        loss = criterion(out, y)
        loss.backward()
        if record_every == 1:
            if _host_step(recorder, plan, loss, clip_norm, clip_value):
                break
        else:
            recorder.pending.append(_device_step(plan, loss, clip_norm, clip_value))
            if (step + 1) % record_every == 0 and recorder.flush():
                break
        opt.step()
    else:
        recorder.flush()
    history = recorder.history
    if len(history.weight_norms) < history.steps:
        history.weight_norms.append(tensor_norms(weights))   # after the last update taken
    history.stopped_early = history.diverged and stop_at_nonfinite and history.steps < steps
    return history


# Gradients of parameters other than the weight layers' weights (biases, norm scales) at most
# this large are concatenated into one vector, so their norm costs one reduction, not one each.
_SMALL = 1 << 16


class _MeasurementPlan:
    """Which tensors one step's reduction covers, and where each result goes.

    The reduction runs over, in order: the gradient of every trained weight layer, the gradients
    of the other large parameters, one concatenation of the other small gradients, and the
    weight layers' weights (before the step's update). Their norms give the per-layer gradient
    norms, the global norm (all gradients together) and the weight norms. On a GPU it is one
    ``torch._foreach_norm`` call; on the CPU, where that call is only a loop, the small tensors
    share one call and each large one gets its own ``vector_norm`` (see
    :func:`gradpath.numerics._cpu_norm_list`).
    """

    def __init__(self, params: list[nn.Parameter], weights: list[torch.Tensor]) -> None:
        self.params = params
        self.weights = weights
        position = {id(p): i for i, p in enumerate(params)}
        in_layers = {id(w) for w in weights}
        self.layered = [params[position[id(w)]] for w in weights if id(w) in position]
        # where each weight layer's gradient norm sits in the reduction (None: frozen layer)
        slots = iter(range(len(self.layered)))
        self.layer_slot = [next(slots) if id(w) in position else None for w in weights]
        others = [p for p in params if id(p) not in in_layers]
        self.large = [p for p in others if p.numel() > _SMALL]
        self.small = [p for p in others if p.numel() <= _SMALL]
        self.separate = self.layered + self.large
        self.gradients = len(self.separate) + (1 if self.small else 0)
        self.limits: list[float] | None = None

    def tensors(self) -> list[torch.Tensor]:
        """This step's gradients (as the reduction groups them) followed by the weights.

        Call under ``torch.no_grad()``: the weights are the parameters themselves.
        """
        grads = [_grad(p) for p in self.separate]
        if self.small:
            grads.append(torch.cat([_grad(p).reshape(-1) for p in self.small]))
        return grads + self.weights

    def all_gradients(self) -> list[torch.Tensor]:
        """Every parameter's gradient tensor itself (to clip in place)."""
        return [p.grad for p in self.params if p.grad is not None]

    def layer_norms(self, gradient_norms: list[float]) -> list[float]:
        return [gradient_norms[i] if i is not None else 0.0 for i in self.layer_slot]


def _grad(p: nn.Parameter) -> torch.Tensor:
    return p.grad if p.grad is not None else torch.zeros_like(p)


class _Recorder:
    """Collects each step's numbers into a :class:`TrainingHistory`.

    Each step's weight norms are measured before that step's update, in the same fused call as
    its gradients; they are the weight norms after the previous step's update, and are stored
    there. The last entry is filled in after the loop.
    """

    def __init__(self, history: TrainingHistory, layers: int, stop_at_nonfinite: bool) -> None:
        self.history = history
        self.layers = layers
        self.stop_at_nonfinite = stop_at_nonfinite
        self.pending: list[torch.Tensor] = []

    def add(self, loss: float, total: float, clipped: float, layer_norms: list[float],
            weights_before: list[float], gradient_finite: bool) -> bool:
        """Record one step; return whether training must stop here."""
        h = self.history
        step = h.steps
        if step > 0:
            h.weight_norms.append(weights_before)
        h.loss.append(loss)
        h.gradient_norms.append(layer_norms)
        h.global_norm.append(total)
        h.clipped_norm.append(clipped)
        h._note_nonfinite(step, math.isfinite(loss), gradient_finite)
        if self.stop_at_nonfinite and h.diverged:
            h.weight_norms.append(weights_before)   # the step's update is not taken
            return True
        return False

    def flush(self) -> bool:
        """Move the pending device rows to the host in one transfer; return whether to stop."""
        if not self.pending:
            return False
        rows = torch.stack(self.pending).tolist()
        self.pending.clear()
        k = self.layers
        for row in rows:
            loss, total, clipped, finite = row[:4]
            if self.add(loss, total, clipped, row[4:4 + k], row[4 + k:], finite == 1.0):
                return True
        return False


def _clip_coefficient(total: float, clip_norm: float) -> float:
    """``clip_grad_norm_``'s factor ``min(1, clip_norm / (total + 1e-6))`` (``nan`` stays nan)."""
    coefficient = clip_norm / (total + _CLIP_EPS)
    return coefficient if math.isnan(coefficient) or coefficient < 1.0 else 1.0


def _host_step(recorder: _Recorder, plan: _MeasurementPlan, loss: torch.Tensor,
               clip_norm: float | None, clip_value: float | None) -> bool:
    """One step's measurements with one device-to-host transfer; clips in place; True to stop."""
    with torch.no_grad():
        tensors = plan.tensors()
        if plan.limits is None:
            plan.limits = _reliable_limits(tensors)
        values = _stacked([loss.reshape(())] + _fast_norm_list(tensors)).tolist()
    norms = _settle(values[1:], tensors, plan.limits)
    grad_norms, weight_norms = norms[:plan.gradients], norms[plan.gradients:]
    total = combined_norm(grad_norms)
    # a non-finite norm survives _settle only where torch.isfinite found a non-finite entry
    gradient_finite = all(math.isfinite(v) for v in grad_norms)
    if recorder.add(values[0], total, total, plan.layer_norms(grad_norms), weight_norms,
                    gradient_finite):
        return True
    clipped = total
    if clip_norm is not None:
        coefficient = _clip_coefficient(total, clip_norm)
        if coefficient != 1.0:
            torch._foreach_mul_(plan.all_gradients(), coefficient)
            clipped = total * coefficient
    if clip_value is not None:
        torch.nn.utils.clip_grad_value_(plan.params, clip_value)
        clipped = combined_norm(tensor_norms(plan.all_gradients()))
    recorder.history.clipped_norm[-1] = clipped
    return False


def _device_step(plan: _MeasurementPlan, loss: torch.Tensor, clip_norm: float | None,
                 clip_value: float | None) -> torch.Tensor:
    """One step's measurements as a device row (no sync); clips in place.

    Row: ``[loss, global norm, clipped norm, gradient finite (1/0), layer gradient norms...,
    weight norms before the update...]``.
    """
    with torch.no_grad():
        norms = _exact_norms_on_device(plan.tensors())
    grad_norms, weight_norms = norms[:plan.gradients], norms[plan.gradients:]
    total = _scaled_norm(grad_norms)
    # exact norms: non-finite exactly when an entry is (an inf or nan entry propagates)
    finite = torch.isfinite(grad_norms).all().to(norms.dtype)
    clipped = total
    if clip_norm is not None:
        coefficient = torch.clamp(clip_norm / (total + _CLIP_EPS), max=1.0)
        grads = plan.all_gradients()
        torch._foreach_mul_(grads, coefficient.to(grads[0].dtype))
        clipped = total * coefficient
    if clip_value is not None:
        torch.nn.utils.clip_grad_value_(plan.params, clip_value)
        clipped = _scaled_norm(_exact_norms_on_device(plan.all_gradients()))
    zero = norms.new_zeros(1)
    layer_norms = [grad_norms[i:i + 1] if i is not None else zero for i in plan.layer_slot]
    return torch.cat([loss.detach().reshape(1).to(norms.dtype), total.reshape(1),
                      clipped.reshape(1), finite.reshape(1), *layer_norms, weight_norms])


def check_fits(model: nn.Module, data: Dataset) -> None:
    """Raise ``ValueError`` unless ``model`` takes ``data.x``'s features.

    Checked for models that state their input size as an integer ``in_features`` attribute
    (:class:`gradpath.models.DeepMLP`, ``nn.Linear``), instead of torch's "mat1 and mat2 shapes
    cannot be multiplied" from deep inside the forward pass. The output side is checked on the
    first forward pass (:func:`check_output`).
    """
    expected = getattr(model, "in_features", None)
    if isinstance(expected, int) and not isinstance(expected, bool) \
            and data.x.shape[-1] != expected:
        raise ValueError(f"the model takes {expected} input features but data.x has "
                         f"{data.x.shape[-1]} (shape {tuple(data.x.shape)})")


def check_output(output: torch.Tensor, data: Dataset, y: torch.Tensor | None = None) -> None:
    """Raise ``ValueError`` unless the model's ``output`` fits the targets ``y`` (``data.y``).

    A classifier's output must have shape (examples, at least ``data.classes``, ...), one more
    dimension than ``y`` (torch would fail with "Target 7 is out of bounds"); a regression output
    must have exactly ``y``'s shape (the MSE loss would silently broadcast ``(N, 1)`` against
    ``(N,)`` into an ``(N, N)`` error).
    """
    target = data.y if y is None else y
    shape = tuple(output.shape)
    if data.task == "classification":
        if output.dim() != target.dim() + 1 or shape[1] < data.classes:
            raise ValueError(f"the model's output has shape {shape} but the data has "
                             f"{data.classes} classes and targets of shape "
                             f"{tuple(target.shape)}: a classifier needs shape (examples, "
                             f"{data.classes}{', ...' if target.dim() > 1 else ''})")
    elif shape != tuple(target.shape):
        raise ValueError(f"the model's output has shape {shape} but the targets y have shape "
                         f"{tuple(target.shape)}: they must match (MSE would broadcast them)")


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset) -> dict[str, float]:
    """Loss (and accuracy, for classification) of ``model`` on ``data``, in eval mode.

    The model's train/eval mode is put back afterwards, even if the forward pass fails.

    Raises:
        ValueError: for an empty data set, or a model that does not fit the data
            (:func:`check_fits`, :func:`check_output`).
        TypeError: if ``model`` is not an ``nn.Module`` or ``data`` not a ``Dataset``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    criterion = loss_function(data)
    if len(data) == 0:
        raise ValueError("data has no examples: the loss of an empty set is undefined")
    check_fits(model, data)
    was_training = model.training
    model.eval()
    try:
        out = model(data.x)
        check_output(out, data)
        result = {"loss": float(criterion(out, data.y))}
        if data.task == "classification":
            result["accuracy"] = float((out.argmax(dim=1) == data.y).float().mean())
    finally:
        model.train(was_training)
    return result


def update_to_data_ratios(history: TrainingHistory, lr: float) -> np.ndarray:
    """``lr · ‖∂L/∂W_l‖ / ‖W_l‖`` for every step and weight layer, shape (steps, layers).

    The *update-to-data ratio* practitioners watch instead of absolute gradient norms: it is
    scale-free (the same for a layer whatever its width or the loss's units), and for plain SGD it
    is exactly the relative size of each step's update. Around ``1e-3`` is the usual target
    (Karpathy, "Building makemore part 3"; CS231n's "ratio of weights:updates"); far below, a layer
    barely moves; far above, each step rewrites it. For momentum and Adam the real update differs
    from ``lr · g``: measure ``‖ΔW‖/‖W‖`` with :func:`relative_update_norms` there.

    The weight norm used is the one recorded after the step (``history.weight_norms``), which
    differs from the norm before it by the update itself, a relative ``O(ratio)``. A non-finite
    gradient gives ``inf``/``nan`` in its entries.

    Raises:
        ValueError: for an ``lr`` that is not finite and positive, or a history with no
            recorded step.
    """
    check_finite_positive("lr", lr)
    if history.steps == 0:
        raise ValueError("history has no recorded step")
    grads = history.gradient_norm_matrix()
    weights = history.weight_norm_matrix()[: len(grads)]
    with np.errstate(divide="ignore", invalid="ignore"):
        return lr * grads / weights


def relative_update_norms(before: list[torch.Tensor], after: list[torch.Tensor]) -> list[float]:
    """``‖after_i − before_i‖ / ‖before_i‖`` for each pair of tensors: the measured relative size
    of an optimizer step, whatever the optimizer (the update-to-data ratio of momentum or Adam).

    Take ``before`` as detached copies of the weights (``[w.detach().clone() for w in ...]``) and
    ``after`` as the weights once the step is taken. Norms are float64-accurate
    (:func:`gradpath.probes.tensor_norms`); a zero ``before`` gives ``inf`` (or ``nan`` if nothing
    moved).

    Raises:
        ValueError: if the lists differ in length or a pair differs in shape.
        TypeError: if an item is not a floating-point tensor.
    """
    if isinstance(before, torch.Tensor) or isinstance(after, torch.Tensor):
        raise TypeError("before and after must be lists of tensors (wrap one tensor as [t])")
    before, after = list(before), list(after)
    if len(before) != len(after):
        raise ValueError(f"before has {len(before)} tensors, after has {len(after)}")
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        for name, t in (("before", b), ("after", a)):
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                what = f"dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise TypeError(f"{name}[{i}] must be a floating-point tensor, got {what}")
    for b, a in zip(before, after, strict=True):
        if b.shape != a.shape:
            raise ValueError(f"shapes differ: {tuple(b.shape)} and {tuple(a.shape)}")
    steps = tensor_norms([a.detach() - b for b, a in zip(before, after, strict=True)])
    sizes = tensor_norms(before)
    out = []
    for s, w in zip(steps, sizes, strict=True):
        out.append(s / w if w > 0 else (math.nan if s == 0 else math.inf))
    return out
