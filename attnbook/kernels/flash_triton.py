"""FlashAttention-2 in Triton: the forward kernel, the two backward kernels and their launchers.

Imported by :mod:`attnbook.kernels` on first use (never at ``import attnbook``), because
``@triton.jit`` decides *when the module is imported* whether a kernel is compiled for the GPU
or run by Triton's interpreter (``TRITON_INTERPRET=1``, numpy on the CPU).

Layout: q ``(B, H, T, D)``, k and v ``(B, H, S, D)``, the last dimension contiguous. One program
(a Triton "block" of threads) owns one tile of ``BLOCK_M`` queries of one (sequence, head) in the
forward pass and in the ``dq`` kernel, and one tile of ``BLOCK_N`` keys in the ``dk, dv`` kernel.
Scores are kept in base 2 (``exp2`` is the GPU's native exponential): with
``c = scale * log2(e)``, ``p = 2^(c q·k - m)`` equals ``e^(scale q·k - m ln 2)``; the
log-sum-exp written out is converted back to the natural log.

Masks: keys ``j >= S`` (the ragged last tile) and ``j >= key_lengths[b]`` are never attended; with
``causal`` query ``i`` sees key ``j`` iff ``j <= i + S - T`` (aligned bottom-right, as in
:func:`attnbook.functional.causal_mask`). A query with no visible key gets a zero output row
and ``lse = -inf``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634  # log2(e): e^x = 2^(x log2 e)
LN2 = 0.6931471805599453  # ln(2): log2(x) ln 2 = ln(x)


# --------------------------------------------------------------------------------------------
# helpers shared by the kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _key_range(start_m, n_valid, T, S, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               CAUSAL: tl.constexpr):
    """Key tiles for the queries ``[start_m, start_m + BLOCK_M)``: tiles starting in
    ``[0, full)`` need no mask at all, tiles starting in ``[full, hi)`` do; keys ``>= hi`` are
    never looked at (past the valid keys, or above the causal diagonal for every row)."""
    hi = n_valid
    full = n_valid
    if CAUSAL:
        shift = S - T  # query i sees key j iff j <= i + shift
        hi = tl.minimum(hi, start_m + BLOCK_M + shift)  # the block's last row sees keys < this
        full = tl.minimum(full, start_m + shift + 1)  # the block's first row sees keys < this
    hi = tl.maximum(hi, 0)
    full = tl.maximum(full, 0) // BLOCK_N * BLOCK_N  # whole unmasked tiles only
    return full, hi


@triton.jit
def _query_range(start_n, m_end, T, S, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 CAUSAL: tl.constexpr):
    """Query tiles for the keys ``[start_n, start_n + BLOCK_N)``: tiles starting in
    ``[lo, full)`` cross the causal diagonal (masked), tiles in ``[full, m_end)`` see every key
    of the tile; queries before ``lo`` see none of them."""
    lo = 0
    full = 0
    if CAUSAL:
        shift = S - T
        lo = tl.maximum(start_n - shift, 0) // BLOCK_M * BLOCK_M  # first row seeing key start_n
        last = tl.maximum(start_n + BLOCK_N - 1 - shift, 0)  # first row seeing the tile's last key
        full = (last + BLOCK_M - 1) // BLOCK_M * BLOCK_M
        full = tl.minimum(full, m_end)
        lo = tl.minimum(lo, full)
    return lo, full


@triton.jit
def _n_valid(KLEN, b, S, HAS_KLEN: tl.constexpr):
    """How many keys sequence ``b`` has: ``min(key_lengths[b], S)``, or ``S``."""
    n = S
    if HAS_KLEN:
        n = tl.minimum(tl.maximum(tl.load(KLEN + b).to(tl.int32), 0), S)
    return n


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------


@triton.jit
def _fwd_tile(acc, l_i, m_i, q, k_ptrs, v_ptrs, start_n, offs_m, offs_n, n_valid, shift,
              qk_scale, stride_kt, stride_vt, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
              PRECISION: tl.constexpr):
    """One step of the online softmax: fold the key/value tile at ``start_n`` into
    ``(acc, l_i, m_i)``. Scores are in base 2 (``qk_scale = scale * log2 e``)."""
    cols = start_n + offs_n  # (BN,) key indices
    if MASKED:
        kT = tl.load(k_ptrs + start_n * stride_kt, mask=cols[None, :] < n_valid, other=0.0)
        v = tl.load(v_ptrs + start_n * stride_vt, mask=cols[:, None] < n_valid, other=0.0)
    else:
        kT = tl.load(k_ptrs + start_n * stride_kt)  # (D, BN)
        v = tl.load(v_ptrs + start_n * stride_vt)  # (BN, D)
    s = tl.dot(q, kT, input_precision=PRECISION) * qk_scale  # (BM, BN)
    if MASKED:
        keep = cols[None, :] < n_valid
        if CAUSAL:
            keep = keep & (cols[None, :] <= offs_m[:, None] + shift)
        s = tl.where(keep, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))  # (BM,) running max
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with no key yet: avoid inf - inf
    p = tl.math.exp2(s - m_use[:, None])  # (BM, BN)
    alpha = tl.math.exp2(m_i - m_use)  # (BM,) rescales what was accumulated so far
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return acc, l_i, m_new


@triton.jit
def _fwd_kernel(
    Q, K, V, Out, LSE, KLEN, STATS,
    stride_qb, stride_qh, stride_qt,
    stride_kb, stride_kh, stride_kt,
    stride_vb, stride_vh, stride_vt,
    stride_ob, stride_oh, stride_ot,
    H, T, S, qk_scale,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_KLEN: tl.constexpr, RECORD: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """O = softmax(scale Q Kᵀ) V and LSE for BLOCK_M queries of one (sequence, head)."""
    pid_m = tl.program_id(0)  # which tile of queries
    pid_bh = tl.program_id(1)  # which (sequence, head)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,) query indices
    offs_n = tl.arange(0, BLOCK_N)  # (BN,) key offsets inside a tile
    offs_d = tl.arange(0, D)  # (D,)

    q_ptrs = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qt + offs_d[None, :]
    q = tl.load(q_ptrs, mask=offs_m[:, None] < T, other=0.0)  # (BM, D), stays in SRAM
    k_ptrs = K + b * stride_kb + h * stride_kh + offs_n[None, :] * stride_kt + offs_d[:, None]
    v_ptrs = V + b * stride_vb + h * stride_vh + offs_n[:, None] * stride_vt + offs_d[None, :]

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (base 2)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum of exponentials
    acc = tl.zeros([BLOCK_M, D], dtype=tl.float32)  # unnormalised output

    n_valid = _n_valid(KLEN, b, S, HAS_KLEN)
    full, hi = _key_range(pid_m * BLOCK_M, n_valid, T, S, BLOCK_M, BLOCK_N, CAUSAL)
    for start_n in range(0, full, BLOCK_N):  # tiles every row sees whole: no mask
        acc, l_i, m_i = _fwd_tile(acc, l_i, m_i, q, k_ptrs, v_ptrs, start_n, offs_m, offs_n,
                                  n_valid, S - T, qk_scale, stride_kt, stride_vt,
                                  False, CAUSAL, PRECISION)
    for start_n in range(full, hi, BLOCK_N):  # the diagonal and the ragged end: masked
        acc, l_i, m_i = _fwd_tile(acc, l_i, m_i, q, k_ptrs, v_ptrs, start_n, offs_m, offs_n,
                                  n_valid, S - T, qk_scale, stride_kt, stride_vt,
                                  True, CAUSAL, PRECISION)

    empty = l_i == 0.0  # rows that saw no key
    l_safe = tl.where(empty, 1.0, l_i)
    o = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.math.log2(l_safe)) * 0.6931471805599453)
    o_ptrs = Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_ot + offs_d[None, :]
    tl.store(o_ptrs, o.to(Out.dtype.element_ty), mask=offs_m[:, None] < T)
    tl.store(LSE + pid_bh * T + offs_m, lse, mask=offs_m < T)
    if RECORD:  # how many tiles this program computed, unmasked and masked
        slot = (pid_bh * tl.num_programs(0) + pid_m) * 2
        tl.store(STATS + slot, full // BLOCK_N)
        tl.store(STATS + slot + 1, (hi - full + BLOCK_N - 1) // BLOCK_N)


# --------------------------------------------------------------------------------------------
# backward: Delta = rowsum(dO * O) - dLSE, then dk/dv per key tile, then dq per query tile
# --------------------------------------------------------------------------------------------


@triton.jit
def _bwd_preprocess(
    Out, DO, DLSE, DELTA,
    stride_ob, stride_oh, stride_ot,
    stride_db, stride_dh, stride_dt,
    H, T,
    D: tl.constexpr, BLOCK_M: tl.constexpr, HAS_DLSE: tl.constexpr,
):
    """Delta_i = Σ_d dO_id O_id (minus dLSE_i when the log-sum-exp has a gradient)."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,)
    cols = tl.arange(0, D)  # (D,)
    inside = rows[:, None] < T
    o = tl.load(Out + b * stride_ob + h * stride_oh + rows[:, None] * stride_ot + cols[None, :],
                mask=inside, other=0.0).to(tl.float32)  # (BM, D)
    do = tl.load(DO + b * stride_db + h * stride_dh + rows[:, None] * stride_dt + cols[None, :],
                 mask=inside, other=0.0).to(tl.float32)  # (BM, D)
    delta = tl.sum(o * do, axis=1)  # (BM,)
    if HAS_DLSE:
        delta -= tl.load(DLSE + pid_bh * T + rows, mask=rows < T, other=0.0)
    tl.store(DELTA + pid_bh * T + rows, delta, mask=rows < T)


@triton.jit
def _load_row_stats(LSE, DELTA, pid_bh, rows, T):
    """Per-row log-sum-exp (in base 2; +inf for rows outside or without keys, so P = 0 there)
    and Delta (0 outside)."""
    lse = tl.load(LSE + pid_bh * T + rows, mask=rows < T, other=float("inf"))
    lse = tl.where(lse == float("-inf"), float("inf"), lse) * 1.4426950408889634
    delta = tl.load(DELTA + pid_bh * T + rows, mask=rows < T, other=0.0)
    return lse, delta


@triton.jit
def _bwd_kv_tile(dk, dv, k, v, qT_ptrs, do_ptrs, LSE, DELTA, pid_bh, start_m, offs_m, offs_n,
                 T, shift, qk_scale, stride_qt, stride_dt, MASKED: tl.constexpr,
                 PRECISION: tl.constexpr):
    """Add one tile of queries' contribution to dk, dv (both (BN, D), float32)."""
    rows = start_m + offs_m  # (BM,) query indices
    qT = tl.load(qT_ptrs + start_m * stride_qt, mask=rows[None, :] < T, other=0.0)  # (D, BM)
    do = tl.load(do_ptrs + start_m * stride_dt, mask=rows[:, None] < T, other=0.0)  # (BM, D)
    lse, delta = _load_row_stats(LSE, DELTA, pid_bh, rows, T)
    sT = tl.dot(k, qT, input_precision=PRECISION) * qk_scale  # (BN, BM): Sᵀ, base 2
    pT = tl.math.exp2(sT - lse[None, :])  # (BN, BM): P recomputed from the saved lse
    if MASKED:
        pT = tl.where(offs_n[:, None] <= rows[None, :] + shift, pT, 0.0)
    dv += tl.dot(pT.to(do.dtype), do, input_precision=PRECISION)  # dV += Pᵀ dO
    dpT = tl.dot(v, tl.trans(do), input_precision=PRECISION)  # (BN, BM): dPᵀ = V dOᵀ
    dsT = pT * (dpT - delta[None, :])  # dSᵀ = Pᵀ ∘ (dPᵀ - Delta)
    dk += tl.dot(dsT.to(qT.dtype), tl.trans(qT), input_precision=PRECISION)  # dK += dSᵀ Q
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV, KLEN,
    stride_qb, stride_qh, stride_qt,
    stride_kb, stride_kh, stride_kt,
    stride_vb, stride_vh, stride_vt,
    stride_db, stride_dh, stride_dt,
    stride_dkb, stride_dkh, stride_dkt,
    stride_dvb, stride_dvh, stride_dvt,
    H, T, S, scale, qk_scale,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_KLEN: tl.constexpr, PRECISION: tl.constexpr,
):
    """dK, dV for BLOCK_N keys of one (sequence, head): the program walks over query tiles."""
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,) key indices
    offs_m = tl.arange(0, BLOCK_M)  # (BM,)
    offs_d = tl.arange(0, D)
    n_valid = _n_valid(KLEN, b, S, HAS_KLEN)
    keys = offs_n[:, None] < S
    k = tl.load(K + b * stride_kb + h * stride_kh + offs_n[:, None] * stride_kt + offs_d[None, :],
                mask=keys, other=0.0)  # (BN, D), stays in SRAM
    v = tl.load(V + b * stride_vb + h * stride_vh + offs_n[:, None] * stride_vt + offs_d[None, :],
                mask=keys, other=0.0)  # (BN, D)
    qT_ptrs = Q + b * stride_qb + h * stride_qh + offs_m[None, :] * stride_qt + offs_d[:, None]
    do_ptrs = DO + b * stride_db + h * stride_dh + offs_m[:, None] * stride_dt + offs_d[None, :]
    dk = tl.zeros([BLOCK_N, D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, D], dtype=tl.float32)

    m_end = tl.where(pid_n * BLOCK_N < n_valid, T, 0)  # a tile of padding keys: nothing to do
    lo, full = _query_range(pid_n * BLOCK_N, m_end, T, S, BLOCK_M, BLOCK_N, CAUSAL)
    for start_m in range(lo, full, BLOCK_M):  # tiles crossing the diagonal: masked
        dk, dv = _bwd_kv_tile(dk, dv, k, v, qT_ptrs, do_ptrs, LSE, DELTA, pid_bh, start_m,
                              offs_m, offs_n, T, S - T, qk_scale, stride_qt, stride_dt,
                              True, PRECISION)
    for start_m in range(full, m_end, BLOCK_M):  # tiles below the diagonal: no mask
        dk, dv = _bwd_kv_tile(dk, dv, k, v, qT_ptrs, do_ptrs, LSE, DELTA, pid_bh, start_m,
                              offs_m, offs_n, T, S - T, qk_scale, stride_qt, stride_dt,
                              False, PRECISION)

    real = offs_n[:, None] < n_valid  # padding keys get zero gradients
    dk = tl.where(real, dk * scale, 0.0)
    dv = tl.where(real, dv, 0.0)
    tl.store(DK + b * stride_dkb + h * stride_dkh + offs_n[:, None] * stride_dkt + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=keys)
    tl.store(DV + b * stride_dvb + h * stride_dvh + offs_n[:, None] * stride_dvt + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=keys)


@triton.jit
def _bwd_q_tile(dq, q, do, lse, delta, kT_ptrs, vT_ptrs, start_n, offs_m, offs_n, n_valid,
                shift, qk_scale, stride_kt, stride_vt, MASKED: tl.constexpr,
                CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """Add one tile of keys' contribution to dq ((BM, D), float32)."""
    cols = start_n + offs_n  # (BN,)
    if MASKED:
        kT = tl.load(kT_ptrs + start_n * stride_kt, mask=cols[None, :] < n_valid, other=0.0)
        vT = tl.load(vT_ptrs + start_n * stride_vt, mask=cols[None, :] < n_valid, other=0.0)
    else:
        kT = tl.load(kT_ptrs + start_n * stride_kt)  # (D, BN)
        vT = tl.load(vT_ptrs + start_n * stride_vt)  # (D, BN)
    s = tl.dot(q, kT, input_precision=PRECISION) * qk_scale  # (BM, BN)
    p = tl.math.exp2(s - lse[:, None])  # (BM, BN)
    if MASKED:
        keep = cols[None, :] < n_valid
        if CAUSAL:
            keep = keep & (cols[None, :] <= offs_m[:, None] + shift)
        p = tl.where(keep, p, 0.0)
    dp = tl.dot(do, vT, input_precision=PRECISION)  # (BM, BN): dP = dO Vᵀ
    ds = p * (dp - delta[:, None])  # dS = P ∘ (dP - Delta)
    dq += tl.dot(ds.to(kT.dtype), tl.trans(kT), input_precision=PRECISION)  # dQ += dS K
    return dq


@triton.jit
def _bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, KLEN,
    stride_qb, stride_qh, stride_qt,
    stride_kb, stride_kh, stride_kt,
    stride_vb, stride_vh, stride_vt,
    stride_db, stride_dh, stride_dt,
    stride_dqb, stride_dqh, stride_dqt,
    H, T, S, scale, qk_scale,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_KLEN: tl.constexpr, PRECISION: tl.constexpr,
):
    """dQ for BLOCK_M queries of one (sequence, head): the program walks over key tiles."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    rows = offs_m[:, None] < T
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qt + offs_d[None, :],
                mask=rows, other=0.0)  # (BM, D)
    do = tl.load(DO + b * stride_db + h * stride_dh + offs_m[:, None] * stride_dt + offs_d[None, :],
                 mask=rows, other=0.0)  # (BM, D)
    lse, delta = _load_row_stats(LSE, DELTA, pid_bh, offs_m, T)
    kT_ptrs = K + b * stride_kb + h * stride_kh + offs_n[None, :] * stride_kt + offs_d[:, None]
    vT_ptrs = V + b * stride_vb + h * stride_vh + offs_n[None, :] * stride_vt + offs_d[:, None]
    dq = tl.zeros([BLOCK_M, D], dtype=tl.float32)

    n_valid = _n_valid(KLEN, b, S, HAS_KLEN)
    full, hi = _key_range(pid_m * BLOCK_M, n_valid, T, S, BLOCK_M, BLOCK_N, CAUSAL)
    for start_n in range(0, full, BLOCK_N):
        dq = _bwd_q_tile(dq, q, do, lse, delta, kT_ptrs, vT_ptrs, start_n, offs_m, offs_n,
                         n_valid, S - T, qk_scale, stride_kt, stride_vt, False, CAUSAL,
                         PRECISION)
    for start_n in range(full, hi, BLOCK_N):
        dq = _bwd_q_tile(dq, q, do, lse, delta, kT_ptrs, vT_ptrs, start_n, offs_m, offs_n,
                         n_valid, S - T, qk_scale, stride_kt, stride_vt, True, CAUSAL,
                         PRECISION)
    tl.store(DQ + b * stride_dqb + h * stride_dqh + offs_m[:, None] * stride_dqt + offs_d[None, :],
             (dq * scale).to(DQ.dtype.element_ty), mask=rows)


# --------------------------------------------------------------------------------------------
# launch configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tiles:
    """Tile sizes of one kernel launch (queries x keys) and, on a GPU, its warps and stages."""

    block_m: int
    block_n: int
    num_warps: int = 4
    num_stages: int = 2


def interpreted() -> bool:
    """True when these kernels run in Triton's interpreter (decided when this module loaded)."""
    return type(_fwd_kernel).__name__ == "InterpretedFunction"


# Block sizes of the interpreter: numpy runs each tile as one array operation, so the fewer
# (larger) tiles, the faster; 32 keeps several tiles in the small cases the tests use.
INTERPRETER_TILES = Tiles(32, 32)

# CUDA candidates, tried by triton.autotune on the first call for each shape (the first entry
# of each list is used when ATTNBOOK_TRITON_AUTOTUNE=0). Choices follow the FlashAttention-2
# paper and Triton's fused-attention tutorial: large query tiles forward, long key tiles for
# dk/dv, long query tiles for dq.
CUDA_CANDIDATES: dict[str, list[Tiles]] = {
    "fwd": [Tiles(128, 64, 4, 3), Tiles(128, 64, 8, 3), Tiles(128, 128, 8, 3),
            Tiles(64, 64, 4, 3), Tiles(128, 32, 4, 4), Tiles(64, 32, 4, 2)],
    "dkdv": [Tiles(32, 128, 4, 3), Tiles(32, 128, 8, 3), Tiles(64, 128, 8, 2),
             Tiles(32, 64, 4, 3), Tiles(16, 64, 4, 2)],
    "dq": [Tiles(128, 32, 4, 3), Tiles(128, 32, 8, 3), Tiles(128, 64, 8, 2),
           Tiles(64, 32, 4, 3), Tiles(64, 16, 4, 2)],
}
_FLOAT32_CANDIDATES: dict[str, list[Tiles]] = {  # float32 tiles take twice the SRAM
    "fwd": [Tiles(64, 32, 4, 2), Tiles(32, 32, 4, 2)],
    "dkdv": [Tiles(16, 64, 4, 2), Tiles(16, 32, 4, 2)],
    "dq": [Tiles(64, 16, 4, 2), Tiles(32, 16, 4, 2)],
}

_KERNELS = {"fwd": _fwd_kernel, "dkdv": _bwd_dkdv_kernel, "dq": _bwd_dq_kernel}
_TUNED: dict[tuple[str, bool], object] = {}


def _autotune_enabled() -> bool:
    return os.environ.get("ATTNBOOK_TRITON_AUTOTUNE", "1").lower() not in ("0", "false", "no")


def _candidates(kind: str, dtype: torch.dtype) -> list[Tiles]:
    return (_FLOAT32_CANDIDATES if dtype == torch.float32 else CUDA_CANDIDATES)[kind]


def _tuned(kind: str, float32: bool):
    """The ``kind`` kernel wrapped in ``triton.autotune`` (built on first use, CUDA only)."""
    key = (kind, float32)
    if key not in _TUNED:
        configs = [
            triton.Config({"BLOCK_M": t.block_m, "BLOCK_N": t.block_n},
                          num_warps=t.num_warps, num_stages=t.num_stages)
            for t in _candidates(kind, torch.float32 if float32 else torch.float16)
        ]
        _TUNED[key] = triton.autotune(configs, key=["T", "S", "D", "CAUSAL", "HAS_KLEN"])(
            _KERNELS[kind]
        )
    return _TUNED[key]


def _launch(kind: str, grid_rows: int, grid_bh: int, args: tuple, meta: dict,
            tiles: Tiles | None, device: torch.device, dtype: torch.dtype) -> Tiles | None:
    """Launch kernel ``kind`` over ``(cdiv(grid_rows, tile), grid_bh)`` programs.

    ``tiles`` given: exactly those block sizes. Otherwise the interpreter's default, or on CUDA
    the autotuned kernel (or the first candidate with autotuning off). Returns the tiles used
    (``None`` when the autotuner chose)."""
    if grid_rows == 0 or grid_bh == 0:  # nothing to compute (T = 0, S = 0 or B·H = 0)
        return tiles
    along = "BLOCK_N" if kind == "dkdv" else "BLOCK_M"
    if tiles is None and not interpreted() and device.type == "cuda":
        if _autotune_enabled():
            kernel = _tuned(kind, dtype == torch.float32)
            kernel[lambda META: (triton.cdiv(grid_rows, META[along]), grid_bh)](*args, **meta)
            return None
        tiles = _candidates(kind, dtype)[0]
    tiles = tiles or INTERPRETER_TILES
    block = tiles.block_n if kind == "dkdv" else tiles.block_m
    extra = {} if interpreted() else {"num_warps": tiles.num_warps, "num_stages": tiles.num_stages}
    _KERNELS[kind][(triton.cdiv(grid_rows, block), grid_bh)](
        *args, BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n, **meta, **extra
    )
    return tiles


def _strides(x: torch.Tensor) -> tuple[int, int, int]:
    return x.stride(0), x.stride(1), x.stride(2)


def _flags(dtype: torch.dtype) -> dict:
    # float32 inputs: exact float32 products, not TensorFloat-32; 16-bit: the default
    return {"PRECISION": "ieee" if dtype == torch.float32 else None}


# --------------------------------------------------------------------------------------------
# launchers
# --------------------------------------------------------------------------------------------


def forward(q, k, v, key_lengths, causal: bool, scale: float, tiles: Tiles | None = None,
            stats: torch.Tensor | None = None):
    """Run the forward kernel. q ``(B, H, T, D)``, k, v ``(B, H, S, D)`` (last dim contiguous)
    -> out ``(B, H, T, D)`` (q's dtype), lse ``(B, H, T)`` float32. ``stats`` (int32, two
    entries per program) receives the number of unmasked and masked tiles each program ran."""
    B, H, T, D = q.shape
    S = k.shape[2]
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    lse = torch.empty(B, H, T, dtype=torch.float32, device=q.device)
    args = (q, k, v, out, lse, key_lengths if key_lengths is not None else lse,
            stats if stats is not None else lse,
            *_strides(q), *_strides(k), *_strides(v), *_strides(out),
            H, T, S, scale * LOG2E)
    meta = {"D": D, "CAUSAL": causal, "HAS_KLEN": key_lengths is not None,
            "RECORD": stats is not None, **_flags(q.dtype)}
    with _on(q.device):
        _launch("fwd", T, B * H, args, meta, tiles, q.device, q.dtype)
    return out, lse


def backward(q, k, v, out, lse, dout, dlse, key_lengths, causal: bool, scale: float,
             tiles: Tiles | None = None):
    """Gradients (dq, dk, dv) of the forward pass, recomputing P tile by tile from ``lse``.
    ``dlse`` (the gradient of the log-sum-exp output, or None) enters through Delta."""
    B, H, T, D = q.shape
    S = k.shape[2]
    delta = torch.empty(B, H, T, dtype=torch.float32, device=q.device)
    dq = torch.empty_like(q, memory_format=torch.contiguous_format)
    dk = torch.empty_like(k, memory_format=torch.contiguous_format)
    dv = torch.empty_like(v, memory_format=torch.contiguous_format)
    klen = key_lengths if key_lengths is not None else lse
    has_klen = key_lengths is not None
    flags = _flags(q.dtype)
    pre_block = 64 if not interpreted() else max(16, min(128, triton.next_power_of_2(T)))
    if T == 0 or B * H == 0:
        return dq, dk.zero_(), dv.zero_()
    with _on(q.device):
        _bwd_preprocess[(triton.cdiv(T, pre_block), B * H)](
            out, dout, dlse if dlse is not None else lse, delta,
            *_strides(out), *_strides(dout), H, T,
            D=D, BLOCK_M=pre_block, HAS_DLSE=dlse is not None,
        )
        common = (H, T, S, scale, scale * LOG2E)
        meta = {"D": D, "CAUSAL": causal, "HAS_KLEN": has_klen, **flags}
        _launch("dkdv", S, B * H,
                (q, k, v, dout, lse, delta, dk, dv, klen, *_strides(q), *_strides(k),
                 *_strides(v), *_strides(dout), *_strides(dk), *_strides(dv), *common),
                meta, tiles, q.device, q.dtype)
        _launch("dq", T, B * H,
                (q, k, v, dout, lse, delta, dq, klen, *_strides(q), *_strides(k),
                 *_strides(v), *_strides(dout), *_strides(dq), *common),
                meta, tiles, q.device, q.dtype)
    return dq, dk, dv


class _DeviceGuard:
    def __init__(self, device: torch.device):
        self.guard = torch.cuda.device(device) if device.type == "cuda" else None

    def __enter__(self):
        if self.guard is not None:
            self.guard.__enter__()

    def __exit__(self, *exc):
        if self.guard is not None:
            self.guard.__exit__(*exc)


def _on(device: torch.device) -> _DeviceGuard:
    return _DeviceGuard(device)
