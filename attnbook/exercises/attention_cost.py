"""Checkers for the exercises of "What attention costs" (book/attention_cost.ipynb)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from attnbook.exercises import Wrong, checker, expect

__all__ = ["matmul_flops", "kv_cache", "fused_intensity"]


def _number(value: Any, call: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    expect(
        isinstance(value, numbers.Real) and not isinstance(value, bool),
        f"{call} returned {type(value).__name__} {value!r}, expected a number",
    )
    return float(value)


def _counted_flops(B: int, H: int, T: int, S: int, D: int, Dv: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    from attnbook.functional import scaled_dot_product_attention

    gen = torch.Generator().manual_seed(B * 1000 + T * 10 + S)
    q, k = torch.randn(B, H, T, D, generator=gen), torch.randn(B, H, S, D, generator=gen)
    v = torch.randn(B, H, S, Dv, generator=gen)
    with FlopCounterMode(display=False) as counter:
        scaled_dot_product_attention(q, k, v)
    return counter.get_total_flops()


@checker("the FLOPs of attention",
         hint="Q Kᵀ computes T·S dot products of length D; "
              "P V computes T·Dv sums of S products")
def matmul_flops(fn) -> str:
    cases = [(2, 3, 5, 11, 8, 6), (1, 1, 8, 8, 4, 4), (1, 2, 7, 3, 5, 9), (3, 1, 1, 20, 16, 16)]
    for B, H, T, S, D, Dv in cases:
        want = _counted_flops(B, H, T, S, D, Dv)
        call = f"attention_matmul_flops(B={B}, H={H}, T={T}, S={S}, D={D}, Dv={Dv})"
        got = _number(fn(B, H, T, S, D, Dv), call)
        if got == want:
            continue
        msg = f"{call} = {got:,.0f}, but FlopCounterMode counts {want:,}"
        expect(got != want / 2, f"{msg}: exactly half. A multiply-add counts as two FLOPs")
        expect(got != 2 * B * H * T * T * (D + Dv),
               f"{msg}: the scores are T x S, not T x T (here T != S)")
        expect(got != 4 * B * H * T * S * D,
               f"{msg}: the values have size Dv, not D (here Dv != D)")
        expect(got != 2 * T * S * (D + Dv),
               f"{msg}: every one of the B x H (sequence, head) pairs does the products")
        expect(got != 2 * B * H * T * S * D, f"{msg}: you counted Q Kᵀ but not P V")
        raise Wrong(msg)
    return "4·B·H·n²·d for T = S = n and Dv = d: quadratic in n, linear in everything else."


def _filled_cache_bytes(batch: int, layers: int, heads: int, kv_heads: int, head_dim: int,
                        seq_len: int, dtype: torch.dtype) -> int:
    from attnbook import KVCache, MultiHeadAttention

    gen = torch.Generator().manual_seed(seq_len)
    total = 0
    for _ in range(layers):
        layer = MultiHeadAttention(heads * head_dim, heads, num_kv_heads=kv_heads).to(dtype)
        cache = KVCache()
        x = torch.randn(batch, seq_len, heads * head_dim, generator=gen).to(dtype)
        with torch.no_grad():
            for chunk in x.split(4, dim=1):
                layer(chunk, causal=True, cache=cache)
        total += sum(t.numel() * t.element_size() for t in (cache.k, cache.v))
    return total


@checker("the size of a KV cache",
         hint="every layer caches keys and values of shape "
              "(batch, num_kv_heads, seq_len, head_dim)")
def kv_cache(fn) -> str:
    cases = [  # batch, layers, heads, kv_heads, head_dim, seq_len, dtype
        (1, 1, 4, 4, 8, 6, torch.float32),
        (2, 3, 8, 2, 4, 9, torch.float32),
        (1, 3, 6, 1, 8, 5, torch.bfloat16),
        (3, 1, 4, 2, 16, 7, torch.float64),
    ]
    for batch, layers, H, G, D, S, dtype in cases:
        want = _filled_cache_bytes(batch, layers, H, G, D, S, dtype)
        call = (f"kv_cache_size(batch={batch}, layers={layers}, num_heads={H}, num_kv_heads={G}, "
                f"head_dim={D}, seq_len={S}, dtype={dtype})")
        got = _number(fn(batch, layers, H, G, D, S, dtype), call)
        if got == want:
            continue
        msg = f"{call} = {got:,.0f} bytes, but the filled KVCache holds {want:,}"
        b = torch.empty((), dtype=dtype).element_size()
        expect(got != want / 2, f"{msg}: exactly half. The cache holds keys *and* values")
        expect(got != want * H / G,
               f"{msg}: you counted num_heads key/value heads; only the num_kv_heads shared "
               "ones are cached (here num_kv_heads < num_heads)")
        expect(got != want / b, f"{msg}: that is the number of numbers; multiply by the bytes of "
                                f"{dtype} ({b})")
        expect(got != want * 4 / b, f"{msg}: {dtype} numbers take {b} bytes, not 4")
        expect(got != want / layers, f"{msg}: every one of the {layers} layers has its own cache")
        raise Wrong(msg)
    return "2·B·L·G·S·d·b: MQA (G = 1) shrinks it by the number of heads."


@checker("the intensity of a fused kernel",
         hint="FLOPs 4 n² d, bytes 4 n d b: their ratio is n / b, and it grows with n")
def fused_intensity(intensity_fn, length_fn=None) -> str:
    for n, d, b in ((1024, 64, 4), (4096, 128, 2), (100, 32, 2), (7, 16, 8)):
        want = 4 * n * n * d / (4 * n * d * b)
        call = f"fused_intensity(n={n}, d={d}, b={b})"
        got = _number(intensity_fn(n, d, b), call)
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        msg = f"{call} = {got:.4g} FLOP/byte, expected {want:.4g}"
        materialised = 4 * n * n * d / (4 * n * n * b)
        expect(not math.isclose(got, materialised, rel_tol=0.02),
               f"{msg}: that is materialised attention's d / b, which moves the n x n matrix; "
               "a fused kernel never writes it, so only Q, K, V and O travel")
        expect(not math.isclose(got, want * b, rel_tol=1e-9),
               f"{msg}: you counted numbers, not bytes; each number has b bytes")
        raise Wrong(msg)
    if length_fn is None:
        raise NotImplementedError
    for ridge, d, b in ((4.0, 64, 4), (295.0, 128, 2), (10.5, 64, 2), (0.3, 32, 4)):
        call = f"compute_bound_length(ridge={ridge}, d={d}, b={b})"
        n = _number(length_fn(ridge, d, b), call)
        expect(n == int(n) and n >= 1, f"{call} = {n!r}: a sequence length is a positive integer")
        n = int(n)
        reaches = 4 * n * n * d / (4 * n * d * b) >= ridge
        expect(reaches, f"{call} = {n}: at that length the intensity is {n / b:.4g} FLOP/byte, "
                        f"still below the ridge {ridge}")
        below = n == 1 or 4 * (n - 1) ** 2 * d / (4 * (n - 1) * d * b) < ridge
        expect(below, f"{call} = {n}: n = {n - 1} already reaches the ridge {ridge}; "
                      "the smallest such n is wanted")
    return "a fused kernel is compute-bound once n exceeds ridge · b, whatever d is."
