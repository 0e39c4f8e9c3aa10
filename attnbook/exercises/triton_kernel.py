"""Checkers for the exercises of the chapter "A FlashAttention kernel in Triton".

    from attnbook.exercises import triton_kernel as check
    check.tiles_visited(tiles_visited)      # counting the tiles a causal launch computes
    check.row_dot(row_dot)                  # the backward pass's Delta as a Triton kernel
    check.combine_partials(combine)         # merging two partial attentions by their lse
"""

from __future__ import annotations

import math

import torch

from ..functional import flash_attention
from ..kernels import tile_schedule
from . import checker, expect

__all__ = ["tiles_visited", "row_dot", "combine_partials"]


def _kernel_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------------------------
# Exercise 1: how many tiles does one head's forward launch compute?
# --------------------------------------------------------------------------------------------

_TILE_CASES = [  # T, S, block_m, block_n, causal
    (256, 256, 64, 64, False),
    (256, 256, 64, 64, True),
    (200, 200, 32, 64, True),
    (100, 300, 32, 32, True),
    (300, 100, 32, 32, True),
    (70, 45, 16, 16, False),
    (1, 1000, 16, 128, True),
]


def _count_top_left(T, S, bm, bn):
    """What a count with the diagonal through (0, 0) (j <= i) gives."""
    return sum(
        1 for m in range(0, T, bm) for n in range(0, S, bn) if n <= min(m + bm, T) - 1
    )


def _count_floor(T, S, bm, bn, causal):
    """What a count that forgets the partial last tiles gives."""
    return tile_schedule(T // bm * bm, S // bn * bn, bm, bn, causal=causal).visited()


@checker("tiles visited", hint="loop over query tiles m; the last key a row of the tile sees "
         "is (m + 1)·block_m - 1 + (S - T); count the key tiles that start at or before it")
def tiles_visited(fn):
    for T, S, bm, bn, causal in _TILE_CASES:
        got = fn(T, S, bm, bn, causal)
        want = tile_schedule(T, S, bm, bn, causal=causal).visited()
        case = f"T={T}, S={S}, block_m={bm}, block_n={bn}, causal={causal}"
        expect(isinstance(got, int) and not isinstance(got, bool),
               f"return an int, got {type(got).__name__} for {case}")
        if got == want:
            continue
        every = math.ceil(T / bm) * math.ceil(S / bn)
        expect(not (causal and got == every),
               f"{case}: you counted all {every} tiles, expected {want}: with causal=True the "
               "key tiles entirely above the diagonal are skipped")
        expect(not (causal and T != S and got == _count_top_left(T, S, bm, bn)),
               f"{case}: got {got}, expected {want}: the diagonal is aligned bottom-right, "
               "query i sees keys j <= i + (S - T), not j <= i")
        expect(got != _count_floor(T, S, bm, bn, causal),
               f"{case}: got {got}, expected {want}: T or S is not a multiple of the tile, and "
               "the last, partial tile is computed too (divide rounding up)")
        expect(False, f"{case}: got {got}, expected {want}")
    return "your count matches the kernel's loop bounds in every case."


# --------------------------------------------------------------------------------------------
# Exercise 2: Delta = rowsum(dO * O) as a Triton kernel
# --------------------------------------------------------------------------------------------

_ROW_DOT_CASES = [  # N, T, D, dtype
    (2, 37, 16, torch.float32),
    (1, 100, 64, torch.float32),
    (3, 5, 128, torch.float32),
    (2, 70, 128, torch.float16),
]


@checker("row_dot kernel", hint="one program per tile of BLOCK rows: offsets "
         "row·D + col, tl.load with mask=rows < T, tl.sum(o * do, axis=1), tl.store")
def row_dot(fn):
    dev = _kernel_device()
    g = torch.Generator().manual_seed(0)
    for N, T, D, dtype in _ROW_DOT_CASES:
        scale = 8.0 if dtype == torch.float16 else 1.0  # sums of large products
        o = (scale * torch.randn(N, T, D, generator=g)).to(dev, dtype)
        do = (scale * torch.randn(N, T, D, generator=g)).to(dev, dtype)
        want = (o.double() * do.double()).sum(-1)  # (N, T)
        got = fn(o, do)
        case = f"o and do of shape {(N, T, D)} ({str(dtype).removeprefix('torch.')})"
        expect(isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}")
        expect(tuple(got.shape) == (N, T),
               f"{case}: output shape {tuple(got.shape)}, expected {(N, T)}: one number per "
               "row (sum over the head dimension)")
        expect(got.dtype == torch.float32,
               f"{case}: output dtype {got.dtype}, expected torch.float32 (Delta is kept in "
               "float32 whatever the inputs)")
        err = (got.double().cpu() - want.cpu()).abs()
        tol = 1e-4 * (1 + want.abs().cpu())
        if (err <= tol).all():
            continue
        rows_ok = (err <= tol).all(dim=0)  # (T,)
        first_bad = int((~rows_ok).nonzero()[0])
        expect(not (rows_ok[:first_bad].all() and first_bad > 0 and not rows_ok[first_bad:].any()),
               f"{case}: rows 0..{first_bad - 1} are right, rows from {first_bad} on are not: "
               "does your grid launch cdiv(T, BLOCK) programs per sequence, each at its offset?")
        expect(dtype != torch.float16,
               f"{case}: off by up to {err.max().item():.2g} in float16: convert the tiles "
               "with .to(tl.float32) before multiplying and summing")
        expect(False, f"{case}: off by up to {err.max().item():.2g} from Σ_d o·do")
    return "your kernel computes Delta for ragged T, every head dim, float16 and float32."


# --------------------------------------------------------------------------------------------
# Exercise 3: merging the partial results of two halves of the keys
# --------------------------------------------------------------------------------------------


def _partials(seed: int):
    """Queries against keys split in two halves; some rows see keys in one half only, one row
    sees none at all. Returns (o1, lse1, o2, lse2, o, lse)."""
    g = torch.Generator().manual_seed(seed)
    B, H, T, S, D, S1 = 2, 2, 6, 10, 8, 4
    q, k, v = (torch.randn(B, H, n, D, generator=g, dtype=torch.float64) for n in (T, S, S))
    mask = torch.rand(T, S, generator=g) < 0.6  # (T, S)
    mask[0, :S1], mask[0, S1:] = True, False  # row 0: first half only
    mask[1, :S1], mask[1, S1:] = False, True  # row 1: second half only
    mask[2] = False  # row 2: no key at all
    o1, lse1 = flash_attention(q, k[..., :S1, :], v[..., :S1, :], mask[:, :S1], return_lse=True)
    o2, lse2 = flash_attention(q, k[..., S1:, :], v[..., S1:, :], mask[:, S1:], return_lse=True)
    o, lse = flash_attention(q, k, v, mask, return_lse=True)
    return o1, lse1, o2, lse2, o, lse


@checker("combine partials", hint="lse = logaddexp(lse1, lse2); each half's output is "
         "weighted by exp(lse_half - lse); rows with lse = -inf need care")
def combine_partials(fn):
    o1, lse1, o2, lse2, o, lse = _partials(0)
    result = fn(o1.clone(), lse1.clone(), o2.clone(), lse2.clone())
    expect(isinstance(result, tuple) and len(result) == 2,
           f"return a pair (o, lse), got {type(result).__name__}")
    got_o, got_lse = result
    expect(tuple(got_o.shape) == tuple(o.shape) and tuple(got_lse.shape) == tuple(lse.shape),
           f"shapes {tuple(got_o.shape)} and {tuple(got_lse.shape)}, expected {tuple(o.shape)} "
           f"and {tuple(lse.shape)}")
    expect(not torch.isnan(got_o).any() and not torch.isnan(got_lse).any(),
           "NaN in the result: a half without keys has lse = -inf, and exp(-inf - (-inf)) is "
           "NaN; a row without any key must give o = 0 and lse = -inf")
    expect(torch.equal(got_lse.isneginf(), lse.isneginf()),
           "lse should be -inf exactly for the rows that see no key at all (here row 2)")
    fin = lse.isfinite()
    expect(torch.allclose(got_lse[fin], lse[fin], atol=1e-9),
           "the combined lse is wrong: the normalisers add, l = l1 + l2, so "
           "lse = log(e^lse1 + e^lse2) (torch.logaddexp), not the max or the mean")
    expect(not torch.allclose(got_o, (o1 + o2) / 2, atol=1e-9),
           "the output is the plain average of the halves: weight each half by the share of "
           "the softmax mass it holds, exp(lse_half - lse)")
    expect(torch.allclose(got_o, o, atol=1e-9),
           f"the output is off by up to {(got_o - o).abs().max().item():.2g} from attention over "
           "all keys: o = exp(lse1 - lse) o1 + exp(lse2 - lse) o2")
    return "merging by log-sum-exp reproduces attention over all keys, empty rows included."
