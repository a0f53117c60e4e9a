"""The forward-vs-reverse-mode experiment of the History and horizons page, and the page itself."""

from __future__ import annotations

import json
import math
import re

import pytest
import test_notebooks as nbconv
import torch
from conftest import ROOT
from gradpath.book.quiz import load_quiz
from gradpath.experiments.history import (
    CountingLoss,
    batched_forward_gradient,
    cost_sweep,
    forward_mode_gradient,
    gradient_cost,
    matmul_flops,
    mlp_loss,
    reverse_mode_gradient,
    zero_operand_flops,
)
from torch.func import jacfwd, jvp

PAGE = ROOT / "history.ipynb"


def test_both_modes_agree_with_autograd():
    loss, theta = mlp_loss(features=5, hidden=3, samples=7, seed=1)
    assert theta.shape == (5 * 3 + 3,) and theta.dtype == torch.float64
    p = theta.clone().requires_grad_(True)
    loss(p).backward()
    assert torch.allclose(forward_mode_gradient(loss, theta), p.grad, rtol=1e-12, atol=1e-14)
    assert torch.allclose(reverse_mode_gradient(loss, theta), p.grad, rtol=1e-12, atol=1e-14)
    for chunk in (1, 4, 256):      # chunks that split P = 18 unevenly, and one that holds it all
        batched = batched_forward_gradient(loss, theta, chunk_size=chunk)
        assert torch.allclose(batched, p.grad, rtol=1e-12, atol=1e-14)
    assert torch.allclose(batched, jacfwd(loss)(theta), rtol=1e-12, atol=1e-14)


def test_matmul_flops_counts_products_only():
    a, b = torch.ones(3, 4), torch.ones(4, 5)
    assert matmul_flops(lambda: a @ b) == 2 * 3 * 4 * 5
    assert matmul_flops(lambda: torch.tanh(a)) == 0
    assert matmul_flops(lambda: a @ torch.ones(4)) == 0       # matrix-vector: not counted


def test_jvp_of_a_product_with_fixed_data_multiplies_a_zero_tangent():
    x, w = torch.randn(6, 4, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    one = 2 * 6 * 4 * 3
    assert zero_operand_flops(lambda: x @ w) == 0
    assert zero_operand_flops(lambda: torch.zeros(6, 4) @ torch.ones(4, 3)) == one
    def f(v):
        return x @ v
    assert matmul_flops(lambda: jvp(f, (w,), (torch.ones_like(w),))) == 3 * one
    assert zero_operand_flops(lambda: jvp(f, (w,), (torch.ones_like(w),))) == one
    row = gradient_cost(features=4, hidden=3, repeats=1)
    assert row.forward_flops - row.forward_zero_flops == 2 * row.params * row.loss_flops


def test_forward_mode_needs_one_pass_per_parameter_and_reverse_one():
    fn, theta = mlp_loss(features=4, hidden=2)
    counted = CountingLoss(fn)
    forward_mode_gradient(counted, theta)
    assert counted.calls == theta.numel() == 10
    counted = CountingLoss(fn)
    reverse_mode_gradient(counted, theta)
    assert counted.calls == 1


def test_gradient_cost_counts_per_gradient_and_reports_agreement():
    row = gradient_cost(features=3, hidden=2, repeats=2)
    assert row.params == 8 and row.forward_passes == 8 and row.reverse_passes == 1
    assert row.max_difference < 1e-12
    assert row.forward_seconds > 0 and row.batched_seconds > 0 and row.reverse_seconds > 0
    assert row.time_ratio == row.forward_seconds / row.reverse_seconds
    assert row.batched_time_ratio == row.batched_seconds / row.reverse_seconds
    # FLOPs: X (64x3) @ W (3x2) is the loss's one counted product.
    assert row.loss_flops == 2 * 64 * 3 * 2
    assert row.reverse_flops == 2 * row.loss_flops
    assert row.forward_flops == row.params * 3 * row.loss_flops
    assert row.params * row.loss_flops <= row.batched_flops < row.forward_flops
    assert row.flop_ratio == row.batched_flops / row.reverse_flops
    assert [r.params for r in cost_sweep([1, 2], features=3, repeats=1)] == [4, 8]


def test_cost_sweep_skips_the_loop_above_loop_max_hidden():
    small, large = cost_sweep([1, 3], features=3, samples=5, repeats=1, loop_max_hidden=2)
    assert small.forward_passes == small.params == 4 and small.forward_seconds > 0
    assert small.forward_flops == 3 * small.params * small.loss_flops
    assert large.params == 12 and large.forward_passes == 0 and math.isnan(large.forward_seconds)
    assert large.forward_flops == large.forward_zero_flops == 0 and math.isnan(large.time_ratio)
    assert large.batched_seconds > 0 and large.reverse_seconds > 0 and large.reverse_passes == 1
    assert large.max_difference < 1e-12
    # The batched gradient is one vmap call: the shared values, the zero tangent of X once, one
    # evaluation per tangent, and the output layer's P products of (samples x hidden) by (hidden).
    for row, hidden in ((small, 1), (large, 3)):
        assert row.batched_flops == (row.params + 2) * row.loss_flops + row.params * 2 * 5 * hidden


def test_cost_sweep_times_are_cpu_seconds(monkeypatch):
    ticks = iter(range(10_000))
    monkeypatch.setattr("gradpath.experiments.history.time.process_time",
                        lambda: float(next(ticks)))
    monkeypatch.setattr("gradpath.experiments.history.time.perf_counter",
                        lambda: pytest.fail("timed by the wall clock"))
    row = gradient_cost(features=2, hidden=1, repeats=1)
    assert row.forward_seconds == row.batched_seconds == row.reverse_seconds == 1.0
    assert row.forward_passes == row.params and row.reverse_passes == 1


@pytest.mark.parametrize("tick, repeats, runs", [
    (1.0, 45, 45),      # dear (1 CPU second a run): `repeats` runs, even above the cap of 40
    (1.0, 2, 2),        # dear: the fewest runs asked for
    (0.001, 2, 40),     # cheap (a millisecond): more runs, up to the cap
])
def test_cost_sweep_runs_cheap_methods_more_often(monkeypatch, tick, repeats, runs):
    calls = {"loop": 0, "rev": 0}
    real_loop, real_rev = forward_mode_gradient, reverse_mode_gradient

    def loop(loss, theta):
        calls["loop"] += 1
        return real_loop(loss, theta)

    def rev(loss, theta):
        calls["rev"] += 1
        return real_rev(loss, theta)

    monkeypatch.setattr("gradpath.experiments.history.forward_mode_gradient", loop)
    monkeypatch.setattr("gradpath.experiments.history.reverse_mode_gradient", rev)
    # Each timed call costs `tick` CPU seconds on this fake clock. Besides the timed runs, each
    # method has one untimed first call, and reverse mode one more run under the FLOP counter.
    clock = iter(range(100_000))
    monkeypatch.setattr("gradpath.experiments.history.time.process_time",
                        lambda: tick * next(clock))
    cost_sweep([1], features=2, repeats=repeats)
    assert calls == {"loop": 1 + runs, "rev": 1 + runs + 1}


def test_mlp_loss_is_seeded():
    (f1, t1), (f2, t2) = mlp_loss(3, 2, seed=4), mlp_loss(3, 2, seed=4)
    assert torch.equal(t1, t2) and float(f1(t1)) == float(f2(t2))
    assert not torch.equal(t1, mlp_loss(3, 2, seed=5)[1])


@pytest.mark.parametrize("call, match", [
    (lambda: mlp_loss(0, 2), "features"),
    (lambda: mlp_loss(3, 2.5), "hidden"),
    (lambda: forward_mode_gradient(lambda t: t.sum(), torch.zeros(2, 2)), "1-d"),
    (lambda: reverse_mode_gradient(lambda t: t.sum(), torch.zeros(2, 2)), "1-d"),
    (lambda: batched_forward_gradient(lambda t: t.sum(), torch.zeros(2, 2)), "1-d"),
    (lambda: batched_forward_gradient(lambda t: t.sum(), torch.zeros(2), chunk_size=0),
     "chunk_size"),
    (lambda: gradient_cost(3, 2, repeats=0), "repeats"),
    (lambda: cost_sweep([]), "hiddens"),
    (lambda: cost_sweep([1], loop_max_hidden=0), "loop_max_hidden"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# The page follows the chapters' conventions where they apply (it has no interactive figure,
# explorer, exercises or flashcards: it is a short page, not a chapter).

def test_page_is_stored_without_outputs():
    nbconv.test_notebook_is_stored_without_outputs(PAGE)


def test_page_installs_gradpath_like_the_chapters():
    nbconv.test_first_cell_installs_gradpath_from_the_configured_repository(PAGE)


def test_page_glue_and_cells():
    nbconv.test_glue_prints_what_the_prose_shows(PAGE)
    nbconv.test_no_cell_shows_a_stray_value(PAGE)
    nbconv.test_references_read_as_text_outside_the_book(PAGE)


def test_page_shape_quiz_and_toc():
    cells = json.loads(PAGE.read_text())["cells"]
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    headings = [h.strip() for h in re.findall(r"^##\s+(.+)$", markdown, re.M)]
    order = ["Learning objectives", "History", "Beyond backpropagation", "Quiz", "Key takeaways",
             "References"]
    found = [next(i for i, h in enumerate(headings) if h.startswith(s)) for s in order]
    assert found == sorted(found)
    assert "assert " in code and "{footcite" in markdown
    quiz_cells = [c for c in cells if "show_quiz(" in "".join(c["source"])]
    assert len(quiz_cells) == 1 and "remove-input" in quiz_cells[0]["metadata"].get("tags", [])
    assert len(load_quiz(ROOT / "chapters" / "quizzes" / "history.json")) >= 6
    assert "history" in nbconv._toc_files()

