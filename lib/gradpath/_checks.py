"""Input checks shared by gradpath's public functions (a private core module).

Every check raises an error whose message names the argument, the value it got and what is
valid, so bad input fails at the public boundary in the course's words instead of deep inside
torch. The conventions:

- a size or count is a Python ``int`` (or a NumPy integer), never a ``bool`` (``True`` is not a
  width) and never a float: :func:`check_int`, :func:`check_positive_int`;
- a scale, rate, gain or bound is a real number, finite and positive: ``inf`` and ``nan`` are
  refused (:func:`check_finite_positive`);
- a fraction strictly between 0 and 1: :func:`check_fraction`;
- a name is one of a fixed tuple of choices: :func:`check_choice`;
- a random generator is a ``torch.Generator`` or ``None``: :func:`check_generator`.

``TypeError`` means the value has the wrong type (a string where numbers belong, a float where a
count belongs); ``ValueError`` means the type is right and the value is not (a negative width, an
infinite learning rate).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable
from typing import Any

import torch


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` as an ``int`` if it is an integer (not a bool) ``>= minimum``.

    Raises:
        TypeError: if ``value`` is not an integer (``bool``, ``float``, ``str`` and ``None`` are
            refused).
        ValueError: if it is below ``minimum``.
    """
    if not _is_integer(value):
        want = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise TypeError(f"{name} must be {want}, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive_int(name: str, value: Any) -> int:
    """:func:`check_int` with ``minimum=1``."""
    return check_int(name, value, minimum=1)


def check_real(name: str, value: Any) -> float:
    """Return ``value`` as a ``float`` if it is a real number (not a bool, a string or ``None``).

    A 0-d tensor or NumPy scalar is accepted too.

    Raises:
        TypeError: if ``value`` is not a real number.
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex() \
            and value.dtype != torch.bool:
        return float(value)
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def check_finite(name: str, value: Any) -> float:
    """Return ``value`` as a ``float`` if it is a finite real number.

    Raises:
        TypeError: as :func:`check_real`.
        ValueError: for ``inf`` or ``nan``.
    """
    number = check_real(name, value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def check_finite_positive(name: str, value: Any) -> float:
    """Return ``value`` as a ``float`` if it is finite and ``> 0``.

    Raises:
        TypeError: as :func:`check_real`.
        ValueError: for zero, a negative number, ``inf`` or ``nan``.
    """
    number = check_real(name, value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return number


def check_finite_nonnegative(name: str, value: Any) -> float:
    """Return ``value`` as a ``float`` if it is finite and ``>= 0``.

    Raises:
        TypeError: as :func:`check_real`.
        ValueError: for a negative number, ``inf`` or ``nan``.
    """
    number = check_real(name, value)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def check_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a ``float`` if ``0 < value < 1`` (both ends excluded).

    Raises:
        TypeError: as :func:`check_real`.
        ValueError: outside the open interval (0, 1), or ``nan``.
    """
    number = check_real(name, value)
    if not 0 < number < 1:
        raise ValueError(f"{name} must be in the open interval (0, 1), got {value!r}")
    return number


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValueError: naming the value and every valid choice.
    """
    options = tuple(choices)
    try:
        ok = value in options
    except TypeError:   # an unhashable or incomparable value
        ok = False
    if not ok or isinstance(value, bool) and not any(isinstance(c, bool) for c in options):
        raise ValueError(f"unknown {name} {value!r}; valid choices are "
                         f"{', '.join(repr(c) if not isinstance(c, str) else c for c in options)}")
    return value


def check_generator(name: str, value: Any) -> torch.Generator | None:
    """Return ``value`` if it is a ``torch.Generator`` or ``None``.

    Raises:
        TypeError: for anything else (an ``int`` seed included: seed a generator with
            ``torch.Generator().manual_seed(seed)``).
    """
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {value!r} "
                        f"({type(value).__name__}); for a seed s pass "
                        "torch.Generator().manual_seed(s)")
    return value


def check_tensor(name: str, value: Any, *, floating: bool = False,
                 min_dim: int = 0) -> torch.Tensor:
    """Return ``value`` if it is a ``torch.Tensor`` (floating, with ``min_dim`` dims, if asked).

    Raises:
        TypeError: if ``value`` is not a tensor, or not floating when ``floating`` is asked.
        ValueError: if it has fewer than ``min_dim`` dimensions.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if value.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimensions, got shape "
                         f"{tuple(value.shape)}")
    return value


def check_device(name: str, value: Any) -> torch.device:
    """Return ``torch.device(value)`` for a device or a device string torch knows.

    Raises:
        ValueError: for a string that names no device type (torch's own message lists every
            device type it was built with; this one lists the course's: cuda, mps, cpu).
        TypeError: for a value that is neither a ``torch.device`` nor a string.
    """
    if isinstance(value, torch.device):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a torch.device or a string such as 'cpu', 'cuda' or "
                        f"'cuda:0', got {value!r} ({type(value).__name__})")
    try:
        return torch.device(value)
    except RuntimeError:
        raise ValueError(f"unknown {name} {value!r}; valid choices are cpu, cuda (or cuda:N) "
                         "and mps") from None


def check_pattern(name: str, pattern: object, *, optional: bool = False) -> re.Pattern[str] | None:
    """Compile a regular expression argument (``None`` passes through when ``optional``).

    Raises:
        TypeError: for something that is not a string (nor ``None`` when ``optional``).
        ValueError: for a string that is not a valid regular expression (with ``re``'s reason).
    """
    if pattern is None and optional:
        return None
    if not isinstance(pattern, str):
        allowed = "(a string) or None" if optional else "(a string)"
        raise TypeError(f"{name} must be a regular expression {allowed}, got {pattern!r} "
                        f"({type(pattern).__name__})")
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"{name} {pattern!r} is not a valid regular expression: {error}"
                         ) from None
