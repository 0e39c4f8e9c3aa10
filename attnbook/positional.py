"""Positional information for attention, which on its own is blind to order.

Four schemes, from the oldest to the newest:

* ``sinusoidal_encoding`` — fixed sines and cosines added to the token embeddings
  (Vaswani et al., 2017);
* ``LearnedPositionalEmbedding`` — one trained vector per absolute position (GPT, BERT);
* ``RotaryEmbedding`` — rotate queries and keys by an angle proportional to their position, so
  that their dot product depends only on the offset between them (RoFormer, Su et al., 2021);
* ``alibi_bias`` — no embedding at all: a per-head linear penalty on the query-key distance added
  to the attention scores (ALiBi, Press et al., 2022).
"""

from __future__ import annotations

import torch
from torch import nn

from ._validate import check_ndim, require, shape_of

__all__ = [
    "sinusoidal_encoding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "alibi_slopes",
    "alibi_bias",
]


def _check_positive_int(name: str, value: int) -> None:
    require(
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        f"{name} must be a positive int, got {value!r}",
    )


def _check_positions(name: str, positions: torch.Tensor, upper: int | None = None) -> None:
    """Integer positions, non-negative and (when ``upper`` is given) below ``upper``."""
    require(isinstance(positions, torch.Tensor), f"{name} must be a torch.Tensor, got {type(positions).__name__}")
    require(
        not positions.is_floating_point() and not positions.is_complex() and positions.dtype != torch.bool,
        f"{name} must be an integer tensor, got dtype {positions.dtype} with shape {shape_of(positions)}",
    )
    if positions.numel() == 0:
        return
    lo, hi = int(positions.min()), int(positions.max())
    require(lo >= 0, f"{name} must be non-negative, got min {lo} (shape {shape_of(positions)})")
    if upper is not None:
        require(
            hi < upper,
            f"{name} must be < max_positions={upper}, got max {hi} (shape {shape_of(positions)})",
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
    """
    _check_positive_int("num_positions", num_positions)
    _check_positive_int("dim", dim)
    require(dim % 2 == 0, f"dim must be even (sines and cosines come in pairs), got {dim}")
    require(base > 0, f"base must be positive, got {base!r}")
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
    token embeddings, exactly like the sinusoidal table). A position ``>= max_positions`` raises
    ``ValueError``: a learned table cannot extrapolate. Weights start as ``N(0, init_std^2)``.
    """

    def __init__(self, max_positions: int, dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        _check_positive_int("max_positions", max_positions)
        _check_positive_int("dim", dim)
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

    ``forward(x, positions=None)``: ``x`` is ``(..., T, D)`` with ``D == dim``; ``positions`` is an
    integer tensor ``(T,)`` (default ``arange(T)``). Returns a tensor shaped like ``x``. An instance
    can be passed as ``rope=`` to ``attnbook.MultiHeadAttention``. The cos/sin tables are computed
    once in float64 for the largest position seen so far and kept per (device, dtype).
    """

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        _check_positive_int("dim", dim)
        require(dim % 2 == 0, f"dim must be even (RoPE rotates pairs), got {dim}")
        require(base > 0, f"base must be positive, got {base!r}")
        self.dim = dim
        self.base = float(base)
        self._length = 0                                                  # rows in the tables
        self._tables: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def theta(self) -> torch.Tensor:
        """The rotation frequencies ``theta_i = base^(-2i/dim)``, float64 ``(dim/2,)``."""
        return self.base ** (-torch.arange(0, self.dim, 2, dtype=torch.float64) / self.dim)

    def _cos_sin(self, length: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin`` of ``m * theta_i`` for ``m < length``, each ``(>= length, dim/2)``."""
        if length > self._length:
            self._length = 1 << max(length - 1, 0).bit_length()          # grow to a power of two
            self._tables.clear()
        key = (device, dtype)
        if key not in self._tables:
            m = torch.arange(self._length, dtype=torch.float64)[:, None]  # (L, 1)
            angle = m * self.theta[None, :]                               # (L, dim/2)
            self._tables[key] = (
                angle.cos().to(device=device, dtype=dtype),
                angle.sin().to(device=device, dtype=dtype),
            )
        return self._tables[key]

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        require(isinstance(x, torch.Tensor), f"x must be a torch.Tensor, got {type(x).__name__}")
        require(
            x.dim() >= 2 and x.shape[-1] == self.dim,
            f"x must have shape (..., T, {self.dim}) (dim={self.dim}), got shape {shape_of(x)}",
        )
        T = x.shape[-2]
        if positions is None:
            positions = torch.arange(T, device=x.device)
        check_ndim("positions", positions, 1)
        require(
            positions.shape[0] == T,
            f"positions must have shape ({T},) to match x's T, got shape {shape_of(positions)} "
            f"with x of shape {shape_of(x)}",
        )
        _check_positions("positions", positions)
        length = int(positions.max()) + 1 if T > 0 else 0
        cos, sin = self._cos_sin(length, x.device, x.dtype)
        positions = positions.to(cos.device)
        cos, sin = cos[positions], sin[positions]                        # (T, D/2)
        x1, x2 = x[..., 0::2], x[..., 1::2]                               # (..., T, D/2)
        y1 = x1 * cos - x2 * sin
        y2 = x1 * sin + x2 * cos
        return torch.stack((y1, y2), dim=-1).flatten(-2)                  # (..., T, D)

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
    """
    _check_positive_int("num_heads", num_heads)
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
    must combine it with a causal mask, which removes those entries anyway.
    """
    _check_positive_int("num_heads", num_heads)
    _check_positive_int("T", T)
    _check_positive_int("S", S)
    require(T <= S, f"T must be <= S (queries are aligned to the end of the keys), got T={T}, S={S}")
    m = alibi_slopes(num_heads, dtype=torch.float64)                      # (H,)
    i = torch.arange(T, dtype=torch.float64)[:, None] + (S - T)           # (T, 1) query positions
    j = torch.arange(S, dtype=torch.float64)[None, :]                     # (1, S) key positions
    distance = (i - j).abs()                                              # (T, S)
    bias = -m[:, None, None] * distance                                   # (H, T, S)
    return bias.to(device=device, dtype=dtype)
