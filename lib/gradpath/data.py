"""Data for the experiments: made by code, or shipped inside scikit-learn. Nothing downloads."""

from __future__ import annotations

from dataclasses import dataclass

import torch

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class Dataset:
    """Inputs and targets held as tensors.

    Attributes:
        x: inputs, shape (examples, features), float32.
        y: class indices (int64) for classification, values (float32) for regression.
        task: ``"classification"`` or ``"regression"``.
        classes: number of classes (0 for regression).
    """

    x: torch.Tensor
    y: torch.Tensor
    task: str
    classes: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; valid choices are {', '.join(TASKS)}")
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} examples but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def features(self) -> int:
        return int(self.x.shape[1])

    @property
    def outputs(self) -> int:
        """Output units a model needs: the number of classes, or the target's width."""
        if self.task == "classification":
            return self.classes
        return 1 if self.y.dim() == 1 else int(self.y.shape[1])

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(self.x.to(device), self.y.to(device), self.task, self.classes)

    def split(self, test_fraction: float = 0.25, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Shuffle with ``seed`` and split into (train, test)."""
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        order = order.to(self.x.device)
        cut = int(round(len(self) * (1 - test_fraction)))
        train, test = order[:cut], order[cut:]
        return (Dataset(self.x[train], self.y[train], self.task, self.classes),
                Dataset(self.x[test], self.y[test], self.task, self.classes))


def digits(limit: int | None = None) -> Dataset:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes), standardized.

    Args:
        limit: keep only the first ``limit`` examples (``None`` keeps all).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # scikit-learn is in the `book` extra, not the core
        raise ImportError("digits() needs scikit-learn, which ships the data set: "
                          "pip install 'gradpath[book]' (or scikit-learn)") from exc

    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        x, y = x[:limit], y[:limit]
    return Dataset(x, y, "classification", 10)


def teacher_classification(samples: int = 512, features: int = 16, classes: int = 4,
                           seed: int = 0) -> Dataset:
    """Gaussian inputs labelled by a random linear teacher: learnable by any healthy network."""
    if samples < 1 or features < 1 or classes < 2:
        raise ValueError("need samples >= 1, features >= 1 and classes >= 2")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=g)
    teacher = torch.randn(features, classes, generator=g)
    y = (x @ teacher).argmax(dim=1)
    return Dataset(x, y, "classification", classes)


def teacher_regression(samples: int = 512, features: int = 16, seed: int = 0,
                       noise: float = 0.0) -> Dataset:
    """Gaussian inputs and a smooth target ``sin(2 x·u) + 0.5·(x·v)``, plus optional noise."""
    if samples < 1 or features < 1 or noise < 0:
        raise ValueError("need samples >= 1, features >= 1 and noise >= 0")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=g)
    u, v = torch.randn(features, generator=g), torch.randn(features, generator=g)
    u, v = u / u.norm(), v / v.norm()
    y = torch.sin(2 * x @ u) + 0.5 * (x @ v) + noise * torch.randn(samples, generator=g)
    return Dataset(x, y.unsqueeze(1), "regression")
