"""attnbook.cost: every closed-form count checked against an independent one: FLOPs against
``FlopCounterMode``, bytes against the sizes of real tensors, peak memory against the profiler,
tile counts and visible pairs against brute force over the mask."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from attnbook import KVCache, MultiHeadAttention, cost
from attnbook.bench import cpu_threads, measure_peak_memory
from attnbook.functional import causal_mask, flash_attention, scaled_dot_product_attention


def _nbytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


# ---------------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize(
    ("dtype", "size"),
    [(torch.float32, 4), ("float32", 4), (torch.bfloat16, 2), ("float16", 2), (torch.float64, 8),
     (1, 1)],
)
def test_dtype_bytes(dtype, size):
    assert cost.dtype_bytes(dtype) == size


@pytest.mark.parametrize("bad", ["float13", 0, -2, True, 3.5, None])
def test_dtype_bytes_rejects(bad):
    with pytest.raises(ValueError, match="dtype"):
        cost.dtype_bytes(bad)


# ---------------------------------------------------------------------------------- FLOPs


@pytest.mark.parametrize(("T", "S"), [(1, 1), (5, 5), (7, 12), (12, 7), (1, 9), (9, 1)])
def test_visible_pairs_counts_the_mask(T, S):
    assert cost.visible_pairs(T, S) == T * S
    assert cost.visible_pairs(T, S, causal=True) == int(causal_mask(T, S).sum())


@pytest.mark.parametrize(("B", "H", "T", "S", "D", "Dv"), [(1, 1, 8, 8, 4, 4), (2, 3, 5, 11, 8, 6)])
def test_forward_flops_match_flop_counter(B, H, T, S, D, Dv):
    q, k, v = torch.randn(B, H, T, D), torch.randn(B, H, S, D), torch.randn(B, H, S, Dv)
    counted = _flops(lambda: scaled_dot_product_attention(q, k, v))
    assert cost.attention_flops(B, H, T, D, S=S, Dv=Dv) == counted
    if D == Dv and S == T:
        assert counted == 4 * B * H * T * T * D  # the FlashAttention papers' 4 n² d per head


def test_backward_flops_match_flop_counter_without_recompute():
    B, H, T, S, D, Dv = 2, 2, 6, 9, 8, 5
    q, k = torch.randn(B, H, T, D, requires_grad=True), torch.randn(B, H, S, D, requires_grad=True)
    v = torch.randn(B, H, S, Dv, requires_grad=True)
    out, _ = scaled_dot_product_attention(q, k, v)
    grad = torch.randn_like(out)
    counted = _flops(lambda: out.backward(grad))
    assert cost.attention_flops(B, H, T, D, S=S, Dv=Dv, backward=True, recompute=False) == counted
    # recomputing Q Kᵀ adds one forward product: 2.5x the forward when Dv = D
    fwd = cost.attention_flops(1, 1, 16, 8)
    assert cost.attention_flops(1, 1, 16, 8, backward=True) == 2.5 * fwd
    assert cost.attention_flops(1, 1, 16, 8, backward=True, recompute=False) == 2 * fwd


def test_causal_flops_are_about_half():
    full = cost.attention_flops(1, 1, 1024, 64)
    causal = cost.attention_flops(1, 1, 1024, 64, causal=True)
    assert causal == 2 * 1024 * 1025 // 2 * 2 * 64  # n(n+1)/2 pairs, 2 (D + Dv) FLOPs each
    assert 0.5 < causal / full < 0.51


def test_softmax_flops_have_no_head_dim():
    assert cost.softmax_flops(2, 3, 10, S=7) == cost.SOFTMAX_FLOPS_PER_SCORE * 2 * 3 * 10 * 7
    assert cost.softmax_flops(1, 1, 4, causal=True) == cost.SOFTMAX_FLOPS_PER_SCORE * 10


# ---------------------------------------------------------------------------------- bytes


def test_attention_ops_bytes_are_the_tensors_each_kernel_touches():
    B, H, T, S, D, Dv = 2, 3, 6, 10, 8, 5
    q, k, v = torch.randn(B, H, T, D), torch.randn(B, H, S, D), torch.randn(B, H, S, Dv)
    s = q @ k.transpose(-2, -1)  # (B, H, T, S)
    p = torch.softmax(s, -1)  # (B, H, T, S)
    o = p @ v  # (B, H, T, Dv)
    qk, sm, pv = cost.attention_ops(B, H, T, D, S=S, Dv=Dv, dtype_bytes=4)
    assert qk.bytes == _nbytes(q, k, s) and sm.bytes == _nbytes(s, p)
    assert pv.bytes == _nbytes(p, v, o)
    assert qk.flops == _flops(lambda: q @ k.transpose(-2, -1))
    assert pv.flops == _flops(lambda: p @ v)
    assert qk.intensity == qk.flops / qk.bytes
    # QKᵀ's intensity approaches 2 D / b from below as T = S grows; the softmax's is constant
    big = cost.attention_ops(1, 1, 2**14, 64)
    assert 31.5 < big[0].intensity < 32.0 and big[1].intensity == 5 / 8


def test_attention_bytes_flash_and_materialised():
    B, H, T, D = 2, 4, 256, 32
    q = torch.randn(B, H, T, D)
    ideal = cost.attention_bytes(B, H, T, D, flash=True)
    lse = torch.empty(B, H, T, dtype=torch.float32)
    assert ideal == _nbytes(q, q, q, q, lse)  # read Q, K, V, write O and the log-sum-exp
    blocked = cost.attention_bytes(B, H, T, D, flash=True, block_q=64)
    assert blocked - ideal == 3 * _nbytes(q, q)  # K and V read 4 times instead of once
    mat = cost.attention_bytes(B, H, T, D)
    assert mat == sum(op.bytes for op in cost.attention_ops(B, H, T, D))
    assert mat > 4 * ideal  # the T x S matrix dominates


def test_attention_memory_materialised_matches_the_profiler():
    T, D = 512, 32
    q, k, v = (torch.randn(1, 1, T, D) for _ in range(3))
    measured = measure_peak_memory(lambda: scaled_dot_product_attention(q, k, v)[0])
    predicted = cost.attention_memory(1, 1, T, D)
    assert predicted == 4 * (2 * T * T + T * D)
    assert abs(measured - predicted) <= 0.05 * predicted, (measured, predicted)


def test_attention_memory_flash_is_a_floor_of_the_implementation():
    T, D = 1024, 32
    q, k, v = (torch.randn(1, 2, T, D) for _ in range(3))
    with cpu_threads(1):  # many small kernels: one thread is steadier on a shared CPU
        measured = measure_peak_memory(lambda: flash_attention(q, k, v, block_size=64))
    floor = cost.attention_memory(1, 2, T, D, flash=True, block_q=64, block_k=64)
    assert floor <= measured <= 4 * floor, (measured, floor)
    assert floor < cost.attention_memory(1, 2, T, D) / 10
    # the tile is capped by the matrix it tiles
    assert cost.attention_memory(1, 1, 8, 4, S=3, flash=True) == 4 * 8 * 4 + 4 * 8 + 4 * 8 * 3


# ---------------------------------------------------------------------------------- tiles


@pytest.mark.parametrize(("T", "S", "bq", "bk"), [(10, 10, 3, 4), (16, 16, 4, 4), (7, 20, 4, 3),
                                                  (20, 7, 3, 5), (5, 5, 8, 8), (1, 6, 1, 2)])
def test_tile_counts_by_brute_force(T, S, bq, bk):
    keep = causal_mask(T, S)  # (T, S)
    expected = {"full": 0, "masked": 0, "skipped": 0}
    for i0 in range(0, T, bq):
        for j0 in range(0, S, bk):
            tile = keep[i0 : i0 + bq, j0 : j0 + bk]
            kind = "full" if tile.all() else "skipped" if not tile.any() else "masked"
            expected[kind] += 1
    counts = cost.tile_counts(T, S, bq, bk, causal=True)
    assert {k: counts[k] for k in expected} == expected
    assert counts["total"] == math.ceil(T / bq) * math.ceil(S / bk)
    assert cost.tile_counts(T, S, bq, bk) == {"full": counts["total"], "masked": 0, "skipped": 0,
                                              "total": counts["total"]}


# ---------------------------------------------------------------------------------- KV cache


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("G", [8, 2, 1])  # MHA, GQA, MQA
def test_kv_cache_bytes_match_the_cache(G, dtype):
    E, H, S, B = 32, 8, 11, 2
    layer = MultiHeadAttention(E, H, num_kv_heads=G).to(dtype)
    cache = KVCache()
    with torch.no_grad():
        for chunk in torch.randn(B, S, E, dtype=dtype).split(4, dim=1):
            layer(chunk, causal=True, cache=cache)
    expected = cost.kv_cache_bytes(batch=B, layers=1, kv_heads=G, head_dim=E // H, seq_len=S,
                                   dtype_bytes=cost.dtype_bytes(dtype))
    assert _nbytes(cache.k, cache.v) == expected


def test_kv_cache_bytes_of_a_large_model():
    # 32 layers, 32 heads of 128, 4096 tokens, 16-bit: 2 GiB per sequence with MHA, 1/4 with G=8
    mha = cost.kv_cache_bytes(batch=1, layers=32, kv_heads=32, head_dim=128, seq_len=4096,
                              dtype_bytes=2)
    assert mha == 2 * 2**30
    gqa = cost.kv_cache_bytes(batch=1, layers=32, kv_heads=8, head_dim=128, seq_len=4096,
                              dtype_bytes=2)
    assert gqa * 4 == mha
    assert cost.kv_cache_bytes(batch=1, layers=1, kv_heads=1, head_dim=4, seq_len=3, dtype_bytes=2,
                               v_dim=6) == 3 * (4 + 6) * 2


def test_decode_step_cost_counts_a_grouped_step():
    B, H, G, S, D = 2, 8, 2, 50, 16
    q = torch.randn(B, G, H // G, D)  # one query per head, stacked per group
    K, V = torch.randn(B, G, S, D), torch.randn(B, G, S, D)
    counted = _flops(lambda: torch.softmax(q @ K.transpose(-2, -1), -1) @ V)
    step = cost.decode_step_cost(heads=H, kv_heads=G, head_dim=D, seq_len=S, dtype_bytes=4, batch=B)
    assert step.flops == counted
    assert step.bytes == _nbytes(K, V, q, q)
    mqa = cost.decode_step_cost(heads=H, kv_heads=1, head_dim=D, seq_len=10**6, dtype_bytes=2)
    assert abs(mqa.intensity - 2 * H / 2) < 1e-3  # ≈ 2H / (G b)
    with pytest.raises(ValueError, match="kv_heads"):
        cost.decode_step_cost(heads=8, kv_heads=3, head_dim=4, seq_len=4, dtype_bytes=2)


# ---------------------------------------------------------------------------------- roofline


def test_roofline_time_and_ridge():
    assert cost.roofline_time(1e12, 1e9, peak_flops=1e12, bandwidth=1e12) == 1.0  # compute-bound
    assert cost.roofline_time(1e9, 1e12, peak_flops=1e12, bandwidth=1e12) == 1.0  # memory-bound
    assert cost.ridge_intensity(100e12, 2e12) == 50.0
    with pytest.raises(ValueError, match="bandwidth"):
        cost.roofline_time(1, 1, peak_flops=1.0, bandwidth=0.0)
    with pytest.raises(ValueError, match="peak_flops"):
        cost.ridge_intensity(-1.0, 1.0)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: cost.attention_flops(0, 1, 4, 4), "B"),
        (lambda: cost.attention_flops(1, 1, 4, 4.0), "D"),
        (lambda: cost.attention_ops(1, 1, 4, 4, S=-1), "S"),
        (lambda: cost.attention_bytes(1, 1, 4, 4, flash=True, block_q=0), "block_q"),
        (lambda: cost.tile_counts(4, 4, 0, 2), "block_q"),
        (lambda: cost.kv_cache_bytes(batch=1, layers=1, kv_heads=0, head_dim=4, seq_len=4,
                                     dtype_bytes=2), "kv_heads"),
        (lambda: cost.visible_pairs(True, 3), "T"),
    ],
)
def test_bad_sizes_are_refused_by_name(call, name):
    with pytest.raises(ValueError, match=name):
        call()
