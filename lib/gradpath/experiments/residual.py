"""Residual and highway connections, and the experiments that show what the skip path does.

- :func:`block_jacobians` checks ``∂y/∂x = ∂F/∂x + I`` for one residual block.
- :func:`gradient_profile` gives per-layer gradient norms of a fresh plain or residual network.
- :func:`residual_stream_statistics` measures the mean and spread of every block's output, and
  :func:`output_scale_by_depth` how large the signal gets at the top of stacks of growing depth.
- :func:`zero_residual_branches_` starts every residual branch at zero (the zero-initialization
  ingredient of Fixup, Zhang et al. 2019), so the network starts as an identity map.
- :func:`bypass_blocks` and :func:`lesion_study` delete blocks from a trained network (Veit et al.
  2016); :func:`path_length_counts` counts the paths of different lengths through a residual stack.
- :class:`HighwayBlock` and :class:`HighwayMLP` are gated skip connections (Srivastava et al.
  2015).
- :func:`steps_to_reach` reads convergence speed off a loss curve, and
  :func:`input_gradient_correlation` measures how "shattered" the gradient is (Balduzzi et al.
  2017).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from gradpath.activations import get_activation
from gradpath.data import Dataset
from gradpath.init import initialize_
from gradpath.models import Block, DeepMLP
from gradpath.numerics import as_float64
from gradpath.plots import plot_gradient_norms_by_layer, plot_training_curves, use_course_style
from gradpath.probes import gradient_norms_by_layer
from gradpath.training import loss_function

# --------------------------------------------------------------------------- the identity path


def block_jacobians(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Jacobians of a residual block at one input vector ``x``: ``(∂y/∂x, ∂F/∂x)``.

    ``F`` is the block with its skip removed (see :func:`residual_branch`). For a block
    ``y = F(x) + x`` the first equals the second plus the identity matrix.
    """
    if x.dim() != 1:
        raise ValueError("x must be a single input vector (1-D)")
    branch = residual_branch(block)
    full = torch.autograd.functional.jacobian(lambda v: block(v.unsqueeze(0))[0], x)
    part = torch.autograd.functional.jacobian(lambda v: branch(v.unsqueeze(0))[0], x)
    return full, part


class _Branch(nn.Module):
    def __init__(self, block: Block) -> None:
        super().__init__()
        self.block = block

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b = self.block
        if b.order == "pre":
            return b.linear(b.activation(b.norm(h)))
        if b.order == "post":
            return b.activation(b.norm(b.linear(h)))
        raise ValueError("the 'original' block applies its activation after the sum, so it has "
                         "no separate branch F with y = F(x) + x")


def residual_branch(block: nn.Module) -> nn.Module:
    """The residual branch ``F`` of a ``"pre"`` or ``"post"`` residual :class:`Block`."""
    if not isinstance(block, Block) or not block.residual:
        raise ValueError("need a residual gradpath.models.Block (residual=True)")
    return _Branch(block)


def gradient_profile(data: Dataset, *, depth: int, width: int, activation: str = "relu",
                     init: str = "he_normal", norm: str | None = None, residual: bool = False,
                     residual_order: str = "pre", seed: int = 0,
                     examples: int | None = 256) -> list[float]:
    """``‖∂L/∂W_ℓ‖`` for every layer (input side first) of a fresh network on one batch.

    Like :func:`gradpath.sweeps.gradient_profile`, with the residual ordering as an option.
    """
    model = DeepMLP(data.features, data.outputs, width=width, depth=depth, activation=activation,
                    init=init, norm=norm, residual=residual, residual_order=residual_order,
                    generator=torch.Generator().manual_seed(seed)).to(data.x.device)
    x, y = (data.x, data.y) if examples is None else (data.x[:examples], data.y[:examples])
    model.zero_grad(set_to_none=True)
    loss_function(data)(model(x), y).backward()
    return gradient_norms_by_layer(model)


# --------------------------------------------------------------------------- scale with depth


@dataclass(frozen=True)
class StreamStatistics:
    """Per block (input side first), statistics of its output over a batch.

    Attributes:
        mean: mean over all entries.
        std: standard deviation over all entries.
        rms: root mean square (the typical size of an entry).
    """

    mean: list[float]
    std: list[float]
    rms: list[float]


@torch.no_grad()
def residual_stream_statistics(model: nn.Module, x: torch.Tensor) -> StreamStatistics:
    """Run ``x`` through ``model`` and describe the output of every block in ``model.blocks``.

    Every statistic is accumulated in float64 (:func:`gradpath.numerics.as_float64`), so
    finite outputs give finite answers (a float32 sum of squares overflows once the entries' norm
    passes about ``1.8e19``). Non-finite outputs are reported as ``inf``/``nan``, not raised.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ValueError("model needs a `blocks` list (e.g. gradpath.models.DeepMLP)")
    outputs: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda _m, _i, o: outputs.append(as_float64(o)))
               for b in blocks]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    mean = [float(o.mean()) for o in outputs]
    std = [float(o.std()) for o in outputs]
    rms = [float(o.pow(2).mean().sqrt()) for o in outputs]
    return StreamStatistics(mean, std, rms)


def zero_residual_branches_(model: DeepMLP) -> DeepMLP:
    """Set the last weight layer of every residual branch (and its bias) to zero, in place.

    Every residual block then starts as the identity, ``y = x + 0``, so a stack of any depth
    starts as a shallow network; gradients still reach the zeroed weights, so they learn. This is
    the zero-initialization ingredient of Fixup (Zhang et al. 2019). Needs ``residual_order="pre"``
    (whose branch ends in its weight layer).
    """
    residual = [b for b in model.blocks if isinstance(b, Block) and b.residual]
    if not residual:
        raise ValueError("model has no residual blocks (build it with residual=True)")
    if any(b.order != "pre" for b in residual):
        raise ValueError("zero_residual_branches_ needs residual_order='pre', whose branch ends in "
                         "its linear layer")
    with torch.no_grad():
        for b in residual:
            b.linear.weight.zero_()
            b.linear.bias.zero_()
    return model


def output_scale_by_depth(data: Dataset, depths: Sequence[int], *, width: int,
                          activation: str = "relu", init: str = "he_normal",
                          norm: str | None = None, residual: bool = True,
                          residual_order: str = "pre", zero_branches: bool = False,
                          seed: int = 0, examples: int = 128) -> list[float]:
    """For each depth, the RMS of the last block's output of a fresh network: how large the
    signal that reaches the head has become.

    Overflow is reported as it is, not rewritten: ``inf`` when some entry of that output is
    ``inf`` and none is ``nan``; ``nan`` once one is ``nan`` (in float32, a block after the first
    ``inf`` computes ``inf − inf``). Both are non-finite; test with ``math.isfinite``.
    """
    if not depths:
        raise ValueError("need at least one depth")
    scales = []
    for depth in depths:
        model = DeepMLP(data.features, data.outputs, width=width, depth=depth,
                        activation=activation, init=init, norm=norm, residual=residual,
                        residual_order=residual_order,
                        generator=torch.Generator().manual_seed(seed)).to(data.x.device)
        if zero_branches:
            zero_residual_branches_(model)
        value = residual_stream_statistics(model, data.x[:examples]).rms[-1]
        scales.append(value)
    return scales


# --------------------------------------------------------------------------- lesions (Veit et al.)


class _Bypass(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h


@contextmanager
def bypass_blocks(model: DeepMLP, indices: Sequence[int]) -> Iterator[DeepMLP]:
    """Temporarily delete blocks: inside the ``with``, each listed block passes its input through.

    For a residual block this removes its branch and keeps the skip; for a plain block it removes
    the layer altogether. Block 0 (input width → hidden width) cannot be deleted.
    """
    valid = range(1, len(model.blocks))
    for i in indices:
        if i not in valid:
            raise ValueError(f"block index {i} is not deletable; valid indices are 1.."
                             f"{len(model.blocks) - 1} (block 0 changes the width)")
    saved = {i: model.blocks[i] for i in indices}
    try:
        for i in indices:
            model.blocks[i] = _Bypass()
        yield model
    finally:
        for i, block in saved.items():
            model.blocks[i] = block


@torch.no_grad()
def accuracy(model: nn.Module, data: Dataset) -> float:
    """Classification accuracy in evaluation mode (the mode is restored afterwards)."""
    if data.task != "classification":
        raise ValueError("accuracy needs a classification dataset")
    was = model.training
    model.eval()
    value = float((model(data.x).argmax(dim=1) == data.y).float().mean())
    model.train(was)
    return value


def lesion_study(model: DeepMLP, data: Dataset) -> list[float]:
    """Accuracy on ``data`` after deleting each deletable block on its own (index 1 first)."""
    result = []
    for i in range(1, len(model.blocks)):
        with bypass_blocks(model, [i]):
            result.append(accuracy(model, data))
    return result


def path_length_counts(blocks: int) -> list[int]:
    """How many of the ``2**blocks`` paths through ``blocks`` residual blocks pass through exactly
    ``k`` branches, for ``k = 0..blocks``: the binomial coefficients ``C(blocks, k)``."""
    if not isinstance(blocks, int) or blocks < 0:
        raise ValueError(f"blocks must be a non-negative integer, got {blocks!r}")
    return [math.comb(blocks, k) for k in range(blocks + 1)]


# --------------------------------------------------------------------------- highway networks


class HighwayBlock(nn.Module):
    """A highway layer (Srivastava et al. 2015): ``y = T(x)·H(x) + (1 − T(x))·x``.

    ``H(x) = act(W_H x + b_H)`` is the transform and ``T(x) = σ(W_T x + b_T)`` the transform gate;
    ``1 − T`` is the carry gate. A negative gate bias makes every layer start out mostly carrying
    its input through.
    """

    def __init__(self, width: int, activation: str, gate_bias: float = -2.0) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.gate = nn.Linear(width, width)
        self.activation = get_activation(activation).make()
        self.gate_bias = gate_bias
        self.last_gate_mean: float = math.nan

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(h))
        self.last_gate_mean = float(t.detach().mean())
        return t * self.activation(self.linear(h)) + (1 - t) * h


class HighwayMLP(nn.Module):
    """A deep MLP with highway layers: a plain input layer, ``depth − 2`` highway layers and a
    linear head, so it has ``depth`` transform layers like :class:`~gradpath.models.DeepMLP`.

    ``weight_layers()`` lists the transform layers (input layer first), so the probes of
    :mod:`gradpath.probes` and the training loop work on it unchanged.
    """

    def __init__(self, in_features: int, out_features: int, width: int = 64, depth: int = 10,
                 activation: str = "tanh", init: str = "xavier_normal", gate_bias: float = -2.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(depth, int) or depth < 3:
            raise ValueError(f"depth must be an integer >= 3 (input layer, a highway layer, "
                             f"head), got {depth!r}")
        self.activation_name = get_activation(activation).name
        layers: list[nn.Module] = [Block(in_features, width, activation)]
        layers += [HighwayBlock(width, activation, gate_bias) for _ in range(depth - 2)]
        self.blocks = nn.ModuleList(layers)
        self.head = nn.Linear(width, out_features)
        initialize_(self, init, activation=activation, generator=generator)
        with torch.no_grad():
            for b in self.highway_layers():
                b.gate.bias.fill_(gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def highway_layers(self) -> list[HighwayBlock]:
        """The highway layers (every block after the input layer)."""
        return [cast(HighwayBlock, b) for b in self.blocks[1:]]

    def weight_layers(self) -> list[nn.Linear]:
        first = cast(Block, self.blocks[0])
        return [first.linear] + [b.linear for b in self.highway_layers()] + [self.head]

    def gate_means(self) -> list[float]:
        """Mean transform gate ``T`` of each highway layer on the last batch it saw."""
        return [b.last_gate_mean for b in self.highway_layers()]


# --------------------------------------------------------------------------- convergence


def steps_to_reach(losses: Sequence[float], target: float, window: int = 10) -> int | None:
    """First step at which the running mean of the last ``window`` losses is at or below
    ``target`` (``None`` if it never gets there)."""
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    v = np.asarray(losses, dtype=float)
    for i in range(window - 1, len(v)):
        chunk = v[i - window + 1:i + 1]
        if np.all(np.isfinite(chunk)) and chunk.mean() <= target:
            return i
    return None


# --------------------------------------------------------------------------- shattered gradients


def input_gradient_correlation(model: nn.Module, *, points: int = 256, low: float = -2.0,
                               high: float = 2.0, train_mode: bool = True
                               ) -> tuple[np.ndarray, float]:
    """Gradients along a line of inputs, and how correlated neighbouring ones are.

    For a network with one input and one output, sends ``points`` evenly spaced inputs in
    ``[low, high]`` through it as one batch, computes the gradient of the summed output with
    respect to each input, and returns those gradients with the correlation between each and the
    next. Near 1: smooth, like brown noise; near 0: "shattered", like white noise (Balduzzi et al.
    2017, who measured networks with batch norm in training mode, the default here).
    """
    if points < 3 or not high > low:
        raise ValueError("need points >= 3 and high > low")
    probe = copy.deepcopy(model)  # training mode would update batch-norm running statistics
    probe.train(train_mode)
    device = next(probe.parameters()).device
    x = torch.linspace(low, high, points, device=device).unsqueeze(1).requires_grad_(True)
    out = probe(x)
    if out.shape != (points, 1):
        raise ValueError("input_gradient_correlation needs a model with one input and one output")
    (grad,) = torch.autograd.grad(out.sum(), x)
    g = grad.detach().squeeze(1).double().cpu().numpy()
    if np.std(g[:-1]) == 0 or np.std(g[1:]) == 0:
        return g, math.nan
    return g, float(np.corrcoef(g[:-1], g[1:])[0, 1])


# --------------------------------------------------------------------------- live explorer


def plot_residual_comparison(data: Dataset, *, depth: int, width: int, activation: str,
                             norm: str | None, residual_order: str, steps: int, lr: float,
                             batch_size: int, seed: int = 0) -> Figure:
    """Gradient norms by layer at initialization (left) and training loss (right) of a plain and a
    residual network of the same depth. Used by the chapter's live explorer."""
    from gradpath.experiments.normalization import smooth, train_and_probe

    use_course_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    profiles, curves = {}, {}
    init = "he_normal" if get_activation(activation).recommended_init == "he" else "xavier_normal"
    for label, residual in (("plain", False), (f"residual ({residual_order})", True)):
        profiles[label] = gradient_profile(data, depth=depth, width=width, activation=activation,
                                           init=init, norm=norm, residual=residual,
                                           residual_order=residual_order, seed=seed)
        model = DeepMLP(data.features, data.outputs, width=width, depth=depth,
                        activation=activation, init=init, norm=norm, residual=residual,
                        residual_order=residual_order,
                        generator=torch.Generator().manual_seed(seed))
        run = train_and_probe(model, data, steps=steps, lr=lr, batch_size=batch_size, seed=seed)
        curves[label] = smooth(run.loss)
    plot_gradient_norms_by_layer(profiles, ax=left, title="At initialization")
    plot_training_curves(curves, ax=right, title="Training loss")
    fig.suptitle(f"{activation}, depth {depth}, norm {norm}")
    fig.tight_layout()
    return fig
