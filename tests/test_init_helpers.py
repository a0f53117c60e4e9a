"""gradpath.init's helpers, exactly: the std each scheme is expected to draw, PyTorch's default
bound, the uniform std, the "standard" initialization, and the recipes (each one the same draw
as the scheme it names, with the same generator)."""

from __future__ import annotations

import math

import pytest
import torch
from gradpath.init import (
    ACTIVATION_GAIN,
    RECIPES,
    activation_gain,
    apply_recipe_,
    expected_weight_std,
    get_recipe,
    initialize_,
    lsuv_,
    pytorch_default_bound,
    standard_uniform_,
    uniform_std,
)
from gradpath.models import DeepMLP
from torch import nn


def test_expected_weight_std_per_scheme():
    assert expected_weight_std("uniform", 4, 9, scale=0.3) == 0.3 / math.sqrt(3)
    assert expected_weight_std("normal", 4, 9, scale=0.3) == 0.3
    assert expected_weight_std("xavier_normal", 4, 12) == math.sqrt(2 / 16)
    assert expected_weight_std("xavier_uniform", 4, 12, gain=2.0) == 2 * math.sqrt(2 / 16)
    assert expected_weight_std("he_normal", 4, 9) == math.sqrt(2) / 2          # fan_in default
    assert expected_weight_std("he_uniform", 4, 9, mode="fan_out") == math.sqrt(2) / 3
    assert expected_weight_std("he_normal", 4, 9, gain=1.0) == 0.5
    assert expected_weight_std("orthogonal", 4, 16) == 0.25                    # gain 1
    assert expected_weight_std("orthogonal", 16, 4, gain=3.0) == 0.75
    assert expected_weight_std("pytorch_default", 12, 5) == pytest.approx(1 / 6, rel=1e-15)


def test_expected_weight_std_follows_initialize_for_leaky_relu():
    """He with leaky ReLU: initialize_ uses sqrt(2 / (1 + 0.01²)); so does the prediction."""
    leaky = math.sqrt(2 / (1 + 0.01**2))
    assert expected_weight_std("he_normal", 4, 9, activation="leaky_relu") == leaky / 2
    assert expected_weight_std("he_normal", 4, 9, activation="tanh") == math.sqrt(2) / 2
    assert expected_weight_std("xavier_normal", 4, 12, activation="leaky_relu") == math.sqrt(2 / 16)
    layer = initialize_(nn.Linear(400, 300), "he_normal", activation="leaky_relu",
                        generator=torch.Generator().manual_seed(0))
    std = float(layer.weight.detach().double().std())
    predicted = expected_weight_std("he_normal", 400, 300, activation="leaky_relu")
    assert abs(std - predicted) < 0.01 * std
    with pytest.raises(ValueError, match="activation"):
        expected_weight_std("he_normal", 4, 9, activation="swish")
    for scale in (None, 0.0):
        with pytest.raises(ValueError, match=rf"^(initialization 'normal' needs a positive scale|"
                                             rf"scale must be a finite positive number), "
                                             rf"got {scale!r}$"):
            expected_weight_std("normal", 4, 4, scale=scale)
    with pytest.raises(ValueError, match=r"^unknown initialization 'lecun'; valid choices are "
                                         r"pytorch_default, uniform, normal, xavier_uniform, "
                                         r"xavier_normal, he_uniform, he_normal, orthogonal$"):
        expected_weight_std("lecun", 4, 4)


def test_pytorch_default_bound_and_uniform_std():
    assert pytorch_default_bound(1) == 1.0
    assert pytorch_default_bound(16) == 0.25
    for bad in (0, 2.0):
        with pytest.raises((ValueError, TypeError), match=rf"^fan_in must be an integer >= 1, "
                                                          rf"got {bad!r}"):
            pytorch_default_bound(bad)
    assert uniform_std(math.sqrt(3)) == pytest.approx(1.0, rel=1e-15)
    assert uniform_std(1e-300) > 0
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError,
                match=rf"^bound must be a finite positive number, got {bad!r}$"):
            uniform_std(bad)


def test_standard_uniform_draws_with_the_generator_and_zeroes_biases():
    model = nn.Sequential(nn.Linear(16, 4), nn.Tanh(), nn.Linear(4, 2))
    standard_uniform_(model, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    first = torch.empty(4, 16).uniform_(-0.25, 0.25, generator=g)
    second = torch.empty(2, 4).uniform_(-0.5, 0.5, generator=g)
    assert torch.equal(model[0].weight.detach(), first)
    assert torch.equal(model[2].weight.detach(), second)
    assert not model[0].bias.any() and not model[2].bias.any()


@pytest.mark.parametrize("key", ["too_small", "too_large", "pytorch_default", "xavier", "he",
                                 "orthogonal_act_gain"])
def test_each_recipe_is_its_scheme_with_the_same_generator(key):
    recipe = get_recipe(key)
    model = DeepMLP(6, 2, width=8, depth=3, activation="tanh")
    twin = DeepMLP(6, 2, width=8, depth=3, activation="tanh")
    twin.load_state_dict(model.state_dict())
    torch.manual_seed(5)
    apply_recipe_(model, key, activation="tanh", generator=torch.Generator().manual_seed(9))
    torch.manual_seed(5)
    gain = activation_gain("tanh") if recipe.gain == ACTIVATION_GAIN else recipe.gain
    assert not isinstance(gain, str)
    initialize_(twin, recipe.scheme, scale=recipe.scale, activation="tanh", gain=gain,
                generator=torch.Generator().manual_seed(9))
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)
    if key == "orthogonal_act_gain":   # the recipe asks for the activation's gain (tanh: 5/3)
        assert RECIPES["orthogonal_act_gain"].gain == ACTIVATION_GAIN
        w = model.blocks[1].linear.weight.detach()
        torch.testing.assert_close(w @ w.T, (5 / 3) ** 2 * torch.eye(8), atol=1e-5, rtol=0)
    if key == "xavier":            # gain 1 whatever the activation
        assert RECIPES["xavier"].gain == 1.0


def test_the_standard_and_lsuv_recipes_use_the_generator():
    a, b = (DeepMLP(6, 2, width=8, depth=3) for _ in range(2))
    apply_recipe_(a, "standard", generator=torch.Generator().manual_seed(4))
    standard_uniform_(b, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
    c, d = (DeepMLP(6, 2, width=8, depth=3) for _ in range(2))
    apply_recipe_(c, "lsuv", x=x, generator=torch.Generator().manual_seed(4))
    lsuv_(d, x, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(p, q) for p, q in zip(c.parameters(), d.parameters(), strict=True))
    e = DeepMLP(6, 2, width=8, depth=3)
    apply_recipe_(e, "lsuv", x=x, generator=torch.Generator().manual_seed(5))
    assert not torch.equal(e.blocks[1].linear.weight, c.blocks[1].linear.weight)
    with pytest.raises(ValueError, match=r"^the 'lsuv' recipe calibrates on data: pass an input "
                                         r"batch x$"):
        apply_recipe_(DeepMLP(6, 2, width=8, depth=3), "lsuv")
    with pytest.raises(ValueError, match=r"^unknown initialization recipe 'fixup'; valid choices "
                                         r"are too_small, too_large, standard, pytorch_default, "
                                         r"xavier, he, orthogonal_act_gain, lsuv$"):
        get_recipe("fixup")


def test_lsuv_on_a_plain_module_and_on_one_without_linear_layers():
    x = torch.randn(128, 6, generator=torch.Generator().manual_seed(1))
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    report = lsuv_(model, x, generator=torch.Generator().manual_seed(0))
    assert len(report.variances) == 2 and report.all_converged
    assert float(model(x).detach().var()) == pytest.approx(1.0, abs=0.1)
    with pytest.raises(ValueError, match=r"^lsuv_: model Sequential has no nn.Linear layers to "
                                         r"initialize "):
        lsuv_(nn.Sequential(nn.Tanh()), x)


def test_initialize_draws_each_value_scheme_with_the_generator():
    layer = nn.Linear(5, 4)
    initialize_(layer, "uniform", scale=0.3, generator=torch.Generator().manual_seed(1))
    expected = torch.empty(4, 5).uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(layer.weight.detach(), expected) and not layer.bias.any()
    initialize_(layer, "normal", scale=0.3, generator=torch.Generator().manual_seed(1))
    expected = torch.empty(4, 5).normal_(0.0, 0.3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(layer.weight.detach(), expected)
    initialize_(layer, "xavier_uniform", gain=2.0, generator=torch.Generator().manual_seed(1))
    expected = torch.empty(4, 5)
    nn.init.xavier_uniform_(expected, gain=2.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=1e-6, atol=0)
    for scheme in ("uniform", "normal"):
        for scale in (None, 0.0):
            with pytest.raises(ValueError, match=rf"^(initialization '{scheme}' needs a positive "
                                                 rf"scale|scale must be a finite positive "
                                                 rf"number), got {scale!r}$"):
                initialize_(layer, scheme, scale=scale)
    with pytest.raises(ValueError, match=r"^unknown initialization 'lecun'; valid choices are "
                                         r"pytorch_default, uniform, normal, xavier_uniform, "
                                         r"xavier_normal, he_uniform, he_normal, orthogonal$"):
        initialize_(layer, "lecun")


def test_pytorch_default_resets_every_linear_layer_as_pytorch_does():
    model = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    twin = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(9.0)
    torch.manual_seed(3)
    initialize_(model, "pytorch_default")
    torch.manual_seed(3)
    for layer in twin:
        layer.reset_parameters()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)
    assert model[1].bias.abs().sum() > 0                    # PyTorch's own bias, kept


def test_lsuv_calibrates_the_layers_weight_layers_names():
    class Partial(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.b(torch.tanh(self.a(v)))

        def weight_layers(self) -> list[nn.Linear]:
            return [self.a]

    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(1))
    report = lsuv_(Partial(), x, generator=torch.Generator().manual_seed(0))
    assert len(report.variances) == 1


def test_initialize_by_name_two_row_blocks_take_one_gain_each():
    from gradpath.init import initialize_by_name_

    layer = nn.Linear(3, 4)
    initialize_by_name_(layer, "weight", "orthogonal", gain=[1.0, 2.0], row_blocks=2,
                        generator=torch.Generator().manual_seed(0))
    top, bottom = layer.weight.detach().chunk(2)
    torch.testing.assert_close(top @ top.T, torch.eye(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(bottom @ bottom.T, 4 * torch.eye(2), atol=1e-5, rtol=0)


def test_a_recipe_gain_is_a_number_none_or_the_activation_gain():
    from gradpath.init import Recipe
    with pytest.raises(ValueError, match="activation"):
        Recipe("bad", "bad", "orthogonal", gain="tanh")
