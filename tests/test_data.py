"""gradpath.data: the data sets are exactly what their docstrings say, checked against
independent computations (scikit-learn's raw digits, the teacher formulas redone here)."""

from __future__ import annotations

import re

import pytest
import torch
from gradpath.data import Dataset, digits, teacher_classification, teacher_regression


def test_dataset_checks_its_task_and_lengths():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"^unknown task 'ranking'; valid choices are "
                                         r"classification, regression$"):
        Dataset(x, torch.zeros(3), "ranking")
    with pytest.raises(ValueError, match=r"^x has 3 examples but y has 2$"):
        Dataset(x, torch.zeros(2), "regression")


def test_dataset_shape_properties():
    reg = Dataset(torch.zeros(5, 3), torch.zeros(5), "regression")
    assert (len(reg), reg.features, reg.outputs, reg.classes) == (5, 3, 1, 0)
    wide = Dataset(torch.zeros(5, 3), torch.zeros(5, 4), "regression")
    assert wide.outputs == 4
    cls = Dataset(torch.zeros(5, 3), torch.zeros(5, dtype=torch.int64), "classification", 7)
    assert (cls.outputs, cls.features) == (7, 3)
    moved = cls.to("cpu")
    assert torch.equal(moved.x, cls.x) and torch.equal(moved.y, cls.y)
    assert (moved.task, moved.classes) == ("classification", 7)


def test_split_is_a_seeded_partition_of_the_examples():
    data = Dataset(torch.arange(20.0).reshape(10, 2), torch.arange(10), "classification", 10)
    train, test = data.split(0.3, seed=4)
    assert (len(train), len(test)) == (7, 3)
    assert sorted(train.y.tolist() + test.y.tolist()) == list(range(10))
    assert torch.equal(train.x[:, 0], 2.0 * train.y.float())          # rows stay paired
    assert (train.task, train.classes, test.task, test.classes) == ("classification", 10) * 2
    order = torch.randperm(10, generator=torch.Generator().manual_seed(4))
    assert train.y.tolist() == order[:7].tolist() and test.y.tolist() == order[7:].tolist()
    again, _ = data.split(0.3, seed=4)
    other, _ = data.split(0.3, seed=5)
    assert torch.equal(again.y, train.y) and not torch.equal(other.y, train.y)
    assert [len(p) for p in data.split()] == [8, 2]                   # default: a quarter
    assert [len(p) for p in data.split(0.25)] == [8, 2]               # round(7.5) = 8
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError,
                match=r"^test_fraction must be in the open interval \(0, 1\)"):
            data.split(bad)


def test_digits_is_sklearns_data_standardized_per_pixel():
    from sklearn.datasets import load_digits
    raw = load_digits()
    x = torch.tensor(raw.data, dtype=torch.float64)
    expected = (x - x.mean(0)) / (x.std(0) + 1e-6)
    data = digits()
    assert (len(data), data.features, data.classes, data.task) == (1797, 64, 10, "classification")
    assert data.x.dtype == torch.float32 and data.y.dtype == torch.int64
    assert torch.allclose(data.x.double(), expected, atol=1e-5)
    assert data.y.tolist() == raw.target.tolist()
    few = digits(limit=5)
    assert torch.equal(few.x, data.x[:5]) and torch.equal(few.y, data.y[:5])
    assert len(digits(limit=1)) == 1
    with pytest.raises(ValueError, match=r"^limit must be an integer >= 1, got 0$"):
        digits(limit=0)


def test_teacher_classification_labels_by_the_linear_teacher():
    data = teacher_classification(64, 5, classes=3, seed=2)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 5, generator=g)
    teacher = torch.randn(5, 3, generator=g)
    assert torch.equal(data.x, x)
    assert torch.equal(data.y, (x @ teacher).argmax(dim=1))
    assert (data.task, data.classes, data.outputs) == ("classification", 3, 3)
    default = teacher_classification()
    assert (len(default), default.features, default.classes) == (512, 16, 4)
    assert torch.equal(default.x, teacher_classification(seed=0).x)
    assert not torch.equal(default.x, teacher_classification(seed=1).x)
    assert len(teacher_classification(1, 1, 2)) == 1                  # the smallest allowed
    for bad, message in (((0, 4, 3), "samples must be an integer >= 1, got 0"),
                         ((4, 0, 3), "features must be an integer >= 1, got 0"),
                         ((4, 4, 1), "classes must be an integer >= 2, got 1")):
        with pytest.raises(ValueError, match="^" + re.escape(message)):
            teacher_classification(*bad)


def test_teacher_regression_is_the_documented_target():
    data = teacher_regression(50, 6, seed=3, noise=0.1)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50, 6, generator=g)
    u, v = torch.randn(6, generator=g), torch.randn(6, generator=g)
    u, v = u / u.norm(), v / v.norm()
    noise = torch.randn(50, generator=g)
    expected = torch.sin(2.0 * (x @ u)) + 0.5 * (x @ v) + 0.1 * noise
    assert torch.equal(data.x, x)
    assert data.y.shape == (50, 1)
    assert torch.allclose(data.y[:, 0], expected, atol=1e-6)
    assert (data.task, data.classes) == ("regression", 0)
    clean = teacher_regression(50, 6, seed=3)
    assert torch.allclose(clean.y[:, 0], expected - 0.1 * noise, atol=1e-6)
    default = teacher_regression()
    assert (len(default), default.features) == (512, 16)
    assert torch.equal(default.y, teacher_regression(seed=0, noise=0.0).y)
    assert len(teacher_regression(1, 1)) == 1
    for bad, message in (((0, 4), "samples must be an integer >= 1, got 0"),
                         ((4, 0), "features must be an integer >= 1, got 0")):
        with pytest.raises(ValueError, match="^" + re.escape(message)):
            teacher_regression(*bad)
    with pytest.raises(ValueError, match="^noise must be a finite number >= 0, got -1e-09$"):
        teacher_regression(4, 4, noise=-1e-9)


def test_to_moves_both_tensors_and_split_keeps_the_device():
    data = teacher_regression(8, 3)
    moved = data.to("meta")                           # a device every machine has
    assert moved.x.device.type == "meta" and moved.y.device.type == "meta"
    assert (moved.task, moved.classes, moved.x.shape) == ("regression", 0, (8, 3))


def test_split_defaults_to_seed_zero():
    data = teacher_classification(40, 3, 3)
    for a, b in zip(data.split(), data.split(0.25, seed=0), strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(data.split()[0].y, data.split(0.25, seed=1)[0].y)


def test_digits_without_scikit_learn_says_how_to_get_it(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)   # import fails
    with pytest.raises(ImportError, match=r"^digits\(\) needs scikit-learn, which ships the data "
                                          r"set: pip install 'gradpath\[book\]' \(or "
                                          r"scikit-learn\)$"):
        digits()
