"""The Triton FlashAttention kernels (attnbook.kernels): output, log-sum-exp and dq, dk, dv
against a float64 reference; causal and not, ragged lengths, key lengths, head dims, dtypes;
the tile schedule against the kernel and a brute-force check; errors.

Without CUDA the kernels run in Triton's interpreter (the root conftest sets TRITON_INTERPRET=1
before anything imports triton); it is exact but slow, so the cases are small. bfloat16 runs
through the kernel on CUDA only: numpy has no bfloat16, and on the CPU the wrapper computes it
in float32 (tested once).
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import attnbook.kernels as kernels
from attnbook import functional

ROOT = Path(__file__).resolve().parents[1]

needs_triton = pytest.mark.skipif(not kernels.is_available(), reason="triton is not installed")
CUDA = torch.cuda.is_available()
DEVICES = [
    pytest.param("cpu", id="cpu", marks=pytest.mark.skipif(
        not kernels.interpreter_requested(), reason="TRITON_INTERPRET=1 not set")),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device")),
]
# relative error bound (max |error| / max |reference|) per dtype
RTOL = {torch.float32: 2e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def reference(q, k, v, causal=False, key_lengths=None, scale=None):
    """float64 attention with explicit masks: (out, lse); empty rows give 0 and -inf."""
    q, k, v = (x.double() for x in (q, k, v))
    T, S = q.shape[-2], k.shape[-2]
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ k.transpose(-2, -1)) * scale  # (B, H, T, S)
    i = torch.arange(T, device=q.device)[:, None]
    j = torch.arange(S, device=q.device)[None, :]
    keep = (j <= i + (S - T)) if causal else torch.ones(T, S, dtype=torch.bool, device=q.device)
    keep = keep.expand(q.shape[0], 1, T, S)
    if key_lengths is not None:
        keep = keep & (j < key_lengths.to(q.device)[:, None, None, None])
    s = s.masked_fill(~keep, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # (B, H, T)
    p = torch.exp(s - lse[..., None]).nan_to_num(0.0)  # empty rows: 0
    return p @ v, lse


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def run_case(device, dtype, B, H, T, S, D, causal, block, key_lengths=None, seed=0):
    """Forward and backward (through out AND lse) by the kernel and by float64 autograd."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, n, D, generator=g) for n in (T, S, S))
    dout, dlse = torch.randn(B, H, T, D, generator=g), torch.randn(B, H, T, generator=g)
    ins = [x.to(device, dtype, copy=True).requires_grad_() for x in (q, k, v)]
    refs = [x.to(dtype).double().requires_grad_() for x in (q, k, v)]  # same rounded inputs
    klen = None if key_lengths is None else torch.tensor(key_lengths, device=device)
    out, lse = kernels.flash_attention(*ins, causal=causal, return_lse=True, key_lengths=klen,
                                       block_size=block)
    ref_out, ref_lse = reference(*refs, causal=causal, key_lengths=klen)
    finite = ref_lse.isfinite()
    loss = (out.double() * dout.to(device)).sum() + (lse.double().where(finite.to(device), 0)
                                                     * dlse.to(device)).sum()
    loss.backward()
    ref_loss = (ref_out * dout).sum() + (ref_lse.where(finite, 0) * dlse).sum()
    ref_loss.backward()
    return out, lse, ins, ref_out, ref_lse, refs


def check_case(*args, **kwargs):
    out, lse, ins, ref_out, ref_lse, refs = run_case(*args, **kwargs)
    dtype = ins[0].dtype
    tol = RTOL[dtype]
    assert out.dtype == dtype and out.shape == ref_out.shape
    assert lse.dtype == torch.float32 and lse.shape == ref_lse.shape
    assert rel(out.cpu(), ref_out) < tol, f"out: {rel(out.cpu(), ref_out):.2e}"
    lse = lse.cpu()
    assert torch.equal(lse.isneginf(), ref_lse.isneginf()), "rows without keys need lse = -inf"
    finite = ref_lse.isfinite()
    assert (lse[finite].double() - ref_lse[finite]).abs().max() < 1e-4  # float32 lse
    for name, x, r in zip("qkv", ins, refs):
        assert x.grad is not None and torch.isfinite(x.grad).all(), f"d{name} is not finite"
        assert rel(x.grad.cpu(), r.grad) < 2 * tol, f"d{name}: {rel(x.grad.cpu(), r.grad):.2e}"
    return out, lse, ins


# (T, S, D, causal, block): ragged lengths (not multiples of the block), T < S and T > S
# (bottom-right causal: rows without keys), every head dim, several tiles per program
SHAPES = [
    (40, 40, 16, False, 16),
    (40, 40, 16, True, 16),
    (37, 53, 32, False, 16),
    (37, 53, 32, True, 16),
    (53, 37, 32, True, 16),
    (64, 64, 64, True, 32),
    (33, 70, 64, False, 32),
    (48, 20, 128, True, 16),
    (20, 48, 128, False, 32),
    (1, 35, 32, True, 16),
]


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T,S,D,causal,block", SHAPES)
def test_float32_matches_float64_reference(device, T, S, D, causal, block):
    check_case(device, torch.float32, 1, 2, T, S, D, causal, block)


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T,S,D,causal,block", SHAPES[1::3])
def test_float16_matches_float64_reference(device, T, S, D, causal, block):
    check_case(device, torch.float16, 1, 2, T, S, D, causal, block)


@needs_triton
@pytest.mark.skipif(not CUDA, reason="bfloat16 tiles run through the kernel on CUDA only")
@pytest.mark.parametrize("T,S,D,causal,block", SHAPES[::2])
def test_bfloat16_on_cuda_matches_float64_reference(T, S, D, causal, block):
    check_case("cuda", torch.bfloat16, 2, 2, T, S, D, causal, block)


@needs_triton
@pytest.mark.skipif(not kernels.interpreter_requested(), reason="TRITON_INTERPRET=1 not set")
def test_bfloat16_on_cpu_is_computed_in_float32_and_rounded():
    check_case("cpu", torch.bfloat16, 1, 2, 37, 53, 32, True, 16)


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("causal", [False, True])
def test_key_lengths_mask_padding_and_give_it_zero_gradients(device, causal):
    # sequence 1 has no key at all: its rows are zeros, lse -inf, and nothing is NaN
    out, lse, ins = check_case(device, torch.float32, 3, 2, 30, 45, 32, causal, 16,
                               key_lengths=[45, 17, 0])
    assert torch.equal(out[2], torch.zeros_like(out[2])) and lse[2].isneginf().all()
    k, v = ins[1], ins[2]
    assert torch.equal(k.grad[1, :, 17:], torch.zeros_like(k.grad[1, :, 17:]))
    assert torch.equal(v.grad[1, :, 17:], torch.zeros_like(v.grad[1, :, 17:]))
    assert k.grad[1, :, :17].abs().sum() > 0


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
def test_equals_the_package_and_pytorch(device):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 50, 32, generator=g).to(device) for _ in range(3))
    for causal in (False, True):
        out, lse = kernels.flash_attention(q, k, v, causal=causal, return_lse=True)
        pkg_out, pkg_lse = functional.flash_attention(q, k, v, causal=causal, return_lse=True)
        torch_out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        torch.testing.assert_close(out, pkg_out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out, torch_out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lse, pkg_lse, rtol=1e-5, atol=1e-5)
    # a custom scale, and strided inputs: (B, T, H, D) memory viewed as (B, H, T, D)
    x = torch.randn(2, 50, 3, 3 * 32, generator=g).to(device)
    q2, k2, v2 = (t.transpose(1, 2) for t in x.split(32, dim=-1))  # (B, H, T, D) views
    assert not q2.is_contiguous()
    out = kernels.flash_attention(q2, k2, v2, causal=True, scale=0.3)
    pkg = functional.flash_attention(q2, k2, v2, causal=True, scale=0.3)
    torch.testing.assert_close(out, pkg, rtol=1e-5, atol=1e-5)


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
def test_empty_sequences(device):
    q = torch.randn(1, 2, 0, 16, device=device)
    k = torch.randn(1, 2, 5, 16, device=device)
    out, lse = kernels.flash_attention(q, k, k, return_lse=True)
    assert out.shape == (1, 2, 0, 16) and lse.shape == (1, 2, 0)
    q = torch.randn(1, 2, 4, 16, device=device, requires_grad=True)
    k0 = torch.randn(1, 2, 0, 16, device=device, requires_grad=True)
    out, lse = kernels.flash_attention(q, k0, k0, return_lse=True)
    assert torch.equal(out, torch.zeros_like(out)) and lse.isneginf().all()
    out.sum().backward()
    assert torch.equal(q.grad, torch.zeros_like(q.grad))


@needs_triton
@pytest.mark.skipif(not kernels.interpreter_requested(), reason="TRITON_INTERPRET=1 not set")
def test_autocast_computes_in_the_autocast_dtype():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 24, 16, generator=g) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = kernels.flash_attention(q, k, v, causal=True)
    assert out.dtype == torch.bfloat16
    ref, _ = reference(*(x.bfloat16() for x in (q, k, v)), causal=True)
    assert rel(out, ref) < RTOL[torch.bfloat16]


# --------------------------------------------------------------------------------------------
# the tile schedule
# --------------------------------------------------------------------------------------------


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "T,S,block,causal,klen",
    [(70, 70, (16, 32), True, None), (40, 90, (32, 16), True, None),
     (90, 40, (16, 16), True, None), (50, 50, (16, 16), False, 23)],
)
def test_kernel_reports_the_tiles_of_tile_schedule(device, T, S, block, causal, klen):
    q = torch.randn(1, 1, T, 16, device=device)
    k = torch.randn(1, 1, S, 16, device=device)
    lengths = None if klen is None else torch.tensor([klen], device=device)
    stats = kernels.record_forward_tiles(q, k, k, causal=causal, block_size=block,
                                         key_lengths=lengths)
    plan = kernels.tile_schedule(T, S, *block, causal=causal, key_length=klen)
    assert stats[0, 0].tolist() == [list(c) for c in plan.forward_counts()]


def _brute_force_check(plan: kernels.TileSchedule, key_length: int | None) -> None:
    """Every tile holding a visible (query, key) pair is visited; a tile is run without a mask
    only if every pair in it is visible (rows past T excepted); skipped tiles hold none."""
    T, S, BM, BN = plan.T, plan.S, plan.block_m, plan.block_n
    n_valid = S if key_length is None else min(key_length, S)

    def visible(i, j):
        return j < n_valid and (not plan.causal or j <= i + S - T)

    for m, (unmasked, masked) in enumerate(plan.forward):
        rows = range(m * BM, min((m + 1) * BM, T))
        for n in range(-(-S // BN)):
            cols = range(n * BN, (n + 1) * BN)
            some = any(visible(i, j) for i in rows for j in cols)
            every = all(visible(i, j) for i in rows for j in cols)
            assert not (some and n not in unmasked + masked), (m, n, "needed but skipped")
            assert not (n in unmasked and not every), (m, n, "needs a mask")
            assert len(set(unmasked + masked)) == len(unmasked + masked)
    for n, (masked, unmasked) in enumerate(plan.dkdv):
        cols = [j for j in range(n * BN, (n + 1) * BN) if j < n_valid]
        for m in range(-(-T // BM)):
            rows = range(m * BM, min((m + 1) * BM, T))
            some = any(visible(i, j) for i in rows for j in cols)
            every = all(visible(i, j) for i in rows for j in cols)
            assert not (some and m not in masked + unmasked), (n, m, "needed but skipped")
            assert not (m in unmasked and not every), (n, m, "needs a mask")


def test_tile_schedule_against_brute_force():
    rng = random.Random(0)
    for _ in range(150):
        T, S = rng.randint(0, 90), rng.randint(0, 90)
        BM, BN = rng.choice([16, 32]), rng.choice([16, 32])
        klen = rng.choice([None, rng.randint(0, S)])
        plan = kernels.tile_schedule(T, S, BM, BN, causal=rng.random() < 0.7, key_length=klen)
        _brute_force_check(plan, klen)


def test_causal_schedule_skips_about_half_the_tiles():
    full = kernels.tile_schedule(1024, 1024, 64, 64).visited()
    causal = kernels.tile_schedule(1024, 1024, 64, 64, causal=True)
    assert full == 16 * 16
    assert causal.visited() == 16 * 17 // 2  # the lower triangle and the diagonal
    assert sum(b for _, b in causal.forward_counts()) == 16  # only diagonal tiles are masked


# --------------------------------------------------------------------------------------------
# errors and imports
# --------------------------------------------------------------------------------------------


def test_bad_inputs_raise_value_errors_naming_the_shapes():
    q = torch.randn(1, 2, 8, 32)
    cases = [
        ((torch.randn(2, 8, 32), q, q), "q must have 4 dimensions"),
        ((q, torch.randn(1, 3, 8, 32), q), "share batch and heads"),
        ((torch.randn(1, 2, 8, 48),) * 3, "head dim D must be one of"),
        ((q.double(), q.double(), q.double()), "float16, bfloat16, float32"),
        ((q, torch.randn(1, 2, 8, 16), q), "k and v must have shape"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            kernels.flash_attention(*args)
    with pytest.raises(ValueError, match=r"key_lengths must be an integer tensor \(B,\)"):
        kernels.flash_attention(q, q, q, key_lengths=torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"key_lengths must lie in \[0, S=8\]"):
        kernels.flash_attention(q, q, q, key_lengths=torch.tensor([9]))


@needs_triton
def test_block_size_must_be_a_power_of_two():
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(ValueError, match="block_size must be a power of two"):
        kernels.flash_attention(q, q, q, block_size=24)


def test_missing_triton_is_a_clear_import_error(monkeypatch):
    monkeypatch.setattr(kernels, "_module", None)
    monkeypatch.setattr(kernels, "is_available", lambda: False)
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(ImportError, match=r"attnbook\[triton\]"):
        kernels.flash_attention(q, q, q)


@needs_triton
def test_import_is_lazy_and_cpu_without_interpreter_is_explained():
    code = (
        "import sys, torch, attnbook.kernels as K\n"
        "assert 'triton' not in sys.modules, 'importing attnbook.kernels imported triton'\n"
        "q = torch.randn(1, 1, 8, 16)\n"
        "try:\n"
        "    K.flash_attention(q, q, q)\n"
        "except RuntimeError as e:\n"
        "    assert 'TRITON_INTERPRET=1' in str(e), e\n"
        "    print('ok')\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "0", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
