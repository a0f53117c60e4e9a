import pytest
import torch
from gradpath.device import pick_device, seed_everything
from gradpath.scale import SCALES, current_scale


def test_cpu_always_available_and_default_order(monkeypatch):
    monkeypatch.delenv("GRADPATH_DEVICE", raising=False)
    # the machine's own answer, computed independently of pick_device
    mps = torch.backends.mps.is_available()
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert pick_device().type == expected
    assert pick_device("cpu").type == "cpu"


@pytest.mark.parametrize(("cuda", "mps", "expected"), [
    (True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_default_order_is_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    """Every combination of available accelerators, faked, so the order is tested on any
    machine (without a GPU the real answer is always the CPU)."""
    monkeypatch.delenv("GRADPATH_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert pick_device().type == expected
    assert pick_device("cpu").type == "cpu"                    # an explicit choice wins
    monkeypatch.setenv("GRADPATH_DEVICE", " CPU ")             # so does the variable, trimmed
    assert pick_device().type == "cpu"


def test_environment_variable_overrides(monkeypatch):
    monkeypatch.setenv("GRADPATH_DEVICE", "cpu")
    assert pick_device().type == "cpu"


def test_unknown_device_names_the_choices():
    with pytest.raises(ValueError, match="cuda, mps, cpu"):
        pick_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_unavailable_device_is_a_clear_error():
    with pytest.raises(ValueError, match="not available"):
        pick_device("cuda")


def test_seed_everything_makes_draws_repeat():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))
    with pytest.raises(ValueError):
        seed_everything(-1)


def test_scale_defaults_by_device_and_env(monkeypatch):
    monkeypatch.delenv("GRADPATH_SCALE", raising=False)
    assert current_scale("cpu").name == "small"
    assert current_scale("cuda").name == "large"
    monkeypatch.setenv("GRADPATH_SCALE", "large")
    assert current_scale("cpu") == SCALES["large"]
    monkeypatch.setenv("GRADPATH_SCALE", "huge")
    with pytest.raises(ValueError, match="small, large"):
        current_scale()
    assert SCALES["large"].width > SCALES["small"].width


def test_cpu_threads_follow_the_environment(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("GRADPATH_CPU_THREADS", "1")
        assert pick_device("cpu").type == "cpu" and torch.get_num_threads() == 1
        monkeypatch.setenv("GRADPATH_CPU_THREADS", "2")
        pick_device("cpu")
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("GRADPATH_CPU_THREADS", "0")  # leave PyTorch's setting alone
        pick_device("cpu")
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("GRADPATH_CPU_THREADS", "many")
        with pytest.raises(ValueError, match="non-negative integer"):
            pick_device("cpu")
    finally:
        torch.set_num_threads(before)
