"""``checkup`` and the doctor's small helpers, each promise of their docstrings asserted exactly.

``checkup``: trains a deep copy in training mode on the same batch at every step (default 20
steps, sampling every step, Adam at lr 1e-3), with a copy of a given optimizer (same class, groups
and hyperparameters, fresh state) or one built by a given function; bad arguments get errors that
name them. With plain SGD the update is ``lr × gradient``, so the measured update ratio times the
weight's norm must equal ``lr`` times the measured gradient norm: that checks which learning rate
(and which group) the copy used.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from gradpath.doctor import _first_output, _growth_through_time, checkup
from torch import nn

CE = nn.functional.cross_entropy


def _data(n: int = 16, d: int = 6, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(a=nn.Linear(6, 8), act=nn.Tanh(), b=nn.Linear(8, 3)))


def _lr_used(report, model: nn.Module, j: int, name: str) -> float:  # type: ignore[no-untyped-def]
    """The learning rate of plain SGD's first step on layer j: ‖ΔW‖ / ‖∂L/∂W‖."""
    weight = float(getattr(model, name).weight.detach().double().norm())
    return float(report.update_ratio[0, j] * weight / report.gradient_norms[0, j])


def test_checkup_copies_sgd_with_its_groups_and_hyperparameters() -> None:
    model = _net()
    x, y = _data()
    opt = torch.optim.SGD([{"params": model.a.parameters(), "lr": 0.1},
                           {"params": model.b.parameters()}], lr=0.01)
    report = checkup(model, x, y, CE, steps=2, optimizer=opt)
    assert report.layers == ["a", "b"]
    assert _lr_used(report, model, 0, "a") == pytest.approx(0.1, rel=1e-5)
    assert _lr_used(report, model, 1, "b") == pytest.approx(0.01, rel=1e-5)


def test_checkup_starts_the_copied_optimizer_afresh() -> None:
    model = _net()
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(3):                      # momentum buffers in the original's state
        opt.zero_grad()
        CE(model(x), y).backward()
        opt.step()
    report = checkup(model, x, y, CE, steps=1, optimizer=opt)
    # fresh state: the first step of momentum SGD is lr × gradient
    assert _lr_used(report, model, 0, "a") == pytest.approx(0.05, rel=1e-5)


def test_checkup_builds_the_optimizer_from_a_function_of_the_trainable_parameters() -> None:
    model = _net()
    model.a.bias.requires_grad_(False)
    seen: list[list[torch.Tensor]] = []

    def build(params):  # type: ignore[no-untyped-def]
        params = list(params)
        seen.append(params)
        return torch.optim.SGD(params, lr=0.2)

    x, y = _data()
    report = checkup(model, x, y, CE, steps=1, optimizer=build)
    assert len(seen) == 1 and len(seen[0]) == 3 and all(p.requires_grad for p in seen[0])
    assert all(p is not q for p in seen[0] for q in model.parameters())      # the copy's
    assert _lr_used(report, model, 1, "b") == pytest.approx(0.2, rel=1e-5)


def test_checkup_defaults_adam_at_1e_3_twenty_steps_sampled_every_step() -> None:
    model = _net()
    model.a.bias.requires_grad_(False)
    x, y = _data()
    report = checkup(model, x, y, CE)
    assert report.steps == 20 and report.sample_steps == list(range(20))
    # Adam's first step moves every entry with a gradient by lr (up to its epsilon)
    weight = model.b.weight.detach().double()
    step = report.update_ratio[0, 1] * float(weight.norm())
    assert step == pytest.approx(1e-3 * math.sqrt(weight.numel()), rel=1e-4)
    assert report.loss[0] == pytest.approx(float(CE(model(x), y)), rel=1e-6)
    assert model.a.bias.grad is None and not model.a.bias.requires_grad


def test_checkup_sampling_period_and_step_count() -> None:
    model = _net()
    x, y = _data()
    report = checkup(model, x, y, CE, steps=5, sample_every=2)
    assert report.steps == 5 and report.sample_steps == [0, 2, 4]
    assert checkup(model, x, y, CE, steps=1).steps == 1


def test_checkup_trains_the_copy_in_training_mode_on_a_sequence_of_inputs() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 3), nn.Linear(2, 3)
            self.modes: list[bool] = []

        def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            self.modes.append(self.training)
            return self.a(u) + self.b(v)

    model = Two().eval()
    x, y = _data()
    v = torch.randn(16, 2)
    report = checkup(model, (x, v), y, CE, steps=3)
    assert report.steps == 3 and report.layers == ["a", "b"]
    assert model.modes == [] and not model.training        # the copy ran, not the model
    with torch.no_grad():
        expected = float(CE(model.a(x) + model.b(v), y))
    assert report.loss[0] == pytest.approx(expected, rel=1e-6)


def test_checkup_trains_the_copy_in_training_mode() -> None:
    model = nn.Sequential(nn.Linear(6, 3), nn.Dropout(1.0)).eval()
    x, y = _data()
    report = checkup(model, x, y, CE, steps=1)
    # dropout with p=1 zeroes every output in training mode only: the loss is log(3)
    assert report.loss[0] == pytest.approx(math.log(3), rel=1e-6)


@pytest.mark.parametrize("steps", [0, -1, True, 2.0, None])
def test_checkup_refuses_a_bad_step_count(steps: object) -> None:
    with pytest.raises(ValueError, match=f"steps must be a positive integer, got {steps!r}$"):
        checkup(_net(), *_data(), CE, steps=steps)  # type: ignore[arg-type]


def test_checkup_refuses_bad_arguments_by_name() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match="^loss_fn must be callable, got int$"):
        checkup(_net(), x, y, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^model must be a torch.nn.Module, got str$"):
        checkup("net", x, y, CE)  # type: ignore[arg-type]
    for bad, name in (([], "list"), ((x, 3), "tuple"), ("x", "str"), (3, "int")):
        with pytest.raises(TypeError, match="^inputs must be a tensor or a non-empty sequence of "
                                            f"tensors, got {name}$"):
            checkup(_net(), bad, y, CE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^optimizer must be a torch.optim.Optimizer or a "
                                         "function of the parameters, got float$"):
        checkup(_net(), x, y, CE, optimizer=0.1)  # type: ignore[arg-type]
    other = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="^optimizer holds parameters that are not the model's"):
        checkup(_net(), x, y, CE, optimizer=other)


def test_checkup_refuses_a_loss_that_is_not_a_scalar_from_the_output() -> None:
    x, y = _data()
    msg = r"^loss_fn\(model\(inputs\), targets\) must return a scalar loss tensor computed from " \
          r"the model's output, got "
    with pytest.raises(ValueError, match=msg + "float$"):
        checkup(_net(), x, y, lambda out, t: 1.0)
    with pytest.raises(ValueError, match=msg + r"\(16, 3\)$"):
        checkup(_net(), x, y, lambda out, t: out)
    with pytest.raises(ValueError, match=msg + r"\(\) that needs no gradient$"):
        checkup(_net(), x, y, lambda out, t: torch.tensor(1.0))
    one = checkup(_net(), x, y, lambda out, t: out.sum().reshape(1), steps=1)  # one element
    assert one.steps == 1


def test_an_optimizer_that_cannot_be_copied_asks_for_a_function() -> None:
    class Special(torch.optim.SGD):
        def __init__(self, params, lr, special):  # type: ignore[no-untyped-def]
            super().__init__(params, lr=lr)

    model = _net()
    opt = Special(model.parameters(), lr=0.1, special=True)
    with pytest.raises(ValueError) as caught:
        checkup(model, *_data(), CE, optimizer=opt)
    assert str(caught.value).startswith("cannot copy Special (")
    assert str(caught.value).endswith("); pass a function that builds it, e.g. "
                                      "optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1)")


def test_checkup_of_a_model_without_parameters_gets_the_doctor_s_refusal() -> None:
    x, y = _data()
    spare = nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="^model ReLU has no trainable parameters: "):
        checkup(nn.ReLU(), x, y, lambda out, _y: out.sum(),
                optimizer=lambda _ps: torch.optim.SGD([spare], lr=0.1))


# ------------------------------------------------------------------------------------------------
# helpers of the recurrent rule
# ------------------------------------------------------------------------------------------------

def _growth(h: torch.Tensor, batch_first: bool) -> float:
    value = _growth_through_time(h, batch_first=batch_first)
    assert value is not None and value.dtype == torch.float64 and value.dim() == 0
    return float(value)


def test_growth_through_time_is_the_last_step_rms_over_the_first() -> None:
    h = torch.ones(5, 2, 4)                  # (time, batch, hidden)
    h[-1] *= 3.0
    h[2] *= 100.0                            # the middle steps do not count
    assert _growth(h, False) == pytest.approx(3.0)
    assert _growth(h.transpose(0, 1), True) == pytest.approx(3.0)
    # batch_first on a 3-D tensor reads dimension 1; without it, dimension 0
    assert _growth(h.transpose(0, 1), False) == pytest.approx(1.0)
    unbatched = torch.ones(4, 3)             # (time, hidden): time is dimension 0 either way
    unbatched[-1] = 0.5
    assert _growth(unbatched, True) == pytest.approx(0.5)
    assert _growth_through_time(torch.ones(1, 2, 4), batch_first=False) is None
    assert _growth_through_time(torch.ones(2, 1, 4), batch_first=True) is None
    assert _growth(torch.ones(2, 1, 4), False) == pytest.approx(1.0)
    assert _growth_through_time(torch.ones(3), batch_first=False) is None
    assert _growth_through_time(torch.ones(3, 3, 3, 3), batch_first=False) is None
    tiny = torch.full((2, 1, 4), 1e-30)      # float64 norms: no float32 underflow
    tiny[-1] = 2e-30
    assert _growth(tiny, False) == pytest.approx(2.0)


def test_first_output_of_a_module() -> None:
    a, b = torch.ones(1), torch.zeros(1)
    assert _first_output((a, b)) is a
    assert _first_output(a) is a
    assert _first_output(()) == ()
    assert _first_output([a, b]) == [a, b]
