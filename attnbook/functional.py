"""Attention as pure functions: score functions, the masked softmax, scaled dot-product
attention, FlashAttention's tiled online softmax, and mask builders.

Conventions (see DESIGN.md): tensors are batch-first, ``T`` is the number of queries, ``S`` the
number of keys, ``D`` the query/key feature size, ``Dv`` the value size. Masks are boolean with
``True`` = may attend; a query row with every key masked gives a zero output row and zero
weights, never NaN.

Causal masks with ``T != S`` are aligned to the *bottom right*: query ``i`` may attend to key
``j`` when ``j <= i + (S - T)``. This is what incremental decoding needs (the ``T`` new queries
are the last ``T`` positions of an ``S``-long sequence). This is PyTorch's
``torch.nn.attention.bias.causal_lower_right(T, S)``; note that
``F.scaled_dot_product_attention(is_causal=True)`` uses the *top-left* alignment
(``j <= i``, ``causal_upper_left``); the two agree when ``T == S``.

Half precision: the explicit paths (:func:`scaled_dot_product_attention`, :func:`masked_softmax`,
:func:`flash_attention`) compute float16/bfloat16 inputs in float32 (scaled queries, scores,
softmax and the weighted sum) and return results in the input dtype, so scores far beyond
float16's range (65504) do not overflow. They turn ``torch.autocast`` off inside, as
PyTorch's own softmax does, for the same reason.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from ._validate import (
    autocast_enabled,
    check_bias,
    check_bool,
    check_floating,
    check_mask,
    check_ndim,
    check_scale,
    data_checks,
    require,
    shape_of,
)

__all__ = [
    "dot_score",
    "scaled_dot_score",
    "general_score",
    "additive_score",
    "masked_softmax",
    "scaled_dot_product_attention",
    "flash_attention",
    "causal_mask",
    "padding_mask",
    "key_padding_to_attn_mask",
]


# --------------------------------------------------------------------------------------------
# score functions: q (..., T, Dq), k (..., S, Dk) -> scores (..., T, S)
# --------------------------------------------------------------------------------------------


def _check_qk(q: torch.Tensor, k: torch.Tensor, same_dim: bool) -> None:
    check_ndim("q", q, range(2, 9))
    check_ndim("k", k, range(2, 9))
    require(
        q.shape[:-2] == k.shape[:-2],
        lambda: f"q and k must have the same leading (batch) dimensions, got q {shape_of(q)} "
        f"and k {shape_of(k)}",
    )
    if same_dim:
        require(
            q.shape[-1] == k.shape[-1],
            lambda: f"q and k must have the same feature size (last dimension), got q {shape_of(q)} "
            f"and k {shape_of(k)}",
        )


def dot_score(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Dot-product score ``score(q_t, k_s) = q_t · k_s`` (Luong et al. 2015, "dot").

    q ``(..., T, D)``, k ``(..., S, D)`` -> scores ``(..., T, S)``. Equivalent to
    ``q @ k.transpose(-2, -1)``.
    """
    _check_qk(q, k, same_dim=True)
    return q @ k.transpose(-2, -1)  # (..., T, S)


def scaled_dot_score(q: torch.Tensor, k: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Scaled dot-product score ``score(q_t, k_s) = q_t · k_s / sqrt(D)`` (Vaswani et al. 2017).

    ``scale`` replaces ``1/sqrt(D)`` when given. q ``(..., T, D)``, k ``(..., S, D)`` ->
    scores ``(..., T, S)``. Equivalent to ``(q @ k.transpose(-2, -1)) / math.sqrt(D)``
    (:func:`scaled_dot_product_attention` scales the queries before the product instead, which
    keeps half precision products in range).
    """
    _check_qk(q, k, same_dim=True)
    check_scale("scale", scale)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    return (q @ k.transpose(-2, -1)) * scale  # (..., T, S)


def general_score(q: torch.Tensor, k: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Bilinear score ``score(q_t, k_s) = q_tᵀ W k_s`` (Luong et al. 2015, "general").

    q ``(..., T, Dq)``, k ``(..., S, Dk)``, W ``(Dq, Dk)`` (the ``weight`` of an
    ``nn.Linear(Dk, Dq)``) -> scores ``(..., T, S)``. Equivalent to
    ``q @ W @ k.transpose(-2, -1)``.
    """
    _check_qk(q, k, same_dim=False)
    check_ndim("W", W, 2)
    require(
        W.shape == (q.shape[-1], k.shape[-1]),
        lambda: f"W must have shape (Dq, Dk) = {(q.shape[-1], k.shape[-1])} for q {shape_of(q)} and "
        f"k {shape_of(k)}, got W {shape_of(W)}",
    )
    Wk = k @ W.transpose(0, 1)  # (..., S, Dq)
    return q @ Wk.transpose(-2, -1)  # (..., T, S)


def additive_score(
    q: torch.Tensor, k: torch.Tensor, W_q: torch.Tensor, W_k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """Additive score ``score(q_t, k_s) = vᵀ tanh(W_q q_t + W_k k_s)`` (Bahdanau et al. 2015).

    Luong's "concat" score ``vᵀ tanh(W_a [q_t; k_s])`` is the same function: split
    ``W_a = [W_q | W_k]`` into the columns that multiply ``q_t`` and those that multiply ``k_s``.

    q ``(..., T, Dq)``, k ``(..., S, Dk)``, W_q ``(Dh, Dq)``, W_k ``(Dh, Dk)`` (``nn.Linear``
    weights, out x in), v ``(Dh,)`` or ``(1, Dh)`` -> scores ``(..., T, S)``. Holds a
    ``(..., T, S, Dh)`` tensor, as the additive score inherently does. Equivalent to
    ``torch.tanh((q @ W_q.T)[..., :, None, :] + (k @ W_k.T)[..., None, :, :]) @ v.reshape(-1)``.
    """
    _check_qk(q, k, same_dim=False)
    check_ndim("W_q", W_q, 2)
    check_ndim("W_k", W_k, 2)
    require(
        W_q.shape[1] == q.shape[-1],
        lambda: f"W_q must have shape (Dh, Dq={q.shape[-1]}) for q {shape_of(q)}, got W_q {shape_of(W_q)}",
    )
    require(
        W_k.shape == (W_q.shape[0], k.shape[-1]),
        lambda: f"W_k must have shape (Dh={W_q.shape[0]}, Dk={k.shape[-1]}) for W_q {shape_of(W_q)} and "
        f"k {shape_of(k)}, got W_k {shape_of(W_k)}",
    )
    check_ndim("v", v, (1, 2))
    require(
        v.numel() == W_q.shape[0] and v.shape[-1] == W_q.shape[0],
        lambda: f"v must have shape (Dh,) or (1, Dh) with Dh={W_q.shape[0]}, got v {shape_of(v)}",
    )
    Wq = q @ W_q.transpose(0, 1)  # (..., T, Dh)
    Wk = k @ W_k.transpose(0, 1)  # (..., S, Dh)
    hidden = torch.tanh(Wq.unsqueeze(-2) + Wk.unsqueeze(-3))  # (..., T, S, Dh)
    return hidden @ v.reshape(-1)  # (..., T, S)


# --------------------------------------------------------------------------------------------
# softmax with a mask
# --------------------------------------------------------------------------------------------

_HALF = (torch.float16, torch.bfloat16)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half inputs (accumulate in float32), the input dtype otherwise."""
    return torch.float32 if dtype in _HALF else dtype


def _exact(device_type: str):
    """A context in which ``torch.autocast`` does not lower the precision of matmuls."""
    if autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def masked_softmax(
    scores: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1
) -> torch.Tensor:
    """Softmax over ``dim`` that ignores masked-out entries.

    ``a_j = exp(s_j - m) / Σ_k exp(s_k - m)`` over the kept entries ``j`` (``m`` = their max, which
    keeps ``exp`` from overflowing even for logits like ±1e30); masked entries get weight 0. A
    score of ``-inf`` counts as masked. A row with nothing left to attend to (every entry masked
    or ``-inf``) gets all-zero weights, never NaN, in the forward pass and in the gradient, also
    when its raw scores are NaN or infinite. ``mask`` is boolean (True = keep), broadcastable to
    ``scores`` and on its device. float16/bfloat16 scores are normalised in float32 and the
    weights returned in the input dtype.

    Equivalent to (for rows with at least one kept, finite score)::

        torch.softmax(scores.masked_fill(~mask, float("-inf")), dim)
    """
    require(isinstance(scores, torch.Tensor), lambda: f"scores must be a torch.Tensor, got {type(scores).__name__}")
    require(
        scores.dim() >= 1 and -scores.dim() <= dim < scores.dim(),
        lambda: f"dim={dim} is out of range for scores with shape {shape_of(scores)}",
    )
    require(scores.is_floating_point(), lambda: f"scores must be floating point, got dtype {scores.dtype}")
    s = scores
    if mask is not None:
        check_mask("mask", mask, scores.shape, device=scores.device)
        s = s.masked_fill(~mask, float("-inf"))
    # Rows with no finite maximum have nothing to attend to: softmax them over zeros (finite),
    # then zero them. masked_fill passes no gradient to what it overwrites, so the gradient
    # reaching a dead row's raw scores (NaN, inf, anything) is exactly zero.
    if s.shape[dim] == 0:  # no keys at all: an empty distribution (nothing to normalise)
        return torch.zeros_like(scores)
    dead = s.amax(dim=dim, keepdim=True) == float("-inf")  # (..., 1, ...)
    if not (torch.is_grad_enabled() and s.requires_grad):
        # No gradient to protect: softmax once (dead rows come out NaN) and zero them in place,
        # so the forward holds one (..., T, S) result beside the scores, as torch.softmax does.
        a = torch.softmax(s, dim=dim, dtype=_work_dtype(scores.dtype)).to(scores.dtype)
        return a.masked_fill_(dead, 0.0)
    s = s.masked_fill(dead, 0.0)
    a = torch.softmax(s, dim=dim, dtype=_work_dtype(scores.dtype)).to(scores.dtype)
    return a.masked_fill(dead, 0.0)


# --------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------


def causal_mask(T: int, S: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean ``(T, S)`` causal mask aligned bottom-right: ``mask[i, j] = j <= i + (S - T)``.

    With ``S = T`` (the default) this is the lower triangle ``j <= i``. With ``S > T`` the ``T``
    queries are the last ``T`` positions of an ``S``-long sequence (incremental decoding): the
    last query sees every key. Equivalent to ``torch.ones(T, S, dtype=torch.bool).tril(S - T)``
    and to ``torch.nn.attention.bias.causal_lower_right(T, S)``; PyTorch's ``is_causal=True``
    is the top-left ``tril(0)`` instead, which differs when ``T != S``.
    """
    S = T if S is None else S
    require(isinstance(T, int) and not isinstance(T, bool) and T >= 0, lambda: f"T must be a non-negative int, got {T!r}")
    require(isinstance(S, int) and not isinstance(S, bool) and S >= 0, lambda: f"S must be a non-negative int, got {S!r}")
    i = torch.arange(T, device=device).unsqueeze(1)  # (T, 1)
    j = torch.arange(S, device=device).unsqueeze(0)  # (1, S)
    return j <= i + (S - T)  # (T, S)


def padding_mask(lengths: torch.Tensor, S: int) -> torch.Tensor:
    """Key-padding mask ``(B, S)``: ``mask[b, s] = s < lengths[b]`` (True = a real token).

    Broadcast it against ``(B, T, S)`` scores as ``mask[:, None, :]`` and against
    ``(B, H, T, S)`` scores with :func:`key_padding_to_attn_mask`. Equivalent to
    ``torch.arange(S) < lengths[:, None]``. That every length lies in ``[0, S]`` is a data
    check (it reads the values; see :func:`attnbook.utils.set_data_checks`).
    """
    check_ndim("lengths", lengths, 1)
    require(
        not lengths.is_floating_point() and not lengths.is_complex() and lengths.dtype != torch.bool,
        lambda: f"lengths must be an integer tensor, got dtype {lengths.dtype}",
    )
    require(isinstance(S, int) and not isinstance(S, bool) and S >= 0, lambda: f"S must be a non-negative int, got {S!r}")
    if data_checks():
        require(
            bool(((lengths >= 0) & (lengths <= S)).all()),
            lambda: f"lengths must lie in [0, S={S}], got {lengths.tolist()}",
        )
    s = torch.arange(S, device=lengths.device)  # (S,)
    return s.unsqueeze(0) < lengths.unsqueeze(1)  # (B, S)


def key_padding_to_attn_mask(mask: torch.Tensor) -> torch.Tensor:
    """``(B, S)`` key-padding mask -> ``(B, 1, 1, S)``, which broadcasts to ``(B, H, T, S)``.

    Equivalent to ``mask[:, None, None, :]``.
    """
    check_ndim("mask", mask, 2)
    require(mask.dtype == torch.bool, lambda: f"mask must be boolean, got dtype {mask.dtype}")
    return mask[:, None, None, :]  # (B, 1, 1, S)


# --------------------------------------------------------------------------------------------
# scaled dot-product attention
# --------------------------------------------------------------------------------------------


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.dtype:
    """Validate q ``(..., T, D)``, k ``(..., S, D)``, v ``(..., S, Dv)``; returns the dtype of the
    result (their common dtype; under autocast, mixed dtypes promote)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_ndim(name, x, range(2, 9))
        check_floating(name, x)
    require(
        q.dim() == k.dim() == v.dim() and q.shape[:-2] == k.shape[:-2] == v.shape[:-2],
        lambda: f"q, k and v must have the same leading (batch) dimensions, got q {shape_of(q)}, "
        f"k {shape_of(k)}, v {shape_of(v)}",
    )
    require(
        q.shape[-1] == k.shape[-1],
        lambda: f"q and k must have the same feature size D, got q {shape_of(q)} and k {shape_of(k)}",
    )
    require(q.shape[-1] >= 1, lambda: f"q and k must have a feature size D >= 1, got q {shape_of(q)}")
    require(
        k.shape[-2] == v.shape[-2],
        lambda: f"k and v must have the same number of keys S, got k {shape_of(k)} and v {shape_of(v)}",
    )
    require(
        q.device == k.device == v.device,
        lambda: f"q, k and v must be on one device, got {q.device}, {k.device}, {v.device}",
    )
    if q.dtype == k.dtype == v.dtype:
        return q.dtype
    require(
        autocast_enabled(q.device.type),
        lambda: f"q, k and v must share a dtype (outside torch.autocast), got {q.dtype}, {k.dtype}, "
        f"{v.dtype}",
    )
    return torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)


def _check_dropout(dropout_p: float) -> None:
    require(
        isinstance(dropout_p, (int, float)) and not isinstance(dropout_p, bool) and 0.0 <= dropout_p < 1.0,
        lambda: f"dropout_p must be in [0, 1), got {dropout_p!r}",
    )


def _combined_mask(
    mask: torch.Tensor | None, causal: bool, T: int, S: int, device: torch.device
) -> torch.Tensor | None:
    """The user's mask and the bottom-right causal mask, combined. A single query (``T = 1``) is
    the last position and sees every key, so causality adds nothing there."""
    if causal and T > 1:
        c = causal_mask(T, S, device=device)  # (T, S)
        return c if mask is None else mask & c
    return mask


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
    *,
    attn_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``Attention(Q, K, V) = softmax(Q Kᵀ / sqrt(D) + bias) V`` (Vaswani et al. 2017).

    q ``(..., T, D)``, k ``(..., S, D)``, v ``(..., S, Dv)`` with the same leading dimensions ->
    (out ``(..., T, Dv)``, weights ``(..., T, S)``). ``mask`` is boolean (True = may attend),
    broadcastable to ``(..., T, S)``; ``causal=True`` adds the bottom-right causal mask (query
    ``i`` sees keys ``j <= i + S - T``, PyTorch's ``causal_lower_right``; see the module
    docstring); ``scale`` replaces ``1/sqrt(D)``; ``attn_bias`` is a float tensor broadcastable
    to ``(..., T, S)`` added to the scores (e.g. ALiBi). With ``dropout_p > 0`` the weights are
    dropped out (and rescaled by ``1/(1-p)``); the returned weights are the ones used. Query rows
    with nothing to attend to (every key masked, or a bias of ``-inf`` everywhere) give zero
    output and zero weights. float16/bfloat16 inputs are computed in float32 (the queries are
    scaled before the product) and returned in their dtype. Masks and biases must be on the
    device of ``q``.

    Equivalent to (for rows with a visible key; ``keep`` = ``mask`` and the causal mask)::

        s = (q * scale) @ k.transpose(-2, -1) + attn_bias
        weights = torch.softmax(s.masked_fill(~keep, float("-inf")), dim=-1)
        out = weights @ v

    and, where PyTorch's function is defined, to
    ``F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)``.
    """
    out_dtype = _check_qkv(q, k, v)
    T, S = q.shape[-2], k.shape[-2]
    target = (*q.shape[:-2], T, S)
    if mask is not None:
        check_mask("mask", mask, target, device=q.device)
    if attn_bias is not None:
        check_bias("attn_bias", attn_bias, target, device=q.device)
    check_bool("causal", causal)
    check_scale("scale", scale)
    _check_dropout(dropout_p)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])

    work = _work_dtype(out_dtype)
    with _exact(q.device.type):
        qs = q.to(work) * scale  # (..., T, D), scaled before the product
        scores = qs @ k.to(work).transpose(-2, -1)  # (..., T, S)
        if attn_bias is not None:
            scores = scores + attn_bias.to(work)
        weights = masked_softmax(scores, _combined_mask(mask, causal, T, S, q.device))  # (..., T, S)
        if dropout_p > 0.0:
            weights = F.dropout(weights, p=dropout_p, training=True)
        out = weights @ v.to(work)  # (..., T, Dv)
    return out.to(out_dtype), weights.to(out_dtype)


# --------------------------------------------------------------------------------------------
# FlashAttention: tiles + online softmax, forward and backward without a T x S tensor
# --------------------------------------------------------------------------------------------


def _tiles(n: int, block: int) -> list[tuple[int, int]]:
    return [(i, min(i + block, n)) for i in range(0, n, block)]


class _FlashTiling:
    """Tile bookkeeping shared by the forward and backward pass.

    ``q`` is ``(N, T, D)`` with all leading dimensions flattened into ``N``; ``mask`` and
    ``bias`` keep their own (broadcastable) shapes and are sliced per tile, so no ``T x S``
    tensor is ever built.
    """

    def __init__(self, batch_shape, T, S, mask, causal, block_q, block_k, device, bias=None):
        self.batch_shape, self.T, self.S = tuple(batch_shape), T, S
        self.N = math.prod(self.batch_shape)
        self.mask, self.causal, self.device, self.bias = mask, causal, device, bias
        self.q_tiles, self.k_tiles = _tiles(T, block_q), _tiles(S, block_k)
        self.shift = S - T  # bottom-right causal alignment: key j visible to query i iff j <= i + shift

    def visible(self, i0: int, i1: int, j0: int, j1: int) -> bool:
        """False when the key block lies entirely above the causal diagonal (skip it)."""
        return not self.causal or j0 <= (i1 - 1) + self.shift

    def tile_mask(self, i0: int, i1: int, j0: int, j1: int) -> torch.Tensor | None:
        """Boolean keep-mask ``(N or 1, i1-i0, j1-j0)`` for one tile, or None if all is kept."""
        keep = None
        if self.causal and j1 - 1 > i0 + self.shift:  # tile crosses the diagonal
            i = torch.arange(i0, i1, device=self.device).unsqueeze(1)  # (bq, 1)
            j = torch.arange(j0, j1, device=self.device).unsqueeze(0)  # (1, bk)
            keep = (j <= i + self.shift).unsqueeze(0)  # (1, bq, bk)
        if self.mask is not None:
            m = self._tile(self.mask, i0, i1, j0, j1)  # (N, bq, bk)
            keep = m if keep is None else keep & m
        return keep

    def _tile(self, x: torch.Tensor, i0: int, i1: int, j0: int, j1: int) -> torch.Tensor:
        """``x`` broadcastable to ``(..., T, S)`` -> its ``(N, i1-i0, j1-j0)`` tile."""
        if x.dim() >= 2 and x.shape[-2] != 1:  # broadcast (size-1) dimensions are not sliced
            x = x[..., i0:i1, :]
        if x.shape[-1] != 1:
            x = x[..., j0:j1]
        return x.expand(*self.batch_shape, i1 - i0, j1 - j0).reshape(self.N, i1 - i0, j1 - j0)

    def add_bias(self, S_ij: torch.Tensor, i0: int, i1: int, j0: int, j1: int) -> torch.Tensor:
        """``S_ij + bias`` for one tile (in place), or ``S_ij`` without a bias."""
        if self.bias is None:
            return S_ij
        return S_ij.add_(self._tile(self.bias, i0, i1, j0, j1))


def _flash_forward(q, k, v, scale, tiling: _FlashTiling):
    """Online-softmax forward. q ``(N, T, D)``, k ``(N, S, D)``, v ``(N, S, Dv)`` ->
    out ``(N, T, Dv)`` and the log-sum-exp ``L = m + log l`` per row ``(N, T, 1)``.

    Each query tile keeps its accumulator ``O_i`` in a contiguous buffer (PyTorch's CPU
    ``baddbmm_`` takes its batched-GEMM path only for a contiguous result) and is copied into
    ``out`` once, when its key loop ends.
    """
    N, T, _ = q.shape
    Dv = v.shape[-1]
    out = torch.empty(N, T, Dv, dtype=q.dtype, device=q.device)  # (N, T, Dv)
    lse = torch.empty(N, T, 1, dtype=q.dtype, device=q.device)  # (N, T, 1)
    qs = q * scale  # (N, T, D), the scale applied once instead of once per tile
    kT = k.transpose(1, 2)  # (N, D, S)
    for i0, i1 in tiling.q_tiles:
        Q_i = qs[:, i0:i1]  # (N, bq, D)
        m_i = torch.full((N, i1 - i0, 1), float("-inf"), dtype=q.dtype, device=q.device)
        l_i = torch.zeros(N, i1 - i0, 1, dtype=q.dtype, device=q.device)
        O_i = torch.zeros(N, i1 - i0, Dv, dtype=q.dtype, device=q.device)  # (N, bq, Dv)
        for j0, j1 in tiling.k_tiles:
            if not tiling.visible(i0, i1, j0, j1):
                break  # every later key block is above the diagonal too
            S_ij = tiling.add_bias(torch.bmm(Q_i, kT[:, :, j0:j1]), i0, i1, j0, j1)  # (N, bq, bk)
            keep = tiling.tile_mask(i0, i1, j0, j1)
            if keep is not None:
                S_ij.masked_fill_(~keep, float("-inf"))
            m_new = torch.maximum(m_i, S_ij.amax(dim=-1, keepdim=True))  # (N, bq, 1)
            # rows with no visible key so far keep m = -inf; shift them by 0 to avoid inf - inf
            maybe_empty = keep is not None or tiling.bias is not None
            m_safe = m_new.nan_to_num(neginf=0.0) if maybe_empty else m_new
            P_ij = S_ij.sub_(m_safe).exp_()  # (N, bq, bk), unnormalised probabilities
            alpha = m_i.sub_(m_safe).exp_()  # (N, bq, 1), rescales what was accumulated so far
            l_i.mul_(alpha).add_(P_ij.sum(dim=-1, keepdim=True))
            O_i.mul_(alpha).baddbmm_(P_ij, v[:, j0:j1])
            m_i = m_new
        empty = l_i == 0  # fully masked rows
        out[:, i0:i1] = O_i.div_(l_i.masked_fill(empty, 1.0))
        # L = m + log l; +inf for empty rows makes exp(S - L) = 0 in the backward pass
        lse[:, i0:i1] = torch.where(empty, float("inf"), m_i + l_i.log())
    return out, lse


def _flash_backward(q, k, v, out, lse, dout, scale, tiling: _FlashTiling, needs):
    """FlashAttention backward (Dao et al. 2022, Alg. 4), recomputing ``P`` tile by tile.

    ``D_i = rowsum(dO_i ∘ O_i)``, ``P = exp(S - L)``, ``dV_j += Pᵀ dO_i``, ``dP = dO_i V_jᵀ``,
    ``dS = P ∘ (dP - D_i)``, ``dQ_i += scale dS K_j``, ``dK_j += scale dSᵀ Q_i``.

    The subtractions ride on the GEMMs (``baddbmm`` with ``-L`` and ``-D_i`` as the added term)
    and every accumulator is a contiguous per-tile buffer, so each tile costs seven kernels.
    """
    N, T, _ = q.shape
    Dvec = (dout * out).sum(dim=-1, keepdim=True)  # (N, T, 1)
    neg_L, neg_D = lse.neg(), Dvec.neg_()  # (N, T, 1) each
    qs = q * scale  # (N, T, D)
    vT = v.transpose(1, 2)  # (N, Dv, S)
    want_dq, want_dk, want_dv = needs
    want_dS = want_dq or want_dk
    dq_tiles = [torch.zeros_like(qs[:, i0:i1]) for i0, i1 in tiling.q_tiles] if want_dq else []
    dk = torch.empty_like(k) if want_dk else None
    dv = torch.empty_like(v) if want_dv else None
    for j0, j1 in tiling.k_tiles:
        K_j = k[:, j0:j1]  # (N, bk, D)
        K_jT = K_j.transpose(1, 2)  # (N, D, bk)
        dK_j = torch.zeros_like(K_j) if want_dk else None  # (N, bk, D)
        dV_j = torch.zeros(N, j1 - j0, v.shape[-1], dtype=v.dtype, device=v.device) if want_dv else None
        for t, (i0, i1) in enumerate(tiling.q_tiles):
            if not tiling.visible(i0, i1, j0, j1):
                continue
            shape = (N, i1 - i0, j1 - j0)
            # S - L in one GEMM: baddbmm adds -L (broadcast along the keys) to Q_i K_jᵀ
            S_ij = torch.baddbmm(neg_L[:, i0:i1].expand(shape), qs[:, i0:i1], K_jT)  # (N, bq, bk)
            S_ij = tiling.add_bias(S_ij, i0, i1, j0, j1)
            keep = tiling.tile_mask(i0, i1, j0, j1)
            if keep is not None:
                S_ij.masked_fill_(~keep, float("-inf"))
            P_ij = S_ij.exp_()  # (N, bq, bk), normalised probabilities
            dO_i = dout[:, i0:i1]  # (N, bq, Dv)
            if dV_j is not None:
                dV_j.baddbmm_(P_ij.transpose(1, 2), dO_i)
            if not want_dS:
                continue
            dP_ij = torch.baddbmm(neg_D[:, i0:i1].expand(shape), dO_i, vT[:, :, j0:j1])  # dP - D
            dS_ij = dP_ij.mul_(P_ij)  # (N, bq, bk)
            if want_dq:
                dq_tiles[t].baddbmm_(dS_ij, K_j, alpha=scale)
            if dK_j is not None:
                dK_j.baddbmm_(dS_ij.transpose(1, 2), qs[:, i0:i1])
        if dk is not None:
            dk[:, j0:j1] = dK_j
        if dv is not None:
            dv[:, j0:j1] = dV_j
    dq = None
    if want_dq:  # (N, T, D); with T = 0 there are no tiles to concatenate
        dq = torch.cat(dq_tiles, dim=1) if dq_tiles else torch.zeros_like(qs)
    return dq, dk, dv


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, scale, tiling):  # q (N, T, D), k (N, S, D), v (N, S, Dv)
        out, lse = _flash_forward(q, k, v, scale, tiling)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale, ctx.tiling = scale, tiling
        lse_out = lse.squeeze(-1).masked_fill(lse.squeeze(-1) == float("inf"), float("-inf"))
        ctx.mark_non_differentiable(lse_out)
        return out, lse_out  # (N, T, Dv), (N, T)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        needs = ctx.needs_input_grad[:3]
        dq, dk, dv = _flash_backward(
            q, k, v, out, lse, dout.contiguous(), ctx.scale, ctx.tiling, needs
        )
        return dq, dk, dv, None, None


def _block_sizes(block_size: int | tuple[int, int]) -> tuple[int, int]:
    """``block_size`` as ``(block_q, block_k)``, each a positive int."""

    def ok(b: object) -> bool:
        return isinstance(b, int) and not isinstance(b, bool) and b > 0

    if ok(block_size):
        return block_size, block_size
    pair = isinstance(block_size, (tuple, list)) and len(block_size) == 2 and all(map(ok, block_size))
    require(pair, lambda: f"block_size must be a positive int or a pair of them, got {block_size!r}")
    return block_size[0], block_size[1]


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    block_size: int | tuple[int, int] = 128,
    *,
    return_lse: bool = False,
    attn_bias: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Exact attention computed tile by tile with an online softmax (FlashAttention).

    Same function as :func:`scaled_dot_product_attention` (same shapes, mask, bias and
    bottom-right causal conventions; rows with nothing to attend to give zeros) but it never
    holds a ``T x S`` tensor: for each query tile ``Q_i`` it streams over key tiles ``K_j, V_j``
    keeping a running row max ``m``, a running normaliser ``l`` and an unnormalised output ``O``
    (Milakov & Gimelshein 2018; Dao et al. 2022):

        ``m' = max(m, rowmax(S_ij))``, ``P = exp(S_ij - m')``, ``l' = e^(m - m') l + rowsum(P)``,
        ``O' = e^(m - m') O + P V_j``, and finally ``O / l``.

    Key tiles entirely above the causal diagonal are skipped. The backward pass (a custom
    ``autograd.Function``) saves only ``q, k, v, out`` and the per-row log-sum-exp and recomputes
    each tile's probabilities. ``block_size`` is the tile edge (or ``(block_q, block_k)``).
    Internally float16/bfloat16 inputs are computed in float32. ``attn_bias`` (float,
    broadcastable to ``(..., T, S)``, e.g. ALiBi) is added to each tile's scores; it is a
    constant here (no gradient flows into it, so one that requires grad is refused).

    With ``return_lse=True`` it also returns the per-row log-sum-exp of the scaled, masked
    scores, ``lse (..., T)`` in float32 for half inputs (``-inf`` for a fully masked row), so
    that ``softmax(scores) = exp(scores - lse)``; it is not differentiable.

    Equivalent to ``scaled_dot_product_attention(q, k, v, mask, causal, scale,
    attn_bias=attn_bias)[0]``.
    """
    out_dtype = _check_qkv(q, k, v)
    T, S = q.shape[-2], k.shape[-2]
    batch_shape = q.shape[:-2]
    if mask is not None:
        check_mask("mask", mask, (*batch_shape, T, S), device=q.device)
    if attn_bias is not None:
        check_bias("attn_bias", attn_bias, (*batch_shape, T, S), device=q.device)
        require(
            not attn_bias.requires_grad,
            "attn_bias must not require grad in flash_attention (no gradient is computed for it); "
            "use scaled_dot_product_attention for a trained bias",
        )
    check_bool("causal", causal)
    check_bool("return_lse", return_lse)
    check_scale("scale", scale)
    bq, bk = _block_sizes(block_size)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    work = _work_dtype(out_dtype)
    N = math.prod(batch_shape)
    with _exact(q.device.type):
        q3 = q.reshape(N, T, q.shape[-1]).to(work)  # (N, T, D)
        k3 = k.reshape(N, S, k.shape[-1]).to(work)  # (N, S, D)
        v3 = v.reshape(N, S, v.shape[-1]).to(work)  # (N, S, Dv)
        bias = None if attn_bias is None else attn_bias.to(work)
        tiling = _FlashTiling(batch_shape, T, S, mask, causal, bq, bk, q.device, bias)
        out, lse = _FlashAttention.apply(q3, k3, v3, float(scale), tiling)  # (N, T, Dv), (N, T)
    out = out.to(out_dtype).reshape(*batch_shape, T, v.shape[-1])  # (..., T, Dv)
    if return_lse:
        return out, lse.reshape(*batch_shape, T)  # (..., T, Dv), (..., T)
    return out
