"""The doctor's rules, one at a time, on hand-made measurements (no model, no training).

``apply_rules`` reads only a :class:`Report`'s arrays, so each rule of the table in
``gradpath.doctor``'s docstring is tested here alone and at its threshold's edge (at the limit,
where it must not fire, and just past it), with the finding's fields and its text exactly. The
base report is healthy: every layer's gradient norm 1, output RMS 1, update ratio 1e-3, no
clipping, nothing dead or saturated; each test changes one thing. The layers differ where a rule
must read a particular one (the first, the last, the worst), so a rule reading a neighbour fails.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from gradpath.doctor import CHAPTERS, KINDS, Finding, Report, _fmt, apply_rules

UP, DOWN = math.inf, 0.0
NAN = math.nan

FIX = {
    "vanishing": "use a non-saturating activation (ReLU family) with He initialization, add "
                 "normalization or residual connections; in a recurrent net use an LSTM or GRU",
    "exploding": "scale the initialization to the fan-in (He for ReLU, Glorot for tanh), add "
                 "normalization, lower the learning rate, or clip the gradient norm",
    "dead_units": "lower the learning rate, use He initialization with zero biases, or use an "
                  "activation that keeps a gradient below zero (Leaky ReLU, GELU)",
    "saturation": "shrink the pre-activations: Glorot/Xavier initialization, normalized inputs, a "
                  "normalization layer before the activation, or a ReLU-family activation",
    "update_high": "lower the learning rate (each step rewrites a large part of the weights)",
    "update_low": "raise the learning rate, or fix the vanishing gradient that starves these "
                  "layers (the weights barely move)",
    "loss_scale": "scale the loss with torch.amp.GradScaler (or train in bfloat16, whose range is "
                  "float32's)",
    "skipped": "something overflows float16 even unscaled: find it (see nonfinite), keep that op "
               "in float32, or train in bfloat16",
}


def _after(x: float) -> float:
    return math.nextafter(x, UP)


def _before(x: float) -> float:
    return math.nextafter(x, DOWN)


def _report(layers: tuple[str, ...] = ("a", "b", "c"), *, steps: int = 8,
            sample_steps: list[int] | None = None, **fields: object) -> Report:
    """A healthy report of ``steps`` steps, every step sampled; ``fields`` replace its arrays."""
    n = len(layers)
    samples = list(range(steps)) if sample_steps is None else sample_steps
    s = len(samples)
    global_norm = np.asarray(fields.pop("global_norm", np.ones(steps)), dtype=float)
    base: dict[str, object] = dict(
        model="Toy", layers=list(layers), layer_types=["Linear"] * n, layer_sizes=[10] * n,
        loss=np.ones(steps), global_norm=global_norm, gradient_norms=np.ones((steps, n)),
        sample_steps=samples, activation_rms=np.ones((s, n)),
        update_ratio=np.full((s, n), 1e-3),
        optimizer_norm=np.array([global_norm[t] if t < steps else 1.0 for t in samples]),
        dead={}, saturated={}, zero_fraction=np.full((s, n), NAN), time_growth={},
        loss_scale=np.full(steps, NAN), skipped_steps=[], first_nonfinite_loss_step=None,
        first_nonfinite_gradient_step=None, notes=[])
    for key, value in fields.items():
        assert key in base, key
        arrays = key in ("loss", "gradient_norms", "activation_rms", "update_ratio",
                         "optimizer_norm", "zero_fraction", "loss_scale")
        base[key] = np.asarray(value, dtype=float) if arrays else value
    return Report(**base)  # type: ignore[arg-type]


def _one(report: Report, kind: str, **kw: object) -> Finding:
    findings = apply_rules(report, **kw)  # type: ignore[arg-type]
    assert [f.kind for f in findings] == [kind], findings
    return findings[0]


def _grads(rows: dict[int, list[float]], steps: int = 8, n: int = 3) -> np.ndarray:
    g = np.ones((steps, n))
    g[:, 1] = 7.0                          # the middle layer differs from the first and last
    for t, row in rows.items():
        g[t] = row
    return g


def test_the_base_report_is_healthy() -> None:
    assert apply_rules(_report()) == []
    assert apply_rules(_report(gradient_norms=_grads({}))) == []


# ------------------------------------------------------------------------------------------------
# vanishing and exploding: the gradient ratio of the input-side layer to the output-side one
# ------------------------------------------------------------------------------------------------

def test_gradient_ratio_below_the_limit_on_a_quarter_of_the_steps_is_vanishing() -> None:
    tiny = 5e-4
    finding = _one(_report(gradient_norms=_grads({2: [tiny, 7, 1], 5: [tiny, 7, 1]})),
                   "vanishing")
    assert finding == Finding(
        "vanishing", "a",
        "the gradient norm of 'a' (input side) is below 0.001× that of 'c' (output side) on 2 "
        "of 8 steps (median there 5.00e-04×, over the run 1.00e+00×); rule: below 0.001 on at "
        "least 25% of the steps", FIX["vanishing"],
        "Gradient Flow, chapter 2: Vanishing gradients (chapters/02-vanishing-gradients)", None)


def test_gradient_ratio_rule_edges() -> None:
    # one step of eight is below a quarter: nothing
    assert apply_rules(_report(gradient_norms=_grads({2: [5e-4, 7, 1]}))) == []
    # exactly the limit on every step is not below it; the next float down is
    at = _grads({t: [1e-3, 7, 1] for t in range(8)})
    assert apply_rules(_report(gradient_norms=at)) == []
    below = _grads({t: [_before(1e-3), 7, 1] for t in range(8)})
    assert "on 8 of 8 steps" in _one(_report(gradient_norms=below), "vanishing").evidence
    # the same for exploding, above 1000
    assert apply_rules(_report(gradient_norms=_grads({t: [1e3, 7, 1] for t in range(8)}))) == []
    above = _grads({t: [_after(1e3), 7, 1] for t in range(8)})
    assert _one(_report(gradient_norms=above), "exploding").where == "a"


def test_gradient_ratio_above_the_limit_is_exploding_with_its_text() -> None:
    finding = _one(_report(gradient_norms=_grads({0: [3000, 7, 1], 1: [2000, 7, 1]})),
                   "exploding")
    assert finding == Finding(
        "exploding", "a",
        "the gradient norm of 'a' (input side) is above 1000× that of 'c' (output side) on 2 of "
        "8 steps (median there 2.50e+03×, over the run 1.00e+00×); rule: above 1000 on at least "
        "25% of the steps", FIX["exploding"],
        "Gradient Flow, chapter 3: Exploding gradients (chapters/03-exploding-gradients)", None)


def test_gradient_ratio_uses_the_first_and_last_layers_that_have_a_gradient() -> None:
    g = np.ones((8, 4))
    g[:, 0] = NAN                          # 'a' never had a gradient; 'd' neither
    g[:, 3] = NAN
    g[:, 2] = 1e4                          # ratio b/c = 1e-4 on every step
    finding = _one(_report(("a", "b", "c", "d"), gradient_norms=g), "vanishing")
    assert finding.where == "b"
    assert finding.evidence.startswith("the gradient norm of 'b' (input side) is below 0.001× "
                                       "that of 'c' (output side) on 8 of 8 steps")


def test_gradient_ratio_needs_two_layers_and_counts_only_finite_steps() -> None:
    # two layers suffice
    g = np.ones((8, 2))
    g[:3, 0] = 1e-4
    assert _one(_report(("a", "b"), gradient_norms=g), "vanishing").where == "a"
    # a single layer has no ratio
    assert apply_rules(_report(("a",), gradient_norms=np.full((8, 1), 1e-9))) == []
    # steps with a non-finite loss or global norm are left out, and so are steps where the
    # output-side norm is 0 (no ratio)
    rows = {t: [1e-4, 7, 1] for t in range(6)}
    loss = np.ones(8)
    loss[:3] = NAN
    glob = np.ones(8)
    glob[3:6] = math.inf
    assert apply_rules(_report(gradient_norms=_grads(rows), loss=loss, global_norm=glob,
                               optimizer_norm=np.ones(8))) == []
    last_zero = _grads({t: [1e-4, 7, 0.0] for t in range(6)} | {6: [1e-4, 7, 1]})
    finding = _one(_report(gradient_norms=last_zero), "vanishing")
    assert "on 1 of 2 steps (median there 1.00e-04×, over the run 5.00e-01×)" in finding.evidence


# ------------------------------------------------------------------------------------------------
# vanishing and exploding: the forward signal (output RMS of the last layer over the first)
# ------------------------------------------------------------------------------------------------

def test_a_fading_forward_signal_names_the_layer_of_the_smallest_gain() -> None:
    rms = np.ones((8, 3))
    rms[[1, 6]] = [1.0, 5e-4, 4e-4]
    finding = _one(_report(activation_rms=rms), "vanishing")
    assert finding.where == "b"
    assert finding.evidence == (
        "the forward signal fades: output RMS 4.00e-04 at 'c' vs 1.00e+00 at 'a' (×0.02 per "
        "layer; the smallest gain, ×0.0005, at 'b'), on 2 of 8 samples; rule: ratio below 0.001 "
        "on at least 25% of them")


def test_a_growing_forward_signal_names_the_layer_of_the_largest_gain() -> None:
    rms = np.ones((8, 3))
    rms[[0, 7]] = [1.0, 2000.0, 2500.0]
    finding = _one(_report(activation_rms=rms), "exploding")
    assert finding.where == "b"
    assert finding.evidence == (
        "the forward signal grows: output RMS 2.50e+03 at 'c' vs 1.00e+00 at 'a' (×50 per "
        "layer; the largest gain, ×2e+03, at 'b'), on 2 of 8 samples; rule: ratio above 1000 on "
        "at least 25% of them")
    rms[[0, 7]] = [1.0, 0.5, 1250.0]       # now the largest gain is the last layer's
    assert _one(_report(activation_rms=rms), "exploding").where == "c"


def test_forward_signal_rule_edges() -> None:
    rms = np.ones((8, 3))
    rms[3] = [1.0, 0.1, 1e-4]              # one sample of eight: nothing
    assert apply_rules(_report(activation_rms=rms)) == []
    at = np.tile([2.0, 1.0, 2e-3], (8, 1))  # exactly 1e-3 is not below it
    assert apply_rules(_report(activation_rms=at)) == []
    at[:, 2] = _before(2e-3)
    assert _one(_report(activation_rms=at), "vanishing").where == "c"
    at = np.tile([1.0, 100.0, 1e3], (8, 1))  # exactly 1000 is not above it
    assert apply_rules(_report(activation_rms=at)) == []
    at[:, 2] = _after(1e3)
    assert _one(_report(activation_rms=at), "exploding").where == "b"


def test_forward_signal_counts_measured_samples_and_layers_only() -> None:
    rms = np.full((8, 4), NAN)               # six samples not measured, 'd' never measured
    rms[[2, 5], :3] = [1.0, 0.02, 1e-4]
    finding = _one(_report(("a", "b", "c", "d"), activation_rms=rms), "vanishing")
    assert finding.where == "c"
    assert finding.evidence.startswith("the forward signal fades: output RMS 1.00e-04 at 'c' vs "
                                       "1.00e+00 at 'a' (×0.01 per layer; the smallest gain, "
                                       "×0.005, at 'c'), on 2 of 2 samples")
    rms = np.ones((8, 2))
    rms[:2, 1] = 1e-5                        # two measured layers suffice
    assert _one(_report(("a", "b"), activation_rms=rms), "vanishing").where == "b"


def test_a_forward_signal_from_zero_grows_without_bound() -> None:
    rms = np.ones((8, 3))
    rms[:2, 0] = 0.0                         # the first layer's output is 0: the growth is inf
    finding = _one(_report(activation_rms=rms), "exploding")
    assert finding.where == "b"
    assert finding.evidence.startswith("the forward signal grows: output RMS 1.00e+00 at 'c' vs "
                                       "0.00e+00 at 'a' (×inf per layer; the largest gain, ×inf, "
                                       "at 'b'), on 2 of 8 samples")


def test_gradient_and_forward_evidence_are_joined_and_the_gradient_names_the_place() -> None:
    g = _grads({0: [1e-4, 7, 1], 1: [1e-4, 7, 1]})
    rms = np.ones((8, 3))
    rms[[1, 6]] = [1.0, 5e-4, 4e-4]
    finding = _one(_report(gradient_norms=g, activation_rms=rms), "vanishing")
    gradient = _one(_report(gradient_norms=g), "vanishing").evidence
    forward = _one(_report(activation_rms=rms), "vanishing").evidence
    assert finding.where == "a"
    assert finding.evidence == f"{gradient}; {forward}"


# ------------------------------------------------------------------------------------------------
# exploding: growth through time (ReLU RNN) and the global norm's growth over the run
# ------------------------------------------------------------------------------------------------

def test_a_hidden_state_that_grows_through_time_is_exploding_at_the_rnn() -> None:
    growth = [1.0, 2000.0, NAN, 3000.0, 1.0, 1.0, 1.0, 1.0, 1.0]   # 2 of 8 measured
    finding = _one(_report(time_growth={"rnn": growth}), "exploding")
    assert finding == Finding(
        "exploding", "rnn",
        "the hidden state of 'rnn' grows through time: its RMS at the last step is 2.50e+03× "
        "that at the first (on 2 of 8 samples); in a recurrent net depth is sequence length; "
        "rule: above 1000 on at least 25% of the samples", FIX["exploding"],
        CHAPTERS["exploding"], None)
    assert apply_rules(_report(time_growth={"rnn": [2000.0] + [1.0] * 7})) == []
    assert apply_rules(_report(time_growth={"rnn": [1000.0] * 8})) == []
    assert _one(_report(time_growth={"rnn": [_after(1000.0)] * 8}), "exploding").where == "rnn"
    assert apply_rules(_report(time_growth={"rnn": [NAN, NAN]})) == []


def test_growth_through_time_comes_first_among_the_exploding_evidence() -> None:
    g = _grads({0: [3000, 7, 1], 1: [3000, 7, 1]})
    finding = _one(_report(gradient_norms=g, time_growth={"rnn": [5000.0] * 8}), "exploding")
    assert finding.where == "rnn"
    first, second = finding.evidence.split("; rule: above 1000 on at least 25% of the samples; ")
    assert first.startswith("the hidden state of 'rnn'")
    assert second.startswith("the gradient norm of 'a' (input side) is above 1000×")


def test_the_global_norm_growing_over_the_run_is_exploding() -> None:
    glob = np.array([0.0, 0.5, 3.0, NAN, 50.0, 100.0, 600.0, 2.0])
    g = _grads({6: [1.0, 700.0, 2.0]})       # 'b' grew most from step 1 to the peak at 6
    finding = _one(_report(global_norm=glob, gradient_norms=g,
                           optimizer_norm=np.where(np.isnan(glob), 1.0, glob)), "exploding")
    assert finding == Finding(
        "exploding", "b",
        "the global gradient norm grew 1.20e+03× during the run, from 0.5 at step 1 to 600 at "
        "step 6; rule: above 1000×", FIX["exploding"], CHAPTERS["exploding"], None)


def test_global_growth_edges() -> None:
    glob = np.array([0.5, 500.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])       # exactly 1000×
    assert apply_rules(_report(global_norm=glob)) == []
    glob[1] = _after(500.0)
    assert _one(_report(global_norm=glob), "exploding").where == "a"   # every layer grew 1×
    two = np.array([NAN, 0.5, 0.0, 600.0, NAN, NAN, NAN, NAN])        # two usable steps suffice
    g = _grads({3: [5.0, 7.0, 1.0]})
    finding = _one(_report(global_norm=two, gradient_norms=g, optimizer_norm=np.ones(8)),
                   "exploding")
    assert finding.where == "a"
    assert "from 0.5 at step 1 to 600 at step 3" in finding.evidence
    # no layer norm at the peak: the whole model
    g = _grads({})
    g[3] = NAN
    assert _one(_report(global_norm=two, gradient_norms=g, optimizer_norm=np.ones(8)),
                "exploding").where == ""


# ------------------------------------------------------------------------------------------------
# non-finite values
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("loss", "grad", "step", "opening"), [
    (3, 3, 3, "the loss and a gradient became non-finite at step 3"),
    (2, 5, 2, "the loss became non-finite at step 2 (a gradient at step 5)"),
    (2, None, 2, "the loss became non-finite at step 2 (a gradient never)"),
    (5, 2, 2, "a gradient became non-finite at step 2 (the loss at step 5)"),
    (None, 0, 0, "a gradient became non-finite at step 0 (the loss never)"),
    (0, None, 0, "the loss became non-finite at step 0 (a gradient never)"),
])
def test_the_first_nonfinite_step_and_its_words(loss: int | None, grad: int | None, step: int,
                                                opening: str) -> None:
    report = _report(first_nonfinite_loss_step=loss, first_nonfinite_gradient_step=grad)
    assert _one(report, "nonfinite") == Finding(
        "nonfinite", "", f"{opening}; the module could not be located",
        "lower the learning rate or clip the gradient norm, then re-run with the doctor",
        "Gradient Flow, chapter 3: Exploding gradients (chapters/03-exploding-gradients)", step)


FIXES = {
    "input": "the batch itself holds inf/nan: clean the data (or the augmentation) first",
    "loss": "the loss function overflows: compute it from logits (cross_entropy, "
            "binary_cross_entropy_with_logits) rather than log(softmax) or log(sigmoid), and "
            "guard any log or division with an epsilon",
    "forward": "this module's output overflows: check what it computes (exp, division, a large "
               "scale), add normalization before it or lower the learning rate; in float16, keep "
               "it in float32 or use bfloat16",
    "backward": "this module's backward produces inf/nan (sqrt, log, pow or division at 0): "
                "clamp its input away from the singular point or add an epsilon",
    "parameter": "this layer's weight gradient overflows: lower the learning rate, clip the "
                 "gradient norm, or fix the growth that feeds it (initialization, normalization)",
}


@pytest.mark.parametrize("phase", list(FIXES))
def test_the_located_module_its_words_and_the_fix_for_its_phase(phase: str) -> None:
    report = _report(first_nonfinite_gradient_step=4)
    site = {"where": "blow", "phase": phase, "what": "it said so"}
    finding = _one(report, "nonfinite", localised=site)
    assert (finding.where, finding.step, finding.fix) == ("blow", 4, FIXES[phase])
    assert finding.evidence == ("a gradient became non-finite at step 4 (the loss never); "
                                "it said so")


def test_with_a_gradscaler_only_a_nonfinite_loss_is_a_finding() -> None:
    grad_only = _report(first_nonfinite_gradient_step=1)
    assert apply_rules(grad_only, has_scaler=True) == []
    both = _report(first_nonfinite_gradient_step=1, first_nonfinite_loss_step=6)
    finding = _one(both, "nonfinite", has_scaler=True)
    assert finding.step == 6
    assert finding.evidence.startswith("the loss became non-finite at step 6 (a gradient never)")


# ------------------------------------------------------------------------------------------------
# dead units and saturation
# ------------------------------------------------------------------------------------------------

def test_dead_units_read_the_last_sample_and_name_the_worst_module() -> None:
    dead = {"r1": [0.9, 0.4], "r2": [0.2, 0.75], "r3": [1.0, NAN], "r4": [0.0, 0.6], "r5": []}
    finding = _one(_report(dead=dead), "dead_units")
    assert finding == Finding(
        "dead_units", "r2",
        "75% of the units of 'r2' output 0 for every example of the batch (step 7); also 'r4' "
        "60%; rule: above 50%", FIX["dead_units"],
        "Gradient Flow, chapter 5: Activation functions (chapters/05-activation-functions)", None)


def test_dead_units_edge_and_a_single_module() -> None:
    assert apply_rules(_report(dead={"relu": [1.0, 0.5]})) == []
    finding = _one(_report(dead={"relu": [0.0, _after(0.5)]}, sample_steps=[0, 5], steps=8),
                   "dead_units")
    assert finding.evidence == ("50% of the units of 'relu' output 0 for every example of the "
                                "batch (step 5); rule: above 50%")


def test_saturation_reads_the_median_over_samples_and_names_the_worst_module() -> None:
    sat = {"s1": [0.9, 0.9, 0.1], "s2": [0.6, 0.4, NAN], "s3": [0.7, 0.2, 0.8], "s4": [0.1]}
    finding = _one(_report(saturated=sat), "saturation")
    assert finding == Finding(
        "saturation", "s1",
        "90% of the outputs of 's1' sit where f'(z) is below 1% of its maximum (median over "
        "samples); also 's3' 70%; rule: above 50%", FIX["saturation"],
        "Gradient Flow, chapter 5: Activation functions (chapters/05-activation-functions)", None)
    assert apply_rules(_report(saturated={"s": [0.5, 0.5, 1.0, 0.0]})) == []
    only = _one(_report(saturated={"s": [_after(0.5)] * 3 + [0.0]}), "saturation")
    assert only.evidence == ("50% of the outputs of 's' sit where f'(z) is below 1% of its maximum "
                             "(median over samples); rule: above 50%")


# ------------------------------------------------------------------------------------------------
# the update-to-data ratio
# ------------------------------------------------------------------------------------------------

UPDATE_CHAPTER = ("Gradient Flow, chapter 12: Capstone, section 5, the update-to-data ratio "
                  "(chapters/12-capstone)")


def test_update_ratios_above_the_band_in_most_layers() -> None:
    upd = np.full((8, 3), 1e-3)
    upd[:, 1] = 0.3
    upd[:5, 2] = 0.2                         # median over samples: 0.2
    finding = _one(_report(update_ratio=upd), "update_ratio")
    assert finding == Finding(
        "update_ratio", "b",
        "the update-to-data ratio ‖ΔW‖/‖W‖ per step is above 0.1 in 2 of 3 weight layers "
        "(highest 3.00e-01 at 'b', median over samples); about 0.001 is a rule of thumb, "
        "and ratios within a decade of it are typical",
        FIX["update_high"], UPDATE_CHAPTER, None)


def test_update_ratios_below_the_band_in_most_layers() -> None:
    upd = np.full((8, 3), 1e-7)
    upd[:, 0] = NAN                          # not measured: not counted
    upd[:, 1] = 1e-6
    finding = _one(_report(update_ratio=upd), "update_ratio")
    assert finding == Finding(
        "update_ratio", "c",
        "the update-to-data ratio ‖ΔW‖/‖W‖ per step is below 1e-05 in 2 of 2 weight layers "
        "(lowest 1.00e-07 at 'c', median over samples); about 0.001 is a rule of thumb, "
        "and ratios within a decade of it are typical",
        FIX["update_low"], UPDATE_CHAPTER, None)


def test_update_ratio_edges_of_the_band_and_of_the_majority() -> None:
    assert apply_rules(_report(update_ratio=np.full((8, 3), 0.1))) == []     # at the band's edge
    assert apply_rules(_report(update_ratio=np.full((8, 3), 1e-5))) == []
    assert "above 0.1 in 3 of 3" in _one(_report(update_ratio=np.full((8, 3), _after(0.1))),
                                         "update_ratio").evidence
    assert "below 1e-05 in 3 of 3" in _one(_report(update_ratio=np.full((8, 3), _before(1e-5))),
                                           "update_ratio").evidence
    half = np.full((8, 4), 1e-3)
    half[:, :2] = 0.5                        # two of four layers: not more than half
    assert apply_rules(_report(("a", "b", "c", "d"), update_ratio=half)) == []
    half[:, :2] = 1e-8
    assert apply_rules(_report(("a", "b", "c", "d"), update_ratio=half)) == []
    assert apply_rules(_report(update_ratio=np.full((8, 3), NAN))) == []
    # one high and one low layer of three: neither is a majority
    mixed = np.full((8, 3), 1e-3)
    mixed[:, 0], mixed[:, 2] = 0.5, 1e-8
    assert apply_rules(_report(update_ratio=mixed)) == []


# ------------------------------------------------------------------------------------------------
# loss scale
# ------------------------------------------------------------------------------------------------

LOSS_SCALE_CHAPTER = ("Gradient Flow, chapter 11: Mixed precision and loss scaling "
                      "(chapters/11-mixed-precision)")


def test_underflowed_float16_gradients_without_a_scaler() -> None:
    zeros = np.full((8, 3), 0.1)
    zeros[:, 0] = 0.6
    zeros[:5, 1] = 0.8
    zeros[5:, 1] = NAN                       # median over measured samples: 0.8
    report = _report(zero_fraction=zeros)
    assert apply_rules(report) == []         # float16 not in use: nothing
    finding = _one(report, "loss_scale", fp16=True)
    assert finding == Finding(
        "loss_scale", "b",
        "80% of the gradient entries of 'b' are exactly zero in float16 without a GradScaler: "
        "they underflowed (float16's smallest positive value is 6e-8); rule: above 50%",
        FIX["loss_scale"], LOSS_SCALE_CHAPTER, None)


def test_underflow_edges_and_the_scaler_s_scale() -> None:
    at = np.full((8, 2), 0.5)
    assert apply_rules(_report(("a", "b"), zero_fraction=at), fp16=True) == []
    past = np.full((8, 2), _after(0.5))
    assert _one(_report(("a", "b"), zero_fraction=past), "loss_scale", fp16=True).where == "a"
    # with a GradScaler only when its scale has fallen to 1 or below
    scale = np.full(8, 4.0)
    scale[-1] = 1.0
    finding = _one(_report(("a", "b"), zero_fraction=past, loss_scale=scale), "loss_scale",
                   fp16=True, has_scaler=True)
    assert "exactly zero in float16 with the GradScaler's scale down to 1:" in finding.evidence
    scale[-1] = _after(1.0)
    assert apply_rules(_report(("a", "b"), zero_fraction=past, loss_scale=scale),
                       fp16=True, has_scaler=True) == []
    scale[-1] = NAN
    assert apply_rules(_report(("a", "b"), zero_fraction=past, loss_scale=scale),
                       fp16=True, has_scaler=True) == []
    assert apply_rules(_report(("a", "b"), zero_fraction=np.full((8, 2), NAN)), fp16=True) == []


def test_a_gradscaler_skipping_more_than_half_the_steps() -> None:
    report = _report(skipped_steps=[0, 1, 2, 4, 6])
    assert apply_rules(report) == []         # no scaler: not its finding
    finding = _one(report, "loss_scale", has_scaler=True)
    assert finding == Finding(
        "loss_scale", "",
        "the GradScaler skipped 5 of 8 steps (non-finite scaled gradients at every scale it "
        "tried); rule: above 50%", FIX["skipped"], LOSS_SCALE_CHAPTER, None)
    assert apply_rules(_report(skipped_steps=[0, 1, 2, 3]), has_scaler=True) == []   # half
    # at least four steps are needed; four suffice
    assert apply_rules(_report(steps=3, skipped_steps=[0, 1, 2]), has_scaler=True) == []
    assert _one(_report(steps=4, skipped_steps=[0, 1, 2]), "loss_scale",
                has_scaler=True).evidence.startswith("the GradScaler skipped 3 of 4 steps")


def test_both_loss_scale_findings_at_once() -> None:
    zeros = np.full((8, 2), 0.9)
    scale = np.full(8, 0.5)
    report = _report(("a", "b"), zero_fraction=zeros, loss_scale=scale,
                     skipped_steps=[1, 2, 3, 4, 5])
    findings = apply_rules(report, fp16=True, has_scaler=True)
    assert [(f.kind, f.where) for f in findings] == [("loss_scale", "a"), ("loss_scale", "")]


# ------------------------------------------------------------------------------------------------
# clipping
# ------------------------------------------------------------------------------------------------

def test_clipping_most_sampled_steps_and_the_90th_percentile() -> None:
    glob = np.arange(1.0, 9.0)                       # 90th percentile of 1..8: 7.3
    opt = glob.copy()
    opt[[0, 2, 4, 6, 7]] = [0.25, 0.25, 0.25, 0.5, 0.1]
    finding = _one(_report(global_norm=glob, optimizer_norm=opt), "clipping")
    assert finding == Finding(
        "clipping", "",
        "5 of 8 sampled steps were clipped (to about 0.25); the 90th percentile of the unclipped "
        "global norm is 7.3; rule: more than 50% clipped",
        "the threshold is below this model's ordinary gradient norm: raise it to near the 90th "
        "percentile of observed norms (7.3); under SGD a learning rate that is too high can also "
        "cause this",
        "Gradient Flow, chapter 4: Gradient clipping (chapters/04-gradient-clipping)", None)


def test_clipping_edges() -> None:
    glob = np.full(8, 2.0)
    opt = glob.copy()
    opt[:4] = 1.0                                     # half the samples: not more than half
    assert apply_rules(_report(global_norm=glob, optimizer_norm=opt)) == []
    opt[:5] = 2.0 * (1 - 1e-3)                        # within the tolerance: not clipped
    assert apply_rules(_report(global_norm=glob, optimizer_norm=opt)) == []
    opt[:5] = _before(2.0 * (1 - 1e-3))
    assert "5 of 8 sampled steps" in _one(_report(global_norm=glob, optimizer_norm=opt),
                                          "clipping").evidence


def test_clipping_counts_only_measured_samples_within_the_run() -> None:
    glob = np.full(8, 2.0)
    glob[7] = NAN                                     # a non-finite step is not a sample here
    loss = np.ones(8)
    loss[7] = NAN
    # samples 0..9 (8 and 9 beyond the run), optimizer norm unmeasured at 4, 5, 6
    opt = np.array([1.0, 1.0, 1.0, 2.0, NAN, NAN, NAN, 1.0, 1.0, 1.0])
    report = _report(global_norm=glob, loss=loss, optimizer_norm=opt,
                     sample_steps=list(range(10)), update_ratio=np.full((10, 3), 1e-3),
                     activation_rms=np.ones((10, 3)), zero_fraction=np.full((10, 3), NAN))
    finding = _one(report, "clipping")
    assert finding.evidence.startswith("3 of 4 sampled steps were clipped (to about 1);")
    assert "the 90th percentile of the unclipped global norm is 2;" in finding.evidence


# ------------------------------------------------------------------------------------------------
# order, chapters, the report's text
# ------------------------------------------------------------------------------------------------

def test_findings_come_in_the_order_of_kinds() -> None:
    glob = np.ones(8)
    opt = np.full(8, 0.5)
    report = _report(gradient_norms=_grads({t: [1e-4, 7, 1] for t in range(8)}),
                     dead={"relu": [0.9]}, update_ratio=np.full((8, 3), 0.5),
                     global_norm=glob, optimizer_norm=opt, skipped_steps=list(range(6)),
                     first_nonfinite_loss_step=2)
    kinds = [f.kind for f in apply_rules(report, has_scaler=True)]
    assert kinds == ["vanishing", "nonfinite", "dead_units", "update_ratio", "loss_scale",
                     "clipping"]
    assert KINDS == ("vanishing", "exploding", "nonfinite", "dead_units", "saturation",
                     "update_ratio", "loss_scale", "clipping")


def test_each_kind_points_at_its_chapter() -> None:
    # (tests/test_doctor_chapters.py checks that each page exists and teaches the fix)
    assert set(CHAPTERS) == set(KINDS)
    assert CHAPTERS["update_ratio"] == UPDATE_CHAPTER
    assert CHAPTERS["loss_scale"] == LOSS_SCALE_CHAPTER
    assert CHAPTERS["clipping"] == ("Gradient Flow, chapter 4: Gradient clipping "
                                    "(chapters/04-gradient-clipping)")


def test_a_finding_prints_its_place_step_and_wrapped_lines() -> None:
    finding = Finding("nonfinite", "fc1", "short evidence", "do this", "chapter x", step=3)
    assert str(finding) == ("[nonfinite] at 'fc1' at step 3\n"
                            "  evidence:  short evidence\n"
                            "  fix:       do this\n"
                            "  learn why: chapter x")
    assert str(Finding("clipping", "", "e", "f", "c")).startswith("[clipping] at the whole model\n")
    assert str(Finding("clipping", "x", "e", "f", "c", step=0)).startswith(
        "[clipping] at 'x' at step 0\n")
    long = " ".join(["word"] * 40) + " a-very-long-hyphenated-term-that-stays-whole"
    lines = str(Finding("vanishing", "a", long, "f", "c")).splitlines()
    assert lines[1] == "  evidence:  " + textwrap.fill(
        long, width=87, break_on_hyphens=False).splitlines()[0]
    assert all(len(line) <= 100 for line in lines)
    assert lines[2].startswith(" " * 13) and not lines[2].startswith(" " * 14)
    assert any("a-very-long-hyphenated-term-that-stays-whole" in line for line in lines)


def test_report_text_header_table_and_notes() -> None:
    report = _report(("", "fc1"), steps=4, layer_sizes=[1000, 2500],
                     gradient_norms=np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [1e9, 1e9]]),
                     loss=np.array([1.0, 1.0, 1.0, NAN]), update_ratio=np.full((4, 2), 2e-4),
                     activation_rms=np.array([[0.5, 0.0], [0.5, 0.0], [NAN, NAN], [NAN, NAN]]),
                     notes=["one note", "two notes"])
    assert report.healthy and report.kinds() == set()
    assert str(report) == "\n".join([
        "Gradient doctor: Toy, 4 steps, 2 weight layers, 3,500 weights in them; healthy: no rule "
        "fired",
        "",
        "  layer    type               grad norm  update/W   out RMS   (medians over the run)",
        "  (model)  Linear                     3  2.00e-04       0.5",
        "  fc1      Linear                     4  2.00e-04         0",
        "  note: one note",
        "  note: two notes"])
    assert repr(report) == "<Report Toy: 4 steps; healthy>"
    table = report.layer_table()
    assert table[0] == {"layer": "(model)", "type": "Linear", "params": 1000, "grad_norm": 3.0,
                        "update_ratio": 2e-4, "output_rms": 0.5}


def test_the_layer_column_is_at_least_as_wide_as_its_title() -> None:
    lines = str(_report(("a", "b"), steps=2)).splitlines()
    assert lines[2] == ("  layer  type               grad norm  update/W   out RMS   (medians over "
                        "the run)")
    assert lines[3] == "  a      Linear                     1     0.001         1"


def test_report_text_with_findings() -> None:
    report = _report(dead={"relu": [0.9]}, first_nonfinite_loss_step=1)
    report.findings = apply_rules(report)
    text = str(report)
    assert text.splitlines()[0].endswith("; 2 findings")
    assert "\n[nonfinite] at the whole model at step 1\n" in text
    assert "\n[dead_units] at 'relu'\n" in text
    assert repr(report) == "<Report Toy: 8 steps; nonfinite@model, dead_units@relu>"
    report.findings = report.findings[:1]
    assert str(report).splitlines()[0].endswith("; 1 finding")
    assert report.by_kind("nonfinite") == report.findings and report.by_kind("clipping") == []
    with pytest.raises(ValueError, match=r"kind must be one of \('vanishing', .*got 'dead'"):
        report.by_kind("dead")
    wide = _report(("a-very-long-layer-name", "b"))
    assert "  layer                   type " in str(wide)


@pytest.mark.parametrize(("value", "text"), [
    (NAN, "–"), (0.0, "0"), (0, "0"), (1e-3, "0.001"), (_before(1e-3), "1.00e-03"),
    (1234.5, "1.23e+03"), (9999.0, "1e+04"), (1e4, "1.00e+04"), (-0.5, "-0.5"),
    (-2e-5, "-2.00e-05"), (7, "7"), (True, "True"), ("x", "x"),
])
def test_numbers_in_the_report(value: object, text: str) -> None:
    assert _fmt(value) == text


def test_a_layer_not_measured_where_the_signal_fails_is_not_the_worst_gain() -> None:
    # Output RMS per sample for four layers; on half the samples the last is 1e4 (or 1e-4) × the
    # first and the two middle layers are not measured (nan) there, or only the third is.
    def rms(hits: list[float]) -> np.ndarray:
        return np.array([hits] * 4 + [[1.0] * len(hits)] * 4)

    names = ("a", "b", "c", "d")
    grows = _one(_report(names, activation_rms=rms([1.0, NAN, 50.0, 1e4])), "exploding")
    assert grows.where == "d" and "the largest gain, ×200, at 'd'" in grows.evidence
    fades = _one(_report(names, activation_rms=rms([1.0, NAN, 0.5, 1e-4])), "vanishing")
    assert fades.where == "d" and "the smallest gain, ×0.0002, at 'd'" in fades.evidence
    # no gain measured at all: the layer after the first is named
    assert _one(_report(names[:3], activation_rms=rms([1.0, NAN, 1e4])), "exploding").where == "b"
    assert _one(_report(names[:3], activation_rms=rms([1.0, NAN, 1e-4])), "vanishing").where == "b"


def test_a_layer_whose_output_is_zero_gives_no_numpy_warning() -> None:
    import warnings

    rms = np.array([[1.0, 0.0, 5.0, 1e4]] * 4 + [[1.0] * 4] * 4)  # a gain of 5 / 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        finding = _one(_report(("a", "b", "c", "d"), activation_rms=rms), "exploding")
    assert finding.where == "c" and "the largest gain, ×inf, at 'c'" in finding.evidence


def test_the_other_dead_or_saturated_modules_are_listed_with_commas() -> None:
    three = {"m1": [0.9], "m2": [0.8], "m3": [0.7]}
    dead = _one(_report(dead=three, sample_steps=[7], steps=8), "dead_units")
    assert "; also 'm2' 80%, 'm3' 70%; rule" in dead.evidence
    sat = _one(_report(saturated=three), "saturation")
    assert "; also 'm2' 80%, 'm3' 70%; rule" in sat.evidence


def test_global_growth_names_a_layer_that_grew_not_one_without_a_gradient() -> None:
    glob = np.array([1.0, 1.0, 1.0, 2000.0, 1.0, 1.0, 1.0, 1.0])
    g = _grads({0: [NAN, 2.0, 2.0], 3: [1.0, 1.0, 1.6]})   # 'a' unmeasured at the start;
    finding = _one(_report(global_norm=glob, gradient_norms=g), "exploding")  # 'b' ×0.5, 'c' ×0.8
    assert finding.where == "c"


def test_zero_outputs_in_a_row_give_no_numpy_warning() -> None:
    import warnings

    rms = np.array([[1.0, 0.0, 0.0, 1e4]] * 4 + [[1.0] * 4] * 4)  # gains 0, 0 / 0, 1e4 / 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        finding = _one(_report(("a", "b", "c", "d"), activation_rms=rms), "exploding")
    assert finding.where == "d"


def test_global_growth_with_a_layer_at_zero_gives_no_numpy_warning() -> None:
    import warnings

    glob = np.array([1.0, 1.0, 1.0, 2000.0, 1.0, 1.0, 1.0, 1.0])
    g = _grads({0: [0.0, 2.0, 2.0], 3: [0.0, 1.0, 1.6]})        # 'a': 0 / 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        findings = apply_rules(_report(global_norm=glob, gradient_norms=g))
    assert [f.where for f in findings if f.kind == "exploding"] == ["c"]
