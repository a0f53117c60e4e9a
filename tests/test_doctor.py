"""The gradient doctor: each kind of broken model gets the right finding at the right layer."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import pytest
import torch
from gradpath.doctor import (
    CHAPTERS,
    KINDS,
    UPDATE_RATIO_HIGH,
    UPDATE_RATIO_LOW,
    Doctor,
    Report,
    accurate_norm,
    checkup,
)
from torch import nn

CE = nn.functional.cross_entropy


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    # Small networks on a shared machine: PyTorch's threads waiting on each other cost far more
    # than they gain (see gradpath.device).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(n: int = 128, d: int = 32, classes: int = 10, seed: int = 0
           ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 20,
           lr: float = 0.05, optimizer: torch.optim.Optimizer | None = None,
           loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = CE,
           clip: float | None = None, **doctor_kw: object) -> Report:
    opt = optimizer or torch.optim.SGD(model.parameters(), lr=lr)
    doctor_kw.setdefault("sample_every", 1)
    with Doctor(model, opt, **doctor_kw) as doctor:  # type: ignore[arg-type]
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            doctor.step(loss)
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
        return doctor.report()


def _mlp(activation: type[nn.Module], depth: int, width: int = 64, d: int = 32,
         gain: float = 1.0, init: str = "he") -> nn.Sequential:
    """``depth`` Linear layers named fc0.. with activations act0.. between them."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    fan_in = d
    for i in range(depth - 1):
        linear = nn.Linear(fan_in, width)
        if init == "he":
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
            nn.init.zeros_(linear.bias)
        with torch.no_grad():
            linear.weight.mul_(gain)
        layers[f"fc{i}"] = linear
        layers[f"act{i}"] = activation()
        fan_in = width
    layers[f"fc{depth - 1}"] = nn.Linear(fan_in, 10)
    return nn.Sequential(layers)


# ------------------------------------------------------------------------------------------------
# Norms that do not lie
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("tensor", "expected"), [
    (torch.full((100,), 1e20), 1e21),                          # float32 squares overflow
    (torch.full((100,), 1e-26), 1e-25),                        # float32 squares underflow
    (torch.tensor([1e20, 1e-26, 3.0]), 1e20),                  # mixed scales
    (torch.full((100,), 1e4, dtype=torch.float16), 1e5),       # float16 overflows at 65504
    (torch.full((100,), 1e20, dtype=torch.bfloat16), 1e21),    # bfloat16 has float32's range
    (torch.full((100,), 1e200, dtype=torch.float64), 1e201),   # float64 squares overflow
    (torch.full((100,), 1e-200, dtype=torch.float64), 1e-199),
])
def test_accurate_norm_is_right_for_finite_inputs(tensor: torch.Tensor, expected: float) -> None:
    value = float(accurate_norm(tensor))
    tolerance = 1e-2 if tensor.dtype in (torch.float16, torch.bfloat16) else 1e-6
    assert math.isclose(value, float(torch.linalg.vector_norm(tensor.double())) if
                        tensor.dtype != torch.float64 else expected, rel_tol=tolerance)
    assert math.isclose(value, expected, rel_tol=tolerance)


def test_accurate_norm_reports_nonfinite_entries() -> None:
    assert math.isinf(float(accurate_norm(torch.tensor([1.0, math.inf]))))
    assert math.isnan(float(accurate_norm(torch.tensor([1.0, math.nan]))))
    assert math.isinf(float(accurate_norm(torch.tensor([1.0, math.inf], dtype=torch.float64))))


@pytest.mark.parametrize("entry", [1e20, 1e-26, 3e-21])
def test_doctor_records_exact_norms_of_extreme_but_finite_gradients(entry: float) -> None:
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 10))
    doctor = Doctor(model)
    model(torch.randn(4, 10)).sum().backward()
    for p in model.parameters():
        p.grad = torch.full_like(p, entry)
    doctor.step(torch.tensor(1.0))
    report = doctor.report()
    count = sum(p.numel() for p in model.parameters())
    assert math.isclose(report.global_norm[0], entry * math.sqrt(count), rel_tol=1e-5)
    assert math.isclose(report.gradient_norms[0, 0], entry * 10, rel_tol=1e-5)
    # Finite entries whose float32 norm overflows are not "non-finite".
    assert report.first_nonfinite_gradient_step is None
    assert "nonfinite" not in report.kinds()


def test_a_single_nonfinite_entry_is_found_from_the_tensor() -> None:
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 10))
    doctor = Doctor(model)
    model(torch.randn(4, 10)).sum().backward()
    model[2].weight.grad[3, 4] = math.nan  # type: ignore[index]
    doctor.step(torch.tensor(1.0))
    report = doctor.report()
    assert report.first_nonfinite_gradient_step == 0
    assert report.first_nonfinite_loss_step is None
    assert math.isinf(report.gradient_norms[0, 1]) and math.isfinite(report.gradient_norms[0, 0])
    assert math.isinf(report.global_norm[0])                  # inf marks it, as in each layer's


# ------------------------------------------------------------------------------------------------
# Broken models: the right finding at the right layer
# ------------------------------------------------------------------------------------------------

def test_deep_sigmoid_mlp_vanishes_at_the_input_layer() -> None:
    x, y = _batch()
    report = _train(_mlp(nn.Sigmoid, depth=20, init="default"), x, y, steps=10, lr=0.1)
    [finding] = report.by_kind("vanishing")
    assert finding.where == "fc0"
    assert "rule: below 0.001" in finding.evidence
    assert finding.chapter == CHAPTERS["vanishing"]
    assert "exploding" not in report.kinds()


def test_relu_net_with_oversized_init_explodes() -> None:
    x, y = _batch()
    report = _train(_mlp(nn.ReLU, depth=10, gain=3.0), x, y, steps=3, lr=1e-4)
    [finding] = report.by_kind("exploding")
    assert "forward signal grows" in finding.evidence
    assert finding.where.startswith("fc")


def test_the_most_oversized_layer_is_named() -> None:
    x, y = _batch()
    model = _mlp(nn.ReLU, depth=10, gain=2.0)
    with torch.no_grad():
        model.fc6.weight.mul_(20.0)
    report = _train(model, x, y, steps=3, lr=1e-5)
    assert report.by_kind("exploding")[0].where == "fc6"


def test_a_dead_relu_layer_is_named() -> None:
    x, y = _batch()
    model = _mlp(nn.ReLU, depth=6)
    with torch.no_grad():
        model.fc2.bias.fill_(-100.0)
    report = _train(model, x, y, steps=5)
    [finding] = report.by_kind("dead_units")
    assert finding.where == "act2"
    assert finding.evidence.startswith("100% of the units of 'act2'")
    assert report.dead["act1"][-1] < 0.5


def test_dead_units_of_a_functional_relu_are_found_at_the_next_layer_input() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(32, 64), nn.Linear(64, 64), nn.Linear(64, 10)
            with torch.no_grad():
                self.a.bias.fill_(-100.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(torch.relu(self.b(torch.relu(self.a(x)))))

    x, y = _batch()
    [finding] = _train(Functional(), x, y, steps=3).by_kind("dead_units")
    assert finding.where == "b (input)"


def test_dead_channels_of_a_convolution() -> None:
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 8, 3, padding=1), relu=nn.ReLU(),
                                      pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
                                      head=nn.Linear(8, 10)))
    with torch.no_grad():
        model.conv.bias[:6] = -100.0
    x = torch.randn(16, 3, 8, 8)
    y = torch.randint(0, 10, (16,))
    report = _train(model, x, y, steps=2)
    assert report.dead["relu"][0] == pytest.approx(6 / 8)
    assert report.by_kind("dead_units")[0].where == "relu"


class _RNNNet(nn.Module):
    def __init__(self, radius: float, nonlinearity: str = "relu", hidden: int = 32) -> None:
        super().__init__()
        self.rnn = nn.RNN(8, hidden, batch_first=True, nonlinearity=nonlinearity)
        q, _ = torch.linalg.qr(torch.randn(hidden, hidden))
        with torch.no_grad():
            self.rnn.weight_hh_l0.copy_(radius * q)        # spectral radius exactly `radius`
        self.head = nn.Linear(hidden, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def _sequences() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(64, 40, 8, generator=g), torch.randint(0, 4, (64,), generator=g)


def test_rnn_with_spectral_radius_well_above_one_explodes_at_the_rnn() -> None:
    x, y = _sequences()
    report = _train(_RNNNet(3.0), x, y, steps=2, lr=1e-3)
    [finding] = report.by_kind("exploding")
    assert finding.where == "rnn"
    assert "grows through time" in finding.evidence
    healthy = _train(_RNNNet(1.0), x, y, steps=2, lr=1e-3)
    assert not {"exploding", "vanishing"} & healthy.kinds()


def test_a_tanh_rnn_in_its_linear_regime_explodes_backward() -> None:
    # Tiny inputs keep tanh near its linear part, where each step multiplies the gradient by the
    # radius-3 matrix: the gradient reaching the recurrent weights dwarfs the head's.
    x, y = _sequences()
    report = _train(_RNNNet(3.0, "tanh"), 1e-3 * x, y, steps=2, lr=1e-3)
    [finding] = report.by_kind("exploding")
    assert finding.where == "rnn"
    assert "the gradient norm of 'rnn' (input side)" in finding.evidence


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_an_rnn_s_own_saturated_or_dead_share_is_measured(nonlinearity: str) -> None:
    x, y = _sequences()
    torch.manual_seed(0)
    model = _RNNNet(3.0, nonlinearity)
    with torch.no_grad():
        h = model.rnn(x)[0].double()                        # (batch, time, hidden)
    report = _train(model, x, y, steps=1, lr=1e-3)
    if nonlinearity == "tanh":                              # tanh' = 1 - h² below 0.01
        assert report.saturated == {"rnn": [float((h.abs() > math.sqrt(0.99)).double().mean())]}
        assert report.dead == {}
    else:                                                   # units 0 at every example and step
        assert report.dead == {"rnn": [float((h == 0).all(0).all(0).double().mean())]}
        assert report.saturated == {}


def test_an_rnn_s_growth_through_time_is_its_last_step_s_rms_over_its_first() -> None:
    x, y = _sequences()
    torch.manual_seed(0)
    model = _RNNNet(1.5)
    with torch.no_grad():
        h = model.rnn(x)[0].double()                        # (batch, time, hidden)
    report = _train(model, x, y, steps=1, lr=1e-3)
    expected = float(h[:, -1].pow(2).mean().sqrt() / h[:, 0].pow(2).mean().sqrt())
    assert report.time_growth["rnn"] == [pytest.approx(expected, rel=1e-6)]


class _Exp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)                       # overflows float32 above about 88.7


class _NaiveSoftmax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = torch.exp(x)                          # no max subtracted: inf / inf = nan
        return e / e.sum(-1, keepdim=True)


class _SafeSqrt(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Finite forward; the backward of sqrt at the negative entries is 0/nan = nan (the
        # well-known torch.where trap).
        return torch.where(x > 0, x.sqrt(), torch.zeros_like(x))


@pytest.mark.parametrize(("culprit", "phase"), [(_Exp, "forward"), (_NaiveSoftmax, "forward"),
                                                 (_SafeSqrt, "backward")])
def test_the_module_that_emits_inf_or_nan_is_named(culprit: type[nn.Module], phase: str) -> None:
    model = nn.Sequential(OrderedDict(fc0=nn.Linear(32, 64), act0=nn.ReLU(),
                                      fc1=nn.Linear(64, 64), culprit=culprit(),
                                      fc2=nn.Linear(64, 10)))
    with torch.no_grad():
        model.fc1.weight.mul_(200.0)
    x, y = _batch()
    report = _train(model, x, y, steps=2)
    [finding] = report.by_kind("nonfinite")
    assert finding.where == "culprit"
    assert finding.step == 0
    assert finding.chapter == CHAPTERS["nonfinite"]
    if phase == "forward":
        assert "forward output of 'culprit'" in finding.evidence
    else:
        assert "passes back to its input" in finding.evidence
        assert report.first_nonfinite_loss_step is None
        assert report.first_nonfinite_gradient_step == 0


def test_a_loss_that_overflows_is_blamed_on_the_loss() -> None:
    model = nn.Sequential(nn.Linear(32, 10))
    x, y = _batch()
    report = _train(model, x, y, steps=1,
                    loss_fn=lambda out, t: (out.pow(2) * 1e38).sum())
    assert report.by_kind("nonfinite")[0].where == "loss"


def test_a_nonfinite_batch_is_blamed_on_the_input() -> None:
    model = nn.Sequential(nn.Linear(32, 10))
    x, y = _batch()
    x[3, 4] = math.nan
    assert _train(model, x, y, steps=1).by_kind("nonfinite")[0].where == "input"


def test_fp16_underflow_without_a_scaler() -> None:
    model = _mlp(nn.ReLU, depth=3).half()
    x, y = _batch()

    def tiny(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return CE(out.float(), target) * 1e-6      # its gradients are below float16's 6e-8

    report = _train(model, x.half(), y, steps=3, loss_fn=tiny)
    [finding] = report.by_kind("loss_scale")
    assert finding.where == "fc0"
    assert "without a GradScaler" in finding.evidence
    normal = _train(_mlp(nn.ReLU, depth=3).half(), x.half(), y, steps=3)
    assert "loss_scale" not in normal.kinds()


def test_a_gradscaler_that_skips_most_steps() -> None:
    model = nn.Sequential(OrderedDict(fc0=nn.Linear(32, 64), blow=_Exp(), fc1=nn.Linear(64, 10)))
    with torch.no_grad():
        model.fc0.weight.mul_(100.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu")
    x, y = _batch()
    with Doctor(model, opt, scaler, sample_every=1) as doctor:
        for _ in range(6):
            opt.zero_grad()
            out = model(x)
            loss = CE(torch.nan_to_num(out, posinf=1e4, neginf=-1e4), y)
            scaler.scale(loss).backward()
            doctor.step(loss)
            scaler.step(opt)
            scaler.update()
        report = doctor.report()
    assert "loss_scale" in report.kinds()
    assert len(report.skipped_steps) >= 4
    assert "nonfinite" not in report.kinds()       # the scaler handles non-finite gradients


def test_gradscaler_scale_is_divided_out() -> None:
    torch.manual_seed(1)
    model = _mlp(nn.ReLU, depth=3)
    twin = copy.deepcopy(model)
    x, y = _batch()
    plain = _train(twin, x, y, steps=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with Doctor(model, opt, scaler) as doctor:
        for _ in range(2):
            opt.zero_grad()
            loss = CE(model(x), y)
            scaler.scale(loss).backward()
            doctor.step(loss)
            scaler.step(opt)
            scaler.update()
        scaled = doctor.report()
    assert scaled.loss_scale[0] == 1024.0
    np.testing.assert_allclose(scaled.gradient_norms, plain.gradient_norms, rtol=1e-5)


def test_update_ratio_too_small_and_too_large() -> None:
    x, y = _batch()
    slow = _train(_mlp(nn.ReLU, depth=4), x, y, steps=4, lr=1e-7)
    [finding] = slow.by_kind("update_ratio")
    assert "below 1e-05" in finding.evidence
    fast = _train(_mlp(nn.ReLU, depth=4), x, y, steps=4, lr=20.0)
    assert "above 0.1" in fast.by_kind("update_ratio")[0].evidence


def test_update_ratio_is_the_actual_change_for_adam() -> None:
    x, y = _batch()
    model = _mlp(nn.ReLU, depth=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = model.fc0.weight.detach().clone()
    with Doctor(model, opt, sample_every=1) as doctor:
        opt.zero_grad()
        loss = CE(model(x), y)
        loss.backward()
        doctor.step(loss)
        opt.step()
        report = doctor.report()
    expected = float((model.fc0.weight.detach() - before).double().norm() / before.double().norm())
    assert report.update_ratio[0, 0] == pytest.approx(expected, rel=1e-5)
    assert UPDATE_RATIO_LOW < expected < UPDATE_RATIO_HIGH


def test_clipping_most_steps_suggests_the_90th_percentile() -> None:
    x, y = _batch()
    report = _train(_mlp(nn.ReLU, depth=4), x, y, steps=6, clip=1e-3)
    [finding] = report.by_kind("clipping")
    assert "90th percentile" in finding.evidence and "6 of 6" in finding.evidence
    np.testing.assert_allclose(report.optimizer_norm, 1e-3, rtol=1e-3)
    unclipped = _train(_mlp(nn.ReLU, depth=4), x, y, steps=6, clip=1e6)
    assert "clipping" not in unclipped.kinds()


def test_saturated_sigmoid_layer_is_named() -> None:
    x, y = _batch()
    model = _mlp(nn.Sigmoid, depth=4, init="default")
    with torch.no_grad():
        model.fc1.weight.mul_(100.0)
    report = _train(model, x, y, steps=3)
    assert report.by_kind("saturation")[0].where == "act1"


# ------------------------------------------------------------------------------------------------
# Healthy models get no vanishing/exploding finding
# ------------------------------------------------------------------------------------------------

class _ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(width)
        self.act = nn.ReLU()
        self.linear = nn.Linear(width, width)
        nn.init.kaiming_normal_(self.linear.weight, nonlinearity="relu")
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(self.act(self.norm(x)))


class _ResMLP(nn.Module):
    def __init__(self, depth: int = 20, width: int = 32) -> None:
        super().__init__()
        self.inp = nn.Linear(32, width)
        self.blocks = nn.Sequential(*[_ResBlock(width) for _ in range(depth)])
        self.out = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.inp(x)))


class _TinyLM(nn.Module):
    def __init__(self, vocab: int = 32, width: int = 32, context: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.zeros(context, width))   # owned by the model itself
        layer = nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.1, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position[: tokens.shape[1]]
        return self.head(self.norm(self.encoder(h, mask=self.mask, is_causal=True)))


def _lm_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return CE(out.reshape(-1, out.shape[-1]), target.reshape(-1))


def test_healthy_residual_relu_he_batchnorm_model() -> None:
    x, y = _batch(64)
    model = _ResMLP()
    report = _train(model, x, y, steps=20,
                    optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                    sample_every=5)
    assert not {"vanishing", "exploding", "nonfinite"} & report.kinds(), str(report)
    assert report.healthy, str(report)


def test_healthy_small_transformer() -> None:
    tokens = torch.randint(0, 32, (8, 17), generator=torch.Generator().manual_seed(0))
    model = _TinyLM()
    report = _train(model, tokens[:, :-1], tokens[:, 1:], steps=20, loss_fn=_lm_loss,
                    optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3), sample_every=5)
    assert not {"vanishing", "exploding", "nonfinite"} & report.kinds(), str(report)
    assert report.healthy, str(report)
    # MultiheadAttention's in_proj_weight is a layer, out_proj (never called) follows it, and the
    # model's own positional matrix comes first: layers are in forward order.
    names = report.layers
    assert names[0] == "" and names[1] == "embed" and names[-1] == "head"
    attention = names.index("encoder.layers.0.self_attn")
    assert names[attention + 1] == "encoder.layers.0.self_attn.out_proj"


# ------------------------------------------------------------------------------------------------
# Bad input: clear errors
# ------------------------------------------------------------------------------------------------

def test_model_without_parameters() -> None:
    with pytest.raises(ValueError, match="has no trainable parameters"):
        Doctor(nn.ReLU())
    frozen = nn.Linear(3, 3).requires_grad_(False)
    with pytest.raises(ValueError, match=r"\(2 frozen\)"):
        Doctor(frozen)


def test_step_before_backward() -> None:
    model = nn.Linear(3, 3)
    doctor = Doctor(model)
    with pytest.raises(RuntimeError, match=r"call loss.backward\(\) before doctor.step"):
        doctor.step(model(torch.randn(2, 3)).sum())


def test_loss_that_is_not_a_scalar() -> None:
    model = nn.Linear(3, 3)
    doctor = Doctor(model)
    out = model(torch.randn(2, 3))
    out.sum().backward()
    with pytest.raises(ValueError, match=r"got shape \(2, 3\): reduce it first"):
        doctor.step(out)
    with pytest.raises(ValueError, match="scalar tensor or a number"):
        doctor.step("0.5")  # type: ignore[arg-type]


def test_other_bad_arguments() -> None:
    model = nn.Linear(3, 3)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Doctor(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_every must be a positive integer, got 0"):
        Doctor(model, sample_every=0)
    other = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="none of the model's trainable parameters"):
        Doctor(model, other)
    with pytest.raises(RuntimeError, match="no step recorded"):
        Doctor(model).report()
    doctor = Doctor(model)
    doctor.detach()
    with pytest.raises(RuntimeError, match="detached"):
        doctor.step(1.0)


def _message(error: type[Exception], call: Callable[[], object]) -> str:
    with pytest.raises(error) as caught:
        call()
    return str(caught.value)


def test_every_refusal_word_for_word() -> None:
    model = nn.Linear(3, 3)
    advice = ("the doctor reads the gradients of parameters; attach it to the model you train, "
              "with requires_grad=True on what it learns")
    assert _message(ValueError, lambda: Doctor(nn.ReLU())) == (
        f"model ReLU has no trainable parameters: {advice}")
    assert _message(ValueError, lambda: Doctor(nn.Linear(3, 3).requires_grad_(False))) == (
        f"model Linear has no trainable parameters (2 frozen): {advice}")
    assert _message(TypeError, lambda: Doctor(object())) == (  # type: ignore[arg-type]
        "model must be a torch.nn.Module, got object")
    for kwargs, shown in (({"sample_every": 0}, "sample_every must be a positive integer, got 0"),
                          ({"sample_every": 2.0}, "sample_every must be a positive integer, got "
                                                  "2.0"),
                          ({"sync_every": True}, "sync_every must be a positive integer, got "
                                                 "True"),
                          ({"sync_every": -1}, "sync_every must be a positive integer, got -1")):
        assert _message(ValueError, lambda k=kwargs: Doctor(model, **k)) == shown  # type: ignore
    Doctor(model, sample_every=1, sync_every=1).detach()          # 1 is allowed
    assert _message(TypeError, lambda: Doctor(model, object())) == (  # type: ignore[arg-type]
        "optimizer must be a torch.optim.Optimizer, got object")
    other = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    assert _message(ValueError, lambda: Doctor(model, other)) == (
        "optimizer holds none of the model's trainable parameters: pass the optimizer that "
        "trains this model")
    assert _message(TypeError, lambda: Doctor(model, scaler=object())) == (
        "scaler must be a torch.amp.GradScaler, got object")
    lazy = nn.Sequential(nn.LazyLinear(4), nn.Linear(4, 2))
    assert _message(ValueError, lambda: Doctor(lazy)) == (
        "parameters 0.weight, 0.bias are not initialized yet (lazy modules): run one forward "
        "pass before attaching the doctor")
    assert _message(RuntimeError, lambda: Doctor(model).report()) == (
        "no step recorded yet: call doctor.step(loss) after each loss.backward()")
    doctor = Doctor(model)
    assert _message(RuntimeError, lambda: doctor.step(1.0)) == (
        "no parameter has a gradient yet: call loss.backward() before doctor.step(loss)")
    out = model(torch.randn(2, 3))
    out.sum().backward()
    assert _message(ValueError, lambda: doctor.step(out)) == (
        "loss must be a scalar (0-d or one-element tensor), got shape (2, 3): reduce it first "
        "(loss.mean() or loss.sum()) and call backward on that")
    for bad, kind in (("0.5", "str"), (True, "bool")):
        assert _message(ValueError, lambda b=bad: doctor.step(b)) == (  # type: ignore[misc]
            f"loss must be a scalar tensor or a number, got {kind}")
    doctor.step(torch.tensor([2.0]))                                # one element is a scalar
    doctor.step(3)                                                  # so is an int
    assert doctor.report().loss.tolist() == [2.0, 3.0]
    doctor.detach()
    assert _message(RuntimeError, lambda: doctor.step(1.0)) == (
        "this doctor was detached: create a new Doctor(model, ...)")


# ------------------------------------------------------------------------------------------------
# The model is left exactly as found
# ------------------------------------------------------------------------------------------------

def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Bitwise equal (nan included) state dicts."""
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(a[k].reshape(-1).view(torch.uint8),
                                                 b[k].reshape(-1).view(torch.uint8))
        for k in a)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def test_training_with_the_doctor_is_bitwise_the_training_without() -> None:
    torch.manual_seed(3)
    base = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(64, 10))
    runs = []
    for with_doctor in (False, True):
        model = copy.deepcopy(base)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        x, y = _batch()
        torch.manual_seed(7)
        doctor = Doctor(model, opt, sample_every=2) if with_doctor else None
        for _ in range(6):
            opt.zero_grad()
            loss = CE(model(x), y)
            loss.backward()
            if doctor is not None:
                doctor.step(loss)
            opt.step()
        if doctor is not None:
            doctor.report()
            doctor.detach()
        runs.append((_state(model), torch.get_rng_state()))
    (a, rng_a), (b, rng_b) = runs
    assert _same(a, b)
    assert torch.equal(rng_a, rng_b)


def test_detach_removes_every_hook() -> None:
    model = _mlp(nn.ReLU, depth=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    doctor = Doctor(model, opt)        # armed for step 0: sampling hooks are in place
    assert _hooks(model) > 0
    doctor.detach()
    assert _hooks(model) == 0
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_the_rerun_of_a_failing_step_leaves_no_trace() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc0=nn.Linear(32, 64), drop=nn.Dropout(0.5), blow=_Exp(),
                                      norm=nn.BatchNorm1d(64), fc1=nn.Linear(64, 10)))
    with torch.no_grad():
        model.fc0.weight.mul_(100.0)
    doctor = Doctor(model)
    x, y = _batch()
    loss = CE(model(x), y)
    loss.backward()
    state, grads, rng = _state(model), [p.grad.clone() for p in model.parameters()], \
        torch.get_rng_state()
    doctor.step(loss)                   # re-runs the step to find the module
    assert doctor.report().by_kind("nonfinite")[0].where == "blow"
    assert _same(state, _state(model))                           # BN statistics included
    assert _same({str(i): g for i, g in enumerate(grads)},
                 {str(i): p.grad for i, p in enumerate(model.parameters())})
    assert torch.equal(rng, torch.get_rng_state())
    assert model.training


def test_frozen_and_unused_parameters() -> None:
    class Partly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frozen = nn.Linear(32, 64).requires_grad_(False)
            self.used = nn.Linear(64, 10)
            self.unused = nn.Linear(64, 64)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(torch.relu(self.frozen(x)))

    x, y = _batch()
    report = _train(Partly(), x, y, steps=3)
    assert "frozen" not in report.layers
    assert any("unused" in note for note in report.notes)
    assert np.isnan(report.gradient_norms[:, report.layers.index("unused")]).all()


# ------------------------------------------------------------------------------------------------
# The report, checkup, sync_every, the benchmark
# ------------------------------------------------------------------------------------------------

def test_report_renders_as_text_figure_and_self_contained_html() -> None:
    x, y = _batch()
    report = _train(_mlp(nn.Sigmoid, depth=12, init="default"), x, y, steps=8)
    text = str(report)
    assert "[vanishing] at 'fc0'" in text and "learn why:" in text
    page = report.to_html()                       # draws the figure (its axes: test_doctor_report)
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert "vanishing" in page and "fc0" in page
    assert "http" not in page                     # self-contained: nothing fetched from elsewhere
    # (``_repr_html_`` is ``to_html``: tests/test_doctor_report.py)
    assert set(report.kinds()) <= set(KINDS)


def test_checkup_leaves_the_model_as_it_was() -> None:
    model = _mlp(nn.Sigmoid, depth=20, init="default")
    model.eval()
    state, rng = _state(model), torch.get_rng_state()
    x, y = _batch()
    report = checkup(model, x, y, CE, steps=5,
                     optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert report.by_kind("vanishing")[0].where == "fc0"
    assert report.steps == 5
    assert _same(state, _state(model))
    assert all(p.grad is None for p in model.parameters())
    assert not model.training and torch.equal(rng, torch.get_rng_state())
    assert checkup(model, x, y, CE, steps=2).steps == 2         # default optimizer: Adam
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        checkup(model, x, y, CE, steps=0)


def test_sync_every_gives_the_same_norms() -> None:
    x, y = _batch()
    torch.manual_seed(5)
    model = _mlp(nn.ReLU, depth=4)
    twin = copy.deepcopy(model)
    every = _train(model, x, y, steps=5)
    batched = _train(twin, x, y, steps=5, sync_every=3)
    np.testing.assert_allclose(every.gradient_norms, batched.gradient_norms, rtol=1e-5)
    np.testing.assert_allclose(every.update_ratio, batched.update_ratio, rtol=1e-4)


def test_benchmark_measures_a_ratio() -> None:
    from gradpath.book.doctor_bench import format_table, measure, mlp

    x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
    result = measure("tiny", lambda: mlp(depth=3, width=16), lambda t: (x, y),
                     rounds=2, steps=3, warmup=1)
    assert result.ratio > 0 and result.bare_ms > 0
    assert "| tiny |" in format_table([result])


def test_the_device_path_gives_the_cpu_path_report() -> None:
    # On a GPU the doctor keeps its measurements on the device and moves them in one transfer per
    # step; force that path on the CPU and compare with the direct one.
    x, y = _batch()
    torch.manual_seed(2)
    model = _mlp(nn.ReLU, depth=4)
    twin = copy.deepcopy(model)
    direct = _train(model, x, y, steps=4, clip=0.5)
    opt = torch.optim.SGD(twin.parameters(), lr=0.05)
    with Doctor(twin, opt, sample_every=1) as doctor:
        doctor._on_cpu = False
        for _ in range(4):
            opt.zero_grad(set_to_none=True)
            loss = CE(twin(x), y)
            loss.backward()
            doctor.step(loss)
            nn.utils.clip_grad_norm_(twin.parameters(), 0.5)
            opt.step()
        device_path = doctor.report()
    for name in ("gradient_norms", "update_ratio", "activation_rms", "optimizer_norm", "loss"):
        np.testing.assert_allclose(getattr(device_path, name), getattr(direct, name), rtol=1e-5)
    assert device_path.dead == direct.dead
    assert device_path.kinds() == direct.kinds()


def test_models_without_weight_matrices_and_single_layers(recwarn: pytest.WarningsRecorder
                                                          ) -> None:
    norm = nn.LayerNorm(4)
    doctor = Doctor(norm)
    norm(torch.randn(3, 4)).sum().backward()
    doctor.step(torch.tensor(1.0))
    report = doctor.report()
    assert report.layers == [] and report.healthy
    report.figure()
    linear = nn.Linear(4, 2)
    opt = torch.optim.SGD(linear.parameters(), lr=1e-3)
    single = _train(linear, torch.randn(3, 4), torch.randint(0, 2, (3,)), steps=1, optimizer=opt)
    assert single.layers == [""]                      # the model itself is its only layer
    assert "(model)" in str(single)
    single.figure()
    assert not [w for w in recwarn if "matplotlib" in str(w.filename) or "ylim" in str(w.message)]


class _OwnsOneMatrix(nn.Module):
    """A model that owns a weight matrix and calls one nested layer."""

    def __init__(self) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.ones(3, 3))
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x + self.position)


def test_a_container_layer_s_output_is_not_its_own_even_with_one_nested_layer() -> None:
    model = _OwnsOneMatrix()
    doctor = Doctor(model, sample_every=1)
    model(torch.randn(3, 3)).sum().backward()
    doctor.step(1.0)
    report = doctor.report()
    assert report.layers == ["", "lin"]
    assert math.isnan(report.activation_rms[0, 0]) and math.isfinite(report.activation_rms[0, 1])


def test_a_zero_weight_matrix_gives_no_numpy_warning() -> None:
    import warnings

    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    nn.init.zeros_(model[1].weight)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = _train(model, x, y, steps=1)
    # ‖ΔW‖/‖W‖ of a zero matrix that moved is infinite
    assert math.isinf(report.update_ratio[0, 1]) and math.isfinite(report.update_ratio[0, 0])


class _WithSpare(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.spare, self.b = nn.Linear(3, 4), nn.Linear(2, 2), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def test_the_notes_word_for_word() -> None:
    model = _WithSpare()
    doctor = Doctor(model)
    model(torch.randn(5, 3)).sum().backward()
    doctor.step(1.0)
    assert doctor.report().notes == [
        "no optimizer given: update ratios and clipping were not measured (Doctor(model, "
        "optimizer))",
        "never received a gradient (unused?): spare"]


def test_lazy_modules_must_run_once_first() -> None:
    lazy = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="run one forward pass before attaching"):
        Doctor(lazy)
    lazy(torch.randn(2, 3))
    Doctor(lazy).detach()


def test_a_step_with_two_forward_calls_is_searched_in_full() -> None:
    # The first call is finite, the second overflows in 'blow': the loss must not be blamed.
    model = nn.Sequential(OrderedDict(fc0=nn.Linear(32, 64), blow=_Exp(), fc1=nn.Linear(64, 10)))
    doctor = Doctor(model)
    x, y = _batch()
    loss = CE(model(0.01 * x), y) + CE(model(1000.0 * x), y)
    loss.backward()
    doctor.step(loss)
    [finding] = doctor.report().by_kind("nonfinite")
    assert finding.where == "blow" and "forward output of 'blow'" in finding.evidence


class _KeywordLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(input=x)                 # the hook sees no positional input


def test_a_layer_called_by_keyword_without_activation_modules() -> None:
    model = _KeywordLayer()
    doctor = Doctor(model, sample_every=1)
    model(torch.randn(4, 3)).sum().backward()
    doctor.step(1.0)
    assert doctor.report().layers == ["lin"]


def test_a_forward_without_gradients_is_not_sampled() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    doctor = Doctor(model, sample_every=1)
    x = torch.randn(8, 3)
    with torch.no_grad():
        model(-1000.0 * x)                       # an evaluation pass first: not the step's
    out = model(x)
    out.sum().backward()
    doctor.step(1.0)
    report = doctor.report()
    rms = float(out.detach().double().pow(2).mean().sqrt())
    assert report.activation_rms[0, 1] == pytest.approx(rms, rel=1e-6)


def test_one_activation_module_used_twice_is_sampled_at_each_call() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.relu = nn.Linear(3, 4), nn.Linear(4, 2), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.b(self.relu(self.a(x)))) + self.relu(x[:, :2])

    model = Shared()
    doctor = Doctor(model, sample_every=1)
    model(torch.randn(8, 3)).sum().backward()
    doctor.step(1.0)
    assert sorted(doctor.report().dead) == ["relu", "relu (call 2)", "relu (call 3)"]


class _SpareFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.spare, self.a, self.b = nn.Linear(2, 2), nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def test_a_layer_never_called_keeps_its_registered_place() -> None:
    model = _SpareFirst()
    doctor = Doctor(model, sample_every=1)
    model(torch.randn(5, 3)).sum().backward()
    doctor.step(1.0)
    report = doctor.report()
    assert report.layers == ["spare", "a", "b"]
    assert report.notes[-1] == "never received a gradient (unused?): spare"


def test_gradients_unscaled_before_the_doctor_are_not_divided_again() -> None:
    torch.manual_seed(1)
    model = _mlp(nn.ReLU, depth=3)
    twin = copy.deepcopy(model)
    x, y = _batch()
    plain = _train(twin, x, y, steps=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with Doctor(model, opt, scaler, sample_every=1) as doctor:
        opt.zero_grad()
        loss = CE(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)                     # e.g. to clip: the doctor sees true gradients
        doctor.step(loss)
        scaler.step(opt)
        scaler.update()
        report = doctor.report()
    np.testing.assert_allclose(report.gradient_norms, plain.gradient_norms, rtol=1e-5)


def test_the_update_ratio_of_weights_whose_float32_norm_underflows() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.fill_(1e-30)             # squares underflow float32: norm redone
    before = model[1].weight.detach().double().clone()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    with Doctor(model, opt, sample_every=1) as doctor:
        model(torch.randn(5, 3)).sum().backward()
        doctor.step(1.0)
        opt.step()
        report = doctor.report()
    after = model[1].weight.detach().double()
    # ΔW is taken in float32 as the doctor takes it, ‖W‖ in float64
    delta = (before.float() - after.float()).double().norm()
    assert report.update_ratio[0, 1] == pytest.approx(float(delta / before.norm()), rel=1e-6)


def test_without_any_activation_measurement_a_note_says_so() -> None:
    model = nn.Linear(3, 2)
    doctor = Doctor(model, torch.optim.SGD(model.parameters(), lr=0.1))
    model(torch.randn(3)).sum().backward()      # one example, 1-D: no inputs to count as dead
    doctor.step(1.0)
    assert doctor.report().notes == [
        "no nn.ReLU/nn.Sigmoid/nn.Tanh modules: dead and saturated fractions were not measured "
        "(activations called as functions are invisible to hooks)"]


def test_a_forward_overflow_is_named_with_its_class() -> None:
    model = nn.Sequential(OrderedDict(fc0=nn.Linear(32, 64), blow=_Exp(), fc1=nn.Linear(64, 10)))
    x, y = _batch()
    report = _train(model, 1000.0 * x, y, steps=1)
    [finding] = report.by_kind("nonfinite")
    assert "the forward output of 'blow' (_Exp) holds " in finding.evidence
    assert finding.evidence.endswith(" entries (re-ran the step)")
