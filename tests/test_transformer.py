"""Tests of attnbook.transformer: shapes, causality, KV-cache decoding, padding, agreement with
torch.nn.TransformerEncoderLayer / TransformerDecoderLayer, positions, gradients, checkpoints."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from attnbook.attention import KVCache
from attnbook.positional import sinusoidal_encoding
from attnbook.train import beam_search, greedy_decode
from attnbook.transformer import (
    POSITIONAL_SCHEMES,
    AttentionWeights,
    DecoderLayer,
    DecoderOnly,
    EncoderLayer,
    TokenEmbedding,
    Transformer,
)

SCHEMES = list(POSITIONAL_SCHEMES)
FLOATS = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]
TOL = {torch.float32: {"rtol": 1e-4, "atol": 1e-5}, torch.float64: {"rtol": 1e-10, "atol": 1e-10}}
V = 13


def _lm(positional="sinusoidal", device="cpu", dtype=torch.float32, **kw) -> DecoderOnly:
    torch.manual_seed(0)
    args = {"vocab_size": V, "d_model": 16, "num_heads": 4, "num_layers": 2, "max_len": 32}
    args.update(kw)
    return DecoderOnly(positional=positional, **args).to(device=device, dtype=dtype).eval()


def _seq2seq(device="cpu", dtype=torch.float32, **kw) -> Transformer:
    torch.manual_seed(0)
    args = {
        "src_vocab": 11, "tgt_vocab": V, "d_model": 16, "num_heads": 4,
        "num_encoder_layers": 2, "num_decoder_layers": 2, "max_len": 32,
    }
    args.update(kw)
    return Transformer(**args).to(device=device, dtype=dtype).eval()


def _tokens(B, T, vocab=V, device="cpu", seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (B, T), generator=g).to(device)


# ---------------------------------------------------------------------------------------------
# shapes and attention weights
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("positional", SCHEMES)
def test_decoder_only_shapes_and_weights(positional):
    model = _lm(positional)
    x = _tokens(3, 7)
    logits = model(x)
    assert logits.shape == (3, 7, V) and torch.isfinite(logits).all()
    logits2, attn = model(x, return_attention=True)
    torch.testing.assert_close(logits2, logits)
    assert isinstance(attn, AttentionWeights) and attn.keys() == ["decoder_self"]
    assert attn.encoder_self == [] and attn.cross == []
    weights = attn.decoder_self
    assert len(weights) == 2
    for w in weights:
        assert w.shape == (3, 4, 7, 7)
        torch.testing.assert_close(w.sum(-1), torch.ones(3, 4, 7))
        # causal: no weight on future keys
        assert torch.equal(w.triu(1), torch.zeros_like(w))


def test_transformer_shapes_and_weights():
    model = _seq2seq()
    src, tgt = _tokens(2, 9, vocab=11), _tokens(2, 5)
    lengths = torch.tensor([9, 6])
    src_mask = torch.arange(9)[None] < lengths[:, None]  # (B, S)
    logits, attn = model(src, tgt, src_mask, return_attention=True)
    assert logits.shape == (2, 5, V)
    torch.testing.assert_close(model(src, tgt, src_mask), logits)
    assert isinstance(attn, AttentionWeights)
    assert attn.keys() == ["encoder_self", "decoder_self", "cross"]
    assert [w.shape for w in attn.encoder_self] == [(2, 4, 9, 9)] * 2
    assert [w.shape for w in attn.decoder_self] == [(2, 4, 5, 5)] * 2
    assert [w.shape for w in attn.cross] == [(2, 4, 5, 9)] * 2
    assert dict(attn.items())["cross"] is attn["cross"] is attn.cross
    for w in attn.encoder_self + attn.decoder_self + attn.cross:
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    # padded source keys get no weight, neither in the encoder nor in the cross-attention
    for w in attn.encoder_self + attn.cross:
        assert torch.all(w[1, ..., 6:] == 0)
    memory = model.encode(src, src_mask)
    assert memory.shape == (2, 9, 16)
    torch.testing.assert_close(model.decode(tgt, memory, src_mask), logits)


def test_d_ff_default_and_explicit():
    assert _lm().layers[0].linear1.out_features == 64
    assert _lm(d_ff=24).layers[0].linear1.out_features == 24
    assert _seq2seq(d_ff=40).decoder.layers[1].linear2.in_features == 40


# ---------------------------------------------------------------------------------------------
# causality
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("positional", SCHEMES)
def test_decoder_only_is_causal(positional, device):
    model = _lm(positional, device=device)
    x = _tokens(2, 10, device=device)
    full = model(x)
    for t in (0, 4, 8):
        y = x.clone()
        y[:, t + 1 :] = (y[:, t + 1 :] + 1 + torch.arange(9 - t, device=device)) % V  # change the future
        changed = model(y)
        torch.testing.assert_close(changed[:, : t + 1], full[:, : t + 1])
        assert not torch.allclose(changed[:, t + 1 :], full[:, t + 1 :])


@pytest.mark.parametrize("positional", SCHEMES)
def test_transformer_decoder_is_causal(positional):
    model = _seq2seq(positional=positional)
    src, tgt = _tokens(2, 6, vocab=11), _tokens(2, 8)
    full = model(src, tgt)
    t = 3
    y = tgt.clone()
    y[:, t + 1 :] = (y[:, t + 1 :] + 5) % V
    torch.testing.assert_close(model(src, y)[:, : t + 1], full[:, : t + 1])


# ---------------------------------------------------------------------------------------------
# incremental decoding with KV caches == full forward
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("positional", SCHEMES)
def test_decoder_only_cache_equals_full(positional, device, dtype):
    model = _lm(positional, device=device, dtype=dtype)
    x = _tokens(2, 11, device=device)
    full = model(x)
    # one token at a time
    caches = model.new_caches()
    assert len(caches) == 2 and all(isinstance(c, KVCache) for c in caches)
    steps = [model(x[:, t : t + 1], caches=caches) for t in range(11)]
    torch.testing.assert_close(torch.cat(steps, 1), full, **TOL[dtype])
    # uneven chunks: a prompt, then pieces
    caches = model.new_caches()
    chunks = [model(x[:, a:b], caches=caches) for a, b in ((0, 4), (4, 5), (5, 9), (9, 11))]
    torch.testing.assert_close(torch.cat(chunks, 1), full, **TOL[dtype])


def test_decoder_only_cache_with_gqa_and_weights():
    model = _lm("rope", num_heads=4, num_kv_heads=2)
    x = _tokens(2, 6)
    full, w_full = model(x, return_attention=True)
    caches = model.new_caches()
    model(x[:, :4], caches=caches)
    last, w_last = model(x[:, 4:], caches=caches, return_attention=True)
    torch.testing.assert_close(last, full[:, 4:], rtol=1e-4, atol=1e-5)
    for a, b in zip(w_last.decoder_self, w_full.decoder_self, strict=True):
        assert a.shape == (2, 4, 2, 6)  # the last 2 queries over all 6 keys
        torch.testing.assert_close(a, b[:, :, 4:], rtol=1e-4, atol=1e-5)


def test_decoder_only_cache_with_padding_mask():
    model = _lm("alibi")
    x = _tokens(2, 7)
    pad = torch.ones(2, 7, dtype=torch.bool)
    pad[1, 2] = False  # one key of row 1 may not be attended to
    full = model(x, key_padding_mask=pad)
    caches = model.new_caches()
    first = model(x[:, :5], key_padding_mask=pad[:, :5], caches=caches)
    rest = model(x[:, 5:], key_padding_mask=pad, caches=caches)  # (B, P + T) mask
    torch.testing.assert_close(torch.cat([first, rest], 1), full, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="key_padding_mask"):
        model(x[:, :1], key_padding_mask=pad[:, :1], caches=caches)  # must cover P + T keys


@pytest.mark.parametrize("positional", SCHEMES)
def test_transformer_decode_cache_equals_full(positional, device):
    model = _seq2seq(device=device, positional=positional)
    src, tgt = _tokens(3, 8, vocab=11, device=device), _tokens(3, 6, device=device)
    src_mask = torch.ones(3, 8, dtype=torch.bool, device=device)
    src_mask[0, 5:] = False
    memory = model.encode(src, src_mask)
    full, attn = model.decode(tgt, memory, src_mask, return_attention=True)
    caches = model.new_caches()
    for t in range(6):
        step, a = model.decode(tgt[:, t : t + 1], memory, src_mask, caches=caches, return_attention=True)
        torch.testing.assert_close(step[:, 0], full[:, t], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a.cross[-1][:, :, 0], attn.cross[-1][:, :, t], rtol=1e-4, atol=1e-5)
        assert a.decoder_self[0].shape == (3, 4, 1, t + 1)


def test_greedy_and_beam_decoding_with_and_without_cache():
    model = _seq2seq()
    src = _tokens(3, 7, vocab=11)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[2, 4:] = False
    kw = {"bos": 1, "eos": 2, "max_len": 8, "batch_size": 3}
    cached = greedy_decode(model.step, model.initial_state(src, mask), **kw)
    plain = greedy_decode(model.step, model.initial_state(src, mask, use_cache=False), **kw)
    assert torch.equal(cached.tokens, plain.tokens)
    torch.testing.assert_close(cached.scores, plain.scores, rtol=1e-4, atol=1e-4)
    assert cached.extras.shape[:2] == cached.tokens.shape and cached.extras.shape[2] == 7
    # brute-force greedy: argmax of a full forward pass at each length
    prefix = torch.ones(3, 1, dtype=torch.long)
    for _ in range(cached.tokens.shape[1]):
        nxt = model(src, prefix, mask)[:, -1].argmax(-1)
        prefix = torch.cat([prefix, nxt[:, None]], 1)
    done = torch.cumsum(prefix[:, 1:] == 2, 1) - (prefix[:, 1:] == 2).long() > 0  # after eos
    assert torch.equal(cached.tokens[~done], prefix[:, 1:][~done])
    # beam search reorders the caches: the cached and recomputed searches agree
    b1 = beam_search(model.step, model.initial_state(src, mask), beam_size=3, **kw)
    b2 = beam_search(model.step, model.initial_state(src, mask, use_cache=False), beam_size=3, **kw)
    assert torch.equal(b1.tokens, b2.tokens)
    torch.testing.assert_close(b1.scores, b2.scores, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# padding
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [True, False])
def test_source_padding_does_not_change_real_outputs(norm_first):
    model = _seq2seq(norm_first=norm_first)
    src, tgt = _tokens(2, 6, vocab=11), _tokens(2, 5)
    alone = model(src, tgt)
    memory_alone = model.encode(src)
    for pad_token in (0, 7):
        padded = torch.cat([src, torch.full((2, 4), pad_token)], 1)  # (B, 10)
        mask = torch.arange(10)[None].expand(2, 10) < 6
        torch.testing.assert_close(model(padded, tgt, mask), alone, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.encode(padded, mask)[:, :6], memory_alone, rtol=1e-4, atol=1e-5)


def test_right_padding_in_decoder_only_does_not_change_real_outputs():
    model = _lm("rope")
    x = _tokens(1, 5)
    padded = torch.cat([x, torch.zeros(1, 3, dtype=torch.long)], 1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    torch.testing.assert_close(model(padded, key_padding_mask=mask)[:, :5], model(x), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# agreement with PyTorch's layers (copied weights)
# ---------------------------------------------------------------------------------------------


def _copy_attention(ours, theirs: nn.MultiheadAttention) -> None:
    W_q, W_k, W_v = ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight
    theirs.in_proj_weight.copy_(torch.cat([W_q, W_k, W_v], 0))
    theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias], 0))
    theirs.out_proj.weight.copy_(ours.out_proj.weight)
    theirs.out_proj.bias.copy_(ours.out_proj.bias)


def _copy_common(ours, theirs, norms: int) -> None:
    for name in ("linear1", "linear2") + tuple(f"norm{i}" for i in range(1, norms + 1)):
        getattr(theirs, name).load_state_dict(getattr(ours, name).state_dict())


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch(norm_first, device):
    torch.manual_seed(0)
    ours = EncoderLayer(16, 4, d_ff=32, norm_first=norm_first).to(device).eval()
    theirs = nn.TransformerEncoderLayer(
        16, 4, dim_feedforward=32, dropout=0.0, batch_first=True, norm_first=norm_first
    ).to(device).eval()
    with torch.no_grad():
        _copy_attention(ours.self_attn, theirs.self_attn)
        _copy_common(ours, theirs, norms=2)
    x = torch.randn(3, 7, 16, device=device)
    keep = torch.ones(3, 7, dtype=torch.bool, device=device)
    keep[1, 5:] = False
    with torch.no_grad():
        ref = theirs(x, src_key_padding_mask=~keep)  # torch: True = ignore
        out, _ = ours(x, mask=keep[:, None, None, :])
        causal_ref = theirs(x, src_mask=nn.Transformer.generate_square_subsequent_mask(7, device=device),
                            is_causal=True)
        causal_out, _ = ours(x, causal=True)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(causal_out, causal_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first):
    torch.manual_seed(0)
    ours = DecoderLayer(16, 4, d_ff=32, norm_first=norm_first).eval()
    theirs = nn.TransformerDecoderLayer(
        16, 4, dim_feedforward=32, dropout=0.0, batch_first=True, norm_first=norm_first
    ).eval()
    with torch.no_grad():
        _copy_attention(ours.self_attn, theirs.self_attn)
        _copy_attention(ours.cross_attn, theirs.multihead_attn)
        _copy_common(ours, theirs, norms=3)
    y, memory = torch.randn(2, 5, 16), torch.randn(2, 8, 16)
    keep = torch.ones(2, 8, dtype=torch.bool)
    keep[0, 6:] = False
    with torch.no_grad():
        ref = theirs(y, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5), tgt_is_causal=True,
                     memory_key_padding_mask=~keep)
        out, _, _ = ours(y, memory, memory_mask=keep[:, None, None, :])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# positions and embeddings
# ---------------------------------------------------------------------------------------------


def test_learned_positions_past_max_len_raise():
    model = _lm("learned", max_len=8)
    model(_tokens(1, 8))  # exactly max_len is fine
    with pytest.raises(ValueError, match="max_len=8"):
        model(_tokens(1, 9))
    caches = model.new_caches()
    model(_tokens(1, 6), caches=caches)
    with pytest.raises(ValueError, match="max_len"):
        model(_tokens(1, 3), caches=caches)  # positions 6, 7, 8


@pytest.mark.parametrize("positional", ["sinusoidal", "rope", "alibi", "none"])
def test_schemes_extrapolate_past_max_len(positional):
    model = _lm(positional, max_len=8)
    x = _tokens(2, 20)
    full = model(x)
    assert full.shape == (2, 20, V) and torch.isfinite(full).all()
    torch.testing.assert_close(model(x[:, :8]), full[:, :8], rtol=1e-4, atol=1e-5)  # still causal


def test_sinusoidal_positions_are_the_table():
    model = _lm("sinusoidal", max_len=4)
    x = torch.randn(2, 10, 16)
    added = model.positions.add(x, offset=3)
    torch.testing.assert_close(added - x, sinusoidal_encoding(13, 16)[3:][None].expand(2, 10, 16))
    assert not any("table" in k for k in model.state_dict())  # recomputable, not saved


def test_positions_change_the_output_except_none():
    # Permuting the prompt changes the last token's logits unless the model is order-blind: with
    # one layer and no positions, the last query attends to the SET of its keys. (With two or
    # more layers the causal mask itself leaks order: earlier outputs see different prefixes.)
    perm = torch.tensor([2, 0, 1, 3, 4])
    x = _tokens(1, 5)
    for positional in SCHEMES:
        model = _lm(positional, num_layers=1)
        a, b = model(x)[:, -1], model(x[:, perm])[:, -1]
        if positional == "none":
            # without positions the last query's attention is a set function of its prefix
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        else:
            assert not torch.allclose(a, b, rtol=1e-4, atol=1e-5), positional


def test_token_embedding_scale_matches_positions():
    torch.manual_seed(0)
    d = 64
    emb = TokenEmbedding(1000, d)
    vectors = emb(torch.arange(1000)[None])[0]  # (1000, d)
    mean_norm = vectors.norm(dim=-1).mean().item()
    assert abs(mean_norm / math.sqrt(d) - 1) < 0.05  # unit-variance coordinates
    pe_norm = sinusoidal_encoding(100, d).norm(dim=-1)
    torch.testing.assert_close(pe_norm, torch.full((100,), math.sqrt(d / 2)))
    assert 1.2 < mean_norm / pe_norm.mean().item() < 1.7  # about sqrt(2), not sqrt(2 d)


# ---------------------------------------------------------------------------------------------
# training machinery
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [True, False])
def test_gradients_reach_every_parameter(norm_first):
    model = _seq2seq(norm_first=norm_first, positional="learned").train()
    src, tgt = _tokens(4, 7, vocab=11), _tokens(4, 6)
    logits = model(src, tgt)
    nn.functional.cross_entropy(logits.reshape(-1, V), _tokens(4, 6, seed=5).reshape(-1)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_gradients_reach_every_parameter_decoder_only():
    model = _lm("learned").train()
    logits = model(_tokens(2, 6))
    logits.logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_dropout_only_in_training():
    model = _lm(dropout=0.3)
    x = _tokens(2, 6)
    torch.testing.assert_close(model(x), model(x))  # eval: deterministic
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, model(x))


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_state_dict_round_trip(positional):
    model = _seq2seq(positional=positional)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    torch.manual_seed(123)
    fresh = Transformer(11, V, 16, 4, 2, 2, max_len=32, positional=positional).eval()
    src, tgt = _tokens(2, 5, vocab=11), _tokens(2, 4)
    assert not torch.allclose(fresh(src, tgt), model(src, tgt))
    fresh.load_state_dict(state)
    assert torch.equal(fresh(src, tgt), model(src, tgt))
    lm, lm2 = _lm("learned"), DecoderOnly(V, 16, 4, 2, max_len=32, positional="learned").eval()
    buf = io.BytesIO()
    torch.save(lm.state_dict(), buf)
    buf.seek(0)
    lm2.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(lm2(_tokens(1, 5)), lm(_tokens(1, 5)))


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"d_model": 15}, "d_model"),
        ({"num_heads": 0}, "num_heads"),
        ({"num_layers": 0}, "num_layers"),
        ({"positional": "absolute"}, "positional"),
        ({"dropout": 1.5}, "dropout"),
        ({"d_ff": -3}, "d_ff"),
        ({"max_len": 0}, "max_len"),
    ],
)
def test_bad_constructor_arguments(kwargs, name):
    args = {"vocab_size": V, "d_model": 16, "num_heads": 4, "num_layers": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        DecoderOnly(**args)


def test_bad_forward_arguments():
    model = _lm()
    with pytest.raises(ValueError, match="tokens"):
        model(torch.randn(2, 5))
    with pytest.raises(ValueError, match="tokens"):
        model(torch.full((2, 5), V))  # out of the vocabulary
    with pytest.raises(ValueError, match="tokens"):
        model(_tokens(2, 5)[0])
    with pytest.raises(ValueError, match="key_padding_mask"):
        model(_tokens(2, 5), key_padding_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="key_padding_mask"):
        model(_tokens(2, 5), key_padding_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="caches"):
        model(_tokens(2, 5), caches=[KVCache()])
    s2s = _seq2seq()
    with pytest.raises(ValueError, match="src_key_padding_mask"):
        s2s(_tokens(2, 5, vocab=11), _tokens(2, 3), torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="memory"):
        s2s.decode(_tokens(2, 3), torch.randn(3, 5, 16))
    with pytest.raises(ValueError, match="num_encoder_layers"):
        Transformer(11, V, 16, 4, 0, 1)


def test_masks_on_another_device_are_named():
    model, s2s = _lm(), _seq2seq()
    meta = torch.ones(2, 5, dtype=torch.bool, device="meta")
    with pytest.raises(ValueError, match=r"key_padding_mask must be on the device of the tokens \(cpu\), got meta"):
        model(_tokens(2, 5), key_padding_mask=meta)
    with pytest.raises(ValueError, match="src_key_padding_mask must be on the device"):
        s2s(_tokens(2, 5, vocab=11), _tokens(2, 3), meta)
    with pytest.raises(ValueError, match="memory must be on the device of tgt_in"):
        s2s.decode(_tokens(2, 3), torch.empty(2, 5, 16, device="meta"))
    with pytest.raises(ValueError, match=r"src must hold token ids in \[0, 11\)"):
        s2s(torch.full((2, 5), 11), _tokens(2, 3))
    with pytest.raises(ValueError, match=r"tgt_in must hold token ids in \[0, 13\)"):
        s2s(_tokens(2, 5, vocab=11), torch.full((2, 3), -1))
