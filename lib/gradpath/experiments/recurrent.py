"""Recurrent networks: the same weight matrix multiplied at every time step.

A vanilla recurrent network keeps a hidden state and updates it with one matrix at every step,

``h_t = f(W_in x_t + W_rec h_{t-1} + b)``,

so backpropagation through time multiplies the gradient by ``W_rec^T diag f'(·)`` once per step:
depth becomes sequence length. This module holds

- :class:`VanillaRNN`, a small recurrent net whose recurrent matrix is built with a chosen
  **spectral radius** (:func:`recurrent_matrix`), and whose weight layers are listed for the probes
  and :func:`gradpath.training.train`;
- :func:`gradient_through_time`, the norm ``‖∂L/∂h_t‖`` of the gradient that reaches every step;
- :func:`spectral_radius_sweep`, that measurement over several spectral radii;
- :func:`adding_problem`, a long-memory sequence task made by code;
- the one-unit "cliff" recurrence ``x_t = w·σ(x_{t-1}) + b`` of Pascanu et al. (2013):
  :func:`cliff_final_state` and :func:`cliff_scan`, which returns the loss and its gradient as the
  bias ``b`` moves across the wall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gradpath._checks import check_positive_int
from gradpath.activations import get_activation
from gradpath.data import Dataset
from gradpath.numerics import tensor_norms

RECURRENT_INITS = ("orthogonal", "gaussian")
RNN_ACTIVATIONS = ("tanh", "identity", "relu", "sigmoid")


def spectral_radius(matrix: torch.Tensor) -> float:
    """The largest absolute eigenvalue of a square matrix."""
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"need a square matrix, got shape {tuple(matrix.shape)}")
    eigenvalues = torch.linalg.eigvals(matrix.detach().double().cpu())
    return float(eigenvalues.abs().max())


def recurrent_matrix(size: int, radius: float, *, kind: str = "orthogonal",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """A random ``size × size`` matrix whose spectral radius is exactly ``radius``.

    Args:
        kind: ``"orthogonal"``: ``radius`` times a random orthogonal matrix, so every eigenvalue
            *and every singular value* equals ``radius`` and ``‖W^k v‖ = radius^k ‖v‖`` exactly;
            ``"gaussian"``: a Gaussian matrix rescaled so its largest eigenvalue has modulus
            ``radius`` (its singular values spread around that, as in a typical random init).

    Raises:
        ValueError: for a non-positive size or radius, or an unknown ``kind``.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    if kind not in RECURRENT_INITS:
        raise ValueError(f"unknown recurrent init {kind!r}; valid choices are "
                         f"{', '.join(RECURRENT_INITS)}")
    gaussian = torch.randn(size, size, generator=generator, dtype=torch.float64)
    if kind == "orthogonal":
        q, r = torch.linalg.qr(gaussian)
        q = q * torch.sign(torch.diagonal(r))  # a uniformly random orthogonal matrix
        return (radius * q).float()
    current = spectral_radius(gaussian)
    return (gaussian * (radius / current)).float()


class VanillaRNN(nn.Module):
    """``h_t = f(W_in x_t + W_rec h_{t-1} + b)`` for ``t = 1..T``, then ``y = W_out h_T + c``.

    Args:
        input_size: features per time step (inputs of shape ``(batch, time)`` mean 1 feature).
        hidden_size: units in the hidden state.
        output_size: outputs read from the last hidden state.
        activation: one of :data:`RNN_ACTIVATIONS`.
        radius: spectral radius of the recurrent matrix ``W_rec`` at initialization.
        recurrent_init: ``"orthogonal"`` or ``"gaussian"`` (see :func:`recurrent_matrix`).
        input_scale: standard deviation of ``W_in``'s entries.
        generator: optional ``torch.Generator`` for a reproducible initialization.

    The three weight layers (``input``, ``recurrent``, ``readout``) are ``nn.Linear`` modules listed
    by :meth:`weight_layers`, so :func:`gradpath.probes.gradient_norms_by_layer` and
    :func:`gradpath.training.train` work on this model as on the deep MLP.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int = 1, *,
                 activation: str = "tanh", radius: float = 1.0,
                 recurrent_init: str = "orthogonal", input_scale: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        input_size = check_positive_int("input_size", input_size)
        hidden_size = check_positive_int("hidden_size", hidden_size)
        output_size = check_positive_int("output_size", output_size)
        if activation not in RNN_ACTIVATIONS:
            raise ValueError(f"unknown recurrent activation {activation!r}; valid choices are "
                             f"{', '.join(RNN_ACTIVATIONS)}")
        if not input_scale > 0:
            raise ValueError(f"input_scale must be positive, got {input_scale}")
        self.activation_name = activation
        self.activation = get_activation(activation).make()
        self.input = nn.Linear(input_size, hidden_size)
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)
        self.readout = nn.Linear(hidden_size, output_size)
        with torch.no_grad():
            self.input.weight.normal_(0.0, input_scale, generator=generator)
            self.input.bias.zero_()
            self.recurrent.weight.copy_(recurrent_matrix(hidden_size, radius, kind=recurrent_init,
                                                         generator=generator))
            bound = 1.0 / hidden_size**0.5
            self.readout.weight.uniform_(-bound, bound, generator=generator)
            self.readout.bias.zero_()

    @property
    def hidden_size(self) -> int:
        return self.recurrent.weight.shape[0]

    def weight_layers(self) -> list[nn.Linear]:
        """The weight layers in the order the signal meets them: input, recurrent, readout."""
        return [self.input, self.recurrent, self.readout]

    def spectral_radius(self) -> float:
        """The current spectral radius of the recurrent matrix."""
        return spectral_radius(self.recurrent.weight)

    def _as_sequence(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        if x.dim() != 3 or x.shape[-1] != self.input.in_features:
            raise ValueError(f"expected inputs of shape (batch, time, {self.input.in_features})"
                             f" or (batch, time) for one feature, got {tuple(x.shape)}")
        return x

    def states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The hidden states ``h_1 … h_T`` (each ``(batch, hidden)``), still in the graph."""
        x = self._as_sequence(x)
        h = x.new_zeros(x.shape[0], self.hidden_size)
        drive = self.input(x)  # (batch, time, hidden): W_in x_t + b for every step at once
        out = []
        for t in range(x.shape[1]):
            h = self.activation(drive[:, t] + self.recurrent(h))
            out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.states(x)[-1])


def gradient_through_time(model: VanillaRNN, x: torch.Tensor, y: torch.Tensor,
                          loss_fn: nn.Module | None = None) -> list[float]:
    """``‖∂L/∂h_t‖`` for every step ``t = 1..T`` (first step first), on one batch.

    The loss is read from the last step only, so the gradient at step ``t`` has passed back
    through ``T - t`` copies of the recurrent matrix. Norms come from
    :func:`gradpath.numerics.tensor_norms` (right for every finite entry); non-finite values are
    returned, not raised.
    Leaves the parameter gradients of this backward pass on the model.
    """
    loss_fn = loss_fn if loss_fn is not None else nn.MSELoss()
    states = model.states(x)
    for h in states:
        h.retain_grad()
    model.zero_grad(set_to_none=True)
    loss_fn(model.readout(states[-1]), y).backward()
    return tensor_norms([h.grad for h in states])  # type: ignore[misc]


def spectral_radius_sweep(radii: Sequence[float], data: Dataset, *, hidden_size: int = 32,
                          activation: str = "tanh", recurrent_init: str = "orthogonal",
                          input_scale: float = 1.0, seed: int = 0) -> dict[float, list[float]]:
    """``{radius: gradient through time}`` for fresh networks, one per spectral radius.

    Every network shares the seed, so only the scale of the recurrent matrix differs.
    """
    if not radii:
        raise ValueError("radii is empty: pass spectral radii such as [0.5, 1.0, 1.5]")
    result: dict[float, list[float]] = {}
    features = 1 if data.x.dim() == 2 else int(data.x.shape[-1])
    for radius in radii:
        generator = torch.Generator().manual_seed(seed)
        model = VanillaRNN(features, hidden_size, data.outputs, activation=activation,
                           radius=float(radius), recurrent_init=recurrent_init,
                           input_scale=input_scale, generator=generator).to(data.x.device)
        result[float(radius)] = gradient_through_time(model, data.x, data.y)
    return result


def adding_problem(samples: int = 512, length: int = 50, seed: int = 0) -> Dataset:
    """The adding problem (Hochreiter & Schmidhuber 1997): remember two marked numbers.

    Each sequence has ``length`` steps of two features: a random number in ``[0, 1)`` and a
    marker that is 1 at exactly two steps, one in the first half and one in the second half, and
    0 elsewhere. The target is the sum of the two marked numbers. Predicting the mean (1.0)
    without looking at the sequence gives a mean squared error of about ``1/6``.

    Returns:
        A regression :class:`~gradpath.data.Dataset` with ``x`` of shape
        ``(samples, length, 2)`` and ``y`` of shape ``(samples, 1)``.
    """
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not isinstance(length, int) or length < 2:
        raise ValueError(f"length must be an integer >= 2, got {length!r}")
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(samples, length, generator=g)
    half = length // 2
    first = torch.randint(0, half, (samples,), generator=g)
    second = torch.randint(half, length, (samples,), generator=g)
    markers = torch.zeros(samples, length)
    rows = torch.arange(samples)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    target = values[rows, first] + values[rows, second]
    x = torch.stack([values, markers], dim=-1)
    return Dataset(x, target.unsqueeze(1), "regression")


# --- The one-unit cliff (Pascanu, Mikolov & Bengio 2013, section 2.3) -------------------------


def cliff_final_state(b: torch.Tensor | float, *, w: float = 5.0, x0: float = 0.0,
                      steps: int = 50) -> torch.Tensor:
    """Run ``x_t = w·σ(x_{t-1}) + b`` for ``steps`` steps from ``x0`` and return ``x_steps``.

    ``b`` may be a tensor of many biases (computed elementwise, keeping autograd's graph).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    b = torch.as_tensor(b, dtype=torch.float64)
    x = torch.full_like(b, float(x0))
    for _ in range(steps):
        x = w * torch.sigmoid(x) + b
    return x


@dataclass(frozen=True)
class CliffScan:
    """The cliff recurrence evaluated on a grid of biases.

    Attributes:
        b: the biases, in increasing order.
        final_state: ``x_T`` for each bias.
        loss: ``(x_T - target)²`` for each bias.
        gradient: ``dL/db`` for each bias, by backpropagation through the ``T`` steps.
    """

    b: np.ndarray
    final_state: np.ndarray
    loss: np.ndarray
    gradient: np.ndarray

    @property
    def wall(self) -> float:
        """The bias where ``|dL/db|`` is largest: the location of the cliff."""
        return float(self.b[int(np.argmax(np.abs(self.gradient)))])

    @property
    def steepest_gradient(self) -> float:
        """The largest ``|dL/db|`` on the grid."""
        return float(np.max(np.abs(self.gradient)))


def cliff_scan(biases: Sequence[float] | np.ndarray | torch.Tensor, *, w: float = 5.0,
               x0: float = 0.0, steps: int = 50, target: float = 0.7) -> CliffScan:
    """Loss ``(x_T - target)²`` of the one-unit recurrence, and ``dL/db``, for every bias.

    Computed in float64 with autograd: each bias is an independent copy of the recurrence, so
    the gradient of the summed loss is the per-bias gradient.
    """
    b = torch.as_tensor(np.asarray(biases, dtype=np.float64)).flatten()
    if b.numel() < 2:
        raise ValueError("need at least two biases to scan")
    b = torch.sort(b).values.requires_grad_(True)
    final = cliff_final_state(b, w=w, x0=x0, steps=steps)
    loss = (final - target) ** 2
    (grad,) = torch.autograd.grad(loss.sum(), b)
    return CliffScan(b.detach().numpy(), final.detach().numpy(), loss.detach().numpy(),
                     grad.numpy())
