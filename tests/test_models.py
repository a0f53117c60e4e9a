import pytest
import torch
from gradpath.init import he_std, initialize_, xavier_bound
from gradpath.models import Block, DeepMLP
from torch import nn


def test_depth_counts_weight_layers():
    model = DeepMLP(8, 3, width=16, depth=6)
    assert len(model.weight_layers()) == 6
    assert model(torch.randn(4, 8)).shape == (4, 3)


@pytest.mark.parametrize("norm", [None, "batch", "layer", "group"])
@pytest.mark.parametrize("residual", [False, True])
def test_every_option_runs(norm, residual):
    model = DeepMLP(8, 3, width=16, depth=5, norm=norm, residual=residual, activation="tanh")
    out = model(torch.randn(6, 8))
    assert torch.isfinite(out).all()


def test_residual_block_adds_identity():
    block = Block(4, 4, "relu", residual=True)
    nn.init.zeros_(block.linear.weight)
    nn.init.zeros_(block.linear.bias)
    x = torch.randn(3, 4)
    assert torch.equal(block(x), x)  # F(x) = relu(0) = 0, so y = x
    pre = Block(4, 4, "relu", residual=True, order="pre")
    nn.init.zeros_(pre.linear.weight)
    nn.init.zeros_(pre.linear.bias)
    assert torch.equal(pre(x), x)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="depth"):
        DeepMLP(8, 3, depth=1)
    with pytest.raises(ValueError, match="valid choices"):
        DeepMLP(8, 3, activation="nope")
    with pytest.raises(ValueError, match="valid choices"):
        DeepMLP(8, 3, norm="instance")
    with pytest.raises(ValueError, match="valid choices"):
        DeepMLP(8, 3, init="lecun")
    with pytest.raises(ValueError, match="positive scale"):
        DeepMLP(8, 3, init="uniform")
    with pytest.raises(ValueError, match="width"):
        DeepMLP(8, 3, width=0)


def test_initialization_statistics():
    g = torch.Generator().manual_seed(0)
    layer = nn.Linear(400, 300)
    initialize_(layer, "xavier_uniform", activation="identity", generator=g)
    assert layer.weight.abs().max() <= xavier_bound(400, 300) + 1e-7
    initialize_(layer, "he_normal", activation="relu", generator=g)
    assert abs(layer.weight.std().item() - he_std(400)) / he_std(400) < 0.02
    assert torch.count_nonzero(layer.bias) == 0
    initialize_(layer, "uniform", scale=0.01, generator=g)
    assert layer.weight.abs().max() <= 0.01


def test_generator_makes_models_reproducible():
    a, b = (DeepMLP(4, 2, width=8, depth=3, init="he_normal",
                    generator=torch.Generator().manual_seed(1)) for _ in range(2))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_group_norm_block_has_the_documented_eight_groups_of_its_width():
    # make_norm's default is groups=8 over the block's width: 8 groups of 4 channels for width 32,
    # each group normalized on its own (weight 1 and bias 0 as built).
    model = DeepMLP(in_features=4, width=32, depth=3, out_features=2, activation="relu",
                    norm="group")
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 2 and all((m.num_groups, m.num_channels) == (8, 32) for m in norms)
    x = torch.arange(32.0).reshape(1, 32) ** 2
    groups = x.reshape(8, 4)
    centred = groups - groups.mean(1, keepdim=True)
    expected = centred / torch.sqrt(centred.pow(2).mean(1, keepdim=True) + norms[0].eps)
    torch.testing.assert_close(norms[0](x), expected.reshape(1, 32))
