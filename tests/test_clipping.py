"""Tests for experiments.clipping, and for the clipping options of gradpath.training.train."""

from __future__ import annotations

import math

import pytest
import torch
from gradpath.data import teacher_regression
from gradpath.experiments.clipping import (
    clip_by_norm,
    clip_by_value,
    clipped_fraction,
    cosine,
    flat_gradient,
    plot_clipping,
    suggest_threshold,
    threshold_sweep,
)
from gradpath.models import DeepMLP
from gradpath.training import TrainingHistory, train


def _model(seed: int = 0, init: str = "he_normal", scale: float | None = None) -> DeepMLP:
    return DeepMLP(8, 1, width=16, depth=4, activation="relu", init=init, init_scale=scale,
                   generator=torch.Generator().manual_seed(seed))


def _model_with_gradient(multiplier: float = 1.0, seed: int = 0) -> DeepMLP:
    data = teacher_regression(64, 8, seed=seed)
    model = _model(seed)
    (multiplier * torch.nn.functional.mse_loss(model(data.x), data.y)).backward()
    return model


def _twins(multiplier: float) -> tuple[DeepMLP, DeepMLP]:
    return _model_with_gradient(multiplier), _model_with_gradient(multiplier)


def test_norm_clipping_keeps_the_direction_and_value_clipping_turns_it():
    model = _model_with_gradient(100.0)
    g = flat_gradient(model)
    by_norm, by_value = _model_with_gradient(100.0), _model_with_gradient(100.0)
    torch.nn.utils.clip_grad_norm_(by_norm.parameters(), 0.1)
    torch.nn.utils.clip_grad_value_(by_value.parameters(), 0.01)
    assert cosine(g, flat_gradient(by_norm)) > 1 - 1e-6
    assert cosine(g, flat_gradient(by_value)) < 0.99
    assert float(flat_gradient(by_value).abs().max()) <= 0.01


def test_vector_helpers():
    g = torch.tensor([3.0, 0.5])
    assert torch.allclose(clip_by_norm(g, 1.0).norm(), torch.tensor(1.0))
    assert math.isclose(cosine(g, clip_by_norm(g, 1.0)), 1.0, rel_tol=1e-9)
    assert torch.equal(clip_by_norm(g, 10.0), g)                 # short vectors pass untouched
    assert torch.equal(clip_by_value(g, 1.0), torch.tensor([1.0, 0.5]))
    assert cosine(g, clip_by_value(g, 1.0)) < 0.96               # the angle moved
    with pytest.raises(ValueError, match="zero vector"):
        cosine(g, torch.zeros(2))
    with pytest.raises(ValueError, match="length"):
        cosine(g, torch.ones(3))


def test_clipping_validates_and_needs_gradients():
    model = _model()
    with pytest.raises(RuntimeError, match="backward"):
        flat_gradient(model)
    with pytest.raises(ValueError, match="max_norm"):
        clip_by_norm(torch.ones(2), -1.0)
    with pytest.raises(ValueError, match="clip_value"):
        clip_by_value(torch.ones(2), 0.0)


def test_nonfinite_gradient_poisons_norm_clipping_unless_torch_is_asked_to_raise():
    model = _model_with_gradient()
    first = next(model.parameters())
    first.grad[0, 0] = math.inf
    total = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    assert math.isinf(float(total))
    assert not torch.isfinite(first.grad).all()                   # inf × 0 = nan
    other = _model_with_gradient()
    next(other.parameters()).grad[0, 0] = math.nan
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_(other.parameters(), 1.0, error_if_nonfinite=True)


# --- the training loop's clipping options -----------------------------------------------------


def test_train_records_the_norm_before_clipping_and_clips_to_the_threshold():
    data = teacher_regression(128, 8, seed=0)
    history = train(_model(), data, steps=30, lr=0.01, clip_norm=0.5, batch_size=32)
    assert max(history.global_norm) > 0.5
    assert all(after <= 0.5 * (1 + 1e-4) for after in history.clipped_norm)
    for before, after in zip(history.global_norm, history.clipped_norm, strict=True):
        assert math.isclose(after, min(before, 0.5), rel_tol=1e-4)
    assert clipped_fraction(history) > 0


def test_train_with_clip_value_bounds_every_entry_but_not_the_norm_to_the_value():
    """One full-batch SGD step with clip_value=c, redone by hand: the update uses the gradient
    clamped entry by entry to [-c, c] (so some entries sit exactly at +-c and the direction
    turns), and the recorded norm after clipping is that clamped gradient's norm, which is
    far above c (value clipping does not bound the norm to c)."""
    data = teacher_regression(128, 8, seed=0)
    c, lr = 0.01, 0.1
    reference = _model()
    torch.nn.functional.mse_loss(reference(data.x), data.y).backward()
    before = [p.detach().clone() for p in reference.parameters()]
    grads = [p.grad.detach().clone() for p in reference.parameters()]
    clamped = [g.clamp(-c, c) for g in grads]
    flat, flat_clamped = torch.cat([g.reshape(-1) for g in grads]), torch.cat(
        [g.reshape(-1) for g in clamped])
    assert (flat.abs() > c).sum() > 10 and (flat.abs() < c).sum() > 10   # both kinds of entry

    model = _model()
    history = train(model, data, steps=1, lr=lr, clip_value=c)
    assert history.global_norm[0] == pytest.approx(float(flat.double().norm()), rel=1e-5)
    assert history.clipped_norm[0] == pytest.approx(float(flat_clamped.double().norm()),
                                                    rel=1e-5)
    assert history.clipped_norm[0] > 10 * c                  # the norm is not clipped to c
    for p, w0, g in zip(model.parameters(), before, clamped, strict=True):
        torch.testing.assert_close(p.detach(), w0 - lr * g, rtol=0, atol=1e-7)
    # the update moved every clamped entry by exactly lr * c
    step = torch.cat([(w0 - p.detach()).reshape(-1)
                      for p, w0 in zip(model.parameters(), before, strict=True)])
    big = flat.abs() > c
    torch.testing.assert_close(step[big].abs(), torch.full_like(step[big], lr * c),
                               rtol=1e-4, atol=0)


def test_clipping_rescues_a_diverging_run():
    data = teacher_regression(256, 8, seed=0)
    free = train(_model(), data, steps=100, lr=0.3, batch_size=64, stop_at_nonfinite=False)
    clipped = train(_model(), data, steps=100, lr=0.3, batch_size=64, clip_norm=1.0)
    assert free.diverged
    assert not clipped.diverged and clipped.final_loss() < clipped.loss[0]


def test_clipping_does_not_fix_a_too_large_initialization():
    data = teacher_regression(256, 8, seed=0)
    bad = train(_model(init="uniform", scale=2.0), data, steps=50, lr=0.01, clip_norm=1.0)
    good = train(_model(), data, steps=50, lr=0.01)
    assert not bad.diverged
    assert bad.final_loss() > 100 * good.final_loss()


def test_without_clipping_before_and_after_are_equal():
    data = teacher_regression(64, 8, seed=0)
    history = train(_model(), data, steps=5, lr=0.01)
    assert history.global_norm == history.clipped_norm
    assert clipped_fraction(history) == 0


def test_clipped_fraction_and_suggest_threshold():
    history = TrainingHistory(global_norm=[1.0, 5.0, math.inf, 2.0],
                              clipped_norm=[1.0, 2.0, math.inf, 2.0])
    assert clipped_fraction(history) == 0.5
    assert suggest_threshold([1.0, 2.0, 3.0, math.nan, math.inf]) == 2.0
    assert suggest_threshold([1.0, 2.0, 3.0, 4.0, 5.0], quantile=1.0) == 5.0
    with pytest.raises(ValueError, match="quantile"):
        suggest_threshold([1.0], quantile=0.0)
    with pytest.raises(ValueError, match="finite"):
        suggest_threshold([math.nan, 0.0])
    with pytest.raises(ValueError, match="empty"):
        clipped_fraction(TrainingHistory())


def test_threshold_sweep_trains_once_per_threshold():
    data = teacher_regression(64, 8, seed=0)
    runs = threshold_sweep(_model, data, [None, 0.1], steps=5, lr=0.01)
    assert list(runs) == [None, 0.1]
    assert runs[None].global_norm == runs[None].clipped_norm
    assert max(runs[0.1].clipped_norm) <= 0.1 * (1 + 1e-4)
    with pytest.raises(ValueError, match="thresholds"):
        threshold_sweep(_model, data, [], steps=5, lr=0.01)
    with pytest.raises(ValueError, match="clip_norm"):
        threshold_sweep(_model, data, [1.0], steps=5, lr=0.01, clip_norm=1.0)


def test_plot_clipping_draws_both_series_and_the_threshold():
    import matplotlib.pyplot as plt

    data = teacher_regression(64, 8, seed=0)
    history = train(_model(), data, steps=5, lr=0.01, clip_norm=0.1)
    ax = plot_clipping(history, 0.1)
    labels = [line.get_label() for line in ax.get_lines()]
    assert any("before" in s for s in labels) and any("after" in s for s in labels)
    assert any("threshold" in s for s in labels)
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="threshold"):
        plot_clipping(history, 0.0)
