"""Forward mode against reverse mode: what one full gradient costs ("History and horizons").

Automatic differentiation comes in two modes. Forward mode pushes one *tangent* (a direction in
parameter space) through the computation together with the values and returns one directional
derivative, a Jacobian-vector product; the full gradient of a scalar loss with ``P`` parameters
needs ``P`` such passes, one per basis direction. Reverse mode (backpropagation) runs the
computation once, then sends one cotangent backwards and returns all ``P`` partial derivatives at
once (Griewank & Walther, *Evaluating Derivatives*, 2008; Baydin et al., "Automatic
differentiation in machine learning: a survey", JMLR 2018).

- :func:`mlp_loss` builds a small seeded tanh network whose loss is a function of one flat
  parameter vector, so both modes differentiate the same function.
- :class:`CountingLoss` wraps a loss and counts how often it is evaluated: the number of passes
  each implementation makes is counted, as a check.
- :func:`forward_mode_gradient` assembles the gradient from ``P`` calls of ``torch.func.jvp``;
  :func:`batched_forward_gradient` pushes the same ``P`` tangents through in batches with
  ``torch.func.vmap`` (what ``torch.func.jacfwd`` does), which removes most of the per-call
  overhead but not the arithmetic; :func:`reverse_mode_gradient` gets the gradient from one call of
  ``torch.func.grad``.
- :func:`matmul_flops` counts the floating-point operations of the matrix products a call makes
  (``torch.utils.flop_counter.FlopCounterMode``): arithmetic measured independently of the clock.
- :func:`zero_operand_flops` counts the part of those FLOPs spent on products with an all-zero
  operand: PyTorch's forward-mode rule for ``mm`` also multiplies the (zero) tangent of fixed
  data such as the input batch, real work that forward mode itself does not need.
- :func:`cost_sweep` (and :func:`gradient_cost` for one size) time the three (best CPU time of
  several interleaved runs, more for the cheap ones, since a shared machine adds noise only
  upwards), count their arithmetic and compare their gradients.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch.func import grad, jvp, vmap
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

LossFn = Callable[[torch.Tensor], torch.Tensor]


class CountingLoss:
    """A scalar loss of a flat parameter vector that counts its own evaluations.

    Each call is one pass through the model: a plain forward pass, a forward pass carrying a
    tangent (under ``jvp``), or the forward half of a reverse-mode pass (under ``grad``).
    """

    def __init__(self, fn: LossFn) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fn(theta)


def mlp_loss(features: int, hidden: int, samples: int = 64, seed: int = 0,
             dtype: torch.dtype = torch.float64) -> tuple[LossFn, torch.Tensor]:
    """A one-hidden-layer tanh regression network as a function of its flat parameters.

    The model is ``ŷ = tanh(X W) v`` with ``W`` of shape ``(features, hidden)`` and ``v`` of shape
    ``(hidden,)``; the loss is the mean squared error against fixed random targets. Data and the
    starting parameters come from a generator seeded with ``seed``.

    Args:
        features: input dimension (>= 1).
        hidden: hidden units (>= 1).
        samples: rows of the fixed input batch ``X`` (>= 1).
        seed: seed of the data and the starting point.
        dtype: floating dtype of data and parameters (float64 by default, so the two modes can be
            compared to many digits).

    Returns:
        ``(loss, theta)``: ``loss`` maps a flat vector of ``features·hidden + hidden`` parameters
        to a 0-d tensor; ``theta`` is the seeded starting point (scaled like PyTorch's default
        ``nn.Linear`` weights, uniform in ``±1/√fan_in``).

    Raises:
        ValueError: if a size is below 1.
    """
    for name, value in (("features", features), ("hidden", hidden), ("samples", samples)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=g, dtype=dtype)
    y = torch.randn(samples, generator=g, dtype=dtype)
    n_w = features * hidden
    w0 = (torch.rand(n_w, generator=g, dtype=dtype) * 2 - 1) / features ** 0.5
    v0 = (torch.rand(hidden, generator=g, dtype=dtype) * 2 - 1) / hidden ** 0.5

    def loss(theta: torch.Tensor) -> torch.Tensor:
        w = theta[:n_w].reshape(features, hidden)
        v = theta[n_w:]
        return ((torch.tanh(x @ w) @ v - y) ** 2).mean()

    return loss, torch.cat([w0, v0])


def forward_mode_gradient(loss: LossFn, theta: torch.Tensor) -> torch.Tensor:
    """The gradient of ``loss`` at ``theta`` from forward mode: one ``jvp`` per parameter.

    Pass ``i`` pushes the basis direction ``e_i`` through the computation and returns the
    directional derivative ``∇L · e_i = ∂L/∂θ_i``, so a vector of ``P`` parameters costs ``P``
    passes.

    Args:
        loss: a function of a 1-d tensor returning a 0-d tensor.
        theta: the 1-d point (shape ``(P,)``).

    Returns:
        The gradient, shape ``(P,)``, dtype of ``theta``.

    Raises:
        ValueError: if ``theta`` is not 1-d.
    """
    if theta.dim() != 1:
        raise ValueError(f"theta must be a flat (1-d) parameter vector, got shape "
                         f"{tuple(theta.shape)}")
    out = torch.empty_like(theta)
    direction = torch.zeros_like(theta)
    for i in range(theta.numel()):
        direction[i] = 1.0
        out[i] = jvp(loss, (theta,), (direction.clone(),))[1]
        direction[i] = 0.0
    return out


def batched_forward_gradient(loss: LossFn, theta: torch.Tensor,
                             chunk_size: int = 256) -> torch.Tensor:
    """Forward mode with the ``P`` basis tangents batched by ``torch.func.vmap``.

    This is how ``torch.func.jacfwd`` computes a Jacobian: one vectorised ``jvp`` over a stack of
    tangents instead of a Python loop, here in chunks of at most ``chunk_size`` tangents so that
    memory stays bounded. It makes far fewer calls than :func:`forward_mode_gradient`, but every
    tangent still carries its own copy of the arithmetic, so the work still grows with ``P``.

    Args:
        loss: a function of a 1-d tensor returning a 0-d tensor.
        theta: the 1-d point (shape ``(P,)``).
        chunk_size: most tangents per vectorised call (>= 1).

    Returns:
        The gradient, shape ``(P,)``, dtype of ``theta``.

    Raises:
        ValueError: if ``theta`` is not 1-d or ``chunk_size`` is below 1.
    """
    if theta.dim() != 1:
        raise ValueError(f"theta must be a flat (1-d) parameter vector, got shape "
                         f"{tuple(theta.shape)}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    n = theta.numel()

    def directional(v: torch.Tensor) -> torch.Tensor:
        return jvp(loss, (theta,), (v,))[1]

    parts = []
    for start in range(0, n, chunk_size):
        rows = min(chunk_size, n - start)
        basis = torch.zeros(rows, n, dtype=theta.dtype, device=theta.device)
        basis[torch.arange(rows), start + torch.arange(rows)] = 1.0
        parts.append(vmap(directional)(basis))
    return torch.cat(parts)


def matmul_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of the matrix-matrix products that ``fn()`` runs.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts as two). It
    counts matrix-matrix products (``mm``, ``addmm``, ``bmm``, convolutions, attention), not
    matrix-vector products or elementwise work such as ``tanh``. The number does not depend on the
    machine or its load.

    Args:
        fn: a function of no arguments; it is called once.

    Returns:
        The total count (an int >= 0).
    """
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


class _ZeroOperandCounter(TorchDispatchMode):
    """Adds up the FLOPs of ``mm``/``addmm``/``bmm`` calls whose multiplied operands include an
    all-zero tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),  # noqa: ANN204
                           kwargs: Any = None) -> Any:
        aten = torch.ops.aten
        if func in (aten.mm.default, aten.bmm.default, aten.addmm.default):
            a, b = (args[1], args[2]) if func is aten.addmm.default else (args[0], args[1])
            if not (bool(a.any()) and bool(b.any())):
                self.flops += 2 * a.numel() * b.shape[-1]
        return func(*args, **(kwargs or {}))


def zero_operand_flops(fn: Callable[[], object]) -> int:
    """Matrix-matrix FLOPs (as :func:`matmul_flops` counts them) that ``fn()`` spends on products
    with an all-zero operand.

    Under ``torch.func.jvp`` (and ``torch.autograd.forward_ad``) PyTorch's rule for ``mm`` computes
    the tangent ``Ȧ B + A Ḃ`` as two products even when ``A`` is fixed data whose tangent ``Ȧ`` is
    zero, so one ``jvp`` of ``X @ W`` runs three products where forward mode needs two: this
    function measures that third one.

    Args:
        fn: a function of no arguments; it is called once.

    Returns:
        The count (an int >= 0); a multiply-add counts as two.
    """
    with _ZeroOperandCounter() as counter:
        fn()
    return counter.flops


def reverse_mode_gradient(loss: LossFn, theta: torch.Tensor) -> torch.Tensor:
    """The gradient of ``loss`` at ``theta`` from reverse mode: one forward and one backward pass.

    Args:
        loss: a function of a 1-d tensor returning a 0-d tensor.
        theta: the 1-d point (shape ``(P,)``).

    Returns:
        The gradient, shape ``(P,)``.

    Raises:
        ValueError: if ``theta`` is not 1-d.
    """
    if theta.dim() != 1:
        raise ValueError(f"theta must be a flat (1-d) parameter vector, got shape "
                         f"{tuple(theta.shape)}")
    return grad(loss)(theta)


@dataclass(frozen=True)
class GradientCost:
    """What one full gradient cost with forward and with reverse mode, for one model size.

    Attributes:
        params: number of parameters ``P``.
        forward_passes: evaluations of the loss the jvp loop made for one gradient (0 where
            the loop was not run).
        reverse_passes: evaluations of the loss reverse mode made for one gradient.
        forward_seconds: best CPU time of one forward-mode gradient by the jvp loop (seconds;
            ``nan`` where :func:`cost_sweep` did not run the loop).
        batched_seconds: best CPU time of one forward-mode gradient with the tangents batched
            by ``vmap`` (seconds).
        reverse_seconds: best CPU time of one reverse-mode gradient (seconds).
        loss_flops: matrix-matrix FLOPs (:func:`matmul_flops`) of one evaluation of the loss.
        forward_flops: matrix-matrix FLOPs of one gradient by the jvp loop: the FLOPs of one
            ``jvp`` times the passes the loop made (every pass runs the same dense operations;
            counting the whole loop under the counter would be slow); 0 where not run.
        forward_zero_flops: the part of ``forward_flops`` spent on products with an all-zero
            operand (:func:`zero_operand_flops`), the zero tangent of the fixed data.
        batched_flops: matrix-matrix FLOPs of one gradient by batched forward mode.
        reverse_flops: matrix-matrix FLOPs of one reverse-mode gradient.
        max_difference: largest ``|g - g_rev|`` entry over the forward-mode gradients ``g``,
            relative to the largest ``|g_rev|``.
    """

    params: int
    forward_passes: int
    reverse_passes: int
    forward_seconds: float
    batched_seconds: float
    reverse_seconds: float
    loss_flops: int
    forward_flops: int
    forward_zero_flops: int
    batched_flops: int
    reverse_flops: int
    max_difference: float

    @property
    def time_ratio(self) -> float:
        """Forward-mode (jvp loop) time over reverse-mode time."""
        return self.forward_seconds / self.reverse_seconds

    @property
    def batched_time_ratio(self) -> float:
        """Batched forward-mode time over reverse-mode time."""
        return self.batched_seconds / self.reverse_seconds

    @property
    def flop_ratio(self) -> float:
        """Batched forward-mode FLOPs over reverse-mode FLOPs."""
        return self.batched_flops / self.reverse_flops


def _cpu_timed(method: Callable[[LossFn, torch.Tensor], torch.Tensor], loss: LossFn,
               theta: torch.Tensor) -> tuple[float, torch.Tensor]:
    start = time.process_time()
    result = method(loss, theta)
    return time.process_time() - start, result


def _batched_in_one_call(loss: LossFn, theta: torch.Tensor) -> torch.Tensor:
    return batched_forward_gradient(loss, theta, chunk_size=theta.numel())


_TARGET_S = 0.05     # CPU seconds each method at each size is timed for, at least
_MAX_RUNS = 40       # most timed runs of one method at one size


def cost_sweep(hiddens: Sequence[int], features: int = 16, samples: int = 64, seed: int = 0,
               repeats: int = 3, loop_max_hidden: int | None = None) -> list[GradientCost]:
    """Time and count one full gradient of :func:`mlp_loss` by forward mode (a jvp loop, and the
    same tangents batched by ``vmap``) and by reverse mode, for each hidden width in ``hiddens``
    (so ``P = hidden·(features+1)`` parameters).

    Times are CPU seconds of the process (``time.process_time``), not wall time: a busy shared
    machine delays a run but hardly changes the CPU time it uses (with several intra-op threads, as
    with ``GRADPATH_CPU_THREADS=0``, it adds up all of them), and the minimum over several runs
    removes most of what remains (load only ever adds time). Each method at each size runs at least
    ``repeats`` times, and a cheap one more often, until about 0.05 CPU seconds are spent on it (at
    most 40 runs unless ``repeats`` asks for more; the first run's time sets the count), after one
    untimed call of each method on the smallest problem (the first ``jvp`` or ``vmap`` imports
    parts of torch). The runs are interleaved — every size and method once, then again — so a burst
    of load does not fall on one size only. Batched forward mode pushes all ``P`` tangents through
    one ``vmap`` call (``chunk_size = P``), so its count of calls is the same at every size. Passes
    are counted with :class:`CountingLoss`, per gradient, and arithmetic with :func:`matmul_flops`
    (one extra, untimed run of each method; for the jvp loop, one ``jvp`` times the number of
    passes).

    Args:
        hiddens: hidden widths, each >= 1.
        features, samples, seed: as in :func:`mlp_loss`.
        repeats: fewest timed runs of each method at each size (>= 1).
        loop_max_hidden: the jvp loop runs only for widths up to this one (``None``: all). For
            larger widths, whose loop would be slow, the row's ``forward_seconds`` is ``nan`` and
            its ``forward_passes``, ``forward_flops`` and ``forward_zero_flops`` are 0.

    Raises:
        ValueError: if ``hiddens`` is empty, a size is below 1, ``repeats`` is below 1 or
            ``loop_max_hidden`` is neither None nor a positive integer.
    """
    if len(hiddens) == 0:
        raise ValueError("hiddens must name at least one hidden width")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if loop_max_hidden is not None and (not isinstance(loop_max_hidden, int)
                                        or loop_max_hidden < 1):
        raise ValueError(f"loop_max_hidden must be a positive integer or None, got "
                         f"{loop_max_hidden!r}")
    problems = [mlp_loss(features, h, samples, seed) for h in hiddens]
    methods: list[Callable[[LossFn, torch.Tensor], torch.Tensor]] = [
        forward_mode_gradient, _batched_in_one_call, reverse_mode_gradient]
    loop_runs = [loop_max_hidden is None or h <= loop_max_hidden for h in hiddens]
    # Per size k and method m (loop, batched, reverse): the loss it calls (counted for the loop and
    # reverse mode), the runs planned and taken, the best time and the last gradient.
    counters: list[list[LossFn]] = [[CountingLoss(fn), fn, CountingLoss(fn)] for fn, _ in problems]
    planned = [[0, 0, 0] for _ in problems]
    taken = [[0, 0, 0] for _ in problems]
    best = [[float("nan")] * 3 for _ in problems]
    grads: list[list[torch.Tensor | None]] = [[None] * 3 for _ in problems]
    fn0, theta0 = problems[0]      # untimed: the first jvp and vmap import parts of torch lazily
    for method in methods:
        method(fn0, theta0)
    for r in range(max(repeats, _MAX_RUNS)):
        for k, (_, theta) in enumerate(problems):
            for m, method in enumerate(methods):
                if (m == 0 and not loop_runs[k]) or 0 < planned[k][m] <= r:
                    continue
                seconds, g = _cpu_timed(method, counters[k][m], theta)
                if r == 0:      # the first run sets how many runs this method gets here
                    planned[k][m] = max(repeats, min(_MAX_RUNS,
                                                     math.ceil(_TARGET_S / max(seconds, 1e-6))))
                best[k][m] = seconds if r == 0 else min(best[k][m], seconds)
                grads[k][m] = g
                taken[k][m] += 1
    rows = []
    for k, (fn, theta) in enumerate(problems):
        g_fwd, g_bat, g_rev = grads[k]
        assert g_bat is not None and g_rev is not None
        scale = float(g_rev.abs().max())
        diff = max(float((g - g_rev).abs().max()) for g in (g_fwd, g_bat) if g is not None)
        fwd_loss, _, rev_loss = counters[k]
        assert isinstance(fwd_loss, CountingLoss) and isinstance(rev_loss, CountingLoss)
        passes = fwd_loss.calls // taken[k][0] if loop_runs[k] else 0
        one_jvp = partial(jvp, fn, (theta,), (torch.ones_like(theta),))
        rows.append(GradientCost(
            params=theta.numel(), forward_passes=passes,
            reverse_passes=rev_loss.calls // taken[k][2], forward_seconds=best[k][0],
            batched_seconds=best[k][1], reverse_seconds=best[k][2],
            loss_flops=matmul_flops(partial(fn, theta)),
            forward_flops=passes * matmul_flops(one_jvp) if passes else 0,
            forward_zero_flops=passes * zero_operand_flops(one_jvp) if passes else 0,
            batched_flops=matmul_flops(partial(_batched_in_one_call, fn, theta)),
            reverse_flops=matmul_flops(partial(reverse_mode_gradient, fn, theta)),
            max_difference=diff / (scale if scale > 0 else 1.0)))
    return rows


def gradient_cost(features: int, hidden: int, samples: int = 64, seed: int = 0,
                  repeats: int = 3) -> GradientCost:
    """:func:`cost_sweep` for one hidden width.

    Raises:
        ValueError: for sizes below 1 or ``repeats`` below 1.
    """
    return cost_sweep([hidden], features, samples, seed, repeats)[0]
