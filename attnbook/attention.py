"""Attention layers as ``nn.Module`` s.

* :class:`AdditiveAttention` — Bahdanau et al. (2015): ``e_ts = v_aᵀ tanh(W_a s_t + U_a h_s)``.
* :class:`LuongAttention` — Luong et al. (2015): the ``dot``, ``general`` and ``concat`` scores.
* :class:`AttentionalOutput` — Luong et al. (2015): ``h̃_t = tanh(W_c [c_t; s_t])``.
* :class:`MultiHeadAttention` — Vaswani et al. (2017), with multi-query (Shazeer, 2019) and
  grouped-query attention (Ainslie et al., 2023), a :class:`KVCache` for incremental decoding,
  rotary embeddings and additive biases such as ALiBi.

Conventions (DESIGN.md): batch first; masks are boolean with ``True`` = may attend; a query whose
every key is masked gets a zero context vector and zero weights, never NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import functional as AF
from ._validate import (
    autocast_enabled,
    check_batch_index,
    check_bias,
    check_bool,
    check_floating,
    check_input_dtype,
    check_mask,
    check_ndim,
    check_positive_int,
    check_same_device,
    require,
    shape_of,
)

__all__ = [
    "AdditiveAttention",
    "LuongAttention",
    "AttentionalOutput",
    "KVCache",
    "MultiHeadAttention",
]


# --------------------------------------------------------------------------------------------
# Additive and multiplicative attention for RNN encoder-decoders
# --------------------------------------------------------------------------------------------


def _check_query_keys_values(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    query_dim: int,
    key_dim: int,
) -> None:
    """query ``(B, Dq)`` or ``(B, T, Dq)``, keys ``(B, S, Dk)``, values ``(B, S, Dv)``."""
    check_ndim("query", query, (2, 3))
    check_ndim("keys", keys, 3)
    check_ndim("values", values, 3)
    for name, x in (("query", query), ("keys", keys), ("values", values)):
        check_floating(name, x)
    require(
        query.shape[-1] == query_dim,
        lambda: f"query must have query_dim={query_dim} features in its last dimension, got shape {shape_of(query)}",
    )
    require(
        keys.shape[-1] == key_dim,
        lambda: f"keys must have shape (B, S, key_dim={key_dim}), got shape {shape_of(keys)}",
    )
    require(
        query.shape[0] == keys.shape[0] == values.shape[0],
        lambda: f"query, keys and values must have the same batch size B, got query {shape_of(query)}, "
        f"keys {shape_of(keys)}, values {shape_of(values)}",
    )
    require(
        keys.shape[1] == values.shape[1],
        lambda: f"keys and values must have the same number of positions S, got keys {shape_of(keys)} "
        f"and values {shape_of(values)}",
    )
    require(
        query.device == keys.device == values.device,
        lambda: f"query, keys and values must be on one device, got {query.device}, {keys.device}, "
        f"{values.device}",
    )
    require(
        query.dtype == keys.dtype == values.dtype or autocast_enabled(query.device.type),
        lambda: f"query, keys and values must share a dtype (outside torch.autocast), got {query.dtype}, "
        f"{keys.dtype}, {values.dtype}",
    )


def _rnn_mask(
    mask: torch.Tensor | None, B: int, T: int, S: int, single: bool, device: torch.device
) -> torch.Tensor | None:
    """The mask for ``(B, T, S)`` scores. ``single`` (query ``(B, Dq)``, T = 1) accepts ``(B, S)``
    only; otherwise a 2-D mask is a key-padding mask ``(B, S)`` and anything else must broadcast
    to ``(B, T, S)``."""
    if mask is None:
        return None
    require(isinstance(mask, torch.Tensor), lambda: f"mask must be a torch.Tensor, got {type(mask).__name__}")
    require(
        mask.dtype == torch.bool,
        lambda: f"mask must be a boolean tensor (True = may attend), got dtype {mask.dtype} with shape {shape_of(mask)}",
    )
    check_same_device("mask", mask, device, other="query")
    if single or mask.dim() == 2:
        require(
            tuple(mask.shape) == (B, S),
            lambda: f"mask must be a key-padding mask of shape (B, S) = {(B, S)}"
            f"{'' if single else ' or broadcast to (B, T, S) = ' + str((B, T, S))}, got shape {shape_of(mask)}",
        )
        return mask.unsqueeze(1)  # (B, 1, S)
    require(mask.dim() == 3, lambda: f"mask must have 2 or 3 dimensions, got shape {shape_of(mask)}")
    check_mask("mask", mask, (B, T, S))
    return mask


def _prepare(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    projected_keys: torch.Tensor | None,
    query_dim: int,
    key_dim: int,
    P: int,
) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Shared prologue of the RNN-style attentions: validate, lift a ``(B, Dq)`` query to
    ``(B, 1, Dq)``, check ``projected_keys`` is ``(B, S, P)`` and build the ``(B, 1 or T, S)`` mask."""
    _check_query_keys_values(query, keys, values, query_dim, key_dim)
    single = query.dim() == 2
    s = query.unsqueeze(1) if single else query  # (B, T, Dq)
    B, T, S = s.shape[0], s.shape[1], keys.shape[1]
    if projected_keys is not None:
        require(
            isinstance(projected_keys, torch.Tensor) and tuple(projected_keys.shape) == (B, S, P),
            lambda: f"projected_keys must have shape (B, S, {P}) = {(B, S, P)} (from project_keys(keys)), "
            f"got shape {shape_of(projected_keys)}",
        )
    return s, _rnn_mask(mask, B, T, S, single, query.device), single


def _attend(
    scores: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None, single: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``a = softmax(e)`` over the keys, ``c = Σ_s a_s v_s``; scores ``(B, T, S)``."""
    weights = AF.masked_softmax(scores, mask)  # (B, T, S)
    context = weights @ values  # (B, T, Dv)
    if single:
        return context.squeeze(1), weights.squeeze(1)  # (B, Dv), (B, S)
    return context, weights


class AdditiveAttention(nn.Module):
    """Additive ("Bahdanau") attention (Bahdanau et al., 2015).

    ``e_ts = v_aᵀ tanh(W_a s_t + U_a h_s)``, ``a_ts = softmax_s(e_ts)``, ``c_t = Σ_s a_ts h_s``
    where ``s_t`` is the query (the decoder state) and ``h_s`` the keys (encoder states).
    ``W_a`` (query_dim -> hidden_dim), ``U_a`` (key_dim -> hidden_dim) and ``v_a``
    (hidden_dim -> 1) are ``nn.Linear`` without bias.

    ``forward(query, keys, values, mask=None, *, projected_keys=None) -> (context, weights)``:
    query ``(B, Dq)`` -> context ``(B, Dv)``, weights ``(B, S)``; or query ``(B, T, Dq)`` ->
    ``(B, T, Dv)``, ``(B, T, S)``. keys ``(B, S, Dk)``, values ``(B, S, Dv)``. ``mask`` is
    boolean (True = may attend): a key-padding mask ``(B, S)`` or, for a 3-D query, a mask
    broadcastable to ``(B, T, S)``. ``U_a h_s`` does not depend on the decoder step: compute it
    once with :meth:`project_keys` and pass it as ``projected_keys`` at every step.

    Equivalent to (query ``s (B, T, Dq)``, no mask)::

        e = self.v_a(torch.tanh(self.W_a(s)[:, :, None] + self.U_a(keys)[:, None])).squeeze(-1)
        weights = torch.softmax(e, dim=-1); context = weights @ values
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int) -> None:
        super().__init__()
        for name, value in (("query_dim", query_dim), ("key_dim", key_dim), ("hidden_dim", hidden_dim)):
            check_positive_int(name, value)
        self.query_dim, self.key_dim, self.hidden_dim = query_dim, key_dim, hidden_dim
        self.W_a = nn.Linear(query_dim, hidden_dim, bias=False)
        self.U_a = nn.Linear(key_dim, hidden_dim, bias=False)
        self.v_a = nn.Linear(hidden_dim, 1, bias=False)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """``U_a h_s`` for every key: keys ``(B, S, Dk)`` -> ``(B, S, hidden_dim)``."""
        check_ndim("keys", keys, 3)
        require(
            keys.shape[-1] == self.key_dim,
            lambda: f"keys must have shape (B, S, key_dim={self.key_dim}), got shape {shape_of(keys)}",
        )
        return self.U_a(keys)  # (B, S, Dh)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        projected_keys: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s, m, single = _prepare(
            query, keys, values, mask, projected_keys, self.query_dim, self.key_dim, self.hidden_dim
        )  # s (B, T, Dq), m (B, 1 or T, S)
        Uh = self.U_a(keys) if projected_keys is None else projected_keys  # (B, S, Dh)
        Ws = self.W_a(s)  # (B, T, Dh)
        e = self.v_a(torch.tanh(Ws.unsqueeze(2) + Uh.unsqueeze(1))).squeeze(-1)  # (B, T, S)
        return _attend(e, values, m, single)

    def extra_repr(self) -> str:
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, hidden_dim={self.hidden_dim}"


class LuongAttention(nn.Module):
    """Multiplicative ("Luong") attention (Luong et al., 2015) with its three scores:

    * ``"dot"``:     ``score(s_t, h_s) = s_tᵀ h_s`` (needs ``query_dim == key_dim``; no parameters);
    * ``"general"``: ``score(s_t, h_s) = s_tᵀ W_a h_s``, ``W_a = nn.Linear(key_dim, query_dim,
      bias=False)``, so ``W_a.weight`` is the ``(Dq, Dk)`` matrix of the equation;
    * ``"concat"``:  ``score(s_t, h_s) = v_aᵀ tanh(W_a [s_t; h_s])``, ``W_a = nn.Linear(query_dim +
      key_dim, hidden_dim, bias=False)`` (the query's columns first), ``v_a = nn.Linear(hidden_dim,
      1, bias=False)``; ``hidden_dim`` defaults to ``query_dim``.

    Then ``a_ts = softmax_s(score)`` and ``c_t = Σ_s a_ts h_s``. ``forward`` has the signature and
    shapes of :class:`AdditiveAttention` (query ``(B, Dq)`` or ``(B, T, Dq)``); the key-side
    product (``h_s`` itself, ``W_a h_s``, or the key columns of ``W_a`` times ``h_s``) can be
    computed once with :meth:`project_keys` and passed as ``projected_keys``.

    Equivalent to (``"general"``, query ``s (B, T, Dq)``, no mask)::

        weights = torch.softmax(s @ self.W_a(keys).transpose(1, 2), dim=-1)
        context = weights @ values
    """

    SCORES = ("dot", "general", "concat")

    def __init__(self, query_dim: int, key_dim: int, score: str = "dot", hidden_dim: int | None = None) -> None:
        super().__init__()
        check_positive_int("query_dim", query_dim)
        check_positive_int("key_dim", key_dim)
        require(score in self.SCORES, lambda: f"score must be one of {self.SCORES}, got {score!r}")
        if score == "dot":
            require(
                query_dim == key_dim,
                lambda: f"score='dot' needs query_dim == key_dim, got query_dim={query_dim}, key_dim={key_dim}",
            )
        if score == "concat":
            hidden_dim = query_dim if hidden_dim is None else hidden_dim
            check_positive_int("hidden_dim", hidden_dim)
        else:
            require(hidden_dim is None, lambda: f"hidden_dim is only used by score='concat', got hidden_dim={hidden_dim!r}")
        self.query_dim, self.key_dim, self.score, self.hidden_dim = query_dim, key_dim, score, hidden_dim
        if score == "general":
            self.W_a = nn.Linear(key_dim, query_dim, bias=False)
        elif score == "concat":
            self.W_a = nn.Linear(query_dim + key_dim, hidden_dim, bias=False)
            self.v_a = nn.Linear(hidden_dim, 1, bias=False)

    def _projected_dim(self) -> int:
        return self.hidden_dim if self.score == "concat" else self.query_dim

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """The key-side factor of the score: ``h_s`` (dot), ``W_a h_s`` (general, ``(B, S, Dq)``)
        or ``W_a[:, Dq:] h_s`` (concat, ``(B, S, hidden_dim)``). keys ``(B, S, Dk)``."""
        check_ndim("keys", keys, 3)
        require(
            keys.shape[-1] == self.key_dim,
            lambda: f"keys must have shape (B, S, key_dim={self.key_dim}), got shape {shape_of(keys)}",
        )
        if self.score == "dot":
            return keys  # (B, S, D)
        if self.score == "general":
            return self.W_a(keys)  # (B, S, Dq)
        W_h = self.W_a.weight[:, self.query_dim:]  # (Dh, Dk)
        return keys @ W_h.transpose(0, 1)  # (B, S, Dh)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        projected_keys: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s, m, single = _prepare(
            query, keys, values, mask, projected_keys, self.query_dim, self.key_dim,
            self._projected_dim(),
        )  # s (B, T, Dq), m (B, 1 or T, S)
        h = self.project_keys(keys) if projected_keys is None else projected_keys  # (B, S, P)
        if self.score in ("dot", "general"):
            e = AF.dot_score(s, h)  # (B, T, S): s_tᵀ h_s  or  s_tᵀ (W_a h_s)
        else:
            W_s = self.W_a.weight[:, : self.query_dim]  # (Dh, Dq)
            Ws = s @ W_s.transpose(0, 1)  # (B, T, Dh)
            e = self.v_a(torch.tanh(Ws.unsqueeze(2) + h.unsqueeze(1))).squeeze(-1)  # (B, T, S)
        return _attend(e, values, m, single)

    def extra_repr(self) -> str:
        extra = f", hidden_dim={self.hidden_dim}" if self.score == "concat" else ""
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, score={self.score!r}{extra}"


class AttentionalOutput(nn.Module):
    """Luong et al.'s (2015) attentional hidden state ``h̃_t = tanh(W_c [c_t; s_t])``.

    ``W_c = nn.Linear(context_dim + query_dim, out_dim, bias=False)`` (the context's columns
    first). ``forward(context, query)``: context ``(B, Dc)`` and query ``(B, Dq)`` -> ``(B, out_dim)``,
    or ``(B, T, Dc)`` and ``(B, T, Dq)`` -> ``(B, T, out_dim)``.

    Equivalent to ``torch.tanh(self.W_c(torch.cat((context, query), dim=-1)))``.
    """

    def __init__(self, context_dim: int, query_dim: int, out_dim: int) -> None:
        super().__init__()
        for name, value in (("context_dim", context_dim), ("query_dim", query_dim), ("out_dim", out_dim)):
            check_positive_int(name, value)
        self.context_dim, self.query_dim, self.out_dim = context_dim, query_dim, out_dim
        self.W_c = nn.Linear(context_dim + query_dim, out_dim, bias=False)

    def forward(self, context: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        check_ndim("context", context, (2, 3))
        check_ndim("query", query, (2, 3))
        require(
            context.shape[:-1] == query.shape[:-1],
            lambda: f"context and query must have the same leading dimensions (B,) or (B, T), got context "
            f"{shape_of(context)} and query {shape_of(query)}",
        )
        require(
            context.shape[-1] == self.context_dim,
            lambda: f"context must have context_dim={self.context_dim} features, got shape {shape_of(context)}",
        )
        require(
            query.shape[-1] == self.query_dim,
            lambda: f"query must have query_dim={self.query_dim} features, got shape {shape_of(query)}",
        )
        return torch.tanh(self.W_c(torch.cat((context, query), dim=-1)))  # (B, [T,] out_dim)

    def extra_repr(self) -> str:
        return f"context_dim={self.context_dim}, query_dim={self.query_dim}, out_dim={self.out_dim}"


# --------------------------------------------------------------------------------------------
# Multi-head attention and its key/value cache
# --------------------------------------------------------------------------------------------


class KVCache:
    """The keys and values that a :class:`MultiHeadAttention` has seen so far, for incremental
    decoding. Create it empty (``KVCache()``) and pass it as ``cache=`` at every step: the layer
    appends the new (already projected and, with RoPE, already rotated) keys and values and
    attends over everything stored.

    Attributes ``k`` ``(B, H_kv, S_so_far, D)`` and ``v`` ``(B, H_kv, S_so_far, Dv)`` (``None``
    while empty); :attr:`length` is ``S_so_far``. :meth:`update` appends and returns the whole
    keys and values; :meth:`reorder` picks batch rows (beam search); :meth:`reset` empties it.
    Appending concatenates, so a step costs ``O(S_so_far)`` copies, which is negligible next to
    the attention itself at the sizes of this book. The cache keeps the dtype of the keys it
    was first given: under ``torch.autocast`` that is the autocast dtype, at every step.
    """

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None  # (B, H_kv, S_so_far, D)
        self.v: torch.Tensor | None = None  # (B, H_kv, S_so_far, Dv)

    @property
    def length(self) -> int:
        """How many positions are stored (0 when empty)."""
        return 0 if self.k is None else self.k.shape[-2]

    def check(self, name: str, batch: int, heads: int, dim: int, value_dim: int,
              device: torch.device | None = None) -> None:
        """Raise ``ValueError`` unless new entries of this size (and device) can be appended."""
        if self.k is None:
            return
        B, H, _, D = self.k.shape
        Dv = self.v.shape[-1]
        require(
            (batch, heads, dim, value_dim) == (B, H, D, Dv),
            lambda: f"{name}: new keys/values with (B, H_kv, D, Dv) = {(batch, heads, dim, value_dim)} do not "
            f"match the cache's k {shape_of(self.k)} and v {shape_of(self.v)}",
        )
        require(
            device is None or torch.device(device) == self.k.device,
            lambda: f"{name}: new keys/values are on {device}, the cache holds keys on {self.k.device}",
        )

    def update(self, k_new: torch.Tensor, v_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k_new ``(B, H_kv, S_new, D)`` and v_new ``(B, H_kv, S_new, Dv)``; return all keys
        ``(B, H_kv, S_so_far + S_new, D)`` and values ``(B, H_kv, S_so_far + S_new, Dv)``.

        Equivalent to ``self.k = torch.cat((self.k, k_new), dim=2)`` (and the same for ``v``)."""
        check_ndim("k_new", k_new, 4)
        check_ndim("v_new", v_new, 4)
        require(
            k_new.shape[:3] == v_new.shape[:3] and k_new.dtype == v_new.dtype,
            lambda: f"k_new and v_new must share (B, H_kv, S_new) and dtype, got k_new {shape_of(k_new)} "
            f"{k_new.dtype} and v_new {shape_of(v_new)} {v_new.dtype}",
        )
        B, H, _, D = k_new.shape
        self.check("k_new", B, H, D, v_new.shape[-1], k_new.device)
        if self.k is None:
            self.k, self.v = k_new, v_new
            return self.k, self.v
        require(
            k_new.dtype == self.k.dtype,
            lambda: f"k_new: new keys/values have dtype {k_new.dtype}, the cache holds {self.k.dtype} "
            f"(was the cache filled under torch.autocast and is this step outside it, or the "
            f"other way round?)",
        )
        self.k = torch.cat((self.k, k_new), dim=2)  # (B, H_kv, S_so_far, D)
        self.v = torch.cat((self.v, v_new), dim=2)  # (B, H_kv, S_so_far, Dv)
        return self.k, self.v

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (an integer tensor ``(B',)``), e.g. the surviving beams.

        Equivalent to ``self.k = self.k.index_select(0, index)`` (and the same for ``v``). Indices
        outside ``[0, B)`` are a ``ValueError`` (a data check: one host read, skipped when
        :func:`attnbook.utils.set_data_checks` is off)."""
        check_ndim("index", index, 1)
        require(
            not index.is_floating_point() and not index.is_complex() and index.dtype != torch.bool,
            lambda: f"index must be an integer tensor, got dtype {index.dtype}",
        )
        if self.k is not None:
            index = index.to(self.k.device)
            check_batch_index("index", index, self.k.shape[0])
            self.k = self.k.index_select(0, index)
            self.v = self.v.index_select(0, index)

    def reset(self) -> None:
        """Forget everything (start a new sequence)."""
        self.k = self.v = None

    def __repr__(self) -> str:
        return f"KVCache(length={self.length}, k={shape_of(self.k)}, v={shape_of(self.v)})"


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


# torch.nn.functional.scaled_dot_product_attention takes enable_gqa from PyTorch 2.5 on
_SDPA_HAS_GQA = _torch_version() >= (2, 5)

Rope = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _plan(T: int, S: int, has_mask: bool, causal: bool, has_bias: bool, need_weights: bool) -> str:
    """Which computation :class:`MultiHeadAttention` runs, and why: ``"<path>: <reason>"``."""
    if need_weights:
        return ("explicit: need_weights=True, so attnbook.functional.scaled_dot_product_attention "
                "computes the weights and returns them")
    if causal and T == S and T > 1 and not has_mask and not has_bias:
        return ("fused: is_causal=True (square causal attention without mask or bias: PyTorch's "
                "causal kernels)")
    causal_needs_mask = causal and T > 1
    if not (causal_needs_mask or has_mask or has_bias):
        if causal:
            return ("fused: no mask (a single causal query is the last position and sees every "
                    "cached key)")
        return "fused: no mask (every query sees every key)"
    parts = []
    if has_mask:
        parts.append("the boolean mask")
    if causal_needs_mask:
        parts.append(f"the bottom-right causal mask (T={T}, S={S})")
    if has_bias:
        parts.append("attn_bias as a float mask")
    return (f"fused: attn_mask from {' and '.join(parts)}; rows with no visible key are "
            f"computed over every key and set to zero")


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al., 2017), with grouped-query attention.

    ``head_h = softmax(Q_h K_gᵀ / sqrt(D) + bias) V_g`` with ``Q_h = X_q W^Q_h``, ``K_g = X_k W^K_g``,
    ``V_g = X_v W^V_g`` and ``MultiHead = Concat(head_1..head_H) W^O``. ``D = E / H``. With
    ``num_kv_heads = H_kv < H`` the ``H`` query heads share ``H_kv`` key/value heads, query head
    ``h`` using key/value head ``g = h // (H / H_kv)``: grouped-query attention (Ainslie et al.,
    2023); ``H_kv = 1`` is multi-query attention (Shazeer, 2019). That shrinks ``k_proj``,
    ``v_proj`` and the :class:`KVCache` by ``H / H_kv``.

    Submodules ``q_proj`` (E -> E), ``k_proj`` (kdim -> H_kv D), ``v_proj`` (vdim -> H_kv D) and
    ``out_proj`` (E -> E) are ``nn.Linear`` (with bias when ``bias``); ``kdim``/``vdim`` default
    to ``E``. ``dropout`` drops attention weights, in training only.

    ``forward(query, key=None, value=None, *, mask=None, causal=False, need_weights=False,
    cache=None, attn_bias=None, rope=None) -> (out, weights)``:

    * query ``(B, T, E)``, key ``(B, S, kdim)``, value ``(B, S, vdim)``; ``key`` defaults to
      ``query`` (self-attention) and ``value`` to ``key``. Returns out ``(B, T, E)`` and, with
      ``need_weights=True``, the per-head weights ``(B, H, T, S)`` (else ``None``).
    * ``mask``: boolean, True = may attend, either exactly ``(T, S)`` or 4-D broadcastable to
      ``(B, H, T, S)``, on the device of ``query``. A key-padding mask ``(B, S)`` must go through
      :func:`attnbook.functional.key_padding_to_attn_mask` (-> ``(B, 1, 1, S)``); any other 2-D
      or a 1-D/3-D mask is a ``ValueError``, so it is never broadcast the wrong way.
    * ``causal``: query ``i`` may attend to key ``j`` iff ``j <= i + (S - T)`` (bottom-right
      aligned, :func:`attnbook.functional.causal_mask`, PyTorch's ``causal_lower_right``): with a
      cache holding ``P`` positions the ``T`` new queries see keys ``j <= P + i``.
    * ``cache``: a :class:`KVCache`; the new keys/values are appended to it first, so ``S`` is
      the cache length after the update, and ``mask``/``attn_bias`` refer to those ``S`` keys.
    * ``attn_bias``: float, broadcastable to ``(B, H, T, S)`` (e.g. ``alibi_bias(H, T, S)``),
      added to the scores; any float dtype (it is cast to the queries' dtype), on the device of
      ``query``.
    * ``rope``: an :class:`attnbook.RotaryEmbedding` of the head dim (or any ``rope(x, positions)``)
      applied to queries and keys after the heads are split, at positions ``P .. P + T - 1``
      (``P`` = cache length before the call); cached keys are stored rotated.

    A query with no key to attend to (all masked, or a bias of ``-inf`` everywhere) gets a zero
    attention output (so ``out`` is ``out_proj``'s bias there) and zero weights, on both paths.
    ``need_weights=False`` uses ``torch.nn.functional.scaled_dot_product_attention`` (fused
    kernels): ``is_causal=True`` when only a square causal mask is asked for, no mask at all for
    a single causal query (a cached decoding step sees every key); ``need_weights=True`` uses
    :func:`attnbook.functional.scaled_dot_product_attention` and returns the weights (half
    precision is computed in float32 there). :meth:`explain_path` says which path a call takes
    and why; after each call (outside ``torch.compile``) :attr:`last_path` says it too.

    Under ``torch.autocast`` the inputs may be float16/bfloat16 next to float32 parameters (or
    the other way round); outside it they must have the parameters' dtype.

    Equivalent to (self-attention, ``H_kv = H``, no cache, bias or rope; ``E = H D``)::

        q, k, v = (proj(x).view(B, T, H, D).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, D)
        out = self.out_proj(o.transpose(1, 2).reshape(B, T, E))
    """

    last_path: str | None = None

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        kdim: int | None = None,
        vdim: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("embed_dim", embed_dim)
        check_positive_int("num_heads", num_heads)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        check_positive_int("num_kv_heads", num_kv_heads)
        kdim = embed_dim if kdim is None else kdim
        vdim = embed_dim if vdim is None else vdim
        check_positive_int("kdim", kdim)
        check_positive_int("vdim", vdim)
        check_bool("bias", bias)
        require(
            embed_dim % num_heads == 0,
            lambda: f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}",
        )
        require(
            num_heads % num_kv_heads == 0,
            lambda: f"num_heads={num_heads} must be divisible by num_kv_heads={num_kv_heads}",
        )
        require(
            isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0.0 <= dropout < 1.0,
            lambda: f"dropout must be in [0, 1), got {dropout!r}",
        )
        self.embed_dim, self.num_heads, self.num_kv_heads = embed_dim, num_heads, num_kv_heads
        self.head_dim = embed_dim // num_heads
        self.kdim, self.vdim, self.dropout = kdim, vdim, float(dropout)
        kv_dim = num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(kdim, kv_dim, bias=bias)
        self.v_proj = nn.Linear(vdim, kv_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Glorot-uniform input projections and zero biases, like ``nn.MultiheadAttention``."""
        for lin in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(lin.weight)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    @property
    def groups(self) -> int:
        """Query heads per key/value head, ``H / H_kv``."""
        return self.num_heads // self.num_kv_heads

    # -- checks --------------------------------------------------------------------------------

    def _check_inputs(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
        dtype = self.q_proj.weight.dtype
        for name, x, dim in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            check_ndim(name, x, 3)
            require(
                x.shape[-1] == dim,
                lambda name=name, x=x, dim=dim: f"{name} must have shape "
                f"(B, {'T' if name == 'query' else 'S'}, {dim}), got shape {shape_of(x)}",
            )
            check_input_dtype(name, x, dtype)
        require(
            query.shape[0] == key.shape[0] == value.shape[0],
            lambda: f"query, key and value must have the same batch size, got query {shape_of(query)}, "
            f"key {shape_of(key)}, value {shape_of(value)}",
        )
        require(
            key.shape[1] == value.shape[1],
            lambda: f"key and value must have the same length S, got key {shape_of(key)} and value {shape_of(value)}",
        )
        require(
            query.device == key.device == value.device,
            lambda: f"query, key and value must be on one device, got {query.device}, {key.device}, {value.device}",
        )

    def _check_mask(self, mask: torch.Tensor, target: tuple[int, int, int, int], device: torch.device) -> None:
        require(isinstance(mask, torch.Tensor), lambda: f"mask must be a torch.Tensor, got {type(mask).__name__}")
        require(
            mask.dtype == torch.bool,
            lambda: f"mask must be a boolean tensor (True = may attend), got dtype {mask.dtype} with shape {shape_of(mask)}",
        )
        T, S = target[2:]
        if mask.dim() == 2:
            require(
                tuple(mask.shape) == (T, S),
                lambda: f"a 2-D mask must have shape (T, S) = {(T, S)}, got shape {shape_of(mask)}; for a "
                f"(B, S) key-padding mask use attnbook.functional.key_padding_to_attn_mask(mask)",
            )
        else:
            require(
                mask.dim() == 4,
                lambda: f"mask must be (T, S) or 4-D broadcastable to (B, H, T, S) = {target}, got shape {shape_of(mask)}",
            )
        check_mask("mask", mask, target, device=device)

    def _check_call(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None,
        causal: bool,
        need_weights: bool,
        cache: KVCache | None,
        attn_bias: torch.Tensor | None,
        rope: Rope | None,
    ) -> tuple[int, int]:
        """Every free check of :meth:`forward`; returns ``(P, S)``: the cache length before the
        call and the number of keys attended to."""
        self._check_inputs(query, key, value)
        check_bool("causal", causal)
        check_bool("need_weights", need_weights)
        B, T, _ = query.shape
        if cache is not None:
            require(isinstance(cache, KVCache), lambda: f"cache must be a KVCache, got {type(cache).__name__}")
            cache.check("cache", B, self.num_kv_heads, self.head_dim, self.head_dim, query.device)
        P = 0 if cache is None else cache.length
        S = P + key.shape[1]
        target = (B, self.num_heads, T, S)
        if mask is not None:
            self._check_mask(mask, target, query.device)
        if attn_bias is not None:
            check_bias("attn_bias", attn_bias, target, device=query.device)
        require(rope is None or callable(rope), lambda: f"rope must be callable rope(x, positions), got {type(rope).__name__}")
        return P, S

    def explain_path(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        cache: KVCache | None = None,
        attn_bias: torch.Tensor | None = None,
        rope: Rope | None = None,
    ) -> str:
        """Which computation ``forward`` with these arguments runs, and why, without running it:
        ``"explicit: need_weights=True, ..."`` or ``"fused: is_causal=True (...)"``,
        ``"fused: no mask (...)"``, ``"fused: attn_mask from ..."``."""
        key = query if key is None else key
        value = key if value is None else value
        _, S = self._check_call(query, key, value, mask, causal, need_weights, cache, attn_bias, rope)
        return _plan(query.shape[1], S, mask is not None, causal, attn_bias is not None, need_weights)

    # -- the layer -----------------------------------------------------------------------------

    def _split_heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, heads, self.head_dim).transpose(1, 2)  # (B, heads, L, D)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        cache: KVCache | None = None,
        attn_bias: torch.Tensor | None = None,
        rope: Rope | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = query if key is None else key
        value = key if value is None else value
        P, S = self._check_call(query, key, value, mask, causal, need_weights, cache, attn_bias, rope)
        B, T, _ = query.shape
        S_new = key.shape[1]
        H, H_kv = self.num_heads, self.num_kv_heads
        if not torch.compiler.is_compiling():  # a Python attribute: not part of a compiled graph
            self.last_path = _plan(T, S, mask is not None, causal, attn_bias is not None, need_weights)

        q = self._split_heads(self.q_proj(query), H)  # (B, H, T, D)
        k = self._split_heads(self.k_proj(key), H_kv)  # (B, H_kv, S_new, D)
        v = self._split_heads(self.v_proj(value), H_kv)  # (B, H_kv, S_new, D)
        if rope is not None:
            q = rope(q, torch.arange(P, P + T, device=q.device))  # (B, H, T, D)
            k = rope(k, torch.arange(P, P + S_new, device=k.device))  # (B, H_kv, S_new, D)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, H_kv, S, D) each
        p = self.dropout if self.training else 0.0

        if need_weights:
            k_h = k.repeat_interleave(self.groups, dim=1)  # (B, H, S, D)
            v_h = v.repeat_interleave(self.groups, dim=1)  # (B, H, S, D)
            o, weights = AF.scaled_dot_product_attention(
                q, k_h, v_h, mask=mask, causal=causal, dropout_p=p, attn_bias=attn_bias
            )  # (B, H, T, D), (B, H, T, S)
        else:
            o, weights = self._fused(q, k, v, mask, causal, attn_bias, p), None  # (B, H, T, D)
        out = self.out_proj(o.transpose(1, 2).reshape(B, T, self.embed_dim))  # (B, T, E)
        return out, weights

    def _fused(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        causal: bool,
        attn_bias: torch.Tensor | None,
        dropout_p: float,
    ) -> torch.Tensor:
        """PyTorch's ``scaled_dot_product_attention``: q ``(B, H, T, D)``, k/v ``(B, H_kv, S, D)``
        -> ``(B, H, T, D)``, with the mask, the bottom-right causal mask and the bias folded into
        one ``attn_mask`` (none at all when nothing is hidden), and rows with no visible key set
        to zero. See :func:`_plan` for the cases."""
        T, S = q.shape[-2], k.shape[-2]
        gqa = {}
        if self.groups > 1:
            if _SDPA_HAS_GQA:
                gqa = {"enable_gqa": True}
            else:
                k = k.repeat_interleave(self.groups, dim=1)  # (B, H, S, D)
                v = v.repeat_interleave(self.groups, dim=1)  # (B, H, S, D)
        if causal and T == S and mask is None and attn_bias is None:
            # square causal: top-left == bottom-right, so the fused causal kernels apply
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, **gqa)
        keep = AF._combined_mask(mask, causal, T, S, q.device)  # None for a single causal query
        if keep is None and attn_bias is None:  # nothing hidden: the kernels' fastest case
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, **gqa)
        empty = None
        if keep is not None:
            empty = ~keep.any(dim=-1, keepdim=True)  # (..., T, 1) rows with no key at all
            keep = keep | empty  # give them every key; their output is zeroed below
        if attn_bias is None:
            attn_mask = keep
        else:
            attn_mask = attn_bias.to(q.dtype)
            if keep is not None:
                attn_mask = attn_mask.masked_fill(~keep, float("-inf"))  # additive float mask
            dead = attn_mask.amax(dim=-1, keepdim=True) == float("-inf")  # a bias of -inf everywhere
            attn_mask = attn_mask.masked_fill(dead, 0.0)
            empty = dead if empty is None else empty | dead
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, **gqa)
        if empty is not None:
            o = o.masked_fill(empty, 0.0)  # (B, H, T, D)
        return o

    def extra_repr(self) -> str:
        kv = f", num_kv_heads={self.num_kv_heads}" if self.num_kv_heads != self.num_heads else ""
        dims = "" if self.kdim == self.vdim == self.embed_dim else f", kdim={self.kdim}, vdim={self.vdim}"
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}{kv}{dims}, dropout={self.dropout}"
