"""Tests for gradpath.experiments.capstone (chapter 12)."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from gradpath.data import teacher_classification
from gradpath.doctor import KINDS
from gradpath.experiments.capstone import (
    ABLATIONS,
    DECISION_GUIDE,
    DECISION_GUIDE_EXTRA,
    FIXES,
    OPTIMIZER_NAMES,
    PixelRNN,
    SmallCNN,
    StackedMLP,
    TanhMLP,
    ablation,
    adaptive_rate_spread,
    build_recipe_model,
    decision_guide_markdown,
    first_adam_step,
    full_recipe,
    ladder,
    optimizer_update,
    run_gradient_norms,
    torch_optimizer,
    train_recipe,
    train_recipe_seeds,
    train_recipe_variants,
    train_with_doctor,
    warmup_schedule,
)

SETTINGS = {"sgd": {"lr": 0.1}, "momentum": {"lr": 0.05, "beta1": 0.9},
            "rmsprop": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8},
            "adam": {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
            "adamw": {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                      "weight_decay": 0.1}}


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_written_out_optimizers_match_torch(name: str, dtype: torch.dtype, tol: float) -> None:
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(5, 4, generator=gen, dtype=dtype)
    # gradients over several decades, so Adam's bias correction and eps both matter
    grads = [torch.randn(5, 4, generator=gen, dtype=dtype) * 10.0 ** torch.randint(
        -4, 2, (5, 4), generator=gen).to(dtype) for _ in range(8)]
    p = torch.nn.Parameter(start.clone())
    opt = torch_optimizer(name, [p], **SETTINGS[name])
    mine, state = start.clone(), {}
    for g in grads:
        p.grad = g.clone()
        opt.step()
        mine = optimizer_update(name, mine, g, state, **SETTINGS[name])
        assert torch.allclose(mine, p.detach(), rtol=0, atol=tol), name


def test_adam_weight_decay_is_l2_and_adamw_decoupled() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch_optimizer("adam", [p], lr=1e-2, weight_decay=0.1)
    mine, state = torch.ones(3), {}
    for _ in range(4):
        p.grad = torch.full((3,), 0.5)
        opt.step()
        mine = optimizer_update("adam", mine, torch.full((3,), 0.5), state, lr=1e-2,
                                weight_decay=0.1)
    assert torch.allclose(mine, p.detach(), atol=1e-7)


def test_bias_correction_first_step() -> None:
    g = torch.tensor([1e-4, 1e-2, 1.0, 100.0, -3.0])
    corrected = first_adam_step(g, lr=1e-3)
    assert torch.allclose(corrected, torch.full_like(g, 1e-3), rtol=1e-4)
    raw = first_adam_step(g, lr=1e-3, bias_correction=False)
    assert torch.allclose(raw, torch.full_like(g, 1e-3 * 0.1 / math.sqrt(0.001)), rtol=1e-2)


def test_optimizer_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        optimizer_update("lion", torch.zeros(2), torch.zeros(2), {}, lr=0.1)
    with pytest.raises(ValueError, match="shape"):
        optimizer_update("sgd", torch.zeros(2), torch.zeros(3), {}, lr=0.1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        torch_optimizer("lion", [torch.nn.Parameter(torch.zeros(1))], lr=0.1)


def test_adaptive_rate_spread_falls_with_steps() -> None:
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(64, 100, generator=gen) * torch.rand(1, 100, generator=gen)
    spread = adaptive_rate_spread(grads, [1, 4, 16, 64])
    assert all(a > b for a, b in zip(spread, spread[1:], strict=False))
    assert spread[0] > 4 * spread[-1]
    with pytest.raises(ValueError, match="shape"):
        adaptive_rate_spread(torch.zeros(3), [1])
    with pytest.raises(ValueError, match="steps"):
        adaptive_rate_spread(torch.ones(3, 2), [0])


def test_warmup_schedule() -> None:
    assert warmup_schedule(0, 100, 0.0) == 1.0
    assert warmup_schedule(0, 100, 0.1) == pytest.approx(0.1)
    assert warmup_schedule(4, 100, 0.1) == pytest.approx(0.5)
    assert warmup_schedule(9, 100, 0.1) == 1.0 and warmup_schedule(50, 100, 0.1) == 1.0


def test_ladder_and_ablation_change_one_thing() -> None:
    rungs = list(ladder().values())
    assert len(rungs) == len(FIXES) + 1
    for (_, change), before, after in zip(FIXES, rungs[:-1], rungs[1:], strict=True):
        diff = {k for k, v in asdict(after).items() if asdict(before)[k] != v}
        assert diff == set(change)
    full = asdict(full_recipe())
    abl = ablation()
    assert len(abl) == len(ABLATIONS) + 1
    for (label, change), recipe in zip(ABLATIONS, list(abl.values())[1:], strict=True):
        diff = {k for k, v in asdict(recipe).items() if full[k] != v}
        assert diff == {k for k in change if full[k] != change[k]}, label


@pytest.mark.parametrize("recipe", list(ladder().values()) + list(ablation().values()))
def test_stacked_mlp_computes_each_model(recipe) -> None:
    models = [build_recipe_model(recipe, 6, 3, width=8, depth=5, seed=s) for s in (0, 1)]
    stacked = StackedMLP(models)
    x = torch.randn(2, 7, 6)
    out = stacked(x)
    for r, m in enumerate(models):
        assert torch.allclose(out[r], m(x[r]), atol=1e-5)


def test_seed_runs_match_single_runs() -> None:
    data = teacher_classification(128, 6, 3, seed=0)
    train, test = data.split(0.25, seed=0)
    for recipe in (full_recipe(), list(ladder().values())[0]):
        single = train_recipe(recipe, train, test, steps=12, batch_size=16, width=8, depth=5,
                              seed=1, sample_every=4)
        both = train_recipe_seeds(recipe, train, test, steps=12, batch_size=16, width=8,
                                  depth=5, seeds=[0, 1])
        assert np.allclose(single.loss, both.loss[1], rtol=1e-4, atol=1e-5)
        assert single.accuracy == pytest.approx(both.accuracy[1], abs=1e-9)
        assert single.report.steps == 12
        assert both.spread >= 0 and 0 <= both.mean <= 1


def test_recipe_variants_match_single_runs() -> None:
    # one stack per architecture and optimizer; per run its own init, warm-up, clip and rate
    data = teacher_classification(128, 6, 3, seed=0)
    train, test = data.split(0.25, seed=0)
    full = full_recipe()
    sgd = replace(full, optimizer="sgd", warmup=0.0)
    variants = {"full": (full, None), "slow": (full, {"adam": 1e-3}),
                "no warm-up": (replace(full, warmup=0.0), None),
                "no clip": (replace(full, clip=None), {"adam": 3e-3}),
                "default init": (replace(full, init="pytorch_default"), None),
                "again": (full, None),
                "sgd": (replace(sgd, warmup=0.2), {"sgd": 0.05}), "sgd clip": (sgd, None),
                "plain": (list(ladder().values())[1], None)}
    kw = dict(steps=12, batch_size=16, width=8, depth=5)
    out = train_recipe_variants(variants, train, test, seeds=[0, 1], **kw)
    assert list(out) == list(variants)
    assert out["again"] is out["full"]                      # identical variants train once
    for key, (recipe, lrs) in variants.items():
        single = train_recipe(recipe, train, test, seed=1, lrs=lrs, sample_every=4, **kw)
        assert np.allclose(single.loss, out[key].loss[1], rtol=1e-4, atol=1e-5), key
        assert single.accuracy == pytest.approx(out[key].accuracy[1], abs=1e-9), key
    assert not np.allclose(out["full"].loss, out["slow"].loss)
    with pytest.raises(ValueError, match="rmsprop"):
        train_recipe_variants({0: (replace(full, optimizer="rmsprop"), None)}, train, test,
                              seeds=[0], **kw)
    with pytest.raises(ValueError, match="exact only for plain SGD and Adam"):
        train_recipe_variants({0: (replace(full, optimizer="momentum"), {"momentum": 0.1})},
                              train, test, seeds=[0], **kw)


def test_run_gradient_norms_match_the_per_layer_computation() -> None:
    # the fused recording of the stacked trainer against one reduction per layer, in float64,
    # with entries whose float32 squares overflow (1e20) or underflow (1e-26)
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, 5, generator=gen), torch.randn(3, 1, 5, generator=gen)]
    grads[0][0, 1, 2] = 1e20
    grads[1][1, 0, :] = 1e-26
    grads[0][1] *= 1e-26
    grads[1][2, 0, 3] = float("nan")
    grads[0][2, 0, 0] = float("inf")
    finite, norm = run_gradient_norms(grads)
    per_layer = torch.stack([torch.nan_to_num(g.double(), nan=0.0, posinf=0.0, neginf=0.0)
                             .flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    assert finite.tolist() == [True, True, False]
    assert norm.dtype == torch.float64
    assert torch.allclose(norm, per_layer, rtol=1e-12, atol=0)
    assert norm[0] == pytest.approx(float(grads[0][0, 1, 2]), rel=1e-12)   # float32(1e20)
    tiny = torch.cat([grads[0][1].flatten(), grads[1][1].flatten()]).double()
    assert norm[1] == pytest.approx(float(tiny.pow(2).sum().sqrt()), rel=1e-12)
    assert 0 < norm[1] < 1e-20                                # neither 0 nor float32's inf
    # the same runs without the non-finite one take the fast path (one float64 sum, no check
    # entry by entry) and must give the same norms
    finite_fast, norm_fast = run_gradient_norms([g[:2] for g in grads])
    assert finite_fast.all() and torch.allclose(norm_fast, per_layer[:2], rtol=1e-12, atol=0)


def test_seed_runs_stop_a_broken_run() -> None:
    data = teacher_classification(64, 6, 3, seed=0)
    train, test = data.split(0.25, seed=0)
    runs = train_recipe_seeds(list(ladder().values())[2], train, test, steps=6, batch_size=16,
                              width=8, depth=4, seeds=[0, 1], lrs={"sgd": 1e30})
    assert any(b is not None for b in runs.broke)
    for r, b in enumerate(runs.broke):
        if b is not None:
            assert np.isnan(runs.loss[r, b:]).all()
            assert runs.accuracy[r] == pytest.approx(1 / 3)


def test_reader_models_and_doctor_loop() -> None:
    data = teacher_classification(96, 64, 10, seed=0)
    train, test = data.split(0.25, seed=0)
    for model in (SmallCNN(), PixelRNN("lstm", hidden=8), PixelRNN("relu_rnn", hidden=8,
                                                                   recurrent_gain=1.0),
                  TanhMLP(64, 10, width=8, depth=3), TanhMLP(64, 10, width=8, init_std=None)):
        assert model(train.x[:5]).shape == (5, 10)
        run = train_with_doctor(model, torch.optim.SGD(model.parameters(), lr=0.01), train,
                                test, steps=4, batch_size=16, sample_every=2)
        assert run.report.steps == 4 and 0 <= run.accuracy <= 1
    rnn = PixelRNN("relu_rnn", hidden=16, recurrent_gain=1.5)
    radius = float(torch.linalg.eigvals(rnn.rnn.weight_hh_l0.detach()).abs().max())
    assert radius == pytest.approx(1.5, rel=1e-4)
    with pytest.raises(ValueError, match="unknown cell"):
        PixelRNN("gru")
    with pytest.raises(ValueError, match="pixels_per_step"):
        PixelRNN("lstm", pixels_per_step=3)
    assert PixelRNN("relu_rnn", hidden=4, pixels_per_step=2)(torch.zeros(3, 64)).shape == (3, 10)


def test_decision_guide_uses_the_doctors_kinds() -> None:
    assert set(DECISION_GUIDE) == set(KINDS)
    table = decision_guide_markdown()
    lines = table.splitlines()
    assert all(sum(f"| `{k}` |" in line for line in lines) == 1 for k in KINDS)   # one row each
    assert len(lines) == len(KINDS) + len(DECISION_GUIDE_EXTRA) + 2
    assert all(f"| *{label}* |" in table for label in DECISION_GUIDE_EXTRA)
    assert not set(DECISION_GUIDE_EXTRA) & set(KINDS)


def test_recipe_models_depend_on_the_seed_alone() -> None:
    for recipe in (list(ladder().values())[0], full_recipe()):
        torch.manual_seed(123)
        a = build_recipe_model(recipe, 6, 3, width=8, depth=4, seed=7)
        state = torch.get_rng_state()
        torch.manual_seed(456)
        b = build_recipe_model(recipe, 6, 3, width=8, depth=4, seed=7)
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    torch.manual_seed(123)
    build_recipe_model(full_recipe(), 6, 3, width=8, depth=4, seed=7)
    assert torch.equal(torch.get_rng_state(), state)          # global RNG left as found
