"""A FlashAttention-2 kernel written in Triton, forward and backward, behind ``torch.autograd``.

    from attnbook.kernels import flash_attention
    out = flash_attention(q, k, v, causal=True)              # q, k, v (B, H, T, D)
    out, lse = flash_attention(q, k, v, return_lse=True)      # lse (B, H, T), float32

It computes the same function as :func:`attnbook.functional.flash_attention` (bottom-right
causal alignment, fully masked rows give zeros) and runs

* on CUDA tensors, compiled by Triton for the GPU;
* on CPU tensors when ``TRITON_INTERPRET=1`` was in the environment before this package
  imported Triton: Triton's interpreter then runs every program of the kernel with numpy. It is
  exact but slow (about a second per call at n = 256), a tool for reading and testing kernels.

``triton`` is an optional dependency (``pip install attnbook[triton]``). Importing this module
never imports Triton or touches a GPU driver; the first call does, and says clearly what is
missing. :func:`tile_schedule` is a pure-Python copy of the kernels' loop bounds (which tiles
each program visits), used by the book's pictures and checked against the kernel by the tests.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from .._validate import check_ndim, require, shape_of

__all__ = [
    "flash_attention",
    "is_available",
    "interpreter_requested",
    "tile_schedule",
    "TileSchedule",
    "record_forward_tiles",
    "HEAD_DIMS",
    "DTYPES",
]

HEAD_DIMS = (16, 32, 64, 128)
DTYPES = (torch.float16, torch.bfloat16, torch.float32)

_module: ModuleType | None = None


def is_available() -> bool:
    """True when ``triton`` can be imported (it is not imported here)."""
    return importlib.util.find_spec("triton") is not None


def interpreter_requested() -> bool:
    """True when ``TRITON_INTERPRET`` asks for Triton's CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _kernels() -> ModuleType:
    """The module holding the Triton kernels, imported (and its kernels built) on first use."""
    global _module
    if _module is None:
        if not is_available():
            raise ImportError(
                "attnbook.kernels needs Triton: pip install 'attnbook[triton]' (or triton>=3.0). "
                "On a CPU, also set TRITON_INTERPRET=1 before the first call."
            )
        _module = importlib.import_module(f"{__name__}.flash_triton")
    return _module


def _check_inputs(q, k, v, key_lengths) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_ndim(name, x, 4)
    require(
        q.shape[:2] == k.shape[:2] == v.shape[:2],
        f"q, k and v must share batch and heads (B, H), got q {shape_of(q)}, k {shape_of(k)}, "
        f"v {shape_of(v)}",
    )
    require(
        k.shape == v.shape and q.shape[-1] == k.shape[-1],
        f"k and v must have shape (B, H, S, D) with q's D, got q {shape_of(q)}, k {shape_of(k)}, "
        f"v {shape_of(v)}",
    )
    require(
        q.shape[-1] in HEAD_DIMS,
        f"the head dim D must be one of {HEAD_DIMS} (tl.dot tiles), got q {shape_of(q)}",
    )
    require(
        q.dtype == k.dtype == v.dtype and q.dtype in DTYPES,
        f"q, k and v must share one dtype out of float16, bfloat16, float32, got {q.dtype}, "
        f"{k.dtype}, {v.dtype} for q {shape_of(q)}",
    )
    require(
        q.device == k.device == v.device,
        f"q, k and v must be on one device, got {q.device}, {k.device}, {v.device}",
    )
    require(
        q.device.type in ("cuda", "cpu"),
        f"the Triton kernel runs on CUDA tensors (or CPU tensors under TRITON_INTERPRET=1), "
        f"got q {shape_of(q)} on {q.device}",
    )
    if key_lengths is not None:
        check_ndim("key_lengths", key_lengths, 1)
        require(
            key_lengths.shape[0] == q.shape[0] and not key_lengths.is_floating_point()
            and key_lengths.dtype != torch.bool and key_lengths.device == q.device,
            f"key_lengths must be an integer tensor (B,) = ({q.shape[0]},) on {q.device}, got "
            f"{shape_of(key_lengths)} {key_lengths.dtype} on {key_lengths.device}",
        )
        if key_lengths.device.type == "cpu":  # checking values on a GPU would synchronise
            ok = bool(((key_lengths >= 0) & (key_lengths <= k.shape[2])).all())
            require(ok, f"key_lengths must lie in [0, S={k.shape[2]}], got {key_lengths.tolist()}")


def _tiles(block_size: Any):
    if block_size is None:
        return None
    bm, bn = (block_size, block_size) if isinstance(block_size, int) else tuple(block_size)
    for b in (bm, bn):
        require(
            isinstance(b, int) and b >= 16 and b & (b - 1) == 0,
            f"block_size must be a power of two >= 16 or a pair of them, got {block_size!r}",
        )
    return _kernels().Tiles(bm, bn)


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, key_lengths, causal, scale, tiles):
        kern = _kernels()
        out, lse = kern.forward(q, k, v, key_lengths, causal, scale, tiles)
        ctx.save_for_backward(q, k, v, out, lse, key_lengths)
        ctx.causal, ctx.scale, ctx.tiles = causal, scale, tiles
        ctx.set_materialize_grads(False)
        return out, lse  # (B, H, T, D), (B, H, T)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, dlse):
        q, k, v, out, lse, key_lengths = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(out)
        elif dout.stride(-1) != 1:
            dout = dout.contiguous()
        if dlse is not None:
            dlse = dlse.to(torch.float32).contiguous()
        dq, dk, dv = _kernels().backward(
            q, k, v, out, lse, dout, dlse, key_lengths, ctx.causal, ctx.scale, ctx.tiles
        )
        return dq, dk, dv, None, None, None, None


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    scale: float | None = None,
    *,
    return_lse: bool = False,
    key_lengths: torch.Tensor | None = None,
    block_size: int | tuple[int, int] | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``softmax(scale · Q Kᵀ) V`` by the Triton FlashAttention-2 kernels, differentiable.

    q ``(B, H, T, D)``, k and v ``(B, H, S, D)`` with ``D`` in 16, 32, 64, 128 and one dtype
    out of float16, bfloat16, float32 -> out ``(B, H, T, D)`` in that dtype, and with
    ``return_lse=True`` also ``lse (B, H, T)`` in float32, the log-sum-exp of each row of
    scaled, masked scores (``-inf`` for a row without keys); ``lse`` is differentiable too.

    ``causal``: query ``i`` sees key ``j`` iff ``j <= i + S - T`` (bottom-right, as in
    :func:`attnbook.functional.causal_mask`). ``scale`` defaults to ``1/sqrt(D)``.
    ``key_lengths`` (``(B,)`` integers): sequence ``b`` has only its first ``key_lengths[b]``
    keys (padding after them is ignored and gets zero gradients). ``block_size`` fixes the tile
    sizes ``(BLOCK_M, BLOCK_N)`` of every kernel (powers of two >= 16); by default the
    interpreter uses 32 x 32 and CUDA autotunes among a few candidates.
    """
    _check_inputs(q, k, v, key_lengths)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    require(isinstance(scale, (int, float)) and math.isfinite(scale),
            f"scale must be a finite number, got {scale!r}")
    tiles = _tiles(block_size)
    kern = _kernels()
    if q.device.type == "cpu" and not kern.interpreted():
        raise RuntimeError(
            "CPU tensors need Triton's interpreter, but the kernels were built for a GPU: set "
            "TRITON_INTERPRET=1 in the environment before the first call to "
            "attnbook.kernels.flash_attention (best: before importing triton)."
        )
    autocast = _autocast_dtype(q.device.type)
    if autocast is not None:  # inside torch.autocast: compute in its dtype
        q, k, v = q.to(autocast), k.to(autocast), v.to(autocast)
    if q.stride(-1) != 1:
        q = q.contiguous()
    if k.stride(-1) != 1:
        k = k.contiguous()
    if v.stride(-1) != 1:
        v = v.contiguous()
    dtype = q.dtype
    if q.device.type == "cpu" and dtype == torch.bfloat16:
        # numpy has no bfloat16: the interpreter's tl.dot gets bfloat16 tiles wrong, so on the
        # CPU the kernel computes in float32 and the output is rounded back to bfloat16
        q, k, v = q.float(), k.float(), v.float()
    with torch.autocast(q.device.type, enabled=False):
        out, lse = _FlashAttention.apply(q, k, v, key_lengths, bool(causal), float(scale), tiles)
    out = out.to(dtype)
    return (out, lse) if return_lse else out


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype of an enclosing ``torch.autocast`` on ``device_type``, or None."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        enabled = (torch.is_autocast_enabled() if device_type == "cuda"
                   else torch.is_autocast_cpu_enabled())
    if not enabled:
        return None
    get = getattr(torch, "get_autocast_dtype", None)
    if get is not None:
        return get(device_type)
    return torch.get_autocast_gpu_dtype() if device_type == "cuda" else torch.get_autocast_cpu_dtype()


# --------------------------------------------------------------------------------------------
# the kernels' loop bounds, in Python
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TileSchedule:
    """Which tiles each program of one launch visits.

    ``forward[m]`` is a pair ``(unmasked, masked)`` of lists of key-tile indices that the
    program owning query tile ``m`` computes (the forward kernel and the dq kernel);
    ``dkdv[n]`` is ``(masked, unmasked)`` query-tile indices for the program owning key tile
    ``n``. Tiles in no list are skipped.
    """

    T: int
    S: int
    block_m: int
    block_n: int
    causal: bool
    forward: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    dkdv: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]

    def forward_counts(self) -> list[tuple[int, int]]:
        """Per query tile: (unmasked tiles, masked tiles), as the kernel's ``stats`` records."""
        return [(len(a), len(b)) for a, b in self.forward]

    def visited(self) -> int:
        """Number of (query tile, key tile) products one forward launch computes."""
        return sum(len(a) + len(b) for a, b in self.forward)


def tile_schedule(
    T: int, S: int, block_m: int, block_n: int, *, causal: bool = False,
    key_length: int | None = None,
) -> TileSchedule:
    """The loop bounds of the kernels (``_key_range`` and ``_query_range``), for one sequence.

    A forward program owns queries ``[m·BM, (m+1)·BM)``: the key tiles starting below
    ``full`` are seen whole by every row (no mask), those in ``[full, hi)`` need the mask, and
    keys ``>= hi`` are skipped. With ``causal``, ``shift = S - T`` and query ``i`` sees key
    ``j`` iff ``j <= i + shift``.
    """
    for name, value in (("T", T), ("S", S), ("block_m", block_m), ("block_n", block_n)):
        require(isinstance(value, int) and value >= (1 if "block" in name else 0),
                f"{name} must be a {'positive' if 'block' in name else 'non-negative'} int, "
                f"got {value!r}")
    n_valid = S if key_length is None else max(0, min(key_length, S))
    shift = S - T
    fwd = []
    for start_m in range(0, T, block_m):
        hi = full = n_valid
        if causal:
            hi = min(hi, start_m + block_m + shift)
            full = min(full, start_m + shift + 1)
        hi = max(hi, 0)
        full = max(full, 0) // block_n * block_n
        fwd.append((tuple(j // block_n for j in range(0, full, block_n)),
                    tuple(j // block_n for j in range(full, hi, block_n))))
    bwd = []
    for start_n in range(0, S, block_n):
        m_end = T if start_n < n_valid else 0
        lo = full = 0
        if causal:
            lo = max(start_n - shift, 0) // block_m * block_m
            last = max(start_n + block_n - 1 - shift, 0)
            full = min((last + block_m - 1) // block_m * block_m, m_end)
            lo = min(lo, full)
        bwd.append((tuple(i // block_m for i in range(lo, full, block_m)),
                    tuple(i // block_m for i in range(full, m_end, block_m))))
    return TileSchedule(T, S, block_m, block_n, bool(causal), tuple(fwd), tuple(bwd))


def record_forward_tiles(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
    block_size: int | tuple[int, int] = 32, key_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run the forward kernel once and return what each program reports it computed:
    int32 ``(B, H, num query tiles, 2)`` = (unmasked tiles, masked tiles)."""
    _check_inputs(q, k, v, key_lengths)
    tiles = _tiles(block_size)
    kern = _kernels()
    B, H, T, _ = q.shape
    n_tiles = -(-T // tiles.block_m)
    stats = torch.zeros(B * H * n_tiles * 2, dtype=torch.int32, device=q.device)
    scale = 1.0 / math.sqrt(q.shape[-1])
    with torch.no_grad():
        kern.forward(q.contiguous(), k.contiguous(), v.contiguous(), key_lengths, causal, scale,
                     tiles, stats=stats)
    return stats.view(B, H, n_tiles, 2)
