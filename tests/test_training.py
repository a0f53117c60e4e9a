import math

import pytest
import torch
from gradpath.data import digits, teacher_classification, teacher_regression
from gradpath.models import DeepMLP
from gradpath.training import evaluate, make_optimizer, train


def test_a_healthy_network_learns_and_records_every_step():
    data = teacher_classification(256, 8, 3, seed=0)
    model = DeepMLP(8, 3, width=32, depth=3, activation="relu", init="he_normal",
                    generator=torch.Generator().manual_seed(0))
    before = evaluate(model, data)["accuracy"]
    history = train(model, data, steps=150, lr=0.1, batch_size=64, optimizer="momentum")
    after = evaluate(model, data)
    assert after["accuracy"] > max(0.8, before)
    assert history.steps == 150 and history.first_nonfinite_step is None
    assert history.gradient_norm_matrix().shape == (150, 3)
    assert history.weight_norm_matrix().shape == (150, 3)
    assert history.global_norm == history.clipped_norm
    assert "ran 150 steps" in history.summary()


def test_divergence_is_reported_not_raised():
    data = teacher_regression(128, 8, seed=0)
    model = DeepMLP(8, 1, width=32, depth=6, activation="relu", init="uniform", init_scale=2.0)
    history = train(model, data, steps=50, lr=1.0)
    assert history.diverged
    step = history.first_nonfinite_step
    assert step is not None and history.stopped_early and history.steps == step + 1
    assert not math.isfinite(history.loss[-1]) or not math.isfinite(history.global_norm[-1])
    assert "non-finite" in history.summary()


def test_running_on_after_divergence_when_asked():
    data = teacher_regression(64, 4, seed=0)
    model = DeepMLP(4, 1, width=16, depth=6, activation="relu", init="uniform", init_scale=2.0)
    history = train(model, data, steps=20, lr=1.0, stop_at_nonfinite=False)
    assert history.steps == 20 and history.diverged and not history.stopped_early


def test_clipping_bounds_the_norm_after_clipping():
    data = teacher_regression(128, 8, seed=0)
    model = DeepMLP(8, 1, width=32, depth=6, activation="relu", init="uniform", init_scale=0.5)
    history = train(model, data, steps=10, lr=1e-4, clip_norm=1.0)
    assert max(history.global_norm) > 1.0
    assert all(c <= 1.0 + 1e-4 for c in history.clipped_norm)


def test_bad_arguments():
    data = digits(limit=100)
    model = DeepMLP(64, 10, width=8, depth=2)
    with pytest.raises(ValueError, match="steps"):
        train(model, data, steps=0, lr=0.1)
    with pytest.raises(ValueError, match="clip_norm"):
        train(model, data, steps=1, lr=0.1, clip_norm=-1)
    with pytest.raises(ValueError, match="valid choices"):
        make_optimizer("lion", list(model.parameters()), 0.1)
    with pytest.raises(ValueError, match="positive"):
        make_optimizer("sgd", list(model.parameters()), 0.0)


def test_data_sets():
    d = digits()
    assert d.x.shape == (1797, 64) and d.outputs == 10 and d.task == "classification"
    train_set, test_set = d.split(0.25, seed=0)
    assert len(train_set) + len(test_set) == len(d)
    r = teacher_regression(32, 4)
    assert r.outputs == 1 and r.y.shape == (32, 1)
    with pytest.raises(ValueError, match="valid choices"):
        type(d)(d.x, d.y, "ranking")
    with pytest.raises(ValueError):
        d.split(1.5)


def test_run_length_checks_name_the_problem():
    from gradpath.training import check_run_length

    check_run_length(10, 10)
    with pytest.raises(ValueError, match="steps"):
        check_run_length(0)
    with pytest.raises(ValueError, match="checkpoints"):
        check_run_length(10, 11)
    with pytest.raises(ValueError, match="checkpoints"):
        check_run_length(10, 0)
