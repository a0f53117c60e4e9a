"""initialize_by_name_, exactly: each scheme draws what torch.nn.init draws with the same
generator (fans from the shape as torch computes them, convolutions included), row blocks are
initialized as separate matrices, and every refusal has its exact message."""

from __future__ import annotations

import math

import pytest
import torch
from gradpath.init import NAMED_SCHEMES, initialize_by_name_
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=(2, 5))      # fan_in 3*10=30, fan_out 4*10=40
        self.proj = nn.Linear(6, 9)                           # 9 rows: 3 blocks of (3, 6)
        self.scalar = nn.Parameter(torch.tensor(2.0))


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(11)


REFERENCE = {
    "xavier_uniform": lambda w, g: nn.init.xavier_uniform_(w, gain=g, generator=_gen()),
    "xavier_normal": lambda w, g: nn.init.xavier_normal_(w, gain=g, generator=_gen()),
    "he_uniform": lambda w, g: nn.init.uniform_(
        w, -math.sqrt(3) * g / math.sqrt(nn.init._calculate_fan_in_and_fan_out(w)[0]),
        math.sqrt(3) * g / math.sqrt(nn.init._calculate_fan_in_and_fan_out(w)[0]),
        generator=_gen()),
    "he_normal": lambda w, g: nn.init.normal_(
        w, 0.0, g / math.sqrt(nn.init._calculate_fan_in_and_fan_out(w)[0]), generator=_gen()),
    "orthogonal": lambda w, g: nn.init.orthogonal_(w, gain=g, generator=_gen()),
}


@pytest.mark.parametrize("scheme", sorted(REFERENCE))
@pytest.mark.parametrize("gain", [None, 0.7])
def test_matrix_schemes_draw_what_torch_draws_on_a_convolution(scheme, gain):
    net = Net()
    names = initialize_by_name_(net, r"^conv\.weight$", scheme, gain=gain, generator=_gen())
    assert names == ["conv.weight"]
    expected = torch.empty_like(net.conv.weight)
    default = math.sqrt(2.0) if scheme.startswith("he_") else 1.0
    REFERENCE[scheme](expected, default if gain is None else gain)
    torch.testing.assert_close(net.conv.weight.detach(), expected, rtol=1e-6, atol=0)
    # torch's own He draw with the ReLU gain is the same
    if scheme == "he_normal" and gain is None:
        kaiming = torch.empty_like(expected)
        nn.init.kaiming_normal_(kaiming, nonlinearity="relu", generator=_gen())
        torch.testing.assert_close(net.conv.weight.detach(), kaiming, rtol=1e-6, atol=0)


@pytest.mark.parametrize("scheme", sorted(REFERENCE))
def test_row_blocks_are_separate_matrices_with_their_own_gains(scheme):
    net = Net()
    gains = [0.5, 1.0, 2.0]
    initialize_by_name_(net, r"proj\.weight", scheme, gain=gains, row_blocks=3,
                        generator=torch.Generator().manual_seed(11))
    generator = torch.Generator().manual_seed(11)
    for block, g in zip(net.proj.weight.detach().chunk(3), gains, strict=True):
        expected = torch.empty(3, 6)
        fan_in, fan_out = 6, 3
        if scheme == "orthogonal":
            nn.init.orthogonal_(expected, gain=g, generator=generator)
        elif scheme.startswith("xavier"):
            std = g * math.sqrt(2.0 / (fan_in + fan_out))
            if scheme.endswith("normal"):
                expected.normal_(0.0, std, generator=generator)
            else:
                expected.uniform_(-math.sqrt(3) * std, math.sqrt(3) * std, generator=generator)
        else:
            std = g / math.sqrt(fan_in)
            if scheme.endswith("normal"):
                expected.normal_(0.0, std, generator=generator)
            else:
                expected.uniform_(-math.sqrt(3) * std, math.sqrt(3) * std, generator=generator)
        torch.testing.assert_close(block, expected, rtol=1e-6, atol=0)


def test_value_schemes_and_every_parameter_a_pattern_matches():
    net = Net()
    assert initialize_by_name_(net, "bias", "zeros") == ["conv.bias", "proj.bias"]
    assert not net.conv.bias.any() and not net.proj.bias.any()
    assert initialize_by_name_(net, r"^scalar$", "ones") == ["scalar"]     # a 0-d parameter
    assert float(net.scalar) == 1.0
    initialize_by_name_(net, "proj.bias", "ones", row_blocks=3)              # 1-d, 9 = 3 x 3
    assert torch.equal(net.proj.bias.detach(), torch.ones(9))
    initialize_by_name_(net, "proj.weight", "normal", scale=0.25, generator=_gen())
    expected = torch.empty(9, 6).normal_(0.0, 0.25, generator=_gen())
    assert torch.equal(net.proj.weight.detach(), expected)
    initialize_by_name_(net, "proj.weight", "uniform", scale=0.25, generator=_gen())
    expected = torch.empty(9, 6).uniform_(-0.25, 0.25, generator=_gen())
    assert torch.equal(net.proj.weight.detach(), expected)
    assert set(NAMED_SCHEMES) == set(REFERENCE) | {"normal", "uniform", "zeros", "ones"}


def test_refusals_name_the_problem_exactly():
    net = Net()
    with pytest.raises(ValueError, match=r"^unknown scheme 'kaiming'; valid choices are "
                                         r"xavier_uniform, xavier_normal, he_uniform, he_normal,"
                                         r" orthogonal, normal, uniform, zeros, ones$"):
        initialize_by_name_(net, "proj", "kaiming")
    for scheme in ("normal", "uniform"):
        for scale in (None, 0.0, -1.0):
            with pytest.raises(ValueError,
                    match=rf"^(scheme '{scheme}' needs a positive scale|scale "
                                                 rf"must be a finite positive number), "
                                                 rf"got {scale!r}$"):
                initialize_by_name_(net, "proj", scheme, scale=scale)
    with pytest.raises(ValueError, match=r"^row_blocks must be a positive integer, got 0$"):
        initialize_by_name_(net, "proj", "zeros", row_blocks=0)
    with pytest.raises(ValueError, match=r"^gain has 2 entries but row_blocks is 3$"):
        initialize_by_name_(net, "proj.weight", "orthogonal", gain=[1.0, 1.0], row_blocks=3)
    for gain in (0.0, [1.0, 0.0, 1.0]):
        with pytest.raises(ValueError, match=r"^gain must be finite and positive, got "):
            initialize_by_name_(net, "proj.weight", "orthogonal", gain=gain,
                                row_blocks=1 if gain == 0.0 else 3)
    with pytest.raises(ValueError, match=r"^pattern '\(' is not a valid regular expression: "):
        initialize_by_name_(net, "(", "zeros")
    with pytest.raises(ValueError, match=r"^pattern 'nothing' matches no parameter; names look "
                                         r"like scalar, conv\.weight, conv\.bias, proj\.weight, "
                                         r"proj\.bias$"):
        initialize_by_name_(net, "nothing", "zeros")
    for scheme in REFERENCE:
        with pytest.raises(ValueError, match=rf"^scheme '{scheme}' needs a weight with at least "
                                             r"2 dimensions; proj\.bias has shape \(9,\)$"):
            initialize_by_name_(net, r"proj\.bias", scheme)
    with pytest.raises(ValueError, match=r"^proj\.weight has shape \(9, 6\): its rows do not "
                                         r"split into 2 equal blocks$"):
        initialize_by_name_(net, r"proj\.weight", "zeros", row_blocks=2)
    with pytest.raises(ValueError, match=r"^scalar has shape \(\): its rows do not split"):
        initialize_by_name_(net, "scalar", "zeros", row_blocks=3)


def test_the_error_lists_only_the_first_six_names():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(4)])        # 8 parameters
    with pytest.raises(ValueError) as error:
        initialize_by_name_(model, "nothing", "zeros")
    assert str(error.value).endswith("names look like 0.weight, 0.bias, 1.weight, 1.bias, "
                                     "2.weight, 2.bias")
