"""Where experiments run, and how to make them reproducible.

The course runs on the CPU by default and uses a GPU automatically when one is present.
Set ``GRADPATH_DEVICE`` to ``cpu``, ``cuda`` or ``mps`` to override the choice.

On the CPU, :func:`pick_device` also limits PyTorch to ``GRADPATH_CPU_THREADS`` threads (default
1). The course's networks are small, so extra intra-op threads gain little, and when the cores are
busy with anything else PyTorch's threads wait on each other: on a two-core machine shared with
one other job, the same 200 training steps took 1.2 s on one thread and 58 s on two. Set
``GRADPATH_CPU_THREADS=0`` to keep PyTorch's own default.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_ENV = "GRADPATH_DEVICE"
CPU_THREADS_ENV = "GRADPATH_CPU_THREADS"
VALID_DEVICES = ("cuda", "mps", "cpu")


def _available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    return True


def pick_device(preference: str | None = None) -> torch.device:
    """Return the device experiments should run on.

    Order of precedence: the ``preference`` argument, then the ``GRADPATH_DEVICE`` environment
    variable, then the best available of ``cuda`` > ``mps`` > ``cpu``. When the answer is the CPU,
    PyTorch's thread count is set from ``GRADPATH_CPU_THREADS`` (see the module docstring).

    Raises:
        ValueError: if the preference is not one of :data:`VALID_DEVICES`, names a device this
            machine does not have, or ``GRADPATH_CPU_THREADS`` is not a non-negative integer.
    """
    device = _choose(preference)
    if device.type == "cpu":
        limit_cpu_threads()
    return device


def limit_cpu_threads() -> int:
    """Apply ``GRADPATH_CPU_THREADS`` (default 1; 0 keeps PyTorch's default); return the count."""
    raw = os.environ.get(CPU_THREADS_ENV, "1").strip()
    if not raw.isdigit():
        raise ValueError(f"{CPU_THREADS_ENV} must be a non-negative integer, got {raw!r}")
    if int(raw) > 0:
        torch.set_num_threads(int(raw))
    return torch.get_num_threads()


def _choose(preference: str | None) -> torch.device:
    if preference is not None and not isinstance(preference, str):
        raise ValueError(f"unknown device {preference!r} ({type(preference).__name__}); valid "
                         f"choices are {', '.join(VALID_DEVICES)} (or None to choose the best)")
    choice = preference if preference is not None else os.environ.get(DEVICE_ENV, "").strip()
    if choice:
        choice = choice.lower()
        if choice not in VALID_DEVICES:
            raise ValueError(
                f"unknown device {choice!r}; valid choices are {', '.join(VALID_DEVICES)}"
            )
        if not _available(choice):
            raise ValueError(f"device {choice!r} was requested but is not available here")
        return torch.device(choice)
    for kind in VALID_DEVICES:
        if _available(kind):
            return torch.device(kind)
    return torch.device("cpu")  # pragma: no cover - cpu is always available


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python's, NumPy's and PyTorch's random generators (CPU and GPU).

    Returns a fresh CPU ``torch.Generator`` seeded with ``seed`` for code that wants its own stream.

    Raises:
        ValueError: unless ``seed`` is a non-negative integer (a bool is not).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)
