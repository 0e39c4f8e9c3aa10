"""Checkers for the exercises of "Self-attention" (book/self_attention.ipynb)."""

from __future__ import annotations

import torch

from attnbook.exercises import Wrong, checker, expect
from attnbook.exercises._common import as_int, expect_close, expect_shape


def _qkv(*batch: int, T: int, D: int, Dv: int, seed: int, S: int | None = None):
    g = torch.Generator().manual_seed(seed)
    S = T if S is None else S
    return (torch.randn(*batch, T, D, generator=g, dtype=torch.float64),
            torch.randn(*batch, S, D, generator=g, dtype=torch.float64),
            torch.randn(*batch, S, Dv, generator=g, dtype=torch.float64))


@checker("causal attention as a loop over prefixes",
         hint="for each t: scaled_dot_product_attention(q[..., t:t+1, :], k[..., :t+1, :], v[..., :t+1, :])")
def causal_by_prefixes(fn) -> str:
    from attnbook.functional import scaled_dot_product_attention as sdpa

    for batch, T, D, Dv in (((), 6, 8, 8), ((2, 3), 5, 4, 7), ((), 1, 3, 2)):
        q, k, v = _qkv(*batch, T=T, D=D, Dv=Dv, seed=T)
        want, _ = sdpa(q, k, v, causal=True)
        name = f"q, k {tuple(q.shape)}, v {tuple(v.shape)}"
        got = fn(q.clone(), k.clone(), v.clone())
        expect_shape(got, want.shape, f"{name}: your output", "one row of width Dv per query")
        got = got.double()
        if torch.allclose(got, want, atol=1e-9):
            continue
        if T > 1:
            full, _ = sdpa(q, k, v)
            expect(not torch.allclose(got, full, atol=1e-9),
                   f"{name}: your output is attention WITHOUT a mask: query t may see keys 0..t only")
            anti, _ = sdpa(q, k, v, mask=torch.ones(T, T, dtype=torch.bool).triu())
            expect(not torch.allclose(got, anti, atol=1e-9),
                   f"{name}: query t looked at keys t..T-1, its future: the prefix is keys 0..t")
        expect(not (torch.isnan(got[..., 0, :]).any() or torch.allclose(got[..., 0, :], torch.zeros_like(got[..., 0, :]))),
               f"{name}: row 0 is empty or NaN: the prefix of query t includes key t itself (k[..., :t+1, :])")
        expect_close(got, want, f"{name}: your output", "it should equal causal attention", atol=1e-9)
    return "row t of causal attention is unmasked attention over the prefix 0..t."


@checker("the bytes of the attention weights",
         hint="B * H * T * T numbers, each bytes_per_number bytes")
def weight_bytes(fn) -> str:
    for B, H, T, dtype in ((2, 3, 5, torch.float32), (1, 1, 7, torch.float16), (4, 2, 3, torch.float64),
                           (8, 16, 1024, torch.float32)):
        size = torch.empty(0, dtype=dtype).element_size()
        numbers = B * H * T * T
        if numbers <= 10**6:
            want = torch.empty(B, H, T, T, dtype=dtype)
            want = want.numel() * want.element_size()
        else:
            want = numbers * size
        got = as_int(fn(B, H, T, size), f"weight_bytes({B}, {H}, {T}, {size})")
        if got == want:
            continue
        call = f"weight_bytes({B}, {H}, {T}, {size}) = {got:,}, but a ({B}, {H}, {T}, {T}) {dtype} tensor holds {want:,} bytes"
        expect(got != B * H * T * size, f"{call}: there is one weight per (query, key) pair, T * T per head")
        expect(got != numbers, f"{call}: that is the number of weights; multiply by the bytes per number ({size})")
        raise Wrong(call)
    T = 1
    while fn(8, 16, T, 4) <= 80e9:
        T *= 2
    return f"with B = 8, H = 16 in float32 the weights first exceed 80 GB at T = {T:,}."


@checker("the two limits of the temperature",
         hint="cold: every weight 1/S, so the mean of v over the keys; hot: the value of the key "
              "with the highest score q.k")
def temperature_limits(fn) -> str:
    from attnbook.functional import scaled_dot_product_attention as sdpa

    for batch, T, S in (((), 4, 6), ((2,), 3, 5), ((), 1, 1)):
        q, k, v = _qkv(*batch, T=T, S=S, D=8, Dv=3, seed=10 + T)
        name = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        out = fn(q.clone(), k.clone(), v.clone())
        expect(isinstance(out, tuple) and len(out) == 2,
               f"{name}: return a pair (cold, hot), got {type(out).__name__}")
        cold, hot = out
        want_cold, _ = sdpa(q, k, v, scale=1e-9)
        want_hot, _ = sdpa(q, k, v, scale=1e4)
        expect_shape(cold, want_cold.shape, f"{name}: your cold limit",
                     "one output per query: the mean over the keys (dim=-2), repeated for every query")
        expect_shape(hot, want_hot.shape, f"{name}: your hot limit", "one output per query")
        cold, hot = cold.double(), hot.double()
        if S > 1:
            expect(not (torch.allclose(cold, want_hot, atol=1e-6) and torch.allclose(hot, want_cold, atol=1e-6)),
                   f"{name}: your two limits are swapped: a small scale (cold) flattens the weights")
            lowest = (q @ k.transpose(-2, -1)).argmin(-1)
            expect(not torch.allclose(hot, torch.gather(v, -2, lowest[..., None].expand(*lowest.shape, 3))),
                   f"{name}: your hot limit is the value of the LOWEST-scoring key; take argmax")
        expect_close(cold, want_cold, f"{name}: your cold limit",
                     "with scale -> 0 every weight is 1/S: the plain mean of the values", atol=1e-6)
        expect_close(hot, want_hot, f"{name}: your hot limit",
                     "with a large scale all weight goes to the key with the highest score", atol=1e-6)
    return "the mean of the values (whatever the queries) and the value of the best key."


@checker("where empty rows come from",
         hint="keys 0..p-1 are padding: real = arange(T) >= p; mask = real & causal_mask(T); "
              "a row is empty when it has no True")
def empty_rows(fn) -> str:
    for T in (1, 4, 6):
        for p in range(T + 1):
            got = fn(T, p)
            expect_shape(got, (T,), f"empty_rows({T}, {p})", "one True/False per query")
            expect(got.dtype == torch.bool, f"empty_rows({T}, {p}) has dtype {got.dtype}, expected torch.bool")
            want = torch.arange(T) < p
            if torch.equal(got.cpu(), want):
                continue
            rows = want.nonzero().flatten().tolist()
            expect(not (p > 0 and not got.any()),
                   f"empty_rows({T}, {p}) found no empty row, but queries {rows} see only padding: "
                   "with LEFT padding the p padding tokens are keys 0..p-1")
            expect(not torch.equal(got.cpu(), ~want),
                   f"empty_rows({T}, {p}) marks the rows that DO see a real key; empty means no True")
            raise Wrong(f"empty_rows({T}, {p}) = {got.int().tolist()}, expected {want.int().tolist()} "
                        f"(queries {rows} see only padding)")
    return "query t is empty exactly when t < p, for every length."
