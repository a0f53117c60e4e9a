"""Shared fixtures: the repository root, chapter list and a deterministic torch."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("GRADPATH_PROGRESS", "0")

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]-*.ipynb"))


torch.set_num_threads(1)   # as gradpath does on the CPU: small nets, and a busy 2-core machine


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture
def root() -> Path:
    return ROOT
