"""gradpath.models, exactly: each block's formula redone by hand from its own weights, the
structure DeepMLP's docstring promises, and each error's exact message."""

from __future__ import annotations

import pytest
import torch
from gradpath.init import initialize_
from gradpath.models import NORMALIZATIONS, RESIDUAL_ORDERS, Block, DeepMLP, make_norm
from torch import nn

X = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))


def _affine(linear: nn.Linear, h: torch.Tensor) -> torch.Tensor:
    return h @ linear.weight.T + linear.bias


def _randomize(block: Block) -> Block:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return block


def test_plain_block_is_act_of_norm_of_affine():
    block = _randomize(Block(6, 6, "tanh", norm="layer"))
    ln = block.norm
    expected = torch.tanh(nn.functional.layer_norm(_affine(block.linear, X), (6,), ln.weight,
                                                   ln.bias))
    torch.testing.assert_close(block(X), expected)
    assert not block.residual and block.order == "post"


def test_post_residual_adds_the_input_after_the_activation():
    block = _randomize(Block(6, 6, "tanh", residual=True))
    torch.testing.assert_close(block(X), X + torch.tanh(_affine(block.linear, X)))


def test_pre_residual_applies_norm_and_activation_before_the_weights():
    block = _randomize(Block(6, 6, "tanh", norm="layer", residual=True, order="pre"))
    ln = block.norm
    inner = torch.tanh(nn.functional.layer_norm(X, (6,), ln.weight, ln.bias))
    torch.testing.assert_close(block(X), X + _affine(block.linear, inner))


def test_original_residual_joins_before_the_activation():
    block = _randomize(Block(6, 6, "tanh", residual=True, order="original"))
    torch.testing.assert_close(block(X), torch.tanh(_affine(block.linear, X) + X))


def test_the_pre_norm_acts_on_the_input_width():
    block = Block(6, 6, "relu", norm="batch", residual=True, order="pre")
    assert block.norm.num_features == 6
    wide = Block(6, 9, "relu", norm="batch")
    assert wide.norm.num_features == 9
    plain_pre = Block(6, 9, "relu", norm="batch", order="pre")   # "pre" matters only with a skip
    assert plain_pre.norm.num_features == 9
    assert plain_pre(X).shape == (5, 9)


def test_block_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"^unknown residual order 'mid'; valid choices are "
                                         r"post, pre, original$"):
        Block(4, 4, "relu", order="mid")
    with pytest.raises(ValueError, match=r"^a residual block needs in_features == out_features$"):
        Block(4, 5, "relu", residual=True)
    assert RESIDUAL_ORDERS == ("post", "pre", "original")


def test_make_norm_builds_each_kind():
    assert isinstance(make_norm(None, 16), nn.Identity)
    batch, layer, group = make_norm("batch", 16), make_norm("layer", 16), make_norm("group", 16)
    assert isinstance(batch, nn.BatchNorm1d) and batch.num_features == 16
    assert isinstance(layer, nn.LayerNorm) and layer.normalized_shape == (16,)
    assert isinstance(group, nn.GroupNorm) and (group.num_groups, group.num_channels) == (8, 16)
    assert make_norm("group", 12, groups=4).num_groups == 4
    assert make_norm("group", 8).num_groups == 8                 # divisible exactly
    with pytest.raises(ValueError, match=r"^group norm needs width divisible by 8, got 12$"):
        make_norm("group", 12)
    with pytest.raises(ValueError, match=r"^unknown normalization 'instance'; valid choices are "
                                         r"None, batch, layer, group$"):
        make_norm("instance", 16)
    assert None in NORMALIZATIONS


def test_deep_mlp_structure_follows_its_docstring():
    model = DeepMLP(6, 3, width=8, depth=5, activation="tanh", norm="layer", residual=True,
                    residual_order="pre")
    assert len(model.blocks) == 4 and model.activation_name == "tanh"
    first, rest = model.blocks[0], list(model.blocks[1:])
    assert (first.linear.in_features, first.linear.out_features) == (6, 8)
    assert not first.residual                               # its shapes differ
    assert all(b.residual and b.order == "pre" for b in rest)
    assert all((b.linear.in_features, b.linear.out_features) == (8, 8) for b in rest)
    assert all(isinstance(b.norm, nn.LayerNorm) for b in model.blocks)
    assert all(isinstance(b.activation, nn.Tanh) for b in model.blocks)
    assert (model.head.in_features, model.head.out_features) == (8, 3)
    assert isinstance(model.final, nn.Identity)
    assert model.weight_layers() == [b.linear for b in model.blocks] + [model.head]
    plain = DeepMLP(6, 3, width=8, depth=2)
    assert len(plain.blocks) == 1 and plain.activation_name == "relu"
    assert all(isinstance(b.norm, nn.Identity) and not b.residual for b in plain.blocks)
    defaults = DeepMLP(6, 3)
    assert len(defaults.weight_layers()) == 10 and defaults.head.in_features == 64
    assert not any(b.residual for b in defaults.blocks)          # no skips unless asked
    assert all(b.order == "post" for b in DeepMLP(6, 3, width=8, depth=4,
                                                      residual=True).blocks[1:])


def test_forward_is_the_blocks_then_final_then_head():
    model = DeepMLP(6, 3, width=8, depth=4, activation="tanh", norm="layer", final_norm=True)
    h = X
    for block in model.blocks:
        h = block(h)
    ln = model.final[0]
    assert isinstance(model.final[1], nn.Tanh)
    expected = _affine(model.head, torch.tanh(nn.functional.layer_norm(h, (8,), ln.weight,
                                                                       ln.bias)))
    torch.testing.assert_close(model(X), expected)


def test_initialization_is_the_scheme_with_the_generator():
    model = DeepMLP(6, 3, width=8, depth=3, activation="tanh", init="orthogonal",
                    generator=torch.Generator().manual_seed(5))
    twin = DeepMLP(6, 3, width=8, depth=3, activation="tanh")
    initialize_(twin, "orthogonal", activation="tanh", generator=torch.Generator().manual_seed(5))
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)
    scaled = DeepMLP(6, 3, width=8, depth=3, init="uniform", init_scale=0.5,
                     generator=torch.Generator().manual_seed(5))
    assert 0.4 < float(scaled.head.weight.detach().abs().max()) <= 0.5


def test_deep_mlp_errors_name_the_argument_and_value():
    for name, kwargs in (("in_features", {"in_features": 0}), ("out_features",
                         {"out_features": 2.0}), ("width", {"width": -1})):
        args = {"in_features": 6, "out_features": 3} | kwargs
        with pytest.raises((ValueError, TypeError),
                match=rf"^{name} must be an integer >= 1, got "):
            DeepMLP(**args)
    with pytest.raises(ValueError, match=r"^depth must be an integer >= 2 \(input layer \+ "
                                         r"head\), got 1$"):
        DeepMLP(6, 3, depth=1)
    with pytest.raises(TypeError, match=r"^depth must be an integer"):
        DeepMLP(6, 3, depth=3.0)
    with pytest.raises(ValueError, match=r"^final_norm=True needs a norm \('batch', 'layer' or "
                                         r"'group'\)$"):
        DeepMLP(6, 3, final_norm=True)
    assert len(DeepMLP(1, 1, width=1, depth=2).blocks) == 1       # the smallest allowed
