"""Checkers for the exercises of "FlashAttention from scratch" (book/flash_from_scratch.ipynb)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from attnbook.exercises import Wrong, checker, expect

__all__ = ["merge_partials", "causal_tiles", "attention_backward"]

_NEG_INF = float("-inf")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _partial(x: torch.Tensor, v: torch.Tensor, keep: torch.Tensor):
    """(m, l, o) of scores x (R, S) over the kept keys (R, S): m = max, l = Σ e^(x - m),
    o = Σ e^(x - m) v; (-inf, 0, 0) for a row with no kept key. Computed in float64."""
    xm = x.masked_fill(~keep, _NEG_INF)
    m = xm.amax(-1)  # (R,)
    e = torch.exp(xm - m.masked_fill(m == _NEG_INF, 0.0)[:, None])  # (R, S), 0 where masked
    return m, e.sum(-1), e @ v


def _as_triple(result: Any, call: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    expect(
        isinstance(result, (tuple, list)) and len(result) == 3
        and all(isinstance(t, torch.Tensor) for t in result),
        f"{call} returned {type(result).__name__}; expected a tuple (m, l, o) of three tensors",
    )
    return tuple(result)  # type: ignore[return-value]


@checker("merging two partial attentions",
         hint="m = max(m_a, m_b); multiply l_a and o_a by e^(m_a - m), l_b and o_b by "
              "e^(m_b - m), then add; an empty part (m = -inf) gets the factor 0")
def merge_partials(fn) -> str:
    gen = _gen(0)
    R, S, Dv = 6, 20, 5
    x = torch.randn(R, S, generator=gen, dtype=torch.float64) * 3
    v = torch.randn(S, Dv, generator=gen, dtype=torch.float64)
    keys = torch.arange(S)
    for cut in (7, 1, 19):
        in_a = (keys < cut).expand(R, S)
        cases = [(f"scores (6, 20) split at key {cut}", in_a, ~in_a)]
        if cut == 7:
            empty_a = in_a.clone()
            empty_a[2] = False  # row 2 has no key in part a
            only_a = in_a & ~empty_a
            cases.append(("a part that is empty for row 2 (m = -inf, l = 0, o = 0)", empty_a,
                          ~in_a | only_a))
            none = torch.zeros(R, S, dtype=torch.bool)
            cases.append(("both parts empty for every row", none, none))
        for name, keep_a, keep_b in cases:
            a, b = _partial(x, v, keep_a), _partial(x, v, keep_b)
            want = _partial(x, v, keep_a | keep_b)
            got = _as_triple(fn(tuple(t.clone() for t in a), tuple(t.clone() for t in b)),
                             "merge_partials(a, b)")
            for g, w, what in zip(got, want, ("m", "l", "o")):
                expect(g.shape == w.shape,
                       f"{name}: {what} has shape {tuple(g.shape)}, expected {tuple(w.shape)}")
            m, ell, o = (t.double() for t in got)
            expect(not (torch.isnan(m).any() or torch.isnan(ell).any() or torch.isnan(o).any()),
                   f"{name}: your result holds NaN. e^(m_a - m) is e^(-inf - (-inf)) = NaN when "
                   "a part is empty for a row: use 0 for an empty part's factor")
            expect(torch.equal(m, want[0]), f"{name}: m should be the elementwise max(m_a, m_b)")
            if not torch.allclose(ell, want[1], rtol=1e-10, atol=1e-12):
                plain = a[1] + b[1]
                expect(not torch.allclose(ell, plain),
                       f"{name}: you added l_a + l_b without rescaling them to the common "
                       "maximum m (multiply each by e^(m_part - m))")
                raise Wrong(f"{name}: l differs from the sum over both parts, e^(x - m) summed")
            if not torch.allclose(o, want[2], rtol=1e-10, atol=1e-12):
                expect(not torch.allclose(o, a[2] + b[2]),
                       f"{name}: l is right but o is not: the outputs need the same rescaling "
                       "as the sums")
                raise Wrong(f"{name}: o differs from Σ e^(x - m) v over both parts")
    return "the merge is the whole of FlashAttention's bookkeeping; o / l is the attention output."


def _brute_force_tiles(T: int, S: int, bq: int, bk: int) -> int:
    keep = torch.arange(S)[None, :] <= torch.arange(T)[:, None] + (S - T)  # (T, S)
    return sum(
        bool(keep[i0 : i0 + bq, j0 : j0 + bk].any())
        for i0 in range(0, T, bq)
        for j0 in range(0, S, bk)
    )


@checker("the tiles of causal attention",
         hint="query block [i0, i1) sees keys up to (i1 - 1) + (S - T); a key block starting "
              "after that is skipped")
def causal_tiles(fn) -> str:
    cases = [(256, 256, 64, 64), (100, 100, 32, 32), (100, 100, 30, 20), (64, 160, 16, 32),
             (160, 64, 32, 16), (7, 7, 8, 8), (1, 50, 1, 7), (50, 3, 4, 2)]
    for T, S, bq, bk in cases:
        want = _brute_force_tiles(T, S, bq, bk)
        call = f"causal_tiles(T={T}, S={S}, block_q={bq}, block_k={bk})"
        got = fn(T, S, bq, bk)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        expect(isinstance(got, numbers.Integral) or (isinstance(got, float) and got.is_integer()),
               f"{call} returned {got!r}; a number of tiles is an integer")
        got = int(got)
        if got == want:
            continue
        msg = f"{call} = {got}, but {want} tiles hold a visible (query, key) pair"
        total = math.ceil(T / bq) * math.ceil(S / bk)
        expect(got != total, f"{msg}: that is every tile; the causal ones above the diagonal "
                             "are skipped")
        top_left = sum(1 for i0 in range(0, T, bq) for j0 in range(0, S, bk)
                       if j0 <= min(i0 + bq, T) - 1)
        expect(got != top_left or S == T,
               f"{msg}: you aligned the diagonal top-left (key j <= query i); with T != S it is "
               "aligned bottom-right, j <= i + (S - T)")
        N = T // bq
        expect(got != N * (N + 1) // 2 or (T % bq == 0 and bq == bk and S == T),
               f"{msg}: N(N + 1)/2 holds only for T = S, equal blocks and no ragged last block")
        raise Wrong(msg)
    return "about half the tiles for T = S: the other half would be all zeros after the mask."


@checker("the attention backward pass",
         hint="P = softmax(scale q kᵀ), O = P v; dv = Pᵀ dO, dP = dO vᵀ, "
              "dS = P ∘ (dP − rowsum(dO ∘ O)), dq = scale dS k, dk = scale dSᵀ q")
def attention_backward(fn) -> str:
    gen = _gen(1)
    cases = [  # leading dims, T, S, d, d_v, scale
        ((2, 3), 5, 7, 8, 3, 1 / math.sqrt(8)),
        ((), 6, 6, 4, 4, 0.5),
        ((1,), 9, 4, 2, 6, 2.0),
    ]
    for lead, T, S, d, dv_, scale in cases:
        name = (f"q {(*lead, T, d)}, k {(*lead, S, d)}, v {(*lead, S, dv_)}, "
                f"scale {scale:.4g}")
        q = torch.randn(*lead, T, d, generator=gen, dtype=torch.float64)
        k = torch.randn(*lead, S, d, generator=gen, dtype=torch.float64)
        v = torch.randn(*lead, S, dv_, generator=gen, dtype=torch.float64)
        dO = torch.randn(*lead, T, dv_, generator=gen, dtype=torch.float64)
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = torch.softmax(scale * leaves[0] @ leaves[1].transpose(-2, -1), -1) @ leaves[2]
        want = torch.autograd.grad(out, leaves, dO)
        with torch.no_grad():
            got = fn(q.clone(), k.clone(), v.clone(), dO.clone(), scale)
        expect(isinstance(got, (tuple, list)) and len(got) == 3,
               f"{name}: expected a tuple (dq, dk, dv), got {type(got).__name__}")
        for g, w, what in zip(got, want, ("dq", "dk", "dv")):
            expect(isinstance(g, torch.Tensor) and g.shape == w.shape,
                   f"{name}: {what} has shape {tuple(getattr(g, 'shape', ()))}, expected "
                   f"{tuple(w.shape)} (the shape of {what[1:]}): check which factor is transposed")
        dq, dk, dv = (g.double() for g in got)
        expect(torch.allclose(dv, want[2], rtol=1e-8, atol=1e-10),
               f"{name}: dv is wrong; it is Pᵀ dO, with P the normalised weights")
        if torch.allclose(dq, want[0], rtol=1e-8, atol=1e-10) and torch.allclose(
                dk, want[1], rtol=1e-8, atol=1e-10):
            continue
        for g, w, what in ((dq, want[0], "dq"), (dk, want[1], "dk")):
            if torch.allclose(g * scale, w, rtol=1e-8, atol=1e-10) or torch.allclose(
                    g / scale, w, rtol=1e-8, atol=1e-10):
                raise Wrong(f"{name}: {what} is off by the factor scale = {scale:.4g}: "
                            "S = scale q kᵀ, so the chain rule multiplies by scale once")
        P = torch.softmax(scale * q @ k.transpose(-2, -1), -1)
        no_d = scale * (P * (dO @ v.transpose(-2, -1))) @ k
        expect(not torch.allclose(dq, no_d, rtol=1e-8, atol=1e-10),
               f"{name}: dv is right but dq and dk are not: dS = P ∘ (dP − D) needs the "
               "softmax's correction D = rowsum(dO ∘ O)")
        raise Wrong(f"{name}: dv is right, but dq or dk differs from autograd")
    return "and FlashAttention computes the same, tile by tile, with P recomputed from L."
