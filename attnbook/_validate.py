"""Argument checks shared by the package: each raises ``ValueError`` naming the argument and
the shape it got, before any arithmetic is done."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["require", "shape_of", "check_ndim", "check_size", "check_mask"]


def shape_of(x: torch.Tensor | None) -> str:
    """``(2, 3, 4)`` style text for a tensor's shape (``None`` for a missing tensor)."""
    return "None" if x is None else str(tuple(x.shape))


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition`` holds."""
    if not condition:
        raise ValueError(message)


def check_ndim(name: str, x: torch.Tensor, ndim: int | Sequence[int]) -> None:
    """``x`` must be a tensor with ``ndim`` dimensions (or one of several allowed counts)."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    require(isinstance(x, torch.Tensor), f"{name} must be a torch.Tensor, got {type(x).__name__}")
    require(
        x.dim() in allowed,
        f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {shape_of(x)}",
    )


def check_size(name: str, x: torch.Tensor, dim: int, size: int, what: str = "") -> None:
    """``x.shape[dim]`` must equal ``size``; ``what`` says where the expected size comes from."""
    require(
        x.dim() >= (dim + 1 if dim >= 0 else -dim) and x.shape[dim] == size,
        f"{name} must have size {size} in dimension {dim}{' (' + what + ')' if what else ''}, "
        f"got shape {shape_of(x)}",
    )


def check_mask(name: str, mask: torch.Tensor, target: Sequence[int]) -> None:
    """``mask`` must be boolean and broadcastable to ``target`` (e.g. the scores' shape)."""
    require(isinstance(mask, torch.Tensor), f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    require(
        mask.dtype == torch.bool,
        f"{name} must be a boolean tensor (True = may attend), got dtype {mask.dtype} "
        f"with shape {shape_of(mask)}",
    )
    target = tuple(target)
    ok = mask.dim() <= len(target) and all(
        m in (1, t) for m, t in zip(reversed(mask.shape), reversed(target))
    )
    require(ok, f"{name} with shape {shape_of(mask)} does not broadcast to {target}")
