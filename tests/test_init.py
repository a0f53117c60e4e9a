"""Initialization: the formulas against torch.nn.init, the gain override, recipes and LSUV."""

import math

import pytest
import torch
from gradpath.activations import ACTIVATIONS
from gradpath.init import (
    INITIALIZATIONS,
    RECIPES,
    LSUVReport,
    activation_gain,
    apply_recipe_,
    expected_weight_std,
    get_recipe,
    he_std,
    initialize_,
    lsuv_,
    pytorch_default_bound,
    standard_uniform_,
    uniform_std,
    xavier_bound,
    xavier_std,
)
from gradpath.models import DeepMLP
from torch import nn


def _mlp(activation: str = "relu", depth: int = 6, width: int = 32) -> DeepMLP:
    return DeepMLP(width, 4, width=width, depth=depth, activation=activation)


def test_xavier_and_he_formulas():
    assert math.isclose(xavier_std(100, 300) ** 2, 2 / 400)
    assert math.isclose(xavier_bound(100, 300), math.sqrt(6 / 400))
    assert math.isclose(uniform_std(xavier_bound(100, 300)), xavier_std(100, 300))
    assert math.isclose(he_std(50) ** 2, 2 / 50)


def test_schemes_draw_exactly_what_torch_nn_init_draws():
    for scheme, reference in [
        ("xavier_uniform", lambda w, g: nn.init.xavier_uniform_(w, generator=g)),
        ("xavier_normal", lambda w, g: nn.init.xavier_normal_(w, generator=g)),
        ("he_normal", lambda w, g: nn.init.kaiming_normal_(w, nonlinearity="relu", generator=g)),
        ("he_uniform", lambda w, g: nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=g)),
    ]:
        layer = nn.Linear(40, 24)
        initialize_(layer, scheme, activation="relu" if scheme.startswith("he") else "identity",
                    generator=torch.Generator().manual_seed(3))
        expected = torch.empty(24, 40)
        reference(expected, torch.Generator().manual_seed(3))
        assert torch.allclose(layer.weight, expected, atol=1e-7), scheme
        assert torch.count_nonzero(layer.bias) == 0


def test_xavier_means_glorot_gain_one_unless_a_gain_is_asked_for():
    layer = nn.Linear(500, 500)
    for activation in ("tanh", "relu", "sigmoid"):
        initialize_(layer, "xavier_normal", activation=activation)
        assert layer.weight.std().item() == pytest.approx(xavier_std(500, 500), rel=0.02)
    initialize_(layer, "xavier_normal", activation="relu", gain=5 / 3)
    assert layer.weight.std().item() == pytest.approx(5 / 3 * xavier_std(500, 500), rel=0.02)
    # On a ReLU DeepMLP, Xavier is not He: with fan_in = fan_out, He's std is sqrt(2) larger.
    xavier = DeepMLP(200, 4, width=200, depth=3, init="xavier_normal",
                     generator=torch.Generator().manual_seed(0)).weight_layers()[1].weight
    he = DeepMLP(200, 4, width=200, depth=3, init="he_normal",
                 generator=torch.Generator().manual_seed(0)).weight_layers()[1].weight
    assert (he.std() / xavier.std()).item() == pytest.approx(math.sqrt(2), rel=0.03)
    initialize_(layer, "he_normal", activation="relu", gain=3.0)
    assert layer.weight.std().item() == pytest.approx(3 / math.sqrt(500), rel=0.02)
    with pytest.raises(ValueError, match="gain"):
        initialize_(layer, "he_normal", gain=0.0)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_orthogonal_means_pytorchs_gain_one_unless_a_gain_is_asked_for(activation):
    """``"orthogonal"`` is ``torch.nn.init.orthogonal_`` with its default gain 1, whatever the
    activation, as ``"xavier_*"`` is Glorot's gain 1; the activation's gain is asked for."""
    a, b, c = nn.Linear(30, 30), nn.Linear(30, 30), nn.Linear(30, 30)
    initialize_(a, "orthogonal", activation=activation,
                generator=torch.Generator().manual_seed(1))
    nn.init.orthogonal_(b.weight, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.weight, b.weight)
    torch.testing.assert_close(a.weight @ a.weight.T, torch.eye(30), atol=1e-5, rtol=0)
    gain = activation_gain(activation)
    initialize_(c, "orthogonal", activation=activation, gain=gain,
                generator=torch.Generator().manual_seed(1))
    assert torch.allclose(c.weight, gain * b.weight)


def test_activation_gain_is_pytorchs():
    assert activation_gain("relu") == pytest.approx(math.sqrt(2))
    assert activation_gain("tanh") == pytest.approx(5 / 3)
    assert activation_gain("sigmoid") == 1.0
    assert activation_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    with pytest.raises(ValueError, match="valid choices"):
        activation_gain("swish2")


def test_pytorch_default_is_uniform_one_over_sqrt_fan_in():
    assert pytorch_default_bound(64) == pytest.approx(1 / 8)
    # kaiming_uniform_(a=sqrt(5)): gain sqrt(2 / 6) times sqrt(3 / fan_in) is 1 / sqrt(fan_in)
    assert nn.init.calculate_gain("leaky_relu", math.sqrt(5)) * math.sqrt(3 / 64) == \
        pytest.approx(pytorch_default_bound(64))
    layer = nn.Linear(400, 400)
    assert layer.weight.abs().max().item() <= pytorch_default_bound(400)
    assert layer.weight.std().item() == pytest.approx(1 / math.sqrt(3 * 400), rel=0.02)
    with pytest.raises(ValueError):
        pytorch_default_bound(0)
    with pytest.raises(ValueError):
        uniform_std(-1.0)


def test_standard_uniform_zeroes_biases():
    model = standard_uniform_(_mlp(width=100), generator=torch.Generator().manual_seed(0))
    for layer in model.weight_layers():
        assert layer.weight.abs().max().item() <= 1 / math.sqrt(layer.weight.shape[1])
        assert torch.count_nonzero(layer.bias) == 0


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_lsuv_gives_every_layer_unit_output_variance(activation):
    model = _mlp(activation, depth=12)
    x = torch.randn(256, 32, generator=torch.Generator().manual_seed(0))
    report = lsuv_(model, x, generator=torch.Generator().manual_seed(0))
    assert isinstance(report, LSUVReport) and report.all_converged
    assert len(report.variances) == 12
    outputs = []
    hooks = [layer.register_forward_hook(lambda m, i, o: outputs.append(o.detach()))
             for layer in model.weight_layers()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for out in outputs:
        assert abs(out.var().item() - 1) < 0.1


def test_lsuv_starts_from_orthogonal_weights():
    model = _mlp("relu", depth=4)
    lsuv_(model, torch.randn(64, 32), max_iterations=1)
    w = model.weight_layers()[1].weight.detach()
    gram = w @ w.T
    # an orthogonal matrix rescaled by one number: W W^T is a multiple of the identity
    assert torch.allclose(gram, gram[0, 0] * torch.eye(32), atol=1e-4)


def test_lsuv_reports_a_dead_layer_instead_of_crashing():
    model = _mlp("relu", depth=4)
    x = torch.randn(64, 32)
    lsuv_(model, x)
    with torch.no_grad():
        model.weight_layers()[1].bias.fill_(-1e6)  # layer 2 outputs -1e6: ReLU kills everything
    report = lsuv_(model, x, orthogonal_start=False)
    assert not report.all_converged
    assert report.variances[2] == 0.0  # layer 3 only sees zeros


def test_lsuv_validates_arguments():
    model = _mlp()
    with pytest.raises(ValueError, match="tolerance"):
        lsuv_(model, torch.randn(8, 32), tolerance=0)
    with pytest.raises(ValueError, match="max_iterations"):
        lsuv_(model, torch.randn(8, 32), max_iterations=0)
    with pytest.raises(ValueError, match="batch"):
        lsuv_(model, torch.randn(1, 32))


def test_recipes_apply_and_unknown_names_list_the_choices():
    x = torch.randn(64, 32)
    for key, recipe in RECIPES.items():
        assert recipe.scheme in INITIALIZATIONS or recipe.scheme in ("lsuv", "standard")
        model = apply_recipe_(_mlp(), key, activation="relu", x=x,
                              generator=torch.Generator().manual_seed(0))
        assert all(torch.isfinite(p).all() for p in model.parameters())
    small = apply_recipe_(_mlp(), "too_small").weight_layers()[2].weight
    assert small.abs().max().item() <= 0.01
    xavier = apply_recipe_(_mlp(width=200), "xavier", activation="relu").weight_layers()[2].weight
    assert xavier.abs().max().item() <= xavier_bound(200, 200)  # gain 1, not ReLU's sqrt(2)
    with pytest.raises(ValueError, match="valid choices"):
        get_recipe("kaiming")
    with pytest.raises(ValueError, match="lsuv"):
        apply_recipe_(_mlp(), "lsuv")


SHAPES = [(300, 300), (400, 100), (100, 400), (64, 1000)]   # (fan_out, fan_in)


@pytest.mark.parametrize("fan_out,fan_in", SHAPES)
@pytest.mark.parametrize("scheme,kwargs", [
    ("uniform", {"scale": 0.5}),
    ("normal", {"scale": 0.3}),
    ("xavier_uniform", {}),
    ("xavier_normal", {}),
    ("xavier_normal", {"gain": 2.0}),
    ("he_uniform", {}),
    ("he_normal", {}),
    ("he_normal", {"mode": "fan_out"}),
    ("he_uniform", {"mode": "fan_out"}),
    ("he_normal", {"gain": 1.0}),
    ("orthogonal", {}),
    ("orthogonal", {"gain": 3.0}),
    ("pytorch_default", {}),
])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_empirical_weight_variance_matches_the_formula(scheme, kwargs, fan_out, fan_in,
                                                       activation):
    """Every named scheme's weights have the variance its formula says, for either activation
    (the activation changes no scheme's default gain except He's for leaky ReLU)."""
    layer = nn.Linear(fan_in, fan_out)
    torch.manual_seed(1)        # pytorch_default draws from the global generator
    initialize_(layer, scheme, activation=activation,
                generator=torch.Generator().manual_seed(1), **kwargs)
    expected = expected_weight_std(scheme, fan_in, fan_out, scale=kwargs.get("scale"),
                                   gain=kwargs.get("gain"), mode=kwargs.get("mode", "fan_in"))
    # the formula by hand, independently of expected_weight_std
    gain = kwargs.get("gain")
    fan = fan_out if kwargs.get("mode") == "fan_out" else fan_in
    by_hand = {
        "uniform": lambda: 0.5 ** 2 / 3,
        "normal": lambda: 0.3 ** 2,
        "xavier_uniform": lambda: 2 / (fan_in + fan_out),
        "xavier_normal": lambda: (gain or 1.0) ** 2 * 2 / (fan_in + fan_out),
        "he_uniform": lambda: 2 / fan,
        "he_normal": lambda: (gain or math.sqrt(2)) ** 2 / fan,
        "orthogonal": lambda: (gain or 1.0) ** 2 / max(fan_in, fan_out),
        "pytorch_default": lambda: 1 / (3 * fan_in),
    }[scheme]()
    assert expected ** 2 == pytest.approx(by_hand, rel=1e-12)
    measured = layer.weight.detach().double().var().item()
    n = fan_in * fan_out                  # relative std error of a variance is about sqrt(2/n)
    assert measured == pytest.approx(by_hand, rel=6 * math.sqrt(2 / n) + 1e-3)


def test_mode_and_expected_std_validate_their_arguments():
    with pytest.raises(ValueError, match="fan_in, fan_out"):
        initialize_(nn.Linear(3, 3), "he_normal", mode="fan_avg")
    with pytest.raises(ValueError, match="valid choices"):
        expected_weight_std("lecun", 3, 3)
    with pytest.raises(ValueError, match="scale"):
        expected_weight_std("uniform", 3, 3)


@pytest.mark.parametrize("scheme", ["he_normal", "he_uniform"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_he_uses_relus_gain_whatever_the_activation(scheme, activation):
    """He et al. (2015): Var(W) = 2 / fan_in, the ReLU gain sqrt(2) whatever follows the layer
    (torch.nn.init.kaiming_*_(nonlinearity="relu")); leaky ReLU alone uses its own slope,
    gain sqrt(2 / (1 + 0.01**2)). The sample std of 400,000 weights has a relative standard
    error of 1/sqrt(2 * 400,000) = 0.11%; 5 of those (0.56%) separate sqrt(2) from every other
    activation's gain (tanh 5/3, sigmoid and linear 1, SELU 3/4), which differ by 15% or more."""
    fan_in, fan_out = 500, 800
    layer = nn.Linear(fan_in, fan_out)
    initialize_(layer, scheme, activation=activation, generator=torch.Generator().manual_seed(3))
    gain = math.sqrt(2.0 / (1 + 0.01**2)) if activation == "leaky_relu" else math.sqrt(2.0)
    expected = gain / math.sqrt(fan_in)
    w = layer.weight.detach().double()
    rel_se = 1 / math.sqrt(2 * w.numel())
    assert abs(w.std().item() / expected - 1) < 5 * rel_se
    assert abs(w.mean().item()) < 5 * expected / math.sqrt(w.numel())
    assert torch.equal(layer.bias, torch.zeros(fan_out))
    if scheme == "he_uniform":                     # U(-b, b) with b = sqrt(3) * std, exactly
        assert w.abs().max().item() <= math.sqrt(3.0) * expected
        assert w.abs().max().item() > 0.999 * math.sqrt(3.0) * expected
