"""attnbook.functional.flash_attention against a float64 reference: the output, the per-row
log-sum-exp (``return_lse=True``) and the gradients dq, dk, dv, causal and not, with masks
(key padding, a random mask with a fully masked row), ragged sizes that are not multiples of
the block, T != S, and several block sizes, in float64, float32 and 16-bit inputs."""

from __future__ import annotations

import math

import pytest
import torch

from attnbook.functional import causal_mask, flash_attention


def reference(q, k, v, mask=None, causal=False, scale=None):
    """Materialised attention in float64: out, lse (``-inf`` on empty rows) and the weights.

    Masked scores get weight exactly 0; a row with no visible key gives a zero output, a zero
    gradient and ``lse = -inf``. Differentiable (autograd gives the reference gradients)."""
    q, k, v = q.double(), k.double(), v.double()
    T, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    keep = torch.ones(T, S, dtype=torch.bool)
    if causal:
        keep = keep & causal_mask(T, S)
    if mask is not None:
        keep = keep & mask
    keep = keep.expand(*q.shape[:-2], T, S)  # (..., T, S)
    scores = scale * q @ k.transpose(-2, -1)  # (..., T, S)
    masked = scores.masked_fill(~keep, float("-inf"))
    empty = ~keep.any(-1, keepdim=True)  # (..., T, 1)
    lse = torch.logsumexp(masked, -1)  # (..., T), -inf on empty rows
    # empty rows: softmax of zeros (finite, with finite gradients) times an all-False keep
    weights = torch.softmax(masked.masked_fill(empty, 0.0), -1) * keep  # (..., T, S)
    return weights @ v, lse.detach(), weights


def _inputs(B, H, T, S, D, Dv, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, T, D, generator=gen, dtype=torch.float64)
    k = torch.randn(B, H, S, D, generator=gen, dtype=torch.float64)
    v = torch.randn(B, H, S, Dv, generator=gen, dtype=torch.float64)
    dout = torch.randn(B, H, T, Dv, generator=gen, dtype=torch.float64)
    return [x.to(dtype) for x in (q, k, v)], dout


def _mask(kind, B, H, T, S, seed):
    gen = torch.Generator().manual_seed(seed + 1)
    if kind is None:
        return None
    if kind == "padding":  # per-sequence key lengths, broadcast over heads and queries
        lengths = torch.tensor([S, max(1, S // 3)])[:B]
        return (torch.arange(S)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
    mask = torch.rand(B, H, T, S, generator=gen) < 0.7  # (B, H, T, S)
    mask[0, 0, T // 2] = False  # a fully masked query row
    return mask


def _grads(out, dout, inputs):
    return torch.autograd.grad(out, inputs, dout.to(out.dtype))


TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=2e-5, atol=2e-5),
    torch.bfloat16: dict(rtol=3e-2, atol=3e-2),
    torch.float16: dict(rtol=5e-3, atol=5e-3),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("mask_kind", [None, "padding", "random"])
@pytest.mark.parametrize(
    ("T", "S", "block"),
    [(1, 1, 16), (17, 17, 8), (33, 50, (16, 5)), (50, 33, (7, 16)), (64, 64, 64), (40, 40, 128)],
)
def test_flash_against_float64(dtype, causal, mask_kind, T, S, block):
    B, H, D, Dv = 2, 2, 16, 12
    seed = T * 1000 + S
    (q, k, v), dout = _inputs(B, H, T, S, D, Dv, dtype, seed)
    mask = _mask(mask_kind, B, H, T, S, seed)
    q, k, v = (x.requires_grad_() for x in (q, k, v))

    out, lse = flash_attention(q, k, v, mask=mask, causal=causal, block_size=block,
                               return_lse=True)
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref_out, ref_lse, _ = reference(q64, k64, v64, mask=mask, causal=causal)

    tol = TOL[dtype]
    assert out.dtype == dtype and lse.shape == (B, H, T)
    torch.testing.assert_close(out.double(), ref_out.detach(), **tol)
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isneginf(lse), ~finite)  # -inf exactly on the empty rows
    torch.testing.assert_close(lse.double()[finite], ref_lse[finite], **tol)
    assert (out.detach()[~finite] == 0).all()

    for got, want in zip(_grads(out, dout, (q, k, v)), _grads(ref_out, dout, (q64, k64, v64))):
        assert got.dtype == dtype and torch.isfinite(got).all()
        torch.testing.assert_close(got.double(), want, **tol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_flash_half_precision_against_float64(dtype, causal):
    B, H, T, S, D = 1, 2, 45, 45, 16
    (q, k, v), dout = _inputs(B, H, T, S, D, D, dtype, seed=7)
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    out, lse = flash_attention(q, k, v, causal=causal, block_size=(16, 8), return_lse=True)
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref_out, ref_lse, _ = reference(q64, k64, v64, causal=causal)
    tol = TOL[dtype]
    assert out.dtype == dtype and lse.dtype == torch.float32  # lse kept in float32
    torch.testing.assert_close(out.double(), ref_out.detach(), **tol)
    torch.testing.assert_close(lse.double(), ref_lse, **tol)
    for got, want in zip(_grads(out, dout, (q, k, v)), _grads(ref_out, dout, (q64, k64, v64))):
        torch.testing.assert_close(got.double(), want, **tol)


@pytest.mark.parametrize("block", [1, 3, 8, (5, 2), 1000])
def test_block_size_does_not_change_the_result(block):
    (q, k, v), _ = _inputs(2, 1, 23, 31, 8, 8, torch.float64, seed=3)
    base, base_lse = flash_attention(q, k, v, causal=True, block_size=64, return_lse=True)
    out, lse = flash_attention(q, k, v, causal=True, block_size=block, return_lse=True)
    torch.testing.assert_close(out, base, rtol=1e-12, atol=1e-12)
    finite = torch.isfinite(base_lse)
    torch.testing.assert_close(lse[finite], base_lse[finite], rtol=1e-12, atol=1e-12)


def test_lse_reconstructs_the_weights():
    """softmax(scores) = exp(scores - lse): the identity the backward pass recomputes P from."""
    (q, k, v), _ = _inputs(1, 2, 19, 26, 8, 8, torch.float64, seed=5)
    _, lse = flash_attention(q, k, v, causal=True, block_size=(4, 6), return_lse=True)
    _, _, weights = reference(q, k, v, causal=True)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~causal_mask(19, 26), -math.inf)
    torch.testing.assert_close(torch.exp(scores - lse[..., None]), weights, rtol=1e-12, atol=1e-12)


def test_reference_agrees_with_torch_sdpa():
    """The reference itself is checked against PyTorch's fused function where both are defined."""
    (q, k, v), _ = _inputs(2, 3, 12, 12, 8, 8, torch.float64, seed=11)
    mask = _mask("padding", 2, 3, 12, 12, 11)
    out, _, _ = reference(q, k, v, mask=mask, causal=True)
    want = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask & causal_mask(12, 12)
    )
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
