"""Half precision and autocast: every module runs under ``torch.autocast`` (training and cached
generation), half inputs meet float parameters there, and float16 attention does not overflow
when the scores are far beyond float16's range."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import randn

from attnbook.attention import (
    AdditiveAttention,
    AttentionalOutput,
    KVCache,
    LuongAttention,
    MultiHeadAttention,
)
from attnbook.functional import flash_attention, masked_softmax, scaled_dot_product_attention
from attnbook.positional import RotaryEmbedding, alibi_bias
from attnbook.seq2seq import build_seq2seq
from attnbook.transformer import DecoderLayer, DecoderOnly, EncoderLayer, Transformer

V = 13
# (device, autocast dtype, tolerance against the float32 result); CUDA's float16 autocast runs
# only where a GPU is present
AUTOCAST = [
    pytest.param("cpu", torch.bfloat16, 6e-2, id="cpu-bfloat16"),
    pytest.param("cpu", torch.float16, 1e-2, id="cpu-float16"),
    pytest.param(
        "cuda", torch.float16, 1e-2, id="cuda-float16",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
    pytest.param(
        "cuda", torch.bfloat16, 6e-2, id="cuda-bfloat16",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


def _tokens(B, T, vocab=V, seed=1, device="cpu"):
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed)).to(device)


# ---------------------------------------------------------------------------------------------
# 2. autocast
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["mha", "gqa+rope", "alibi"])
@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize(("device", "dtype", "tol"), AUTOCAST)
def test_mha_with_kv_cache_under_autocast(device, dtype, tol, config, need_weights):
    torch.manual_seed(0)
    m = MultiHeadAttention(16, 4, num_kv_heads=2 if "gqa" in config else None).to(device).eval()
    rope = RotaryEmbedding(4) if "rope" in config else None
    T = 7
    x = randn(2, T, 16, device=device, seed=3)  # float32 inputs, float32 parameters
    bias = (lambda t, s: alibi_bias(4, t, s, device=device)) if config == "alibi" else (lambda t, s: None)
    ref, _ = m(x, causal=True, rope=rope, attn_bias=bias(T, T))  # float32, no autocast
    with torch.no_grad(), torch.autocast(device, dtype=dtype):
        full, _ = m(x, causal=True, rope=rope, attn_bias=bias(T, T), need_weights=need_weights)
        cache, outs = KVCache(), []
        for P, n in ((0, 3), (3, 1), (4, 1), (5, 1), (6, 1)):  # a prompt, then 4 single steps
            o, w = m(x[:, P:P + n], causal=True, cache=cache, rope=rope, attn_bias=bias(n, P + n),
                     need_weights=need_weights)
            outs.append(o)
            assert (w is not None) == need_weights
    assert full.dtype == dtype and cache.k.dtype == dtype and cache.length == T
    steps = torch.cat(outs, 1)
    torch.testing.assert_close(steps.float(), full.float(), rtol=tol, atol=tol)
    torch.testing.assert_close(steps.float(), ref.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("positional", ["learned", "rope", "alibi"])
@pytest.mark.parametrize(("device", "dtype", "tol"), AUTOCAST)
def test_models_train_and_generate_under_autocast(device, dtype, tol, positional):
    torch.manual_seed(0)
    lm = DecoderOnly(V, 16, 4, 2, max_len=32, positional=positional, num_kv_heads=2).to(device)
    x = _tokens(2, 9, device=device)
    with torch.autocast(device, dtype=dtype):  # one training step
        logits = lm(x)
        loss = F.cross_entropy(logits.float().reshape(-1, V), _tokens(2, 9, seed=2, device=device).reshape(-1))
    loss.backward()
    assert logits.dtype == dtype
    for name, p in lm.named_parameters():
        assert p.dtype == torch.float32 and p.grad is not None and torch.isfinite(p.grad).all(), name
    lm.eval()
    with torch.no_grad():
        ref = lm(x)
        with torch.autocast(device, dtype=dtype):
            full = lm(x)
            caches = lm.new_caches()
            steps = [lm(x[:, :4], caches=caches)] + [lm(x[:, t:t + 1], caches=caches) for t in range(4, 9)]
    assert all(c.k.dtype == dtype for c in caches)
    torch.testing.assert_close(torch.cat(steps, 1).float(), full.float(), rtol=tol, atol=tol)
    torch.testing.assert_close(full.float(), ref, rtol=5 * tol, atol=5 * tol)

    s2s = Transformer(11, V, 16, 4, 2, 2, max_len=32, positional=positional).to(device)
    src = _tokens(2, 6, vocab=11, device=device)
    with torch.autocast(device, dtype=dtype):
        out = s2s(src, x)
    out.float().logsumexp(-1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in s2s.parameters())
    s2s.eval()
    with torch.no_grad(), torch.autocast(device, dtype=dtype):
        state = s2s.initial_state(src)
        full = s2s.decode(x, state["memory"], state["src_mask"])
        steps = [s2s.step(x[:, :t + 1], state)[0] for t in range(9)]
    torch.testing.assert_close(torch.stack(steps, 1).float(), full.float().log_softmax(-1), rtol=tol, atol=tol)


@pytest.mark.parametrize(("device", "dtype", "tol"), AUTOCAST)
def test_half_inputs_meet_float_parameters_under_autocast(device, dtype, tol):
    """Under autocast a layer's input is often half (another layer's output) while its
    parameters stay float32: every module takes it, and matches its float32 result."""
    torch.manual_seed(0)
    q2, k3, v3 = randn(2, 4, device=device, seed=1), randn(2, 5, 6, device=device, seed=2), randn(2, 5, 3, device=device, seed=3)
    x, mem = randn(2, 5, 16, device=device, seed=4), randn(2, 7, 16, device=device, seed=5)
    cases = {
        "AdditiveAttention": (AdditiveAttention(4, 6, 5), (q2, k3, v3)),
        "Luong dot": (LuongAttention(6, 6, "dot"), (randn(2, 6, device=device, seed=6), k3, v3)),
        "Luong general": (LuongAttention(4, 6, "general"), (q2, k3, v3)),
        "Luong concat": (LuongAttention(4, 6, "concat"), (q2, k3, v3)),
        "AttentionalOutput": (AttentionalOutput(3, 4, 7), (v3[:, 0], q2)),
        "MultiHeadAttention": (MultiHeadAttention(16, 4), (x, mem)),
        "EncoderLayer": (EncoderLayer(16, 4), (x,)),
        "DecoderLayer": (DecoderLayer(16, 4), (x, mem)),
    }
    for name, (module, args) in cases.items():
        module = module.to(device).eval()
        ref = module(*args)
        ref = ref[0] if isinstance(ref, tuple) else ref
        half = tuple(a.to(dtype) if i % 2 == 0 else a for i, a in enumerate(args))  # mixed dtypes
        with torch.no_grad(), torch.autocast(device, dtype=dtype):
            out = module(*half)
        out = out[0] if isinstance(out, tuple) else out
        assert torch.isfinite(out).all(), name
        torch.testing.assert_close(out.float(), ref.float(), rtol=2 * tol, atol=2 * tol, msg=name)
    for attention in ("none", "bahdanau", "luong"):  # the RNN translation models too
        torch.manual_seed(0)
        model = build_seq2seq(11, V, embed_dim=8, hidden_dim=8, attention=attention).to(device).eval()
        src, mask, tgt = _tokens(2, 6, vocab=11, device=device), torch.ones(2, 6, dtype=torch.bool, device=device), _tokens(2, 5, device=device)
        with torch.no_grad():
            ref = model(src, mask, tgt)
            with torch.autocast(device, dtype=dtype):
                out = model(src, mask, tgt)
        torch.testing.assert_close(out.float(), ref, rtol=5 * tol, atol=5 * tol, msg=attention)


def test_half_input_outside_autocast_is_a_clear_error():
    m = MultiHeadAttention(16, 4)
    with pytest.raises(ValueError, match=r"query must have the parameters' dtype torch.float32 \(or run under torch.autocast\)"):
        m(torch.randn(2, 3, 16, dtype=torch.bfloat16))
    cache = KVCache()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        m(torch.randn(2, 3, 16), cache=cache)  # the cache holds bfloat16 keys
    with pytest.raises(ValueError, match="cache holds torch.bfloat16"):
        m(torch.randn(2, 1, 16), cache=cache)  # the same generation, now outside autocast


# ---------------------------------------------------------------------------------------------
# 3. float16 numerics: scores far beyond float16's range
# ---------------------------------------------------------------------------------------------


def _big_qkv(dtype, magnitude=100.0):
    q = randn(2, 2, 5, 16, seed=10) * magnitude
    k = randn(2, 2, 7, 16, seed=11) * magnitude
    v = randn(2, 2, 7, 16, seed=12)
    return q.to(dtype), k.to(dtype), v.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
def test_half_attention_with_huge_scores_matches_float64(dtype, causal):
    q, k, v = _big_qkv(dtype)
    s = (q.double() @ k.double().transpose(-1, -2)) / 4.0  # the scaled scores, in float64
    assert s.abs().max() > 1e4 and (q.double() @ k.double().transpose(-1, -2)).abs().max() > 65504
    mask = torch.ones(5, 7, dtype=torch.bool).tril(2) if causal else None
    ref_w = torch.softmax(s if mask is None else s.masked_fill(~mask, float("-inf")), -1)
    ref = ref_w @ v.double()
    out, w = scaled_dot_product_attention(q, k, v, causal=causal)
    flash = flash_attention(q, k, v, causal=causal, block_size=3)
    torch_out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    for name, t in (("sdpa", out), ("weights", w), ("flash", flash)):
        assert t.dtype == dtype and torch.isfinite(t).all(), name
    tol = {"rtol": 4e-3, "atol": 4e-3} if dtype == torch.float16 else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(out.double(), ref, **tol)
    torch.testing.assert_close(w.double(), ref_w, **tol)
    torch.testing.assert_close(flash.double(), ref, **tol)
    torch.testing.assert_close(out, torch_out, **tol)  # where PyTorch's SDPA is right, we agree


def test_float16_mha_need_weights_with_huge_scores():
    torch.manual_seed(0)
    m = MultiHeadAttention(16, 4, bias=False).eval()
    with torch.no_grad():  # q = k = 100 x: raw scores ~ 1e5, beyond float16's 65504
        for proj in (m.q_proj, m.k_proj):
            proj.weight.copy_(100.0 * torch.eye(16))
    m = m.half()
    x = randn(2, 6, 16, seed=13).half()
    out, w = m(x, need_weights=True, causal=True)
    fused, _ = m(x, causal=True)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    q = (100.0 * x.double()).view(2, 6, 4, 4).transpose(1, 2)
    s = (q @ q.transpose(-1, -2)) / 2.0
    assert s.abs().max() > 1e4
    ref_w = torch.softmax(s.masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), float("-inf")), -1)
    torch.testing.assert_close(w.double(), ref_w, rtol=4e-3, atol=4e-3)
    torch.testing.assert_close(out, fused, rtol=4e-3, atol=4e-3)


def test_masked_softmax_half_is_normalised_in_float32():
    n = 4096
    scores = torch.zeros(2, n, dtype=torch.float16)  # uniform rows: each weight is 1/n
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[1, n // 2:] = False
    a = masked_softmax(scores, mask)
    assert a.dtype == torch.float16
    torch.testing.assert_close(a[0].double(), torch.full((n,), 1 / n, dtype=torch.float64), rtol=1e-3, atol=0)
    assert math.isclose(a[1, : n // 2].double().sum().item(), 1.0, rel_tol=2e-3)
