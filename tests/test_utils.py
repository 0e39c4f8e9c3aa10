import os
import random

import numpy as np
import pytest
import torch

import attnbook
from attnbook.transformer import DecoderOnly
from attnbook.utils import device, seed_everything


def test_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert device() == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert device() == torch.device("cpu")


def test_seed_everything_makes_all_generators_repeat():
    def draw():
        g = seed_everything(123)
        return (random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=g))

    a, b = draw(), draw()
    assert a[0] == b[0] and a[1] == b[1]
    assert torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])


def test_seed_everything_leaves_the_hash_seed_alone(monkeypatch):
    """PYTHONHASHSEED is read once at interpreter start-up: setting it later changes nothing, so
    seed_everything does not pretend to."""
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    seed_everything(5)
    assert "PYTHONHASHSEED" not in os.environ
    assert "PYTHONHASHSEED" in seed_everything.__doc__ and "start" in seed_everything.__doc__


def test_seed_everything_deterministic_mode(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic)
    try:
        seed_everything(3)  # the default leaves the process-wide settings as they are
        assert torch.are_deterministic_algorithms_enabled() == before[0]
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        seed_everything(3, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        # a model still runs forward and backward with deterministic algorithms only
        model = DecoderOnly(13, 16, 4, 1, positional="learned")
        model(torch.randint(0, 13, (2, 5))).sum().backward()
        with pytest.raises(ValueError, match="deterministic"):
            seed_everything(3, deterministic="yes")
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1:]


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_seed_everything_rejects_bad_seed(bad):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(bad)


def test_top_level_names_resolve_lazily():
    assert attnbook.device is device
    with pytest.raises(AttributeError):
        attnbook.not_a_name  # noqa: B018
