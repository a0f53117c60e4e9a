"""One preset that sizes every experiment in the course.

On a CPU the ``small`` preset keeps each chapter under 30 seconds on two cores; on a GPU the
``large`` preset uses wider layers, more data and longer runs. Set ``GRADPATH_SCALE`` to ``small``
or ``large`` to choose by hand. Chapters assert qualitative claims (ratios, orders of magnitude)
that hold at every scale.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from gradpath._checks import check_device

SCALE_ENV = "GRADPATH_SCALE"


@dataclass(frozen=True)
class Scale:
    """How big the experiments are.

    Attributes:
        name: ``"small"`` or ``"large"``.
        width: hidden units in the standard deep MLP.
        samples: examples drawn for a synthetic task.
        steps: optimizer steps in a standard training run.
        batch_size: examples per step.
        seeds: how many random seeds a sweep averages over.
    """

    name: str
    width: int
    samples: int
    steps: int
    batch_size: int
    seeds: int


SCALES: dict[str, Scale] = {
    "small": Scale("small", width=64, samples=512, steps=200, batch_size=64, seeds=3),
    "large": Scale("large", width=256, samples=4096, steps=1000, batch_size=256, seeds=8),
}


def current_scale(device: torch.device | str | None = None) -> Scale:
    """The preset to use: ``GRADPATH_SCALE`` if set, else ``large`` on CUDA and ``small`` otherwise.

    Raises:
        ValueError: if ``GRADPATH_SCALE`` names no preset, or ``device`` is a string torch does
            not know.
    """
    if device is not None:
        device = check_device("device", device)
    name = os.environ.get(SCALE_ENV, "").strip().lower()
    if name:
        if name not in SCALES:
            raise ValueError(
                f"{SCALE_ENV}={name!r} is not a scale; valid choices are {', '.join(SCALES)}"
            )
        return SCALES[name]
    kind = torch.device(device).type if device is not None else None
    if kind is None:
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    return SCALES["large" if kind == "cuda" else "small"]
