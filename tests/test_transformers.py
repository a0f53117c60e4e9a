"""Chapter 10's library: the written-out transformer equals PyTorch's, and the probes are right."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gradpath.experiments.transformers import (
    Block,
    StackedTransformer,
    TokenTransformer,
    attention,
    build_models,
    deepnorm_ablation,
    deepnorm_constants,
    deepnorm_init_,
    first_update_output_change,
    layer_gradient_norms,
    loss_at,
    path_sensitivity,
    plot_warmup_runs,
    reversal_batch,
    schedule_runs,
    softmax_saturation,
    stream_statistics,
    train_stacked,
    warmup_factor,
    warmup_grid,
)
from gradpath.init import xavier_std
from gradpath.probes import gradient_norms_by_name, group_norms
from torch import nn

SIZES = dict(vocab=7, length=6, d_model=16, heads=2, feedforward=24)


def _models(depth: int = 2, norm_first: bool = False, seeds=(0, 1)) -> list[TokenTransformer]:
    return [TokenTransformer(depth=depth, norm_first=norm_first, seed=s, **SIZES) for s in seeds]


# ----------------------------------------------------------------------------- task and paths


def test_reversal_batch():
    x, y = reversal_batch(torch.Generator().manual_seed(0), 4, 5, 3)
    assert x.shape == (4, 5) and torch.equal(y, x.flip(-1)) and int(x.max()) < 3
    with pytest.raises(ValueError, match="vocab"):
        reversal_batch(torch.Generator(), 4, 5, 1)
    with pytest.raises(ValueError, match="length"):
        reversal_batch(torch.Generator(), 4, 0, 3)


def test_path_sensitivity_reads_the_jacobian_by_distance():
    weights = torch.arange(1.0, 6.0)                       # y_T = sum_t w_t x_t

    def weighted(x: torch.Tensor) -> torch.Tensor:
        return (x * weights.reshape(1, -1, 1)).cumsum(dim=1)

    norms = path_sensitivity(weighted, torch.randn(1, 5, 3))
    # distance 0 is the last position (weight 5), distance 4 the first (weight 1)
    assert np.allclose(norms, np.sqrt(3) * np.array([5, 4, 3, 2, 1]))
    with pytest.raises(ValueError, match="shape"):
        path_sensitivity(weighted, torch.randn(2, 5, 3))


def test_softmax_saturation_scaled_and_unscaled():
    widths = [4, 64, 1024]
    raw = softmax_saturation(widths, scaled=False)
    scaled = softmax_saturation(widths, scaled=True)
    for d, s in zip(widths, raw.logit_std, strict=True):
        assert math.isclose(s, math.sqrt(d), rel_tol=0.15)
    assert all(math.isclose(s, 1.0, rel_tol=0.15) for s in scaled.logit_std)
    assert raw.jacobian_norm[-1] < 1e-3 * raw.jacobian_norm[0]
    assert raw.logit_gradient[-1] < 1e-3 * raw.logit_gradient[0]
    assert raw.query_gradient[-1] < 1e-2 * raw.query_gradient[0]
    assert raw.saturated_fraction[-1] > 0.5 and scaled.saturated_fraction == [0.0] * 3
    for values in (scaled.jacobian_norm, scaled.logit_gradient, scaled.query_gradient):
        assert max(values) < 1.5 * min(values)
    with pytest.raises(ValueError, match="widths"):
        softmax_saturation([0], scaled=True)
    with pytest.raises(ValueError, match="keys"):
        softmax_saturation([4], scaled=True, keys=1)


def test_attention_matches_pytorch():
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    assert torch.allclose(attention(q, k, v), F.scaled_dot_product_attention(q, k, v),
                          atol=1e-6)
    unscaled = torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
    assert torch.allclose(attention(q, k, v, scaled=False), unscaled)


# ----------------------------------------------------------------------------- the models


def test_token_transformer_is_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = TokenTransformer(seed=5, **SIZES)
    assert torch.equal(torch.rand(1), before)
    b = TokenTransformer(seed=5, **SIZES)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert isinstance(a.norm, nn.Identity) and isinstance(
        TokenTransformer(norm_first=True, **SIZES).norm, nn.LayerNorm)


def test_token_transformer_xavier_init_per_projection():
    model = TokenTransformer(depth=1, d_model=64, heads=4, feedforward=128, seed=0,
                             init="xavier")
    blocks = model.layers[0].self_attn.in_proj_weight.detach().chunk(3)
    assert all(math.isclose(float(b.std()), xavier_std(64, 64), rel_tol=0.05) for b in blocks)
    assert float(model.layers[0].linear1.bias.detach().abs().max()) == 0.0
    default = TokenTransformer(depth=1, d_model=64, heads=4, feedforward=128, init="pytorch")
    # PyTorch's own init: xavier over the stacked (3d, d) matrix
    assert math.isclose(float(default.layers[0].self_attn.in_proj_weight.detach().std()),
                        xavier_std(64, 192), rel_tol=0.05)


@pytest.mark.parametrize("kwargs, message", [
    (dict(d_model=10, heads=4), "divisible"),
    (dict(depth=0), "depth"),
    (dict(init="he"), "unknown init"),
])
def test_token_transformer_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenTransformer(**kwargs)


@pytest.mark.parametrize("norm_first", [False, True])
def test_written_out_transformer_equals_pytorchs(norm_first):
    models = _models(depth=3, norm_first=norm_first)
    stacked = StackedTransformer.from_models(models)
    tokens = torch.randint(0, 7, (2, 4, 6))
    out = stacked(tokens)
    reference = torch.stack([m(tokens[i]) for i, m in enumerate(models)])
    assert torch.allclose(out, reference, atol=1e-5)
    # and the gradients, attention's in_proj_weight included
    targets = tokens.flip(-1)
    F.cross_entropy(out.reshape(-1, 7), targets.reshape(-1), reduction="sum").backward()
    for i, m in enumerate(models):
        F.cross_entropy(m(tokens[i]).reshape(-1, 7), targets[i].reshape(-1),
                        reduction="sum").backward()
    ours = gradient_norms_by_name(stacked)
    for name in ("layers.1.self_attn.in_proj_weight", "layers.2.linear2.weight", "position"):
        theirs = [dict(m.named_parameters())[name].grad for m in models]
        mine = dict(stacked.named_parameters())[name].grad
        assert torch.allclose(mine, torch.stack(theirs), atol=1e-4)
        assert ours[name] > 0


def test_from_models_checks_its_input():
    with pytest.raises(ValueError, match="at least one"):
        StackedTransformer.from_models([])
    with pytest.raises(ValueError, match="norm_first"):
        StackedTransformer.from_models(_models(norm_first=True), "post")
    with pytest.raises(ValueError, match="share norm_first"):
        StackedTransformer.from_models(_models(norm_first=True) + _models())
    with pytest.raises(ValueError, match="unknown variant"):
        Block(1, 8, 2, 8, variant="sandwich")


def test_deepnorm_and_rezero_blocks():
    alpha, beta = deepnorm_constants(6)
    assert math.isclose(alpha, 12 ** 0.25) and math.isclose(beta, 48 ** -0.25)
    model = deepnorm_init_(TokenTransformer(depth=6, d_model=64, heads=4, feedforward=128))
    v = model.layers[0].self_attn.in_proj_weight.detach().chunk(3)[2]
    assert math.isclose(float(v.std()), beta * xavier_std(64, 64), rel_tol=0.05)
    with pytest.raises(ValueError, match="post-LN"):
        deepnorm_init_(TokenTransformer(norm_first=True, **SIZES))
    # DeepNorm's block is post-LN with the residual scaled by alpha
    stacked = StackedTransformer.from_models(_models(depth=2, seeds=(0,)), "deepnorm")
    block = stacked.layers[0]
    x = torch.randn(1, 2, 6, 16)
    h = block.norm1(block.alpha * x + block.self_attn(x))
    assert block.alpha == deepnorm_constants(2)[0]
    assert torch.allclose(block(x), block.norm2(block.alpha * h + block.mlp(h)), atol=1e-6)
    # ReZero starts as the identity: the stack is embedding + head
    rezero = StackedTransformer.from_models(_models(depth=3, seeds=(0,)), "rezero")
    assert rezero.norm is None and not hasattr(rezero.layers[0], "norm1")
    tokens = torch.randint(0, 7, (1, 2, 6))
    embedded = rezero.embed_weight[0, tokens[0]] + rezero.position[0]
    assert torch.allclose(rezero(tokens)[0], rezero.head(embedded.unsqueeze(0))[0], atol=1e-6)
    assert len(build_models("deepnorm", 2, [0, 1], **SIZES)) == 2
    with pytest.raises(ValueError, match="unknown variant"):
        build_models("sandwich", 2, [0])


# ----------------------------------------------------------------------------- training


def test_warmup_factor():
    w = torch.tensor([0.0, 4.0])
    assert warmup_factor(1, w).tolist() == [1.0, 0.25]
    assert warmup_factor(8, w).tolist() == [1.0, 1.0]


def test_train_stacked_equals_torch_adam_run_by_run():
    models = _models(depth=2, seeds=(0, 1))
    lrs, warmups, steps = [1e-2, 3e-3], [0, 3], 4
    stacked = StackedTransformer.from_models(models)
    run = train_stacked(stacked, lrs=lrs, warmups=warmups, data_seeds=[7, 7], steps=steps,
                        batch_size=5)
    assert run.loss.shape == (2, steps) and run.first_nonfinite == [None, None]
    for r, model in enumerate(models):
        opt = torch.optim.Adam(model.parameters(), lr=lrs[r], betas=(0.9, 0.98), eps=1e-8)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s, w=warmups[r]: min(1.0, (s + 1) / w) if w else 1.0)
        generator = torch.Generator().manual_seed(7)
        for step in range(steps):
            x, y = reversal_batch(generator, 5, 6, 7)
            loss = F.cross_entropy(model(x).reshape(-1, 7), y.reshape(-1))
            assert math.isclose(float(loss.detach()), run.loss[r, step], rel_tol=1e-4)
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
        for name, p in model.named_parameters():
            mine = dict(stacked.named_parameters())[name.replace("embed.weight",
                                                                 "embed_weight")][r]
            if name.endswith("in_proj_bias"):
                # The key bias adds the same q·b_k to every logit of a query, which the softmax
                # ignores: its true gradient is 0 and Adam amplifies rounding noise of ~1e-9
                # into steps of either sign. Compare the query and value biases.
                mine, p = torch.cat([mine[:16], mine[32:]]), torch.cat([p[:16], p[32:]])
            assert torch.allclose(mine, p, atol=1e-5), name


def test_a_broken_run_stops_alone():
    models = _models(depth=1, seeds=(0, 0))
    stacked = StackedTransformer.from_models(models)
    with torch.no_grad():
        stacked.head.weight[1] = math.inf                   # run 1 is broken from the start
    run = train_stacked(stacked, lrs=[1e-2, 1e-2], warmups=[0, 0], data_seeds=[3, 3], steps=3)
    assert run.first_nonfinite == [None, 0]
    assert np.isfinite(run.loss[0]).all() and np.isnan(run.loss[1]).all()
    assert run.final_loss(2)[1] == np.inf
    alone = StackedTransformer.from_models(models[:1])
    single = train_stacked(alone, lrs=[1e-2], warmups=[0], data_seeds=[3], steps=3)
    assert np.allclose(single.loss[0], run.loss[0], rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lrs=[1e-3], warmups=[0, 0], data_seeds=[0, 0], steps=1), "lrs has 1"),
    (dict(lrs=[1e-3, -1.0], warmups=[0, 0], data_seeds=[0, 0], steps=1), "positive"),
    (dict(lrs=[1e-3, 1e-3], warmups=[0, -1], data_seeds=[0, 0], steps=1), "warm-up"),
    (dict(lrs=[1e-3, 1e-3], warmups=[0, 0], data_seeds=[0, 0], steps=0), "steps"),
])
def test_train_stacked_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_stacked(StackedTransformer.from_models(_models(depth=1)), **kwargs)


def test_warmup_grid_shapes_and_best():
    grid = warmup_grid("pre", 1, lrs=[1e-3, 1e-2], warmups=[0, 2], seeds=[0], steps=3,
                       **SIZES)
    assert grid.final.shape == (2, 2, 1) and grid.loss.shape == (2, 2, 1, 3)
    lr, value = grid.best(0)
    assert lr in (1e-3, 1e-2) and value == grid.median_final()[:, 0].min()


# ----------------------------------------------------------------------------- probes


def test_layer_gradient_norms_use_every_parameter_by_name_and_leave_no_gradient():
    model = TokenTransformer(depth=3, **SIZES)
    x, y = reversal_batch(torch.Generator().manual_seed(0), 8, 6, 7)
    per_layer = layer_gradient_norms(model, x, y)
    assert len(per_layer) == 3 and all(v > 0 for v in per_layer)
    assert all(p.grad is None for p in model.parameters())
    F.cross_entropy(model(x).reshape(-1, 7), y.reshape(-1)).backward()
    by_hand = group_norms(gradient_norms_by_name(model), r"^layers\.(\d+)\.")
    assert per_layer == pytest.approx([by_hand[str(i)] for i in range(3)], rel=1e-6)
    only_attention = layer_gradient_norms(model, x, y, pattern="in_proj_weight")
    assert all(a < b for a, b in zip(only_attention, per_layer, strict=True))


def test_stream_statistics():
    x, _ = reversal_batch(torch.Generator().manual_seed(0), 8, 6, 7)
    post = stream_statistics(TokenTransformer(depth=4, **SIZES), x)
    assert len(post.rms) == 5 and len(post.update_ratio) == 4
    assert all(math.isclose(r, 1.0, rel_tol=1e-3) for r in post.rms[1:])   # LN output
    pre = stream_statistics(TokenTransformer(depth=4, norm_first=True, **SIZES), x)
    assert pre.rms[-1] > pre.rms[0]
    assert math.isclose(pre.head_input_rms, 1.0, rel_tol=1e-3)              # final LayerNorm


def test_first_update_output_change_leaves_the_models_alone():
    models = _models(depth=2)
    before = [p.detach().clone() for m in models for p in m.parameters()]
    change = first_update_output_change(models, lr=1e-3)
    assert change.shape == (2,) and (change > 0).all()
    smaller = first_update_output_change(models, lr=1e-4)
    assert (smaller < change).all()
    after = [p.detach() for m in models for p in m.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_plot_warmup_runs_draws_four_curves():
    fig = plot_warmup_runs(depth=1, lr=1e-3, warmup=2, steps=3)
    assert len(fig.axes[0].get_lines()) >= 4
    fig = plot_warmup_runs(depth=1, lr=1e-3, warmup=2, steps=3, seeds=[0, 1])
    assert "median of 2 seeds" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="seeds"):
        plot_warmup_runs(depth=1, lr=1e-3, warmup=2, steps=3, seeds=[])


def test_schedule_runs_are_the_grid_runs_and_prefixes_are_shorter_budgets():
    settings = [(1e-2, 0), (3e-3, 2)]
    losses = schedule_runs("post", 1, settings, seeds=[0, 1], steps=4, **SIZES)
    assert losses.shape == (2, 2, 4)
    grid = warmup_grid("post", 1, lrs=[1e-2, 3e-3], warmups=[0, 2], seeds=[0, 1], steps=4,
                       **SIZES)
    np.testing.assert_allclose(losses[0], grid.loss[0, 0], rtol=1e-5)
    np.testing.assert_allclose(losses[1], grid.loss[1, 1], rtol=1e-5)
    short = schedule_runs("post", 1, settings, seeds=[0, 1], steps=2, **SIZES)
    np.testing.assert_allclose(short, losses[..., :2], rtol=1e-5)
    with pytest.raises(ValueError, match="settings"):
        schedule_runs("post", 1, [], seeds=[0], steps=2, **SIZES)


def test_loss_at_is_the_final_loss_of_a_shorter_budget():
    loss = np.arange(12, dtype=float).reshape(1, 12)
    assert loss_at(loss, 12, window=4)[0] == pytest.approx(np.mean([8, 9, 10, 11]))
    assert loss_at(loss, 5, window=2)[0] == pytest.approx(3.5)
    broken = loss.copy()
    broken[0, 10] = np.nan
    assert loss_at(broken, 12, window=4)[0] == np.inf and np.isfinite(loss_at(broken, 9, 4)[0])
    with pytest.raises(ValueError, match="budget"):
        loss_at(loss, 13)


def test_deepnorm_ablation_runs_each_part_alone():
    parts = deepnorm_ablation(2, [0, 1], lr=1e-3, warmup=1, steps=2)
    assert set(parts) == {"post", "deepnorm", "alpha only", "beta only"}
    assert all(v.shape == (2, 2) and np.isfinite(v).all() for v in parts.values())
    grid = warmup_grid("deepnorm", 2, lrs=[1e-3], warmups=[1], seeds=[0, 1], steps=2)
    np.testing.assert_allclose(parts["deepnorm"], grid.loss[0, 0], rtol=1e-5)
    with pytest.raises(ValueError, match="seeds"):
        deepnorm_ablation(2, [], lr=1e-3, warmup=1, steps=2)


def test_moment_only_steps_gather_the_second_moment_before_any_update():
    models = _models(depth=1)
    same = [StackedTransformer.from_models(models) for _ in range(2)]
    a = train_stacked(same[0], lrs=[1e-3] * 2, warmups=[0, 2], data_seeds=[0, 1], steps=3,
                      moment_only=[0, 0])
    b = train_stacked(same[1], lrs=[1e-3] * 2, warmups=[0, 2], data_seeds=[0, 1], steps=3)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-6)                # K = 0: plain Adam
    frozen = StackedTransformer.from_models(models)
    start = [p.detach().clone() for p in frozen.parameters()]
    run = train_stacked(frozen, lrs=[1e-3] * 2, warmups=[0, 0], data_seeds=[0, 0], steps=2,
                        moment_only=[2, 0])
    assert np.isfinite(run.loss).all()
    for p, p0 in zip(frozen.parameters(), start, strict=True):
        assert torch.equal(p[0], p0[0])                 # run 0 has not moved yet
    assert any(not torch.equal(p[1], p0[1]) for p, p0 in zip(frozen.parameters(), start,
                                                             strict=True))
    with pytest.raises(ValueError, match="moment_only"):
        train_stacked(frozen, lrs=[1e-3] * 2, warmups=[0, 0], data_seeds=[0, 0], steps=1,
                      moment_only=[1])
