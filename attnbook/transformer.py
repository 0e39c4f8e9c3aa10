"""The Transformer (Vaswani et al., 2017): encoder and decoder layers, the encoder-decoder
``Transformer`` and the decoder-only language model ``DecoderOnly``.

A layer is two or three *sublayers*, each wrapped in a residual connection and a LayerNorm:

* self-attention          ``SA(x)   = MultiHead(x, x, x)``
* cross-attention         ``CA(x)   = MultiHead(x, memory, memory)``  (decoder only)
* position-wise FFN       ``FFN(x)  = W_2 f(W_1 x + b_1) + b_2``      (``d_model -> d_ff -> d_model``)

and the residual wrapping (:class:`Residual`, written once and used by every layer) comes in two
orders:

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

GPT-2's embedding is not scaled (``scale_embedding=False``, ``E ~ N(0, 1)`` then, so the
coordinates again have unit variance at initialisation).

One API for every model. :class:`DecoderOnly` and :class:`Transformer` (and the stacks
:class:`Encoder`, :class:`Decoder`) take their essential sizes positionally and every option by
keyword, in one order: ``d_ff, dropout, max_len, positional, norm_first, num_kv_heads,
activation, bias, norm_eps, scale_embedding, tie_weights``. A frozen config dataclass describes
each family (:class:`DecoderOnlyConfig`, :class:`TransformerConfig`): ``Model.from_config(cfg)``
builds one and ``model.config`` is the config it was built from. The plain call returns the
logits; ``return_attention=True`` returns ``(logits, weights)`` with ``weights`` an
:class:`AttentionWeights` for every model (per-layer lists ``encoder_self``, ``decoder_self``,
``cross``; the kinds a model lacks are empty). Caches go in the same way everywhere: pass
``caches=model.new_caches()`` and they are filled in place.

Incremental decoding: ``new_caches()`` returns one empty :class:`attnbook.attention.KVCache` per
decoder layer; feeding the tokens one at a time (or a chunk at a time) with ``caches=`` gives the
same logits as one causal forward pass over the whole sequence. Positions of the new tokens
start at the cache length ``P``. A forward pass reads no tensor value back to the host when the
data checks are off (:func:`attnbook.utils.set_data_checks`) or under ``torch.compile``, which
sees one graph per model (no graph break).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import (
    check_batch_index,
    check_bool,
    check_int,
    check_ndim,
    check_same_device,
    check_token_ids,
    check_token_tensor,
    require,
    shape_of,
)
from .attention import KVCache, MultiHeadAttention
from .functional import key_padding_to_attn_mask
from .positional import POSITIONAL_SCHEMES, Positional, PositionalScheme, RotaryEmbedding

__all__ = [
    "POSITIONAL_SCHEMES",
    "ACTIVATIONS",
    "AttentionWeights",
    "CacheList",
    "TokenEmbedding",
    "PositionalScheme",
    "FeedForward",
    "Residual",
    "EncoderLayer",
    "DecoderLayer",
    "Encoder",
    "Decoder",
    "DecoderOnlyConfig",
    "TransformerConfig",
    "Transformer",
    "DecoderOnly",
]

Weights = list[torch.Tensor]
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "gelu_tanh")


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------


def _check_layer_options(
    d_model: int,
    num_heads: int,
    d_ff: int | None,
    dropout: float,
    norm_first: bool,
    activation: str,
    bias: bool,
    norm_eps: float,
) -> int:
    """Validate the options every layer shares; returns ``d_ff`` (default ``4 * d_model``)."""
    check_int("d_model", d_model)
    check_int("num_heads", num_heads)
    require(
        d_model % num_heads == 0,
        lambda: f"d_model must be divisible by num_heads, got d_model={d_model}, num_heads={num_heads}",
    )
    d_ff = 4 * d_model if d_ff is None else d_ff
    check_int("d_ff", d_ff)
    require(
        isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0.0 <= dropout < 1.0,
        lambda: f"dropout must be a float in [0, 1), got {dropout!r}",
    )
    check_bool("norm_first", norm_first)
    require(activation in ACTIVATIONS, lambda: f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    check_bool("bias", bias)
    require(
        isinstance(norm_eps, (int, float)) and not isinstance(norm_eps, bool) and 0 < norm_eps < 1,
        lambda: f"norm_eps must be a float in (0, 1), got {norm_eps!r}",
    )
    return d_ff


def _check_padding(
    name: str, mask: torch.Tensor | None, B: int, S: int, what: str, device: torch.device
) -> None:
    if mask is None:
        return
    check_ndim(name, mask, 2)
    require(
        mask.dtype == torch.bool,
        lambda: f"{name} must be boolean (True = a real token), got dtype {mask.dtype} "
        f"with shape {shape_of(mask)}",
    )
    require(
        tuple(mask.shape) == (B, S),
        lambda: f"{name} must have shape (B, S) = {(B, S)} ({what}), got shape {shape_of(mask)}",
    )
    check_same_device(name, mask, device, other="the tokens")


def _check_caches(caches: list[KVCache] | None, num_layers: int) -> int:
    """The common length ``P`` of the caches (0 without caches)."""
    if caches is None:
        return 0
    require(
        isinstance(caches, (list, tuple)) and len(caches) == num_layers
        and all(isinstance(c, KVCache) for c in caches),
        lambda: f"caches must be a list of {num_layers} KVCache objects (one per layer, from "
        f"new_caches()), got {type(caches).__name__} of length "
        f"{len(caches) if hasattr(caches, '__len__') else '?'}",
    )
    P = caches[0].length
    require(
        all(c.length == P for c in caches),
        lambda: f"caches must all hold the same number of steps, got lengths {[c.length for c in caches]}",
    )
    return P


# ---------------------------------------------------------------------------------------------
# what a model returns besides its output, and its caches
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionWeights:
    """The attention weights of one forward pass, as ``return_attention=True`` returns them for
    every model: ``(output, AttentionWeights)``.

    Each field is a list over layers, first layer first, of per-head weights:

    * ``encoder_self`` — the encoder's self-attention, ``(B, H, S, S)``;
    * ``decoder_self`` — the decoder's causal self-attention, ``(B, H, T, P + T)`` (``P`` cached
      steps); a :class:`DecoderOnly` has only this kind;
    * ``cross`` — the decoder's attention over the encoder's memory, ``(B, H, T, S)``.

    A kind the model does not have is an empty list. The kinds can also be read by name,
    ``weights["cross"]``, and :meth:`items` yields the kinds the model has.
    """

    encoder_self: Weights = field(default_factory=list)
    decoder_self: Weights = field(default_factory=list)
    cross: Weights = field(default_factory=list)

    KINDS = ("encoder_self", "decoder_self", "cross")

    def keys(self) -> list[str]:
        """The kinds present (non-empty), in the order of :attr:`KINDS`."""
        return [kind for kind in self.KINDS if getattr(self, kind)]

    def items(self) -> Iterator[tuple[str, Weights]]:
        """``(kind, per-layer weights)`` for every kind present."""
        return ((kind, getattr(self, kind)) for kind in self.keys())

    def __getitem__(self, kind: str) -> Weights:
        require(kind in self.KINDS, lambda: f"kind must be one of {self.KINDS}, got {kind!r}")
        return getattr(self, kind)


class CacheList(list):
    """A list of :class:`KVCache` (one per layer) that beam search can reorder:
    ``index_select(index)`` returns a new list whose caches hold batch rows ``index``
    (see :mod:`attnbook.train`: decoder state objects with ``index_select`` are reordered)."""

    def index_select(self, index: torch.Tensor) -> CacheList:
        out = CacheList()
        checked = False
        for cache in self:
            new = KVCache()
            if cache.k is not None:
                idx = index.to(cache.k.device)
                if not checked:  # one data check for the whole list
                    check_batch_index("index", idx, cache.k.shape[0])
                    checked = True
                new.k = cache.k.index_select(0, idx)  # (B', H_kv, P, D)
                new.v = cache.v.index_select(0, idx)  # (B', H_kv, P, Dv)
            out.append(new)
        return out


# ---------------------------------------------------------------------------------------------
# embeddings
# ---------------------------------------------------------------------------------------------


class TokenEmbedding(nn.Module):
    """``x_t = sqrt(d_model) * E[y_t]`` with ``E ~ N(0, 1/d_model)``: unit-variance coordinates.

    tokens ``(B, T)`` long -> ``(B, T, d_model)``. See the module docstring for why the scale
    matters next to the position vectors. ``scale=False`` returns ``E[y_t]`` itself (GPT-2's
    convention) and starts ``E ~ N(0, 1)``, so the vectors have the same unit-variance
    coordinates at initialisation. Token ids outside ``[0, vocab_size)`` are a ``ValueError``
    (a data check, see :func:`attnbook.utils.set_data_checks`) that calls them ``name``.

    Equivalent to ``self.embedding(tokens) * math.sqrt(d_model)``.
    """

    def __init__(
        self, vocab_size: int, d_model: int, padding_idx: int | None = None, *, scale: bool = True
    ) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size)
        check_int("d_model", d_model)
        check_bool("scale", scale)
        self.vocab_size, self.d_model, self.scale = vocab_size, d_model, scale
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5 if scale else 1.0)
        if padding_idx is not None:
            with torch.no_grad():
                self.embedding.weight[padding_idx].zero_()

    def forward(self, tokens: torch.Tensor, *, name: str = "tokens") -> torch.Tensor:
        check_token_ids(name, tokens, self.vocab_size)
        x = self.embedding(tokens)  # (B, T, E)
        return x * math.sqrt(self.d_model) if self.scale else x


# ---------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------


class FeedForward(nn.Module):
    """Position-wise feed-forward network ``FFN(x) = W_2 Dropout(f(W_1 x + b_1)) + b_2``.

    ``x (B, T, d_model) -> (B, T, d_model)``, hidden size ``d_ff``; applied to every position
    independently (the same weights everywhere). ``activation`` ``f``: ``"relu"`` (Vaswani et al.),
    ``"gelu"`` (exact, ``x Phi(x)``) or ``"gelu_tanh"`` (GPT-2's tanh approximation
    ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``); ``bias=False`` drops ``b_1``, ``b_2``.

    Equivalent to ``self.linear2(torch.relu(self.linear1(x)))`` (relu, no dropout).
    """

    def __init__(
        self, d_model: int, d_ff: int, dropout: float = 0.0, *, activation: str = "relu", bias: bool = True
    ) -> None:
        super().__init__()
        require(activation in ACTIVATIONS, lambda: f"activation must be one of {ACTIVATIONS}, got {activation!r}")
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


Sublayer = Callable[[torch.Tensor], "tuple[torch.Tensor, Any]"]


class Residual(nn.Module):
    """The residual connection around one sublayer ``F``, in either order, written once:

    * pre-norm  (``norm_first=True``, Xiong et al. 2020): ``x + Dropout(F(Norm(x)))``
    * post-norm (``norm_first=False``, Vaswani et al. 2017): ``Norm(x + Dropout(F(x)))``

    ``forward(x, sublayer)`` calls ``sublayer(h) -> (out, extra)`` (``extra``: e.g. attention
    weights, passed through) and returns ``(x_new, extra)``; ``x (B, T, E)``. The norm and dropout
    modules belong to the layer, which registers them under PyTorch's names (``norm1``,
    ``dropout1``, ...); the wrapper only holds them, so the ``state_dict`` of a layer is the same
    as ``torch.nn.TransformerEncoderLayer``'s.

    Equivalent to ``x + dropout(sublayer(norm(x))[0])`` (pre-norm).
    """

    def __init__(self, norm: nn.Module, dropout: nn.Module, *, norm_first: bool) -> None:
        super().__init__()
        check_bool("norm_first", norm_first)
        self.norm_first = norm_first
        self._parts = (norm, dropout)  # held, not registered: the layer owns them

    def forward(self, x: torch.Tensor, sublayer: Sublayer) -> tuple[torch.Tensor, Any]:
        norm, dropout = self._parts
        if self.norm_first:
            out, extra = sublayer(norm(x))
            return x + dropout(out), extra  # (B, T, E)
        out, extra = sublayer(x)
        return norm(x + dropout(out)), extra  # (B, T, E)

    def extra_repr(self) -> str:
        return f"norm_first={self.norm_first}"


class _Layer(nn.Module):
    """What encoder and decoder layers share: the FFN, ``n`` LayerNorms and dropouts registered
    under PyTorch's names, and one :class:`Residual` per sublayer."""

    def _build_common(self, n, d_model, num_heads, d_ff, dropout, norm_first, activation, bias, norm_eps):
        self.d_model, self.num_heads, self.d_ff, self.norm_first = d_model, num_heads, d_ff, norm_first
        self.ffn = FeedForward(d_model, d_ff, dropout, activation=activation, bias=bias)
        for i in range(1, n + 1):
            setattr(self, f"norm{i}", nn.LayerNorm(d_model, eps=norm_eps))
        for i in range(1, n + 1):
            setattr(self, f"dropout{i}", nn.Dropout(dropout))
        self.residuals = nn.ModuleList(
            Residual(getattr(self, f"norm{i}"), getattr(self, f"dropout{i}"), norm_first=norm_first)
            for i in range(1, n + 1)
        )

    # torch.nn.TransformerEncoderLayer's names for the FFN weights
    @property
    def linear1(self) -> nn.Linear:
        return self.ffn.linear1

    @property
    def linear2(self) -> nn.Linear:
        return self.ffn.linear2

    def _feed_forward(self, h: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.ffn(h), None


class EncoderLayer(_Layer):
    """One encoder layer: self-attention then the FFN, each in a :class:`Residual`.

    post-norm (``norm_first=False``, Vaswani et al. 2017)::

        x = LayerNorm_1(x + Dropout(SelfAttn(x)))
        x = LayerNorm_2(x + Dropout(FFN(x)))

    pre-norm (``norm_first=True``, Xiong et al. 2020)::

        x = x + Dropout(SelfAttn(LayerNorm_1(x)))
        x = x + Dropout(FFN(LayerNorm_2(x)))

    Submodule names follow ``torch.nn.TransformerEncoderLayer`` (``self_attn``, ``linear1``,
    ``linear2``, ``norm1``, ``norm2``) so weights can be copied across; ``self_attn`` is an
    :class:`attnbook.MultiHeadAttention`. ``causal=True`` turns it into a decoder-only block.
    Options after ``(d_model, num_heads)`` are keyword-only: ``activation`` (see
    :class:`FeedForward`), ``bias`` for every ``nn.Linear`` of the attention and the FFN,
    ``norm_eps`` for both LayerNorms.

    Equivalent to ``torch.nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout,
    batch_first=True, norm_first=norm_first)`` with the same weights.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        d_ff: int | None = None,
        dropout: float = 0.0,
        norm_first: bool = True,
        num_kv_heads: int | None = None,
        activation: str = "relu",
        bias: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        d_ff = _check_layer_options(d_model, num_heads, d_ff, dropout, norm_first, activation, bias, norm_eps)
        self.self_attn = MultiHeadAttention(
            d_model, num_heads, num_kv_heads=num_kv_heads, bias=bias, dropout=dropout
        )
        self._build_common(2, d_model, num_heads, d_ff, dropout, norm_first, activation, bias, norm_eps)

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
            lambda: f"x must have shape (B, T, d_model={self.d_model}), got shape {shape_of(x)}",
        )

        def self_attention(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            return self.self_attn(
                h, h, h, mask=mask, causal=causal, need_weights=need_weights,
                cache=cache, attn_bias=attn_bias, rope=rope,
            )

        x, w = self.residuals[0](x, self_attention)  # (B, T, E)
        x, _ = self.residuals[1](x, self._feed_forward)  # (B, T, E)
        return x, w


class DecoderLayer(_Layer):
    """One decoder layer: causal self-attention, cross-attention to the encoder's ``memory``,
    then the FFN; each in a :class:`Residual` (post- or pre-norm, as in :class:`EncoderLayer`).
    Pre-norm::

        y = y + Dropout(SelfAttn(LN_1(y)))                  causal: position t sees y_{<=t}
        y = y + Dropout(CrossAttn(LN_2(y), memory))         queries from y, keys/values from memory
        y = y + Dropout(FFN(LN_3(y)))

    Submodules: ``self_attn``, ``cross_attn`` (``MultiHeadAttention``), ``linear1``, ``linear2``,
    ``norm1..3`` (the names of ``torch.nn.TransformerDecoderLayer``, whose ``multihead_attn`` is
    our ``cross_attn``). Keyword-only options as in :class:`EncoderLayer`.

    Equivalent to ``torch.nn.TransformerDecoderLayer(d_model, num_heads, d_ff, dropout,
    batch_first=True, norm_first=norm_first)(y, memory, tgt_is_causal=True, ...)`` with the same
    weights.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        d_ff: int | None = None,
        dropout: float = 0.0,
        norm_first: bool = True,
        num_kv_heads: int | None = None,
        activation: str = "relu",
        bias: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        d_ff = _check_layer_options(d_model, num_heads, d_ff, dropout, norm_first, activation, bias, norm_eps)
        self.self_attn = MultiHeadAttention(
            d_model, num_heads, num_kv_heads=num_kv_heads, bias=bias, dropout=dropout
        )
        self.cross_attn = MultiHeadAttention(
            d_model, num_heads, num_kv_heads=num_kv_heads, bias=bias, dropout=dropout
        )
        self._build_common(3, d_model, num_heads, d_ff, dropout, norm_first, activation, bias, norm_eps)

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
            lambda: f"y (B, T, d_model={self.d_model}) and memory (B, S, d_model) must share B and E, "
            f"got y {shape_of(y)} and memory {shape_of(memory)}",
        )

        def self_attention(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            return self.self_attn(
                h, h, h, mask=self_mask, causal=True, need_weights=need_weights,
                cache=cache, attn_bias=attn_bias, rope=rope,
            )

        def cross_attention(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            return self.cross_attn(h, memory, memory, mask=memory_mask, need_weights=need_weights)

        y, w_self = self.residuals[0](y, self_attention)  # (B, T, E)
        y, w_cross = self.residuals[1](y, cross_attention)  # (B, T, E)
        y, _ = self.residuals[2](y, self._feed_forward)  # (B, T, E)
        return y, w_self, w_cross


# ---------------------------------------------------------------------------------------------
# stacks
# ---------------------------------------------------------------------------------------------


def _layer_options(o: dict[str, Any]) -> dict[str, Any]:
    keys = ("d_ff", "dropout", "norm_first", "num_kv_heads", "activation", "bias", "norm_eps")
    return {k: o[k] for k in keys}


class _Stack(nn.Module):
    """Token embedding, positions, ``num_layers`` layers and the final LayerNorm of pre-norm."""

    def _build_stack(self, layer: type[_Layer], vocab_size: int, d_model: int, num_heads: int,
                     num_layers: int, options: dict[str, Any]) -> None:
        _check_layer_options(
            d_model, num_heads, options["d_ff"], options["dropout"], options["norm_first"],
            options["activation"], options["bias"], options["norm_eps"],
        )
        check_int("num_layers", num_layers)
        check_bool("scale_embedding", options["scale_embedding"])
        self.embed = TokenEmbedding(vocab_size, d_model, scale=options["scale_embedding"])
        self.positions = PositionalScheme(options["positional"], d_model, num_heads, options["max_len"])
        self.dropout = nn.Dropout(options["dropout"])
        self.layers = nn.ModuleList(
            layer(d_model, num_heads, **_layer_options(options)) for _ in range(num_layers)
        )
        eps = options["norm_eps"]
        self.norm = nn.LayerNorm(d_model, eps=eps) if options["norm_first"] else nn.Identity()

    def _build_output(self, d_model: int, vocab_size: int, tie_weights: bool) -> None:
        check_bool("tie_weights", tie_weights)
        self.out = nn.Linear(d_model, vocab_size, bias=not tie_weights)
        if tie_weights:
            self.out.weight = self.embed.embedding.weight  # one (V, E) matrix: W_out = E

    def new_caches(self) -> CacheList:
        """One empty KVCache per layer (a list that beam search can reorder)."""
        return CacheList(KVCache() for _ in self.layers)


class Encoder(_Stack):
    """``num_layers`` :class:`EncoderLayer` s over embedded tokens (plus positions), and a final
    LayerNorm when ``norm_first`` (a pre-norm stack's output is otherwise un-normalised).

    ``forward(src (B, S) long, src_key_padding_mask (B, S) bool | None, *, return_attention)`` ->
    memory ``(B, S, E)``, or ``(memory, AttentionWeights(encoder_self=[(B, H, S, S) per layer]))``.
    Options as in :class:`Transformer` (no ``tie_weights``: an encoder has no output layer).
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
    ) -> None:
        super().__init__()
        options = dict(locals())
        self._build_stack(EncoderLayer, vocab_size, d_model, num_heads, num_layers, options)

    def forward(
        self,
        src: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
        *,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, AttentionWeights]:
        check_bool("return_attention", return_attention)
        check_token_tensor("src", src)
        B, S = src.shape
        _check_padding("src_key_padding_mask", src_key_padding_mask, B, S, "src's shape", src.device)
        mask = None if src_key_padding_mask is None else key_padding_to_attn_mask(src_key_padding_mask)
        x = self.dropout(self.positions.add(self.embed(src, name="src")))  # (B, S, E)
        bias = self.positions.bias(S, S, x.device, x.dtype)  # (H, S, S) or None
        weights: Weights = []
        for layer in self.layers:
            x, w = layer(x, mask=mask, attn_bias=bias, rope=self.positions.rope, need_weights=return_attention)
            if return_attention:
                weights.append(w)
        memory = self.norm(x)  # (B, S, E)
        return (memory, AttentionWeights(encoder_self=weights)) if return_attention else memory


class Decoder(_Stack):
    """``num_layers`` :class:`DecoderLayer` s, a final LayerNorm when ``norm_first``, and the
    output projection to the vocabulary (sharing the token embedding when ``tie_weights``).

    ``forward(tgt_in (B, T), memory (B, S, E), src_key_padding_mask (B, S) | None, *, caches,
    return_attention)`` -> logits ``(B, T, V)``, or ``(logits, AttentionWeights(decoder_self=...,
    cross=...))``. With ``caches`` (from :meth:`new_caches`) holding ``P`` earlier steps,
    ``tgt_in`` holds the next ``T`` tokens only; their positions are ``P .. P+T-1``.
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
        options = dict(locals())
        self._build_stack(DecoderLayer, vocab_size, d_model, num_heads, num_layers, options)
        self._build_output(d_model, vocab_size, tie_weights)

    def forward(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
        *,
        caches: list[KVCache] | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, AttentionWeights]:
        check_bool("return_attention", return_attention)
        check_token_tensor("tgt_in", tgt_in)
        check_ndim("memory", memory, 3)
        B, T = tgt_in.shape
        require(
            memory.shape[0] == B,
            lambda: f"memory must have the batch size of tgt_in, got memory {shape_of(memory)} and "
            f"tgt_in {shape_of(tgt_in)}",
        )
        check_same_device("memory", memory, tgt_in.device, other="tgt_in")
        _check_padding(
            "src_key_padding_mask", src_key_padding_mask, B, memory.shape[1], "memory's (B, S)", tgt_in.device
        )
        P = _check_caches(caches, len(self.layers))
        memory_mask = None if src_key_padding_mask is None else key_padding_to_attn_mask(src_key_padding_mask)
        y = self.dropout(self.positions.add(self.embed(tgt_in, name="tgt_in"), offset=P))  # (B, T, E)
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
        if return_attention:
            return logits, AttentionWeights(decoder_self=self_w, cross=cross_w)
        return logits


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecoderOnlyConfig:
    """Everything that defines a :class:`DecoderOnly`: ``DecoderOnly.from_config(cfg)`` builds it,
    ``model.config`` returns it (``d_ff=None`` means ``4 * d_model``). Frozen: derive variants
    with ``dataclasses.replace(cfg, num_layers=4)``."""

    vocab_size: int
    d_model: int
    num_heads: int
    num_layers: int
    d_ff: int | None = None
    dropout: float = 0.0
    max_len: int = 512
    positional: Positional = "sinusoidal"
    norm_first: bool = True
    num_kv_heads: int | None = None
    activation: str = "relu"
    bias: bool = True
    norm_eps: float = 1e-5
    scale_embedding: bool = True
    tie_weights: bool = False


@dataclass(frozen=True)
class TransformerConfig:
    """Everything that defines a :class:`Transformer` (encoder and decoder share the options):
    ``Transformer.from_config(cfg)`` builds it, ``model.config`` returns it."""

    src_vocab: int
    tgt_vocab: int
    d_model: int
    num_heads: int
    num_encoder_layers: int
    num_decoder_layers: int
    d_ff: int | None = None
    dropout: float = 0.0
    max_len: int = 512
    positional: Positional = "sinusoidal"
    norm_first: bool = True
    num_kv_heads: int | None = None
    activation: str = "relu"
    bias: bool = True
    norm_eps: float = 1e-5
    scale_embedding: bool = True
    tie_weights: bool = False


def _options(config: Any) -> dict[str, Any]:
    """The keyword options of a config (everything after the sizes)."""
    names = ("d_ff", "dropout", "max_len", "positional", "norm_first", "num_kv_heads",
             "activation", "bias", "norm_eps", "scale_embedding", "tie_weights")
    return {name: getattr(config, name) for name in names}


class Transformer(nn.Module):
    """The encoder-decoder Transformer of Vaswani et al. (2017)::

        memory = Encoder(src)                                   (B, S, E)
        logits = Decoder(tgt_in, memory)                        (B, T, V)
        p(y_t | y_<t, x) = softmax(logits[:, t])

    ``Transformer(src_vocab, tgt_vocab, d_model, num_heads, num_encoder_layers,
    num_decoder_layers, *, d_ff=None, dropout=0.0, max_len=512, positional="sinusoidal",
    norm_first=True, num_kv_heads=None, activation="relu", bias=True, norm_eps=1e-5,
    scale_embedding=True, tie_weights=False)``, or ``Transformer.from_config(TransformerConfig(...))``.
    ``src``/``tgt_in`` are ``(B, S)``/``(B, T)`` token ids; ``src_key_padding_mask (B, S)`` is
    True for real source tokens (padding is never attended to, in the encoder or in the
    cross-attention). Encoder and decoder have their own token embeddings and the same options;
    ``d_ff`` defaults to ``4 * d_model``; ``tie_weights`` ties the decoder's output projection to
    its token embedding.

    ``return_attention=True`` returns ``(logits, AttentionWeights)`` with ``encoder_self``,
    ``decoder_self`` and ``cross``, each a list over layers of ``(B, H, T, S)`` weights.

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
        given = dict(locals())
        config = TransformerConfig(**{k: v for k, v in given.items() if k not in ("self", "__class__")})
        _check_layer_options(d_model, num_heads, d_ff, dropout, norm_first, activation, bias, norm_eps)
        check_int("num_encoder_layers", num_encoder_layers)
        check_int("num_decoder_layers", num_decoder_layers)
        self.config = config
        self.d_model, self.num_heads, self.norm_first, self.positional = d_model, num_heads, norm_first, positional
        options = _options(config)
        encoder_options = {k: v for k, v in options.items() if k != "tie_weights"}
        self.encoder = Encoder(src_vocab, d_model, num_heads, num_encoder_layers, **encoder_options)
        self.decoder = Decoder(tgt_vocab, d_model, num_heads, num_decoder_layers, **options)

    @classmethod
    def from_config(cls, config: TransformerConfig) -> Transformer:
        """``Transformer(**dataclasses.asdict(config))``."""
        require(
            isinstance(config, TransformerConfig),
            lambda: f"config must be a TransformerConfig, got {type(config).__name__}",
        )
        return cls(**asdict(config))

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
        *,
        caches: list[KVCache] | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, AttentionWeights]:
        """``tgt_in (B, T)``, ``memory (B, S, E)`` -> logits ``(B, T, V)`` (and
        ``AttentionWeights(decoder_self=..., cross=...)`` when ``return_attention``)."""
        return self.decoder(
            tgt_in, memory, src_key_padding_mask, caches=caches, return_attention=return_attention
        )

    def forward(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
        *,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, AttentionWeights]:
        """Teacher-forced forward: ``src (B, S)``, ``tgt_in (B, T)`` -> logits ``(B, T, V)``."""
        check_bool("return_attention", return_attention)
        if not return_attention:
            return self.decode(tgt_in, self.encode(src, src_key_padding_mask), src_key_padding_mask)
        memory, enc = self.encoder(src, src_key_padding_mask, return_attention=True)
        logits, dec = self.decode(tgt_in, memory, src_key_padding_mask, return_attention=True)
        return logits, AttentionWeights(
            encoder_self=enc.encoder_self, decoder_self=dec.decoder_self, cross=dec.cross
        )

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
        logits, attn = self.decode(
            tokens, state["memory"], state["src_mask"], caches=caches, return_attention=True
        )
        cross = attn.cross[-1][:, :, -1].mean(dim=1)  # (B, S)
        return torch.log_softmax(logits[:, -1], dim=-1), state, cross


class DecoderOnly(_Stack):
    """A decoder-only (GPT-style) language model: causal self-attention blocks, no encoder::

        x = Embed(tokens) (+ PE)                                (B, T, E)
        x = Block_l(x) for l = 1..num_layers                    EncoderLayer with causal=True
        logits = W_out LayerNorm(x)                             (B, T, V)

    ``DecoderOnly(vocab_size, d_model, num_heads, num_layers, *, d_ff=None, dropout=0.0,
    max_len=512, positional="sinusoidal", norm_first=True, num_kv_heads=None, activation="relu",
    bias=True, norm_eps=1e-5, scale_embedding=True, tie_weights=False)``, or
    ``DecoderOnly.from_config(DecoderOnlyConfig(...))``; ``model.config`` is its config.

    ``positional``: ``"sinusoidal"``/``"learned"`` add to the token embedding; ``"rope"`` rotates
    q, k in every layer; ``"alibi"`` adds ``-m_h |i - j|`` over the ``S = P + T`` keys (cache
    included); ``"none"`` adds nothing. Only ``"learned"`` is limited to ``max_len`` positions
    (``ValueError`` past it). ``num_kv_heads < num_heads`` gives grouped-query attention.
    ``activation`` is the FFN's (``"relu"``, ``"gelu"``, ``"gelu_tanh"``); ``bias`` applies to every
    ``nn.Linear`` in attention and FFN; ``norm_eps`` to every LayerNorm;
    ``scale_embedding=False`` drops the ``sqrt(d_model)`` factor of the token embedding;
    ``tie_weights=True`` makes the output projection share the token embedding matrix,
    ``logits = LayerNorm(x) E^T``, with no output bias. GPT-2 is ``positional="learned",
    activation="gelu_tanh", scale_embedding=False, tie_weights=True``.

    ``forward(tokens (B, T), *, key_padding_mask=None, caches=None, return_attention=False)``:
    ``key_padding_mask`` is boolean, True = a real token, with shape ``(B, S)`` for the ``S = P + T``
    keys (``(B, T)`` without caches). ``caches`` from :meth:`new_caches` (filled in place) hold
    ``P`` earlier steps; the new tokens get positions ``P .. P+T-1``. Returns the logits, or
    ``(logits, AttentionWeights(decoder_self=[(B, H, T, P+T) per layer]))``.
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
        options = dict(locals())
        self.config = DecoderOnlyConfig(**{k: v for k, v in options.items() if k not in ("self", "__class__")})
        self.vocab_size, self.d_model, self.num_heads = vocab_size, d_model, num_heads
        self.max_len, self.positional, self.norm_first = max_len, positional, norm_first
        self._build_stack(EncoderLayer, vocab_size, d_model, num_heads, num_layers, options)
        self._build_output(d_model, vocab_size, tie_weights)

    @classmethod
    def from_config(cls, config: DecoderOnlyConfig) -> DecoderOnly:
        """``DecoderOnly(**dataclasses.asdict(config))``."""
        require(
            isinstance(config, DecoderOnlyConfig),
            lambda: f"config must be a DecoderOnlyConfig, got {type(config).__name__}",
        )
        return cls(**asdict(config))

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, AttentionWeights]:
        """``tokens (B, T)`` -> logits ``(B, T, V)`` (and the weights, see the class docstring)."""
        check_bool("return_attention", return_attention)
        check_token_tensor("tokens", tokens)
        B, T = tokens.shape
        P = _check_caches(caches, len(self.layers))
        _check_padding(
            "key_padding_mask", key_padding_mask, B, P + T,
            "(B, P + T): every key, the cached ones included" if P else "tokens' shape", tokens.device,
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
        return (logits, AttentionWeights(decoder_self=weights)) if return_attention else logits
