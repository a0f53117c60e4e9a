"""Normalization layers written out, and experiments on what they really do.

- :func:`batch_norm` is the batch-norm formula in four lines, and :class:`BatchNormWrittenOut` the
  whole layer (running statistics, train and eval mode); :func:`check_against_torch` compares it
  with ``torch.nn.BatchNorm1d``.
- :func:`batched_accuracy` and :func:`prediction_spread` show the train/eval pitfall: in training
  mode an example's prediction depends on the other examples in its batch;
  :func:`batch_norm_noise` measures that dependence as noise, by batch size.
- :class:`NoisyBatchNorm1d` is batch norm followed by a random per-unit scale and shift that change
  at every step, after Santurkar et al. (2018): the layer inputs keep shifting, on purpose.
- :func:`train_and_probe` trains with plain minibatch SGD (or another optimizer) and calls a probe
  every few steps; :func:`layer_input_shift` and :func:`landscape_along_gradient` are the probes
  that measure "internal covariate shift" and the smoothness of the loss.
- :func:`normalization_grid` trains one network per (normalization, batch size) pair, and
  :func:`markdown_table` prints the results as a table.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from gradpath.data import Dataset
from gradpath.models import NORMALIZATIONS, DeepMLP
from gradpath.numerics import as_float64, tensor_norm
from gradpath.plots import plot_training_curves, use_course_style
from gradpath.probes import weight_layers
from gradpath.progress import progress
from gradpath.training import evaluate, loss_function, make_optimizer, relative_update_norms

EPS = 1e-5
MOMENTUM = 0.1


# --------------------------------------------------------------------------- the formula


def _check_batch(x: torch.Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"expected a (batch, features) tensor, got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError("batch norm needs at least 2 examples per batch in training mode "
                         f"(a variance over 1 value is 0), got {x.shape[0]}")


def batch_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature batch mean ``μ_B`` and (biased) batch variance ``σ_B²`` of a (batch, features)
    tensor."""
    _check_batch(x)
    mean = x.mean(dim=0)
    variance = ((x - mean) ** 2).mean(dim=0)
    return mean, variance


def batch_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
               eps: float = EPS) -> torch.Tensor:
    """Batch normalization in training mode, written out.

    ``x̂ = (x − μ_B) / sqrt(σ_B² + ε)`` per feature, then ``y = γ x̂ + β``.

    Args:
        x: a batch, shape (batch, features), at least two examples.
        gamma, beta: learnable scale and shift, one per feature.
        eps: added to the variance so a feature that is constant over the batch gives 0, not
            0/0 = nan. ``eps=0`` is allowed, to show exactly that.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    mean, variance = batch_statistics(x)
    if gamma.shape != mean.shape or beta.shape != mean.shape:
        raise ValueError(f"gamma and beta need shape {tuple(mean.shape)}, got "
                         f"{tuple(gamma.shape)} and {tuple(beta.shape)}")
    x_hat = (x - mean) / torch.sqrt(variance + eps)
    return gamma * x_hat + beta


class BatchNormWrittenOut(nn.Module):
    """``nn.BatchNorm1d`` rebuilt from :func:`batch_norm`, with running statistics.

    Training mode normalizes with the batch's own mean and biased variance and updates the running
    estimates ``r ← (1 − momentum)·r + momentum·b`` (PyTorch stores the *unbiased* variance,
    ``σ_B² · n/(n−1)``, in the running estimate). Evaluation mode normalizes with the running
    estimates, so each example's output no longer depends on its batch.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, features: int, eps: float = EPS, momentum: float = MOMENTUM) -> None:
        super().__init__()
        if not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be a positive integer, got {features!r}")
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(features))   # γ
        self.bias = nn.Parameter(torch.zeros(features))    # β
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean, variance = batch_statistics(x)
            n = x.shape[0]
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(
                    self.momentum * variance * n / (n - 1))
            return batch_norm(x, self.weight, self.bias, self.eps)
        x_hat = (x - self.running_mean) / torch.sqrt(self.running_var + self.eps)
        return self.weight * x_hat + self.bias


@dataclass(frozen=True)
class BatchNormCheck:
    """Largest absolute differences between :class:`BatchNormWrittenOut` and ``nn.BatchNorm1d``.

    Attributes:
        train_output: outputs in training mode, over all batches.
        input_gradient: ``∂L/∂x`` in training mode.
        running_mean, running_var: the running estimates after the training batches.
        eval_output: outputs in evaluation mode on a fresh batch.
    """

    train_output: float
    input_gradient: float
    running_mean: float
    running_var: float
    eval_output: float

    @property
    def largest(self) -> float:
        return max(self.train_output, self.input_gradient, self.running_mean, self.running_var,
                   self.eval_output)


def check_against_torch(features: int = 8, batches: int = 5, batch_size: int = 16,
                        eps: float = EPS, momentum: float = MOMENTUM,
                        seed: int = 0) -> BatchNormCheck:
    """Feed the same batches to both layers (same random γ, β) and compare everything."""
    if batches < 1 or batch_size < 2:
        raise ValueError("need batches >= 1 and batch_size >= 2")
    g = torch.Generator().manual_seed(seed)
    ours = BatchNormWrittenOut(features, eps=eps, momentum=momentum).double()
    theirs = nn.BatchNorm1d(features, eps=eps, momentum=momentum).double()
    with torch.no_grad():
        gamma = 1 + 0.5 * torch.randn(features, generator=g, dtype=torch.float64)
        beta = torch.randn(features, generator=g, dtype=torch.float64)
        for layer in (ours, theirs):
            layer.weight.copy_(gamma)
            layer.bias.copy_(beta)
    out_diff = grad_diff = 0.0
    for _ in range(batches):
        x = 3 + 2 * torch.randn(batch_size, features, generator=g, dtype=torch.float64)
        weights = torch.randn(batch_size, features, generator=g, dtype=torch.float64)
        outputs, grads = [], []
        for layer in (ours, theirs):
            xi = x.clone().requires_grad_(True)
            y = layer(xi)
            (grad,) = torch.autograd.grad((y * weights).sum(), xi)
            outputs.append(y.detach())
            grads.append(grad)
        out_diff = max(out_diff, float((outputs[0] - outputs[1]).abs().max()))
        grad_diff = max(grad_diff, float((grads[0] - grads[1]).abs().max()))
    ours.eval()
    theirs.eval()
    x = 3 + 2 * torch.randn(batch_size, features, generator=g, dtype=torch.float64)
    with torch.no_grad():
        eval_diff = float((ours(x) - theirs(x)).abs().max())
    assert theirs.running_mean is not None and theirs.running_var is not None
    return BatchNormCheck(
        train_output=out_diff, input_gradient=grad_diff,
        running_mean=float((ours.running_mean - theirs.running_mean).abs().max()),
        running_var=float((ours.running_var - theirs.running_var).abs().max()),
        eval_output=eval_diff)


# --------------------------------------------------------------------------- train/eval pitfall


@torch.no_grad()
def batched_accuracy(model: nn.Module, data: Dataset, batch_size: int, *,
                     train_mode: bool) -> float:
    """Accuracy of ``model`` on ``data`` predicted ``batch_size`` examples at a time.

    ``train_mode=True`` reproduces the classic mistake of predicting without ``model.eval()``:
    batch norm then uses each batch's own statistics. The model is copied first, so its running
    statistics are left untouched either way. A last batch of a single example is dropped in
    training mode (batch norm cannot normalize one value).
    """
    if data.task != "classification":
        raise ValueError("batched_accuracy needs a classification dataset")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    probe = copy.deepcopy(model)
    probe.train(train_mode)
    correct = total = 0
    for start in range(0, len(data), batch_size):
        x, y = data.x[start:start + batch_size], data.y[start:start + batch_size]
        if train_mode and len(x) < 2:
            continue
        correct += int((probe(x).argmax(dim=1) == y).sum())
        total += len(x)
    return correct / total


@torch.no_grad()
def prediction_spread(model: nn.Module, example: torch.Tensor, others: torch.Tensor, *,
                      batch_size: int = 8, trials: int = 20, train_mode: bool,
                      seed: int = 0) -> float:
    """How much one example's output changes with the company it keeps.

    Puts ``example`` into ``trials`` batches filled with different random rows of ``others`` and
    returns the largest difference between any two of its output vectors (0 means its
    prediction does not depend on its batch). Works on a copy of ``model``.
    """
    if example.dim() != 1:
        raise ValueError("example must be one input vector (1-D)")
    if batch_size < 2 or trials < 2:
        raise ValueError("need batch_size >= 2 and trials >= 2")
    if len(others) < batch_size - 1:
        raise ValueError(f"need at least {batch_size - 1} other examples")
    probe = copy.deepcopy(model)
    probe.train(train_mode)
    g = torch.Generator().manual_seed(seed)
    outputs = []
    for _ in range(trials):
        pick = torch.randperm(len(others), generator=g)[:batch_size - 1].to(others.device)
        batch = torch.cat([example.unsqueeze(0), others[pick]])
        outputs.append(probe(batch)[0])
    stacked = torch.stack(outputs)
    return float((stacked.max(dim=0).values - stacked.min(dim=0).values).max())


@torch.no_grad()
def batch_norm_noise(example: torch.Tensor, others: torch.Tensor, batch_sizes: Sequence[int], *,
                     trials: int = 50, seed: int = 0) -> dict[int, float]:
    """The noise batch norm adds to one example in training mode, by batch size.

    For each batch size ``m``, puts ``example`` into ``trials`` batches with ``m − 1`` random rows
    of ``others``, normalizes each batch with its own statistics (:func:`batch_norm`, ``γ = 1``,
    ``β = 0``), and returns the standard deviation over the trials of the example's normalized
    value, averaged over features: how far, in units of the feature's own spread, its
    representation moves with the company it keeps. Batch statistics from ``m`` examples carry an
    error of order ``1/√m``, so the noise shrinks like ``1/√m``.

    Raises:
        ValueError: for a batch size below 2 or above ``len(others) + 1``, or fewer than 2 trials.
    """
    if example.dim() != 1 or others.dim() != 2 or others.shape[1] != example.shape[0]:
        raise ValueError("example must be a vector and others a (rows, features) matrix")
    if trials < 2:
        raise ValueError(f"trials must be at least 2, got {trials}")
    g = torch.Generator().manual_seed(seed)
    features = example.shape[0]
    out: dict[int, float] = {}
    for m in batch_sizes:
        if not 2 <= m <= len(others) + 1:
            raise ValueError(f"batch sizes must be in [2, {len(others) + 1}], got {m}")
        values = []
        for _ in range(trials):
            pick = torch.randperm(len(others), generator=g)[:m - 1].to(others.device)
            batch = torch.cat([example.unsqueeze(0), others[pick]]).double()
            ones = torch.ones(features, dtype=torch.float64, device=batch.device)
            values.append(batch_norm(batch, ones, torch.zeros_like(ones))[0])
        out[int(m)] = float(torch.stack(values).std(dim=0).mean())
    return out


# --------------------------------------------------------------------------- noisy batch norm


class NoisyBatchNorm1d(nn.BatchNorm1d):
    """Batch norm whose output distribution is deliberately shaken at every training step.

    After the usual normalization and ``γ, β``, each unit ``j`` is scaled by ``s_j`` and shifted by
    ``m_j``, with ``log s_j ~ U(−log scale, log scale)`` and ``m_j ~ U(−shift, shift)`` drawn afresh
    at every forward pass in training mode. The next layer therefore sees an input distribution
    whose mean and variance change from step to step: far more "internal covariate shift" than a
    network without batch norm has. Evaluation mode adds no noise.

    Args:
        shift: half-width of the uniform distribution of the per-unit shift.
        scale: the per-unit scale lies in ``[1/scale, scale]`` (``scale >= 1``).
        generator: where the noise comes from (seed it for reproducible runs).
    """

    def __init__(self, num_features: int, shift: float = 0.5, scale: float = 1.5,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(num_features)
        if shift < 0 or scale < 1:
            raise ValueError(f"need shift >= 0 and scale >= 1, got shift={shift}, scale={scale}")
        self.shift = shift
        self.scale = scale
        self.generator = generator if generator is not None else torch.Generator()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if not self.training:
            return out
        n = out.shape[1]
        u = torch.rand(2, n, generator=self.generator).to(out.device, out.dtype) * 2 - 1
        s = torch.exp(u[0] * math.log(self.scale))
        m = u[1] * self.shift
        return out * s + m

    def __deepcopy__(self, memo: dict[int, object]) -> NoisyBatchNorm1d:
        clone = NoisyBatchNorm1d(self.num_features, self.shift, self.scale, torch.Generator())
        clone.generator.set_state(self.generator.get_state())
        clone.load_state_dict(self.state_dict())
        clone.train(self.training)
        return clone.to(self.weight.device)


def add_noise_to_batch_norm_(model: nn.Module, *, shift: float = 0.5, scale: float = 1.5,
                             seed: int = 0) -> nn.Module:
    """Replace every ``nn.BatchNorm1d`` in ``model`` by a :class:`NoisyBatchNorm1d` (in place).

    The new layers keep the old ones' ``γ``, ``β`` and running statistics and share one seeded
    noise generator. Returns the model.

    Raises:
        ValueError: if the model has no ``nn.BatchNorm1d`` layer.
    """
    generator = torch.Generator().manual_seed(seed)
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm1d) and not isinstance(child, NoisyBatchNorm1d):
                noisy = NoisyBatchNorm1d(child.num_features, shift, scale, generator)
                noisy.load_state_dict(child.state_dict())
                noisy.to(child.weight.device)
                setattr(parent, name, noisy)
                replaced += 1
    if not replaced:
        raise ValueError("model has no nn.BatchNorm1d layer to make noisy "
                         "(build it with norm='batch')")
    return model


# --------------------------------------------------------------------------- training with probes


@dataclass
class ProbedRun:
    """What :func:`train_and_probe` recorded.

    Attributes:
        loss: training loss of every step's minibatch.
        probe_steps: the steps at which the probe ran (before that step's update).
        probes: the probe's result at each of those steps.
        update_ratio: with ``record_updates=True``, per step taken, ``‖ΔW_l‖/‖W_l‖`` for every
            weight layer (input layer first): the measured update-to-data ratio.
    """

    loss: list[float] = field(default_factory=list)
    probe_steps: list[int] = field(default_factory=list)
    probes: list[object] = field(default_factory=list)
    update_ratio: list[list[float]] = field(default_factory=list)

    def median_update_ratio(self, layer: int | None = None) -> float:
        """Median over the steps of ``‖ΔW‖/‖W‖``, for one weight layer (0 = input layer, -1 =
        head) or, with ``layer=None``, of every layer's value at every step.

        Raises:
            ValueError: if no update ratio was recorded.
        """
        if not self.update_ratio:
            raise ValueError("no update ratio recorded: train with record_updates=True")
        table = torch.tensor(self.update_ratio, dtype=torch.float64)
        values = table.flatten() if layer is None else table[:, layer]
        return float(values.median())

    def final_loss(self, window: int = 10) -> float:
        """Mean of the last ``window`` finite losses (``nan`` if none)."""
        finite = [v for v in self.loss if math.isfinite(v)][-window:]
        return float(np.mean(finite)) if finite else math.nan


ProbeFunction = Callable[[nn.Module, torch.Tensor, torch.Tensor], object]


def train_and_probe(model: nn.Module, data: Dataset, *, steps: int, lr: float,
                    batch_size: int, probe: ProbeFunction | None = None, every: int = 10,
                    optimizer: str = "sgd", seed: int = 0,
                    record_updates: bool = False) -> ProbedRun:
    """Minibatch training that hands the model to ``probe`` every ``every`` steps.

    ``probe(model, x, y)`` receives the model (in training mode) and that step's minibatch, before
    the update; it should work on a copy if it changes anything. Training stops at the first
    non-finite loss, which is recorded. With ``record_updates=True`` every step also records the
    update-to-data ratio ``‖ΔW_l‖/‖W_l‖`` of each weight layer
    (:func:`gradpath.training.relative_update_norms`).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = data.x.device
    model.to(device).train()
    opt = make_optimizer(optimizer, list(model.parameters()), lr)
    criterion = loss_function(data)
    generator = torch.Generator().manual_seed(seed)
    run = ProbedRun()
    weights = [cast(torch.Tensor, layer.weight) for layer in weight_layers(model)]
    for step in progress(range(steps), "training"):
        idx = torch.randint(0, len(data), (batch_size,), generator=generator).to(device)
        x, y = data.x[idx], data.y[idx]
        if probe is not None and step % every == 0:
            run.probe_steps.append(step)
            run.probes.append(probe(model, x, y))
        opt.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        value = float(loss.detach())
        run.loss.append(value)
        if not math.isfinite(value):
            break
        loss.backward()
        before = [w.detach().clone() for w in weights] if record_updates else []
        opt.step()
        if record_updates:
            run.update_ratio.append(relative_update_norms(before, [w.detach() for w in weights]))
    return run


# --------------------------------------------------------------------------- covariate shift


def _activation_inputs(model: nn.Module) -> list[nn.Module]:
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ValueError("the model needs a `blocks` list whose items have an `.activation` "
                         "(e.g. gradpath.models.DeepMLP)")
    return [b.activation for b in blocks]


@dataclass(frozen=True)
class LayerInputs:
    """Per-unit mean and standard deviation of one layer's activation input on a probe batch.

    Both are float64 tensors of shape (units,), on the CPU (accumulated in float64, so finite
    inputs give finite statistics)."""

    mean: torch.Tensor
    std: torch.Tensor


def layer_input_probe(layer: int, batch: torch.Tensor) -> Callable[[nn.Module, torch.Tensor,
                                                                   torch.Tensor], LayerInputs]:
    """A probe for :func:`train_and_probe`: the distribution that hidden ``layer`` (0-based) feeds
    into its activation function, measured on the fixed ``batch`` in training mode (noise and
    batch statistics included: what the layer really sees), on a copy of the model."""

    def probe(model: nn.Module, _x: torch.Tensor, _y: torch.Tensor) -> LayerInputs:
        clone = copy.deepcopy(model)
        targets = _activation_inputs(clone)
        if not 0 <= layer < len(targets):
            raise ValueError(f"layer must be in [0, {len(targets) - 1}], got {layer}")
        seen: list[torch.Tensor] = []
        handle = targets[layer].register_forward_hook(
            lambda _m, inputs, _o: seen.append(inputs[0].detach()))
        try:
            with torch.no_grad():
                clone(batch)
        finally:
            handle.remove()
        z = as_float64(seen[0])
        return LayerInputs(z.mean(dim=0).cpu(), z.std(dim=0).cpu())

    return probe


def layer_input_shift(records: Sequence[LayerInputs]) -> float:
    """Average step-to-step change of a layer's input distribution, in units of its own spread.

    For consecutive probes ``a, b``, the mean over units of ``(|μ_b − μ_a| + |σ_b − σ_a|) / σ_a``,
    averaged over the run: by how many of its standard deviations the distribution feeding each
    unit moves between probes. Measuring in standard deviations makes networks whose
    pre-activations have very different scales comparable.
    """
    if len(records) < 2:
        raise ValueError("need at least two probes to measure a shift")
    changes = []
    for a, b in zip(records[:-1], records[1:], strict=True):
        spread = a.std.clamp_min(1e-12)
        changes.append(float((((b.mean - a.mean).abs() + (b.std - a.std).abs()) / spread).mean()))
    return float(np.mean(changes))


# --------------------------------------------------------------------------- loss landscape


@dataclass(frozen=True)
class LandscapeProbe:
    """The loss and gradient along the gradient direction, from one point of training.

    Attributes:
        step_sizes: the ``η`` of each probe point ``w − η·g``.
        losses: ``L(w − η g)`` for each ``η``.
        gradient_changes: ``‖∇L(w − η g) − ∇L(w)‖`` for each ``η``.
        gradient_norm: ``‖∇L(w)‖``.
    """

    step_sizes: list[float]
    losses: list[float]
    gradient_changes: list[float]
    gradient_norm: float

    @property
    def loss_range(self) -> float:
        """``max − min`` of the loss along the step: how much it varies (Santurkar et al.)."""
        finite = [v for v in self.losses if math.isfinite(v)]
        return float(max(finite) - min(finite)) if finite else math.inf

    @property
    def max_gradient_change(self) -> float:
        """The largest ``‖∇L(w − η g) − ∇L(w)‖``: how badly the gradient predicts its neighbours."""
        return float(max(self.gradient_changes))

    @property
    def effective_smoothness(self) -> float:
        """``max_η ‖∇L(w − η g) − ∇L(w)‖ / ‖η g‖``, a local estimate of the Lipschitz constant
        of the gradient (the "effective β-smoothness")."""
        return float(max(c / (eta * self.gradient_norm)
                         for c, eta in zip(self.gradient_changes, self.step_sizes, strict=True)))


def _flat_gradient(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.detach().flatten() if p.grad is not None
                      else torch.zeros_like(p).flatten() for p in model.parameters()])


def landscape_along_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                             step_sizes: Sequence[float],
                             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                             ) -> LandscapeProbe:
    """Walk from the current weights along the negative gradient and record loss and gradient.

    Works on a copy of ``model`` in its current mode (training mode for a network with batch
    norm, so the batch's own statistics are used, as during training).
    """
    if not step_sizes or any(not eta > 0 for eta in step_sizes):
        raise ValueError("step_sizes must be a non-empty list of positive numbers")
    clone = copy.deepcopy(model)
    params = list(clone.parameters())
    clone.zero_grad(set_to_none=True)
    loss_fn(clone(x), y).backward()
    start = [p.detach().clone() for p in params]
    direction = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                 for p in params]
    g0 = _flat_gradient(clone)
    losses, changes = [], []
    for eta in step_sizes:
        with torch.no_grad():
            for p, w, d in zip(params, start, direction, strict=True):
                p.copy_(w - eta * d)
        clone.zero_grad(set_to_none=True)
        loss = loss_fn(clone(x), y)
        loss.backward()
        losses.append(float(loss.detach()))
        changes.append(tensor_norm(as_float64(_flat_gradient(clone)) - as_float64(g0)))
    return LandscapeProbe([float(e) for e in step_sizes], losses, changes, tensor_norm(g0))


def landscape_probe(step_sizes: Sequence[float], loss_fn: Callable[[torch.Tensor, torch.Tensor],
                    torch.Tensor]) -> Callable[[nn.Module, torch.Tensor, torch.Tensor],
                                               LandscapeProbe]:
    """A probe for :func:`train_and_probe` that runs :func:`landscape_along_gradient` on the
    step's own minibatch."""
    def probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LandscapeProbe:
        return landscape_along_gradient(model, x, y, step_sizes, loss_fn)
    return probe


# --------------------------------------------------------------------------- which normalization


@dataclass(frozen=True)
class NormalizationRun:
    """One trained network of :func:`normalization_grid`.

    Attributes:
        norm: ``"none"``, ``"batch"``, ``"layer"`` or ``"group"``.
        batch_size: examples per training step.
        loss: training loss per step.
        test_accuracy: accuracy on the test set in evaluation mode.
        model: the trained network, if :func:`normalization_grid` was asked to keep it.
    """

    norm: str
    batch_size: int
    loss: list[float]
    test_accuracy: float
    model: nn.Module | None = None


def norm_label(norm: str | None) -> str:
    """``None`` → ``"none"``; other names unchanged (after validation)."""
    if norm not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {norm!r}; valid choices are None, "
                         f"{', '.join(repr(k) for k in NORMALIZATIONS if k)}")
    return "none" if norm is None else norm


def normalization_grid(train_data: Dataset, test_data: Dataset, *,
                       norms: Sequence[str | None], batch_sizes: Sequence[int], depth: int,
                       width: int, steps: int, lr: float, activation: str = "relu",
                       init: str = "he_normal", optimizer: str = "sgd",
                       seed: int = 0,
                       keep_models: bool = False) -> dict[tuple[str, int], NormalizationRun]:
    """Train one :class:`~gradpath.models.DeepMLP` per (normalization, batch size) pair.

    Every run starts from the same seed and takes the same number of steps. Returns
    ``{(norm label, batch size): NormalizationRun}``; with ``keep_models=True`` each run also
    holds its trained network (``run.model``), for controls run after training.
    """
    if not norms or not batch_sizes:
        raise ValueError("need at least one normalization and one batch size")
    for b in batch_sizes:
        if b < 2:
            raise ValueError(f"batch sizes must be >= 2 (batch norm needs two examples), got {b}")
    labels = [norm_label(n) for n in norms]
    device = train_data.x.device
    results: dict[tuple[str, int], NormalizationRun] = {}
    grid = [(n, label, b) for n, label in zip(norms, labels, strict=True) for b in batch_sizes]
    for norm, label, batch_size in progress(grid, "normalization grid"):
        model = DeepMLP(train_data.features, train_data.outputs, width=width, depth=depth,
                        activation=activation, init=init, norm=norm,
                        generator=torch.Generator().manual_seed(seed)).to(device)
        run = train_and_probe(model, train_data, steps=steps, lr=lr, batch_size=batch_size,
                              optimizer=optimizer, seed=seed)
        accuracy = evaluate(model, test_data).get("accuracy", math.nan)
        results[(label, batch_size)] = NormalizationRun(label, batch_size, run.loss, accuracy,
                                                        model if keep_models else None)
    return results


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (floats shown with 2 decimals)."""
    if not header:
        raise ValueError("header is empty")

    def cell(value: object) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {row!r} has {len(row)} cells, header has {len(header)}")
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def smooth(values: Sequence[float], window: int = 10) -> list[float]:
    """Running mean over ``window`` steps (shorter at the start), for noisy loss curves."""
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    v = np.asarray(values, dtype=float)
    out = [float(v[max(0, i - window + 1):i + 1].mean()) for i in range(len(v))]
    return out


def plot_normalization_comparison(train_data: Dataset, test_data: Dataset, *, batch_size: int,
                                  depth: int, width: int, steps: int, lr: float,
                                  activation: str = "relu", init: str = "he_normal",
                                  norms: Sequence[str | None] = (None, "batch", "layer", "group"),
                                  seed: int = 0) -> Figure:
    """Train one network per normalization and draw their (smoothed) training losses, with the
    test accuracy of each in the legend. Used by the chapter's live explorer."""
    results = normalization_grid(train_data, test_data, norms=norms, batch_sizes=[batch_size],
                                 depth=depth, width=width, steps=steps, lr=lr,
                                 activation=activation, init=init, seed=seed)
    use_course_style()
    fig, ax = plt.subplots()
    plot_training_curves({f"{r.norm} (test acc {r.test_accuracy:.2f})": smooth(r.loss)
                          for r in results.values()}, ax=ax,
                         title=f"{activation}, depth {depth}, batch size {batch_size}")
    return fig


def population_statistics_(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Replace every batch-norm layer's running statistics by the exact statistics of ``x``.

    Resets the running mean and variance, switches to a cumulative average (``momentum=None``)
    and passes ``x`` through the model once, in training mode, as a single batch: each layer's
    running statistics are then the mean and (unbiased) variance of its input over all of ``x``,
    with every layer below normalized the same way. The model is left in evaluation mode, with
    its original momentum; weights are not touched. Use it on a copy: it changes the model.

    Raises:
        ValueError: if the model has no batch-norm layer, or ``x`` has fewer than two rows.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        raise ValueError("the model has no batch-norm layer")
    if x.shape[0] < 2:
        raise ValueError(f"x needs at least two examples, got {x.shape[0]}")
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    for m, momentum in zip(layers, momenta, strict=True):
        m.momentum = momentum
    return model.eval()
