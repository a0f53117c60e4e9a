"""train's documented promises, on a scripted model whose non-finite steps are known in advance.

The model is one linear layer whose forward pass, at chosen calls, makes the loss non-finite
while the gradient stays finite, or the gradient non-finite while the loss stays finite (custom
autograd functions), so the expected first steps are known exactly, not read from the code.
"""

from __future__ import annotations

import math

import pytest
import torch
from gradpath.data import teacher_regression
from gradpath.training import train
from torch import nn


class _InfForward(torch.autograd.Function):
    """Output +inf (so the loss is inf); pass back a finite gradient."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        return x + math.inf

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        return torch.full_like(grad, 0.5)


class _InfBackward(torch.autograd.Function):
    """Identity forward (finite loss); an +inf gradient entry backward."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        out = grad.clone()
        out[0] = math.inf
        return out


class Scripted(nn.Module):
    def __init__(self, loss_bad=(), grad_bad=()) -> None:  # noqa: ANN001
        super().__init__()
        self.linear = nn.Linear(4, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[0.1, -0.2, 0.3, -0.4]]))
            self.linear.bias.zero_()
        self.loss_bad, self.grad_bad, self.calls = set(loss_bad), set(grad_bad), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        if self.calls in self.loss_bad:
            out = _InfForward.apply(out)
        if self.calls in self.grad_bad:
            out = _InfBackward.apply(out)
        self.calls += 1
        return out


DATA = teacher_regression(16, 4, seed=0)


@pytest.mark.parametrize("record_every", [1, 3])
def test_the_first_nonfinite_loss_and_gradient_steps_are_recorded_separately(record_every):
    # value clipping turns the inf gradient entry into a finite one, so the weights stay finite
    model = Scripted(loss_bad={5, 6}, grad_bad={2, 7})
    history = train(model, DATA, steps=9, lr=0.01, clip_value=1.0, stop_at_nonfinite=False,
                    record_every=record_every)
    assert history.steps == 9 and not history.stopped_early
    assert history.first_nonfinite_loss_step == 5          # the first, not the last (6)
    assert history.first_nonfinite_gradient_step == 2      # the first, not the last (7)
    assert history.first_nonfinite_step == 2 and history.diverged
    assert [math.isfinite(v) for v in history.loss] == [i not in (5, 6) for i in range(9)]
    assert [math.isfinite(v) for v in history.global_norm] == [i not in (2, 7) for i in range(9)]
    assert history.summary() == ("loss first non-finite at step 5; gradient first non-finite "
                                 "at step 2; ran on to step 8")


@pytest.mark.parametrize("record_every", [1, 2])
def test_a_nonfinite_gradient_with_a_finite_loss_stops_training(record_every):
    model = Scripted(grad_bad={3})
    history = train(model, DATA, steps=10, lr=0.01, record_every=record_every)
    assert history.first_nonfinite_gradient_step == 3
    assert history.first_nonfinite_loss_step is None
    assert all(math.isfinite(v) for v in history.loss)
    assert history.steps == 4 and history.stopped_early and history.first_nonfinite_step == 3
    assert history.summary() == ("loss finite throughout; gradient first non-finite at step 3; "
                                 "stopped there")


def test_a_nonfinite_loss_with_a_finite_gradient_stops_before_its_update():
    model = Scripted(loss_bad={2})
    history = train(model, DATA, steps=10, lr=0.01)
    assert history.first_nonfinite_loss_step == 2
    assert history.first_nonfinite_gradient_step is None
    assert all(math.isfinite(v) for v in history.global_norm)
    assert history.steps == 3 and history.stopped_early
    assert len(history.weight_norms) == 3
    # the update of step 2 was not taken: the last weight norm is the one after step 1's update
    w = torch.cat([model.linear.weight.detach().reshape(-1)])
    assert history.weight_norms[-1] == pytest.approx([float(w.double().norm())], rel=1e-6)
    assert history.weight_norms[-1] == history.weight_norms[-2]


def test_a_finite_run_records_no_nonfinite_step():
    history = train(Scripted(), DATA, steps=4, lr=0.01)
    assert history.first_nonfinite_loss_step is None
    assert history.first_nonfinite_gradient_step is None
    assert history.first_nonfinite_step is None and not history.diverged
    assert not history.stopped_early and history.steps == 4


def test_with_record_every_the_stop_is_noticed_at_the_next_transfer():
    # gradients non-finite at step 1; with record_every=3 the first transfer is after step 2, so
    # the model ran 3 forward passes (the documented cost), and the history still ends at step 1
    model = Scripted(grad_bad={1})
    history = train(model, DATA, steps=10, lr=0.01, record_every=3, clip_value=1.0)
    assert model.calls == 3
    assert history.steps == 2 and history.first_nonfinite_gradient_step == 1
    assert history.stopped_early


def test_a_run_that_diverges_at_its_last_step_ran_all_its_steps():
    history = train(Scripted(loss_bad={2}), DATA, steps=3, lr=0.01)
    assert history.steps == 3 and history.diverged and not history.stopped_early


def test_single_example_batches_and_an_unused_parameter():
    model = Scripted()
    model.unused = nn.Parameter(torch.ones(3))             # never reached by the loss
    history = train(model, DATA, steps=3, lr=0.01, batch_size=1)
    assert history.steps == 3 and not history.diverged
    by_hand = math.sqrt(sum(n * n for n in history.gradient_norms[0]) + 0.0)
    assert history.global_norm[0] >= by_hand                # bias included, unused counts 0
    assert torch.equal(model.unused.detach(), torch.ones(3))
