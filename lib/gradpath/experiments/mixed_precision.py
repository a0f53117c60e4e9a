"""Chapter 11: mixed precision, loss scaling, and what gradients cost at scale.

- :class:`LossScaler` writes dynamic loss scaling out in a few lines (the algorithm of
  ``torch.amp.GradScaler``); the tests check it against ``GradScaler`` step by step.
- :func:`train_mixed` trains a network in float32, or under autocast in float16 or bfloat16, with
  no loss scaling, ``GradScaler`` or :class:`LossScaler`, and records the loss, the share of
  gradient entries that are exactly zero, and the loss scale. Its ``shift`` divides the loss by
  ``2**shift`` and multiplies the learning rate by ``2**shift``: in exact arithmetic (and in
  float32, bit for bit) nothing changes, so it moves the gradients down without changing the run.
- :func:`autocast_output_dtypes`: which precision each op returns under autocast, measured;
  :func:`lost_update_share`: how much of an SGD update weights stored in 16 bits would lose.
- :class:`TensorMemoryTracker` and :func:`step_cost`: the bytes of tensors alive during a
  training step, with and without gradient checkpointing, and the FLOPs it costs.
- :func:`data_parallel_gradients`, :func:`ring_all_reduce` and :func:`zero_memory_per_device`:
  data-parallel training simulated on one device, the ring all-reduce's traffic, and ZeRO's
  memory arithmetic (Rajbhandari et al. 2020).
- :func:`plot_format_ranges`, :func:`log2_histogram`, :func:`plot_scale_history`: the figures.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.checkpoint import checkpoint_sequential
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakIdKeyDictionary

from gradpath.data import Dataset
from gradpath.models import DeepMLP
from gradpath.plots import PALETTE
from gradpath.precision import ScaleMonitor, format_info, resolve_dtype

LOSS_SCALING = (None, "dynamic", "manual")
FORMAT_COLOURS = {"float32": "#0072B2", "bfloat16": "#56B4E9", "float16": "#009E73",
                  "float8_e5m2": "#CC79A7", "float8_e4m3fn": "#D55E00"}
HISTOGRAM_COLOURS = ["#000000", "#E69F00", "#999999"]


def make_network(features: int, classes: int, *, width: int, depth: int = 6, seed: int = 0,
                 activation: str = "relu", init: str = "he_normal",
                 norm: str | None = None) -> DeepMLP:
    """The chapter's network: a ReLU MLP with He initialization (reproducible from ``seed``)."""
    return DeepMLP(features, classes, width=width, depth=depth, activation=activation, init=init,
                   norm=norm, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# Dynamic loss scaling, written out


@dataclass
class LossScaler:
    """Dynamic loss scaling in a few lines: what ``torch.amp.GradScaler`` does.

    Multiply the loss by ``scale`` before ``backward``. Then :meth:`step`: divide every gradient
    by ``scale``; if any entry is ``inf``/``nan``, skip the update and halve the scale, otherwise
    update and, after ``growth_interval`` clean steps in a row, double it.
    """

    scale: float = 2.0**16
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000
    clean_steps: int = 0

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Unscale, step if every gradient is finite, adapt the scale; return whether it stepped."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        inverse = torch.tensor(self.scale, dtype=torch.float64).reciprocal().float()
        finite = all(bool(torch.isfinite(g).all()) for g in grads)
        for g in grads:
            g.mul_(inverse.to(g.device))
        if not finite:                                  # overflow: skip the step, back off
            self.scale *= self.backoff_factor
            self.clean_steps = 0
            return False
        optimizer.step()
        self.clean_steps += 1
        if self.clean_steps == self.growth_interval:    # a long clean run: try a larger scale
            grown = float(torch.tensor(self.scale * self.growth_factor, dtype=torch.float32))
            if math.isfinite(grown):
                self.scale = grown
            self.clean_steps = 0
        return True


# ----------------------------------------------------------------------------------------------
# Training in mixed precision


@dataclass
class PrecisionRun:
    """What :func:`train_mixed` recorded, one entry per step.

    Attributes:
        loss: the minibatch loss (of the unshifted loss, as float32 computed it).
        zero_fraction: share of all parameter-gradient entries that were exactly zero.
        scales: the loss scale each step used (empty without loss scaling).
        skipped: whether each step's update was skipped for an ``inf``/``nan`` gradient.
        final_loss: float32 loss of the trained model on the whole training set.
        model: the trained model.
    """

    loss: list[float] = field(default_factory=list)
    zero_fraction: list[float] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    skipped: list[bool] = field(default_factory=list)
    final_loss: float = math.nan
    model: nn.Module | None = None

    @property
    def skipped_steps(self) -> list[int]:
        return [i for i, s in enumerate(self.skipped) if s]


def gradient_zero_fraction(model: nn.Module) -> float:
    """Share of all parameter-gradient entries that are exactly zero (``nan``/``inf`` count as
    nonzero)."""
    zeros = total = 0
    for p in model.parameters():
        if p.grad is not None:
            zeros += int((p.grad == 0).sum())
            total += p.grad.numel()
    if total == 0:
        raise RuntimeError("no gradients yet: call backward() first")
    return zeros / total


def train_mixed(model: nn.Module, data: Dataset, *, steps: int, lr: float, batch_size: int,
                precision: str = "float32", loss_scaling: str | None = None, shift: int = 0,
                init_scale: float = 2.0**16, growth_interval: int = 2000, momentum: float = 0.9,
                weight_format: str | None = None, seed: int = 0) -> PrecisionRun:
    """Train ``model`` on a classification set with SGD + momentum in the given precision.

    Args:
        precision: ``"float32"`` (no autocast), ``"float16"`` or ``"bfloat16"`` (autocast on the
            data's device, float32 master weights).
        loss_scaling: ``None``, ``"dynamic"`` (``torch.amp.GradScaler``, watched by
            :class:`gradpath.precision.ScaleMonitor`) or ``"manual"`` (:class:`LossScaler`).
        shift: divide the loss by ``2**shift`` and multiply the learning rate by ``2**shift``.
            Powers of two scale exactly, so in float32 (and bfloat16) the run is bit for bit the
            same as with ``shift=0``; only a format that cannot hold the smaller gradients changes.
        init_scale, growth_interval: the loss scaler's settings (``GradScaler``'s defaults).
        weight_format: if set (e.g. ``"float16"``), round every weight to this format after each
            update, as if the weights were stored in it instead of in float32 ("master weights");
            everything else about the run is unchanged.

    Raises:
        ValueError: for an unknown precision or loss_scaling, or steps/batch_size below 1.
    """
    dtype = resolve_dtype(precision)
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"precision must be float32, float16 or bfloat16, got {precision!r}")
    if loss_scaling not in LOSS_SCALING:
        raise ValueError(f"loss_scaling must be one of {LOSS_SCALING}, got {loss_scaling!r}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    store = resolve_dtype(weight_format) if weight_format is not None else None
    device = data.x.device
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr * 2.0**shift, momentum=momentum)
    scaler = monitor = manual = None
    if loss_scaling == "dynamic":
        scaler = torch.amp.GradScaler(device.type, init_scale=init_scale,
                                      growth_interval=growth_interval)
        monitor = ScaleMonitor(scaler)
    elif loss_scaling == "manual":
        manual = LossScaler(scale=init_scale, growth_interval=growth_interval)
    generator = torch.Generator().manual_seed(seed)
    run = PrecisionRun(model=model)
    for _ in range(steps):
        idx = torch.randint(0, len(data), (batch_size,), generator=generator).to(device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = nn.functional.cross_entropy(model(data.x[idx]), data.y[idx])
        shifted = loss / 2**shift
        if scaler is not None and monitor is not None:
            scaler.scale(shifted).backward()
            run.zero_fraction.append(gradient_zero_fraction(model))
            scaler.step(optimizer)
            monitor.update()
        elif manual is not None:
            run.scales.append(manual.scale)
            (shifted * manual.scale).backward()
            run.zero_fraction.append(gradient_zero_fraction(model))
            run.skipped.append(not manual.step(optimizer))
        else:
            shifted.backward()
            run.zero_fraction.append(gradient_zero_fraction(model))
            optimizer.step()
        if store is not None:
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(p.to(store))
        run.loss.append(float(loss.detach()))
    if monitor is not None:
        run.scales, run.skipped = list(monitor.scales), list(monitor.skipped)
    model.eval()
    with torch.no_grad():
        run.final_loss = float(nn.functional.cross_entropy(model(data.x), data.y))
    model.train()
    return run


def autocast_output_dtypes(device_type: str, dtype: torch.dtype | str = torch.float16,
                           ) -> dict[str, str]:
    """The dtype each common op returns under ``torch.autocast(device_type, dtype)``, measured.

    The inputs are float32, as a network's parameters and data are; the answer shows which ops
    autocast runs in low precision and which it keeps in (or casts back to) float32. Also reports
    the dtype of the gradient that reaches a layer's output and of a parameter's gradient.
    """
    dt = resolve_dtype(dtype)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 16, generator=g).to(device_type)
    target = torch.randint(0, 16, (8,), generator=g).to(device_type)
    layer = nn.Linear(16, 16).to(device_type)
    ops: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "relu": torch.relu, "softmax": lambda z: torch.softmax(z, dim=-1),
        "log_softmax": lambda z: torch.log_softmax(z, dim=-1),
        "layer_norm": lambda z: nn.functional.layer_norm(z, (16,)), "exp": torch.exp,
        "sum": torch.sum, "cross_entropy": lambda z: nn.functional.cross_entropy(z, target),
        "mse_loss": lambda z: nn.functional.mse_loss(z, torch.zeros_like(z)),
    }
    out: dict[str, str] = {}
    with torch.autocast(device_type, dtype=dt):
        z = layer(x)
        z.retain_grad()
        out["linear"] = str(z.dtype).removeprefix("torch.")
        out["matmul"] = str((x @ x.T).dtype).removeprefix("torch.")
        for name, op in ops.items():
            out[name] = str(op(z).dtype).removeprefix("torch.")
        loss = nn.functional.cross_entropy(z, target)
    loss.backward()
    assert z.grad is not None and layer.weight.grad is not None
    out["gradient of a layer's output"] = str(z.grad.dtype).removeprefix("torch.")
    out["gradient of a weight"] = str(layer.weight.grad.dtype).removeprefix("torch.")
    return out


def lost_update_share(model: nn.Module, lr: float, dtype: torch.dtype | str) -> float:
    """Share of one SGD update's nonzero entries that would change nothing in ``dtype``.

    Uses the gradients already in ``model`` (call ``backward`` first): the update ``-lr * grad``
    is added in float32 to each weight rounded to ``dtype``, and the sum rounded back to
    ``dtype``; an entry is lost when the stored weight comes out unchanged. The model is not
    changed.

    Raises:
        RuntimeError: if the model has no gradients.
    """
    dt = resolve_dtype(dtype)
    lost = total = 0
    for p in model.parameters():
        if p.grad is None:
            continue
        update = -lr * p.grad.detach().float()
        stored = p.detach().to(dt)
        unchanged = ((stored.float() + update).to(dt) == stored) & (update != 0)
        lost += int(unchanged.sum())
        total += int((update != 0).sum())
    if total == 0:
        raise RuntimeError("no nonzero gradients: call backward() first")
    return lost / total


# ----------------------------------------------------------------------------------------------
# Memory: what the backward pass keeps, and gradient checkpointing


def saved_tensors(output: torch.Tensor, depth: int = 3) -> list[tuple[str, str, tuple[int, ...]]]:
    """What autograd keeps for the backward pass, read from the graph behind ``output``.

    Walks ``depth`` nodes back from ``output.grad_fn`` and lists ``(node, saved name, shape)`` for
    every tensor a node saved (its ``_saved_*`` attributes).
    """
    found: list[tuple[str, str, tuple[int, ...]]] = []
    node = output.grad_fn
    frontier = [node] if node is not None else []
    for _ in range(depth):
        nxt = []
        for fn in frontier:
            for attr in sorted(dir(fn)):
                if attr.startswith("_saved_"):
                    value = getattr(fn, attr)
                    if isinstance(value, torch.Tensor):
                        found.append((fn.name(), attr.removeprefix("_saved_"),
                                      tuple(value.shape)))
            nxt += [f for f, _ in fn.next_functions if f is not None]
        frontier = nxt
    return found


class TensorMemoryTracker(TorchDispatchMode):
    """Bytes of the tensors that ops allocate inside the context and that are still alive.

    Every op's outputs are inspected as it runs (forward, backward and any recomputation); an
    output whose storage is new (not one of the op's inputs', so views and in-place results are
    not counted twice) is added, and it drops out once Python frees it. Tensors created before
    the context (parameters, data, existing ``.grad``) are not counted.

    Attributes:
        peak: the largest total seen right after any op.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: Any = WeakIdKeyDictionary()
        self.peak = 0

    @property
    def current(self) -> int:
        """Bytes of the tracked tensors that are alive now."""
        return int(sum(self._live.values()))

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        inputs = {id(t.untyped_storage()) for t in tree_leaves((args, kwargs or {}))
                  if isinstance(t, torch.Tensor)}
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if id(storage) not in inputs and storage not in self._live:
                    self._live[storage] = storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


@dataclass(frozen=True)
class StepCost:
    """The cost of one forward and backward pass (see :func:`step_cost`).

    Attributes:
        held_after_forward: bytes of tensors kept alive between the forward and backward pass.
        peak: the most bytes alive at any moment of the step.
        flops: floating-point operations of the step (``torch.utils.flop_counter``).
        seconds: the fastest of the timed repeats.
    """

    held_after_forward: int
    peak: int
    flops: int
    seconds: float


def step_cost(model: DeepMLP, data: Dataset, *, segments: int | None = None,
              repeats: int = 3) -> StepCost:
    """Memory, FLOPs and time of one training step of ``model`` on all of ``data``.

    With ``segments`` the layers run through ``torch.utils.checkpoint.checkpoint_sequential``
    (non-reentrant): only each segment's input is kept, and the segment is recomputed during the
    backward pass (the last segment is not checkpointed: its activations are needed at once).

    Raises:
        ValueError: if ``segments`` is not between 1 and the number of layers.
    """
    layers: list[nn.Module] = [*model.blocks, model.final, model.head]
    if segments is not None and not 1 <= segments <= len(layers):
        raise ValueError(f"segments must be in [1, {len(layers)}], got {segments}")
    sequence = nn.Sequential(*layers)
    tracker = TensorMemoryTracker()
    held: list[int] = []

    def step() -> None:
        if segments is None:
            out = sequence(data.x)
        else:
            out = checkpoint_sequential(sequence, segments, data.x, use_reentrant=False)
        loss = nn.functional.cross_entropy(out, data.y)
        held.append(tracker.current)          # what the forward pass left for the backward pass
        loss.backward()

    model.zero_grad(set_to_none=False)
    step()                                    # warm-up; creates .grad, so it is not counted below
    with tracker:
        step()
    held_after_forward = held[-1]
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        if data.x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    return StepCost(held_after_forward=held_after_forward, peak=tracker.peak,
                    flops=int(counter.get_total_flops()), seconds=min(times))


# ----------------------------------------------------------------------------------------------
# Gradients at scale


def concat_gradients(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-parameter gradients (a list of tensors) concatenated into one vector."""
    return torch.cat([g.flatten() for g in grads])


def data_parallel_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, workers: int,
                            ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """One data-parallel step simulated on one device.

    ``workers`` replicas (deep copies: every worker holds all the parameters) each take an equal
    shard of the batch and compute the mean cross-entropy gradient on it; the all-reduce averages
    the local gradients. Returns ``(averaged, local)``: the averaged gradient per parameter, and
    each worker's local gradients. The model itself is not changed.

    Raises:
        ValueError: if the batch does not split into ``workers`` equal shards.
    """
    if workers < 1 or len(x) % workers:
        raise ValueError(f"batch of {len(x)} does not split into {workers} equal shards")
    local = []
    for xs, ys in zip(x.chunk(workers), y.chunk(workers), strict=True):
        replica = copy.deepcopy(model)
        replica.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(replica(xs), ys).backward()
        local.append([p.grad.detach().clone() for p in replica.parameters()
                      if p.grad is not None])
    averaged = [torch.stack(gs).mean(0) for gs in zip(*local, strict=True)]
    return averaged, local


def ring_all_reduce(vectors: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]]:
    """Sum ``vectors`` (one per worker) with the ring all-reduce; count what each worker sends.

    Every vector is cut into ``N`` chunks. In the reduce-scatter phase (``N - 1`` steps) worker
    ``i`` passes a running partial sum of one chunk to worker ``i + 1``, which adds its own; after
    it each worker holds one chunk fully summed. In the all-gather phase (``N - 1`` more steps) the
    finished chunks travel round the ring. Each worker sends ``2 (N - 1) / N`` of a vector's
    entries, whatever ``N`` is (Patarasuk & Yuan 2009).

    Returns:
        ``(results, sent)``: every worker's copy of the sum, and how many entries each sent.
    """
    n = len(vectors)
    if n < 2:
        raise ValueError(f"a ring needs at least 2 workers, got {n}")
    size = vectors[0].numel()
    if any(v.numel() != size for v in vectors):
        raise ValueError("every worker's vector must have the same length")
    chunks = [list(v.detach().flatten().clone().tensor_split(n)) for v in vectors]
    sent = [0] * n
    for step in range(n - 1):                       # reduce-scatter
        outgoing = [(i, (i - step) % n, chunks[i][(i - step) % n].clone()) for i in range(n)]
        for i, c, payload in outgoing:
            chunks[(i + 1) % n][c] += payload
            sent[i] += payload.numel()
    for step in range(n - 1):                       # all-gather
        outgoing = [(i, (i + 1 - step) % n, chunks[i][(i + 1 - step) % n].clone())
                    for i in range(n)]
        for i, c, payload in outgoing:
            chunks[(i + 1) % n][c] = payload
            sent[i] += payload.numel()
    return [torch.cat(c) for c in chunks], sent


ZERO_STAGES = (0, 1, 2, 3)


def zero_memory_per_device(parameters: float, devices: int, stage: int, *,
                           optimizer_bytes: float = 12.0) -> float:
    """Bytes of model state per device for mixed-precision Adam under ZeRO (Rajbhandari et al.).

    Per parameter: 2 bytes of fp16 parameters, 2 of fp16 gradients, and ``optimizer_bytes`` of
    optimizer state (12 for Adam: fp32 master weights, momentum and variance). Stage 0 is plain
    data parallelism (everything replicated); stage 1 shards the optimizer state over the
    ``devices``, stage 2 the gradients as well, stage 3 the parameters as well.

    Raises:
        ValueError: for a stage outside 0-3 or non-positive sizes.
    """
    if stage not in ZERO_STAGES:
        raise ValueError(f"stage must be one of {ZERO_STAGES}, got {stage!r}")
    if parameters <= 0 or devices < 1:
        raise ValueError(f"need parameters > 0 and devices >= 1, got {parameters}, {devices}")
    p, g, k = 2.0 * parameters, 2.0 * parameters, optimizer_bytes * parameters
    if stage >= 1:
        k /= devices
    if stage >= 2:
        g /= devices
    if stage >= 3:
        p /= devices
    return p + g + k


# ----------------------------------------------------------------------------------------------
# Figures


def log2_histogram(values: torch.Tensor, edges: np.ndarray,
                   scale: float = 1.0) -> np.ndarray:
    """Share of the nonzero finite ``values`` whose ``log2|value * scale|`` falls in each bin.

    Values outside the edges are counted in the first or last bin.
    """
    v = values.detach().double().flatten()
    v = v[torch.isfinite(v) & (v != 0)]
    if v.numel() == 0:
        raise ValueError("values has no nonzero finite entries")
    logs = (v.abs().log2() + math.log2(scale)).cpu().numpy()
    logs = np.clip(logs, edges[0], edges[-1] - 1e-9)
    counts, _ = np.histogram(logs, bins=edges)
    return counts / counts.sum()


def plot_format_ranges(samples: Mapping[str, torch.Tensor], formats: Sequence[str],
                       ax: Axes | None = None, xlim: tuple[float, float] = (-60.0, 20.0),
                       title: str | None = None) -> Axes:
    """Histograms of ``log2|g|`` over each format's representable range.

    Each format is a horizontal bar from its smallest subnormal to its largest value, the
    subnormal part lighter; the histograms of ``samples`` (label -> values) are drawn above them.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(9.0, 4.2))
    edges = np.arange(math.floor(xlim[0]), math.ceil(xlim[1]) + 1, 1.0)
    centres = (edges[:-1] + edges[1:]) / 2
    top = 0.0
    for i, (label, values) in enumerate(samples.items()):
        share = log2_histogram(values, edges)
        top = max(top, float(share.max()))
        ax.step(centres, share, where="mid", color=HISTOGRAM_COLOURS[i % len(HISTOGRAM_COLOURS)],
                label=label, lw=1.6)
    height = top * 0.09
    positions, names = [], []
    for j, name in enumerate(formats):
        info = format_info(name)
        y = -(j + 1) * height * 1.5
        lo, mid, hi = (math.log2(info.smallest_subnormal), math.log2(info.smallest_normal),
                       math.log2(info.max))
        colour = FORMAT_COLOURS.get(info.name, PALETTE[j % len(PALETTE)])
        ax.barh(y, mid - lo, left=lo, height=height, color=colour, alpha=0.35)
        ax.barh(y, hi - mid, left=mid, height=height, color=colour, alpha=0.9)
        positions.append(y)
        names.append(info.name)
    ticks = [t for t in ax.get_yticks() if 0 <= t <= top * 1.05]
    ax.set_yticks(ticks + positions, [f"{t:.2g}" for t in ticks] + names)
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_xlim(*xlim)
    ax.set(xlabel="log2 |gradient|  (bars: representable range; lighter part: subnormals)",
           ylabel="share of nonzero entries", title=title or "Gradients against number formats")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_scale_history(scales: Sequence[float], skipped: Sequence[bool], ax: Axes | None = None,
                       label: str = "loss scale", title: str | None = None) -> Axes:
    """The loss scale step by step (log scale), skipped steps marked with a red ✕."""
    if ax is None:
        _, ax = plt.subplots()
    steps = np.arange(len(scales))
    ax.step(steps, scales, where="post", label=label)
    marks = [i for i, s in enumerate(skipped) if s]
    if marks:
        ax.scatter(marks, [scales[i] for i in marks], marker="x", color="#D00000", zorder=5,
                   label=f"skipped step ({len(marks)})")
    ax.set(yscale="log", xlabel="step", ylabel="loss scale", title=title or "Dynamic loss scale")
    ax.set_yscale("log", base=2)
    ax.legend(fontsize=8)
    return ax
