"""How the choice of activation function shapes the gradient's trip backward.

- :func:`summarize_derivatives` measures, with autograd, what each activation's derivative does:
  its peak, where the peak is, its value at chosen points, and how far out it stays useful.
- :func:`plot_activations_and_derivatives` draws every activation next to its derivative.
- :func:`gradient_norms_at_gain` and :func:`gain_sweep` build deep networks whose weights have
  standard deviation ``gain / sqrt(fan_in)`` and record the gradient norm of every layer, so
  saturating and non-saturating activations can be compared under the same weights.
- :func:`mean_field` and :func:`critical_gain` compute, by Gauss-Hermite quadrature, the
  mean-field quantities of Poole et al. (2016) and Schoenholz et al. (2017): the fixed point ``q*``
  of the pre-activation variance and ``χ₁ = gain² E[f'(z)²]``, the factor by which the backward
  signal's second moment changes per layer. ``χ₁ = 1`` is the *edge of chaos*.
- :func:`network_at_gain` builds the network those formulas describe (hidden weights
  ``N(0, gain²/fan_in)``, zero biases, a Xavier read-out), and :func:`shared_fraction` measures how
  much of a layer's signal is the same for every input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from gradpath.activations import derivative, get_activation, max_derivative_on_grid
from gradpath.data import Dataset
from gradpath.init import initialize_
from gradpath.models import DeepMLP
from gradpath.plots import PALETTE, use_course_style
from gradpath.probes import gradient_norms_by_layer
from gradpath.sweeps import geometric_mean
from gradpath.training import loss_function

GRID = (-10.0, 10.0)


@dataclass(frozen=True)
class DerivativeSummary:
    """What one activation's derivative looks like, measured on a grid with autograd.

    Attributes:
        name: the activation.
        peak: the largest value of ``f'(x)``.
        peak_at: where it is reached.
        values: ``f'(x)`` at the requested points, ``{x: f'(x)}``.
        left_tail: ``f'(-10)``: how much gradient passes far on the negative side.
        right_tail: ``f'(10)``: the same on the positive side.
        saturates: ``"both sides"``, ``"negative side"``, ``"positive side"`` or ``"none"``:
            where the derivative falls below 1% of its peak at ``|x| = 10``.
    """

    name: str
    peak: float
    peak_at: float
    values: dict[float, float]
    left_tail: float
    right_tail: float
    saturates: str


def summarize_derivatives(names: Sequence[str],
                          points: Sequence[float] = (-5.0, -2.0, 0.0, 2.0, 5.0),
                          ) -> list[DerivativeSummary]:
    """One :class:`DerivativeSummary` per activation name (validated against the registry)."""
    if not names:
        raise ValueError("names is empty: pass activation names, e.g. ['sigmoid', 'relu']")
    out = []
    for name in names:
        get_activation(name)
        peak, peak_at = max_derivative_on_grid(name, *GRID)
        xs = torch.tensor([float(p) for p in points] + list(GRID), dtype=torch.float64)
        d = [float(v) for v in derivative(name, xs)]
        values = dict(zip([float(p) for p in points], d[: len(points)], strict=True))
        left, right = d[-2], d[-1]
        low_left, low_right = abs(left) < 0.01 * peak, abs(right) < 0.01 * peak
        sides = {(True, True): "both sides", (True, False): "negative side",
                 (False, True): "positive side", (False, False): "none"}[(low_left, low_right)]
        out.append(DerivativeSummary(name, peak, peak_at, values, left, right, sides))
    return out


def summary_markdown(summaries: Sequence[DerivativeSummary]) -> str:
    """The summaries as a Markdown table (one row per activation)."""
    if not summaries:
        raise ValueError("summaries is empty")
    points = list(summaries[0].values)
    head = ["activation", "max f'(x)", "at x"] + [f"f'({p:g})" for p in points] + ["saturates"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        cells = [s.name, f"{s.peak:.4f}", f"{s.peak_at:.2f}"]
        cells += [f"{s.values[p]:.4f}" for p in points] + [s.saturates]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def useful_range(name: str, level: float, low: float = -10.0, high: float = 10.0,
                 points: int = 200_001) -> tuple[float, float]:
    """The interval outside which ``|f'(x)| < level`` everywhere on ``[low, high]``.

    Returns ``(a, b)``: the smallest and largest grid points where ``|f'(x)| >= level``
    (``(nan, nan)`` if the derivative never reaches ``level``). For tanh and ``level=0.1`` this
    is about ``(-1.82, 1.82)``: beyond ``|x| ≈ 1.82`` less than a tenth of the gradient passes.
    """
    if not level > 0:
        raise ValueError(f"level must be positive, got {level!r}")
    if not high > low or points < 2:
        raise ValueError("need high > low and at least 2 points")
    x = torch.linspace(low, high, points, dtype=torch.float64)
    d = derivative(name, x).abs()
    inside = x[d >= level]
    if inside.numel() == 0:
        return math.nan, math.nan
    return float(inside.min()), float(inside.max())


def plot_activations_and_derivatives(names: Sequence[str], low: float = -5.0,
                                     high: float = 5.0) -> Figure:
    """Two panels: the activations ``f(x)`` on the left, their autograd derivatives on the right."""
    if not names:
        raise ValueError("names is empty")
    use_course_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = torch.linspace(low, high, 1001, dtype=torch.float64)
    for i, name in enumerate(names):
        act = get_activation(name)
        with torch.no_grad():
            y = act(x)
        color = PALETTE[i % len(PALETTE)]
        left.plot(x, y, color=color, label=name)
        right.plot(x, derivative(name, x), color=color, label=name)
    left.set_title("activation $f(x)$")
    right.set_title("derivative $f'(x)$ (autograd)")
    for ax in (left, right):
        ax.set_xlabel("x")
        ax.axhline(0, color="gray", lw=0.5)
    left.set_ylim(-1.5, 3)
    right.set_ylim(-0.2, 1.25)
    right.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def gradient_norms_at_gain(data: Dataset, *, activation: str, gain: float, depth: int = 20,
                           width: int = 64, seed: int = 0,
                           device: torch.device | str | None = None) -> list[float]:
    """Per-layer ``‖∂L/∂W_l‖`` of a fresh network whose weights are ``N(0, gain² / fan_in)``.

    ``gain = sqrt(2)`` is He initialization, ``gain = 1`` LeCun's; biases are zero. One batch
    (all of ``data``) and the task's loss give the gradient.
    """
    if not gain > 0:
        raise ValueError(f"gain must be positive, got {gain!r}")
    generator = torch.Generator().manual_seed(seed)
    model = DeepMLP(data.features, data.outputs, width=width, depth=depth, activation=activation,
                    init="he_normal", generator=generator)
    initialize_(model, "he_normal", gain=gain, generator=generator)
    if device is not None:
        model, data = model.to(device), data.to(device)
    loss_function(data)(model(data.x), data.y).backward()
    return gradient_norms_by_layer(model)


def gain_sweep(data: Dataset, activations: Sequence[str], gains: Sequence[float], *,
               seeds: int = 1, **kwargs: object) -> dict[float, dict[str, list[float]]]:
    """``{gain: {activation: per-layer gradient norms}}``, each a geometric mean over ``seeds``."""
    if not activations or not gains:
        raise ValueError("need at least one activation and one gain")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    out: dict[float, dict[str, list[float]]] = {}
    for g in gains:
        out[g] = {}
        for a in activations:
            runs = [gradient_norms_at_gain(data, activation=a, gain=g, seed=s,
                                           **kwargs)  # type: ignore[arg-type]
                    for s in range(seeds)]
            out[g][a] = [geometric_mean(layer) for layer in zip(*runs, strict=True)]
    return out


# --------------------------------------------------------------------------- mean-field theory

ActivationLike = str | Callable[[torch.Tensor], torch.Tensor]


def _elementwise(activation: ActivationLike) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(activation, str):
        return get_activation(activation).make()
    if callable(activation):
        return activation
    raise ValueError(f"activation must be a registry name or a callable, got {activation!r}")


def _value_and_slope(f: Callable[[torch.Tensor], torch.Tensor],
                     z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        z = z.detach().clone().requires_grad_(True)
        value = f(z)
        (slope,) = torch.autograd.grad(value.sum(), z)
    return value.detach(), slope.detach()


@dataclass(frozen=True)
class MeanField:
    """Mean-field description of a deep, wide network at initialization (Poole et al. 2016).

    Hidden weights are ``N(0, gain²/n)`` and biases ``N(0, bias_std²)``; in the infinite-width
    limit every pre-activation is Gaussian with variance ``q``, and ``q`` obeys
    ``q ← gain² E[f(√q u)²] + bias_std²`` (``u ~ N(0, 1)``) from layer to layer.

    Attributes:
        gain: the weight gain (weight std times ``√n``).
        bias_std: the biases' standard deviation.
        q: the fixed point ``q*`` of that map (the variance every deep layer's input settles at).
        chi: ``χ₁ = gain² E[f'(√q* u)²]``: per layer, the backward signal's second moment is
            multiplied by ``χ₁`` (Schoenholz et al. 2017). ``< 1``: ordered (vanishing),
            ``> 1``: chaotic (exploding), ``= 1``: the edge of chaos.
        converged: whether the iteration for ``q*`` settled (it creeps towards 0 slowly exactly at
            a critical point with ``q* = 0``, as tanh's at gain 1).
    """

    gain: float
    bias_std: float
    q: float
    chi: float
    converged: bool

    def backward_change(self, layers: int) -> float:
        """``χ₁ ** layers``: the predicted change of the backward signal's second moment."""
        return self.chi ** layers


def _gaussian_grid(points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes on [-10, 10] and weights of ``N(0, 1)`` (an even count: no node on a kink at 0)."""
    u = torch.linspace(-10.0, 10.0, points + points % 2, dtype=torch.float64)
    w = torch.exp(-0.5 * u**2)
    return u, w / w.sum()


def mean_field(activation: ActivationLike, gain: float, bias_std: float = 0.0, *,
               points: int = 4000, iterations: int = 2000, q_start: float = 1.0) -> MeanField:
    """Fixed point ``q*`` and ``χ₁`` for ``activation`` at weight gain ``gain``.

    ``activation`` is a registry name or any elementwise callable (e.g.
    ``lambda z: torch.sigmoid(z) - 0.5``); its derivative comes from autograd. Expectations over
    ``u ~ N(0, 1)`` are sums over ``points`` evenly spaced nodes on ``[-10, 10]`` in float64
    (a fine grid rather than Gauss-Hermite nodes, because at large ``q`` the sigmoid's slope is a
    narrow peak in ``u``). The map for ``q`` is iterated from ``q_start`` until it settles; for an
    unbounded activation whose ``q`` keeps growing (ReLU above gain ``√2``) it stops at ``1e12``
    and ``χ₁`` is taken there (for ReLU it does not depend on ``q``).

    Raises:
        ValueError: for a non-positive gain, a negative bias_std, or fewer than 100 points.
    """
    if not gain > 0:
        raise ValueError(f"gain must be positive, got {gain!r}")
    if not bias_std >= 0:
        raise ValueError(f"bias_std must be non-negative, got {bias_std!r}")
    if points < 100:
        raise ValueError(f"points must be at least 100, got {points!r}")
    f = _elementwise(activation)
    u, w = _gaussian_grid(points)
    q, converged = float(q_start), False
    with torch.no_grad():
        for _ in range(iterations):
            new = gain**2 * float((w * f(math.sqrt(q) * u) ** 2).sum()) + bias_std**2
            if abs(new - q) <= 1e-12 * max(1.0, q):
                q, converged = new, True
                break
            if not new < 1e12:
                break
            q = new
    _, slope = _value_and_slope(f, math.sqrt(q) * u)
    chi = gain**2 * float((w * slope**2).sum())
    return MeanField(float(gain), float(bias_std), q, chi, converged)


def _moments(f: Callable[[torch.Tensor], torch.Tensor], q: torch.Tensor,
             points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``E[f(√q u)²]`` and ``E[f'(√q u)²]`` for every entry of ``q`` at once."""
    u, w = _gaussian_grid(points)
    value, slope = _value_and_slope(f, q.sqrt().unsqueeze(1) * u.unsqueeze(0))
    return (value**2 * w).sum(dim=1), (slope**2 * w).sum(dim=1)


def fixed_point_curve(activation: ActivationLike, q: Sequence[float] | np.ndarray,
                      bias_std: float = 0.0, *,
                      points: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """``(gains, chis)``: for each fixed-point variance ``q*`` in ``q``, the gain that makes it
    the fixed point, ``gain² = (q* − bias_std²) / E[f(√q* u)²]``, and that network's ``χ₁``.

    Walking ``q*`` traces ``χ₁`` as a function of the gain without iterating the variance map,
    which is how :func:`critical_gain` finds the edge of chaos. Entries with ``q* <= bias_std²``
    have no such gain and come back as ``nan``.
    """
    f = _elementwise(activation)
    qs = torch.as_tensor(np.asarray(q, dtype=float), dtype=torch.float64)
    if qs.dim() != 1 or qs.numel() == 0 or not bool((qs > 0).all()):
        raise ValueError("q must be a non-empty sequence of positive variances")
    second, slope2 = _moments(f, qs, points)
    gain2 = (qs - bias_std**2) / second
    gain2 = torch.where(gain2 > 0, gain2, torch.full_like(gain2, math.nan))
    return gain2.sqrt().numpy(), (gain2 * slope2).numpy()


def critical_gain(activation: ActivationLike, bias_std: float = 0.0, *,
                  q_range: tuple[float, float] = (1e-8, 1e4), points: int = 4000) -> float:
    """The gain at which ``χ₁ = 1`` (the edge of chaos) for weights ``N(0, gain²/n)``.

    Scans fixed-point variances ``q*`` on a log grid over ``q_range`` with
    :func:`fixed_point_curve`, then bisects between the two grid points where ``χ₁ − 1`` changes
    sign. Where it never changes sign, the edge lies at an end of the range: for tanh with zero
    biases ``χ₁ → 1`` as ``q* → 0`` (the critical gain is ``1/tanh'(0) = 1``), and for ReLU
    ``χ₁ = gain²/2`` whatever ``q*`` (``√2``); the grid point closest to ``χ₁ = 1`` is returned.
    With zero biases the logistic sigmoid's edge is near gain 10.

    Raises:
        ValueError: for a bad range, or if no gain on the grid comes within 1% of ``χ₁ = 1``.
    """
    low, high = q_range
    if not 0 < low < high:
        raise ValueError(f"q_range must satisfy 0 < low < high, got {q_range!r}")
    grid = np.geomspace(max(low, 1.0001 * bias_std**2 if bias_std > 0 else low), high, 241)
    gains, chis = fixed_point_curve(activation, grid, bias_std, points=points)
    ok = np.isfinite(gains) & np.isfinite(chis)
    if not ok.any():
        raise ValueError("no fixed point with a finite gain in q_range")
    grid, gains, chis = grid[ok], gains[ok], chis[ok]
    excess = chis - 1.0
    crossing = np.nonzero(np.sign(excess[:-1]) * np.sign(excess[1:]) < 0)[0]
    if crossing.size == 0:
        best = int(np.argmin(np.abs(excess)))
        if abs(excess[best]) > 0.01:
            raise ValueError("chi_1 does not reach 1 for any fixed point in q_range")
        return float(gains[best])
    lo, hi = float(grid[crossing[0]]), float(grid[crossing[0] + 1])
    sign_lo = np.sign(excess[crossing[0]])
    while hi > lo * (1 + 1e-10):
        mid = math.sqrt(lo * hi)
        g, c = fixed_point_curve(activation, [mid], bias_std, points=points)
        if np.sign(c[0] - 1.0) == sign_lo:
            lo = mid
        else:
            hi = mid
    return float(fixed_point_curve(activation, [math.sqrt(lo * hi)], bias_std, points=points)[0][0])


def network_at_gain(in_features: int, out_features: int, *, activation: str, gain: float,
                    depth: int, width: int, seed: int = 0,
                    device: torch.device | str | None = None) -> DeepMLP:
    """A :class:`~gradpath.models.DeepMLP` as mean-field theory describes it.

    Hidden weights ``N(0, gain²/fan_in)`` (:func:`gradpath.init.initialize_` with ``he_normal``
    and ``gain``), zero biases, and a read-out layer with Xavier's gain-1 weights, so that a large
    hidden gain does not also blow up the logits. Everything is drawn from ``seed``.
    """
    if not gain > 0:
        raise ValueError(f"gain must be positive, got {gain!r}")
    generator = torch.Generator().manual_seed(seed)
    model = DeepMLP(in_features, out_features, width=width, depth=depth, activation=activation,
                    init="he_normal", generator=generator)
    initialize_(model, "he_normal", gain=gain, generator=generator)
    initialize_(model.head, "xavier_normal", generator=generator)
    return model if device is None else model.to(device)


def shared_fraction(h: torch.Tensor) -> float:
    """The share of a layer's signal that is the same for every example of a batch.

    ``h`` is (batch, units). Returns ``‖mean_i h_i‖² / mean_i ‖h_i‖²`` (float64): 0 when the
    examples' vectors average out, 1 when every example gives the same vector, so that only
    ``1 − shared`` of the signal can tell inputs apart.

    Raises:
        ValueError: for a tensor that is not (batch >= 2, units) or is all zeros.
    """
    if h.dim() != 2 or h.shape[0] < 2:
        raise ValueError(f"h must be a (batch >= 2, units) tensor, got {tuple(h.shape)}")
    h = h.detach().double()
    energy = float(h.pow(2).sum(dim=1).mean())
    if not energy > 0:
        raise ValueError("h is all zeros: no signal to share")
    return float(h.mean(dim=0).pow(2).sum()) / energy
