"""Tests of attnbook.functional against float64 brute-force loops and PyTorch's own attention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import close, randn, softmax_loop
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.functional import (
    additive_score,
    causal_mask,
    dot_score,
    flash_attention,
    general_score,
    key_padding_to_attn_mask,
    masked_softmax,
    padding_mask,
    scaled_dot_product_attention,
    scaled_dot_score,
)

# ---------------------------------------------------------------------------------------------
# float64 brute-force references (plain Python loops over the query/key indices)
# ---------------------------------------------------------------------------------------------


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(..., T, D) -> (N, T, D) in float64 on the CPU."""
    return x.detach().cpu().double().reshape(-1, *x.shape[-2:])


def _loop_scores(q, k, score) -> torch.Tensor:
    """``out[n, t, s] = score(q[n, t], k[n, s])`` for every pair, one pair at a time."""
    q3, k3 = _rows(q), _rows(k)
    out = torch.zeros(q3.shape[0], q3.shape[1], k3.shape[1], dtype=torch.float64)
    for n in range(q3.shape[0]):
        for t in range(q3.shape[1]):
            for s in range(k3.shape[1]):
                out[n, t, s] = score(q3[n, t], k3[n, s])
    return out.reshape(*q.shape[:-1], k.shape[-2])


def _loop_attention(q, k, v, mask=None, causal=False, scale=None, bias=None):
    """Attention one query at a time in float64; returns (out (..., T, Dv), weights (..., T, S))."""
    T, S, D = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    lead = q.shape[:-2]
    keep = torch.ones(*lead, T, S, dtype=torch.bool) if mask is None else mask.cpu().expand(*lead, T, S)
    b = torch.zeros(*lead, T, S, dtype=torch.float64) if bias is None else bias.cpu().double().expand(*lead, T, S)
    q3, k3, v3 = _rows(q), _rows(k), _rows(v)
    keep3, b3 = keep.reshape(-1, T, S), b.reshape(-1, T, S)
    out = torch.zeros(q3.shape[0], T, v.shape[-1], dtype=torch.float64)
    w = torch.zeros(q3.shape[0], T, S, dtype=torch.float64)
    for n in range(q3.shape[0]):
        for t in range(T):
            row = [float(q3[n, t] @ k3[n, s]) * scale + float(b3[n, t, s]) for s in range(S)]
            ok = [bool(keep3[n, t, s]) and (not causal or s <= t + S - T) for s in range(S)]
            a = softmax_loop(row, ok)
            for s in range(S):
                w[n, t, s] = a[s]
                out[n, t] += a[s] * v3[n, s]
    return out.reshape(*lead, T, v.shape[-1]), w.reshape(*lead, T, S)


# ---------------------------------------------------------------------------------------------
# score functions
# ---------------------------------------------------------------------------------------------


def test_dot_and_scaled_dot_score_match_loop(device, dtype, tol):
    q = randn(2, 3, 4, 8, device=device, dtype=dtype, seed=1)  # (B, H, T, D)
    k = randn(2, 3, 5, 8, device=device, dtype=dtype, seed=2)  # (B, H, S, D)
    ref = _loop_scores(q, k, lambda a, b: float(a @ b))
    close(dot_score(q, k), ref, tol)
    close(scaled_dot_score(q, k), ref / math.sqrt(8), tol)
    close(scaled_dot_score(q, k, scale=0.3), ref * 0.3, tol)
    assert dot_score(q, k).dtype == dtype and dot_score(q, k).shape == (2, 3, 4, 5)


def test_general_score_matches_loop(device, dtype, tol):
    q = randn(2, 4, 6, device=device, dtype=dtype, seed=3)  # (B, T, Dq)
    k = randn(2, 5, 3, device=device, dtype=dtype, seed=4)  # (B, S, Dk)
    W = randn(6, 3, device=device, dtype=dtype, seed=5)  # (Dq, Dk)
    W64 = W.cpu().double()
    ref = _loop_scores(q, k, lambda a, b: float(a @ W64 @ b))
    close(general_score(q, k, W), ref, tol)


@pytest.mark.parametrize("v_shape", [(7,), (1, 7)])
def test_additive_score_matches_loop(device, dtype, tol, v_shape):
    q = randn(2, 3, 4, device=device, dtype=dtype, seed=6)  # (B, T, Dq)
    k = randn(2, 5, 6, device=device, dtype=dtype, seed=7)  # (B, S, Dk)
    W_q = randn(7, 4, device=device, dtype=dtype, seed=8)  # (Dh, Dq)
    W_k = randn(7, 6, device=device, dtype=dtype, seed=9)  # (Dh, Dk)
    v = randn(*v_shape, device=device, dtype=dtype, seed=10)
    Wq64, Wk64, v64 = W_q.cpu().double(), W_k.cpu().double(), v.cpu().double().reshape(-1)
    ref = _loop_scores(q, k, lambda a, b: float(v64 @ torch.tanh(Wq64 @ a + Wk64 @ b)))
    close(additive_score(q, k, W_q, W_k, v), ref, tol)


def test_luong_concat_is_additive_with_split_matrix():
    """``vᵀ tanh(W_a [q; k])`` equals the additive score with ``W_a = [W_q | W_k]``."""
    q, k = randn(2, 3, 4, device="cpu", dtype=torch.float64), randn(2, 5, 6, device="cpu", dtype=torch.float64, seed=1)
    W_a, v = randn(7, 10, device="cpu", dtype=torch.float64, seed=2), randn(7, device="cpu", dtype=torch.float64, seed=3)
    ref = _loop_scores(q, k, lambda a, b: float(v @ torch.tanh(W_a @ torch.cat((a, b)))))
    torch.testing.assert_close(additive_score(q, k, W_a[:, :4], W_a[:, 4:], v), ref)


# ---------------------------------------------------------------------------------------------
# masked softmax
# ---------------------------------------------------------------------------------------------


def test_masked_softmax_matches_loop(device, dtype, tol):
    scores = randn(3, 4, 6, device=device, dtype=dtype, seed=11) * 3
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(3, 4, 6, generator=g) > 0.4).to(device)
    mask[1, 2] = False  # one fully masked row
    a = masked_softmax(scores, mask)
    assert a.dtype == dtype
    s64, m = scores.cpu().double(), mask.cpu()
    ref = torch.tensor(
        [[softmax_loop(s64[b, t].tolist(), m[b, t].tolist()) for t in range(4)] for b in range(3)],
        dtype=torch.float64,
    )
    close(a, ref, tol)
    assert bool((a[1, 2] == 0).all())


def test_masked_softmax_other_dim_and_no_mask():
    scores = randn(4, 5, device="cpu", dtype=torch.float64, seed=12)
    torch.testing.assert_close(masked_softmax(scores), torch.softmax(scores, -1))
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[0, 1] = mask[3, 1] = False
    a = masked_softmax(scores, mask, dim=0)
    ref = masked_softmax(scores.T, mask.T).T
    torch.testing.assert_close(a, ref)
    torch.testing.assert_close(a.sum(0), torch.ones(5, dtype=torch.float64))


def test_masked_softmax_extreme_logits_are_stable():
    scores = torch.tensor([[1e30, -1e30, 0.0, 5.0], [-1e30, -1e30, -1e30, -1e30], [1e30, 1e30, -1e30, 2.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True], [False, True, True, True]])
    a = masked_softmax(scores, mask)
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a[0], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(a[1], torch.full((4,), 0.25))
    torch.testing.assert_close(a[2], torch.tensor([0.0, 1.0, 0.0, 0.0]))


def test_masked_softmax_fully_masked_row_zero_output_and_grad():
    scores = randn(2, 3, 5, device="cpu", dtype=torch.float64, seed=13).requires_grad_(True)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[0, 1] = False
    mask[1, 0, 2:] = False
    a = masked_softmax(scores, mask)
    (a * randn(2, 3, 5, device="cpu", dtype=torch.float64, seed=14)).sum().backward()
    assert bool((a[0, 1] == 0).all()) and torch.isfinite(a).all()
    assert torch.isfinite(scores.grad).all()
    assert bool((scores.grad[0, 1] == 0).all())  # fully masked row: zero gradient
    assert bool((scores.grad[1, 0, 2:] == 0).all())  # masked entries: zero gradient
    assert bool((scores.grad[1, 0, :2] != 0).any())


@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(1, 4),
    n=st.integers(1, 7),
    mag=st.sampled_from([1e-3, 1.0, 50.0, 1e4]),
    seed=st.integers(0, 2**16),
)
def test_masked_softmax_rows_sum_to_one(rows, n, mag, seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(rows, n, generator=g) * mag
    mask = torch.rand(rows, n, generator=g) > 0.5
    a = masked_softmax(scores, mask)
    assert torch.isfinite(a).all() and bool((a >= 0).all())
    assert bool((a[~mask] == 0).all())
    has_key = mask.any(-1)
    torch.testing.assert_close(a.sum(-1)[has_key], torch.ones(int(has_key.sum())))
    assert bool((a.sum(-1)[~has_key] == 0).all())


# ---------------------------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T,S", [(4, 4), (2, 5), (5, 2), (1, 6), (3, 0)])
def test_causal_mask_bottom_right(T, S):
    m = causal_mask(T, S)
    assert m.shape == (T, S) and m.dtype == torch.bool
    ref = torch.tensor([[j <= i + S - T for j in range(S)] for i in range(T)], dtype=torch.bool).reshape(T, S)
    assert torch.equal(m, ref)
    if T == S:
        assert torch.equal(m, torch.ones(T, T, dtype=torch.bool).tril())
        assert torch.equal(causal_mask(T), m)


def test_padding_mask_and_attn_mask():
    lengths = torch.tensor([3, 0, 5])
    m = padding_mask(lengths, 5)
    ref = torch.tensor([[s < n for s in range(5)] for n in (3, 0, 5)])
    assert torch.equal(m, ref)
    am = key_padding_to_attn_mask(m)
    assert am.shape == (3, 1, 1, 5) and torch.equal(am.expand(3, 2, 4, 5)[:, 1, 2], m)


# ---------------------------------------------------------------------------------------------
# scaled dot-product attention
# ---------------------------------------------------------------------------------------------


def _masks(B, H, T, S, device):
    g = torch.Generator().manual_seed(7)
    lengths = torch.tensor([S, max(S - 2, 1)][:B])
    return {
        "none": None,
        "T,S": (torch.rand(T, S, generator=g) > 0.3).to(device) | causal_mask(T, S, device=device),
        "key_padding": key_padding_to_attn_mask(padding_mask(lengths, S)).to(device),
        "B,H,T,S": (torch.rand(B, H, T, S, generator=g) > 0.3).to(device) | causal_mask(T, S, device=device),
    }


@pytest.mark.parametrize("mask_kind", ["none", "T,S", "key_padding", "B,H,T,S"])
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_matches_loop(device, dtype, tol, mask_kind, causal):
    B, H, T, S, D, Dv = 2, 3, 4, 6, 8, 5
    q = randn(B, H, T, D, device=device, dtype=dtype, seed=20)
    k = randn(B, H, S, D, device=device, dtype=dtype, seed=21)
    v = randn(B, H, S, Dv, device=device, dtype=dtype, seed=22)
    mask = _masks(B, H, T, S, device)[mask_kind]
    out, w = scaled_dot_product_attention(q, k, v, mask, causal=causal)
    ref_out, ref_w = _loop_attention(q, k, v, mask, causal)
    assert out.shape == (B, H, T, Dv) and w.shape == (B, H, T, S) and out.dtype == dtype
    close(out, ref_out, tol)
    close(w, ref_w, tol)


@pytest.mark.parametrize("mask_kind", ["none", "T,S", "key_padding", "B,H,T,S"])
def test_sdpa_matches_torch(device, mask_kind):
    B, H, T, S, D = 2, 3, 5, 7, 8
    q = randn(B, H, T, D, device=device, dtype=torch.float32, seed=30)
    k = randn(B, H, S, D, device=device, dtype=torch.float32, seed=31)
    v = randn(B, H, S, 4, device=device, dtype=torch.float32, seed=32)
    mask = _masks(B, H, T, S, device)[mask_kind]
    for scale in (None, 0.7):
        out, _ = scaled_dot_product_attention(q, k, v, mask, scale=scale)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_sdpa_causal_square_matches_torch_is_causal(device):
    q, k, v = (randn(2, 2, 6, 4, device=device, dtype=torch.float32, seed=s) for s in (40, 41, 42))
    out, w = scaled_dot_product_attention(q, k, v, causal=True)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert bool((w.triu(1) == 0).all())


def test_sdpa_attn_bias_matches_torch_float_mask_and_loop():
    q, k, v = (randn(2, 3, 4, 5, device="cpu", dtype=torch.float64, seed=s) for s in (50, 51, 52))
    bias = randn(3, 4, 5 - 1, device="cpu", dtype=torch.float64, seed=53)
    k, v = k[..., :4, :], v[..., :4, :]
    bias = bias[..., :4]  # (H, T, S) broadcast over B
    out, w = scaled_dot_product_attention(q, k, v, attn_bias=bias)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
    ref_out, ref_w = _loop_attention(q, k, v, bias=bias)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)


def test_sdpa_fully_masked_rows_give_zeros_and_zero_grads():
    q, k, v = (randn(1, 2, 3, 4, device="cpu", dtype=torch.float64, seed=s).requires_grad_(True) for s in (60, 61, 62))
    mask = torch.ones(1, 2, 3, 3, dtype=torch.bool)
    mask[0, 1, 0] = False
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert bool((out[0, 1, 0] == 0).all()) and bool((w[0, 1, 0] == 0).all())
    out.sum().backward()
    assert bool((q.grad[0, 1, 0] == 0).all())
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_sdpa_dropout_rescales_kept_weights():
    q, k, v = (randn(2, 2, 8, 4, device="cpu", dtype=torch.float64, seed=s) for s in (70, 71, 72))
    _, w = scaled_dot_product_attention(q, k, v)
    torch.manual_seed(0)
    out_d, w_d = scaled_dot_product_attention(q, k, v, dropout_p=0.25)
    dropped = w_d == 0
    assert 0 < int(dropped.sum()) < w.numel()
    torch.testing.assert_close(w_d[~dropped], w[~dropped] / 0.75)
    torch.testing.assert_close(out_d, w_d @ v)


# ---------------------------------------------------------------------------------------------
# flash attention
# ---------------------------------------------------------------------------------------------


def _flash_case(data, with_grad_dims=True):
    B = data.draw(st.integers(1, 2), label="B")
    H = data.draw(st.integers(1, 2), label="H")
    T = data.draw(st.integers(1, 9), label="T")
    S = data.draw(st.integers(1, 9), label="S")
    D = data.draw(st.integers(1, 6), label="D")
    Dv = data.draw(st.integers(1, 5), label="Dv")
    block = (data.draw(st.integers(1, 5), label="block_q"), data.draw(st.integers(1, 5), label="block_k"))
    causal = data.draw(st.booleans(), label="causal")
    kind = data.draw(st.sampled_from(["none", "T,S", "key_padding", "B,H,T,S", "empty_rows"]), label="mask")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, D, generator=g, dtype=torch.float64)
    k = torch.randn(B, H, S, D, generator=g, dtype=torch.float64)
    v = torch.randn(B, H, S, Dv, generator=g, dtype=torch.float64)
    mask = None
    if kind == "T,S":
        mask = torch.rand(T, S, generator=g) > 0.3
    elif kind == "key_padding":
        mask = key_padding_to_attn_mask(padding_mask(torch.randint(0, S + 1, (B,), generator=g), S))
    elif kind == "B,H,T,S":
        mask = torch.rand(B, H, T, S, generator=g) > 0.5
    elif kind == "empty_rows":
        mask = torch.rand(B, 1, T, S, generator=g) > 0.3
        mask[..., 0, :] = False
    return q, k, v, mask, causal, block


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_flash_matches_sdpa_forward_and_backward(data):
    q, k, v, mask, causal, block = _flash_case(data)
    q1, k1, v1 = (x.clone().requires_grad_(True) for x in (q, k, v))
    q2, k2, v2 = (x.clone().requires_grad_(True) for x in (q, k, v))
    out = flash_attention(q1, k1, v1, mask, causal=causal, block_size=block)
    ref, _ = scaled_dot_product_attention(q2, k2, v2, mask, causal=causal)
    torch.testing.assert_close(out, ref)
    dout = torch.randn_like(ref)
    (out * dout).sum().backward()
    (ref * dout).sum().backward()
    for a, b in ((q1, q2), (k1, k2), (v1, v2)):
        torch.testing.assert_close(a.grad, b.grad)


def test_flash_matches_torch_sdpa_float32_and_scale():
    q, k, v = (randn(2, 4, 37, 16, device="cpu", dtype=torch.float32, seed=s) for s in (80, 81, 82))
    mask = _masks(2, 4, 37, 37, "cpu")["key_padding"]
    torch.testing.assert_close(
        flash_attention(q, k, v, mask, scale=0.2, block_size=(8, 5)),
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.2),
        rtol=1e-5, atol=1e-5,
    )
    torch.testing.assert_close(
        flash_attention(q, k, v, causal=True, block_size=7),
        F.scaled_dot_product_attention(q, k, v, is_causal=True),
        rtol=1e-5, atol=1e-5,
    )


def test_flash_matches_loop(device, dtype, tol):
    q = randn(2, 5, 4, device=device, dtype=dtype, seed=90)  # leading dims (B,) only
    k = randn(2, 7, 4, device=device, dtype=dtype, seed=91)
    v = randn(2, 7, 3, device=device, dtype=dtype, seed=92)
    out = flash_attention(q, k, v, causal=True, block_size=(2, 3))
    assert out.dtype == dtype and out.shape == (2, 5, 3)
    ref, _ = _loop_attention(q, k, v, causal=True)
    close(out, ref, tol)


@pytest.mark.parametrize("causal", [False, True])
def test_flash_gradcheck(causal):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 2, 4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(1, 2, 5, 4, generator=g) > 0.3
    mask[0, 0, 4] = False  # a fully masked row
    assert torch.autograd.gradcheck(
        lambda a, b, c: flash_attention(a, b, c, mask, causal=causal, block_size=(2, 3)), (q, k, v)
    )


@pytest.mark.parametrize("magnitude", [1e-3, 1.0, 30.0, 1e3])
def test_no_nan_or_inf_on_finite_inputs(magnitude):
    q, k, v = (randn(2, 2, 9, 8, device="cpu", dtype=torch.float32, seed=s) for s in (100, 101, 102))
    q = (q * magnitude).requires_grad_(True)
    mask = torch.rand(2, 1, 9, 9, generator=torch.Generator().manual_seed(1)) > 0.5
    mask[0, 0, 3] = False
    for causal in (False, True):
        out_f = flash_attention(q, k, v, mask, causal=causal, block_size=4)
        out_s, w = scaled_dot_product_attention(q, k, v, mask, causal=causal)
        for t in (out_f, out_s, w):
            assert torch.isfinite(t).all()
        grad = torch.autograd.grad((out_f.sum() + out_s.sum()), q)[0]
        assert torch.isfinite(grad).all()


# ---------------------------------------------------------------------------------------------
# bad input -> ValueError naming the argument
# ---------------------------------------------------------------------------------------------

_q, _k, _v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)

BAD_CALLS = [
    ("q", lambda: dot_score(torch.randn(4), _k)),
    ("leading", lambda: dot_score(torch.randn(3, 3, 4), _k)),
    ("feature size", lambda: dot_score(_q, torch.randn(2, 5, 3))),
    ("feature size", lambda: scaled_dot_score(_q, torch.randn(2, 5, 3))),
    ("W must", lambda: general_score(_q, torch.randn(2, 5, 3), torch.randn(3, 4))),
    ("W_q", lambda: additive_score(_q, _k, torch.randn(7, 5), torch.randn(7, 4), torch.randn(7))),
    ("W_k", lambda: additive_score(_q, _k, torch.randn(7, 4), torch.randn(6, 4), torch.randn(7))),
    ("v must", lambda: additive_score(_q, _k, torch.randn(7, 4), torch.randn(7, 4), torch.randn(6))),
    ("scores", lambda: masked_softmax(torch.ones(2, 3, dtype=torch.long))),
    ("dim", lambda: masked_softmax(torch.randn(2, 3), dim=2)),
    ("mask", lambda: masked_softmax(torch.randn(2, 3), torch.ones(2, 3))),
    ("mask", lambda: masked_softmax(torch.randn(2, 3), torch.ones(3, 3, dtype=torch.bool))),
    ("k and v", lambda: scaled_dot_product_attention(_q, _k, torch.randn(2, 4, 6))),
    ("q must be floating", lambda: scaled_dot_product_attention(_q.long(), _k.long(), _v.long())),
    ("dtype", lambda: scaled_dot_product_attention(_q, _k.double(), _v)),
    ("leading", lambda: scaled_dot_product_attention(_q, torch.randn(3, 5, 4), torch.randn(3, 5, 6))),
    ("mask", lambda: scaled_dot_product_attention(_q, _k, _v, torch.ones(2, 5, dtype=torch.bool))),
    ("mask", lambda: scaled_dot_product_attention(_q, _k, _v, torch.ones(3, 5))),
    ("attn_bias", lambda: scaled_dot_product_attention(_q, _k, _v, attn_bias=torch.zeros(4, 5))),
    ("attn_bias", lambda: scaled_dot_product_attention(_q, _k, _v, attn_bias=torch.zeros(3, 5, dtype=torch.bool))),
    ("dropout_p", lambda: scaled_dot_product_attention(_q, _k, _v, dropout_p=1.0)),
    ("block_size", lambda: flash_attention(_q, _k, _v, block_size=0)),
    ("block_size", lambda: flash_attention(_q, _k, _v, block_size=(4, -1))),
    ("mask", lambda: flash_attention(_q, _k, _v, torch.ones(2, 5, dtype=torch.bool))),
    ("k and v", lambda: flash_attention(_q, _k, torch.randn(2, 4, 6))),
    ("T must", lambda: causal_mask(-1)),
    ("S must", lambda: causal_mask(3, -2)),
    ("lengths", lambda: padding_mask(torch.tensor([1.0, 2.0]), 3)),
    ("lengths", lambda: padding_mask(torch.tensor([1, 4]), 3)),
    ("lengths", lambda: padding_mask(torch.tensor([[1, 2]]), 3)),
    ("mask", lambda: key_padding_to_attn_mask(torch.ones(2, 3, 4, dtype=torch.bool))),
    ("mask", lambda: key_padding_to_attn_mask(torch.ones(2, 3))),
]


@pytest.mark.parametrize("match,call", BAD_CALLS, ids=[f"{i}-{m}" for i, (m, _) in enumerate(BAD_CALLS)])
def test_bad_input_raises_value_error(match, call):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("causal", [False, True])
def test_flash_return_lse_matches_float64_logsumexp(causal):
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 3, n, 16, generator=g) for n in (37, 53, 53))
    mask = torch.rand(2, 1, 37, 53, generator=g) > 0.3
    mask[0, 0, 5] = False  # a fully masked query row: lse = -inf, output zeros
    out, lse = flash_attention(q, k, v, mask=mask, causal=causal, block_size=16, return_lse=True)
    s = (q.double() @ k.double().transpose(-1, -2)) / 4.0  # (2, 3, 37, 53)
    keep = mask & (torch.ones(37, 53, dtype=torch.bool).tril(53 - 37) if causal else True)
    ref = s.masked_fill(~keep, float("-inf")).logsumexp(-1)  # (2, 3, 37)
    assert lse.shape == (2, 3, 37)
    assert torch.isneginf(lse[0, :, 5]).all()
    torch.testing.assert_close(lse.double(), ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(out, flash_attention(q, k, v, mask=mask, causal=causal, block_size=16))


# ---------------------------------------------------------------------------------------------
# more bad input: wrong device or dtype, non-bool flags, non-finite scale, empty dimensions
# ---------------------------------------------------------------------------------------------

_meta_mask = torch.ones(3, 5, dtype=torch.bool, device="meta")
_nan = float("nan")

MORE_BAD_CALLS = [
    ("block_size", lambda: flash_attention(_q, _k, _v, block_size=2.5)),
    ("block_size", lambda: flash_attention(_q, _k, _v, block_size=True)),
    ("block_size", lambda: flash_attention(_q, _k, _v, block_size=(4, 2.5))),
    ("block_size", lambda: flash_attention(_q, _k, _v, block_size=(4, 4, 4))),
    ("causal must be True or False, got 'no'", lambda: scaled_dot_product_attention(_q, _k, _v, causal="no")),
    ("causal", lambda: flash_attention(_q, _k, _v, causal="no")),
    ("scale must be None or a finite number, got nan", lambda: scaled_dot_product_attention(_q, _k, _v, scale=_nan)),
    ("scale", lambda: flash_attention(_q, _k, _v, scale=float("inf"))),
    ("scale", lambda: scaled_dot_score(_q, _k, scale=_nan)),
    ("dropout_p", lambda: scaled_dot_product_attention(_q, _k, _v, dropout_p=_nan)),
    ("feature size D >= 1", lambda: scaled_dot_product_attention(_q[..., :0], _k[..., :0], _v)),
    ("feature size D >= 1", lambda: flash_attention(_q[..., :0], _k[..., :0], _v)),
    # masks and biases on another device than q, or of the wrong dtype
    (r"mask must be on the device of q \(cpu\), got meta", lambda: scaled_dot_product_attention(_q, _k, _v, _meta_mask)),
    ("mask must be on the device", lambda: flash_attention(_q, _k, _v, _meta_mask)),
    ("attn_bias must be on the device", lambda: scaled_dot_product_attention(
        _q, _k, _v, attn_bias=torch.zeros(3, 5, device="meta"))),
    ("attn_bias must be on the device", lambda: flash_attention(_q, _k, _v, attn_bias=torch.zeros(3, 5, device="meta"))),
    ("mask must be on the device", lambda: masked_softmax(torch.randn(3, 5), _meta_mask)),
    ("mask must be a boolean", lambda: flash_attention(_q, _k, _v, torch.ones(3, 5, dtype=torch.int64))),
    ("attn_bias must be a floating point", lambda: flash_attention(_q, _k, _v, attn_bias=torch.zeros(3, 5, dtype=torch.int64))),
    ("attn_bias must not require grad", lambda: flash_attention(_q, _k, _v, attn_bias=torch.zeros(3, 5, requires_grad=True))),
    ("share a dtype", lambda: flash_attention(_q, _k.double(), _v)),
]


@pytest.mark.parametrize("match,call", MORE_BAD_CALLS, ids=[f"{i}-{m[:20]}" for i, (m, _) in enumerate(MORE_BAD_CALLS)])
def test_more_bad_input_raises_value_error(match, call):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("T,S", [(0, 5), (4, 0), (0, 0)])
def test_flash_backward_with_empty_queries_or_keys(T, S):
    q = torch.randn(2, T, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, S, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, S, 3, dtype=torch.float64, requires_grad=True)
    out = flash_attention(q, k, v, causal=True, block_size=2)
    assert out.shape == (2, T, 3) and bool((out == 0).all())  # no key: zero rows
    (out * 2).sum().backward()
    for x in (q, k, v):
        assert x.grad.shape == x.shape and bool((x.grad == 0).all())


def test_zero_heads_give_empty_results():
    q, k, v = torch.randn(2, 0, 3, 4), torch.randn(2, 0, 5, 4), torch.randn(2, 0, 5, 6)
    out, w = scaled_dot_product_attention(q, k, v, causal=True)
    assert out.shape == (2, 0, 3, 6) and w.shape == (2, 0, 3, 5)
    assert flash_attention(q, k, v).shape == (2, 0, 3, 6)


@pytest.mark.parametrize("raw", [_nan, float("inf"), float("-inf"), 1e30])
def test_masked_softmax_dead_rows_are_zero_in_value_and_gradient(raw):
    """A fully masked row is zero whatever its raw scores hold, and no gradient reaches them."""
    scores = torch.randn(3, 4, dtype=torch.float64)
    scores[1] = raw
    scores[2, 0] = raw  # a masked entry in a live row
    scores.requires_grad_(True)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    mask[2, 0] = False
    a = masked_softmax(scores, mask)
    assert torch.isfinite(a).all() and bool((a[1] == 0).all()) and a[2, 0] == 0
    torch.testing.assert_close(a[[0, 2]].sum(-1), torch.ones(2, dtype=torch.float64))
    (a * torch.randn(3, 4, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert bool((scores.grad[1] == 0).all()) and scores.grad[2, 0] == 0


def test_all_minus_inf_bias_row_gives_zeros_on_every_path():
    """A bias of -inf on every key of a row hides them all, like a mask: zeros everywhere."""
    from attnbook.attention import MultiHeadAttention

    q, k, v = (randn(2, 4, 3, 8, dtype=torch.float64, seed=s).requires_grad_(True) for s in (1, 2, 3))
    bias = torch.zeros(4, 3, 3, dtype=torch.float64)
    bias[1, 2] = float("-inf")  # head 1, query 2 sees nothing
    out, w = scaled_dot_product_attention(q, k, v, attn_bias=bias)
    flash = flash_attention(q, k, v, attn_bias=bias, block_size=2)
    for t in (out, w, flash):
        assert torch.isfinite(t).all() and bool((t[:, 1, 2] == 0).all())
    torch.testing.assert_close(flash, out)
    (out.sum() + flash.sum()).backward()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v)) and bool((q.grad[:, 1, 2] == 0).all())
    mha = MultiHeadAttention(16, 4).double().eval()
    x = randn(2, 3, 16, dtype=torch.float64, seed=4)
    keep = torch.ones(1, 4, 3, 3, dtype=torch.bool)
    keep[0, 1, 2] = False  # the same row hidden by a mask instead
    masked, _ = mha(x, mask=keep, need_weights=True)
    for need_weights in (False, True):
        o, weights = mha(x, attn_bias=bias, need_weights=need_weights)
        torch.testing.assert_close(o, masked)
        if need_weights:
            assert bool((weights[:, 1, 2] == 0).all())


# ---------------------------------------------------------------------------------------------
# causal masks with T != S: aligned bottom-right, PyTorch's causal_lower_right
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T,S", [(1, 6), (3, 7), (5, 5), (2, 3)])
def test_causal_is_pytorch_causal_lower_right(T, S):
    from torch.nn.attention.bias import causal_lower_right, causal_upper_left

    lower_right = causal_lower_right(T, S)._materialize(torch.device("cpu"))
    assert torch.equal(causal_mask(T, S), lower_right)
    if T != S:  # PyTorch's is_causal=True is the other alignment
        assert not torch.equal(causal_mask(T, S), causal_upper_left(T, S)._materialize(torch.device("cpu")))
    q, k, v = (randn(2, 3, n, 8, seed=s) for s, n in ((1, T), (2, S), (3, S)))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(T, S))
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, causal=True)[0], ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(flash_attention(q, k, v, causal=True, block_size=2), ref, rtol=1e-5, atol=1e-5)
    from attnbook.attention import KVCache, MultiHeadAttention

    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x = randn(2, S, 16, seed=4)
    cache = KVCache()
    mha(x[:, : S - T], cache=cache) if S > T else None  # S - T cached positions
    out, _ = mha(x[:, S - T:], causal=True, cache=cache)
    qh = mha.q_proj(x[:, S - T:]).view(2, T, 4, 4).transpose(1, 2)
    kh, vh = (p(x).view(2, S, 4, 4).transpose(1, 2) for p in (mha.k_proj, mha.v_proj))
    o = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=causal_lower_right(T, S))
    torch.testing.assert_close(out, mha.out_proj(o.transpose(1, 2).reshape(2, T, 16)), rtol=1e-5, atol=1e-5)


def test_no_keys_at_all_gives_zero_rows():
    """S = 0 (a query with an empty prefix): zero output rows, as for a fully masked row."""
    q, k = torch.randn(2, 3, 8), torch.randn(2, 0, 8)
    assert masked_softmax(torch.randn(2, 3, 0)).shape == (2, 3, 0)
    out, w = scaled_dot_product_attention(q, k, k)
    assert out.shape == (2, 3, 8) and w.shape == (2, 3, 0) and not out.any()
