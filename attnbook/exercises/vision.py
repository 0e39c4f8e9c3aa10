"""Checkers for the exercises of "Attention for images" (book/vision.ipynb).

* :func:`patchify` — cut ``(B, C, H, W)`` images into flattened ``P x P`` patches;
* :func:`class_token_map` — the class token's attention over the patches as an image;
* :func:`rollout` — attention rollout (Abnar & Zuidema 2020) through the layers.

Each checker builds its own cases, compares with an independent computation and, when the
answer is wrong, names the likely slip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from . import checker, expect

__all__ = ["patchify", "class_token_map", "rollout"]


def _tensor(value: Any, shape: tuple[int, ...], what: str) -> torch.Tensor:
    expect(isinstance(value, torch.Tensor), f"{what} must be a tensor, got {type(value).__name__}")
    expect(tuple(value.shape) == shape, f"{what} must have shape {shape}, got {tuple(value.shape)}")
    return value


def _patches_loop(images: torch.Tensor, P: int, channel_first: bool = False,
                  column_major: bool = False) -> torch.Tensor:
    B, C, H, W = images.shape
    rows = []
    grid = [(r, s) for r in range(H // P) for s in range(W // P)]
    if column_major:
        grid = [(r, s) for s in range(W // P) for r in range(H // P)]
    for b in range(B):
        patches = []
        for r, s in grid:
            block = images[b, :, r * P:(r + 1) * P, s * P:(s + 1) * P]  # (C, P, P)
            patches.append(block.reshape(-1) if channel_first else block.permute(1, 2, 0).reshape(-1))
        rows.append(torch.stack(patches))
    return torch.stack(rows)  # (B, N, P*P*C)


@checker("patchify", hint="reshape to (B, C, H/P, P, W/P, P), permute to (B, H/P, W/P, P, P, C), "
         "then reshape to (B, N, P*P*C)")
def patchify(fn: Callable[[torch.Tensor, int], Any]) -> str:
    g = torch.Generator().manual_seed(0)
    for shape, P in [((2, 1, 8, 8), 4), ((1, 3, 4, 6), 2), ((1, 2, 6, 6), 3)]:
        images = torch.randn(*shape, generator=g)
        B, C, H, W = shape
        want = _patches_loop(images, P)
        got = _tensor(fn(images.clone(), P), want.shape, f"patchify(images of shape {shape}, {P})")
        if torch.allclose(got, want):
            continue
        if C > 1 and torch.allclose(got, _patches_loop(images, P, channel_first=True)):
            expect(False, f"on {C}-channel images your patches list all of channel 0, then channel "
                   f"1, ...: that is F.unfold's order. Flatten each patch pixel by pixel, the "
                   f"channels of a pixel together: permute so C is last before the reshape.")
        if torch.allclose(got, _patches_loop(images, P, column_major=True)):
            expect(False, "your patches run down the columns first; number them row by row "
                   "(left to right, then top to bottom), as the position embeddings expect.")
        expect(False, f"wrong patches for images of shape {shape} with P={P}: a plain "
               f"images.reshape(B, -1, P*P*C) mixes pixels of different patches; compare "
               f"patch 0 with images[0, :, :P, :P].")
    return "row-major patches, each flattened pixel by pixel with its channels together."


def _cases() -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for B, H, side in [(2, 3, 2), (1, 4, 3)]:
        T = 1 + side * side
        out.append((torch.softmax(torch.randn(B, H, T, T, generator=g) * 2, dim=-1), side))
    return out


@checker("class-token map", hint="weights[:, :, 0, 1:] is the class token's attention to the "
         "patches; average over the heads and reshape to (B, side, side)")
def class_token_map(fn: Callable[[torch.Tensor, int], Any]) -> str:
    for weights, side in _cases():
        B = weights.shape[0]
        want = weights[:, :, 0, 1:].mean(dim=1).reshape(B, side, side)
        got = _tensor(fn(weights.clone(), side), (B, side, side), "the map")
        if torch.allclose(got, want, atol=1e-6):
            continue
        expect(not torch.allclose(got, weights[:, 0, 0, 1:].reshape(B, side, side), atol=1e-6),
               "that is head 0 alone: average over the heads (dimension 1).")
        expect(not torch.allclose(got, weights[:, :, 1:, 0].mean(1).reshape(B, side, side), atol=1e-6),
               "that is how much each patch attends TO the class token (a column); the class "
               "token's own row is weights[:, :, 0, 1:].")
        expect(not torch.allclose(got, want.transpose(1, 2), atol=1e-6),
               "your map is transposed: patches are numbered row by row, so patch n sits at "
               "row n // side, column n % side.")
        expect(False, "wrong map: take the class token's row (query 0), drop its weight on "
               "itself (key 0), average the heads, then reshape.")
    return "the class token's attention over the patch grid, heads averaged."


def _rollout_reference(weights: list[torch.Tensor]) -> torch.Tensor:
    T = weights[0].shape[-1]
    eye = torch.eye(T, dtype=torch.float64)
    R = eye
    for w in weights:
        A = 0.5 * w.double().mean(1) + 0.5 * eye
        A = A / A.sum(-1, keepdim=True)
        R = A @ R
    return R


@checker("attention rollout", hint="per layer: A = mean over heads, A = 0.5 A + 0.5 I, rows "
         "renormalised; then R = A_L ... A_2 A_1 (the last layer on the left)")
def rollout(fn: Callable[[list[torch.Tensor]], Any]) -> str:
    g = torch.Generator().manual_seed(2)
    for B, H, T, L in [(1, 2, 3, 2), (2, 3, 5, 3)]:
        weights = [torch.softmax(torch.randn(B, H, T, T, generator=g, dtype=torch.float64) * 2, -1)
                   for _ in range(L)]
        want = _rollout_reference(weights)
        got = _tensor(fn([w.clone() for w in weights]), (B, T, T), f"rollout of {L} layers")
        if torch.allclose(got.double(), want, atol=1e-6):
            continue
        expect(not torch.allclose(got.double(), _rollout_reference(weights[::-1]), atol=1e-6),
               "you multiplied in the wrong order: the last layer goes on the LEFT, R = A_L ... A_1.")
        plain = torch.eye(T, dtype=torch.float64)
        for w in weights:
            plain = w.mean(1) @ plain
        expect(not torch.allclose(got.double(), plain, atol=1e-6),
               "you left out the residual connection: mix in the identity, 0.5 A + 0.5 I, per layer.")
        expect(False, f"wrong rollout on {L} layers of {H} heads: check the head average and "
               f"that every row of R sums to one.")
    return "the rows of R say where each token's information came from."
