"""Tests for gradpath.experiments.symptoms, plus regressions in the probes chapter 2 relies on."""

from __future__ import annotations

import math

import pytest
import torch
from gradpath.activations import derivative
from gradpath.data import digits
from gradpath.diagnosis import diagnose_gradients
from gradpath.experiments.symptoms import (
    SymptomReport,
    chance_loss,
    relative_weight_change,
    second_half_improvement,
    signal_spread_by_layer,
    spread_across_examples,
    update_to_data_ratios,
    vanishing_symptoms,
    weight_snapshot,
)
from gradpath.models import DeepMLP
from gradpath.probes import activation_statistics
from gradpath.training import TrainingHistory, train


def _model(depth: int = 4, activation: str = "sigmoid", **kwargs: object) -> DeepMLP:
    return DeepMLP(6, 3, width=8, depth=depth, activation=activation,
                   generator=torch.Generator().manual_seed(0), **kwargs)  # type: ignore[arg-type]


# --- spread across examples ------------------------------------------------------------------

def test_spread_is_zero_for_identical_rows_and_exact_otherwise() -> None:
    same = torch.full((5, 3), 0.5)
    assert spread_across_examples(same) == 0.0
    two_rows = torch.tensor([[0.0, 1.0], [2.0, 1.0]])  # column stds: sqrt(2) and 0
    assert spread_across_examples(two_rows) == pytest.approx(math.sqrt(2) / 2)


@pytest.mark.parametrize("shape", [(4,), (1, 3), (2, 3, 4)])
def test_spread_rejects_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="batch"):
        spread_across_examples(torch.zeros(shape))


def test_signal_spread_fades_with_tiny_weights_but_not_with_xavier_tanh() -> None:
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(1))
    tiny = signal_spread_by_layer(_model(depth=8, activation="tanh", init="uniform",
                                         init_scale=0.01), x)
    healthy = signal_spread_by_layer(_model(depth=8, activation="tanh", init="xavier_normal"), x)
    assert len(tiny) == len(healthy) == 7
    assert all(b < a for a, b in zip(tiny, tiny[1:], strict=False))  # shrinks layer by layer
    assert tiny[-1] < 1e-6 * tiny[0]
    assert healthy[-1] > 0.1 * healthy[0]


# --- weight change -----------------------------------------------------------------------------

def test_snapshot_is_a_copy_and_change_starts_at_zero() -> None:
    model = _model()
    snapshot = weight_snapshot(model)
    assert len(snapshot) == len(model.weight_layers())
    assert relative_weight_change(snapshot, model) == [0.0] * len(snapshot)
    with torch.no_grad():
        model.weight_layers()[0].weight.add_(1.0)
    assert not torch.equal(snapshot[0], model.weight_layers()[0].weight)


def test_relative_change_is_exact_per_layer() -> None:
    model = _model()
    snapshot = weight_snapshot(model)
    with torch.no_grad():
        model.head.weight.mul_(1.5)                       # last layer moves by 50 %
    change = relative_weight_change(snapshot, model)
    assert change[-1] == pytest.approx(0.5, rel=1e-6)
    assert change[:-1] == [0.0] * (len(change) - 1)


def test_relative_change_of_a_zero_layer() -> None:
    model = _model()
    with torch.no_grad():
        model.head.weight.zero_()
    snapshot = weight_snapshot(model)
    assert relative_weight_change(snapshot, model)[-1] == 0.0
    with torch.no_grad():
        model.head.weight.fill_(0.1)
    assert relative_weight_change(snapshot, model)[-1] == math.inf


def test_relative_change_rejects_a_foreign_snapshot() -> None:
    with pytest.raises(ValueError, match="layers"):
        relative_weight_change(weight_snapshot(_model(depth=3)), _model(depth=4))
    wrong_shape = weight_snapshot(_model())
    wrong_shape[0] = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="shape"):
        relative_weight_change(wrong_shape, _model())


# --- loss plateau and late progress ------------------------------------------------------------

def test_chance_loss() -> None:
    assert chance_loss(10) == pytest.approx(2.302585, abs=1e-6)
    assert chance_loss(2) == pytest.approx(math.log(2))
    for bad in (1, 0, 2.5):
        with pytest.raises(ValueError, match="classes"):
            chance_loss(bad)  # type: ignore[arg-type]


def test_second_half_improvement_values() -> None:
    assert second_half_improvement([2.0] * 100) == 0.0
    falling = [100.0 - i for i in range(100)]            # falls by 1 per step
    # middle window: steps 45..54 (mean loss 50.5); last window: steps 90..99 (mean loss 5.5)
    assert second_half_improvement(falling) == pytest.approx(45.0 / 50.5)
    # window 2: steps 49, 50 (mean loss 50.5) against steps 98, 99 (mean loss 1.5)
    assert second_half_improvement(falling, window=2) == pytest.approx(49.0 / 50.5)
    rising = [float(i) for i in range(20)]
    assert second_half_improvement(rising) < 0
    assert second_half_improvement([0.0] * 10) == 0.0


def test_second_half_improvement_reports_nonfinite_and_rejects_bad_input() -> None:
    assert math.isnan(second_half_improvement([1.0] * 19 + [math.nan]))
    with pytest.raises(ValueError, match="at least 4"):
        second_half_improvement([1.0, 1.0, 1.0])
    for bad in (0, 51, 2.0):
        with pytest.raises(ValueError, match="window"):
            second_half_improvement([1.0] * 100, window=bad)  # type: ignore[arg-type]


def _history(losses: list[float]) -> TrainingHistory:
    return TrainingHistory(loss=losses)


def test_report_fires_all_three_symptoms_on_a_stuck_run() -> None:
    model = _model()
    snapshot = weight_snapshot(model)
    with torch.no_grad():
        model.head.weight.mul_(1.2)                       # only the last layer learns
    report = vanishing_symptoms(_history([math.log(3)] * 50), snapshot, model, classes=3)
    assert report.early_layers_frozen and report.stuck_at_chance and report.no_late_progress
    assert report.vanishing_likely
    assert len(report.symptoms) == 3
    assert report.first_to_last_change == 0.0


def test_report_stays_quiet_on_a_healthy_run() -> None:
    model = _model()
    snapshot = weight_snapshot(model)
    with torch.no_grad():
        for layer in model.weight_layers():
            layer.weight.mul_(1.3)                        # every layer learns alike
    losses = [2.0 * 0.97 ** i for i in range(60)]
    report = vanishing_symptoms(_history(losses), snapshot, model, classes=10)
    assert report.first_to_last_change == pytest.approx(1.0, rel=1e-5)
    assert not report.early_layers_frozen
    assert not report.stuck_at_chance
    assert not report.no_late_progress
    assert report.symptoms == [] and not report.vanishing_likely


def test_report_handles_regression_and_divergence() -> None:
    report = SymptomReport(weight_change=[0.1, 0.1], final_loss=math.nan, chance_loss=None,
                           late_improvement=math.nan)
    assert not report.stuck_at_chance and not report.no_late_progress
    assert math.isnan(SymptomReport([0.0, 0.0], 1.0, None, 0.0).first_to_last_change)


def test_vanishing_symptoms_validates() -> None:
    model = _model()
    with pytest.raises(ValueError, match="empty"):
        vanishing_symptoms(_history([]), weight_snapshot(model), model, classes=3)
    with pytest.raises(ValueError, match="frozen_ratio"):
        vanishing_symptoms(_history([1.0] * 8), weight_snapshot(model), model, classes=3,
                           frozen_ratio=0)


def test_deep_sigmoid_shows_the_symptoms_and_shallow_does_not() -> None:
    """The real thing, small: a deep sigmoid net on digits is stuck, a shallow one learns."""
    torch.manual_seed(0)
    data = digits(limit=400)
    reports = {}
    for depth in (3, 10):
        model = DeepMLP(data.features, 10, width=32, depth=depth, activation="sigmoid",
                        generator=torch.Generator().manual_seed(0))
        snapshot = weight_snapshot(model)
        history = train(model, data, steps=120, lr=1.0, batch_size=64)
        reports[depth] = vanishing_symptoms(history, snapshot, model, classes=10)
    assert reports[10].vanishing_likely, reports[10]
    assert reports[10].first_to_last_change < 1e-4
    assert not reports[3].early_layers_frozen
    assert not reports[3].stuck_at_chance
    assert reports[3].final_loss < reports[10].final_loss - 0.5


# --- regressions in existing modules that chapter 2 relies on ----------------------------------

def test_activation_statistics_works_for_sigmoid_models() -> None:
    # derivative() used to fail under activation_statistics' torch.no_grad().
    model = _model(activation="sigmoid", init="uniform", init_scale=4.0)
    stats = activation_statistics(model, torch.randn(32, 6))
    assert len(stats) == 3
    assert all(0.0 <= s.saturated_fraction <= 1.0 for s in stats)
    assert max(s.saturated_fraction for s in stats) > 0.1   # huge weights saturate
    with torch.no_grad():
        assert float(derivative("sigmoid", torch.tensor(0.0))) == pytest.approx(0.25)


def test_diagnosis_of_an_underflowed_first_layer() -> None:
    # A first-layer norm of exactly 0 (float32 underflow) used to raise ZeroDivisionError.
    result = diagnose_gradients([0.0, 1e-3, 0.3])
    assert result.verdict == "vanishing"
    assert result.first_to_last_ratio == 0.0
    assert any("inf×" in reason for reason in result.reasons)


# --- update-to-data ratio --------------------------------------------------------------------

def test_update_to_data_ratio_is_the_relative_step_of_sgd() -> None:
    data = digits()
    torch.manual_seed(0)                 # PyTorch's default initialization draws from it
    model = DeepMLP(data.features, data.outputs, width=8, depth=3, activation="sigmoid",
                    generator=torch.Generator().manual_seed(0))
    before = weight_snapshot(model)
    history = train(model, data, steps=3, lr=0.5, batch_size=32)
    ratios = update_to_data_ratios(history, 0.5, before)
    assert len(ratios) == 3 and len(ratios[0]) == 3          # steps × weight layers
    # step 0 moved every layer by lr·g: the ratio is exactly ‖ΔW‖ / ‖W before‖
    torch.manual_seed(0)
    replay = DeepMLP(data.features, data.outputs, width=8, depth=3, activation="sigmoid",
                     generator=torch.Generator().manual_seed(0))
    one = weight_snapshot(replay)
    train(replay, data, steps=1, lr=0.5, batch_size=32)
    after = weight_snapshot(replay)
    for r, w0, w1 in zip(ratios[0], one, after, strict=True):
        assert math.isclose(r, float((w1 - w0).norm() / w0.norm()), rel_tol=1e-4)
    # scale-free: the same run with the loss ×1000 and the lr ÷1000 gives the same ratios
    scaled = TrainingHistory(loss=history.loss,
                             gradient_norms=[[1000 * g for g in row]
                                             for row in history.gradient_norms],
                             global_norm=[1000 * g for g in history.global_norm],
                             clipped_norm=[1000 * g for g in history.clipped_norm],
                             weight_norms=history.weight_norms)
    again = update_to_data_ratios(scaled, 0.5 / 1000, before)
    assert all(math.isclose(a, b, rel_tol=1e-9) for ra, rb in zip(ratios, again, strict=True)
               for a, b in zip(ra, rb, strict=True))


def test_update_to_data_ratio_accounts_for_clipping_and_validates() -> None:
    history = TrainingHistory(loss=[1.0], gradient_norms=[[3.0, 4.0]], global_norm=[5.0],
                              clipped_norm=[1.0], weight_norms=[[2.0, 2.0]])
    before = [torch.full((2, 2), 1.0), torch.full((1, 4), 0.5)]       # norms 2 and 1
    assert update_to_data_ratios(history, 0.1, before) == [[pytest.approx(0.1 * 0.2 * 3 / 2),
                                                            pytest.approx(0.1 * 0.2 * 4 / 1)]]
    with pytest.raises(ValueError, match="lr"):
        update_to_data_ratios(history, 0.0, before)
    with pytest.raises(ValueError, match="layers"):
        update_to_data_ratios(history, 0.1, before[:1])
    with pytest.raises(ValueError, match="empty"):
        update_to_data_ratios(TrainingHistory(), 0.1, before)
