"""gradpath.book.sitebench's arithmetic (the measurements themselves need a built site)."""

from __future__ import annotations

import pytest
from gradpath.book import sitebench


def test_median_audit_takes_each_numbers_median_over_runs():
    runs = [{"score": 70.0, "tbt_ms": 900.0}, {"score": 91.0, "tbt_ms": 100.0},
            {"score": 88.0, "tbt_ms": 300.0}]
    assert sitebench.median_audit(runs) == {"score": 88.0, "tbt_ms": 300.0}
    assert sitebench.median_audit([]) == {}


def test_measure_needs_at_least_one_run():
    with pytest.raises(ValueError, match="runs must be at least 1, got 0"):
        sitebench.measure("_build/html", runs=0)


def test_check_names_each_missed_goal():
    good = sitebench.PageResult("chapters/01-x.html", 1, 1_000_000, {"score": 95.0},
                                {"score": 80.0})
    bad = sitebench.PageResult("chapters/02-y.html", 1, 1_000_000, {"score": 89.0},
                               {"score": 74.0})
    assert sitebench.check([good]) == []
    failures = sitebench.check([good, bad])
    assert any("desktop 89" in f for f in failures) and any("mobile 74" in f for f in failures)
