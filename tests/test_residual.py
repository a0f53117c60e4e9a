"""gradpath.experiments.residual and the residual options of gradpath.models (chapter 8)."""

import math

import matplotlib.pyplot as plt
import pytest
import torch
from gradpath.data import teacher_classification
from gradpath.experiments.normalization import train_and_probe
from gradpath.experiments.residual import (
    HighwayBlock,
    HighwayMLP,
    accuracy,
    block_jacobians,
    bypass_blocks,
    gradient_profile,
    input_gradient_correlation,
    lesion_study,
    output_scale_by_depth,
    path_length_counts,
    plot_residual_comparison,
    residual_branch,
    residual_stream_statistics,
    steps_to_reach,
    zero_residual_branches_,
)
from gradpath.models import Block, DeepMLP
from gradpath.probes import gradient_norms_by_layer
from torch import nn


def _data(samples: int = 128):
    return teacher_classification(samples=samples, features=8, classes=3, seed=0)


# --------------------------------------------------------------------------- models.py additions


def test_original_order_adds_before_the_activation():
    block = Block(4, 4, "relu", residual=True, order="original")
    x = torch.randn(5, 4)
    expected = torch.relu(block.linear(x) + x)
    assert torch.allclose(block(x), expected)
    nn.init.zeros_(block.linear.weight)
    nn.init.zeros_(block.linear.bias)
    assert torch.equal(block(x), torch.relu(x))       # the ReLU acts on the skip path too


def test_final_norm_is_optional_and_off_by_default():
    plain = DeepMLP(4, 2, width=8, depth=3)
    assert isinstance(plain.final, nn.Identity)
    assert list(plain.state_dict()) == list(
        DeepMLP(4, 2, width=8, depth=3, final_norm=False).state_dict())
    normed = DeepMLP(4, 2, width=8, depth=3, norm="layer", final_norm=True)
    x = torch.randn(3, 4)
    by_hand = normed.head(torch.relu(normed.final[0](normed.blocks[1](normed.blocks[0](x)))))
    assert torch.allclose(normed(x), by_hand)
    with pytest.raises(ValueError, match="needs a norm"):
        DeepMLP(4, 2, width=8, depth=3, final_norm=True)
    with pytest.raises(ValueError, match="original"):
        DeepMLP(4, 2, width=8, depth=3, residual=True, residual_order="sideways")


def test_default_models_are_unchanged_by_the_additions():
    a = DeepMLP(4, 2, width=8, depth=4, init="he_normal",
                generator=torch.Generator().manual_seed(2))
    b = DeepMLP(4, 2, width=8, depth=4, init="he_normal", final_norm=False,
                generator=torch.Generator().manual_seed(2))
    x = torch.randn(3, 4)
    assert torch.equal(a(x), b(x))


# --------------------------------------------------------------------------- identity path


@pytest.mark.parametrize("order", ["pre", "post"])
def test_block_jacobian_is_branch_plus_identity(order):
    torch.manual_seed(0)
    block = Block(6, 6, "tanh", residual=True, order=order)
    full, branch = block_jacobians(block, torch.randn(6))
    assert torch.allclose(full, branch + torch.eye(6), atol=1e-6)
    assert not torch.allclose(branch, torch.zeros(6, 6))


def test_residual_branch_rejects_blocks_without_a_separate_branch():
    with pytest.raises(ValueError, match="residual"):
        residual_branch(Block(4, 4, "relu"))
    with pytest.raises(ValueError, match="original"):
        residual_branch(Block(4, 4, "relu", residual=True, order="original"))(torch.ones(1, 4))
    with pytest.raises(ValueError, match="1-D"):
        block_jacobians(Block(4, 4, "relu", residual=True), torch.ones(2, 4))


def test_gradient_profile_shows_the_identity_path():
    data = _data()
    plain = gradient_profile(data, depth=30, width=16, activation="sigmoid",
                             init="xavier_normal")
    residual = gradient_profile(data, depth=30, width=16, activation="sigmoid",
                                init="xavier_normal", residual=True)
    assert len(plain) == len(residual) == 30
    assert plain[0] / plain[-1] < 1e-8 and residual[0] / residual[-1] > 1e-3


# --------------------------------------------------------------------------- scale


def test_stream_statistics_by_hand():
    model = DeepMLP(2, 1, width=3, depth=3, activation="identity", residual=True,
                    residual_order="pre")
    with torch.no_grad():
        for b in model.blocks:
            b.linear.weight.copy_(torch.eye(3, b.linear.in_features))
            b.linear.bias.zero_()
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    stats = residual_stream_statistics(model, x)
    first = torch.tensor([[1.0, 2.0, 0.0], [3.0, 4.0, 0.0]])
    second = 2 * first                                   # h + I h
    assert stats.mean == pytest.approx([first.mean().item(), second.mean().item()])
    assert stats.rms == pytest.approx([first.pow(2).mean().sqrt().item(),
                                       second.pow(2).mean().sqrt().item()])
    with pytest.raises(ValueError):
        residual_stream_statistics(nn.Linear(2, 2), x)


def test_zero_branches_make_the_stack_an_identity():
    model = zero_residual_branches_(DeepMLP(4, 2, width=8, depth=10, residual=True,
                                            residual_order="pre", init="he_normal"))
    stats = residual_stream_statistics(model, torch.randn(16, 4))
    assert max(stats.rms) == pytest.approx(min(stats.rms))
    x = torch.randn(16, 4)
    loss = model(x).pow(2).sum()
    loss.backward()
    assert model.blocks[5].linear.weight.grad.abs().sum() > 0    # zeroed weights still learn
    with pytest.raises(ValueError, match="no residual"):
        zero_residual_branches_(DeepMLP(4, 2, width=8, depth=4))
    with pytest.raises(ValueError, match="pre"):
        zero_residual_branches_(DeepMLP(4, 2, width=8, depth=4, residual=True))


def test_output_scale_explodes_without_normalization_and_not_with_it():
    data = _data(64)
    depths = [4, 40, 400]
    none = output_scale_by_depth(data, depths, width=16)
    bn = output_scale_by_depth(data, depths, width=16, norm="batch")
    zero = output_scale_by_depth(data, depths, width=16, zero_branches=True)
    assert none[1] > 1e3 * none[0] and not math.isfinite(none[2])
    assert all(math.isfinite(v) for v in bn) and bn[2] < 100 * bn[0]
    assert zero[0] == pytest.approx(zero[2])
    with pytest.raises(ValueError):
        output_scale_by_depth(data, [], width=16)


def test_output_scale_reports_inf_and_nan_as_they_are():
    """Overflow is not rewritten: the stream's first overflowing block holds inf entries and no
    nan (its RMS is inf); the next block computes inf − inf, and its RMS is nan."""
    data = _data(64)
    net = DeepMLP(data.features, data.outputs, width=16, depth=400, activation="relu",
                  init="he_normal", residual=True, residual_order="pre",
                  generator=torch.Generator().manual_seed(0))
    rms = residual_stream_statistics(net, data.x[:128]).rms
    first = next(i for i, v in enumerate(rms) if not math.isfinite(v))    # block 340 here
    assert math.isinf(rms[first]) and math.isnan(rms[first + 1])
    depth = first + 2                            # blocks 0..first, then the head
    before, at, after = output_scale_by_depth(data, [depth - 1, depth, depth + 1], width=16)
    assert math.isfinite(before) and before > 1e30
    assert math.isinf(at)
    assert math.isnan(after)


# --------------------------------------------------------------------------- lesions and paths


def test_bypass_blocks_restores_the_model_and_validates_indices():
    model = DeepMLP(4, 2, width=8, depth=5, residual=True, residual_order="pre")
    x = torch.randn(3, 4)
    before = model(x)
    with bypass_blocks(model, [1, 3]):
        assert not torch.allclose(model(x), before)
        by_hand = model.head(model.blocks[2](model.blocks[0](x)))
        assert torch.allclose(model(x), by_hand)
    assert torch.equal(model(x), before)
    for bad in ([0], [4]):
        with pytest.raises(ValueError, match="valid indices"), bypass_blocks(model, bad):
            pass


def test_lesions_hurt_plain_networks_more_than_residual_ones():
    data = _data(400)
    train, test = data.split(0.25, seed=0)
    results = {}
    for residual in (False, True):
        model = DeepMLP(8, 3, width=32, depth=10, norm="batch", init="he_normal",
                        residual=residual, residual_order="pre",
                        generator=torch.Generator().manual_seed(0))
        train_and_probe(model, train, steps=200, lr=0.05, batch_size=32, optimizer="momentum")
        lesions = lesion_study(model, test)
        assert len(lesions) == 8
        results[residual] = sum(lesions) / len(lesions) - accuracy(model, test)
    assert results[True] > results[False] + 0.1


def test_path_length_counts_are_binomial():
    assert path_length_counts(3) == [1, 3, 3, 1]
    assert sum(path_length_counts(20)) == 2**20
    with pytest.raises(ValueError):
        path_length_counts(-1)


# --------------------------------------------------------------------------- highway


def test_highway_block_formula_and_gate_extremes():
    torch.manual_seed(0)
    block = HighwayBlock(4, "tanh")
    x = torch.randn(5, 4)
    t = torch.sigmoid(block.gate(x))
    assert torch.allclose(block(x), t * torch.tanh(block.linear(x)) + (1 - t) * x)
    with torch.no_grad():
        block.gate.weight.zero_()
        block.gate.bias.fill_(-50.0)          # T = 0: carry the input
    assert torch.allclose(block(x), x)
    with torch.no_grad():
        block.gate.bias.fill_(50.0)           # T = 1: a plain layer
    assert torch.allclose(block(x), torch.tanh(block.linear(x)))


def test_highway_mlp_works_with_the_probes_and_reports_gates():
    model = HighwayMLP(8, 3, width=16, depth=6, gate_bias=-3.0,
                       generator=torch.Generator().manual_seed(0))
    assert len(model.weight_layers()) == 6
    assert all(b.gate.bias.eq(-3.0).all() for b in model.blocks[1:])
    data = _data()
    nn.functional.cross_entropy(model(data.x), data.y).backward()
    assert len(gradient_norms_by_layer(model)) == 6
    gates = model.gate_means()
    assert len(gates) == 4 and all(0 < g < 0.2 for g in gates)
    with pytest.raises(ValueError, match="depth"):
        HighwayMLP(8, 3, depth=2)


# --------------------------------------------------------------------------- convergence


def test_steps_to_reach():
    losses = [3.0, 2.0, 1.0, 0.4, 0.3, 0.2]
    assert steps_to_reach(losses, 0.5, window=1) == 3
    assert steps_to_reach(losses, 0.5, window=2) == 4
    assert steps_to_reach(losses, 0.1, window=1) is None
    assert steps_to_reach([float("nan"), 0.1], 0.5, window=2) is None
    with pytest.raises(ValueError):
        steps_to_reach(losses, 0.5, window=0)


def test_input_gradient_correlation():
    linear = nn.Sequential(nn.Linear(1, 1))
    grads, corr = input_gradient_correlation(linear, points=16)
    assert grads.shape == (16,) and math.isnan(corr)        # constant gradient: undefined
    smooth = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    assert input_gradient_correlation(smooth, points=64)[1] > 0.9
    plain = DeepMLP(1, 1, width=32, depth=40, norm="batch", init="he_normal",
                    generator=torch.Generator().manual_seed(0))
    residual = DeepMLP(1, 1, width=32, depth=40, norm="batch", init="he_normal", residual=True,
                       residual_order="pre", generator=torch.Generator().manual_seed(0))
    before = plain.blocks[3].norm.running_mean.clone()
    c_plain = input_gradient_correlation(plain)[1]
    c_res = input_gradient_correlation(residual)[1]
    assert c_res > c_plain + 0.2
    assert torch.equal(plain.blocks[3].norm.running_mean, before)   # worked on a copy
    with pytest.raises(ValueError, match="one input"):
        input_gradient_correlation(nn.Linear(1, 2))


def test_residual_comparison_plot():
    fig = plot_residual_comparison(_data(64), depth=6, width=16, activation="relu", norm="batch",
                                   residual_order="pre", steps=5, lr=0.05, batch_size=16)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
    plt.close("all")
