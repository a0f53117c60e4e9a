"""diagnose_gradients: each rule alone, at its threshold's edge (just below and just above), with
the verdict, the ratio and the reasons it must give exactly.

The documented thresholds (module docstring): vanishing when the first layer's norm is below
1e-5 or the last layer's is more than 1000× the first's; exploding when a norm is non-finite,
exceeds 1000, or the first is more than 1000× the last. Inputs are chosen so that no other rule
is near its edge, and the middle layer differs from the first and last (so the rules must read
the first and the last, not a neighbour).
"""

from __future__ import annotations

import math

import pytest
from gradpath.diagnosis import Diagnosis, diagnose_gradients

UP, DOWN = math.inf, 0.0


def _after(x: float) -> float:
    return math.nextafter(x, UP)


def _before(x: float) -> float:
    return math.nextafter(x, DOWN)


def test_a_healthy_network_has_no_reason_and_its_exact_ratio():
    result = diagnose_gradients([0.2, 0.3, 0.5])
    assert result == Diagnosis("healthy", 0.2 / 0.5, [])


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_nonfinite_norm_alone_is_exploding(bad):
    result = diagnose_gradients([0.5, bad, 0.25])       # the first and last are healthy
    assert result.verdict == "exploding"
    assert result.reasons == ["a gradient norm is inf or nan"]
    assert result.first_to_last_ratio == 2.0


def test_the_norm_rule_alone_at_its_edge():
    assert diagnose_gradients([0.5, 1000.0, 0.25]) == Diagnosis("healthy", 2.0, [])  # not above
    result = diagnose_gradients([0.5, _after(1000.0), 0.25])
    assert result == Diagnosis("exploding", 2.0, ["a gradient norm exceeds 1000"])
    # the threshold is an argument: just below and just above a chosen one
    assert diagnose_gradients([0.5, 7.0, 0.25], exploding_norm=_after(7.0)).verdict == "healthy"
    assert diagnose_gradients([0.5, 7.0, 0.25], exploding_norm=_before(7.0)).reasons == [
        "a gradient norm exceeds 7"]


def test_the_first_over_last_rule_alone_at_its_edge():
    # 1 / 1e-3 is exactly 1000.0 in floating point: at the limit, not above it
    assert diagnose_gradients([1.0, 0.5, 1e-3]) == Diagnosis("healthy", 1000.0, [])
    last = _before(1e-3)
    result = diagnose_gradients([1.0, 0.5, last])
    assert result.verdict == "exploding"
    assert result.first_to_last_ratio == 1.0 / last > 1000.0
    assert result.reasons == ["the first layer's gradient is 1e+03× the last layer's"]
    # a chosen limit, exact in binary: 1 / 2**-10 = 1024
    assert diagnose_gradients([1.0, 0.5, 2.0**-10], ratio_limit=1024.0).verdict == "healthy"
    result = diagnose_gradients([1.0, 0.5, _before(2.0**-10)], ratio_limit=1024.0)
    assert result.reasons == ["the first layer's gradient is 1.02e+03× the last layer's"]


def test_the_small_first_norm_rule_alone_at_its_edge():
    edge = 1e-5
    assert diagnose_gradients([edge, 2 * edge, edge]) == Diagnosis("healthy", 1.0, [])
    below = _before(edge)
    result = diagnose_gradients([below, 2 * below, below])
    assert result == Diagnosis("vanishing", 1.0,
                               ["the first layer's gradient norm 1.00e-05 is below 1e-05"])
    result = diagnose_gradients([0.5, 0.4, 0.5], vanishing_norm=_after(0.5))
    assert result.reasons == ["the first layer's gradient norm 5.00e-01 is below 0.5"]
    assert diagnose_gradients([0.5, 0.4, 0.5], vanishing_norm=0.5).verdict == "healthy"


def test_the_last_over_first_rule_alone_at_its_edge():
    # first / last = 2**-10 exactly: the limit 1/1024, not below it
    assert diagnose_gradients([2.0**-10, 0.5, 1.0], ratio_limit=1024.0) == Diagnosis(
        "healthy", 2.0**-10, [])
    first = _before(2.0**-10)
    result = diagnose_gradients([first, 0.5, 1.0], ratio_limit=1024.0)
    assert result.verdict == "vanishing"
    assert result.first_to_last_ratio == first
    assert result.reasons == ["the last layer's gradient is 1.02e+03× the first layer's"]
    # the default limit (1000): 1e-3 / 1 is exactly 0.001 == 1 / 1000
    assert diagnose_gradients([1e-3, 0.5, 1.0]).verdict == "healthy"
    result = diagnose_gradients([_before(1e-3), 0.5, 1.0])
    assert result.reasons == ["the last layer's gradient is 1e+03× the first layer's"]


def test_exploding_rules_together_and_before_vanishing():
    result = diagnose_gradients([5000.0, math.nan, 1.0])
    assert result.verdict == "exploding"
    assert result.first_to_last_ratio == 5000.0
    assert result.reasons == ["a gradient norm is inf or nan", "a gradient norm exceeds 1000",
                              "the first layer's gradient is 5e+03× the last layer's"]


def test_an_underflowed_first_layer_is_vanishing_with_an_infinite_factor():
    result = diagnose_gradients([0.0, 1e-3, 0.3])
    assert result == Diagnosis("vanishing", 0.0, [
        "the gradient norm is exactly 0 at layer(s) 1 (counted from 1, input first): "
        "nothing reaches those weights",
        "the first layer's gradient norm 0.00e+00 is below 1e-05",
        "the last layer's gradient is inf× the first layer's"])


def test_a_zero_last_layer_gives_an_infinite_ratio_and_a_unit_one_an_exact_ratio():
    assert diagnose_gradients([0.5, 0.25, 0.0]).first_to_last_ratio == math.inf
    assert diagnose_gradients([0.5, 0.25, 1.0]).first_to_last_ratio == 0.5


def test_fewer_than_two_layers_is_refused():
    assert diagnose_gradients([0.5, 0.25]) == Diagnosis("healthy", 2.0, [])   # two is enough
    with pytest.raises(ValueError, match="^need the gradient norms of at least two layers"):
        diagnose_gradients([1.0])
    with pytest.raises(ValueError, match="at least two layers"):
        diagnose_gradients([])


def test_a_negative_infinite_norm_is_refused_as_negative():
    with pytest.raises(ValueError, match=r"^a gradient norm cannot be negative: norms\[1\] = -inf"):
        diagnose_gradients([0.5, -math.inf])
