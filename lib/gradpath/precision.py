"""Number formats, and what they do to gradients: the core of mixed-precision diagnostics.

- :func:`format_info` reads a floating-point format's limits from ``torch.finfo`` (largest finite
  value, smallest normal and subnormal numbers, machine epsilon, exponent and mantissa bits);
  :func:`ulp` and :func:`lost_update_threshold` say how fine the format's grid is near a weight.
- :func:`capture_gradients` records the gradient that reaches the output of every module of
  *any* model (the activation gradients that fp16 training stores in 16 bits) and every
  parameter's gradient, in float32, and leaves the model exactly as it found it.
- :func:`cast_report` and :func:`scale_sweep` measure what casting those gradients to a format
  would do, after multiplying them by a loss scale: the share flushed to zero (underflow), the
  share that lands among the subnormals, the share that overflows, and the share of the squared
  norm that is lost.
- :class:`ScaleMonitor` wraps a ``torch.amp.GradScaler`` and records its scale and which steps it
  skipped because a gradient was ``inf``/``nan``.

Reference: Micikevicius et al., *Mixed precision training*, ICLR 2018 (loss scaling, fp32 master
weights); Kalamkar et al., *A study of BFLOAT16 for deep learning training*, 2019.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradpath._checks import (
    check_finite,
    check_finite_positive,
    check_int,
    check_real,
    check_tensor,
)
from gradpath.probes import preserved_state

# Names accepted for each format (the first is the canonical one).
_ALIASES: dict[str, tuple[str, ...]] = {
    "float32": ("float32", "fp32", "float", "single"),
    "float16": ("float16", "fp16", "half"),
    "bfloat16": ("bfloat16", "bf16"),
    "float8_e4m3fn": ("float8_e4m3fn", "fp8_e4m3", "e4m3"),
    "float8_e5m2": ("float8_e5m2", "fp8_e5m2", "e5m2"),
}
FORMATS: tuple[str, ...] = tuple(name for name in _ALIASES if hasattr(torch, name))


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """The floating-point ``torch.dtype`` for ``dtype`` (a dtype or a name such as ``"fp16"``).

    Raises:
        ValueError: if ``dtype`` names no floating-point format this module knows.
    """
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point format, got {dtype}")
        return dtype
    key = str(dtype).strip().lower().removeprefix("torch.")
    for name, aliases in _ALIASES.items():
        if key in aliases and hasattr(torch, name):
            return getattr(torch, name)
    valid = ", ".join(a for name in FORMATS for a in _ALIASES[name])
    raise ValueError(f"unknown format {dtype!r}; valid choices are {valid}")


def format_name(dtype: torch.dtype | str) -> str:
    """The canonical name of a format, e.g. ``"float16"`` for ``torch.half`` or ``"fp16"``."""
    return str(resolve_dtype(dtype)).removeprefix("torch.")


@dataclass(frozen=True)
class FormatInfo:
    """The limits of one floating-point format, read from ``torch.finfo``.

    Attributes:
        name: canonical name (``"float16"``, ``"bfloat16"``, ...).
        dtype: the ``torch.dtype``.
        bits: total bits per number.
        exponent_bits, mantissa_bits: the stored exponent and fraction bits (plus one sign bit,
            they add up to ``bits``).
        max: the largest finite value.
        smallest_normal: the smallest positive normal number, ``2**(1 - bias)``.
        smallest_subnormal: the smallest positive number at all, ``smallest_normal * eps``;
            anything closer to zero than half of it rounds to zero.
        eps: machine epsilon, the gap between 1 and the next number, ``2**-mantissa_bits``.
    """

    name: str
    dtype: torch.dtype
    bits: int
    exponent_bits: int
    mantissa_bits: int
    max: float
    smallest_normal: float
    smallest_subnormal: float
    eps: float

    @property
    def overflow_threshold(self) -> float:
        """The magnitude from which a value rounds beyond ``max``: ``max + ulp(max) / 2``."""
        return self.max + 0.5 * 2.0 ** math.floor(math.log2(self.max)) * self.eps

    @property
    def decades(self) -> float:
        """How many powers of ten the format spans, ``log10(max / smallest_subnormal)``."""
        return math.log10(self.max / self.smallest_subnormal)


def format_info(dtype: torch.dtype | str) -> FormatInfo:
    """The limits of a floating-point format (see :class:`FormatInfo`), from ``torch.finfo``.

    >>> format_info("fp16").max
    65504.0
    """
    dt = resolve_dtype(dtype)
    fi = torch.finfo(dt)
    mantissa = round(-math.log2(fi.eps))
    return FormatInfo(name=format_name(dt), dtype=dt, bits=fi.bits,
                      exponent_bits=fi.bits - 1 - mantissa, mantissa_bits=mantissa,
                      max=float(fi.max), smallest_normal=float(fi.smallest_normal),
                      smallest_subnormal=float(fi.smallest_normal) * float(fi.eps),
                      eps=float(fi.eps))


def ulp(x: float, dtype: torch.dtype | str) -> float:
    """The gap between ``|x|`` and the next larger number of the format (unit in the last place).

    For a normal ``x`` it is ``2**floor(log2|x|) * eps``; among the subnormals (and at zero) it is
    the smallest subnormal.

    Raises:
        ValueError: if ``x`` is not finite or does not fit in the format.
    """
    info = format_info(dtype)
    x = check_real("x", x)
    if not math.isfinite(x) or abs(x) > info.max:
        raise ValueError(f"x must be finite and at most {info.max} in {info.name}, got {x}")
    if abs(x) < info.smallest_normal:
        return info.smallest_subnormal
    return 2.0 ** math.floor(math.log2(abs(x))) * info.eps


def _float32_from_bits(bits: int) -> float:
    return float(struct.unpack("<f", struct.pack("<I", bits))[0])


def _float32_bits(value: float) -> int:
    return int(struct.unpack("<I", struct.pack("<f", value))[0])


def lost_update_threshold(weight: float = 1.0, dtype: torch.dtype | str = torch.float16, *,
                          decrease: bool = False) -> float:
    """The smallest float32 update size ``u > 0`` that changes ``weight`` stored in ``dtype``.

    By default the update is an increase, ``w + u``; with ``decrease=True`` it is ``w - u``. The
    two differ at a power of two: below ``2**e`` the grid is twice as fine as above it, so a
    float16 weight of 1.0 ignores increases below ``2**-11`` but decreases only below ``2**-12``.

    The update is applied the way an optimizer applies it to a low-precision parameter: the sum
    ``w + u`` is computed in float32 and rounded once to ``dtype`` (what ``w.add_(u)`` does for a
    float16 or bfloat16 tensor); every smaller update leaves the weight exactly unchanged.
    Found by bisection over float32 numbers, so the answer is exact.
    About half an :func:`ulp` of the weight: ``2**-11`` (4.9e-4) for a float16 weight of 1.0.

    Raises:
        ValueError: if ``weight`` is not representable in ``dtype`` (it must round to itself).
    """
    dt = resolve_dtype(dtype)
    weight = check_finite("weight", weight)
    if not isinstance(decrease, bool):
        raise TypeError(f"decrease must be True or False, got {decrease!r}")
    w = torch.tensor(weight, dtype=torch.float32).to(dt)
    if float(w) != weight:
        raise ValueError(f"weight {weight} is not a {format_name(dt)} number (it rounds to "
                         f"{float(w)}); pass a representable weight")

    def changes(bits: int) -> bool:
        u = torch.tensor(_float32_from_bits(bits), dtype=torch.float32)
        new = (w.float() - u if decrease else w.float() + u).to(dt)
        return float(new) != weight

    lo, hi = 0, _float32_bits(ulp(weight, dt))   # u = 0 changes nothing; a full ulp always does
    while hi - lo > 1:                            # invariant: not changes(lo), changes(hi)
        mid = (lo + hi) // 2
        if changes(mid):
            hi = mid
        else:
            lo = mid
    return _float32_from_bits(hi)


# ----------------------------------------------------------------------------------------------
# Gradients of any model


@dataclass
class GradientSample:
    """Gradients recorded by :func:`capture_gradients`, flattened to 1-D float32 tensors.

    Attributes:
        activations: module name -> the gradient of the loss with respect to that module's
            output (concatenated over calls if the module ran more than once). These are the
            tensors that a float16 backward pass stores in 16 bits.
        parameters: parameter name -> its gradient.
    """

    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    parameters: dict[str, torch.Tensor] = field(default_factory=dict)

    def values(self, kind: str = "activations") -> torch.Tensor:
        """All gradients of one kind (``"activations"`` or ``"parameters"``) in one 1-D tensor."""
        if kind not in ("activations", "parameters"):
            raise ValueError(f"kind must be 'activations' or 'parameters', got {kind!r}")
        parts = list(getattr(self, kind).values())
        if not parts:
            raise ValueError(f"no {kind} gradients were recorded")
        return torch.cat(parts)


def _tensors(obj: Any) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def capture_gradients(model: nn.Module, closure: Callable[[], torch.Tensor], *,
                      module_types: Sequence[type[nn.Module]] | None = None) -> GradientSample:
    """Run ``closure`` (forward pass and loss) and one backward pass; record every gradient.

    Works on any ``nn.Module``: the gradient with respect to the output of every leaf module (or of
    every module of ``module_types``) is captured with tensor hooks; a module that returns a tuple
    (``nn.LSTM``) contributes each floating-point tensor in it; a tensor that a module returns
    unchanged (``nn.Identity``) is counted once. The backward pass runs in whatever precision the
    closure uses (normally float32); the gradients are stored as float32.

    The model is left exactly as found: hooks are removed, parameter gradients are restored to
    what they were before the call, and buffers (batch-norm running statistics), every
    submodule's train/eval mode and the global random state (dropout's draws) are restored.

    Args:
        model: any module.
        closure: computes and returns the scalar loss, e.g. ``lambda: loss_fn(model(x), y)``.
        module_types: record only modules of these types (default: every leaf module).

    Raises:
        ValueError: if ``closure`` does not return a scalar tensor that requires grad, or no
            module matches.
        TypeError: if ``model`` is not an ``nn.Module`` or ``closure`` is not callable.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(closure):
        raise TypeError(f"closure must be a callable returning the loss, got "
                        f"{type(closure).__name__}")
    named = [(n, m) for n, m in model.named_modules()
             if (module_types is None and not list(m.children()))
             or (module_types is not None and isinstance(m, tuple(module_types)))]
    if not named:
        raise ValueError("no module to record: the model has no leaf modules matching "
                         f"module_types={module_types!r}")
    saved_grads = {n: p.grad for n, p in model.named_parameters()}
    captured: dict[str, list[torch.Tensor]] = {}
    keep_alive: list[torch.Tensor] = []           # so that tensor ids stay unique during the pass
    seen: set[int] = set()

    def forward_hook(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            for t in _tensors(output):
                if not (t.requires_grad and t.is_floating_point()) or id(t) in seen:
                    continue
                seen.add(id(t))
                keep_alive.append(t)

                def save(grad: torch.Tensor, name: str = name) -> None:
                    captured.setdefault(name, []).append(grad.detach().float().flatten())
                t.register_hook(save)
        return hook

    handles = [m.register_forward_hook(forward_hook(n)) for n, m in named]
    parameters: dict[str, torch.Tensor] = {}
    try:
        with preserved_state(model):     # buffers, modes and the global RNG (dropout's draws)
            for p in model.parameters():
                p.grad = None
            loss = closure()
            if not (isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.requires_grad):
                raise ValueError("closure must return a scalar loss tensor that requires grad, "
                                 f"got {type(loss).__name__} of shape "
                                 f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else '-'}")
            loss.backward()
            parameters = {n: p.grad.detach().float().flatten().clone()
                          for n, p in model.named_parameters() if p.grad is not None}
    finally:
        for h in handles:
            h.remove()
        for n, p in model.named_parameters():
            p.grad = saved_grads[n]
    return GradientSample({n: torch.cat(parts) for n, parts in captured.items()}, parameters)


# ----------------------------------------------------------------------------------------------
# What a format does to a set of values


@dataclass(frozen=True)
class CastReport:
    """What casting ``values * scale`` to a format does, over the nonzero finite values.

    Fractions are shares of the ``count`` nonzero finite input values.

    Attributes:
        format: the format's name.
        scale: the factor applied before the cast (a loss scale).
        count: how many nonzero finite values were measured.
        underflow: share flushed to exactly zero.
        subnormal: share that land among the subnormal numbers (nonzero but below the smallest
            normal number, where fewer significant bits remain).
        overflow: share whose magnitude rounds beyond the largest finite value (``inf``).
        norm_lost: share of the squared norm carried by the values flushed to zero.
        relative_error: median of ``|cast / scale - value| / |value|`` over the values that
            neither underflow nor overflow (the rounding error of the format).
    """

    format: str
    scale: float
    count: int
    underflow: float
    subnormal: float
    overflow: float
    norm_lost: float
    relative_error: float

    @property
    def representable(self) -> float:
        """Share that neither underflows nor overflows."""
        return 1.0 - self.underflow - self.overflow


def cast_report(values: torch.Tensor, dtype: torch.dtype | str, scale: float = 1.0) -> CastReport:
    """Measure what casting ``values * scale`` to ``dtype`` does (see :class:`CastReport`).

    ``values`` are taken as float32 (the precision of the gradients being cast) and multiplied by
    ``scale`` in float32, exactly as ``GradScaler`` multiplies the loss; zeros and non-finite
    entries are left out of every share.

    Raises:
        ValueError: if ``scale`` is not positive and finite, or there are no nonzero finite values.
        TypeError: if ``values`` is not a floating-point tensor, or ``scale`` not a number.
    """
    info = format_info(dtype)
    check_tensor("values", values, floating=True)
    scale = check_finite_positive("scale", scale)
    v = values.detach().float().flatten()
    v = v[torch.isfinite(v) & (v != 0)]
    if v.numel() == 0:
        raise ValueError("values has no nonzero finite entries to measure")
    scaled = v * scale
    cast = scaled.to(info.dtype).float()
    overflow = (scaled.abs() >= info.overflow_threshold) | ~torch.isfinite(cast)
    underflow = (cast == 0) & ~overflow
    subnormal = (cast != 0) & (cast.abs() < info.smallest_normal) & ~overflow
    kept = ~underflow & ~overflow
    v64 = v.double()
    energy = v64.square()
    total = float(energy.sum())
    lost = float(energy[underflow].sum()) / total if total > 0 else 0.0
    if bool(kept.any()):
        back = cast[kept].double() / scale
        err = float(((back - v64[kept]).abs() / v64[kept].abs()).median())
    else:
        err = math.nan
    n = v.numel()
    return CastReport(format=info.name, scale=float(scale), count=n,
                      underflow=float(underflow.sum()) / n, subnormal=float(subnormal.sum()) / n,
                      overflow=float(overflow.sum()) / n, norm_lost=lost, relative_error=err)


def scale_sweep(values: torch.Tensor, dtype: torch.dtype | str,
                exponents: Sequence[int]) -> list[CastReport]:
    """:func:`cast_report` for every loss scale ``2**k``, ``k`` in ``exponents``.

    Raises:
        TypeError: unless ``exponents`` is a sequence of integers (loss scales are powers of 2).
        ValueError: if it is empty; as :func:`cast_report`.
    """
    if not isinstance(exponents, (Sequence, range)) or isinstance(exponents, str):
        raise TypeError(f"exponents must be a sequence of integers such as range(0, 25, 2), got "
                        f"{exponents!r}")
    if not exponents:
        raise ValueError("exponents is empty: pass e.g. range(0, 25, 2)")
    for i, k in enumerate(exponents):
        check_int(f"exponents[{i}]", k)
    return [cast_report(values, dtype, 2.0 ** k) for k in exponents]


# ----------------------------------------------------------------------------------------------
# GradScaler, watched


class ScaleMonitor:
    """Record a ``torch.amp.GradScaler``'s loss scale and the steps it skipped.

    Call :meth:`update` in place of ``scaler.update()``. A step was skipped exactly when the
    scaler found an ``inf``/``nan`` gradient, and then ``update`` multiplies the scale by
    ``backoff_factor`` (< 1); after ``growth_interval`` clean steps in a row it multiplies it by
    ``growth_factor``. So a step was skipped if and only if the scale went down.

    Attributes:
        scales: the scale the backward pass of each step used.
        skipped: whether each step's optimizer update was skipped.

    Raises:
        ValueError: if the scaler is disabled (it then has no scale to watch).
    """

    def __init__(self, scaler: torch.amp.GradScaler) -> None:
        if not isinstance(scaler, torch.amp.GradScaler):
            raise TypeError(f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}")
        if not scaler.is_enabled():
            raise ValueError("the GradScaler is disabled (enabled=False): there is no scale to "
                             "record; monitor an enabled scaler")
        self.scaler = scaler
        self.scales: list[float] = []
        self.skipped: list[bool] = []

    def update(self) -> bool:
        """``scaler.update()``, recording this step; returns whether the step was skipped."""
        before = self.scaler.get_scale()
        self.scaler.update()
        skipped = self.scaler.get_scale() < before
        self.scales.append(before)
        self.skipped.append(skipped)
        return skipped

    @property
    def steps(self) -> int:
        return len(self.scales)

    @property
    def skipped_steps(self) -> list[int]:
        """Indices of the skipped steps."""
        return [i for i, s in enumerate(self.skipped) if s]

    @property
    def skip_fraction(self) -> float:
        """Share of the recorded steps that were skipped (0 when nothing was recorded)."""
        return sum(self.skipped) / len(self.skipped) if self.skipped else 0.0
