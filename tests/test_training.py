import math

import numpy as np
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


class _SqrtHead(torch.nn.Module):
    """sqrt(|W x|) with W = 0: a finite loss whose gradient is inf·0 = nan (d sqrt/dz at 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1, bias=False)
        torch.nn.init.zeros_(self.linear.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).abs().sqrt()


def test_a_nonfinite_gradient_with_a_finite_loss_is_recorded_as_such():
    data = teacher_regression(16, 4, seed=0)
    history = train(_SqrtHead(), data, steps=5, lr=0.1)
    assert math.isfinite(history.loss[0])
    assert history.first_nonfinite_gradient_step == 0
    assert history.first_nonfinite_loss_step is None
    assert history.first_nonfinite_step == 0 and history.stopped_early and history.steps == 1
    assert "gradient first non-finite at step 0" in history.summary()
    assert "loss finite throughout" in history.summary()


def test_loss_and_gradient_steps_are_recorded_separately_and_match_the_records():
    data = teacher_regression(64, 4, seed=0)
    model = DeepMLP(4, 1, width=16, depth=6, activation="relu", init="uniform", init_scale=2.0,
                    generator=torch.Generator().manual_seed(0))
    history = train(model, data, steps=30, lr=1.0, stop_at_nonfinite=False)
    loss_step = history.first_nonfinite_loss_step
    grad_step = history.first_nonfinite_gradient_step
    assert loss_step is not None and grad_step is not None
    assert all(math.isfinite(v) for v in history.loss[:loss_step])
    assert not math.isfinite(history.loss[loss_step])
    assert all(math.isfinite(v) for v in history.global_norm[:grad_step])
    assert not math.isfinite(history.global_norm[grad_step])
    assert history.first_nonfinite_step == min(loss_step, grad_step)


def _diverging_run(**kwargs):
    data = teacher_regression(128, 8, seed=0)
    model = DeepMLP(8, 1, width=32, depth=6, activation="relu", init="uniform", init_scale=1.0,
                    generator=torch.Generator().manual_seed(0))
    return train(model, data, steps=40, lr=0.05, batch_size=32, **kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"clip_norm": 1.0}, {"clip_value": 0.01},
                                    {"stop_at_nonfinite": False}])
def test_record_every_records_the_same_history(kwargs):
    a = _diverging_run(**kwargs)
    b = _diverging_run(record_every=7, **kwargs)
    assert a.steps == b.steps and a.stopped_early == b.stopped_early
    assert a.first_nonfinite_loss_step == b.first_nonfinite_loss_step
    assert a.first_nonfinite_gradient_step == b.first_nonfinite_gradient_step
    for name in ("loss", "global_norm", "clipped_norm"):
        assert np.allclose(getattr(a, name), getattr(b, name), rtol=1e-5, equal_nan=True), name
    assert np.allclose(a.gradient_norm_matrix(), b.gradient_norm_matrix(), rtol=1e-5,
                       equal_nan=True)
    assert np.allclose(a.weight_norm_matrix(), b.weight_norm_matrix(), rtol=1e-5, equal_nan=True)


def test_train_clips_exactly_like_clip_grad_norm_in_float32_range():
    data = teacher_regression(128, 8, seed=0)

    def model():
        return DeepMLP(8, 1, width=32, depth=4, activation="relu", init="uniform",
                       init_scale=0.5, generator=torch.Generator().manual_seed(0))

    history = train(ours := model(), data, steps=5, lr=1e-3, clip_norm=1.0)
    theirs = model()
    opt = torch.optim.SGD(theirs.parameters(), lr=1e-3)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.mse_loss(theirs(data.x), data.y).backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        opt.step()
    assert max(history.global_norm) > 1.0
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7)


def test_weight_norms_are_after_each_update():
    data = teacher_regression(64, 4, seed=0)
    model = DeepMLP(4, 1, width=8, depth=3, generator=torch.Generator().manual_seed(0))
    history = train(model, data, steps=3, lr=0.1)
    assert len(history.weight_norms) == 3
    now = [layer.weight.norm().item() for layer in model.weight_layers()]
    assert history.weight_norms[-1] == pytest.approx(now, rel=1e-6)
    with pytest.raises(ValueError, match="record_every"):
        train(model, data, steps=3, lr=0.1, record_every=0)


def test_large_layers_fast_path_matches_the_exact_device_path():
    data = teacher_classification(256, 128, 4, seed=0)

    def run(**kwargs):
        model = DeepMLP(128, 4, width=128, depth=4, activation="relu", init="he_normal",
                        generator=torch.Generator().manual_seed(0))
        return train(model, data, steps=6, lr=0.05, batch_size=32, **kwargs)

    fast, exact = run(), run(record_every=3)   # float32 + checks / float64 on the device
    assert np.allclose(fast.gradient_norm_matrix(), exact.gradient_norm_matrix(), rtol=1e-5)
    assert np.allclose(fast.weight_norm_matrix(), exact.weight_norm_matrix(), rtol=1e-5)
    assert np.allclose(fast.global_norm, exact.global_norm, rtol=1e-5)
