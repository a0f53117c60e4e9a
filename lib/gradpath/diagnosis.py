"""Rules of thumb that turn per-layer gradient norms into a diagnosis.

The thresholds are the practitioner's rules the course teaches, applied to measured numbers:

- vanishing: the earliest layer's gradient norm is below ``1e-5``, or the last layer's norm is
  more than ``1000×`` the first layer's;
- exploding: any norm is non-finite, a norm exceeds ``1000``, or the first layer's norm is more
  than ``1000×`` the last layer's.

A norm of exactly zero at any layer means no gradient reaches that layer's weights (it underflowed,
or every unit there is dead): that is vanishing, whatever the other layers show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from gradpath._checks import check_finite_positive, check_real

VANISHING_NORM = 1e-5
EXPLODING_NORM = 1e3
RATIO_LIMIT = 1e3


@dataclass(frozen=True)
class Diagnosis:
    """The verdict and the evidence behind it.

    Attributes:
        verdict: ``"vanishing"``, ``"exploding"`` or ``"healthy"``.
        first_to_last_ratio: ``norms[0] / norms[-1]`` (small means the input side is starved).
        reasons: the rules that fired, in words.
    """

    verdict: str
    first_to_last_ratio: float
    reasons: list[str] = field(default_factory=list)


def diagnose_gradients(norms: Sequence[float], *, vanishing_norm: float = VANISHING_NORM,
                       exploding_norm: float = EXPLODING_NORM,
                       ratio_limit: float = RATIO_LIMIT) -> Diagnosis:
    """Apply the rules of thumb to per-layer gradient norms ordered input layer first.

    Args:
        norms: ``‖∂L/∂W_l‖`` per layer, input layer first: a sequence (list, tuple, NumPy array,
            1-D tensor) of at least two non-negative numbers; ``inf`` and ``nan`` are allowed
            (they are the evidence of an explosion).
        vanishing_norm, exploding_norm: finite positive thresholds, ``vanishing_norm <
            exploding_norm``.
        ratio_limit: finite, ``> 1``: how far apart the first and last layers may be.

    Returns:
        A :class:`Diagnosis`. ``first_to_last_ratio`` is ``inf`` when only the last norm is 0 and
        ``nan`` when both are. Non-finite norms make it ``"exploding"``; otherwise a zero norm at
        any layer makes it ``"vanishing"``.

    Raises:
        TypeError: if ``norms`` is a string or holds something that is not a number.
        ValueError: for fewer than two norms, a negative norm, or invalid thresholds.
    """
    if isinstance(norms, (str, bytes)) or not hasattr(norms, "__len__"):
        raise TypeError(f"norms must be a sequence of per-layer gradient norms (numbers), got "
                        f"{norms!r} ({type(norms).__name__})")
    if isinstance(norms, torch.Tensor):
        norms = norms.detach().reshape(-1).tolist() if norms.dim() <= 1 else norms
    values = [check_real(f"norms[{i}]", n) for i, n in enumerate(norms)]
    if len(values) < 2:
        raise ValueError(f"need the gradient norms of at least two layers, input layer first, "
                         f"got {len(values)}")
    negative = [i for i, n in enumerate(values) if n < 0]
    if negative:
        i = negative[0]
        raise ValueError(f"a gradient norm cannot be negative: norms[{i}] = {values[i]!r}")
    vanishing_norm = check_finite_positive("vanishing_norm", vanishing_norm)
    exploding_norm = check_finite_positive("exploding_norm", exploding_norm)
    if not vanishing_norm < exploding_norm:
        raise ValueError(f"vanishing_norm ({vanishing_norm:g}) must be below exploding_norm "
                         f"({exploding_norm:g})")
    ratio_limit = check_finite_positive("ratio_limit", ratio_limit)
    if not ratio_limit > 1:
        raise ValueError(f"ratio_limit must be a finite number > 1 (a factor between the first "
                         f"and last layers), got {ratio_limit!r}")
    norms = values
    first, last = norms[0], norms[-1]
    ratio = first / last if last != 0 else (math.inf if first != 0 else math.nan)
    reasons: list[str] = []
    if any(not math.isfinite(n) for n in norms):
        reasons.append("a gradient norm is inf or nan")
    if any(math.isfinite(n) and n > exploding_norm for n in norms):
        reasons.append(f"a gradient norm exceeds {exploding_norm:g}")
    if math.isfinite(ratio) and ratio > ratio_limit:
        reasons.append(f"the first layer's gradient is {ratio:.3g}× the last layer's")
    if reasons:
        return Diagnosis("exploding", ratio, reasons)
    zero = [i + 1 for i, n in enumerate(norms) if n == 0]
    if zero:
        reasons.append(f"the gradient norm is exactly 0 at layer(s) {', '.join(map(str, zero))} "
                       "(counted from 1, input first): nothing reaches those weights")
    if first < vanishing_norm:
        reasons.append(f"the first layer's gradient norm {first:.2e} is below {vanishing_norm:g}")
    if not math.isnan(ratio) and ratio < 1 / ratio_limit:
        times = 1 / ratio if ratio > 0 else math.inf  # a first-layer norm that underflowed to 0
        reasons.append(f"the last layer's gradient is {times:.3g}× the first layer's")
    return Diagnosis("vanishing" if reasons else "healthy", ratio, reasons)
