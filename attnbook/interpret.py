"""Reading attention weights: attention rollout (Abnar & Zuidema 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._validate import check_bool, require, shape_of

__all__ = ["attention_rollout"]


def attention_rollout(weights: Sequence[torch.Tensor], residual: bool = True) -> torch.Tensor:
    """Roll attention through the layers: ``weights`` a list of per-layer ``(B, H, T, T)``
    attention, first layer first -> ``(B, T, T)``.

    Per layer the heads are averaged, ``A = mean_h A_h``; with ``residual`` the skip connection
    is accounted for as ``A' = 0.5 A + 0.5 I`` with rows renormalised to sum to one. The layers'
    matrices are multiplied with the last layer on the left::

        R = A'_L A'_{L-1} ... A'_1

    so ``R[b, i, j]`` is how much of the output at token ``i`` flows from input token ``j``.
    """
    check_bool("residual", residual)
    require(
        isinstance(weights, (list, tuple)) and len(weights) > 0,
        lambda: f"weights must be a non-empty list of (B, H, T, T) tensors, got {type(weights).__name__}",
    )
    first = weights[0]
    require(
        isinstance(first, torch.Tensor) and first.ndim == 4 and first.shape[-1] == first.shape[-2],
        lambda: f"weights[0] must have shape (B, H, T, T), got shape "
        f"{shape_of(first) if isinstance(first, torch.Tensor) else type(first).__name__}",
    )
    for i, w in enumerate(weights):
        require(
            isinstance(w, torch.Tensor) and tuple(w.shape[:1]) + tuple(w.shape[2:]) == (
                first.shape[0], first.shape[2], first.shape[3]) and w.ndim == 4,
            lambda i=i, w=w: f"weights[{i}] must have shape (B, H, T, T) = "
            f"({first.shape[0]}, H, {first.shape[2]}, {first.shape[3]}) like weights[0], got shape "
            f"{shape_of(w) if isinstance(w, torch.Tensor) else type(w).__name__}",
        )
    T = first.shape[-1]
    eye = torch.eye(T, dtype=first.dtype, device=first.device)  # (T, T)
    rollout = None
    for w in weights:
        a = w.mean(dim=1)  # (B, T, T)
        if residual:
            a = 0.5 * a + 0.5 * eye
            a = a / a.sum(dim=-1, keepdim=True)  # (B, T, T)
        rollout = a if rollout is None else a @ rollout  # later layer on the left
    return rollout  # (B, T, T)
