"""Positional information for attention, which on its own is blind to order.

Four schemes, from the oldest to the newest:

* ``sinusoidal_encoding`` — fixed sines and cosines added to the token embeddings
  (Vaswani et al., 2017);
* ``LearnedPositionalEmbedding`` — one trained vector per absolute position (GPT, BERT);
* ``RotaryEmbedding`` — rotate queries and keys by an angle proportional to their position, so
  that their dot product depends only on the offset between them (RoFormer, Su et al., 2021);
* ``alibi_bias`` — no embedding at all: a per-head linear penalty on the query-key distance added
  to the attention scores (ALiBi, Press et al., 2022).

:class:`PositionalScheme` packages the four (and ``"none"``) for the models of
:mod:`attnbook.transformer`, with every table built once and sliced afterwards.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ._validate import check_ndim, check_positive_int, data_checks, require, shape_of

__all__ = [
    "sinusoidal_encoding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "alibi_slopes",
    "alibi_bias",
    "POSITIONAL_SCHEMES",
    "PositionalScheme",
]

Positional = Literal["sinusoidal", "learned", "rope", "alibi", "none"]
POSITIONAL_SCHEMES: tuple[str, ...] = ("sinusoidal", "learned", "rope", "alibi", "none")


def _check_integer_tensor(name: str, positions: torch.Tensor) -> None:
    require(isinstance(positions, torch.Tensor), lambda: f"{name} must be a torch.Tensor, got {type(positions).__name__}")
    require(
        not positions.is_floating_point() and not positions.is_complex() and positions.dtype != torch.bool,
        lambda: f"{name} must be an integer tensor, got dtype {positions.dtype} with shape {shape_of(positions)}",
    )


def _check_positions(name: str, positions: torch.Tensor, upper: int) -> None:
    """Integer positions in ``[0, upper)``; the range is a data check (it reads the values, one
    host synchronisation, and only while :func:`attnbook._validate.data_checks` is on)."""
    _check_integer_tensor(name, positions)
    if positions.numel() == 0 or not data_checks():
        return
    if bool(((positions < 0) | (positions >= upper)).any()):
        lo, hi = int(positions.min()), int(positions.max())
        raise ValueError(
            f"{name} must lie in [0, max_positions={upper}), got values in [{lo}, {hi}] "
            f"(shape {shape_of(positions)})"
        )


# ---------------------------------------------------------------------------------------------
# Sinusoidal (Vaswani et al., 2017)
# ---------------------------------------------------------------------------------------------


def sinusoidal_encoding(
    num_positions: int,
    dim: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The fixed sinusoidal table of "Attention is all you need".

    ``PE[p, 2i] = sin(p / base^(2i/dim))`` and ``PE[p, 2i+1] = cos(p / base^(2i/dim))``, with
    ``base = 10000``. Computed in float64 and cast to ``dtype``. Returns ``(num_positions, dim)``.

    Equivalent to::

        angle = torch.arange(num_positions)[:, None] / base ** (torch.arange(0, dim, 2) / dim)
        torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(1)
    """
    check_positive_int("num_positions", num_positions)
    check_positive_int("dim", dim)
    require(dim % 2 == 0, lambda: f"dim must be even (sines and cosines come in pairs), got {dim}")
    require(base > 0, lambda: f"base must be positive, got {base!r}")
    p = torch.arange(num_positions, dtype=torch.float64)[:, None]        # (P, 1)
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)[None, :]        # (1, dim/2)
    angle = p / base ** (two_i / dim)                                    # (P, dim/2)
    pe = torch.empty(num_positions, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe.to(device=device, dtype=dtype)                             # (P, dim)


# ---------------------------------------------------------------------------------------------
# Learned absolute positions
# ---------------------------------------------------------------------------------------------


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per absolute position ``0 .. max_positions - 1``.

    ``forward(positions)`` takes an integer tensor of positions of any shape ``(...)`` and returns
    their vectors ``(..., dim)``; it does not add them to anything (the caller adds them to the
    token embeddings, exactly like the sinusoidal table). A position outside
    ``[0, max_positions)`` raises ``ValueError`` (a learned table cannot extrapolate); that check
    reads the values, so it is a data check (see :func:`attnbook.utils.set_data_checks`).
    Weights start as ``N(0, init_std^2)``. Equivalent to ``self.weight[positions]``.
    """

    def __init__(self, max_positions: int, dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        check_positive_int("max_positions", max_positions)
        check_positive_int("dim", dim)
        self.max_positions = max_positions
        self.dim = dim
        self.weight = nn.Parameter(torch.empty(max_positions, dim))
        nn.init.normal_(self.weight, std=init_std)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        _check_positions("positions", positions, upper=self.max_positions)
        return self.weight[positions]                                     # (..., dim)

    def extra_repr(self) -> str:
        return f"max_positions={self.max_positions}, dim={self.dim}"


# ---------------------------------------------------------------------------------------------
# Rotary position embedding (Su et al., 2021)
# ---------------------------------------------------------------------------------------------


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE).

    The last dimension of ``x`` is read as ``D/2`` pairs ``(x_{2i}, x_{2i+1})``; the pair at
    position ``m`` is rotated by the angle ``m * theta_i`` with ``theta_i = base^(-2i/D)``::

        [y_{2i}  ]   [cos m theta_i   -sin m theta_i] [x_{2i}  ]
        [y_{2i+1}] = [sin m theta_i    cos m theta_i] [x_{2i+1}]

    Rotations compose, so ``<R_m q, R_n k> = <q, R_{n-m} k>``: the score of a rotated query and
    a rotated key depends on their positions only through ``n - m``.

    ``forward(x, positions=None)``: ``x`` is a floating point ``(..., T, D)`` with ``D == dim``;
    ``positions`` is an integer tensor ``(T,)`` (default ``arange(T)``), any integers (a negative
    position rotates backwards: ``rope(rope(x, p), -p) == x``). Returns a tensor shaped like
    ``x``. An instance can be passed as ``rope=`` to ``attnbook.MultiHeadAttention``.

    The angles ``m theta_i`` are computed on the device of ``x`` from the positions themselves,
    in float64 (float32 on MPS, which has no float64), so no table has to be sized from the
    largest position: no value is read back to the host, and ``torch.compile`` sees one graph.
    float16/bfloat16 ``x`` is rotated in float32 and returned in its dtype.

    Equivalent to (``x1, x2 = x[..., 0::2], x[..., 1::2]``, ``a = positions[:, None] * theta``)::

        torch.stack((x1 * a.cos() - x2 * a.sin(), x1 * a.sin() + x2 * a.cos()), -1).flatten(-2)
    """

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        check_positive_int("dim", dim)
        require(dim % 2 == 0, lambda: f"dim must be even (RoPE rotates pairs), got {dim}")
        require(base > 0, lambda: f"base must be positive, got {base!r}")
        self.dim = dim
        self.base = float(base)

    @property
    def theta(self) -> torch.Tensor:
        """The rotation frequencies ``theta_i = base^(-2i/dim)``, float64 ``(dim/2,)``."""
        return self.base ** (-torch.arange(0, self.dim, 2, dtype=torch.float64) / self.dim)

    def _cos_sin(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin`` of ``m * theta_i`` for each position ``m``, each ``(T, dim/2)`` in ``dtype``."""
        exact = torch.float32 if positions.device.type == "mps" else torch.float64
        i2 = torch.arange(0, self.dim, 2, dtype=exact, device=positions.device)  # (dim/2,)
        theta = self.base ** (-i2 / self.dim)                                  # (dim/2,)
        angle = positions.to(exact)[:, None] * theta[None, :]                  # (T, dim/2)
        return angle.cos().to(dtype), angle.sin().to(dtype)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        require(isinstance(x, torch.Tensor), lambda: f"x must be a torch.Tensor, got {type(x).__name__}")
        require(
            x.is_floating_point(),
            lambda: f"x must be a floating point tensor (RoPE rotates real vectors), got dtype {x.dtype} "
            f"with shape {shape_of(x)}",
        )
        require(
            x.dim() >= 2 and x.shape[-1] == self.dim,
            lambda: f"x must have shape (..., T, {self.dim}) (dim={self.dim}), got shape {shape_of(x)}",
        )
        T = x.shape[-2]
        if positions is None:
            positions = torch.arange(T, device=x.device)
        _check_integer_tensor("positions", positions)
        check_ndim("positions", positions, 1)
        require(
            positions.shape[0] == T,
            lambda: f"positions must have shape ({T},) to match x's T, got shape {shape_of(positions)} "
            f"with x of shape {shape_of(x)}",
        )
        work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        cos, sin = self._cos_sin(positions.to(x.device), work)           # (T, D/2) each
        x1, x2 = x[..., 0::2].to(work), x[..., 1::2].to(work)             # (..., T, D/2)
        y1 = x1 * cos - x2 * sin
        y2 = x1 * sin + x2 * cos
        return torch.stack((y1, y2), dim=-1).flatten(-2).to(x.dtype)      # (..., T, D)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base:g}"


# ---------------------------------------------------------------------------------------------
# ALiBi (Press et al., 2022)
# ---------------------------------------------------------------------------------------------


def _power_of_two_slopes(n: int) -> list[float]:
    """``m_h = 2^(-8h/n)`` for ``h = 1 .. n`` (a geometric sequence starting at ``2^(-8/n)``)."""
    return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]


def alibi_slopes(
    num_heads: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The per-head slopes of ALiBi, ``(num_heads,)``.

    For ``n`` heads with ``n`` a power of two: ``m_h = 2^(-8h/n)``, ``h = 1 .. n`` (8 heads give
    1/2, 1/4, ..., 1/256). Otherwise, as in the paper: the slopes for the closest lower power of
    two ``k``, followed by every other slope (the 1st, 3rd, ...) of the ``2k`` sequence until
    there are ``n``.

    Equivalent to ``2.0 ** (-8.0 * torch.arange(1, n + 1) / n)`` when ``n`` is a power of two.
    """
    check_positive_int("num_heads", num_heads)
    k = 1 << (num_heads.bit_length() - 1)                                 # largest power of 2 <= n
    slopes = _power_of_two_slopes(k)
    if k < num_heads:
        slopes += _power_of_two_slopes(2 * k)[0::2][: num_heads - k]
    return torch.tensor(slopes, dtype=torch.float64).to(device=device, dtype=dtype)


def alibi_bias(
    num_heads: int,
    T: int,
    S: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The ALiBi attention bias ``(num_heads, T, S)``, added to the scores before the softmax.

    ``bias[h, i, j] = -m_h * |(i + S - T) - j|``: queries are aligned to the END of the keys,
    so query ``i`` sits at position ``i + S - T`` (with a KV cache holding ``S - T`` earlier keys,
    the ``T`` new queries are the last ``T`` positions). For keys in the past (``j <= i + S - T``)
    this is exactly the paper's linear penalty on the distance. For keys in the future it gives
    the same penalty on the absolute distance (a symmetric bias, usable in an encoder); a decoder
    must combine it with a causal mask, which removes those entries anyway. Computed in float64
    on the CPU and cast to ``dtype`` on ``device``.

    Equivalent to ``-alibi_slopes(H)[:, None, None] * (torch.arange(S - T, S)[:, None] -
    torch.arange(S)[None, :]).abs()``.
    """
    check_positive_int("num_heads", num_heads)
    check_positive_int("T", T)
    check_positive_int("S", S)
    require(T <= S, lambda: f"T must be <= S (queries are aligned to the end of the keys), got T={T}, S={S}")
    m = alibi_slopes(num_heads, dtype=torch.float64)                      # (H,)
    i = torch.arange(T, dtype=torch.float64)[:, None] + (S - T)           # (T, 1) query positions
    j = torch.arange(S, dtype=torch.float64)[None, :]                     # (1, S) key positions
    distance = (i - j).abs()                                              # (T, S)
    bias = -m[:, None, None] * distance                                   # (H, T, S)
    return bias.to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# the scheme of a model
# ---------------------------------------------------------------------------------------------


def _next_power_of_two(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


class PositionalScheme(nn.Module):
    """One of :data:`POSITIONAL_SCHEMES` for a stream of ``d_model``-dim vectors with ``num_heads``.

    * :meth:`add` — ``x + PE[P .. P+T-1]`` for ``"sinusoidal"`` / ``"learned"``, else ``x``;
    * :attr:`rope` — the :class:`RotaryEmbedding` (head dim) to pass to attention, or ``None``;
    * :meth:`bias` — the ALiBi bias ``(H, T, S)`` for ``T`` queries over ``S`` keys, or ``None``.

    Every table is built once and sliced with host integers (the offset ``P`` is a cache length
    the host knows), so a forward pass reads no tensor value back and adds no kernel to build
    positions: the sinusoidal table is a non-persistent buffer (not in the ``state_dict``; it
    follows ``.to()``), grown in float64 when a longer input comes; the ALiBi bias is kept per
    (device, dtype) as one ``(H, L, L)`` table, ``L`` a power of two ``>= S``, whose rows
    ``S-T .. S-1`` and columns ``0 .. S-1`` are exactly ``alibi_bias(H, T, S)``. ``"learned"`` has
    ``max_len`` rows and raises ``ValueError`` past them (a check on host integers); the other
    schemes have no length limit.
    """

    def __init__(self, kind: str, d_model: int, num_heads: int, max_len: int) -> None:
        super().__init__()
        require(
            kind in POSITIONAL_SCHEMES,
            lambda: f"positional must be one of {POSITIONAL_SCHEMES}, got {kind!r}",
        )
        check_positive_int("d_model", d_model)
        check_positive_int("num_heads", num_heads)
        check_positive_int("max_len", max_len)
        self.kind, self.d_model, self.num_heads, self.max_len = kind, d_model, num_heads, max_len
        self.learned: LearnedPositionalEmbedding | None = None
        self.rope: RotaryEmbedding | None = None
        self._alibi: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        if kind == "sinusoidal":
            require(d_model % 2 == 0, lambda: f"d_model must be even for sinusoidal positions, got {d_model}")
            self.register_buffer("table", sinusoidal_encoding(max_len, d_model), persistent=False)
        elif kind == "learned":
            # N(0, 1/2): the same per-coordinate mean square as a sinusoid (sin^2 + cos^2 = 1)
            self.learned = LearnedPositionalEmbedding(max_len, d_model, init_std=0.5**0.5)
        elif kind == "rope":
            d_head = d_model // num_heads
            require(d_head % 2 == 0, lambda: f"d_model // num_heads must be even for rope, got {d_head}")
            self.rope = RotaryEmbedding(d_head)

    def add(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``x (B, T, E) + PE[offset .. offset+T-1]`` for additive schemes; ``x`` otherwise."""
        T = x.shape[1]
        if self.kind == "sinusoidal":
            if offset + T > self.table.shape[0]:  # beyond the precomputed table: grow it
                size = max(offset + T, 2 * self.table.shape[0])
                self.table = sinusoidal_encoding(size, self.d_model, device=x.device, dtype=self.table.dtype)
            pe = self.table[offset : offset + T]  # (T, E)
            return x + pe.to(dtype=x.dtype)[None]  # (B, T, E)
        if self.kind == "learned":
            require(
                offset + T <= self.max_len,
                lambda: f"learned positions exist only below max_len={self.max_len}, but the input needs "
                f"positions {offset}..{offset + T - 1} (input shape {shape_of(x)}, cache length "
                f"{offset}); use a larger max_len or a scheme that extrapolates",
            )
            pe = self.learned.weight[offset : offset + T]  # (T, E), rows offset .. offset+T-1
            return x + pe.to(dtype=x.dtype)[None]  # (B, T, E)
        return x

    def bias(self, T: int, S: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """ALiBi's ``-m_h |i - j|`` for the last ``T`` of ``S`` positions, ``(H, T, S)``; else None.

        A view of the cached ``(H, L, L)`` table for ``(device, dtype)``: built on first use (and
        again, twice as long, when ``S`` outgrows it), never per forward pass.
        """
        if self.kind != "alibi":
            return None
        key = (torch.device(device), dtype)
        table = self._alibi.get(key)
        if table is None or table.shape[-1] < S:
            L = _next_power_of_two(max(S, 64))
            table = alibi_bias(self.num_heads, L, L, device=device, dtype=dtype)  # (H, L, L)
            self._alibi[key] = table
        return table[:, S - T : S, :S]  # (H, T, S)

    def _apply(self, fn, recurse=True):  # .to(), .cuda(), .half(): drop tables built elsewhere
        self._alibi.clear()
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, max_len={self.max_len}"
