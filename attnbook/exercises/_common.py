"""Small helpers the chapter checkers share: turning an answer into a tensor or a number, and
comparing it with what a case expects, with a message that says what differs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from attnbook.exercises import Wrong, expect


def shape(t: Any) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def as_tensor(value: Any, what: str) -> torch.Tensor:
    """``value`` as a tensor (lists and numbers are accepted), else a Wrong naming ``what``."""
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise Wrong(f"{what} should be a tensor (or a list of numbers), got {type(value).__name__}") from None


def as_number(value: Any, what: str) -> float:
    """``value`` as a float (a one-element tensor is accepted)."""
    if isinstance(value, torch.Tensor):
        expect(value.numel() == 1, f"{what} should be one number, got a tensor of shape {shape(value)}")
        value = value.item()
    expect(isinstance(value, (int, float)) and not isinstance(value, bool),
           f"{what} should be a number, got {type(value).__name__}")
    expect(math.isfinite(value), f"{what} is {value}, not a finite number")
    return float(value)


def as_int(value: Any, what: str) -> int:
    """``value`` as an int (a float with an integer value, or a one-element tensor, is accepted)."""
    number = as_number(value, what)
    expect(number == int(number), f"{what} should be a whole number, got {number}")
    return int(number)


def expect_shape(t: Any, want: Sequence[int], what: str, why: str = "") -> None:
    expect(isinstance(t, torch.Tensor), f"{what} is a {type(t).__name__}, expected a tensor of shape {tuple(want)}")
    expect(tuple(t.shape) == tuple(want),
           f"{what} has shape {shape(t)}, expected {tuple(want)}" + (f": {why}" if why else ""))


def expect_finite(t: torch.Tensor, what: str, why: str = "") -> None:
    bad = ~torch.isfinite(t)
    if bad.any():
        kind = "NaN" if torch.isnan(t).any() else "inf"
        where = tuple(int(i) for i in bad.nonzero()[0]) if t.dim() else ()
        raise Wrong(f"{what} contains {kind} (first at index {where})" + (f": {why}" if why else ""))


def expect_close(got: torch.Tensor, want: torch.Tensor, what: str, why: str = "",
                 atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """``got`` must have ``want``'s shape, be finite and equal it to the tolerances."""
    expect_shape(got, want.shape, what)
    got = got.detach().to(device=want.device, dtype=torch.float64)
    want = want.detach().to(torch.float64)
    expect_finite(got, what, why)
    if not torch.allclose(got, want, atol=atol, rtol=rtol):
        diff = (got - want).abs()
        where = tuple(int(i) for i in (diff == diff.max()).nonzero()[0]) if diff.dim() else ()
        raise Wrong(
            f"{what} is off by up to {diff.max().item():.3g} (at index {where}: got "
            f"{got[where].item():.4g}, expected {want[where].item():.4g})" + (f": {why}" if why else "")
        )


def attempt(case: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; an exception from the student's code becomes a Wrong that names
    the ``case`` it failed on (a stub's NotImplementedError passes through)."""
    try:
        return fn(*args, **kwargs)
    except (NotImplementedError, Wrong):
        raise
    except Exception as error:  # the student's code failed on this case: say which
        raise Wrong(f"{case}: your code raised {type(error).__name__}: {error}") from error
