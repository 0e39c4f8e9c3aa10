"""Shared fixtures: the devices and dtypes every numerical test is parametrised over."""

from __future__ import annotations

import pytest
import torch


def _devices() -> list:
    params = [pytest.param("cpu", id="cpu")]
    params.append(
        pytest.param(
            "cuda", id="cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        )
    )
    mps = getattr(torch.backends, "mps", None)
    params.append(
        pytest.param(
            "mps", id="mps",
            marks=pytest.mark.skipif(mps is None or not mps.is_available(), reason="no MPS device"),
        )
    )
    return params


DEVICES = _devices()

# dtype -> (rtol, atol) for comparing against a float64 or PyTorch reference. The half formats
# are rounded to 8 (bfloat16) and 11 (float16) significant bits, unit roundoff 2^-8 = 3.9e-3 and
# 2^-11 = 4.9e-4; a result that went through a few roundings of inputs, weights and outputs
# (plus float32 accumulation) is a few of those units off.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-5, 1e-5),
    torch.float64: (1e-10, 1e-10),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (4e-3, 4e-3),
}
DTYPES = [pytest.param(dt, id=str(dt).removeprefix("torch.")) for dt in TOLERANCES]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=DTYPES)
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture
def tol(dtype) -> dict:
    rtol, atol = TOLERANCES[dtype]
    return {"rtol": rtol, "atol": atol}
