"""float16 gradients alone turn on the doctor's underflow check, on the CPU path as on the device
path (a bug found while mutation-testing the doctor: the CPU path looked only at activations);
and the other gradients off the fused float32 path: a scaler's scale, a sparse gradient.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gradpath.doctor import Doctor
from torch import nn


class _HalfWeight(nn.Module):
    """A float16 weight matrix whose module returns float32: no hook sees a float16 output."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter((0.3 * torch.randn(8, 4, generator=g)).half())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.half() @ self.weight).float()


@pytest.mark.parametrize("on_cpu", [True, False], ids=["cpu path", "device path"])
def test_float16_gradients_that_underflow_are_found_on_both_paths(on_cpu: bool) -> None:
    model = _HalfWeight()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    with Doctor(model, opt, sample_every=1) as doctor:
        doctor._on_cpu = on_cpu
        for _ in range(3):
            opt.zero_grad()
            loss = model(x).sum() * 1e-9          # every gradient entry is below 6e-8
            loss.backward()
            doctor.step(loss)
            opt.step()
        report = doctor.report()
    assert report.zero_fraction[:, 0].tolist() == [1.0, 1.0, 1.0]
    [finding] = report.by_kind("loss_scale")
    assert finding.where == "" and "100% of the gradient entries of (model)" in finding.evidence
    assert "without a GradScaler" in finding.evidence


def test_a_gradscaler_not_yet_used_is_read_at_its_initial_scale() -> None:
    # Before its first scale() a GradScaler holds no scale tensor: the doctor asks get_scale().
    model = nn.Linear(3, 2)
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
    doctor = Doctor(model, scaler=scaler)
    model(torch.randn(4, 3)).sum().backward()
    doctor.step(1.0)
    assert doctor.report().loss_scale.tolist() == [512.0]


class _SparseLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed, self.head = nn.Embedding(10, 4, sparse=True), nn.Linear(4, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens))


def test_a_sparse_gradient_s_norm_is_that_of_its_dense_values() -> None:
    torch.manual_seed(0)
    model = _SparseLM()
    doctor = Doctor(model)
    out = model(torch.tensor([1, 2, 2, 7]))
    loss = nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    doctor.step(loss)
    report = doctor.report()
    dense = model.embed.weight.grad.coalesce().to_dense().double()  # type: ignore[union-attr]
    assert report.layers == ["embed", "head"]
    assert report.gradient_norms[0].tolist() == pytest.approx(
        [float(dense.norm()), float(model.head.weight.grad.double().norm())], rel=1e-6)


@pytest.mark.parametrize("sync_every", [1, 2], ids=["cpu path", "batched path"])
def test_norms_float32_cannot_hold_are_exact(sync_every: int) -> None:
    # entries 1e20 (their squares overflow float32) and 1e-30 (theirs underflow to 0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    doctor = Doctor(model, sync_every=sync_every)
    for _ in range(2):
        model.zero_grad()
        model(torch.randn(5, 3)).sum().backward()
        model[0].weight.grad.fill_(1e20)          # type: ignore[union-attr]
        model[1].weight.grad.fill_(1e-30)         # type: ignore[union-attr]
        doctor.step(1.0)
    report = doctor.report()
    exact = [1e20 * math.sqrt(12), float(torch.tensor(1e-30).double()) * math.sqrt(8)]
    for row in report.gradient_norms:
        assert row.tolist() == pytest.approx(exact, rel=1e-6)
    assert report.first_nonfinite_gradient_step is None and "nonfinite" not in report.kinds()


def test_without_float16_the_zero_share_is_not_measured() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    doctor = Doctor(model, sample_every=1)
    model(torch.randn(5, 3)).sum().backward()
    doctor.step(1.0)
    report = doctor.report()
    assert report.zero_fraction.shape == (1, 2) and np.isnan(report.zero_fraction).all()


def test_a_model_whose_only_gradient_is_sparse() -> None:
    embed = nn.Embedding(10, 4, sparse=True)
    doctor = Doctor(embed)
    embed(torch.tensor([1, 2, 2, 7])).sum().backward()
    doctor.step(1.0)
    dense = embed.weight.grad.coalesce().to_dense().double()  # type: ignore[union-attr]
    assert doctor.report().gradient_norms[0].tolist() == pytest.approx([float(dense.norm())])


class _HalfOutput(nn.Module):
    """A float32 weight matrix whose module returns float16: only the output is float16."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(0.3 * torch.randn(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.weight.t()).half()


def test_float16_activations_alone_turn_on_the_zero_share() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(_HalfOutput())
    doctor = Doctor(model, sample_every=1)
    model(torch.randn(5, 3)).float().sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())  # type: ignore[union-attr]
    doctor.step(1.0)
    assert np.isfinite(doctor.report().zero_fraction).all()


def test_the_output_rms_of_a_single_number() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    doctor = Doctor(model, sample_every=1)
    out = model(torch.randn(1, 3))
    out.sum().backward()
    doctor.step(1.0)
    assert doctor.report().activation_rms[0, 1] == pytest.approx(abs(float(out.detach())), rel=1e-6)
