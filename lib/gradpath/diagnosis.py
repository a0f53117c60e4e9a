"""Rules of thumb that turn per-layer gradient norms into a diagnosis.

The thresholds are the practitioner's rules the course teaches, applied to measured numbers:

- vanishing: the earliest layer's gradient norm is below ``1e-5``, or the last layer's norm is
  more than ``1000×`` the first layer's;
- exploding: any norm is non-finite, a norm exceeds ``1000``, or the first layer's norm is more
  than ``1000×`` the last layer's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

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
    """Apply the rules of thumb to per-layer gradient norms ordered input layer first."""
    norms = [float(n) for n in norms]
    if len(norms) < 2:
        raise ValueError("need the gradient norms of at least two layers, input layer first")
    first, last = norms[0], norms[-1]
    ratio = first / last if last != 0 else math.inf
    reasons: list[str] = []
    if any(not math.isfinite(n) for n in norms):
        reasons.append("a gradient norm is inf or nan")
    if any(math.isfinite(n) and n > exploding_norm for n in norms):
        reasons.append(f"a gradient norm exceeds {exploding_norm:g}")
    if math.isfinite(ratio) and ratio > ratio_limit:
        reasons.append(f"the first layer's gradient is {ratio:.3g}× the last layer's")
    if reasons:
        return Diagnosis("exploding", ratio, reasons)
    if first < vanishing_norm:
        reasons.append(f"the first layer's gradient norm {first:.2e} is below {vanishing_norm:g}")
    if ratio < 1 / ratio_limit:
        times = 1 / ratio if ratio > 0 else math.inf  # a first-layer norm that underflowed to 0
        reasons.append(f"the last layer's gradient is {times:.3g}× the first layer's")
    return Diagnosis("vanishing" if reasons else "healthy", ratio, reasons)
