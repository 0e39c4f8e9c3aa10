"""The Transformer (Vaswani et al., 2017): encoder and decoder layers, the encoder-decoder
``Transformer`` and the decoder-only language model ``DecoderOnly``.

A layer is two or three *sublayers*, each wrapped in a residual connection and a LayerNorm:

* self-attention          ``SA(x)   = MultiHead(x, x, x)``
* cross-attention         ``CA(x)   = MultiHead(x, memory, memory)``  (decoder only)
* position-wise FFN       ``FFN(x)  = W_2 relu(W_1 x + b_1) + b_2``   (``d_model -> d_ff -> d_model``)

and the residual wrapping comes in two orders:

* post-norm (the 2017 paper):  ``x <- LayerNorm(x + Dropout(F(x)))``
* pre-norm  (``norm_first``):  ``x <- x + Dropout(F(LayerNorm(x)))``, and one final LayerNorm
  after the last layer. Xiong et al. (2020) show that at initialisation the post-norm gradients
  of the layers next to the output are large whatever the depth, while pre-norm's shrink as
  layers are added; so pre-norm trains without a learning-rate warm-up, and post-norm needs
  one and is fragile in deep stacks.

Positions (``positional=``): ``"sinusoidal"`` and ``"learned"`` vectors are added to the token
embeddings; ``"rope"`` rotates queries and keys in every self-attention (Su et al., 2021);
``"alibi"`` adds a per-head linear distance penalty to the self-attention scores (Press et al.,
2022); ``"none"`` adds nothing (then self-attention cannot tell the order of its inputs, except
through the causal mask of a decoder). Cross-attention never gets RoPE or ALiBi: a target
position and a source position live on different axes.

Token embeddings. ``E[v] ~ N(0, 1/d_model)`` and the embedding layer returns
``sqrt(d_model) * E[v]`` (the paper's scaling, section 3.4), so every coordinate of a token vector
has unit variance and its norm is about ``sqrt(d_model)``. A sinusoidal position vector has norm
exactly ``sqrt(d_model / 2)``; learned position vectors start as ``N(0, 1/2)`` to match. The
token and position parts of the sum thus start at the same scale (a norm ratio of about
``sqrt(2)``). Drawing ``E[v] ~ N(0, 1)`` *and* multiplying by ``sqrt(d_model)`` instead (a common
slip) makes the token vectors ``sqrt(2 d_model)`` times longer than the position vectors —
about 11x at ``d_model = 64`` — and the position signal is drowned: the model learns order
slowly or not at all.

Incremental decoding: ``new_caches()`` returns one empty :class:`attnbook.attention.KVCache` per
decoder layer; feeding the tokens one at a time (or a chunk at a time) with ``caches=`` gives the
same logits as one causal forward pass over the whole sequence. Positions of the new tokens
start at the cache length ``P``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_ndim, require, shape_of
from .attention import KVCache, MultiHeadAttention
from .functional import key_padding_to_attn_mask
from .positional import LearnedPositionalEmbedding, RotaryEmbedding, alibi_bias, sinusoidal_encoding

__all__ = [
    "POSITIONAL_SCHEMES",
    "CacheList",
    "TokenEmbedding",
    "PositionalScheme",
    "ACTIVATIONS",
    "FeedForward",
    "EncoderLayer",
    "DecoderLayer",
    "Encoder",
    "Decoder",
    "Transformer",
    "DecoderOnly",
]

Positional = Literal["sinusoidal", "learned", "rope", "alibi", "none"]
POSITIONAL_SCHEMES: tuple[str, ...] = ("sinusoidal", "learned", "rope", "alibi", "none")
Weights = list[torch.Tensor]


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------


def _check_int(name: str, value: int, minimum: int = 1) -> None:
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        f"{name} must be an int >= {minimum}, got {value!r}",
    )


def _check_dims(d_model: int, num_heads: int, d_ff: int | None, dropout: float) -> int:
    """Validate the common layer arguments; returns ``d_ff`` (default ``4 * d_model``)."""
    _check_int("d_model", d_model)
    _check_int("num_heads", num_heads)
    require(
        d_model % num_heads == 0,
        f"d_model must be divisible by num_heads, got d_model={d_model}, num_heads={num_heads}",
    )
    d_ff = 4 * d_model if d_ff is None else d_ff
    _check_int("d_ff", d_ff)
    require(
        isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0,
        f"dropout must be a float in [0, 1), got {dropout!r}",
    )
    return d_ff


def _check_tokens(name: str, tokens: torch.Tensor, vocab_size: int) -> None:
    check_ndim(name, tokens, 2)
    require(
        tokens.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8),
        f"{name} must be an integer (long) tensor of token ids, got dtype {tokens.dtype} "
        f"with shape {shape_of(tokens)}",
    )
    if tokens.numel():
        lo, hi = int(tokens.min()), int(tokens.max())
        require(
            0 <= lo and hi < vocab_size,
            f"{name} must hold token ids in [0, {vocab_size}), got values in [{lo}, {hi}] "
            f"(shape {shape_of(tokens)})",
        )


def _check_padding(name: str, mask: torch.Tensor | None, B: int, S: int, what: str) -> None:
    if mask is None:
        return
    check_ndim(name, mask, 2)
    require(
        mask.dtype == torch.bool,
        f"{name} must be boolean (True = a real token), got dtype {mask.dtype} "
        f"with shape {shape_of(mask)}",
    )
    require(
        tuple(mask.shape) == (B, S),
        f"{name} must have shape (B, S) = {(B, S)} ({what}), got shape {shape_of(mask)}",
    )


def _check_caches(caches: list[KVCache] | None, num_layers: int) -> int:
    """The common length ``P`` of the caches (0 without caches)."""
    if caches is None:
        return 0
    require(
        isinstance(caches, (list, tuple)) and len(caches) == num_layers
        and all(isinstance(c, KVCache) for c in caches),
        f"caches must be a list of {num_layers} KVCache objects (one per layer, from "
        f"new_caches()), got {type(caches).__name__} of length "
        f"{len(caches) if hasattr(caches, '__len__') else '?'}",
    )
    lengths = {c.length for c in caches}
    require(len(lengths) == 1, f"caches must all hold the same number of steps, got lengths {sorted(lengths)}")
    return lengths.pop()


class CacheList(list):
    """A list of :class:`KVCache` (one per layer) that beam search can reorder:
    ``index_select(index)`` returns a new list whose caches hold batch rows ``index``
    (see :mod:`attnbook.train`: decoder state objects with ``index_select`` are reordered)."""

    def index_select(self, index: torch.Tensor) -> CacheList:
        out = CacheList()
        for cache in self:
            new = KVCache()
            if cache.k is not None:
                new.k = cache.k.index_select(0, index.to(cache.k.device))  # (B', H_kv, P, D)
                new.v = cache.v.index_select(0, index.to(cache.v.device))  # (B', H_kv, P, Dv)
            out.append(new)
        return out


# ---------------------------------------------------------------------------------------------
# embeddings and positions
# ---------------------------------------------------------------------------------------------


class TokenEmbedding(nn.Module):
    """``x_t = sqrt(d_model) * E[y_t]`` with ``E ~ N(0, 1/d_model)``: unit-variance coordinates.

    tokens ``(B, T)`` long -> ``(B, T, d_model)``. See the module docstring for why the scale
    matters next to the position vectors. ``scale=False`` returns ``E[y_t]`` itself (GPT-2's
    convention) and starts ``E ~ N(0, 1)``, so the vectors have the same unit-variance
    coordinates at initialisation.
    """

    def __init__(
        self, vocab_size: int, d_model: int, padding_idx: int | None = None, *, scale: bool = True
    ) -> None:
        super().__init__()
        _check_int("vocab_size", vocab_size)
        _check_int("d_model", d_model)
        self.vocab_size, self.d_model, self.scale = vocab_size, d_model, bool(scale)
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5 if scale else 1.0)
        if padding_idx is not None:
            with torch.no_grad():
                self.embedding.weight[padding_idx].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _check_tokens("tokens", tokens, self.vocab_size)
        x = self.embedding(tokens)  # (B, T, E)
        return x * math.sqrt(self.d_model) if self.scale else x


class PositionalScheme(nn.Module):
    """One of :data:`POSITIONAL_SCHEMES` for a stream of ``d_model``-dim vectors with ``num_heads``.

    * :meth:`add` — ``x + PE[P .. P+T-1]`` for ``"sinusoidal"`` / ``"learned"``, else ``x``;
    * :attr:`rope` — the :class:`RotaryEmbedding` (head dim) to pass to attention, or ``None``;
    * :meth:`bias` — the ALiBi bias ``(H, T, S)`` for ``T`` queries over ``S`` keys, or ``None``.

    ``"learned"`` has ``max_len`` rows and raises ``ValueError`` past them; the other schemes have
    no length limit (the sinusoidal table is recomputed in float64 and grown on demand; it is a
    non-persistent buffer, so it is not part of the ``state_dict``).
    """

    def __init__(self, kind: str, d_model: int, num_heads: int, max_len: int) -> None:
        super().__init__()
        require(
            kind in POSITIONAL_SCHEMES,
            f"positional must be one of {POSITIONAL_SCHEMES}, got {kind!r}",
        )
        _check_int("max_len", max_len)
        self.kind, self.d_model, self.num_heads, self.max_len = kind, d_model, num_heads, max_len
        self.learned: LearnedPositionalEmbedding | None = None
        self.rope: RotaryEmbedding | None = None
        if kind == "sinusoidal":
            require(d_model % 2 == 0, f"d_model must be even for sinusoidal positions, got {d_model}")
            self.register_buffer("table", sinusoidal_encoding(max_len, d_model), persistent=False)
        elif kind == "learned":
            # N(0, 1/2): the same per-coordinate mean square as a sinusoid (sin^2 + cos^2 = 1)
            self.learned = LearnedPositionalEmbedding(max_len, d_model, init_std=0.5**0.5)
        elif kind == "rope":
            d_head = d_model // num_heads
            require(d_head % 2 == 0, f"d_model // num_heads must be even for rope, got {d_head}")
            self.rope = RotaryEmbedding(d_head)

    def add(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``x (B, T, E) + PE[offset .. offset+T-1]`` for additive schemes; ``x`` otherwise."""
        T = x.shape[1]
        if self.kind == "sinusoidal":
            if offset + T > self.table.shape[0]:  # beyond the precomputed table: grow it
                size = max(offset + T, 2 * self.table.shape[0])
                self.table = sinusoidal_encoding(size, self.d_model, device=x.device)
            pe = self.table[offset : offset + T]  # (T, E)
            return x + pe.to(dtype=x.dtype)[None]  # (B, T, E)
        if self.kind == "learned":
            require(
                offset + T <= self.max_len,
                f"learned positions exist only below max_len={self.max_len}, but the input needs "
                f"positions {offset}..{offset + T - 1} (input shape {shape_of(x)}, cache length "
                f"{offset}); use a larger max_len or a scheme that extrapolates",
            )
            positions = torch.arange(offset, offset + T, device=x.device)  # (T,)
            return x + self.learned(positions).to(dtype=x.dtype)[None]  # (B, T, E)
        return x

    def bias(self, T: int, S: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """ALiBi's ``-m_h |i - j|`` for the last ``T`` of ``S`` positions, ``(H, T, S)``; else None."""
        if self.kind != "alibi":
            return None
        return alibi_bias(self.num_heads, T, S, device=device, dtype=dtype)  # (H, T, S)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, max_len={self.max_len}"


# ---------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------


ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "gelu_tanh")


def _check_activation(activation: str) -> None:
    require(activation in ACTIVATIONS, f"activation must be one of {ACTIVATIONS}, got {activation!r}")


class FeedForward(nn.Module):
    """Position-wise feed-forward network ``FFN(x) = W_2 Dropout(f(W_1 x + b_1)) + b_2``.

    ``x (B, T, d_model) -> (B, T, d_model)``, hidden size ``d_ff``; applied to every position
    independently (the same weights everywhere). ``activation`` ``f``: ``"relu"`` (Vaswani et al.),
    ``"gelu"`` (exact, ``x Phi(x)``) or ``"gelu_tanh"`` (GPT-2's tanh approximation
    ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``); ``bias=False`` drops ``b_1``, ``b_2``.
    """

    def __init__(
        self, d_model: int, d_ff: int, dropout: float = 0.0, *, activation: str = "relu", bias: bool = True
    ) -> None:
        super().__init__()
        _check_activation(activation)
        self.activation = activation
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)  # W_1, b_1
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)  # W_2, b_2
        self.dropout = nn.Dropout(dropout)

    def _f(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation == "relu":
            return torch.relu(x)
        return F.gelu(x, approximate="tanh" if self.activation == "gelu_tanh" else "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self._f(self.linear1(x)))  # (B, T, d_ff)
        return self.linear2(h)  # (B, T, d_model)


class EncoderLayer(nn.Module):
    """One encoder layer: self-attention then the FFN, each with a residual and a LayerNorm.

    post-norm (``norm_first=False``, Vaswani et al. 2017)::

        x = LayerNorm_1(x + Dropout(SelfAttn(x)))
        x = LayerNorm_2(x + Dropout(FFN(x)))

    pre-norm (``norm_first=True``, Xiong et al. 2020)::

        x = x + Dropout(SelfAttn(LayerNorm_1(x)))
        x = x + Dropout(FFN(LayerNorm_2(x)))

    Submodule names follow ``torch.nn.TransformerEncoderLayer`` (``self_attn``, ``linear1``,
    ``linear2``, ``norm1``, ``norm2``) so weights can be copied across; ``self_attn`` is an
    :class:`attnbook.MultiHeadAttention`. ``causal=True`` turns it into a decoder-only block.
    Keyword-only: the FFN's ``activation`` (see :class:`FeedForward`), ``bias`` for every
    ``nn.Linear`` of the attention and the FFN, ``norm_eps`` for both LayerNorms.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        norm_first: bool = True,
        num_kv_heads: int | None = None,
        *,
        activation: str = "relu",
        bias: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        d_ff = _check_dims(d_model, num_heads, d_ff, dropout)
        _check_activation(activation)
        require(isinstance(norm_eps, (int, float)) and norm_eps > 0, f"norm_eps must be > 0, got {norm_eps!r}")
        self.d_model, self.num_heads, self.d_ff, self.norm_first = d_model, num_heads, d_ff, norm_first
        self.self_attn = MultiHeadAttention(
            d_model, num_heads, num_kv_heads=num_kv_heads, bias=bias, dropout=dropout
        )
        self.ffn = FeedForward(d_model, d_ff, dropout, activation=activation, bias=bias)
        self.norm1 = nn.LayerNorm(d_model, eps=norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    # torch.nn.TransformerEncoderLayer's names for the FFN weights
    @property
    def linear1(self) -> nn.Linear:
        return self.ffn.linear1

    @property
    def linear2(self) -> nn.Linear:
        return self.ffn.linear2

    def _self_attention(self, x, mask, causal, cache, attn_bias, rope, need_weights):
        return self.self_attn(
            x, x, x, mask=mask, causal=causal, need_weights=need_weights,
            cache=cache, attn_bias=attn_bias, rope=rope,
        )

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
        attn_bias: torch.Tensor | None = None,
        rope: RotaryEmbedding | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x (B, T, E)`` -> (``(B, T, E)``, self-attention weights ``(B, H, T, S)`` or None).

        ``mask`` boolean broadcastable to ``(B, H, T, S)`` (True = may attend); ``attn_bias``
        float broadcastable to ``(B, H, T, S)``; ``cache``/``rope`` go to the self-attention.
        """
        check_ndim("x", x, 3)
        require(
            x.shape[-1] == self.d_model,
            f"x must have shape (B, T, d_model={self.d_model}), got shape {shape_of(x)}",
        )
        if self.norm_first:
            a, w = self._self_attention(self.norm1(x), mask, causal, cache, attn_bias, rope, need_weights)
            x = x + self.dropout1(a)  # (B, T, E)
            x = x + self.dropout2(self.ffn(self.norm2(x)))  # (B, T, E)
        else:
            a, w = self._self_attention(x, mask, causal, cache, attn_bias, rope, need_weights)
            x = self.norm1(x + self.dropout1(a))  # (B, T, E)
            x = self.norm2(x + self.dropout2(self.ffn(x)))  # (B, T, E)
        return x, w


class DecoderLayer(nn.Module):
    """One decoder layer: causal self-attention, cross-attention to the encoder's ``memory``,
    then the FFN; each sublayer with a residual and a LayerNorm (post- or pre-norm, as in
    :class:`EncoderLayer`). Pre-norm::

        y = y + Dropout(SelfAttn(LN_1(y)))                  causal: position t sees y_{<=t}
        y = y + Dropout(CrossAttn(LN_2(y), memory))         queries from y, keys/values from memory
        y = y + Dropout(FFN(LN_3(y)))

    Submodules: ``self_attn``, ``cross_attn`` (``MultiHeadAttention``), ``linear1``, ``linear2``,
    ``norm1..3`` (the names of ``torch.nn.TransformerDecoderLayer``, whose ``multihead_attn`` is
    our ``cross_attn``).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        norm_first: bool = True,
        num_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        d_ff = _check_dims(d_model, num_heads, d_ff, dropout)
        self.d_model, self.num_heads, self.d_ff, self.norm_first = d_model, num_heads, d_ff, norm_first
        self.self_attn = MultiHeadAttention(d_model, num_heads, num_kv_heads=num_kv_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, num_kv_heads=num_kv_heads, dropout=dropout)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    @property
    def linear1(self) -> nn.Linear:
        return self.ffn.linear1

    @property
    def linear2(self) -> nn.Linear:
        return self.ffn.linear2

    def forward(
        self,
        y: torch.Tensor,
        memory: torch.Tensor,
        *,
        memory_mask: torch.Tensor | None = None,
        self_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        attn_bias: torch.Tensor | None = None,
        rope: RotaryEmbedding | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``y (B, T, E)``, ``memory (B, S, E)`` -> (``(B, T, E)``, self weights
        ``(B, H, T, P+T)``, cross weights ``(B, H, T, S)``; both None unless ``need_weights``).

        Self-attention is always causal (bottom-right aligned, so it also holds with a ``cache``
        of ``P`` earlier steps); ``self_mask`` may restrict it further. ``memory_mask`` boolean
        broadcastable to ``(B, H, T, S)``, e.g. the source padding as ``(B, 1, 1, S)``.
        """
        check_ndim("y", y, 3)
        check_ndim("memory", memory, 3)
        require(
            y.shape[-1] == self.d_model and memory.shape[-1] == self.d_model
            and memory.shape[0] == y.shape[0],
            f"y (B, T, d_model={self.d_model}) and memory (B, S, d_model) must share B and E, "
            f"got y {shape_of(y)} and memory {shape_of(memory)}",
        )

        def self_attention(h):
            return self.self_attn(
                h, h, h, mask=self_mask, causal=True, need_weights=need_weights,
                cache=cache, attn_bias=attn_bias, rope=rope,
            )

        def cross_attention(h):
            return self.cross_attn(h, memory, memory, mask=memory_mask, need_weights=need_weights)

        if self.norm_first:
            a, w_self = self_attention(self.norm1(y))
            y = y + self.dropout1(a)  # (B, T, E)
            c, w_cross = cross_attention(self.norm2(y))
            y = y + self.dropout2(c)  # (B, T, E)
            y = y + self.dropout3(self.ffn(self.norm3(y)))  # (B, T, E)
        else:
            a, w_self = self_attention(y)
            y = self.norm1(y + self.dropout1(a))  # (B, T, E)
            c, w_cross = cross_attention(y)
            y = self.norm2(y + self.dropout2(c))  # (B, T, E)
            y = self.norm3(y + self.dropout3(self.ffn(y)))  # (B, T, E)
        return y, w_self, w_cross


# ---------------------------------------------------------------------------------------------
# stacks
# ---------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """``num_layers`` :class:`EncoderLayer` s over embedded tokens (plus positions), and a final
    LayerNorm when ``norm_first`` (a pre-norm stack's output is otherwise un-normalised).

    ``forward(src (B, S) long, src_key_padding_mask (B, S) bool | None, return_attention)`` ->
    memory ``(B, S, E)`` (and the per-layer self-attention weights ``(B, H, S, S)``).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        max_len: int = 512,
        norm_first: bool = True,
        positional: Positional = "sinusoidal",
        num_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        _check_int("num_layers", num_layers)
        self.embed = TokenEmbedding(vocab_size, d_model)
        self.positions = PositionalScheme(positional, d_model, num_heads, max_len)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, d_ff, dropout, norm_first, num_kv_heads) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()

    def forward(
        self,
        src: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, Weights]:
        _check_tokens("src", src, self.embed.vocab_size)
        B, S = src.shape
        _check_padding("src_key_padding_mask", src_key_padding_mask, B, S, "src's shape")
        mask = None if src_key_padding_mask is None else key_padding_to_attn_mask(src_key_padding_mask)
        x = self.dropout(self.positions.add(self.embed(src)))  # (B, S, E)
        bias = self.positions.bias(S, S, x.device, x.dtype)  # (H, S, S) or None
        weights: Weights = []
        for layer in self.layers:
            x, w = layer(x, mask=mask, attn_bias=bias, rope=self.positions.rope, need_weights=return_attention)
            if return_attention:
                weights.append(w)
        memory = self.norm(x)  # (B, S, E)
        return (memory, weights) if return_attention else memory


class Decoder(nn.Module):
    """``num_layers`` :class:`DecoderLayer` s, a final LayerNorm when ``norm_first``, and the
    output projection to the vocabulary.

    ``forward(tgt_in (B, T), memory (B, S, E), src_key_padding_mask (B, S) | None, caches,
    return_attention)`` -> logits ``(B, T, V)`` (and the per-layer self and cross weights).
    With ``caches`` (from :meth:`new_caches`) holding ``P`` earlier steps, ``tgt_in`` holds the
    next ``T`` tokens only; their positions are ``P .. P+T-1``.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        max_len: int = 512,
        norm_first: bool = True,
        positional: Positional = "sinusoidal",
        num_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        _check_int("num_layers", num_layers)
        self.embed = TokenEmbedding(vocab_size, d_model)
        self.positions = PositionalScheme(positional, d_model, num_heads, max_len)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, num_heads, d_ff, dropout, norm_first, num_kv_heads) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.out = nn.Linear(d_model, vocab_size)

    def new_caches(self) -> CacheList:
        """One empty self-attention cache per layer."""
        return CacheList(KVCache() for _ in self.layers)

    def forward(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, Weights, Weights]:
        _check_tokens("tgt_in", tgt_in, self.embed.vocab_size)
        check_ndim("memory", memory, 3)
        B, T = tgt_in.shape
        require(
            memory.shape[0] == B,
            f"memory must have the batch size of tgt_in, got memory {shape_of(memory)} and "
            f"tgt_in {shape_of(tgt_in)}",
        )
        _check_padding("src_key_padding_mask", src_key_padding_mask, B, memory.shape[1], "memory's (B, S)")
        P = _check_caches(caches, len(self.layers))
        memory_mask = None if src_key_padding_mask is None else key_padding_to_attn_mask(src_key_padding_mask)
        y = self.dropout(self.positions.add(self.embed(tgt_in), offset=P))  # (B, T, E)
        bias = self.positions.bias(T, P + T, y.device, y.dtype)  # (H, T, P+T) or None
        self_w: Weights = []
        cross_w: Weights = []
        for i, layer in enumerate(self.layers):
            y, ws, wc = layer(
                y, memory, memory_mask=memory_mask, cache=None if caches is None else caches[i],
                attn_bias=bias, rope=self.positions.rope, need_weights=return_attention,
            )
            if return_attention:
                self_w.append(ws)
                cross_w.append(wc)
        logits = self.out(self.norm(y))  # (B, T, V)
        return (logits, self_w, cross_w) if return_attention else logits


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------


class Transformer(nn.Module):
    """The encoder-decoder Transformer of Vaswani et al. (2017)::

        memory = Encoder(src)                                   (B, S, E)
        logits = Decoder(tgt_in, memory)                        (B, T, V)
        p(y_t | y_<t, x) = softmax(logits[:, t])

    ``src``/``tgt_in`` are ``(B, S)``/``(B, T)`` token ids; ``src_key_padding_mask (B, S)`` is
    True for real source tokens (padding is never attended to, in the encoder or in the
    cross-attention). Encoder and decoder have their own token embeddings and the same
    ``positional`` scheme. ``d_ff`` defaults to ``4 * d_model``.

    ``return_attention=True`` returns ``(logits, {"encoder_self": [...], "decoder_self": [...],
    "cross": [...]})``, each a list over layers of ``(B, H, T, S)`` weights.

    For decoding with :func:`attnbook.train.greedy_decode` / :func:`~attnbook.train.beam_search`,
    use ``state = model.initial_state(src, src_key_padding_mask)`` and ``step_fn = model.step``.
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        d_model: int,
        num_heads: int,
        num_encoder_layers: int,
        num_decoder_layers: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        max_len: int = 512,
        norm_first: bool = True,
        positional: Positional = "sinusoidal",
        num_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        _check_dims(d_model, num_heads, d_ff, dropout)
        _check_int("num_encoder_layers", num_encoder_layers)
        _check_int("num_decoder_layers", num_decoder_layers)
        self.d_model, self.num_heads, self.norm_first, self.positional = d_model, num_heads, norm_first, positional
        self.encoder = Encoder(
            src_vocab, d_model, num_heads, num_encoder_layers, d_ff, dropout, max_len,
            norm_first, positional, num_kv_heads,
        )
        self.decoder = Decoder(
            tgt_vocab, d_model, num_heads, num_decoder_layers, d_ff, dropout, max_len,
            norm_first, positional, num_kv_heads,
        )

    def new_caches(self) -> CacheList:
        """One empty KVCache per decoder layer (for :meth:`decode` one step at a time)."""
        return self.decoder.new_caches()

    def encode(
        self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``src (B, S)`` -> memory ``(B, S, E)``."""
        return self.encoder(src, src_key_padding_mask)

    def decode(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, Weights]]:
        """``tgt_in (B, T)``, ``memory (B, S, E)`` -> logits ``(B, T, V)`` (and
        ``{"decoder_self": ..., "cross": ...}`` when ``return_attention``)."""
        out = self.decoder(tgt_in, memory, src_key_padding_mask, caches, return_attention)
        if not return_attention:
            return out
        logits, self_w, cross_w = out
        return logits, {"decoder_self": self_w, "cross": cross_w}

    def forward(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, Weights]]:
        """Teacher-forced forward: ``src (B, S)``, ``tgt_in (B, T)`` -> logits ``(B, T, V)``."""
        if not return_attention:
            return self.decode(tgt_in, self.encode(src, src_key_padding_mask), src_key_padding_mask)
        memory, enc_w = self.encoder(src, src_key_padding_mask, return_attention=True)
        logits, attn = self.decode(tgt_in, memory, src_key_padding_mask, return_attention=True)
        return logits, {"encoder_self": enc_w, **attn}

    # ----- decoding with attnbook.train.greedy_decode / beam_search -----

    @torch.no_grad()
    def initial_state(
        self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None, use_cache: bool = True
    ) -> dict:
        """The decoding state for :meth:`step`: the encoder memory, the source mask and (with
        ``use_cache``) fresh KV caches. Every entry is batch-first, so beam search can reorder it."""
        B, S = src.shape
        mask = src_key_padding_mask
        if mask is None:
            mask = torch.ones(B, S, dtype=torch.bool, device=src.device)
        return {
            "memory": self.encode(src, src_key_padding_mask),
            "src_mask": mask,
            "caches": self.new_caches() if use_cache else None,
        }

    @torch.no_grad()
    def step(self, prefix: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """A step function for :mod:`attnbook.train`'s decoders: ``prefix (B, t)`` ->
        (log-probabilities of the next token ``(B, V)``, the new state, the last layer's
        head-averaged cross-attention row ``(B, S)``). With caches only ``prefix[:, -1:]`` is fed
        (the caches hold the rest); without, the whole prefix is recomputed."""
        caches = state["caches"]
        tokens = prefix if caches is None else prefix[:, -1:]  # (B, t) or (B, 1)
        logits, attn = self.decode(tokens, state["memory"], state["src_mask"], caches, return_attention=True)
        cross = attn["cross"][-1][:, :, -1].mean(dim=1)  # (B, S)
        return torch.log_softmax(logits[:, -1], dim=-1), state, cross


class DecoderOnly(nn.Module):
    """A decoder-only (GPT-style) language model: causal self-attention blocks, no encoder::

        x = Embed(tokens) (+ PE)                                (B, T, E)
        x = Block_l(x) for l = 1..num_layers                    EncoderLayer with causal=True
        logits = W_out LayerNorm(x)                             (B, T, V)

    ``positional``: ``"sinusoidal"``/``"learned"`` add to the token embedding; ``"rope"`` rotates
    q, k in every layer; ``"alibi"`` adds ``-m_h |i - j|`` over the ``S = P + T`` keys (cache
    included); ``"none"`` adds nothing. Only ``"learned"`` is limited to ``max_len`` positions
    (``ValueError`` past it). ``num_kv_heads < num_heads`` gives grouped-query attention.

    Every option after the four sizes is keyword-only. ``activation`` is the FFN's (``"relu"``,
    ``"gelu"``, ``"gelu_tanh"``); ``bias`` applies to every ``nn.Linear`` in attention and FFN;
    ``norm_eps`` to every LayerNorm; ``scale_embedding=False`` drops the ``sqrt(d_model)`` factor
    of the token embedding; ``tie_weights=True`` makes the output projection share the token
    embedding matrix, ``logits = LayerNorm(x) E^T``, with no output bias. GPT-2 is
    ``positional="learned", activation="gelu_tanh", scale_embedding=False, tie_weights=True``
    (see :func:`attnbook.pretrained.gpt2_from_state_dict`).

    ``forward(tokens (B, T), *, key_padding_mask=None, caches=None, return_attention=False)``:
    ``key_padding_mask`` is boolean, True = a real token, with shape ``(B, S)`` for the ``S = P + T``
    keys (``(B, T)`` without caches). ``caches`` from :meth:`new_caches` (filled in place) hold
    ``P`` earlier steps; the new tokens get positions ``P .. P+T-1``.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        *,
        d_ff: int | None = None,
        dropout: float = 0.0,
        max_len: int = 512,
        positional: Positional = "sinusoidal",
        norm_first: bool = True,
        num_kv_heads: int | None = None,
        activation: str = "relu",
        bias: bool = True,
        norm_eps: float = 1e-5,
        scale_embedding: bool = True,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        _check_dims(d_model, num_heads, d_ff, dropout)
        _check_int("num_layers", num_layers)
        self.vocab_size, self.d_model, self.num_heads = vocab_size, d_model, num_heads
        self.max_len, self.positional, self.norm_first = max_len, positional, norm_first
        self.embed = TokenEmbedding(vocab_size, d_model, scale=scale_embedding)
        self.positions = PositionalScheme(positional, d_model, num_heads, max_len)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(
                d_model, num_heads, d_ff, dropout, norm_first, num_kv_heads,
                activation=activation, bias=bias, norm_eps=norm_eps,
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model, eps=norm_eps) if norm_first else nn.Identity()
        self.out = nn.Linear(d_model, vocab_size, bias=not tie_weights)
        if tie_weights:
            self.out.weight = self.embed.embedding.weight  # one (V, E) matrix: E and W_out = E

    def new_caches(self) -> CacheList:
        """One empty KVCache per layer (a list that beam search can reorder)."""
        return CacheList(KVCache() for _ in self.layers)

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, Weights]:
        """``tokens (B, T)`` -> logits ``(B, T, V)`` (and per-layer weights ``(B, H, T, P+T)``)."""
        _check_tokens("tokens", tokens, self.vocab_size)
        B, T = tokens.shape
        P = _check_caches(caches, len(self.layers))
        _check_padding(
            "key_padding_mask", key_padding_mask, B, P + T,
            "(B, P + T): every key, the cached ones included" if P else "tokens' shape",
        )
        mask = None if key_padding_mask is None else key_padding_to_attn_mask(key_padding_mask)
        x = self.dropout(self.positions.add(self.embed(tokens), offset=P))  # (B, T, E)
        bias = self.positions.bias(T, P + T, x.device, x.dtype)  # (H, T, P+T) or None
        weights: Weights = []
        for i, layer in enumerate(self.layers):
            x, w = layer(
                x, mask=mask, causal=True, cache=None if caches is None else caches[i],
                attn_bias=bias, rope=self.positions.rope, need_weights=return_attention,
            )
            if return_attention:
                weights.append(w)
        logits = self.out(self.norm(x))  # (B, T, V)
        return (logits, weights) if return_attention else logits
