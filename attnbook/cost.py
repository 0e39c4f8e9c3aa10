"""What attention costs, on paper: FLOPs, bytes moved, arithmetic intensity, memory, KV cache.

Every function is a closed-form count for scaled dot-product attention with ``B`` sequences,
``H`` heads, ``T`` queries, ``S`` keys, head size ``D`` (queries and keys) and ``Dv`` (values),
numbers of ``b`` bytes each. Conventions (those of the FlashAttention papers and of
:class:`torch.utils.flop_counter.FlopCounterMode`):

* a multiply-add counts as **2 FLOPs**, so ``(T, D) @ (D, S)`` costs ``2 T S D``;
* only the query-key pairs that are *needed* count: with ``causal=True`` query ``i`` sees keys
  ``j <= i + (S - T)`` (bottom-right alignment, as in :mod:`attnbook.functional`), about half of
  them; an implementation that computes the masked scores anyway does more work than this;
* the softmax costs :data:`SOFTMAX_FLOPS_PER_SCORE` = 5 elementary operations per score (max,
  subtract, exponentiate, add to the sum, divide): a convention, since an ``exp`` is several
  instructions, but what matters is that it grows as ``T S`` with no factor ``D``;
* "bytes moved" counts what an implementation reads from and writes to main memory (a GPU's
  HBM, a CPU's DRAM), assuming each operand is read once per kernel.

The functions validate their arguments (``ValueError`` naming the argument) and return Python
ints (or floats for rates and times), so that they can be checked exactly against the bytes of
real tensors and the counts of ``FlopCounterMode``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._validate import require

__all__ = [
    "SOFTMAX_FLOPS_PER_SCORE",
    "OpCost",
    "dtype_bytes",
    "visible_pairs",
    "attention_flops",
    "softmax_flops",
    "attention_ops",
    "attention_bytes",
    "attention_memory",
    "tile_counts",
    "kv_cache_bytes",
    "decode_step_cost",
    "roofline_time",
    "ridge_intensity",
]

SOFTMAX_FLOPS_PER_SCORE = 5

_DTYPE_NAMES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float8_e4m3fn": getattr(torch, "float8_e4m3fn", None),
}


@dataclass(frozen=True)
class OpCost:
    """One operation's ``flops`` and the ``bytes`` it moves; ``intensity`` = FLOPs per byte."""

    name: str
    flops: int
    bytes: int

    @property
    def intensity(self) -> float:
        """Arithmetic intensity ``flops / bytes`` (FLOP/byte)."""
        return self.flops / self.bytes if self.bytes else math.inf


def _positive(name: str, value: object) -> int:
    require(
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        f"{name} must be a positive int, got {value!r}",
    )
    return int(value)  # type: ignore[arg-type]


def dtype_bytes(dtype: torch.dtype | str | int) -> int:
    """Bytes per number of ``dtype``: a ``torch.dtype``, its name (``"bfloat16"``) or an int."""
    if isinstance(dtype, int) and not isinstance(dtype, bool):
        return _positive("dtype", dtype)
    if isinstance(dtype, str):
        require(
            _DTYPE_NAMES.get(dtype) is not None,
            f"dtype must be one of {sorted(k for k, v in _DTYPE_NAMES.items() if v)}, "
            f"got {dtype!r}",
        )
        dtype = _DTYPE_NAMES[dtype]
    require(
        isinstance(dtype, torch.dtype), f"dtype must be a torch.dtype, str or int, got {dtype!r}"
    )
    return torch.empty((), dtype=dtype).element_size()


def _sizes(B, H, T, D, S, Dv) -> tuple[int, int, int, int, int, int]:
    B, H, T, D = (_positive(n, x) for n, x in (("B", B), ("H", H), ("T", T), ("D", D)))
    S = T if S is None else _positive("S", S)
    Dv = D if Dv is None else _positive("Dv", Dv)
    return B, H, T, D, S, Dv


def visible_pairs(T: int, S: int, *, causal: bool = False) -> int:
    """Number of (query, key) pairs that attend: ``T S``, or with ``causal`` the pairs with
    ``j <= i + (S - T)`` (bottom-right diagonal), ``Σ_i clamp(i + S - T + 1, 0, S)``."""
    T, S = _positive("T", T), _positive("S", S)
    if not causal:
        return T * S
    return sum(min(S, max(0, i + S - T + 1)) for i in range(T))


def attention_flops(
    B: int,
    H: int,
    T: int,
    D: int,
    *,
    S: int | None = None,
    Dv: int | None = None,
    causal: bool = False,
    backward: bool = False,
    recompute: bool = True,
) -> int:
    """Matrix-multiply FLOPs of attention over the ``P`` visible pairs (:func:`visible_pairs`).

    Forward: ``QKᵀ`` and ``PV``, ``2 B H P (D + Dv)`` (``4 B H T S D`` when ``Dv = D``).
    Backward: ``dV = Pᵀ dO`` and ``dP = dO Vᵀ`` (``2 B H P Dv`` each), ``dQ = dS K`` and
    ``dK = dSᵀ Q`` (``2 B H P D`` each), plus, with ``recompute`` (FlashAttention), ``QKᵀ``
    again:
    ``2 B H P (3D + 2Dv)``, i.e. 2.5 times the forward when ``Dv = D`` (2 times without).
    """
    B, H, T, D, S, Dv = _sizes(B, H, T, D, S, Dv)
    P = visible_pairs(T, S, causal=causal)
    if not backward:
        return 2 * B * H * P * (D + Dv)
    return 2 * B * H * P * ((3 if recompute else 2) * D + 2 * Dv)


def softmax_flops(B: int, H: int, T: int, *, S: int | None = None, causal: bool = False) -> int:
    """``SOFTMAX_FLOPS_PER_SCORE · B H P``: no factor ``D`` (see the module docstring)."""
    B, H, T, _, S, _ = _sizes(B, H, T, 1, S, None)
    return SOFTMAX_FLOPS_PER_SCORE * B * H * visible_pairs(T, S, causal=causal)


def attention_ops(
    B: int,
    H: int,
    T: int,
    D: int,
    *,
    S: int | None = None,
    Dv: int | None = None,
    dtype_bytes: int = 4,
) -> tuple[OpCost, OpCost, OpCost]:
    """The three kernels of materialised (unfused) attention, each reading its inputs from and
    writing its output to main memory:

    * ``QKᵀ``: reads Q ``(T, D)`` and K ``(S, D)``, writes the scores ``(T, S)``;
    * softmax: reads the scores, writes the weights ``(T, S)``;
    * ``PV``: reads the weights and V ``(S, Dv)``, writes O ``(T, Dv)``;

    all times ``B H`` and ``dtype_bytes`` bytes per number. Returns three :class:`OpCost`.
    """
    B, H, T, D, S, Dv = _sizes(B, H, T, D, S, Dv)
    b, n = _positive("dtype_bytes", dtype_bytes), B * H
    return (
        OpCost("QKᵀ", 2 * n * T * S * D, b * n * (T * D + S * D + T * S)),
        OpCost("softmax", SOFTMAX_FLOPS_PER_SCORE * n * T * S, b * n * 2 * T * S),
        OpCost("PV", 2 * n * T * S * Dv, b * n * (T * S + S * Dv + T * Dv)),
    )


def attention_bytes(
    B: int,
    H: int,
    T: int,
    D: int,
    *,
    S: int | None = None,
    Dv: int | None = None,
    dtype_bytes: int = 4,
    flash: bool = False,
    block_q: int | None = None,
) -> int:
    """Bytes the forward pass moves to and from main memory.

    Materialised: the sum over :func:`attention_ops` (the ``T x S`` matrix is written twice and
    read twice). ``flash``: Q read once, O written once, the float32 log-sum-exp (4 bytes a row)
    written once, and K, V read once per query block, ``R = ceil(T / block_q)`` times
    (``R = 1`` when ``block_q`` is ``None``: the ideal of on-chip memory that holds all of K, V).
    """
    B, H, T, D, S, Dv = _sizes(B, H, T, D, S, Dv)
    b = _positive("dtype_bytes", dtype_bytes)
    if not flash:
        return sum(op.bytes for op in attention_ops(B, H, T, D, S=S, Dv=Dv, dtype_bytes=b))
    R = 1 if block_q is None else math.ceil(T / _positive("block_q", block_q))
    return B * H * (b * (T * D + T * Dv + R * S * (D + Dv)) + 4 * T)


def attention_memory(
    B: int,
    H: int,
    T: int,
    D: int,
    *,
    S: int | None = None,
    Dv: int | None = None,
    dtype_bytes: int = 4,
    flash: bool = False,
    block_q: int = 128,
    block_k: int = 128,
) -> int:
    """Bytes the forward pass must hold at its peak beyond its inputs.

    Materialised: the scores and the weights, both ``(T, S)`` and alive together while the
    softmax reads one and writes the other, plus the output: ``b B H (2 T S + T Dv)``.
    ``flash``: the output, the log-sum-exp and one score tile of ``block_q x block_k`` per
    (sequence, head): ``B H (b T Dv + 4 T + b bq bk)``, linear in ``T`` (the tile is capped by
    ``T x S``). Implementations hold somewhat more (copies, temporaries); this is the floor.
    """
    B, H, T, D, S, Dv = _sizes(B, H, T, D, S, Dv)
    b = _positive("dtype_bytes", dtype_bytes)
    if not flash:
        return b * B * H * (2 * T * S + T * Dv)
    bq, bk = min(_positive("block_q", block_q), T), min(_positive("block_k", block_k), S)
    return B * H * (b * T * Dv + 4 * T + b * bq * bk)


def tile_counts(
    T: int, S: int, block_q: int, block_k: int, *, causal: bool = False
) -> dict[str, int]:
    """How FlashAttention's ``ceil(T/bq) x ceil(S/bk)`` tiles fall (bottom-right causal diagonal):

    ``skipped`` (every pair above the diagonal: never computed), ``masked`` (computed, some pairs
    masked: the tile crosses the diagonal), ``full`` (every pair visible), ``total`` = all three.
    Without ``causal`` every tile is ``full``.
    """
    T, S = _positive("T", T), _positive("S", S)
    bq, bk = _positive("block_q", block_q), _positive("block_k", block_k)
    counts = {"full": 0, "masked": 0, "skipped": 0}
    shift = S - T
    for i0 in range(0, T, bq):
        i1 = min(i0 + bq, T)
        for j0 in range(0, S, bk):
            j1 = min(j0 + bk, S)
            if not causal or j1 - 1 <= i0 + shift:  # last key visible to the first query
                counts["full"] += 1
            elif j0 <= i1 - 1 + shift:  # first key visible to the last query
                counts["masked"] += 1
            else:
                counts["skipped"] += 1
    counts["total"] = sum(counts.values())
    return counts


def kv_cache_bytes(
    *,
    batch: int,
    layers: int,
    kv_heads: int,
    head_dim: int,
    seq_len: int,
    dtype_bytes: int,
    v_dim: int | None = None,
) -> int:
    """Bytes of a KV cache: keys ``(B, G, S, D)`` and values ``(B, G, S, Dv)`` in every layer,
    ``B L G S (D + Dv) b`` (``2 B L G S D b`` when ``Dv = D``). ``kv_heads`` is ``G``: ``H`` for
    multi-head attention, ``1 < G < H`` for grouped-query, 1 for multi-query attention."""
    B, L = _positive("batch", batch), _positive("layers", layers)
    G = _positive("kv_heads", kv_heads)
    D, S = _positive("head_dim", head_dim), _positive("seq_len", seq_len)
    Dv = D if v_dim is None else _positive("v_dim", v_dim)
    return B * L * G * S * (D + Dv) * _positive("dtype_bytes", dtype_bytes)


def decode_step_cost(
    *,
    heads: int,
    kv_heads: int,
    head_dim: int,
    seq_len: int,
    dtype_bytes: int,
    batch: int = 1,
) -> OpCost:
    """One decoding step of one layer's attention: ``B H`` single queries against a cache of
    ``S`` positions. FLOPs ``4 B H S D`` (``q Kᵀ`` and ``a V``); bytes: the cache read once,
    ``2 B G S D b``, plus the queries and outputs, ``2 B H D b``. Intensity ``≈ 2 H / (G b)``:
    independent of ``S``, and raised by sharing keys and values (``G < H``)."""
    H, G = _positive("heads", heads), _positive("kv_heads", kv_heads)
    require(H % G == 0, f"heads ({H}) must be a multiple of kv_heads ({G})")
    D, S = _positive("head_dim", head_dim), _positive("seq_len", seq_len)
    B, b = _positive("batch", batch), _positive("dtype_bytes", dtype_bytes)
    return OpCost("decode step", 4 * B * H * S * D, 2 * B * G * S * D * b + 2 * B * H * D * b)


def roofline_time(flops: float, nbytes: float, *, peak_flops: float, bandwidth: float) -> float:
    """The roofline's lower bound on the time (s) of a kernel (Williams et al. 2009):
    ``max(flops / peak_flops, nbytes / bandwidth)``: it can go no faster than its arithmetic
    at the peak rate, nor than its memory traffic at the peak bandwidth."""
    require(flops >= 0 and nbytes >= 0, f"flops and nbytes must be >= 0, got {flops}, {nbytes}")
    require(
        peak_flops > 0 and bandwidth > 0,
        f"peak_flops and bandwidth must be > 0, got {peak_flops}, {bandwidth}",
    )
    return max(flops / peak_flops, nbytes / bandwidth)


def ridge_intensity(peak_flops: float, bandwidth: float) -> float:
    """The intensity (FLOP/byte) where the roofline bends: ``peak_flops / bandwidth``. Kernels
    below it are memory-bound, above it compute-bound."""
    require(
        peak_flops > 0 and bandwidth > 0,
        f"peak_flops and bandwidth must be > 0, got {peak_flops}, {bandwidth}",
    )
    return peak_flops / bandwidth
