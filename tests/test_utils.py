import random

import numpy as np
import pytest
import torch

import attnbook
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


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_seed_everything_rejects_bad_seed(bad):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(bad)


def test_top_level_names_resolve_lazily():
    assert attnbook.device is device
    with pytest.raises(AttributeError):
        attnbook.not_a_name  # noqa: B018
