"""Where experiments run, and how to make them reproducible.

The course runs on the CPU by default and uses a GPU automatically when one is present.
Set ``GRADPATH_DEVICE`` to ``cpu``, ``cuda`` or ``mps`` to override the choice.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_ENV = "GRADPATH_DEVICE"
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
    variable, then the best available of ``cuda`` > ``mps`` > ``cpu``.

    Raises:
        ValueError: if the preference is not one of :data:`VALID_DEVICES`, or names a device
            this machine does not have.
    """
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
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)
