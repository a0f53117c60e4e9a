"""Chapter 12 (capstone): optimizers written out, warm-up, the modern recipe and its ablation,
and the gradient doctor on models a reader could bring.

Everything here uses the core (:mod:`gradpath.models`, :mod:`gradpath.doctor`,
:mod:`gradpath.probes`) and ``torch.optim``; the written-out optimizers exist to be read and are
checked against ``torch.optim`` in ``tests/test_capstone.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gradpath.data import Dataset
from gradpath.doctor import KINDS, Doctor, Report
from gradpath.models import Block, DeepMLP

# ------------------------------------------------------------------------ optimizers, written out

OPTIMIZER_NAMES = ("sgd", "momentum", "rmsprop", "adam", "adamw")


def optimizer_update(name: str, param: torch.Tensor, grad: torch.Tensor,
                     state: dict[str, Any], *, lr: float, beta1: float = 0.9,
                     beta2: float = 0.999, eps: float = 1e-8, alpha: float = 0.99,
                     weight_decay: float = 0.0, bias_correction: bool = True) -> torch.Tensor:
    """One step of a classic optimizer, written out; returns the new parameter (a new tensor).

    * ``sgd``: ``θ ← θ − lr·g``.
    * ``momentum`` (heavy ball, PyTorch's convention, no dampening): ``b ← β₁ b + g``,
      ``θ ← θ − lr·b`` (Polyak 1964; Sutskever et al. 2013).
    * ``rmsprop``: ``v ← α v + (1−α) g²``, ``θ ← θ − lr·g/(√v + ε)`` (Hinton's lecture 6e).
    * ``adam``: ``m ← β₁ m + (1−β₁) g``, ``v ← β₂ v + (1−β₂) g²``, bias-corrected
      ``m̂ = m/(1−β₁ᵗ)``, ``v̂ = v/(1−β₂ᵗ)``, ``θ ← θ − lr·m̂/(√v̂ + ε)`` (Kingma & Ba 2015);
      ``weight_decay`` adds ``wd·θ`` to the gradient (L2 regularization, as ``torch.optim.Adam``).
    * ``adamw``: Adam with decoupled weight decay, ``θ ← θ(1 − lr·wd)`` before the Adam step
      (Loshchilov & Hutter 2019, as ``torch.optim.AdamW``).

    Args:
        name: one of :data:`OPTIMIZER_NAMES`.
        param, grad: tensors of the same shape.
        state: a dict kept between steps (empty at the first step); updated in place.
        bias_correction: Adam's correction of the zero-initialized moments (``False`` shows what
            it corrects).

    Raises:
        ValueError: for an unknown ``name`` or mismatched shapes.
    """
    if name not in OPTIMIZER_NAMES:
        raise ValueError(f"unknown optimizer {name!r}; valid choices are "
                         f"{', '.join(OPTIMIZER_NAMES)}")
    if param.shape != grad.shape:
        raise ValueError(f"param has shape {tuple(param.shape)} but grad has {tuple(grad.shape)}")
    t = state["t"] = state.get("t", 0) + 1
    if name == "sgd":
        return param - lr * grad
    if name == "momentum":
        buf = state["b"] = grad.clone() if t == 1 else beta1 * state["b"] + grad
        return param - lr * buf
    if name == "rmsprop":
        v = state["v"] = alpha * state.get("v", torch.zeros_like(param)) + (1 - alpha) * grad**2
        return param - lr * grad / (v.sqrt() + eps)
    if name == "adamw":
        param = param * (1 - lr * weight_decay)
    elif weight_decay:
        grad = grad + weight_decay * param
    m = state["m"] = beta1 * state.get("m", torch.zeros_like(param)) + (1 - beta1) * grad
    v = state["v"] = beta2 * state.get("v", torch.zeros_like(param)) + (1 - beta2) * grad**2
    if bias_correction:
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    else:
        m_hat, v_hat = m, v
    return param - lr * m_hat / (v_hat.sqrt() + eps)


def torch_optimizer(name: str, params: Sequence[torch.Tensor], *, lr: float, beta1: float = 0.9,
                    beta2: float = 0.999, eps: float = 1e-8, alpha: float = 0.99,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer that :func:`optimizer_update` writes out, same settings."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=beta1)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps,
                                weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), eps=eps,
                                 weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid choices are {', '.join(OPTIMIZER_NAMES)}")


def first_adam_step(grad: torch.Tensor, *, lr: float = 1e-3, beta1: float = 0.9,
                    beta2: float = 0.999, eps: float = 1e-8,
                    bias_correction: bool = True) -> torch.Tensor:
    """``|Δθ|`` of Adam's first step from zero moments for each entry of ``grad``.

    With the correction ``m̂₁/√v̂₁ = g/|g|``: every entry moves by ``lr`` (less where
    ``|g| ≲ ε``). Without it, ``m₁/√v₁ = (1−β₁)/√(1−β₂)·g/|g|``: ``≈ 3.16·lr`` for the default
    betas."""
    new = optimizer_update("adam", torch.zeros_like(grad), grad, {}, lr=lr, beta1=beta1,
                           beta2=beta2, eps=eps, bias_correction=bias_correction)
    return new.abs()


# --------------------------------------------------------------------------- Adam's early variance


def adaptive_rate_spread(grads: torch.Tensor, steps: Sequence[int], *, beta2: float = 0.999,
                         eps: float = 1e-8, resamples: int = 200, seed: int = 0) -> np.ndarray:
    """How much Adam's per-coordinate step size ``1/(√v̂_t + ε)`` varies, at step ``t``.

    ``grads`` holds gradients of the same weights on different mini-batches, shape
    (batches, coordinates). For each ``t`` in ``steps`` the function draws ``resamples``
    sequences of ``t`` batches (with replacement), forms Adam's bias-corrected second moment
    ``v̂_t`` from them and returns, per ``t``, the median over coordinates of the coefficient of
    variation (std/mean over the resamples) of ``1/(√v̂_t + ε)``. Liu et al. (2020, RAdam) showed
    that this variance is large in the first steps, when ``v̂`` rests on a few gradients, and
    falls roughly as ``1/√t`` (for independently drawn batches); warm-up keeps the learning rate
    small while it is large.

    Returns:
        shape (len(steps),), float64.
    """
    if grads.dim() != 2:
        raise ValueError(f"grads must have shape (batches, coordinates), got {tuple(grads.shape)}")
    g2 = grads.double() ** 2
    n = g2.shape[0]
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in steps:
        if t < 1:
            raise ValueError(f"steps must be >= 1, got {t}")
        idx = torch.randint(0, n, (resamples, t), generator=gen)
        weights = torch.tensor([(1 - beta2) * beta2 ** (t - 1 - k) for k in range(t)],
                               dtype=torch.float64) / (1 - beta2**t)
        v_hat = weights @ g2[idx[0]] if resamples == 1 else torch.stack(
            [weights @ g2[row] for row in idx])                       # (resamples, coords)
        rate = 1.0 / (v_hat.sqrt() + eps)
        cv = rate.std(dim=0) / rate.mean(dim=0)
        out.append(float(cv.median()))
    return np.array(out)


# --------------------------------------------------------------------------- the modern recipe


@dataclass(frozen=True)
class Recipe:
    """How a deep MLP is built and trained: one choice per fix of the modern recipe.

    Attributes:
        activation: ``"sigmoid"`` (the broken start), ``"relu"`` or ``"gelu"``.
        init: a scheme of :data:`gradpath.init.INITIALIZATIONS` (``"pytorch_default"`` or
            ``"he_normal"`` here).
        norm: ``None`` or ``"layer"`` (LayerNorm in every hidden block).
        residual: pre-activation residual blocks (with a final norm when ``norm`` is set).
        optimizer: ``"sgd"`` or ``"adam"``.
        warmup: fraction of the run spent on a linear learning-rate warm-up (0 for none).
        clip: global gradient-norm threshold for ``clip_grad_norm_``, or ``None``.
    """

    activation: str = "sigmoid"
    init: str = "pytorch_default"
    norm: str | None = None
    residual: bool = False
    optimizer: str = "sgd"
    warmup: float = 0.0
    clip: float | None = None


BROKEN = Recipe()
"""The start of the ladder: sigmoid, PyTorch's default init, plain SGD."""

FIXES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ReLU", {"activation": "relu"}),
    ("He init", {"init": "he_normal"}),
    ("LayerNorm", {"norm": "layer"}),
    ("residual", {"residual": True}),
    ("Adam + warm-up", {"optimizer": "adam", "warmup": 0.1}),
    ("clipping", {"clip": 1.0}),
)
"""The fixes in the order the ladder adds them (each a change of :class:`Recipe` fields)."""


def ladder(start: Recipe = BROKEN) -> dict[str, Recipe]:
    """The ladder: ``start``, then each fix of :data:`FIXES` added to the one before."""
    rungs = {"plain SGD, sigmoid, default init": start}
    current = start
    for label, change in FIXES:
        current = replace(current, **change)
        rungs[f"+ {label}"] = current
    return rungs


def full_recipe() -> Recipe:
    """Every fix of :data:`FIXES` at once (the ladder's last rung)."""
    return list(ladder().values())[-1]


ABLATIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ReLU -> sigmoid", {"activation": "sigmoid"}),
    ("He -> default init", {"init": "pytorch_default"}),
    ("no LayerNorm", {"norm": None}),
    ("no residual", {"residual": False}),
    ("Adam -> SGD", {"optimizer": "sgd", "warmup": 0.0}),
    ("no warm-up", {"warmup": 0.0}),
    ("no clipping", {"clip": None}),
)
"""Leave-one-out: each removes one fix from :func:`full_recipe`."""


def ablation() -> dict[str, Recipe]:
    """The full recipe, then the full recipe with each fix of :data:`ABLATIONS` removed."""
    full = full_recipe()
    return {"full recipe": full, **{f"- {label}": replace(full, **change)
                                    for label, change in ABLATIONS}}


LEARNING_RATES = {"sgd": 0.1, "adam": 1e-2}
"""The peak learning rate of each optimizer in the recipe runs: SGD at the common default 0.1;
Adam at 1e-2, the best of 1e-3, 3e-3 and 1e-2 for chapter 12's 60-step budget (Adam's common
default 1e-3 is far too small there, and an ablation at an untuned rate partly measures the rate).
"""


def build_recipe_model(recipe: Recipe, features: int, classes: int, *, width: int, depth: int,
                       seed: int) -> DeepMLP:
    """The :class:`~gradpath.models.DeepMLP` a recipe describes. Every weight depends on ``seed``
    alone (PyTorch's default initialization draws from the global generator, so the model is built
    under :func:`torch.random.fork_rng` seeded with ``seed``; the global state is left as it was).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DeepMLP(features, classes, width=width, depth=depth,
                       activation=recipe.activation, init=recipe.init, norm=recipe.norm,
                       residual=recipe.residual, residual_order="pre",
                       final_norm=recipe.residual and recipe.norm is not None,
                       generator=torch.Generator().manual_seed(seed))


@dataclass
class RecipeRun:
    """One training run of a recipe.

    Attributes:
        recipe: what was trained.
        seed: initialization and batch-order seed.
        loss: training loss at every step (``nan`` after a non-finite step stopped the run).
        accuracy: test accuracy at the end (chance if the run broke).
        report: the gradient doctor's report of the run.
        first_last: the input-side weight layer's gradient norm over the output-side one's, at
            step 0 (float64-accurate).
        gradient_profile: every weight layer's gradient norm at step 0, input side first.
        broke: the first non-finite step, or ``None``.
    """

    recipe: Recipe
    seed: int
    loss: np.ndarray
    accuracy: float
    report: Report
    first_last: float
    gradient_profile: np.ndarray
    broke: int | None = None
    model: nn.Module | None = None

    @property
    def verdict(self) -> str:
        """The doctor's finding kinds, comma-separated (``"healthy"`` when none fired)."""
        return ", ".join(sorted(self.report.kinds())) or "healthy"


def _optimizer(name: str, params: Sequence[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    # foreach: one fused call per step instead of a Python loop over ~60 small tensors (the same
    # arithmetic; PyTorch only picks it by default on GPUs)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, foreach=True)
    return torch.optim.SGD(params, lr=lr, foreach=True)


def _finite(loss: torch.Tensor, params: Any) -> bool:
    """Whether the loss and every gradient entry are finite (decided from the tensors)."""
    grads = [p.grad.detach().flatten() for p in params if p.grad is not None]
    return bool(torch.isfinite(loss).all()) and (
        not grads or bool(torch.isfinite(torch.cat(grads)).all()))


def warmup_schedule(step: int, total: int, warmup: float) -> float:
    """Linear warm-up multiplier ``min(1, (step + 1) / W)`` at 0-based ``step``, with
    ``W = round(warmup · total)`` steps (1 when ``W`` is 0)."""
    w = int(round(warmup * total))
    return 1.0 if w <= 0 else min(1.0, (step + 1) / w)


def train_recipe(recipe: Recipe, train: Dataset, test: Dataset, *, steps: int,
                 batch_size: int, width: int, depth: int, seed: int,
                 sample_every: int = 10, lrs: dict[str, float] | None = None) -> RecipeRun:
    """Train the recipe's model on ``train`` with a gradient doctor attached; test on ``test``.

    Mini-batches are drawn without replacement, epoch by epoch, from a generator seeded with
    ``seed``. The doctor sees each step's raw gradients (before clipping); a step with a
    non-finite loss or gradient stops the run (the doctor records and localises it).
    """
    lrs = {**LEARNING_RATES, **(lrs or {})}
    if recipe.optimizer not in lrs:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}; valid choices are "
                         f"{', '.join(lrs)}")
    device = train.x.device
    model = build_recipe_model(recipe, train.features, train.classes, width=width, depth=depth,
                               seed=seed).to(device)
    lr = lrs[recipe.optimizer]
    opt = _optimizer(recipe.optimizer, list(model.parameters()), lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_schedule(s, steps, recipe.warmup))
    gen = torch.Generator().manual_seed(10_000 + seed)
    losses = np.full(steps, np.nan)
    broke = None
    order = torch.empty(0, dtype=torch.long)
    with Doctor(model, opt, sample_every=sample_every) as doctor:
        for step in range(steps):
            if len(order) < batch_size:
                order = torch.randperm(len(train), generator=gen)
            idx, order = order[:batch_size].to(device), order[batch_size:]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(train.x[idx]), train.y[idx])
            loss.backward()
            doctor.step(loss)
            if not _finite(loss, model.parameters()):
                broke = step
                break
            losses[step] = float(loss.detach())
            if recipe.clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
            opt.step()
            sched.step()
        report = doctor.report()
    if broke is None:
        model.eval()
        with torch.no_grad():
            accuracy = float((model(test.x).argmax(1) == test.y).double().mean())
    else:
        accuracy = 1.0 / train.classes
    profile = report.gradient_norms[0]
    return RecipeRun(recipe, seed, losses, accuracy, report, float(profile[0] / profile[-1]),
                     profile, broke, model)



class StackedMLP(nn.Module):
    """``R`` copies of a recipe's :class:`~gradpath.models.DeepMLP` (one per seed) computed side
    by side: every weight gains a leading run axis and every layer is one batched matrix
    product, so ``R`` runs cost about as much as one on a CPU.

    Input ``(R, batch, features)``, output ``(R, batch, classes)``; run ``r`` computes exactly what
    ``models[r]`` does (checked in the tests). Supports what :class:`Recipe` builds: plain or
    pre-activation residual blocks, no norm or LayerNorm, a final norm, any activation module.
    """

    def __init__(self, models: Sequence[DeepMLP]) -> None:
        super().__init__()
        first = models[0]
        per_model = [[cast(Block, b) for b in m.blocks] for m in models]
        blocks = per_model[0]
        self.residual = [bool(b.residual) for b in blocks]
        for b in blocks:
            if b.residual and b.order != "pre":
                raise ValueError("StackedMLP supports pre-activation residual blocks only")
            if not isinstance(b.norm, (nn.Identity, nn.LayerNorm)):
                raise ValueError(f"StackedMLP supports LayerNorm or no norm, got {b.norm}")
        self.layered = [isinstance(b.norm, nn.LayerNorm) for b in blocks]
        self.activation: nn.Module = blocks[0].activation

        def stack(tensors: list[torch.Tensor]) -> nn.Parameter:
            return nn.Parameter(torch.stack([t.detach().clone() for t in tensors]))

        def norm_of(b: Block) -> nn.LayerNorm:
            return cast(nn.LayerNorm, b.norm)

        depth = len(blocks)
        self.weights = nn.ParameterList(
            [stack([bs[i].linear.weight.T for bs in per_model]) for i in range(depth)]
            + [stack([m.head.weight.T for m in models])])
        self.biases = nn.ParameterList(
            [stack([bs[i].linear.bias[None] for bs in per_model]) for i in range(depth)]
            + [stack([m.head.bias[None] for m in models])])
        self.gains = nn.ParameterList(
            [stack([norm_of(bs[i]).weight[None] for bs in per_model]) for i in range(depth)
             if self.layered[i]])
        self.shifts = nn.ParameterList(
            [stack([norm_of(bs[i]).bias[None] for bs in per_model]) for i in range(depth)
             if self.layered[i]])
        self.final = isinstance(first.final, nn.Sequential)
        if self.final:
            finals = [cast(nn.LayerNorm, cast(nn.Sequential, m.final)[0]) for m in models]
            self.final_gain = stack([f.weight[None] for f in finals])
            self.final_shift = stack([f.bias[None] for f in finals])

    def _norm(self, h: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(h, h.shape[-1:], eps=1e-5) * gain + shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = 0
        for i, residual in enumerate(self.residual):
            w, b = self.weights[i], self.biases[i]
            if residual:
                z = self._norm(x, self.gains[n], self.shifts[n]) if self.layered[i] else x
                x = x + torch.baddbmm(b, self.activation(z), w)
            else:
                z = torch.baddbmm(b, x, w)
                if self.layered[i]:
                    z = self._norm(z, self.gains[n], self.shifts[n])
                x = self.activation(z)
            n += self.layered[i]
        if self.final:
            x = self.activation(self._norm(x, self.final_gain, self.final_shift))
        return torch.baddbmm(self.biases[-1], x, self.weights[-1])


@dataclass
class SeedRuns:
    """A recipe trained from several seeds side by side (:func:`train_recipe_seeds`).

    Attributes:
        recipe: what was trained.
        seeds: the seeds, one run each.
        loss: (runs, steps) training loss (``nan`` from a run's first non-finite step on).
        accuracy: (runs,) test accuracy at the end (chance for a run that broke).
        broke: per run, the first step with a non-finite loss or gradient entry, or ``None``.
    """

    recipe: Recipe
    seeds: list[int]
    loss: np.ndarray
    accuracy: np.ndarray
    broke: list[int | None]

    @property
    def mean(self) -> float:
        return float(self.accuracy.mean())

    @property
    def spread(self) -> float:
        """Largest minus smallest test accuracy over the seeds."""
        return float(self.accuracy.max() - self.accuracy.min())


def _batches(n: int, batch_size: int, seed: int) -> Callable[[], torch.Tensor]:
    gen = torch.Generator().manual_seed(10_000 + seed)
    order = torch.empty(0, dtype=torch.long)

    def next_batch() -> torch.Tensor:
        nonlocal order
        if len(order) < batch_size:
            order = torch.randperm(n, generator=gen)
        idx, order = order[:batch_size], order[batch_size:]
        return idx
    return next_batch


ARCHITECTURE_FIELDS = ("activation", "norm", "residual", "optimizer")
"""The :class:`Recipe` fields that runs trained side by side must share (the rest — init,
warm-up, clipping — and the learning rate may differ from run to run)."""


def train_recipe_seeds(recipe: Recipe, train: Dataset, test: Dataset, *, steps: int,
                       batch_size: int, width: int, depth: int, seeds: Sequence[int],
                       lrs: dict[str, float] | None = None) -> SeedRuns:
    """Train one model per seed, side by side in a :class:`StackedMLP`.

    Each run starts from :func:`build_recipe_model` with its seed and draws its own mini-batches
    exactly as :func:`train_recipe` does. ``torch.optim.SGD``/``Adam`` update the stacked
    weights (both act entry by entry, so each run gets its own update), with the recipe's linear
    warm-up and, when it clips, each run's own global norm clipped as ``clip_grad_norm_`` does
    (its norm computed in float64). A run whose loss or gradient turns non-finite stops updating;
    the others carry on.
    """
    return train_recipe_variants({0: (recipe, lrs)}, train, test, steps=steps,
                                 batch_size=batch_size, width=width, depth=depth,
                                 seeds=seeds)[0]


def train_recipe_variants(variants: dict[Any, tuple[Recipe, dict[str, float] | None]],
                          train: Dataset, test: Dataset, *, steps: int, batch_size: int,
                          width: int, depth: int, seeds: Sequence[int]) -> dict[Any, SeedRuns]:
    """Train every variant ``key -> (recipe, lrs)`` from every seed, as few stacks as possible.

    Variants that share the :data:`ARCHITECTURE_FIELDS` are trained side by side in one
    :class:`StackedMLP` (``len(variants in the group) × len(seeds)`` runs); each run keeps its own
    initialization, warm-up, clipping threshold and learning rate. Identical variants are
    trained once. Each run computes what :func:`train_recipe` computes for it, up to float32
    rounding: the optimizer runs at learning rate 1 and each run's step is then scaled by its
    own ``lr · warm-up multiplier`` (SGD: the gradient is scaled first). Folding the rate into
    the gradient is exact only for plain SGD and Adam as built here (no momentum, no weight decay:
    with either, the step is not linear in the rate); any other optimizer raises ValueError.

    Returns:
        ``key -> SeedRuns``, in the order of ``variants``.

    Raises:
        ValueError: for an unknown optimizer (with the valid choices).
    """
    resolved: dict[Any, tuple[Recipe, float]] = {}
    for key, (recipe, lrs) in variants.items():
        table = {**LEARNING_RATES, **(lrs or {})}
        if recipe.optimizer not in table:
            raise ValueError(f"unknown optimizer {recipe.optimizer!r}; valid choices are "
                             f"{', '.join(table)}")
        resolved[key] = (recipe, float(table[recipe.optimizer]))
    groups: dict[tuple[Any, ...], list[tuple[Recipe, float]]] = {}
    for spec in dict.fromkeys(resolved.values()):                  # unique, in order
        arch = tuple(getattr(spec[0], f) for f in ARCHITECTURE_FIELDS)
        groups.setdefault(arch, []).append(spec)
    done: dict[tuple[Recipe, float], SeedRuns] = {}
    for specs in groups.values():
        done.update(_train_stack(specs, train, test, steps=steps, batch_size=batch_size,
                                 width=width, depth=depth, seeds=list(seeds)))
    return {key: done[spec] for key, spec in resolved.items()}


def run_gradient_norms(grads: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per run of a stacked model, whether every gradient entry is finite and the global L2 norm.

    ``grads`` are tensors with a leading run axis ``R``. Returns ``(finite, norm)``, both of
    shape ``(R,)`` on the gradients' device: ``finite`` is decided from the entries
    (``torch.isfinite``), and ``norm`` is the norm of each run's finite entries (non-finite ones
    count as 0), accumulated in float64 so that it is right for every finite float32 input (a
    float32 sum of squares overflows near 1.8e19 per entry and underflows near 1e-23). One fused
    reduction over all tensors instead of a few per tensor. When every run's float64 sum of
    squares is finite, no entry can be inf or NaN (either would make it so), and the entry-wise
    checks are skipped: the common case costs one reduction.
    """
    flat = torch.cat([g.flatten(1) for g in grads], dim=1)          # (R, all entries)
    wide = flat.double()
    squares = wide.pow(2).sum(1)
    if bool(torch.isfinite(squares).all()):                          # every entry is finite
        return torch.ones_like(squares, dtype=torch.bool), squares.sqrt()
    norm = torch.nan_to_num(wide, nan=0.0, posinf=0.0, neginf=0.0).pow(2).sum(1).sqrt()
    return torch.isfinite(flat).all(dim=1), norm


def _train_stack(specs: list[tuple[Recipe, float]], train: Dataset, test: Dataset, *,
                 steps: int, batch_size: int, width: int, depth: int,
                 seeds: list[int]) -> dict[tuple[Recipe, float], SeedRuns]:
    runs_of = [(spec, s) for spec in specs for s in seeds]         # spec-major
    if {spec[0].optimizer for spec in specs} - {"sgd", "adam"}:
        raise ValueError("the stacked trainer scales each run's step by its rate, which is exact "
                         "only for plain SGD and Adam; valid optimizers are sgd, adam")
    device = train.x.device
    models = [build_recipe_model(spec[0], train.features, train.classes, width=width,
                                 depth=depth, seed=s) for spec, s in runs_of]
    model = StackedMLP(models).to(device)
    runs = len(runs_of)
    optimizer = specs[0][0].optimizer
    params: list[torch.Tensor] = list(model.parameters())
    opt = _optimizer(optimizer, params, 1.0)
    rates = torch.tensor([lr for (_, lr), _ in runs_of], dtype=torch.float64, device=device)
    clips = torch.tensor([math.inf if r.clip is None else r.clip for (r, _), _ in runs_of],
                         dtype=torch.float64, device=device)
    draws = [_batches(len(train), batch_size, s) for _, s in runs_of]
    alive = torch.ones(runs, dtype=torch.bool, device=device)
    alive_np = np.ones(runs, dtype=bool)                       # the same flags, on the host
    broke: list[int | None] = [None] * runs
    losses = np.full((runs, steps), np.nan)
    before = [torch.empty_like(p) for p in params] if optimizer != "sgd" else []
    for step in range(steps):
        warm = torch.tensor([warmup_schedule(step, steps, r.warmup) for (r, _), _ in runs_of],
                            dtype=torch.float64, device=device)
        index = torch.stack([d() for d in draws]).to(device)            # (runs, batch)
        out = model(train.x[index])
        loss = F.cross_entropy(out.flatten(0, 1), train.y[index].flatten(),
                               reduction="none").reshape(runs, -1).mean(1)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        with torch.no_grad():
            grads = [p.grad for p in params if p.grad is not None]
            finite, total = run_gradient_norms(grads)
            finite &= torch.isfinite(loss)
            host = torch.stack([finite.double(), loss.double()]).cpu().numpy()  # one transfer
            ok = host[0] == 1.0
            for r in np.flatnonzero(alive_np & ~ok):
                broke[r] = step
            alive_np &= ok
            alive &= finite
            losses[:, step] = np.where(alive_np, host[1], np.nan)
            if not ok.all():                                    # a broken run's gradients
                for g in grads:
                    torch.nan_to_num_(g, nan=0.0, posinf=0.0, neginf=0.0)
            coef = alive.double() * (clips / (total + 1e-6)).clamp(max=1.0)   # clip_grad_norm_
            step_size = alive.double() * rates * warm
            if optimizer == "sgd":
                coef = coef * step_size
            # every stacked parameter is (runs, a, b): one per-run factor broadcasts to all
            torch._foreach_mul_(grads, [coef.to(grads[0].dtype)[:, None, None]] * len(grads))
            if before:
                torch._foreach_copy_(before, params)
        opt.step()
        if before:                             # Adam at lr 1: scale each run's own step
            with torch.no_grad():
                scale = step_size.to(params[0].dtype)[:, None, None]
                torch._foreach_sub_(params, before)
                torch._foreach_mul_(params, [scale] * len(params))
                torch._foreach_add_(params, before)
    accuracy = np.full(runs, 1.0 / train.classes)
    with torch.no_grad():
        out = model(test.x.expand(runs, -1, -1))
        acc = (out.argmax(-1) == test.y).double().mean(1).cpu().numpy()
    accuracy[alive_np] = acc[alive_np]
    result = {}
    for i, spec in enumerate(specs):
        part = slice(i * len(seeds), (i + 1) * len(seeds))
        result[spec] = SeedRuns(spec[0], list(seeds), losses[part], accuracy[part], broke[part])
    return result


# --------------------------------------------------------------------------- models a reader brings


class SmallCNN(nn.Module):
    """A small CNN for the 8×8 digits: two 3×3 convolutions (8 and 16 channels, ReLU), a 2×2
    max-pool and a linear head. Input ``(batch, 64)`` (reshaped to one 8×8 channel)."""

    def __init__(self, classes: int = 10, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):       # seeded; the global state is left alone
            torch.manual_seed(seed)
            self.features = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                nn.ReLU(), nn.MaxPool2d(2))
            self.head = nn.Linear(16 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.reshape(-1, 1, 8, 8)).flatten(1))


class PixelRNN(nn.Module):
    """A recurrent classifier that reads a digit a few pixels at a time (``64 / pixels_per_step``
    steps of ``pixels_per_step`` inputs) and classifies from the last hidden state.

    Args:
        cell: ``"relu_rnn"`` (``nn.RNN`` with ReLU) or ``"lstm"`` (``nn.LSTM``).
        hidden: hidden units.
        recurrent_gain: for ``"relu_rnn"``, the hidden-to-hidden matrix is initialized
            orthogonal times this gain, so its spectral radius is the gain (IRNN-style, Le et al.
            2015, who used the identity); ``None`` keeps PyTorch's default.
        pixels_per_step: inputs read at each time step (a divisor of 64).

    Raises:
        ValueError: for an unknown ``cell`` or a ``pixels_per_step`` that does not divide 64.
    """

    def __init__(self, cell: str = "relu_rnn", hidden: int = 32, classes: int = 10, *,
                 recurrent_gain: float | None = None, pixels_per_step: int = 1,
                 seed: int = 0) -> None:
        super().__init__()
        if pixels_per_step < 1 or 64 % pixels_per_step:
            raise ValueError(f"pixels_per_step must divide 64, got {pixels_per_step!r}")
        self.pixels_per_step = pixels_per_step
        if cell not in ("relu_rnn", "lstm"):
            raise ValueError(f"unknown cell {cell!r}; valid choices are 'relu_rnn', 'lstm'")
        with torch.random.fork_rng(devices=[]):       # seeded; the global state is left alone
            torch.manual_seed(seed)
            if cell == "relu_rnn":
                self.rnn: nn.Module = nn.RNN(pixels_per_step, hidden, nonlinearity="relu",
                                             batch_first=True)
                if recurrent_gain is not None:
                    nn.init.orthogonal_(cast(torch.Tensor, self.rnn.weight_hh_l0),
                                        gain=recurrent_gain)
            else:
                self.rnn = nn.LSTM(pixels_per_step, hidden, batch_first=True)
            self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.reshape(x.shape[0], -1, self.pixels_per_step))
        return self.head(out[:, -1])


class TanhMLP(nn.Module):
    """A plain tanh MLP (``depth`` linear layers, ``nn.Tanh`` modules), its weights drawn
    ``N(0, init_std²)`` (``init_std=None``: Glorot normal) and zero biases."""

    def __init__(self, features: int, classes: int, *, width: int = 64, depth: int = 6,
                 init_std: float | None = 1.0, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        sizes = [features] + [width] * (depth - 1) + [classes]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            lin = nn.Linear(a, b)
            std = init_std if init_std is not None else math.sqrt(2.0 / (a + b))
            with torch.no_grad():
                lin.weight.normal_(0.0, std, generator=gen)
                lin.bias.zero_()
            layers.append(lin)
            if i < depth - 1:
                layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class DoctoredRun:
    """A training run watched by the doctor (:func:`train_with_doctor`)."""

    report: Report
    accuracy: float
    loss: np.ndarray
    model: nn.Module


def train_with_doctor(model: nn.Module, optimizer: torch.optim.Optimizer, train: Dataset,
                      test: Dataset, *, steps: int, batch_size: int, seed: int = 0,
                      clip: float | None = None, sample_every: int = 10) -> DoctoredRun:
    """A plain PyTorch training loop with the five lines of the doctor in it.

    Mini-batches as in :func:`train_recipe`; the doctor sees the raw gradients; ``clip`` (if
    given) applies ``clip_grad_norm_`` after it. A non-finite step stops the run (accuracy then
    counts as chance).
    """
    draw = _batches(len(train), batch_size, seed)
    losses = np.full(steps, np.nan)
    broke = False
    with Doctor(model, optimizer, sample_every=sample_every) as doctor:
        for step in range(steps):
            idx = draw().to(train.x.device)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(train.x[idx]), train.y[idx])
            loss.backward()
            doctor.step(loss)
            if not _finite(loss, model.parameters()):
                broke = True
                break
            losses[step] = float(loss.detach())
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
        report = doctor.report()
    accuracy = 1.0 / train.classes
    if not broke:
        model.eval()
        with torch.no_grad():
            accuracy = float((model(test.x).argmax(1) == test.y).double().mean())
        model.train()
    return DoctoredRun(report, accuracy, losses, model)


# --------------------------------------------------------------------------- the decision guide

DECISION_GUIDE: dict[str, tuple[str, str, str, str]] = {
    "vanishing": (
        "loss falls slowly or not at all; the input-side layers' gradients are orders of "
        "magnitude below the output side's",
        "a product of small per-layer factors: sigmoid's 1/4 slope, too-small weights, a deep "
        "plain stack, a recurrent net over many steps",
        "ReLU-family activation with He init; normalization; residual connections; LSTM/GRU",
        "2, 5, 6, 7, 8, 9"),
    "exploding": (
        "loss jumps or grows; gradient norms grow by orders of magnitude with depth or "
        "during the run",
        "per-layer factors above one: oversized init, a recurrent matrix with spectral radius "
        "above one, too high a learning rate",
        "fan-in-scaled init; normalization; a lower learning rate; gradient clipping",
        "3, 4, 6"),
    "nonfinite": (
        "loss or gradients become inf/nan at some step",
        "an overflow (exploded activations or gradients, float16's 65504) or an invalid "
        "operation (log of 0, 0/0)",
        "find the first module the doctor names; lower the learning rate, clip, keep that op in "
        "float32 or use bfloat16; roll back to a checkpoint",
        "3, 4, 11"),
    "dead_units": (
        "a ReLU layer outputs 0 for every example; loss plateaus",
        "a large update or a negative bias pushed units below zero for all inputs",
        "lower the learning rate; He init with zero biases; Leaky ReLU or GELU",
        "5"),
    "saturation": (
        "sigmoid/tanh outputs pinned near their limits; slow learning",
        "pre-activations too large: oversized init, unnormalized inputs",
        "Glorot init for tanh; normalized inputs; a norm layer before the activation; ReLU "
        "family",
        "2, 5, 6"),
    "update_ratio": (
        "weights barely move (ratio far below 1e-3) or are rewritten each step (far above)",
        "learning rate too low or too high for this layer's scale; a starved (vanishing) layer",
        "sweep the learning rate (ratios within about a decade of 1e-3 are typical); fix the "
        "vanishing first",
        "4, 12"),
    "loss_scale": (
        "float16 training: many gradient entries exactly zero, or most steps skipped",
        "gradients below float16's smallest subnormal (6e-8) without loss scaling; or an "
        "overflow even at the lowest scale",
        "torch.amp.GradScaler; or train in bfloat16",
        "11"),
    "clipping": (
        "the global norm is clipped on most steps",
        "the threshold is below this model's ordinary gradient norm; under SGD, also a learning "
        "rate that is too high",
        "raise the threshold to near the 90th percentile of observed norms; under SGD, check "
        "the learning rate",
        "4, 12"),
}
"""Per finding kind of the gradient doctor (:data:`gradpath.doctor.KINDS`): the symptom, the
likely cause, the fix and the chapters that teach it."""

assert set(DECISION_GUIDE) == set(KINDS)

DECISION_GUIDE_EXTRA: dict[str, tuple[str, str, str, str]] = {
    "no finding, flat loss": (
        "the doctor's verdict is healthy (or only dead units), yet the loss does not fall",
        "optimization difficulty the gradient statistics do not show: a deep plain stack "
        "(degradation), or a learning rate far off",
        "compare with a shallower network and sweep the learning rate; add residual connections",
        "8, 12"),
    "loss spike or slow divergence": (
        "the loss jumps and recovers (or not), or drifts upward over many steps",
        "a large step on particular batches in a particular parameter state; in float16, a "
        "collapsing loss scale (OPT saw it together with divergence)",
        "roll back to a checkpoint and skip the batches around it; lower the learning rate; "
        "check the loss scale",
        "4, 11, 12"),
}
"""Symptoms that no doctor finding names (the doctor reads gradients, not the loss curve): rows
the decision guide adds after the one row per :data:`gradpath.doctor.KINDS`."""


def decision_guide_markdown() -> str:
    """The decision guide as a Markdown table: one row per doctor finding kind, then the rows of
    :data:`DECISION_GUIDE_EXTRA` (symptoms with no finding of their own, in italics)."""
    rows = ["| finding (`kind`) | symptom | likely cause | fix | chapters |",
            "|---|---|---|---|---|"]
    for kind in KINDS:
        symptom, cause, fix, chapters = DECISION_GUIDE[kind]
        rows.append(f"| `{kind}` | {symptom} | {cause} | {fix} | {chapters} |")
    for label, (symptom, cause, fix, chapters) in DECISION_GUIDE_EXTRA.items():
        rows.append(f"| *{label}* | {symptom} | {cause} | {fix} | {chapters} |")
    return "\n".join(rows)


@torch.no_grad()
def input_dependence(model: DeepMLP, x: torch.Tensor) -> np.ndarray:
    """How much each hidden block's output depends on the input: per block, the standard
    deviation over the batch of each unit's output, averaged over units (float64), input side
    first. A value near 0 means the block outputs (almost) the same vector for every example:
    the forward signal carries no information about the input there.

    The model is left as found (evaluated in its current mode, without gradients; a model with
    batch norm should be in eval mode).
    """
    outputs: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
               for b in model.blocks]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return np.array([float(o.double().std(dim=0, unbiased=False).mean()) for o in outputs])
