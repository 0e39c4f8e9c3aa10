"""Tests of attnbook.attention against float64 loops of the papers' equations, against
``torch.nn.MultiheadAttention``, and of the properties attention must have (permutation
equivariance, causality, padding invariance, incremental decoding == full forward)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import close, randn, softmax_loop
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attnbook.attention import (
    AdditiveAttention,
    AttentionalOutput,
    KVCache,
    LuongAttention,
    MultiHeadAttention,
)
from attnbook.functional import causal_mask, key_padding_to_attn_mask, padding_mask
from attnbook.positional import RotaryEmbedding, alibi_bias
from attnbook.transformer import CacheList


def _w(lin: nn.Linear) -> torch.Tensor:
    return lin.weight.detach().cpu().double()


# ---------------------------------------------------------------------------------------------
# Additive (Bahdanau) and Luong attention against loops of their equations
# ---------------------------------------------------------------------------------------------


def _rnn_loop(score, query, keys, values, mask):
    """float64 loop: ``a_t = softmax_s(score(s_t, h_s))`` over kept keys, ``c_t = Σ a_ts v_s``.
    query (B, T, Dq), mask (B, T, S) bool or None -> (B, T, Dv), (B, T, S)."""
    q, k, v = (x.detach().cpu().double() for x in (query, keys, values))
    B, T, S = q.shape[0], q.shape[1], k.shape[1]
    keep = torch.ones(B, T, S, dtype=torch.bool) if mask is None else mask.cpu().expand(B, T, S)
    ctx = torch.zeros(B, T, v.shape[-1], dtype=torch.float64)
    wts = torch.zeros(B, T, S, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            a = softmax_loop([score(q[b, t], k[b, s]) for s in range(S)], keep[b, t].tolist())
            for s in range(S):
                wts[b, t, s] = a[s]
                ctx[b, t] += a[s] * v[b, s]
    return ctx, wts


def _scores(mod) -> callable:
    """The module's score function ``score(s_t, h_s)`` written from the paper, in float64."""
    if isinstance(mod, AdditiveAttention):
        W, U, v = _w(mod.W_a), _w(mod.U_a), _w(mod.v_a)[0]
        return lambda s, h: float(v @ torch.tanh(W @ s + U @ h))
    if mod.score == "dot":
        return lambda s, h: float(s @ h)
    if mod.score == "general":
        W = _w(mod.W_a)
        return lambda s, h: float(s @ W @ h)
    W, v = _w(mod.W_a), _w(mod.v_a)[0]
    return lambda s, h: float(v @ torch.tanh(W @ torch.cat((s, h))))


def _rnn_modules():
    return {
        "additive": lambda: AdditiveAttention(4, 6, 5),
        "dot": lambda: LuongAttention(6, 6, "dot"),
        "general": lambda: LuongAttention(4, 6, "general"),
        "concat": lambda: LuongAttention(4, 6, "concat", hidden_dim=7),
    }


@pytest.mark.parametrize("kind", list(_rnn_modules()))
@pytest.mark.parametrize("form", ["B,Dq", "B,T,Dq"])
@pytest.mark.parametrize("mask_kind", ["none", "B,S", "B,T,S"])
def test_rnn_attention_matches_loop(device, dtype, tol, kind, form, mask_kind):
    if form == "B,Dq" and mask_kind == "B,T,S":
        pytest.skip("a single query takes a (B, S) mask only")
    torch.manual_seed(0)
    mod = _rnn_modules()[kind]().to(device=device, dtype=dtype)
    B, T, S = 3, 4, 5
    query = randn(B, T, mod.query_dim, device=device, dtype=dtype, seed=1)
    keys = randn(B, S, mod.key_dim, device=device, dtype=dtype, seed=2)
    values = randn(B, S, 3, device=device, dtype=dtype, seed=3)
    mask = None
    if mask_kind == "B,S":
        mask = padding_mask(torch.tensor([5, 2, 0]), S).to(device)  # batch 2: every key masked
    elif mask_kind == "B,T,S":
        mask = causal_mask(T, S, device=device).expand(B, T, S).clone()
    ref_mask = None if mask is None else (mask[:, None, :] if mask.dim() == 2 else mask)
    if form == "B,Dq":
        query = query[:, 0]
        context, weights = mod(query, keys, values, mask)
        assert context.shape == (B, 3) and weights.shape == (B, S)
        ref_c, ref_w = _rnn_loop(_scores(mod), query[:, None], keys, values, ref_mask)
        ref_c, ref_w = ref_c[:, 0], ref_w[:, 0]
    else:
        context, weights = mod(query, keys, values, mask)
        assert context.shape == (B, T, 3) and weights.shape == (B, T, S)
        ref_c, ref_w = _rnn_loop(_scores(mod), query, keys, values, ref_mask)
    assert context.dtype == dtype and torch.isfinite(context).all()
    close(context, ref_c, tol)
    close(weights, ref_w, tol)


@pytest.mark.parametrize("kind", list(_rnn_modules()))
def test_projected_keys_give_the_same_result_step_by_step(kind):
    torch.manual_seed(1)
    mod = _rnn_modules()[kind]()
    B, T, S = 2, 4, 6
    query, keys, values = randn(B, T, mod.query_dim, seed=4), randn(B, S, mod.key_dim, seed=5), randn(B, S, 3, seed=6)
    mask = padding_mask(torch.tensor([6, 3]), S)
    full_c, full_w = mod(query, keys, values, mask)
    pk = mod.project_keys(keys)
    for t in range(T):  # a decoder loop: one query per step, the keys projected once
        c, w = mod(query[:, t], keys, values, mask, projected_keys=pk)
        torch.testing.assert_close(c, full_c[:, t])
        torch.testing.assert_close(w, full_w[:, t])
    c2, w2 = mod(query, keys, values, mask, projected_keys=pk)
    torch.testing.assert_close(c2, full_c)


def test_rnn_attention_fully_masked_gradients_are_finite():
    mod = AdditiveAttention(4, 4, 8)
    query, keys = randn(2, 4, seed=7).requires_grad_(True), randn(2, 5, 4, seed=8).requires_grad_(True)
    mask = torch.tensor([[True] * 5, [False] * 5])
    c, w = mod(query, keys, keys, mask)
    assert bool((c[1] == 0).all()) and bool((w[1] == 0).all())
    c.sum().backward()
    assert torch.isfinite(query.grad).all() and torch.isfinite(keys.grad).all()
    assert bool((query.grad[1] == 0).all())


def test_luong_parameters_follow_the_paper():
    assert not list(LuongAttention(5, 5, "dot").parameters())
    g = LuongAttention(4, 6, "general")
    assert g.W_a.weight.shape == (4, 6) and g.W_a.bias is None  # s_tᵀ W_a h_s: W_a is (Dq, Dk)
    c = LuongAttention(4, 6, "concat")
    assert c.W_a.weight.shape == (4, 10) and c.v_a.weight.shape == (1, 4)  # hidden_dim = query_dim
    a = AdditiveAttention(4, 6, 9)
    assert (a.W_a.weight.shape, a.U_a.weight.shape, a.v_a.weight.shape) == ((9, 4), (9, 6), (1, 9))
    assert all(lin.bias is None for lin in (a.W_a, a.U_a, a.v_a))


@pytest.mark.parametrize("form", ["B", "B,T"])
def test_attentional_output_matches_formula(device, dtype, tol, form):
    torch.manual_seed(2)
    mod = AttentionalOutput(5, 3, 7).to(device=device, dtype=dtype)
    lead = (2,) if form == "B" else (2, 4)
    c, s = randn(*lead, 5, device=device, dtype=dtype, seed=9), randn(*lead, 3, device=device, dtype=dtype, seed=10)
    out = mod(c, s)
    assert out.shape == (*lead, 7) and mod.W_c.bias is None
    W = _w(mod.W_c)
    ref = torch.tanh(torch.cat((c.cpu().double(), s.cpu().double()), -1) @ W.T)
    close(out, ref, tol)


# ---------------------------------------------------------------------------------------------
# MultiHeadAttention: a float64 reference written head by head
# ---------------------------------------------------------------------------------------------


def _lin64(lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    y = x.detach().cpu().double() @ _w(lin).T
    return y if lin.bias is None else y + lin.bias.detach().cpu().double()


def _mha_reference(m, query, key=None, value=None, mask=None, causal=False, bias=None, rope=None):
    """MultiHead(Q, K, V) = Concat(head_1..head_H) W^O in float64, one head at a time; query
    head h reads key/value head h // (H / H_kv). Returns (out (B, T, E), weights (B, H, T, S))."""
    key = query if key is None else key
    value = key if value is None else value
    Q, K, V = _lin64(m.q_proj, query), _lin64(m.k_proj, key), _lin64(m.v_proj, value)
    B, T, S = Q.shape[0], Q.shape[1], K.shape[1]
    H, D, groups = m.num_heads, m.head_dim, m.num_heads // m.num_kv_heads
    keep = torch.ones(B, H, T, S, dtype=torch.bool)
    if mask is not None:
        keep = keep & mask.cpu()
    if causal:
        keep = keep & torch.tensor([[j <= i + S - T for j in range(S)] for i in range(T)])
    heads, weights = [], []
    for h in range(H):
        g = h // groups
        q, k, v = Q[..., h * D:(h + 1) * D], K[..., g * D:(g + 1) * D], V[..., g * D:(g + 1) * D]
        if rope is not None:
            q, k = rope(q, torch.arange(T)), rope(k, torch.arange(S))
        s = q @ k.transpose(1, 2) / math.sqrt(D)  # (B, T, S)
        if bias is not None:
            s = s + bias.cpu().double().expand(B, H, T, S)[:, h]
        a = torch.softmax(s.masked_fill(~keep[:, h], float("-inf")), -1).nan_to_num(0.0)
        heads.append(a @ v)
        weights.append(a)
    out = _lin64(m.out_proj, torch.cat(heads, -1))
    return out, torch.stack(weights, 1)


def _randomise_biases(m: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _to_torch_mha(m: MultiHeadAttention) -> nn.MultiheadAttention:
    """An ``nn.MultiheadAttention`` holding the same weights."""
    has_bias = m.q_proj.bias is not None
    ref = nn.MultiheadAttention(
        m.embed_dim, m.num_heads, bias=has_bias, batch_first=True, kdim=m.kdim, vdim=m.vdim,
        dtype=m.q_proj.weight.dtype,
    )
    with torch.no_grad():
        if ref._qkv_same_embed_dim:
            ref.in_proj_weight.copy_(torch.cat([m.q_proj.weight, m.k_proj.weight, m.v_proj.weight]))
        else:
            ref.q_proj_weight.copy_(m.q_proj.weight)
            ref.k_proj_weight.copy_(m.k_proj.weight)
            ref.v_proj_weight.copy_(m.v_proj.weight)
        if has_bias:
            ref.in_proj_bias.copy_(torch.cat([m.q_proj.bias, m.k_proj.bias, m.v_proj.bias]))
            ref.out_proj.bias.copy_(m.out_proj.bias)
        ref.out_proj.weight.copy_(m.out_proj.weight)
    return ref.eval()


@pytest.mark.parametrize("attn", ["self", "cross"])
@pytest.mark.parametrize("masking", ["none", "key_padding", "causal", "both"])
@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_mha_matches_torch_multihead_attention(attn, masking, need_weights, bias):
    torch.manual_seed(3)
    B, T, E, H = 3, 5, 16, 4
    S, kdim, vdim = (T, None, None) if attn == "self" else (7, 6, 10)
    m = MultiHeadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim).eval()
    _randomise_biases(m)
    ref = _to_torch_mha(m)
    x = randn(B, T, E, seed=11)
    key = x if attn == "self" else randn(B, S, kdim, seed=12)
    value = x if attn == "self" else randn(B, S, vdim, seed=13)
    pad = padding_mask(torch.tensor([S, S - 2, 1]), S)  # (B, S), True = real token
    use_pad = masking in ("key_padding", "both")
    causal = masking in ("causal", "both")
    out, w = m(
        x, key, value, mask=key_padding_to_attn_mask(pad) if use_pad else None,
        causal=causal, need_weights=need_weights,
    )
    r_out, r_w = ref(
        x, key, value, key_padding_mask=~pad if use_pad else None,
        attn_mask=~causal_mask(T, S) if causal else None, need_weights=True, average_attn_weights=False,
    )
    torch.testing.assert_close(out, r_out, rtol=1e-5, atol=1e-5)
    if need_weights:
        assert w.shape == (B, H, T, S)
        torch.testing.assert_close(w, r_w, rtol=1e-5, atol=1e-6)
        _, r_avg = ref(x, key, value, key_padding_mask=~pad if use_pad else None,
                       attn_mask=~causal_mask(T, S) if causal else None)  # averaged over heads
        torch.testing.assert_close(w.mean(1), r_avg, rtol=1e-5, atol=1e-6)
    else:
        assert w is None


def _configs():
    return {
        "mha": dict(num_kv_heads=None, rope=False, alibi=False),
        "gqa": dict(num_kv_heads=2, rope=False, alibi=False),
        "mqa": dict(num_kv_heads=1, rope=False, alibi=False),
        "rope": dict(num_kv_heads=None, rope=True, alibi=False),
        "gqa+rope": dict(num_kv_heads=2, rope=True, alibi=False),
        "alibi": dict(num_kv_heads=None, rope=False, alibi=True),
    }


def _build(config: str, E=16, H=4, seed=4, dtype=torch.float32, device="cpu"):
    c = _configs()[config]
    torch.manual_seed(seed)
    m = MultiHeadAttention(E, H, num_kv_heads=c["num_kv_heads"]).to(device=device, dtype=dtype).eval()
    _randomise_biases(m, seed)
    rope = RotaryEmbedding(E // H) if c["rope"] else None
    return m, rope, c["alibi"]


@pytest.mark.parametrize("config", list(_configs()))
@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_mha_matches_float64_reference(device, dtype, tol, config, need_weights, causal):
    B, T, E, H = 2, 6, 16, 4
    m, rope, alibi = _build(config, E, H, dtype=dtype, device=device)
    x = randn(B, T, E, device=device, dtype=dtype, seed=14)
    mask = torch.rand(B, 1, T, T, generator=torch.Generator().manual_seed(0)) > 0.3
    mask[0, 0, 2] = False  # a fully masked query row
    mask = mask.to(device)
    bias = alibi_bias(H, T, T, device=device, dtype=dtype) if alibi else None
    out, w = m(x, mask=mask, causal=causal, need_weights=need_weights, attn_bias=bias, rope=rope)
    ref, ref_w = _mha_reference(m, x, mask=mask, causal=causal, bias=bias, rope=rope)
    assert out.dtype == dtype and torch.isfinite(out).all()
    close(out, ref, tol)
    if need_weights:
        close(w, ref_w, tol)
    # the fully masked row attends to nothing: its output is out_proj's bias
    close(out[0, 2], m.out_proj.bias.detach().cpu().double(), tol)


@pytest.mark.parametrize("config", ["mha", "gqa+rope", "alibi"])
def test_need_weights_true_and_false_agree(config):
    m, rope, alibi = _build(config)
    x = randn(2, 7, 16, seed=15)
    for causal in (False, True):
        for mask in (None, key_padding_to_attn_mask(padding_mask(torch.tensor([7, 4]), 7))):
            bias = alibi_bias(4, 7, 7) if alibi else None
            a, _ = m(x, mask=mask, causal=causal, attn_bias=bias, rope=rope)
            b, w = m(x, mask=mask, causal=causal, attn_bias=bias, rope=rope, need_weights=True)
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 7))


def test_fully_masked_rows_no_nan_on_both_paths_and_gradients():
    m, _, _ = _build("gqa")
    x = randn(2, 5, 16, seed=16).requires_grad_(True)
    mask = torch.ones(2, 4, 5, 5, dtype=torch.bool)
    mask[1, :, 3] = False  # query 3 of batch 1 sees nothing in any head
    mask[0, 2, 0] = False  # query 0 of batch 0 sees nothing in head 2 only
    for need_weights in (False, True):
        for bias in (None, alibi_bias(4, 5, 5)):
            out, w = m(x, mask=mask, causal=True, need_weights=need_weights, attn_bias=bias)
            assert torch.isfinite(out).all()
            torch.testing.assert_close(out[1, 3], m.out_proj.bias)
            if need_weights:
                assert bool((w[1, :, 3] == 0).all()) and bool((w[0, 2, 0] == 0).all())
            (grad,) = torch.autograd.grad(out.sum(), x)
            assert torch.isfinite(grad).all()


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(T=st.integers(1, 7), data=st.data(), need_weights=st.booleans())
def test_self_attention_is_permutation_equivariant(T, data, need_weights):
    m, _, _ = _build("gqa")
    perm = torch.tensor(data.draw(st.permutations(range(T))))
    x = randn(2, T, 16, seed=data.draw(st.integers(0, 1000)))
    out, _ = m(x, need_weights=need_weights)
    out_p, _ = m(x[:, perm], need_weights=need_weights)
    torch.testing.assert_close(out_p, out[:, perm], rtol=1e-5, atol=1e-5)
    # cross-attention: permuting the memory (keys and values together) changes nothing
    mem = randn(2, 5, 16, seed=T)
    mperm = torch.randperm(5, generator=torch.Generator().manual_seed(T))
    torch.testing.assert_close(m(x, mem)[0], m(x, mem[:, mperm])[0], rtol=1e-5, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(t=st.integers(0, 6), config=st.sampled_from(["mha", "gqa+rope", "alibi"]), need_weights=st.booleans())
def test_causal_output_ignores_the_future(t, config, need_weights):
    m, rope, alibi = _build(config)
    T = 7
    x = randn(2, T, 16, seed=17)
    y = x.clone()
    y[:, t + 1:] = randn(2, T - t - 1, 16, seed=18)
    bias = alibi_bias(4, T, T) if alibi else None
    a, _ = m(x, causal=True, rope=rope, attn_bias=bias, need_weights=need_weights)
    b, _ = m(y, causal=True, rope=rope, attn_bias=bias, need_weights=need_weights)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1])
    if t + 1 < T:
        assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])


@pytest.mark.parametrize("need_weights", [False, True])
def test_padding_does_not_change_unpadded_outputs(need_weights):
    m, rope, _ = _build("gqa+rope")
    lengths = [6, 3, 1]
    x = randn(3, 6, 16, seed=19)
    mask = key_padding_to_attn_mask(padding_mask(torch.tensor(lengths), 6))
    out, _ = m(x, mask=mask, rope=rope, need_weights=need_weights)
    junk = x.clone()
    for b, n in enumerate(lengths):
        junk[b, n:] = 100.0 * torch.randn(6 - n, 16)
        alone, _ = m(x[b:b + 1, :n], rope=rope, need_weights=need_weights)  # the sequence unpadded
        torch.testing.assert_close(out[b:b + 1, :n], alone, rtol=1e-5, atol=1e-5)
    out_junk, _ = m(junk, mask=mask, rope=rope, need_weights=need_weights)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(out_junk[b, :n], out[b, :n], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", list(_configs()))
@pytest.mark.parametrize("chunks", [[1] * 9, [3, 1, 4, 1], [9]])
@pytest.mark.parametrize("need_weights", [False, True])
def test_kv_cache_decoding_equals_full_causal_forward(config, chunks, need_weights):
    m, rope, alibi = _build(config)
    T, H = 9, 4
    x = randn(2, T, 16, seed=20)
    full, full_w = m(x, causal=True, rope=rope, attn_bias=alibi_bias(H, T, T) if alibi else None, need_weights=True)
    cache, outs, P = KVCache(), [], 0
    assert cache.length == 0 and cache.k is None
    for n in chunks:
        bias = alibi_bias(H, n, P + n) if alibi else None
        o, w = m(x[:, P:P + n], causal=True, cache=cache, rope=rope, attn_bias=bias, need_weights=need_weights)
        if need_weights:
            torch.testing.assert_close(w, full_w[:, :, P:P + n, : P + n], rtol=1e-5, atol=1e-6)
        outs.append(o)
        P += n
        assert cache.length == P
        assert cache.k.shape == (2, m.num_kv_heads, P, m.head_dim) and cache.v.shape == cache.k.shape
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-5, atol=1e-5)


def test_kv_cache_update_reorder_reset():
    cache = KVCache()
    k1, v1 = randn(3, 2, 4, 5, seed=21), randn(3, 2, 4, 6, seed=22)
    k_all, v_all = cache.update(k1, v1)
    assert torch.equal(k_all, k1) and cache.length == 4
    k2, v2 = randn(3, 2, 1, 5, seed=23), randn(3, 2, 1, 6, seed=24)
    k_all, v_all = cache.update(k2, v2)
    assert torch.equal(k_all, torch.cat((k1, k2), 2)) and torch.equal(v_all, torch.cat((v1, v2), 2))
    cache.reorder(torch.tensor([2, 2, 0]))
    assert torch.equal(cache.k[0], k_all[2]) and torch.equal(cache.v[2], v_all[0]) and cache.length == 5
    with pytest.raises(ValueError, match="k_new"):
        cache.update(randn(2, 2, 1, 5), randn(2, 2, 1, 6))  # wrong batch size
    with pytest.raises(ValueError, match="k_new"):
        cache.update(randn(3, 2, 1, 4), randn(3, 2, 1, 6))  # wrong head dim
    with pytest.raises(ValueError, match="dtype"):
        cache.update(randn(3, 2, 1, 5, dtype=torch.float64), randn(3, 2, 1, 6, dtype=torch.float64))
    cache.reset()
    assert cache.length == 0 and cache.k is None and cache.v is None


def test_gqa_equals_mha_with_repeated_key_value_heads():
    """GQA with H_kv heads == MHA whose k/v projections repeat each kv head H/H_kv times."""
    E, H, H_kv = 16, 4, 2
    gqa, _, _ = _build("gqa")
    mha = MultiHeadAttention(E, H).eval()
    D, groups = E // H, H // H_kv
    with torch.no_grad():
        for name in ("q_proj", "out_proj"):
            getattr(mha, name).load_state_dict(getattr(gqa, name).state_dict())
        for name in ("k_proj", "v_proj"):
            src, dst = getattr(gqa, name), getattr(mha, name)
            dst.weight.copy_(src.weight.view(H_kv, D, E).repeat_interleave(groups, 0).reshape(E, E))
            dst.bias.copy_(src.bias.view(H_kv, D).repeat_interleave(groups, 0).reshape(E))
    x = randn(2, 6, E, seed=25)
    for need_weights in (False, True):
        a, wa = gqa(x, causal=True, need_weights=need_weights)
        b, wb = mha(x, causal=True, need_weights=need_weights)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(wa, wb)
    # num_kv_heads == num_heads is plain multi-head attention
    same = MultiHeadAttention(E, H, num_kv_heads=H)
    same.load_state_dict(mha.state_dict())
    torch.testing.assert_close(same(x)[0], mha(x)[0])


def test_gqa_without_sdpa_enable_gqa_repeats_heads(monkeypatch):
    """The fallback for PyTorch < 2.5 (no ``enable_gqa``) repeats the kv heads itself."""
    import attnbook.attention as attention

    m, rope, _ = _build("gqa+rope")
    x = randn(2, 6, 16, seed=31)
    ref, _ = _mha_reference(m, x, causal=True, rope=rope)
    monkeypatch.setattr(attention, "_SDPA_HAS_GQA", False)
    out, _ = m(x, causal=True, rope=rope)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


def test_mqa_shapes_and_parameter_count():
    E, H = 32, 8
    D = E // H
    mqa = MultiHeadAttention(E, H, num_kv_heads=1)
    mha = MultiHeadAttention(E, H)
    assert mqa.k_proj.weight.shape == (D, E) and mqa.v_proj.weight.shape == (D, E)
    n = sum(p.numel() for p in mqa.parameters())
    assert n == 2 * (E * E + E) + 2 * (E * D + D)
    assert sum(p.numel() for p in mha.parameters()) == 4 * (E * E + E)
    cache = KVCache()
    out, w = mqa(randn(2, 3, E, seed=26), causal=True, cache=cache, need_weights=True)
    assert out.shape == (2, 3, E) and w.shape == (2, H, 3, 3) and cache.k.shape == (2, 1, 3, D)


def test_rope_scores_depend_only_on_position_difference():
    """Through MHA: the same two tokens at positions (P, P+1) get the same weights for every P."""
    m, rope, _ = _build("rope")
    a, b = randn(1, 1, 16, seed=27), randn(1, 1, 16, seed=28)
    pair = torch.cat((a, b), 1)  # (1, 2, E)
    _, w0 = m(pair, need_weights=True, rope=rope)  # positions 0, 1
    for P in (1, 5, 40):
        cache = KVCache()
        m(randn(1, P, 16, seed=P), cache=cache, rope=rope)  # occupy positions 0 .. P-1
        only_pair = torch.zeros(2, P + 2, dtype=torch.bool)
        only_pair[:, P:] = True  # attend to the pair only
        _, wP = m(pair, need_weights=True, rope=rope, cache=cache, mask=only_pair)
        torch.testing.assert_close(wP[..., P:], w0, rtol=1e-5, atol=1e-6)
    # ... and rope does change the weights (positions are seen at all)
    _, w_plain = m(pair, need_weights=True)
    assert not torch.allclose(w_plain, w0, atol=1e-4)


def test_alibi_bias_matches_manual_scores():
    m, _, _ = _build("alibi")
    T, H, D = 6, 4, 4
    x = randn(2, T, 16, seed=29)
    bias = alibi_bias(H, T, T)
    with torch.no_grad():
        _, w = m(x, causal=True, need_weights=True, attn_bias=bias)
        q = (x @ m.q_proj.weight.T + m.q_proj.bias).view(2, T, H, D).transpose(1, 2)
        k = (x @ m.k_proj.weight.T + m.k_proj.bias).view(2, T, H, D).transpose(1, 2)
    slopes = [2.0 ** (-8.0 * (h + 1) / H) for h in range(H)]
    for h in range(H):
        for i in range(T):
            row = [float(q[0, h, i] @ k[0, h, j]) / math.sqrt(D) - slopes[h] * (i - j) for j in range(i + 1)]
            expected = softmax_loop(row, [True] * (i + 1)) + [0.0] * (T - i - 1)
            torch.testing.assert_close(w[0, h, i].double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_dropout_only_in_training():
    torch.manual_seed(5)
    m = MultiHeadAttention(16, 4, dropout=0.5)
    x = randn(2, 6, 16, seed=30)
    m.eval()
    a, w = m(x, need_weights=True)
    torch.testing.assert_close(m(x)[0], a)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 6))
    m.train()
    for need_weights in (False, True):
        b, _ = m(x, need_weights=need_weights)
        assert not torch.allclose(a, b)


# ---------------------------------------------------------------------------------------------
# bad input -> ValueError naming the argument
# ---------------------------------------------------------------------------------------------

_x = torch.randn(2, 5, 16)
_mha = MultiHeadAttention(16, 4)
_add = AdditiveAttention(4, 6, 8)
_q4, _k6, _v3 = torch.randn(2, 4), torch.randn(2, 5, 6), torch.randn(2, 5, 3)


def _full_cache() -> KVCache:
    cache = KVCache()
    cache.update(torch.randn(3, 4, 2, 4), torch.randn(3, 4, 2, 4))
    return cache


BAD = [
    ("embed_dim", lambda: MultiHeadAttention(10, 4)),
    ("num_kv_heads", lambda: MultiHeadAttention(16, 4, num_kv_heads=3)),
    ("num_heads", lambda: MultiHeadAttention(16, 0)),
    ("dropout", lambda: MultiHeadAttention(16, 4, dropout=1.0)),
    ("query", lambda: _mha(torch.randn(5, 16))),
    ("query", lambda: _mha(torch.randn(2, 5, 8))),
    ("query", lambda: _mha(_x.double())),
    ("key", lambda: _mha(_x, torch.randn(2, 5, 8))),
    ("batch size", lambda: _mha(_x, torch.randn(3, 5, 16))),
    ("key and value", lambda: _mha(_x, torch.randn(2, 5, 16), torch.randn(2, 4, 16))),
    ("mask", lambda: _mha(_x, mask=torch.ones(2, 5, dtype=torch.bool))),  # (B, S) is refused
    ("mask", lambda: _mha(torch.randn(5, 3, 16), torch.randn(5, 5, 16), mask=torch.ones(5, 5, dtype=torch.bool))),
    ("mask", lambda: _mha(_x, mask=torch.ones(2, 5, 5, dtype=torch.bool))),
    ("mask", lambda: _mha(_x, mask=torch.ones(5, 5))),
    ("mask", lambda: _mha(_x, mask=torch.ones(2, 3, 5, 5, dtype=torch.bool))),
    ("attn_bias", lambda: _mha(_x, attn_bias=torch.zeros(3, 5, 5))),
    ("attn_bias", lambda: _mha(_x, attn_bias=torch.zeros(5, 5, dtype=torch.bool))),
    ("rope", lambda: _mha(_x, rope=3)),
    ("cache", lambda: _mha(_x, cache=_full_cache())),
    ("cache", lambda: _mha(_x, cache=object())),
    ("query_dim", lambda: AdditiveAttention(0, 4, 4)),
    ("query", lambda: _add(torch.randn(2, 5), _k6, _v3)),
    ("keys", lambda: _add(_q4, torch.randn(2, 5, 4), _v3)),
    ("batch size", lambda: _add(_q4, _k6, torch.randn(3, 5, 3))),
    ("keys and values", lambda: _add(_q4, _k6, torch.randn(2, 4, 3))),
    ("dtype", lambda: _add(_q4, _k6, _v3.double())),
    ("mask", lambda: _add(_q4, _k6, _v3, torch.ones(2, 4, dtype=torch.bool))),
    ("mask", lambda: _add(_q4, _k6, _v3, torch.ones(2, 5))),
    ("mask", lambda: _add(torch.randn(2, 3, 4), _k6, _v3, torch.ones(2, 4, 5, dtype=torch.bool))),
    ("projected_keys", lambda: _add(_q4, _k6, _v3, projected_keys=torch.randn(2, 5, 7))),
    ("score", lambda: LuongAttention(4, 4, "cosine")),
    ("query_dim == key_dim", lambda: LuongAttention(4, 6, "dot")),
    ("hidden_dim", lambda: LuongAttention(4, 6, "general", hidden_dim=3)),
    ("projected_keys", lambda: LuongAttention(4, 6, "general")(_q4, _k6, _v3, projected_keys=_k6)),
    ("context", lambda: AttentionalOutput(5, 3, 7)(torch.randn(2, 4), torch.randn(2, 3))),
    ("query", lambda: AttentionalOutput(5, 3, 7)(torch.randn(2, 5), torch.randn(2, 4))),
    ("leading", lambda: AttentionalOutput(5, 3, 7)(torch.randn(2, 5), torch.randn(3, 3))),
    ("index", lambda: KVCache().reorder(torch.tensor([0.5]))),
    # wrong device or dtype of masks and biases, non-bool flags, out-of-range indices
    (r"mask must be on the device of q \(cpu\), got meta",
     lambda: _mha(_x, mask=torch.ones(5, 5, dtype=torch.bool, device="meta"))),
    ("attn_bias must be on the device", lambda: _mha(_x, attn_bias=torch.zeros(4, 5, 5, device="meta"))),
    ("attn_bias must be a floating point", lambda: _mha(_x, attn_bias=torch.zeros(4, 5, 5, dtype=torch.int32))),
    ("mask must be on the device", lambda: _add(_q4, _k6, _v3, torch.ones(2, 5, dtype=torch.bool, device="meta"))),
    ("causal must be True or False", lambda: _mha(_x, causal="no")),
    ("need_weights must be True or False", lambda: _mha(_x, need_weights=1)),
    ("bias must be True or False", lambda: MultiHeadAttention(16, 4, bias="no")),
    (r"index must hold batch rows in \[0, 3\), got values in \[0, 3\]", lambda: _full_cache().reorder(torch.tensor([0, 3]))),
    ("index must hold batch rows", lambda: _full_cache().reorder(torch.tensor([-1]))),
    ("index must hold batch rows", lambda: CacheList([_full_cache(), _full_cache()]).index_select(torch.tensor([5]))),
]


@pytest.mark.parametrize("match,call", BAD, ids=[f"{i}-{m}" for i, (m, _) in enumerate(BAD)])
def test_bad_input_raises_value_error(match, call):
    with pytest.raises(ValueError, match=match):
        call()


def test_reorder_check_is_a_data_check():
    from attnbook.utils import set_data_checks

    cache = _full_cache()
    cache.reorder(torch.tensor([2, 2, 0]))  # in range: fine
    with set_data_checks(False), pytest.raises((IndexError, RuntimeError)):
        cache.reorder(torch.tensor([7]))  # unchecked: PyTorch's own error, no host read first
