"""Where the doctor says a non-finite value came from, and the words it uses, on tiny models.

The module docstring: at the first non-finite step the doctor re-runs the step and names the
first module whose forward output or backward gradient is inf/nan, or the parameter whose
gradient is (``phase`` "parameter"), or the loss; with ``sync_every > 1`` (no re-run) or
``localise=False`` it names the parameter nearest the output whose gradient norm is non-finite.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from gradpath.doctor import Doctor, _describe_nonfinite
from torch import nn

CE = nn.functional.cross_entropy
PARAMETER_FIX = ("this layer's weight gradient overflows: lower the learning rate, clip the "
                 "gradient norm, or fix the growth that feeds it (initialization, normalization)")
LOSS_FIX = ("the loss function overflows: compute it from logits (cross_entropy, "
            "binary_cross_entropy_with_logits) rather than log(softmax) or log(sigmoid), and "
            "guard any log or division with an epsilon")
NO_RERUN = ("sync_every > 1: the failing step could not be re-run; the non-finite value was "
            "located from the gradient norms only")


class _InfWeightGrad(torch.autograd.Function):
    """``x * w`` whose backward passes a finite gradient to ``x`` and inf to ``w``."""

    @staticmethod
    def forward(ctx, x, w):  # type: ignore[no-untyped-def, override]
        ctx.save_for_backward(w)
        return x * w

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        (w,) = ctx.saved_tensors
        return grad * w, torch.full_like(w, math.inf)


class _Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _InfWeightGrad.apply(x, self.w)


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(fc0=nn.Linear(3, 4), bad=_Scale(), fc1=nn.Linear(4, 2)))


def _step(doctor: Doctor, model: nn.Module, loss_fn=None) -> None:  # type: ignore[no-untyped-def]
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 0, 1, 1])
    loss = CE(model(x), y) if loss_fn is None else loss_fn(model(x), y)
    loss.backward()
    doctor.step(loss)


def test_describe_nonfinite_counts_inf_and_nan() -> None:
    t = torch.tensor([1.0, math.inf, -math.inf, math.nan, 2.0, 3.0])
    assert _describe_nonfinite(t) == "2 inf and 1 nan of 6 entries"
    assert _describe_nonfinite(torch.tensor([math.nan, 0.0])) == "1 nan of 2 entries"
    assert _describe_nonfinite(torch.tensor([[math.inf]])) == "1 inf of 1 entries"


def test_a_parameter_whose_gradient_alone_is_nonfinite_is_named_by_the_rerun() -> None:
    model = _model()
    doctor = Doctor(model)
    _step(doctor, model)
    report = doctor.report()
    [finding] = report.by_kind("nonfinite")
    assert (finding.where, finding.step, finding.fix) == ("bad", 0, PARAMETER_FIX)
    assert finding.evidence == (
        "a gradient became non-finite at step 0 (the loss never); the gradient of 'bad.w' holds "
        "4 inf of 4 entries while every gradient before it in the backward pass is finite "
        "(re-ran the step)")
    assert NO_RERUN not in report.notes


def test_without_a_rerun_the_parameter_nearest_the_output_is_named() -> None:
    model = _model()
    doctor = Doctor(model, sync_every=2)
    _step(doctor, model)
    model.fc0.weight.grad[0, 0] = math.nan    # type: ignore[index]  # both bad: nearest output
    _step(doctor, model)
    report = doctor.report()
    [finding] = report.by_kind("nonfinite")
    assert (finding.where, finding.step, finding.fix) == ("bad", 0, PARAMETER_FIX)
    assert finding.evidence == (
        "a gradient became non-finite at step 0 (the loss never); the gradient of 'bad.w' is "
        "non-finite (of the non-finite gradients, the one nearest the output)")
    assert NO_RERUN in report.notes


def test_localise_false_names_the_parameter_without_a_note() -> None:
    model = _model()
    doctor = Doctor(model, localise=False)
    _step(doctor, model)
    report = doctor.report()
    [finding] = report.by_kind("nonfinite")
    assert finding.where == "bad" and finding.fix == PARAMETER_FIX
    assert "is non-finite (of the non-finite gradients, the one nearest the output)" in \
        finding.evidence
    assert not any("re-run" in note for note in report.notes)


def test_a_nonfinite_loss_with_finite_gradients_is_the_loss_with_or_without_a_rerun() -> None:
    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return CE(out, y) + torch.tensor(math.inf)  # the gradient does not see the constant

    for kwargs, what in (({}, "every module's output is finite but the loss is not: the loss "
                              "function overflows (re-ran the step)"),
                         ({"sync_every": 2}, "the loss is non-finite while every gradient is "
                                             "finite")):
        model = nn.Sequential(OrderedDict(fc0=nn.Linear(3, 4), fc1=nn.Linear(4, 2)))
        doctor = Doctor(model, **kwargs)  # type: ignore[arg-type]
        _step(doctor, model, loss_fn)
        [finding] = doctor.report().by_kind("nonfinite")
        assert (finding.where, finding.fix) == ("loss", LOSS_FIX), kwargs
        assert finding.evidence == (
            f"the loss became non-finite at step 0 (a gradient never); {what}"), kwargs


class _NanBackward(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, x.sqrt(), torch.zeros_like(x))   # nan gradient where x < 0


def test_a_module_whose_backward_makes_nan_is_named_with_its_words() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc0=nn.Linear(3, 4), root=_NanBackward(),
                                      fc1=nn.Linear(4, 2)))
    doctor = Doctor(model)
    _step(doctor, model)
    [finding] = doctor.report().by_kind("nonfinite")
    assert finding.where == "root"
    assert finding.fix == ("this module's backward produces inf/nan (sqrt, log, pow or division "
                           "at 0): clamp its input away from the singular point or add an "
                           "epsilon")
    assert finding.evidence.startswith(
        "a gradient became non-finite at step 0 (the loss never); the gradient that 'root' "
        "(_NanBackward) passes back to its input holds ")
    assert finding.evidence.endswith(" entries, while the gradient reaching its output is "
                                     "finite (re-ran the step)")


class _Shuffled(nn.Module):
    """Registered mid, norm, out, inp (the parameters' order); called inp → mid → norm → out."""

    def __init__(self) -> None:
        super().__init__()
        self.mid, self.norm = nn.Linear(4, 4), nn.LayerNorm(4)
        self.out, self.inp = nn.Linear(4, 2), nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(self.mid(self.inp(x))))


def _named_from_gradients(bad: list[str]) -> tuple[str, str]:
    """``where`` and ``what`` when the named parameters' gradients are nan (no re-run)."""
    torch.manual_seed(0)
    model = _Shuffled()
    doctor = Doctor(model, localise=False)
    params = dict(model.named_parameters())
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    loss = CE(model(x), torch.tensor([0, 1, 0, 1, 1]))
    loss.backward()
    for name in bad:
        params[name].grad.view(-1)[0] = math.nan  # type: ignore[union-attr]
    doctor.step(loss)
    report = doctor.report()
    assert report.layers == ["inp", "mid", "out"]           # forward order
    [finding] = report.by_kind("nonfinite")
    return finding.where, finding.evidence.split("; ", 1)[1]


def test_the_parameter_nearest_the_output_is_by_forward_order_not_registration_order() -> None:
    # forward order inp (0), mid (1), out (2); the parameters are numbered mid, norm, out, inp
    assert _named_from_gradients(["inp.weight", "mid.weight", "out.weight", "norm.bias"]) == (
        "out", "the gradient of 'out.weight' is non-finite (of the non-finite gradients, the "
               "one nearest the output)")
    assert _named_from_gradients(["inp.weight", "mid.bias"])[0] == "mid"
    # a parameter of a module that is not a weight layer (the norm's gain) ranks below every layer
    assert _named_from_gradients(["norm.weight", "inp.weight"]) == (
        "inp", "the gradient of 'inp.weight' is non-finite (of the non-finite gradients, the "
               "one nearest the output)")
    assert _named_from_gradients(["norm.bias"])[0] == "norm"


def test_a_nonfinite_batch_is_the_input_with_its_counts_and_fix() -> None:
    model = _model()
    doctor = Doctor(model)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    x[1, 2], x[3, 0] = math.nan, math.inf
    loss = CE(model(x), torch.tensor([0, 1, 0, 1, 1]))
    loss.backward()
    doctor.step(loss)
    [finding] = doctor.report().by_kind("nonfinite")
    assert (finding.where, finding.step) == ("input", 0)
    assert finding.evidence == (
        "the loss and a gradient became non-finite at step 0; the batch passed to the model "
        "holds 1 inf and 1 nan of 15 entries (re-ran the step)")
    assert finding.fix == "the batch itself holds inf/nan: clean the data (or the augmentation) " \
                          "first"


class _WithUnused(nn.Module):
    """``_model()`` and a layer the forward never calls (its parameters get no gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.net, self.spare = _model(), nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_the_backward_rerun_works_with_a_parameter_the_step_did_not_use() -> None:
    model = _WithUnused()
    doctor = Doctor(model)
    _step(doctor, model)
    report = doctor.report()
    [finding] = report.by_kind("nonfinite")
    assert finding.where == "net.bad" and finding.evidence.endswith(
        "the gradient of 'net.bad.w' holds 4 inf of 4 entries while every gradient before it in "
        "the backward pass is finite (re-ran the step)")
    assert not any("re-run" in note for note in report.notes)


class _Keyword(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = _model()

    def forward(self, *, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_a_nonfinite_batch_passed_by_keyword_is_the_input() -> None:
    model = _Keyword()
    doctor = Doctor(model)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    x[0, 0] = math.nan
    loss = CE(model(x=x), torch.tensor([0, 1, 0, 1, 1]))
    loss.backward()
    doctor.step(loss)
    [finding] = doctor.report().by_kind("nonfinite")
    assert finding.where == "input" and finding.evidence.endswith(
        "the batch passed to the model holds 1 nan of 15 entries (re-ran the step)")


class _InfBackwardSum(torch.autograd.Function):
    """A finite sum whose backward sends inf into the model's output."""

    @staticmethod
    def forward(ctx, out):  # type: ignore[no-untyped-def, override]
        return out.sum()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        return torch.full((5, 2), math.inf)


def test_a_loss_whose_gradient_is_nonfinite_is_the_loss() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc0=nn.Linear(3, 4), fc1=nn.Linear(4, 2)))
    doctor = Doctor(model)
    _step(doctor, model, lambda out, _y: _InfBackwardSum.apply(out))
    [finding] = doctor.report().by_kind("nonfinite")
    assert (finding.where, finding.fix) == ("loss", LOSS_FIX)
    assert finding.evidence.endswith("; the gradient of the loss with respect to the model's "
                                     "output is non-finite (re-ran the step)")


class _FailsWhenRerun(nn.Module):
    """``_model()`` whose second forward call (the doctor's re-run) raises."""

    def __init__(self) -> None:
        super().__init__()
        self.net, self.calls = _model(), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("boom")
        return self.net(x)


def test_a_rerun_that_fails_is_noted_and_the_gradients_decide() -> None:
    model = _FailsWhenRerun()
    doctor = Doctor(model)
    _step(doctor, model)
    report = doctor.report()
    assert report.notes[0] == ("the re-run of step 0 failed (RuntimeError('boom')); the "
                               "non-finite value was located from the gradient norms only")
    [finding] = report.by_kind("nonfinite")
    assert finding.where == "net.bad" and "(of the non-finite gradients, the one nearest the " \
        "output)" in finding.evidence


class _Scaled(nn.Module):
    """``_model()`` called with a number as a second argument."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _model()

    def forward(self, x: torch.Tensor, factor: float) -> torch.Tensor:
        return self.net(factor * x)


def test_a_forward_with_a_number_argument_is_re_run() -> None:
    model = _Scaled()
    doctor = Doctor(model)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    loss = CE(model(x, 2.0), torch.tensor([0, 1, 0, 1, 1]))
    loss.backward()
    doctor.step(loss)
    report = doctor.report()
    [finding] = report.by_kind("nonfinite")
    assert finding.where == "net.bad" and finding.evidence.endswith("(re-ran the step)")
    assert not any("re-run" in note for note in report.notes)


def test_a_forward_called_by_keyword_is_re_run_with_its_keywords() -> None:
    model = _Keyword()
    doctor = Doctor(model)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    loss = CE(model(x=x), torch.tensor([0, 1, 0, 1, 1]))
    loss.backward()
    doctor.step(loss)
    report = doctor.report()
    [finding] = report.by_kind("nonfinite")
    assert finding.where == "net.bad" and finding.evidence.endswith("(re-ran the step)")
    assert not any("re-run" in note for note in report.notes)
