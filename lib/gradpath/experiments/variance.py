"""Variance, layer by layer: the forward signal and the backward gradient at initialization.

Initialization schemes are derived from one requirement: the variance of the signal should stay
the same from layer to layer, forward (the pre-activations ``z_l`` each nonlinearity sees) and
backward (the gradient ``∂L/∂a_l`` arriving at each layer's output). :func:`signal_variances`
measures both in one forward and one backward pass. The backward pass starts from a standard
normal gradient at the network's output (``L = <g, f(x)>`` with ``g ~ N(0, I)``), so what it
measures is the network's own amplification, not a property of some loss or labels.

:func:`variance_sweep` repeats the measurement over initialization recipes and activations,
:func:`variances_at_gain` measures a scheme at an explicit gain (Xavier with tanh's 5/3, say),
:func:`per_layer_factor` condenses a profile into "how much per layer", and
:func:`initialization_table` turns the sweep into the course's table of which initialization
goes with which activation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from gradpath.activations import derivative, get_activation
from gradpath.diagnosis import RATIO_LIMIT
from gradpath.init import apply_recipe_, get_recipe, initialize_
from gradpath.models import DeepMLP
from gradpath.numerics import as_float64
from gradpath.probes import weight_layers

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class SignalVariances:
    """Per-layer variances of one network on one batch, input side first.

    The four hidden-layer lists have one entry per hidden block (``depth - 1`` of them); the
    weight-gradient list has one per weight layer (``depth``). Non-finite values are kept as
    ``inf``/``nan``: an overflow is a result.

    Attributes:
        pre_activation: ``Var(z_l)``, the input of each layer's activation function.
        activation: ``Var(a_l)``, each layer's output ``a_l = f(z_l)``.
        activation_gradient: ``Var(∂L/∂a_l)``, the gradient arriving at each layer's output.
        pre_activation_gradient: ``Var(∂L/∂z_l)``, the same after the activation's derivative.
        weight_gradient: ``Var(∂L/∂W_l)`` of every weight layer, the head included.
        saturated_fraction: per layer, the share of ``z_l`` entries where ``f'(z)`` is below 1%
            of its maximum (saturated sigmoid/tanh units, or ReLU inputs below zero).
    """

    pre_activation: list[float]
    activation: list[float]
    activation_gradient: list[float]
    pre_activation_gradient: list[float]
    weight_gradient: list[float]
    saturated_fraction: list[float]

    @property
    def forward(self) -> list[float]:
        """The forward signal the course plots: ``Var(z_l)``."""
        return self.pre_activation

    @property
    def backward(self) -> list[float]:
        """The backward signal the course plots: ``Var(∂L/∂a_l)``."""
        return self.activation_gradient


def _variance(t: torch.Tensor) -> float:
    """Unbiased variance of all entries, in float64: finite entries give a finite answer."""
    t = as_float64(t)
    if not torch.isfinite(t).all():
        return math.inf if not torch.isnan(t).any() else math.nan
    return float(t.var())


def signal_variances(model: nn.Module, x: torch.Tensor, *,
                     generator: torch.Generator | None = None) -> SignalVariances:
    """Measure forward and backward variances of ``model`` on the batch ``x``.

    Hooks every hidden block's activation function (``model.blocks[i].activation``, as in
    :class:`gradpath.models.DeepMLP`), runs ``x`` forward, then backpropagates a standard normal
    vector ``g`` from the output (drawn with ``generator``, so the measurement is reproducible).
    Parameter gradients are cleared first and left in place afterwards.

    Raises:
        ValueError: if the model has no ``blocks`` with an ``activation``, or ``x`` holds fewer
            than two examples.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None or not all(hasattr(b, "activation") for b in blocks):
        raise ValueError("signal_variances needs a model whose `blocks` each have an "
                         "`activation` module (e.g. gradpath.models.DeepMLP)")
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError("x must be a (batch, features) tensor with batch >= 2, "
                         f"got {tuple(x.shape)}")
    n = len(blocks)
    z_values: dict[int, torch.Tensor] = {}
    a_values: dict[int, torch.Tensor] = {}
    z_grads: dict[int, torch.Tensor] = {}
    a_grads: dict[int, torch.Tensor] = {}

    def keep(i: int) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            z, a = inputs[0], output
            z_values[i], a_values[i] = z.detach(), a.detach()
            if z.requires_grad:
                z.register_hook(lambda g: z_grads.__setitem__(i, g.detach()))
            if a.requires_grad:
                a.register_hook(lambda g: a_grads.__setitem__(i, g.detach()))
        return hook

    handles = [b.activation.register_forward_hook(keep(i)) for i, b in enumerate(blocks)]
    try:
        model.zero_grad(set_to_none=True)
        out = model(x)
        g = torch.randn(out.shape, generator=generator, dtype=torch.float64)
        out.backward(g.to(dtype=out.dtype, device=out.device))
    finally:
        for h in handles:
            h.remove()
    name = getattr(model, "activation_name", None)

    def saturated(i: int) -> float:
        if name is None or i not in z_values or not torch.isfinite(z_values[i]).all():
            return math.nan
        d = derivative(name, z_values[i].cpu().double())
        return float((d.abs() < 0.01 * get_activation(name).max_derivative).double().mean())

    def var_of(store: dict[int, torch.Tensor], i: int) -> float:
        return _variance(store[i]) if i in store else math.nan

    weight_grads = []
    for layer in weight_layers(model):
        grad = layer.weight.grad  # type: ignore[union-attr]
        weight_grads.append(_variance(grad) if isinstance(grad, torch.Tensor) else math.nan)
    return SignalVariances(
        pre_activation=[var_of(z_values, i) for i in range(n)],
        activation=[var_of(a_values, i) for i in range(n)],
        activation_gradient=[var_of(a_grads, i) for i in range(n)],
        pre_activation_gradient=[var_of(z_grads, i) for i in range(n)],
        weight_gradient=weight_grads,
        saturated_fraction=[saturated(i) for i in range(n)],
    )


def network_variances(recipe: str, activation: str, *, depth: int = 50, width: int = 64,
                      samples: int = 256, in_features: int | None = None, out_features: int = 10,
                      seed: int = 0, dtype: str = "float64",
                      device: torch.device | str | None = None) -> SignalVariances:
    """Build a fresh :class:`~gradpath.models.DeepMLP`, initialize it, and measure it.

    The inputs are ``samples`` standard normal vectors (unit variance, like standardized data);
    everything is drawn from generators seeded with ``seed``.

    Args:
        recipe: a key of :data:`gradpath.init.RECIPES` (``"he"``, ``"xavier"``, ``"lsuv"``, ...).
        activation: a name from :data:`gradpath.activations.ACTIVATIONS`.
        depth: weight layers (the network has ``depth - 1`` hidden layers).
        in_features: input size (default: ``width``, so every hidden layer is square).
        dtype: ``"float64"`` (default: shows explosions up to ~1e308 as numbers) or
            ``"float32"`` (what training uses; overflows past ~3e38).

    Raises:
        ValueError: for an unknown recipe, activation or dtype.
    """
    get_recipe(recipe)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid choices are {', '.join(DTYPES)}")
    in_features = width if in_features is None else in_features
    torch.manual_seed(seed)  # pytorch_default draws from the global generator
    generator = torch.Generator().manual_seed(seed)
    model = DeepMLP(in_features, out_features, width=width, depth=depth, activation=activation,
                    init="pytorch_default")
    x = torch.randn(samples, in_features, generator=generator)
    apply_recipe_(model, recipe, activation=activation, x=x, generator=generator)
    model = model.to(dtype=DTYPES[dtype])
    x = x.to(dtype=DTYPES[dtype])
    if device is not None:
        model, x = model.to(device), x.to(device)
    return signal_variances(model, x, generator=generator)


def variances_at_gain(activation: str, gain: float, *, scheme: str = "xavier_uniform",
                      depth: int = 50, width: int = 64, samples: int = 256, out_features: int = 10,
                      seed: int = 0, dtype: str = "float64",
                      device: torch.device | str | None = None) -> SignalVariances:
    """Like :func:`network_variances`, for a scheme of :func:`gradpath.init.initialize_` with an
    explicit ``gain``: ``("xavier_uniform", 5/3)`` is Xavier with PyTorch's tanh gain,
    ``("he_normal", 10.15)`` weights ``N(0, 10.15²/fan_in)``. Biases are zero; the inputs are
    ``samples`` standard normal vectors of size ``width``, drawn from ``seed``.

    Raises:
        ValueError: for an unknown activation, scheme or dtype, or a non-positive gain.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid choices are {', '.join(DTYPES)}")
    generator = torch.Generator().manual_seed(seed)
    model = DeepMLP(width, out_features, width=width, depth=depth, activation=activation,
                    init=scheme, generator=generator)
    initialize_(model, scheme, gain=gain, activation=activation, generator=generator)
    x = torch.randn(samples, width, generator=generator)
    model, x = model.to(dtype=DTYPES[dtype]), x.to(dtype=DTYPES[dtype])
    if device is not None:
        model, x = model.to(device), x.to(device)
    return signal_variances(model, x, generator=generator)


def variance_sweep(recipes: Sequence[str], activations: Sequence[str], **kwargs: object
                   ) -> dict[str, dict[str, SignalVariances]]:
    """``{activation: {recipe: SignalVariances}}`` for every pair (keyword arguments go to
    :func:`network_variances`)."""
    if not recipes or not activations:
        raise ValueError("need at least one recipe and one activation")
    return {a: {r: network_variances(r, a, **kwargs) for r in recipes}  # type: ignore[arg-type]
            for a in activations}


def per_layer_factor(values: Sequence[float]) -> float:
    """The average factor per layer, ``(v_last / v_first) ** (1 / (n - 1))``.

    1 means the variance is preserved; 0.5 means it halves at every layer. Returns ``0.0`` if the
    last value underflowed to zero, ``inf`` if it overflowed, and ``nan`` if any value is ``nan``
    or the first is zero.
    """
    v = [float(x) for x in values]
    if len(v) < 2:
        raise ValueError("need the values of at least two layers")
    first, last = v[0], v[-1]
    if any(math.isnan(x) for x in v) or first <= 0 or not math.isfinite(first):
        return math.nan
    if any(math.isinf(x) for x in v):
        return math.inf
    if last <= 0:
        return 0.0
    return (last / first) ** (1.0 / (len(v) - 1))


def total_change(values: Sequence[float]) -> float:
    """``v_last / v_first``: how much the variance changed from the first layer to the last."""
    v = [float(x) for x in values]
    if len(v) < 2:
        raise ValueError("need the values of at least two layers")
    if any(math.isnan(x) for x in v) or v[0] <= 0 or not math.isfinite(v[0]):
        return math.nan
    if any(math.isinf(x) for x in v):
        return math.inf
    return v[-1] / v[0]


def log10_drift(values: Sequence[float]) -> float:
    """``|log10(v_last / v_first)|``: orders of magnitude gained or lost (``inf`` if collapsed)."""
    change = total_change(values)
    if math.isnan(change):
        return math.inf
    if change == 0 or math.isinf(change):
        return math.inf
    return abs(math.log10(change))


@dataclass(frozen=True)
class TableRow:
    """One activation's row of the initialization table.

    Attributes:
        activation: the activation's name.
        forward_change: per recipe, ``Var(z)`` at the last hidden layer over the first.
        backward_change: per recipe, ``Var(∂L/∂a)`` at the first hidden layer over the last
            (how much the gradient grows (>1) or shrinks (<1) on its way back).
        within_limit: the recipes that keep both changes within ``limit`` (by default the
            course's vanishing/exploding rule, a factor of 1000 either way).
        best: the recipe whose forward and backward variances drift least (fewest orders of
            magnitude, added over both directions).
        registry: the family :data:`gradpath.activations.ACTIVATIONS` recommends.
    """

    activation: str
    forward_change: dict[str, float]
    backward_change: dict[str, float]
    within_limit: list[str]
    best: str
    registry: str


def initialization_table(sweep: dict[str, dict[str, SignalVariances]],
                         limit: float = RATIO_LIMIT) -> list[TableRow]:
    """Turn a :func:`variance_sweep` into one :class:`TableRow` per activation.

    Args:
        limit: a recipe is "within the limit" when neither the forward nor the backward variance
            changes by more than this factor (either way) from one end of the network to the other.
    """
    if not sweep:
        raise ValueError("sweep is empty: pass the result of variance_sweep")
    if not limit > 1:
        raise ValueError(f"limit must be greater than 1, got {limit!r}")
    bound = math.log10(limit)
    rows = []
    for activation, by_recipe in sweep.items():
        fwd = {r: total_change(v.forward) for r, v in by_recipe.items()}
        bwd = {r: total_change(list(reversed(v.backward))) for r, v in by_recipe.items()}
        drift = {r: log10_drift(v.forward) + log10_drift(list(reversed(v.backward)))
                 for r, v in by_recipe.items()}
        best = min(drift, key=lambda r: drift[r])
        within = [r for r, v in by_recipe.items()
                  if log10_drift(v.forward) <= bound
                  and log10_drift(list(reversed(v.backward))) <= bound]
        rows.append(TableRow(activation, fwd, bwd, within, best,
                             get_activation(activation).recommended_init))
    return rows


def table_markdown(rows: Sequence[TableRow], limit: float = RATIO_LIMIT) -> str:
    """The table as Markdown: per recipe the forward and backward change, then the verdicts."""
    if not rows:
        raise ValueError("rows is empty")
    recipes = list(rows[0].forward_change)
    labels = {r: get_recipe(r).label for r in recipes}
    head = ["activation"]
    for r in recipes:
        head += [f"{labels[r]}: forward ×", f"{labels[r]}: backward ×"]
    head += [f"within {limit:g}× both ways", "usual rule"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(v: float) -> str:
        return f"{v:.1e}" if math.isfinite(v) else str(v)

    for row in rows:
        cells = [row.activation]
        for r in recipes:
            cells += [fmt(row.forward_change[r]), fmt(row.backward_change[r])]
        verdict = ", ".join(labels[r] for r in row.within_limit) or "none"
        rule = {"xavier": "Xavier/Glorot", "he": "He/Kaiming"}.get(row.registry, row.registry)
        cells += [f"**{verdict}**", rule]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
