"""References and tools the unit tests share: seeded random tensors, float64 loops written from
the equations, a comparison in float64 on the CPU, and a counter of host reads (the operations
that synchronise with a GPU)."""

from __future__ import annotations

import math

import torch
from torch.overrides import TorchFunctionMode


def randn(*shape: int, device="cpu", dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    """Standard normal values drawn in float64 on the CPU from ``seed``, then cast and moved, so
    every device and dtype sees the same numbers (up to the cast)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


def close(actual: torch.Tensor, expected: torch.Tensor, tol: dict) -> None:
    """``assert_close`` in float64 on the CPU (``tol`` = ``{"rtol": .., "atol": ..}``)."""
    torch.testing.assert_close(
        actual.detach().cpu().double(), expected.detach().cpu().double(), **tol
    )


def softmax_loop(row: list[float], keep: list[bool]) -> list[float]:
    """Softmax of the kept entries of one row in float64 Python floats; masked entries get 0 and
    a row with nothing kept is all 0."""
    kept = [x for x, m in zip(row, keep) if m]
    if not kept:
        return [0.0] * len(row)
    top = max(kept)
    z = sum(math.exp(x - top) for x in kept)
    return [math.exp(x - top) / z if m else 0.0 for x, m in zip(row, keep)]


# Tensor methods and functions that read a value back to the host: on a GPU each waits for
# every queued kernel (a synchronisation).
HOST_READS = frozenset({
    "item", "tolist", "__bool__", "__int__", "__float__", "__index__", "__len__",
    "equal", "allclose", "is_nonzero", "nonzero", "numpy", "masked_select", "unique",
})


class HostReads(TorchFunctionMode):
    """Counts the calls that read tensor values on the host, on any device: ``with HostReads()
    as reads: ...``, then ``reads.calls`` lists their names (``[]`` = no synchronisation)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))
