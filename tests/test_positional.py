"""Tests of attnbook.positional against loops, explicit rotation matrices and the papers' values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    alibi_bias,
    alibi_slopes,
    sinusoidal_encoding,
)

# ---------------------------------------------------------------------------------------------
# sinusoidal
# ---------------------------------------------------------------------------------------------


def _sinusoidal_loop(P: int, d: int) -> torch.Tensor:
    pe = torch.zeros(P, d, dtype=torch.float64)
    for p in range(P):
        for i in range(d // 2):
            pe[p, 2 * i] = math.sin(p / 10000 ** (2 * i / d))
            pe[p, 2 * i + 1] = math.cos(p / 10000 ** (2 * i / d))
    return pe


def test_sinusoidal_matches_loop(device, dtype, tol):
    pe = sinusoidal_encoding(50, 16, dtype=dtype, device=device)
    assert pe.shape == (50, 16) and pe.dtype == dtype and pe.device.type == device.type
    torch.testing.assert_close(pe.cpu().double(), _sinusoidal_loop(50, 16), **tol)


def test_sinusoidal_default_float32_and_first_row():
    pe = sinusoidal_encoding(3, 4)
    assert pe.dtype == torch.float32
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))


@pytest.mark.parametrize(
    "args, name",
    [((10, 7), "dim"), ((0, 8), "num_positions"), ((10, 0), "dim"), ((-3, 8), "num_positions")],
)
def test_sinusoidal_bad_sizes(args, name):
    with pytest.raises(ValueError, match=name):
        sinusoidal_encoding(*args)


# ---------------------------------------------------------------------------------------------
# learned
# ---------------------------------------------------------------------------------------------


def test_learned_lookup_and_shape():
    torch.manual_seed(0)
    emb = LearnedPositionalEmbedding(10, 6)
    pos = torch.tensor([[0, 3, 9], [1, 1, 2]])
    out = emb(pos)
    assert out.shape == (2, 3, 6)
    for b in range(2):
        for t in range(3):
            assert torch.equal(out[b, t], emb.weight[pos[b, t]])
    assert 0.005 < emb.weight.std().item() < 0.05  # small N(0, 0.02^2) init
    out.sum().backward()
    assert emb.weight.grad is not None


@pytest.mark.parametrize(
    "positions", [torch.tensor([0, 10]), torch.tensor([-1, 2]), torch.tensor([0.0, 1.0])]
)
def test_learned_bad_positions(positions):
    emb = LearnedPositionalEmbedding(10, 4)
    with pytest.raises(ValueError, match="positions"):
        emb(positions)


def test_learned_position_range_is_a_data_check():
    from attnbook.utils import set_data_checks

    emb = LearnedPositionalEmbedding(10, 4)
    with pytest.raises(ValueError, match=r"positions must lie in \[0, max_positions=10\), got values in \[3, 12\]"):
        emb(torch.tensor([3, 12]))
    with set_data_checks(False):
        emb(torch.tensor([3, 9]))  # no check, no host read
    with pytest.raises(ValueError, match="positions"):
        emb(torch.tensor([3, 12]))  # back on after the block


def test_learned_bad_sizes():
    with pytest.raises(ValueError, match="max_positions"):
        LearnedPositionalEmbedding(0, 4)
    with pytest.raises(ValueError, match="dim"):
        LearnedPositionalEmbedding(4, -1)


# ---------------------------------------------------------------------------------------------
# rotary
# ---------------------------------------------------------------------------------------------


def _rope_loop(x: torch.Tensor, positions: list[int], base: float = 10000.0) -> torch.Tensor:
    """Apply an explicit 2x2 rotation matrix to every pair, position by position (float64)."""
    T, D = x.shape
    y = torch.empty_like(x, dtype=torch.float64)
    for t in range(T):
        for i in range(D // 2):
            a = positions[t] * base ** (-2 * i / D)
            R = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
            y[t, 2 * i : 2 * i + 2] = R @ x[t, 2 * i : 2 * i + 2].double()
    return y


def test_rope_matches_rotation_matrices(device, dtype, tol):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)                      # (B, H, T, D)
    positions = [0, 1, 2, 5, 9, 30, 100]
    rope = RotaryEmbedding(8)
    y = rope(x.to(device=device, dtype=dtype), torch.tensor(positions, device=device))
    assert y.shape == x.shape and y.dtype == dtype and y.device.type == device.type
    for b in range(2):
        for h in range(3):
            ref = _rope_loop(x[b, h].to(dtype).double(), positions)
            torch.testing.assert_close(y[b, h].cpu().double(), ref, **tol)


def test_rope_default_positions_and_norm():
    torch.manual_seed(0)
    x = torch.randn(5, 6, dtype=torch.float64)
    rope = RotaryEmbedding(6, base=100.0)
    torch.testing.assert_close(rope(x), _rope_loop(x, list(range(5)), base=100.0))
    torch.testing.assert_close(rope(x).norm(dim=-1), x.norm(dim=-1))     # rotations keep lengths
    assert torch.equal(rope(x)[0], x[0])                                   # position 0: identity


def test_rope_cache_per_dtype_and_growth():
    rope = RotaryEmbedding(4)
    x = torch.randn(3, 4, dtype=torch.float64)
    a = rope(x, torch.tensor([0, 1, 2]))
    b = rope(x.float(), torch.tensor([0, 1, 2]))                           # second table, float32
    c = rope(x, torch.tensor([500, 1, 2]))                                 # the table grows
    torch.testing.assert_close(b.double(), a, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(c[1:], a[1:])
    torch.testing.assert_close(c[0], _rope_loop(x[:1], [500])[0])


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(0, 200),
    n=st.integers(0, 200),
    shift=st.integers(0, 300),
    seed=st.integers(0, 2**16),
)
def test_rope_scores_depend_only_on_offset(m, n, shift, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 16, dtype=torch.float64, generator=g)
    k = torch.randn(1, 16, dtype=torch.float64, generator=g)
    rope = RotaryEmbedding(16)

    def score(a: int, b: int) -> torch.Tensor:
        return (rope(q, torch.tensor([a])) * rope(k, torch.tensor([b]))).sum()

    torch.testing.assert_close(score(m, n), score(m + shift, n + shift), rtol=1e-9, atol=1e-9)
    if n >= m:  # <R_m q, R_n k> = <q, R_{n-m} k>
        torch.testing.assert_close(score(m, n), score(0, n - m), rtol=1e-9, atol=1e-9)


def test_rope_bad_input():
    rope = RotaryEmbedding(8)
    with pytest.raises(ValueError, match="x must have shape"):
        rope(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="positions"):
        rope(torch.randn(2, 3, 8), torch.arange(4))
    with pytest.raises(ValueError, match="positions must be an integer tensor"):
        rope(torch.randn(2, 3, 8), torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="x must be a floating point tensor"):
        rope(torch.arange(24).reshape(3, 8))  # an integer x would be silently truncated
    with pytest.raises(ValueError, match="dim"):
        RotaryEmbedding(7)


def test_rope_negative_positions_rotate_backwards():
    """Any integer position is a rotation: R_{-m} = R_m^T undoes R_m, and scores still depend
    only on the offset (so RoPE needs no range check, and reads no value back to the host)."""
    rope = RotaryEmbedding(8)
    x = torch.randn(3, 8, dtype=torch.float64)
    p = torch.tensor([0, 7, 300])
    torch.testing.assert_close(rope(rope(x, p), -p), x)
    torch.testing.assert_close(rope(x, -p), _rope_loop(x, (-p).tolist()))


def test_rope_half_precision_is_rotated_in_float32():
    rope = RotaryEmbedding(8)
    x = torch.randn(5, 8, dtype=torch.float64)
    p = torch.tensor([0, 1, 2, 1000, 4000])
    ref = _rope_loop(x.half().double(), p.tolist())
    y = rope(x.half(), p)
    assert y.dtype == torch.float16
    # one float16 rounding of the float32 result, not a rotation computed in float16
    torch.testing.assert_close(y.double(), ref, rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# ALiBi
# ---------------------------------------------------------------------------------------------


def test_alibi_slopes_eight_heads_paper_values():
    expected = torch.tensor([1 / 2**h for h in range(1, 9)], dtype=torch.float64)
    torch.testing.assert_close(alibi_slopes(8, dtype=torch.float64), expected, rtol=0, atol=0)
    torch.testing.assert_close(
        alibi_slopes(4, dtype=torch.float64), torch.tensor([1 / 4, 1 / 16, 1 / 64, 1 / 256], dtype=torch.float64)
    )


@pytest.mark.parametrize(
    "n, expected",
    [
        # closest power of two (4): 2^-2, 2^-4, 2^-6, 2^-8; then 1st, 3rd of the 8-head sequence
        (6, [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]),
        # 8 heads' slopes, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5 from the 16-head sequence
        (12, [2.0**-h for h in range(1, 9)] + [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5]),
        (1, [2**-8]),
        (3, [2**-4, 2**-8, 2**-2]),
    ],
)
def test_alibi_slopes_not_power_of_two(n, expected):
    torch.testing.assert_close(
        alibi_slopes(n, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64)
    )


@pytest.mark.parametrize("T, S", [(5, 5), (1, 6), (3, 7)])
def test_alibi_bias_matches_loop(T, S, device, dtype, tol):
    H = 4
    bias = alibi_bias(H, T, S, dtype=dtype, device=device)
    assert bias.shape == (H, T, S) and bias.dtype == dtype and bias.device.type == device.type
    ref = torch.empty(H, T, S, dtype=torch.float64)
    slopes = [1 / 4, 1 / 16, 1 / 64, 1 / 256]
    for h in range(H):
        for i in range(T):
            qpos = i + S - T
            for j in range(S):
                ref[h, i, j] = -slopes[h] * abs(qpos - j)
                if j <= qpos:                                            # the paper's causal form
                    assert ref[h, i, j] == -slopes[h] * (qpos - j)
    torch.testing.assert_close(bias.cpu().double(), ref, **tol)


def test_alibi_bias_last_rows_equal_cached_queries():
    full = alibi_bias(3, 9, 9)
    for t in range(9):
        torch.testing.assert_close(alibi_bias(3, 1, t + 1), full[:, t : t + 1, : t + 1])


def test_alibi_bad_input():
    with pytest.raises(ValueError, match="num_heads"):
        alibi_slopes(0)
    with pytest.raises(ValueError, match="T"):
        alibi_bias(2, 5, 3)
    with pytest.raises(ValueError, match="S"):
        alibi_bias(2, 1, 0)
