"""Weight-initialization schemes, applied to every ``nn.Linear`` in a model.

The schemes are the ones the course compares: tiny or huge uniform weights, PyTorch's default,
Xavier/Glorot, He/Kaiming and orthogonal. Biases start at zero except under
``"pytorch_default"``, which keeps PyTorch's own bias initialization.

Two schemes need more than a formula and live beside :func:`initialize_`:

- :func:`lsuv_` is Mishkin & Matas's (2016) layer-sequential unit-variance initialization, which
  looks at data: it starts from orthogonal weights and rescales each layer in turn until its
  output has unit variance on a batch.
- :func:`standard_uniform_` is the "standard" heuristic ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
  that Glorot & Bengio (2010) compared against (the weight distribution PyTorch's ``nn.Linear``
  still uses by default).

:data:`RECIPES` names the initializations the course compares, and :func:`apply_recipe_` applies
any of them, data-dependent or not, in one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from gradpath._checks import (
    check_finite_positive,
    check_generator,
    check_pattern,
    check_positive_int,
    check_tensor,
)
from gradpath.activations import get_activation
from gradpath.numerics import as_float64
from gradpath.probes import preserved_state

INITIALIZATIONS = (
    "pytorch_default",
    "uniform",
    "normal",
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
    "orthogonal",
)


def xavier_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """Glorot & Bengio (2010): ``Var(W) = 2 / (fan_in + fan_out)``, times ``gain**2``.

    Raises:
        TypeError, ValueError: unless the fans are positive integers and ``gain`` is finite and
            positive.
    """
    _check_fans(fan_in, fan_out)
    gain = check_finite_positive("gain", gain)
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def xavier_bound(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """The uniform bound with Xavier's variance: ``gain * sqrt(6 / (fan_in + fan_out))``.

    Raises:
        TypeError, ValueError: as :func:`xavier_std`.
    """
    _check_fans(fan_in, fan_out)
    gain = check_finite_positive("gain", gain)
    return gain * math.sqrt(6.0 / (fan_in + fan_out))


def he_std(fan_in: int, gain: float = math.sqrt(2.0)) -> float:
    """He et al. (2015): ``std = gain / sqrt(fan)``, with ``gain = sqrt(2)`` for ReLU.

    ``fan_in`` is the fan the variance is kept for: the layer's fan-in (forward pass, the
    default mode) or its fan-out (``mode="fan_out"``, the backward pass).

    Raises:
        TypeError, ValueError: unless ``fan_in`` is a positive integer and ``gain`` is finite
            and positive.
    """
    check_positive_int("fan_in", fan_in)
    gain = check_finite_positive("gain", gain)
    return gain / math.sqrt(fan_in)


def _check_fans(fan_in: int, fan_out: int) -> None:
    check_positive_int("fan_in", fan_in)
    check_positive_int("fan_out", fan_out)


FAN_MODES = ("fan_in", "fan_out")


def expected_weight_std(scheme: str, fan_in: int, fan_out: int, *, scale: float | None = None,
                        gain: float | None = None, mode: str = "fan_in",
                        activation: str = "relu") -> float:
    """The standard deviation of a weight that :func:`initialize_` draws with ``scheme``.

    ``gain`` is the gain used (``None``: each scheme's default in :func:`initialize_`, 1 for
    Xavier and orthogonal, ``sqrt(2)`` for He, or for He with ``activation="leaky_relu"``
    leaky ReLU's ``sqrt(2 / (1 + 0.01²))``, as :func:`initialize_` with that activation).
    ``activation`` matters only there. Orthogonal
    rows (or columns, if there are more rows than columns) have unit norm, so an entry's
    variance is ``gain**2 / max(fan_in, fan_out)``. ``pytorch_default`` is
    ``U(±1/sqrt(fan_in))``. ``mode`` picks He's fan.

    Raises:
        ValueError: for an unknown scheme, mode or activation, non-positive fans, a missing,
            non-positive or non-finite ``scale`` (uniform/normal) or ``gain``.
        TypeError: for fans that are not integers, or a scale or gain that is not a number.
    """
    _check_fans(fan_in, fan_out)
    he_default = _he_gain(activation)
    if gain is not None:
        check_finite_positive("gain", gain)
    if scheme in ("uniform", "normal"):
        if scale is None:
            raise ValueError(f"initialization {scheme!r} needs a positive scale, got None")
        scale = check_finite_positive("scale", scale)
        return uniform_std(scale) if scheme == "uniform" else scale
    if scheme in ("xavier_uniform", "xavier_normal"):
        return xavier_std(fan_in, fan_out, 1.0 if gain is None else gain)
    if scheme in ("he_uniform", "he_normal"):
        return he_std(_fan(fan_in, fan_out, mode), he_default if gain is None else gain)
    if scheme == "orthogonal":
        return (1.0 if gain is None else gain) / math.sqrt(max(fan_in, fan_out))
    if scheme == "pytorch_default":
        return uniform_std(pytorch_default_bound(fan_in))
    raise ValueError(f"unknown initialization {scheme!r}; valid choices are "
                     f"{', '.join(INITIALIZATIONS)}")


def _he_gain(activation: str) -> float:
    """He's gain in :func:`initialize_`: ``sqrt(2)``, leaky ReLU its own (raises for an unknown
    activation)."""
    # "He initialization" means the ReLU-family gain whatever follows the layer, as in
    # torch.nn.init.kaiming_normal_(nonlinearity="relu"); leaky ReLU uses its own slope.
    if get_activation(activation).gain_name == "leaky_relu":
        return activation_gain(activation)
    return math.sqrt(2.0)


def _fan(fan_in: int, fan_out: int, mode: str) -> int:
    if mode not in FAN_MODES:
        raise ValueError(f"unknown mode {mode!r}; valid choices are {', '.join(FAN_MODES)}")
    return fan_in if mode == "fan_in" else fan_out


def initialize_(model: nn.Module, scheme: str, *, scale: float | None = None,
                activation: str = "relu", generator: torch.Generator | None = None,
                gain: float | None = None, mode: str = "fan_in") -> nn.Module:
    """Initialize every ``nn.Linear`` weight in ``model`` in place, and return the model.

    The names mean what the papers mean, with PyTorch's default gains (``torch.nn.init``'s
    function of the same name with its default arguments):

    - ``xavier_uniform`` / ``xavier_normal``: Glorot & Bengio (2010),
      ``Var(W) = 2 / (fan_in + fan_out)``, gain 1 whatever the activation (as
      ``torch.nn.init.xavier_*_`` by default);
    - ``he_uniform`` / ``he_normal``: He et al. (2015), ``Var(W) = 2 / fan`` (gain ``sqrt(2)``;
      leaky ReLU uses its own slope), ``fan`` the fan-in or, with ``mode="fan_out"``, fan-out;
    - ``orthogonal``: Saxe et al. (2014), a random orthogonal matrix with gain 1 (every
      singular value 1, as ``torch.nn.init.orthogonal_`` by default); pass
      ``gain=activation_gain(activation)`` for PyTorch's ``calculate_gain`` of the activation
      (a PyTorch convention, not Saxe et al.'s: they used gains near 1 for tanh, at its edge of
      chaos, and did not study ReLU); the course's ``"orthogonal_act_gain"`` recipe does that;
    - ``uniform`` / ``normal``: ``U(-scale, scale)`` / ``N(0, scale²)``;
    - ``pytorch_default``: ``nn.Linear.reset_parameters``, ``U(±1/sqrt(fan_in))``.

    Args:
        scheme: one of :data:`INITIALIZATIONS`.
        scale: for ``"uniform"`` the bound ``a`` of U(-a, a); for ``"normal"`` the standard
            deviation. Required for those two, ignored by the others.
        activation: the activation that follows each layer; it sets only He's gain for leaky
            ReLU (``sqrt(2 / (1 + 0.01²))``). Every other scheme ignores it.
        generator: an optional ``torch.Generator`` for reproducible draws.
        gain: if given, use this gain for the Xavier, He and orthogonal schemes instead of their
            default (e.g. ``gain=nn.init.calculate_gain("tanh")`` is Xavier scaled for tanh).
        mode: ``"fan_in"`` (default) or ``"fan_out"``: the fan He's variance is kept for.

    Raises:
        ValueError: for an unknown scheme, activation or mode, a missing, non-positive or
            non-finite ``scale`` (uniform/normal), a non-positive or non-finite ``gain``, or a
            model with no ``nn.Linear`` layer (nothing would be initialized).
        TypeError: for a model that is not an ``nn.Module``, a scale or gain that is not a
            number, or a generator that is not a ``torch.Generator``.
    """
    if not isinstance(scheme, str) or scheme not in INITIALIZATIONS:
        raise ValueError(
            f"unknown initialization {scheme!r}; valid choices are {', '.join(INITIALIZATIONS)}"
        )
    if scheme in ("uniform", "normal"):
        if scale is None:
            raise ValueError(f"initialization {scheme!r} needs a positive scale, got None")
        check_finite_positive("scale", scale)
    if gain is not None:
        check_finite_positive("gain", gain)
    check_generator("generator", generator)
    _fan(1, 1, mode)  # validates mode
    _linear_layers(model, "initialize_")
    he_gain = _he_gain(activation)
    # Glorot & Bengio's rule has no gain: torch.nn.init.xavier_*_ default to gain=1; so does
    # torch.nn.init.orthogonal_.
    xavier_gain = orthogonal_gain = 1.0
    if gain is not None:
        orthogonal_gain = he_gain = xavier_gain = float(gain)
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        if scheme == "pytorch_default":
            module.reset_parameters()
            continue
        w = module.weight
        fan_out, fan_in = w.shape
        with torch.no_grad():
            if scheme == "uniform":
                w.uniform_(-float(scale), float(scale), generator=generator)  # type: ignore[arg-type]
            elif scheme == "normal":
                w.normal_(0.0, float(scale), generator=generator)  # type: ignore[arg-type]
            elif scheme == "xavier_uniform":
                b = xavier_bound(fan_in, fan_out, xavier_gain)
                w.uniform_(-b, b, generator=generator)
            elif scheme == "xavier_normal":
                w.normal_(0.0, xavier_std(fan_in, fan_out, xavier_gain), generator=generator)
            elif scheme == "he_uniform":
                b = math.sqrt(3.0) * he_std(_fan(fan_in, fan_out, mode), he_gain)
                w.uniform_(-b, b, generator=generator)
            elif scheme == "he_normal":
                w.normal_(0.0, he_std(_fan(fan_in, fan_out, mode), he_gain), generator=generator)
            elif scheme == "orthogonal":
                nn.init.orthogonal_(w, gain=orthogonal_gain, generator=generator)
            if module.bias is not None:
                module.bias.zero_()
    return model


def activation_gain(activation: str) -> float:
    """The gain ``torch.nn.init.calculate_gain`` gives the activation (leaky ReLU: slope 0.01).

    ``sqrt(2)`` for ReLU, ``5/3`` for tanh, 1 for sigmoid and the identity, ``3/4`` for SELU;
    activations ``calculate_gain`` does not know use the gain of their
    :attr:`~gradpath.activations.ActivationSpec.gain_name` (ReLU's for ELU, GELU and SiLU).

    Raises:
        ValueError: for an unknown activation (the message lists the valid choices).
    """
    act = get_activation(activation)
    param = 0.01 if act.gain_name == "leaky_relu" else None
    return float(nn.init.calculate_gain(act.gain_name, param))  # type: ignore[arg-type]


def pytorch_default_bound(fan_in: int) -> float:
    """The bound of PyTorch's default ``nn.Linear`` weights, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    ``nn.Linear.reset_parameters`` calls ``kaiming_uniform_(a=sqrt(5))``: a gain of
    ``sqrt(2 / (1 + 5)) = sqrt(1/3)`` times the uniform bound ``sqrt(3 / fan_in)``, i.e.
    ``1 / sqrt(fan_in)``. Its standard deviation is ``1 / sqrt(3 fan_in)``, a factor
    ``sqrt(6)`` below He's ``sqrt(2 / fan_in)``.

    Raises:
        TypeError: if ``fan_in`` is not an integer (a bool is not).
        ValueError: if it is below 1.
    """
    check_positive_int("fan_in", fan_in)
    return 1.0 / math.sqrt(fan_in)


def uniform_std(bound: float) -> float:
    """Standard deviation of ``U(-bound, bound)``: ``bound / sqrt(3)``.

    Raises:
        ValueError: unless ``bound`` is finite and positive (TypeError if not a number).
    """
    bound = check_finite_positive("bound", bound)
    return bound / math.sqrt(3.0)


def standard_uniform_(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Glorot & Bengio's "standard" initialization: ``W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Every ``nn.Linear`` weight is drawn this way and every bias set to zero. (PyTorch's default
    draws the same weights but random biases.) Returns the model.

    Raises:
        ValueError: for a model with no ``nn.Linear`` layer.
        TypeError: for a generator that is not a ``torch.Generator``.
    """
    check_generator("generator", generator)
    _linear_layers(model, "standard_uniform_")
    for module in model.modules():
        if isinstance(module, nn.Linear):
            bound = pytorch_default_bound(module.weight.shape[1])
            with torch.no_grad():
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
    return model


@dataclass(frozen=True)
class LSUVReport:
    """What :func:`lsuv_` did to each weight layer, input layer first.

    Attributes:
        variances: the variance of each layer's output on the batch when calibration stopped.
        rescalings: how many times each layer's weights were divided by ``sqrt(variance)``.
        converged: whether each layer's output variance ended within the tolerance of 1.
    """

    variances: list[float]
    rescalings: list[int]
    converged: list[bool]

    @property
    def all_converged(self) -> bool:
        return all(self.converged)


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the layer being calibrated has run."""


def _linear_layers(model: nn.Module, caller: str = "lsuv_") -> list[nn.Linear]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{caller} needs a torch.nn.Module, got {type(model).__name__}")
    if hasattr(model, "weight_layers"):
        layers = list(model.weight_layers())  # type: ignore[operator]
    else:
        layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(f"{caller}: model {type(model).__name__} has no nn.Linear layers to "
                         "initialize (use initialize_by_name_ for other parameters)")
    return layers


@torch.no_grad()
def lsuv_(model: nn.Module, x: torch.Tensor, *, tolerance: float = 0.1, max_iterations: int = 10,
          orthogonal_start: bool = True, generator: torch.Generator | None = None) -> LSUVReport:
    """Layer-sequential unit-variance initialization (Mishkin & Matas, 2016), in place.

    1. Start from orthonormal weights (Saxe et al., 2014) and zero biases.
    2. For each weight layer, input side first: run the batch ``x`` forward, measure the variance
       ``v`` of that layer's output (its pre-activation), and divide its weights by ``sqrt(v)``;
       repeat until ``|v - 1| < tolerance`` or ``max_iterations`` passes were made.

    Layers are calibrated in order, so each one sees the already-calibrated layers below it.
    A layer whose output variance is zero or not finite cannot be rescaled; it is reported as not
    converged rather than raising.

    It changes the weights and biases of the weight layers and nothing else: the calibration
    passes run in the model's current mode, but BatchNorm's running statistics,
    ``num_batches_tracked``, the modes and the random state they would have moved are put back
    (the orthogonal draw uses ``generator``, or the global generator as ``torch.nn.init`` does).
    The variance is accumulated in float64.

    Args:
        x: a representative input batch (at least 2 examples).
        tolerance: how close to 1 the output variance must come.
        max_iterations: forward passes allowed per layer.
        orthogonal_start: pre-initialize with orthogonal weights (the paper's step 1); ``False``
            keeps the current weights and only rescales them.
        generator: optional ``torch.Generator`` for the orthogonal draw.

    Raises:
        ValueError: for a non-positive or non-finite tolerance, fewer than one iteration, fewer
            than two examples in ``x``, a model with no ``nn.Linear`` layer, or an ``x`` whose
            feature count the model's first layer does not take.
        TypeError: for a non-tensor ``x`` or a generator that is not a ``torch.Generator``.
    """
    check_finite_positive("tolerance", tolerance)
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) \
            or max_iterations < 1:
        raise ValueError(f"max_iterations must be a positive integer, got {max_iterations!r}")
    check_tensor("x", x)
    if x.dim() < 2 or x.shape[0] < 2:
        raise ValueError("x must be a batch of at least 2 examples, shape (batch, features), got "
                         f"shape {tuple(x.shape)}")
    check_generator("generator", generator)
    layers = _linear_layers(model)
    first = getattr(model, "in_features", None)
    if not isinstance(first, int) and hasattr(model, "weight_layers"):
        first = layers[0].in_features
    if isinstance(first, int) and x.shape[-1] != first:
        raise ValueError(f"x has {x.shape[-1]} features (shape {tuple(x.shape)}) but the model's "
                         f"first layer takes {first}")
    if orthogonal_start:
        initialize_(model, "orthogonal", gain=1.0, generator=generator)
    variances: list[float] = []
    rescalings: list[int] = []
    converged: list[bool] = []
    seen: list[torch.Tensor] = []

    def grab(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        seen.append(output.detach())
        raise _StopForward

    for layer in layers:

        handle = layer.register_forward_hook(grab)
        count, variance, done = 0, math.nan, False
        try:
            for _ in range(max_iterations + 1):
                seen.clear()
                try:
                    with preserved_state(model):   # running statistics, modes, RNG untouched
                        model(x)
                except _StopForward:
                    pass
                variance = float(as_float64(seen[-1]).var())
                if not math.isfinite(variance) or variance == 0.0:
                    break
                if abs(variance - 1.0) < tolerance:
                    done = True
                    break
                if count == max_iterations:
                    break
                layer.weight.div_(math.sqrt(variance))
                count += 1
        finally:
            handle.remove()
        variances.append(variance)
        rescalings.append(count)
        converged.append(done)
    return LSUVReport(variances, rescalings, converged)


@dataclass(frozen=True)
class Recipe:
    """A named initialization the course compares.

    Attributes:
        key: registry key, e.g. ``"he"``.
        label: how figures and tables name it.
        scheme: an entry of :data:`INITIALIZATIONS`, or ``"lsuv"`` / ``"standard"``.
        scale: the bound or std for ``"uniform"`` / ``"normal"``.
        gain: a fixed gain; ``None``: the scheme's own default (see :func:`initialize_`: 1 for
            Xavier and orthogonal, ``sqrt(2)`` for He); :data:`ACTIVATION_GAIN`: the gain of the
            activation the recipe is applied with (:func:`activation_gain`).
    """

    key: str
    label: str
    scheme: str
    scale: float | None = None
    gain: float | str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.gain, str) and self.gain != ACTIVATION_GAIN:
            raise ValueError(f"a recipe's gain is a number, None or {ACTIVATION_GAIN!r}, got "
                             f"{self.gain!r}")


ACTIVATION_GAIN = "activation"
"""A :class:`Recipe` gain meaning "the activation's gain" (:func:`activation_gain`)."""

RECIPES: dict[str, Recipe] = {
    "too_small": Recipe("too_small", "uniform ±0.01 (too small)", "uniform", scale=0.01),
    "too_large": Recipe("too_large", "uniform ±2 (too large)", "uniform", scale=2.0),
    "standard": Recipe("standard", "standard U(±1/√fan_in)", "standard"),
    "pytorch_default": Recipe("pytorch_default", "PyTorch default", "pytorch_default"),
    "xavier": Recipe("xavier", "Xavier/Glorot", "xavier_uniform", gain=1.0),
    "he": Recipe("he", "He/Kaiming", "he_normal"),
    "orthogonal_act_gain": Recipe("orthogonal_act_gain", "orthogonal × activation gain",
                                  "orthogonal", gain=ACTIVATION_GAIN),
    "lsuv": Recipe("lsuv", "LSUV", "lsuv"),
}


def get_recipe(key: str) -> Recipe:
    """Look a recipe up in :data:`RECIPES`; an unknown key raises a ``ValueError`` listing them."""
    if not isinstance(key, str) or key not in RECIPES:
        raise ValueError(f"unknown initialization recipe {key!r}; valid choices are "
                         f"{', '.join(RECIPES)}")
    return RECIPES[key]


def apply_recipe_(model: nn.Module, recipe: str, *, activation: str = "relu",
                  x: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> nn.Module:
    """Initialize ``model`` in place with the named recipe from :data:`RECIPES`; return it.

    Args:
        activation: the activation after each layer (sets the gain of a recipe whose gain is
            :data:`ACTIVATION_GAIN`, and He's gain for leaky ReLU).
        x: an input batch; required by ``"lsuv"``, which calibrates on data.

    Raises:
        ValueError: for an unknown recipe, or ``"lsuv"`` without ``x``.
    """
    r = get_recipe(recipe)
    check_generator("generator", generator)
    if r.scheme == "lsuv":
        if x is None:
            raise ValueError("the 'lsuv' recipe calibrates on data: pass an input batch x")
        lsuv_(model, x, generator=generator)
    elif r.scheme == "standard":
        standard_uniform_(model, generator=generator)
    else:
        gain = r.gain
        if isinstance(gain, str):          # ACTIVATION_GAIN, the only string a Recipe takes
            gain = activation_gain(activation)
        initialize_(model, r.scheme, scale=r.scale, activation=activation, generator=generator,
                    gain=gain)
    return model


# --------------------------------------------------------------- initialization by parameter name
# initialize_ reaches nn.Linear layers only. A transformer keeps weights elsewhere too: in
# nn.MultiheadAttention the query, key and value projections are one (3·d, d) parameter,
# ``in_proj_weight``. initialize_by_name_ reaches any parameter by its name. (Imported here so that
# this section is a pure addition to the module.)
from collections.abc import Sequence  # noqa: E402

NAMED_SCHEMES = ("xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "orthogonal",
                 "normal", "uniform", "zeros", "ones")


def _fans(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of this shape, as ``torch.nn.init`` computes them."""
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def initialize_by_name_(model: nn.Module, pattern: str, scheme: str, *,
                        gain: float | Sequence[float] | None = None, scale: float | None = None,
                        row_blocks: int = 1, generator: torch.Generator | None = None
                        ) -> list[str]:
    """Initialize, in place, every parameter of ``model`` whose name matches ``pattern``.

    Unlike :func:`initialize_`, which sees only ``nn.Linear`` layers, this reaches any parameter,
    such as ``nn.MultiheadAttention``'s ``in_proj_weight``, LayerNorm gains or learned embeddings.

    Args:
        pattern: a regular expression searched (``re.search``) in each name of
            ``model.named_parameters()``, e.g. ``r"self_attn\\.in_proj_weight$"``.
        scheme: one of :data:`NAMED_SCHEMES`. The Xavier, He and orthogonal schemes need a
            weight of at least 2 dimensions, with ``fan_out = rows`` and
            ``fan_in = columns`` (times the receptive field for convolutions), as in
            ``torch.nn.init``.
        gain: the gain of the Xavier/He/orthogonal schemes (default 1 for Xavier and
            orthogonal, ``sqrt(2)`` for He); a sequence gives one gain per row block.
        scale: the std of ``"normal"`` (mean 0) or the bound ``a`` of ``"uniform"`` U(-a, a);
            required by those two.
        row_blocks: split each weight's rows into this many equal blocks and initialize each
            block as a matrix of its own, with its own fan-out. ``in_proj_weight`` stacks W_q,
            W_k and W_v, so ``row_blocks=3`` gives each the fans of a (d, d) matrix, as separate
            ``nn.Linear`` projections would have (PyTorch's own ``_reset_parameters`` applies
            ``xavier_uniform_`` to the whole (3·d, d) matrix, which makes its std smaller by
            ``sqrt(2)`` for d × d blocks).
        generator: an optional ``torch.Generator`` for reproducible draws.

    Returns:
        The names of the parameters it initialized, in registration order.

    Raises:
        ValueError: for an unknown scheme, an invalid pattern, a pattern that matches no
            parameter (the message lists some names), a weight with too few dimensions for the
            scheme, rows not divisible by ``row_blocks``, a gain sequence of the wrong length, a
            non-positive gain, or a missing/non-positive ``scale``.
    """
    if not isinstance(scheme, str) or scheme not in NAMED_SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; valid choices are {', '.join(NAMED_SCHEMES)}")
    if scheme in ("normal", "uniform"):
        if scale is None:
            raise ValueError(f"scheme {scheme!r} needs a positive scale, got None")
        check_finite_positive("scale", scale)
    check_generator("generator", generator)
    if isinstance(row_blocks, bool) or not isinstance(row_blocks, int) or row_blocks < 1:
        raise ValueError(f"row_blocks must be a positive integer, got {row_blocks!r}")
    default_gain = math.sqrt(2.0) if scheme.startswith("he_") else 1.0
    if gain is None:
        gains = [default_gain] * row_blocks
    elif isinstance(gain, (int, float)):
        gains = [float(gain)] * row_blocks
    else:
        gains = [float(g) for g in gain]
        if len(gains) != row_blocks:
            raise ValueError(f"gain has {len(gains)} entries but row_blocks is {row_blocks}")
    if not all(math.isfinite(g) and g > 0 for g in gains):
        raise ValueError(f"gain must be finite and positive, got {gain!r}")
    regex = check_pattern("pattern", pattern)
    assert regex is not None
    named = list(model.named_parameters())
    chosen = [(name, p) for name, p in named if regex.search(name)]
    if not chosen:
        some = ", ".join(name for name, _ in named[:6])
        raise ValueError(f"pattern {pattern!r} matches no parameter; names look like {some}")
    needs_matrix = scheme in ("xavier_uniform", "xavier_normal", "he_uniform", "he_normal",
                              "orthogonal")
    for name, p in chosen:
        if needs_matrix and p.dim() < 2:
            raise ValueError(f"scheme {scheme!r} needs a weight with at least 2 dimensions; "
                             f"{name} has shape {tuple(p.shape)}")
        if row_blocks > 1 and (p.dim() < 1 or p.shape[0] % row_blocks):
            raise ValueError(f"{name} has shape {tuple(p.shape)}: its rows do not split into "
                             f"{row_blocks} equal blocks")
        with torch.no_grad():
            for block, g in zip(p.chunk(row_blocks, dim=0) if row_blocks > 1 else [p], gains,
                                strict=True):
                if scheme == "zeros":
                    block.zero_()
                elif scheme == "ones":
                    block.fill_(1.0)
                elif scheme == "normal":
                    block.normal_(0.0, float(scale), generator=generator)  # type: ignore[arg-type]
                elif scheme == "uniform":
                    block.uniform_(-float(scale), float(scale),  # type: ignore[arg-type]
                                   generator=generator)
                elif scheme == "orthogonal":
                    nn.init.orthogonal_(block, gain=g, generator=generator)
                else:
                    fan_in, fan_out = _fans(block.shape)
                    if scheme.startswith("xavier"):
                        std = xavier_std(fan_in, fan_out, g)
                    else:
                        std = he_std(fan_in, g)
                    if scheme.endswith("normal"):
                        block.normal_(0.0, std, generator=generator)
                    else:
                        bound = math.sqrt(3.0) * std
                        block.uniform_(-bound, bound, generator=generator)
    return [name for name, _ in chosen]
