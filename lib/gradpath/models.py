"""The deep MLP the course experiments on, built from ``torch.nn`` parts.

``DeepMLP`` stacks ``depth`` weight layers. Every hidden layer is a :class:`Block`: a linear map,
an optional normalization and an activation, optionally wrapped in a residual connection. The
blocks are kept in ``model.blocks`` so probes can hook each layer's output, and every weight layer
is listed in order by :meth:`DeepMLP.weight_layers`.
"""

from __future__ import annotations

import numbers
from typing import Literal, cast

import torch
from torch import nn

from gradpath._checks import check_choice, check_generator, check_positive_int
from gradpath.activations import get_activation
from gradpath.init import initialize_

NORMALIZATIONS = (None, "batch", "layer", "group")
RESIDUAL_ORDERS = ("post", "pre", "original")

Normalization = Literal["batch", "layer", "group"] | None


def make_norm(kind: str | None, width: int, groups: int = 8) -> nn.Module:
    """Return the normalization module for ``kind`` (``None`` gives ``nn.Identity``).

    Raises:
        ValueError: for an unknown kind, or a width the groups do not divide.
        TypeError: for a width or group count that is not an integer.
    """
    check_choice("normalization", kind, NORMALIZATIONS)
    check_positive_int("width", width)
    if kind is None:
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    if kind == "group":
        check_positive_int("groups", groups)
        if width % groups:
            raise ValueError(f"group norm needs width divisible by {groups}, got {width}")
        return nn.GroupNorm(groups, width)
    raise ValueError(f"unknown normalization {kind!r}; valid choices are None, "
                     f"{', '.join(repr(k) for k in NORMALIZATIONS if k)}")


class Block(nn.Module):
    """One hidden layer.

    Plain: ``a = act(norm(W h + b))``.
    Residual, ``order="post"``: ``a = h + act(norm(W h + b))`` (the skip is added after the
    activation). Residual, ``order="pre"``: ``a = h + W act(norm(h)) + b`` (pre-activation, as in
    He et al. 2016b), so the identity path carries the signal with nothing applied to it.
    Residual, ``order="original"``: ``a = act(norm(W h + b) + h)`` (the first ResNet, He et al.
    2016a: the skip joins before the activation, which then acts on the sum).
    """

    def __init__(self, in_features: int, out_features: int, activation: str,
                 norm: str | None = None, residual: bool = False, order: str = "post") -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("out_features", out_features)
        if order not in RESIDUAL_ORDERS:
            raise ValueError(f"unknown residual order {order!r}; valid choices are "
                             f"{', '.join(RESIDUAL_ORDERS)}")
        if residual and in_features != out_features:
            raise ValueError("a residual block needs in_features == out_features")
        self.linear = nn.Linear(in_features, out_features)
        self.norm = make_norm(norm, in_features if (residual and order == "pre") else out_features)
        self.activation = get_activation(activation).make()
        self.residual = residual
        self.order = order

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.residual and self.order == "pre":
            return h + self.linear(self.activation(self.norm(h)))
        if self.residual and self.order == "original":
            return self.activation(self.norm(self.linear(h)) + h)
        out = self.activation(self.norm(self.linear(h)))
        return h + out if self.residual else out


class DeepMLP(nn.Module):
    """A multilayer perceptron with ``depth`` weight layers.

    Layer 1 maps the input to ``width`` units, layers 2..depth-1 are ``width``-to-``width`` blocks
    (residual if asked; the first block is never residual because its shapes differ), and layer
    ``depth`` is a plain linear head with no activation.

    Args:
        in_features, out_features: input and output sizes.
        width: hidden units per layer.
        depth: number of weight layers, at least 2.
        activation: a name from :data:`gradpath.activations.ACTIVATIONS`.
        init: a scheme from :data:`gradpath.init.INITIALIZATIONS`.
        init_scale: bound or std for the ``"uniform"`` / ``"normal"`` schemes.
        norm: ``None``, ``"batch"``, ``"layer"`` or ``"group"`` (applied in every hidden block).
        residual: add identity skip connections around the width-to-width blocks.
        residual_order: ``"post"``, ``"pre"`` or ``"original"`` (see :class:`Block`).
        generator: optional ``torch.Generator`` for a reproducible initialization.
        final_norm: apply ``norm`` and the activation once more between the last block and the
            head (``model.final``), as pre-activation ResNets do (He et al. 2016b) so that the
            head sees a normalized signal however large the residual stream has grown. Needs a
            ``norm``; off by default.
    """

    def __init__(self, in_features: int, out_features: int, width: int = 64, depth: int = 10,
                 activation: str = "relu", init: str = "pytorch_default",
                 init_scale: float | None = None, norm: str | None = None,
                 residual: bool = False, residual_order: str = "post",
                 generator: torch.Generator | None = None, final_norm: bool = False) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features),
                            ("width", width)):
            check_positive_int(name, value)
        if isinstance(depth, bool) or not isinstance(depth, numbers.Integral):
            raise TypeError(f"depth must be an integer >= 2 (input layer + head), got {depth!r}")
        if depth < 2:
            raise ValueError(f"depth must be an integer >= 2 (input layer + head), got {depth!r}")
        depth = int(depth)
        check_choice("normalization", norm, NORMALIZATIONS)
        check_generator("generator", generator)
        self.in_features: int = int(in_features)
        self.activation_name: str = get_activation(activation).name
        blocks = [Block(in_features, width, activation, norm)]
        blocks += [Block(width, width, activation, norm, residual, residual_order)
                   for _ in range(depth - 2)]
        self.blocks: nn.ModuleList = nn.ModuleList(blocks)
        if final_norm and norm is None:
            raise ValueError("final_norm=True needs a norm ('batch', 'layer' or 'group')")
        self.final: nn.Module = (nn.Sequential(make_norm(norm, width),
                                               get_activation(activation).make())
                                 if final_norm else nn.Identity())
        self.head: nn.Linear = nn.Linear(width, out_features)
        initialize_(self, init, scale=init_scale, activation=activation, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch of shape ``(batch, in_features)`` to ``(batch, out_features)``.

        Raises:
            ValueError: if the last dimension of ``x`` is not ``in_features`` (torch's own
                message would be "mat1 and mat2 shapes cannot be multiplied").
            TypeError: if ``x`` is not a floating-point tensor.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"DeepMLP needs a tensor input, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"DeepMLP needs a floating-point input, got x of dtype {x.dtype} "
                            "(convert it with x.float())")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            shape = tuple(x.shape)
            raise ValueError(f"DeepMLP was built for {self.in_features} input features (x of shape "
                             f"(batch, {self.in_features})), got x of shape {shape}")
        for block in self.blocks:
            x = block(x)
        return self.head(self.final(x))

    def weight_layers(self) -> list[nn.Linear]:
        """Every linear layer, from the input (layer 1) to the head (layer ``depth``)."""
        return [cast(Block, b).linear for b in self.blocks] + [self.head]
