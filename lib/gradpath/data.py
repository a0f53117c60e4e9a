"""Data for the experiments: made by code, or shipped inside scikit-learn. Nothing downloads."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gradpath._checks import (
    check_choice,
    check_device,
    check_finite_nonnegative,
    check_fraction,
    check_int,
    check_positive_int,
    check_tensor,
)

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class Dataset:
    """Inputs and targets held as tensors.

    Attributes:
        x: inputs, shape (examples, features), float32.
        y: class indices (int64) for classification, values (float32) for regression.
        task: ``"classification"`` or ``"regression"``.
        classes: number of classes (0 for regression).

    Raises:
        ValueError: for an unknown task, ``x`` and ``y`` of different lengths, ``x`` with fewer
            than 2 dimensions (examples, features...), a classification set with fewer than 2
            classes or with a label outside ``[0, classes)``, or a regression set with classes.
        TypeError: if ``x`` or ``y`` is not a tensor, ``x`` is not floating point, a
            classification ``y`` is not an integer tensor (class indices) or a regression ``y``
            is not floating point, or ``classes`` is not an integer.

    An empty data set (0 examples) can be built, but :func:`gradpath.training.train` and
    :func:`~gradpath.training.evaluate` refuse it.
    """

    x: torch.Tensor
    y: torch.Tensor
    task: str
    classes: int = 0

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        check_tensor("x", self.x, floating=True)
        check_tensor("y", self.y)
        if self.x.dim() < 2:
            raise ValueError(f"x must have shape (examples, features, ...), got shape "
                             f"{tuple(self.x.shape)}")
        if self.y.dim() == 0:
            raise ValueError("y must hold one target per example, got a 0-d tensor")
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} examples but y has {len(self.y)}")
        check_int("classes", self.classes, minimum=0)
        if self.task == "classification":
            if self.classes < 2:
                raise ValueError(f"a classification Dataset needs classes >= 2, got "
                                 f"{self.classes!r}")
            if self.y.is_floating_point() or self.y.is_complex() or self.y.dtype == torch.bool:
                raise TypeError(f"classification targets y must be integer class indices "
                                f"(int64), got dtype {self.y.dtype}")
            if self.y.numel():
                low, high = int(self.y.min()), int(self.y.max())
                if low < 0 or high >= self.classes:
                    bad = low if low < 0 else high
                    raise ValueError(f"label {bad} is outside [0, classes) = [0, "
                                     f"{self.classes}): labels must be class indices "
                                     f"0..{self.classes - 1}")
        else:
            if self.classes != 0:
                raise ValueError(f"a regression Dataset has no classes: leave classes=0, got "
                                 f"{self.classes!r}")
            if not self.y.is_floating_point():
                raise TypeError(f"regression targets y must be floating point, got dtype "
                                f"{self.y.dtype}")

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
        """The same data on ``device``.

        Raises:
            ValueError: for a device string torch does not know (e.g. ``"gpu"``).
        """
        device = check_device("device", device)
        return Dataset(self.x.to(device), self.y.to(device), self.task, self.classes)

    def split(self, test_fraction: float = 0.25, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Shuffle with ``seed`` and split into (train, test).

        The training part gets ``round(len(self) * (1 - test_fraction))`` examples.

        Raises:
            ValueError: unless ``0 < test_fraction < 1`` and both parts get at least one
                example (so the data set needs at least 2); for a negative seed.
            TypeError: for a seed that is not an integer.
        """
        check_fraction("test_fraction", test_fraction)
        check_int("seed", seed, minimum=0)
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        order = order.to(self.x.device)
        cut = int(round(len(self) * (1 - test_fraction)))
        if not 0 < cut < len(self):
            raise ValueError(f"test_fraction={test_fraction!r} splits {len(self)} examples into "
                             f"{cut} for training and {len(self) - cut} for testing; each part "
                             "needs at least one example")
        train, test = order[:cut], order[cut:]
        return (Dataset(self.x[train], self.y[train], self.task, self.classes),
                Dataset(self.x[test], self.y[test], self.task, self.classes))


def digits(limit: int | None = None) -> Dataset:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes), standardized.

    Args:
        limit: keep only the first ``limit`` examples (``None`` keeps all).

    Raises:
        TypeError, ValueError: unless ``limit`` is ``None`` or a positive integer.
    """
    if limit is not None:
        check_positive_int("limit", limit)
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
        x, y = x[:limit], y[:limit]
    return Dataset(x, y, "classification", 10)


def teacher_classification(samples: int = 512, features: int = 16, classes: int = 4,
                           seed: int = 0) -> Dataset:
    """Gaussian inputs labelled by a random linear teacher: learnable by any healthy network.

    Raises:
        TypeError: for a size or seed that is not an integer.
        ValueError: unless samples >= 1, features >= 1, classes >= 2 and seed >= 0.
    """
    check_positive_int("samples", samples)
    check_positive_int("features", features)
    check_int("classes", classes, minimum=2)
    check_int("seed", seed, minimum=0)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=g)
    teacher = torch.randn(features, classes, generator=g)
    y = (x @ teacher).argmax(dim=1)
    return Dataset(x, y, "classification", classes)


def teacher_regression(samples: int = 512, features: int = 16, seed: int = 0,
                       noise: float = 0.0) -> Dataset:
    """Gaussian inputs and a smooth target ``sin(2 x·u) + 0.5·(x·v)``, plus optional noise.

    Raises:
        TypeError: for a size or seed that is not an integer, or a noise that is not a number.
        ValueError: unless samples >= 1, features >= 1, seed >= 0 and noise is finite and >= 0.
    """
    check_positive_int("samples", samples)
    check_positive_int("features", features)
    check_int("seed", seed, minimum=0)
    check_finite_nonnegative("noise", noise)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=g)
    u, v = torch.randn(features, generator=g), torch.randn(features, generator=g)
    u, v = u / u.norm(), v / v.norm()
    y = torch.sin(2 * x @ u) + 0.5 * (x @ v) + noise * torch.randn(samples, generator=g)
    return Dataset(x, y.unsqueeze(1), "regression")
