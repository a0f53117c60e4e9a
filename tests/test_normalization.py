"""experiments.normalization: batch norm written out, noisy batch norm, chapter 7 probes."""

import math

import matplotlib.pyplot as plt
import pytest
import torch
from gradpath.data import Dataset, teacher_classification
from gradpath.experiments.normalization import (
    BatchNormWrittenOut,
    LayerInputs,
    NoisyBatchNorm1d,
    add_noise_to_batch_norm_,
    batch_norm,
    batch_statistics,
    batched_accuracy,
    check_against_torch,
    landscape_along_gradient,
    landscape_probe,
    layer_input_probe,
    layer_input_shift,
    markdown_table,
    norm_label,
    normalization_grid,
    plot_normalization_comparison,
    population_statistics_,
    prediction_spread,
    smooth,
    train_and_probe,
)
from gradpath.models import DeepMLP
from torch import nn


def _data(samples: int = 128) -> Dataset:
    return teacher_classification(samples=samples, features=8, classes=3, seed=0)


def test_batch_norm_matches_the_formula_by_hand():
    x = torch.tensor([[1.0, 10.0], [3.0, 10.0], [5.0, 13.0]])
    mean, var = batch_statistics(x)
    assert torch.allclose(mean, torch.tensor([3.0, 11.0]))
    assert torch.allclose(var, torch.tensor([8 / 3, 2.0]))            # biased: divide by m
    y = batch_norm(x, torch.tensor([2.0, 1.0]), torch.tensor([0.5, -1.0]), eps=0.0)
    expected_col0 = 2.0 * (torch.tensor([1.0, 3.0, 5.0]) - 3.0) / math.sqrt(8 / 3) + 0.5
    assert torch.allclose(y[:, 0], expected_col0)
    assert torch.allclose(y[:, 1].mean(), torch.tensor(-1.0), atol=1e-6)


def test_eps_turns_0_over_0_into_0():
    constant = torch.ones(4, 1)
    assert torch.isnan(batch_norm(constant, torch.ones(1), torch.zeros(1), eps=0.0)).all()
    assert torch.equal(batch_norm(constant, torch.ones(1), torch.zeros(1)), torch.zeros(4, 1))


def test_gamma_and_beta_can_undo_the_normalization():
    x = 4 + 2 * torch.randn(32, 3)
    mean, var = batch_statistics(x)
    assert torch.allclose(batch_norm(x, torch.sqrt(var + 1e-5), mean), x, atol=1e-4)


def test_batch_norm_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        batch_norm(torch.ones(1, 3), torch.ones(3), torch.zeros(3))
    with pytest.raises(ValueError, match="batch, features"):
        batch_norm(torch.ones(3), torch.ones(3), torch.zeros(3))
    with pytest.raises(ValueError, match="gamma and beta"):
        batch_norm(torch.ones(4, 3), torch.ones(2), torch.zeros(3))
    with pytest.raises(ValueError, match="eps"):
        batch_norm(torch.randn(4, 3), torch.ones(3), torch.zeros(3), eps=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        BatchNormWrittenOut(3, momentum=0.0)


def test_written_out_layer_equals_torch_in_both_modes():
    check = check_against_torch(features=5, batches=4, batch_size=7, momentum=0.3, seed=3)
    assert check.largest < 1e-12


def test_written_out_layer_is_a_drop_in_replacement_for_training():
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(4, 6), BatchNormWrittenOut(6), nn.ReLU(), nn.Linear(6, 2))
    theirs = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    theirs.load_state_dict(ours.state_dict(), strict=False)
    theirs[0].load_state_dict(ours[0].state_dict())
    theirs[3].load_state_dict(ours[3].state_dict())
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    for model in (ours, theirs):
        nn.functional.cross_entropy(model(x), y).backward()
    assert torch.allclose(ours[0].weight.grad, theirs[0].weight.grad, atol=1e-6)
    assert torch.allclose(ours[1].running_mean, theirs[1].running_mean, atol=1e-6)


def test_batched_accuracy_shows_the_train_eval_pitfall_and_leaves_the_model_alone():
    data = _data(256)
    model = DeepMLP(8, 3, width=16, depth=4, norm="batch", init="he_normal",
                    generator=torch.Generator().manual_seed(0))
    train_and_probe(model, data, steps=150, lr=0.1, batch_size=32)
    model.eval()
    before = model.blocks[0].norm.running_mean.clone()
    eval_acc = batched_accuracy(model, data, 4, train_mode=False)
    train_acc = batched_accuracy(model, data, 2, train_mode=True)
    assert eval_acc > 0.8 and train_acc < eval_acc
    assert torch.equal(model.blocks[0].norm.running_mean, before)
    assert not model.training
    with pytest.raises(ValueError):
        batched_accuracy(model, data, 0, train_mode=False)


def test_prediction_spread_is_zero_in_eval_mode_only():
    data = _data()
    model = DeepMLP(8, 3, width=16, depth=3, norm="batch",
                    generator=torch.Generator().manual_seed(0))
    model.train()
    model(data.x)   # give the running statistics something to hold
    example, others = data.x[0], data.x[1:]
    assert prediction_spread(model, example, others, train_mode=False) < 1e-5
    assert prediction_spread(model, example, others, train_mode=True) > 1e-2
    layer = DeepMLP(8, 3, width=16, depth=3, norm="layer")
    assert prediction_spread(layer, example, others, train_mode=True) < 1e-5
    with pytest.raises(ValueError):
        prediction_spread(model, data.x[:2], others, train_mode=True)


def test_noisy_batch_norm_shakes_only_in_training_mode():
    layer = NoisyBatchNorm1d(5, shift=1.0, scale=2.0,
                             generator=torch.Generator().manual_seed(0))
    x = torch.randn(64, 5)
    a, b = layer(x), layer(x)
    assert not torch.allclose(a, b)          # new noise every step
    plain = nn.BatchNorm1d(5)
    plain.load_state_dict(layer.state_dict())
    clean = plain(x)
    ratio = a.std(0) / clean.std(0)
    assert ((ratio > 0.5 - 1e-4) & (ratio < 2.0 + 1e-4)).all()
    assert (a.mean(0) - clean.mean(0)).abs().max() <= 1.0 + 1e-4
    layer.eval()
    plain.load_state_dict(layer.state_dict())   # same running statistics
    plain.eval()
    assert torch.allclose(layer(x), plain(x))
    with pytest.raises(ValueError):
        NoisyBatchNorm1d(3, scale=0.5)


def test_add_noise_replaces_every_batch_norm_and_keeps_parameters():
    model = DeepMLP(8, 3, width=16, depth=4, norm="batch")
    with torch.no_grad():
        model.blocks[1].norm.weight.fill_(3.0)
    add_noise_to_batch_norm_(model, seed=0)
    norms = [b.norm for b in model.blocks]
    assert all(isinstance(n, NoisyBatchNorm1d) for n in norms)
    assert torch.equal(norms[1].weight, torch.full((16,), 3.0))
    with pytest.raises(ValueError, match="no nn.BatchNorm1d"):
        add_noise_to_batch_norm_(DeepMLP(8, 3, width=16, depth=3))


def test_train_and_probe_records_probes_and_stops_at_nonfinite():
    data = _data()
    model = DeepMLP(8, 3, width=16, depth=3, init="he_normal")
    run = train_and_probe(model, data, steps=25, lr=0.1, batch_size=16,
                          probe=lambda m, x, y: len(x), every=10)
    assert run.probe_steps == [0, 10, 20] and run.probes == [16, 16, 16]
    assert len(run.loss) == 25 and run.final_loss() < run.loss[0]
    exploding = DeepMLP(8, 3, width=16, depth=6, init="normal", init_scale=50.0)
    run = train_and_probe(exploding, data, steps=50, lr=10.0, batch_size=16)
    assert len(run.loss) < 50 and not math.isfinite(run.loss[-1])
    with pytest.raises(ValueError):
        train_and_probe(model, data, steps=0, lr=0.1, batch_size=4)


def test_layer_input_shift_is_in_units_of_the_spread():
    a = LayerInputs(torch.zeros(2), torch.ones(2))
    b = LayerInputs(torch.tensor([0.5, -0.5]), torch.ones(2))
    assert layer_input_shift([a, b]) == pytest.approx(0.5)
    wide_a = LayerInputs(torch.zeros(2), 10 * torch.ones(2))
    wide_b = LayerInputs(torch.tensor([5.0, -5.0]), 10 * torch.ones(2))
    assert layer_input_shift([wide_a, wide_b]) == pytest.approx(0.5)   # scale-free
    with pytest.raises(ValueError):
        layer_input_shift([a])


def test_layer_input_probe_sees_the_noise_and_does_not_touch_the_model():
    data = _data()
    model = add_noise_to_batch_norm_(DeepMLP(8, 3, width=16, depth=4, norm="batch"), seed=0)
    probe = layer_input_probe(1, data.x[:64])
    before = model.blocks[1].norm.running_mean.clone()
    first, second = probe(model, data.x, data.y), probe(model, data.x, data.y)
    assert torch.equal(model.blocks[1].norm.running_mean, before)
    assert torch.equal(first.mean, second.mean)       # the copy carries the same noise state
    clean = layer_input_probe(1, data.x[:64])(DeepMLP(8, 3, width=16, depth=4, norm="batch"),
                                               data.x, data.y)
    assert clean.mean.abs().max() < 1e-5 and not torch.allclose(first.mean, clean.mean)
    with pytest.raises(ValueError):
        layer_input_probe(9, data.x)(model, data.x, data.y)


def test_landscape_probe_on_a_quadratic_is_exact():
    # L(w) = 0.5 * ||w||^2 via a linear model with zero input dependence: gradient = w.
    class Quadratic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.tensor([3.0, 4.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.w

    model = Quadratic()
    probe = landscape_along_gradient(model, torch.zeros(1), torch.zeros(1), [0.5, 1.0],
                                     lambda out, _y: 0.5 * (out ** 2).sum())
    # w - eta*w = (1 - eta) w; loss 0.5 (1-eta)^2 25; gradient change eta * ||w|| = eta * 5
    assert probe.losses == pytest.approx([3.125, 0.0])
    assert probe.gradient_changes == pytest.approx([2.5, 5.0])
    assert probe.loss_range == pytest.approx(3.125)
    assert probe.effective_smoothness == pytest.approx(1.0)     # the Hessian is I
    assert torch.equal(model.w.detach(), torch.tensor([3.0, 4.0]))   # worked on a copy
    with pytest.raises(ValueError):
        landscape_along_gradient(model, torch.zeros(1), torch.zeros(1), [],
                                 lambda o, _y: o.sum())


def test_landscape_probe_runs_inside_training():
    data = _data()
    model = DeepMLP(8, 3, width=16, depth=3, norm="batch")
    run = train_and_probe(model, data, steps=10, lr=0.1, batch_size=16, every=5,
                          probe=landscape_probe([0.1, 0.2], nn.functional.cross_entropy))
    assert len(run.probes) == 2 and all(p.loss_range >= 0 for p in run.probes)


def test_normalization_grid_and_table():
    data = _data(200)
    train, test = data.split(0.25, seed=0)
    grid = normalization_grid(train, test, norms=[None, "batch", "layer", "group"],
                              batch_sizes=[2, 32], depth=4, width=16, steps=150, lr=0.05)
    assert set(grid) == {(n, b) for n in ("none", "batch", "layer", "group") for b in (2, 32)}
    assert grid[("batch", 2)].test_accuracy < grid[("layer", 2)].test_accuracy
    assert all(len(r.loss) == 150 for r in grid.values())
    with pytest.raises(ValueError, match="valid choices"):
        normalization_grid(train, test, norms=["instance"], batch_sizes=[4], depth=3, width=16,
                           steps=1, lr=0.1)
    with pytest.raises(ValueError, match=">= 2"):
        normalization_grid(train, test, norms=[None], batch_sizes=[1], depth=3, width=16,
                           steps=1, lr=0.1)
    table = markdown_table(["a", "b"], [["x", 0.5]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x | 0.50 |"]
    with pytest.raises(ValueError):
        markdown_table(["a"], [["x", "y"]])
    assert norm_label(None) == "none" and norm_label("layer") == "layer"


def test_smooth_and_comparison_plot():
    assert smooth([1.0, 3.0, 5.0], window=2) == [1.0, 2.0, 4.0]
    with pytest.raises(ValueError):
        smooth([1.0], window=0)
    data = _data(96)
    train, test = data.split(0.25, seed=0)
    fig = plot_normalization_comparison(train, test, batch_size=8, depth=3, width=16, steps=5,
                                        lr=0.05, norms=[None, "layer"])
    assert len(fig.axes[0].lines) == 2
    plt.close("all")


def test_batch_norm_noise_shrinks_like_one_over_root_m():
    from gradpath.experiments.normalization import batch_norm_noise

    g = torch.Generator().manual_seed(0)
    others = torch.randn(2000, 6, generator=g)
    noise = batch_norm_noise(torch.zeros(6), others, [4, 16, 256], trials=200)
    assert noise[4] > noise[16] > noise[256] > 0
    assert noise[16] / noise[256] == pytest.approx(4.0, rel=0.25)     # sqrt(256 / 16)
    with pytest.raises(ValueError):
        batch_norm_noise(torch.zeros(6), others, [1])
    with pytest.raises(ValueError):
        batch_norm_noise(torch.zeros(5), others, [4])


def test_train_and_probe_records_update_ratios_on_request():
    data = teacher_classification(256, features=8, classes=3, seed=0)
    model = DeepMLP(8, 3, width=16, depth=3, init="he_normal",
                    generator=torch.Generator().manual_seed(0))
    plain = train_and_probe(model, data, steps=5, lr=0.1, batch_size=32)
    assert plain.update_ratio == []
    with pytest.raises(ValueError):
        plain.median_update_ratio()
    run = train_and_probe(model, data, steps=5, lr=0.1, batch_size=32, record_updates=True)
    assert len(run.update_ratio) == 5 and all(len(r) == 3 for r in run.update_ratio)
    assert 0 < run.median_update_ratio() < 1 and 0 < run.median_update_ratio(0) < 1


def test_grid_keeps_models_and_population_statistics():
    data = _data(120)
    train, test = data.split(0.25, seed=0)
    grid = normalization_grid(train, test, norms=["batch"], batch_sizes=[4], depth=3, width=8,
                              steps=5, lr=0.05, keep_models=True)
    model = grid[("batch", 4)].model
    assert model is not None
    assert normalization_grid(train, test, norms=[None], batch_sizes=[4], depth=3, width=8,
                              steps=2, lr=0.05)[("none", 4)].model is None
    weights = [p.detach().clone() for p in model.parameters()]
    population_statistics_(model, train.x)
    assert not model.training
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
    first = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    assert first.momentum == 0.1
    # the first batch-norm layer now holds the exact statistics of its input over the whole set
    seen = []
    hook = first.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))
    model.train()
    with torch.no_grad():
        model(train.x)
    hook.remove()
    assert torch.allclose(first.running_mean, seen[0].mean(0), atol=1e-5)
    assert torch.allclose(first.running_var, seen[0].var(0), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="no batch-norm"):
        population_statistics_(DeepMLP(8, 3, width=8, depth=3), train.x)
    with pytest.raises(ValueError, match="two examples"):
        population_statistics_(model, train.x[:1])
