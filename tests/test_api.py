"""The package's surface: every exported name resolves, the model constructors share one
keyword-only order of options, configs round-trip, extras come back one way, the residual
connection is written once, and MultiHeadAttention says which path it took."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnbook
from attnbook import attention, functional, positional, seq2seq, transformer
from attnbook.attention import KVCache, MultiHeadAttention
from attnbook.transformer import (
    AttentionWeights,
    Decoder,
    DecoderLayer,
    DecoderOnly,
    DecoderOnlyConfig,
    Encoder,
    EncoderLayer,
    Residual,
    Transformer,
    TransformerConfig,
)

V = 13

# the one order (and the defaults) of the options after the essential sizes
OPTIONS = {
    "d_ff": None, "dropout": 0.0, "max_len": 512, "positional": "sinusoidal", "norm_first": True,
    "num_kv_heads": None, "activation": "relu", "bias": True, "norm_eps": 1e-5,
    "scale_embedding": True, "tie_weights": False,
}
SIZES = {
    DecoderOnly: ["vocab_size", "d_model", "num_heads", "num_layers"],
    Transformer: ["src_vocab", "tgt_vocab", "d_model", "num_heads", "num_encoder_layers",
                  "num_decoder_layers"],
    Encoder: ["vocab_size", "d_model", "num_heads", "num_layers"],
    Decoder: ["vocab_size", "d_model", "num_heads", "num_layers"],
    EncoderLayer: ["d_model", "num_heads"],
    DecoderLayer: ["d_model", "num_heads"],
}


# ---------------------------------------------------------------------------------------------
# 1. the exported names
# ---------------------------------------------------------------------------------------------


def test_star_import_resolves_every_name_in_all():
    namespace: dict = {}
    exec("from attnbook import *", namespace)  # noqa: S102 - the statement under test
    missing = [name for name in attnbook.__all__ if name not in namespace]
    assert not missing
    for name in attnbook.__all__:
        assert namespace[name] is getattr(attnbook, name)
    assert attnbook.DecoderOnlyConfig is DecoderOnlyConfig and attnbook.AttentionWeights is AttentionWeights


# ---------------------------------------------------------------------------------------------
# 9. one API: keyword-only options in one order, configs, one way to get the extras
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", list(SIZES), ids=lambda c: c.__name__)
def test_constructors_take_sizes_then_keyword_only_options_in_one_order(cls):
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    positional_names = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    keyword = [p for p in params if p.kind is p.KEYWORD_ONLY]
    assert positional_names == SIZES[cls]
    assert all(p.default is p.empty for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in keyword]
    assert names == [name for name in OPTIONS if name in names]  # the canonical order
    assert {p.name: p.default for p in keyword} == {name: OPTIONS[name] for name in names}
    if cls in (DecoderOnly, Transformer, Decoder):
        assert names == list(OPTIONS)
    if cls is Encoder:
        assert names == [n for n in OPTIONS if n != "tie_weights"]  # no output layer to tie


def test_options_cannot_be_passed_positionally():
    with pytest.raises(TypeError):
        DecoderOnly(V, 16, 4, 2, 64)  # d_ff? max_len? it used to be d_ff for one, dropout for another
    with pytest.raises(TypeError):
        Transformer(11, V, 16, 4, 2, 2, 64)
    with pytest.raises(TypeError):
        EncoderLayer(16, 4, 32)


@pytest.mark.parametrize(
    ("cls", "config_cls", "sizes"),
    [(DecoderOnly, DecoderOnlyConfig, (V, 16, 4, 2)), (Transformer, TransformerConfig, (11, V, 16, 4, 2, 1))],
    ids=["DecoderOnly", "Transformer"],
)
def test_config_round_trip(cls, config_cls, sizes):
    fields = [f.name for f in dataclasses.fields(config_cls)]
    assert fields == SIZES[cls] + list(OPTIONS)  # the config lists the constructor's arguments
    assert {f.name: f.default for f in dataclasses.fields(config_cls) if f.name in OPTIONS} == OPTIONS
    options = {"d_ff": 24, "dropout": 0.1, "max_len": 40, "positional": "rope", "norm_first": False,
               "num_kv_heads": 2, "activation": "gelu", "bias": False, "norm_eps": 1e-6,
               "scale_embedding": False, "tie_weights": True}
    torch.manual_seed(0)
    model = cls(*sizes, **options)
    cfg = model.config
    assert isinstance(cfg, config_cls) and dataclasses.asdict(cfg) == dict(zip(SIZES[cls], sizes)) | options
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 32
    torch.manual_seed(0)
    twin = cls.from_config(cfg)
    assert twin.config == cfg
    a, b = model.state_dict(), twin.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    bigger = cls.from_config(dataclasses.replace(cfg, d_model=32))
    assert bigger.config.d_model == 32
    with pytest.raises(ValueError, match="config"):
        cls.from_config(dataclasses.asdict(cfg))


def test_extras_come_back_one_way_for_every_model():
    torch.manual_seed(0)
    lm = DecoderOnly(V, 16, 4, 2).eval()
    s2s = Transformer(11, V, 16, 4, 2, 3).eval()
    x, src = torch.randint(0, V, (2, 5)), torch.randint(0, 11, (2, 6))
    results = {
        "DecoderOnly": lm(x, return_attention=True),
        "Transformer": s2s(src, x, return_attention=True),
        "Transformer.decode": s2s.decode(x, s2s.encode(src), return_attention=True),
        "Encoder": s2s.encoder(src, return_attention=True),
        "Decoder": s2s.decoder(x, s2s.encode(src), return_attention=True),
    }
    for name, result in results.items():
        assert isinstance(result, tuple) and len(result) == 2, name
        assert isinstance(result[0], torch.Tensor) and isinstance(result[1], AttentionWeights), name
    kinds = {name: result[1].keys() for name, result in results.items()}
    assert kinds == {
        "DecoderOnly": ["decoder_self"],
        "Transformer": ["encoder_self", "decoder_self", "cross"],
        "Transformer.decode": ["decoder_self", "cross"],
        "Encoder": ["encoder_self"],
        "Decoder": ["decoder_self", "cross"],
    }
    full = results["Transformer"][1]
    assert [len(full[k]) for k in full.keys()] == [2, 3, 3]  # per layer
    torch.testing.assert_close(results["Transformer.decode"][1].cross[1], full.cross[1])
    # the plain call returns the tensor alone
    assert isinstance(lm(x), torch.Tensor) and isinstance(s2s(src, x), torch.Tensor)
    with pytest.raises(ValueError, match="kind"):
        full["self"]
    with pytest.raises(ValueError, match="return_attention"):
        lm(x, return_attention="yes")


# ---------------------------------------------------------------------------------------------
# the GPT-2 options: activation, bias, norm_eps, scale_embedding, tie_weights
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("activation", "f"),
    [("relu", torch.relu), ("gelu", F.gelu), ("gelu_tanh", lambda h: F.gelu(h, approximate="tanh"))],
)
def test_activation_is_the_ffn_nonlinearity(activation, f):
    torch.manual_seed(0)
    lm = DecoderOnly(V, 16, 4, 1, activation=activation).eval()
    ffn = lm.layers[0].ffn
    h = torch.randn(2, 3, 16)
    torch.testing.assert_close(ffn(h), ffn.linear2(f(ffn.linear1(h))))
    if activation == "gelu_tanh":  # GPT-2's formula, written out
        u = ffn.linear1(h)
        ref = 0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))
        torch.testing.assert_close(ffn(h), ffn.linear2(ref))


def test_bias_norm_eps_and_scale_embedding():
    torch.manual_seed(0)
    s2s = Transformer(11, V, 16, 4, 1, 1, bias=False, norm_eps=1e-3)
    linears = [m for name, m in s2s.named_modules() if isinstance(m, nn.Linear) and not name.endswith(".out")]
    assert len(linears) == 4 + 8 + 2 * 2  # encoder attention, decoder self+cross, two FFNs
    assert all(lin.bias is None for lin in linears)
    assert s2s.decoder.out.bias is not None  # the output layer's bias belongs to tie_weights
    norms = [m for m in s2s.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 + 3 + 2 and all(n.eps == 1e-3 for n in norms)
    lm = DecoderOnly(V, 16, 4, 1, scale_embedding=False, positional="none")
    tokens = torch.tensor([[3, 1, 4]])
    torch.testing.assert_close(lm.embed(tokens), lm.embed.embedding.weight[tokens])
    scaled = DecoderOnly(V, 16, 4, 1)
    torch.testing.assert_close(scaled.embed(tokens), 4.0 * scaled.embed.embedding.weight[tokens])
    for bad in ({"activation": "swish"}, {"bias": "yes"}, {"norm_eps": 0.0}, {"scale_embedding": 1},
                {"tie_weights": None}, {"norm_first": "no"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DecoderOnly(V, 16, 4, 1, **bad)


@pytest.mark.parametrize("cls", ["DecoderOnly", "Transformer"])
def test_tie_weights_shares_the_embedding_matrix(cls):
    torch.manual_seed(0)
    if cls == "DecoderOnly":
        model = DecoderOnly(V, 16, 4, 2, tie_weights=True)
        stack, run = model, lambda: model(torch.randint(0, V, (2, 5)))
    else:
        model = Transformer(11, V, 16, 4, 1, 2, tie_weights=True)
        stack = model.decoder
        run = lambda: model(torch.randint(0, 11, (2, 4)), torch.randint(0, V, (2, 5)))  # noqa: E731
    E = stack.embed.embedding.weight
    assert stack.out.weight is E and stack.out.bias is None
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in set(model.parameters()))
    x = torch.randn(2, 3, 16)
    torch.testing.assert_close(stack.out(x), x @ E.T)  # logits = h E^T
    run().sum().backward()
    assert E.grad is not None and stack.out.weight.grad is E.grad  # one matrix, one gradient
    keys = model.state_dict().keys()
    assert any(k.endswith("out.weight") for k in keys) and any(k.endswith("embed.embedding.weight") for k in keys)


# ---------------------------------------------------------------------------------------------
# 10. written once
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [True, False])
def test_residual_is_pre_or_post_norm(norm_first):
    torch.manual_seed(0)
    norm, drop = nn.LayerNorm(8), nn.Dropout(0.0)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    res = Residual(norm, drop, norm_first=norm_first)
    x = torch.randn(2, 3, 8)
    F_ = nn.Linear(8, 8)
    out, extra = res(x, lambda h: (F_(h), "weights"))
    expected = x + F_(norm(x)) if norm_first else norm(x + F_(x))
    torch.testing.assert_close(out, expected)
    assert extra == "weights"
    assert list(res.state_dict()) == []  # the layer owns the norm; the wrapper only holds it


def test_every_layer_wraps_its_sublayers_in_residual():
    torch.manual_seed(0)
    calls = []
    s2s = Transformer(11, V, 16, 4, 2, 3)
    lm = DecoderOnly(V, 16, 4, 2)
    for model in (s2s, lm):
        for m in model.modules():
            if isinstance(m, Residual):
                m.register_forward_hook(lambda mod, args, out: calls.append(mod))
    s2s(torch.randint(0, 11, (2, 4)), torch.randint(0, V, (2, 5)))
    assert len(calls) == 2 * 2 + 3 * 3  # 2 encoder layers x 2 sublayers + 3 decoder layers x 3
    calls.clear()
    lm(torch.randint(0, V, (2, 5)))
    assert len(calls) == 2 * 2
    # the layers keep PyTorch's submodule names, so state dicts and checkpoints are unchanged
    assert [k for k in lm.layers[0].state_dict() if k.startswith("norm")] == [
        "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"]


def test_shared_checks_live_in_validate_and_the_scheme_in_positional():
    for module in (attention, positional, seq2seq, transformer):
        assert not hasattr(module, "_check_positive_int"), module.__name__
    assert transformer.PositionalScheme is positional.PositionalScheme
    assert transformer.POSITIONAL_SCHEMES is positional.POSITIONAL_SCHEMES


# ---------------------------------------------------------------------------------------------
# 11. documentation and the path MultiHeadAttention takes
# ---------------------------------------------------------------------------------------------

DOCUMENTED = [
    functional.dot_score, functional.scaled_dot_score, functional.general_score,
    functional.additive_score, functional.masked_softmax, functional.scaled_dot_product_attention,
    functional.flash_attention, functional.causal_mask, functional.padding_mask,
    functional.key_padding_to_attn_mask, MultiHeadAttention, KVCache.update, KVCache.reorder,
    attention.AdditiveAttention, attention.LuongAttention, attention.AttentionalOutput,
    positional.sinusoidal_encoding, positional.LearnedPositionalEmbedding,
    positional.RotaryEmbedding, positional.alibi_bias, positional.alibi_slopes,
    transformer.TokenEmbedding, transformer.FeedForward, Residual, EncoderLayer, DecoderLayer,
    attnbook.utils.seed_everything,
]


@pytest.mark.parametrize("obj", DOCUMENTED, ids=lambda o: o.__qualname__)
def test_docstrings_carry_an_equivalent_to_reference(obj):
    assert "Equivalent to" in inspect.getdoc(obj)


def test_documented_equivalences_hold():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    torch.testing.assert_close(functional.scaled_dot_score(q, k), (q @ k.transpose(-2, -1)) / 2.0)
    scores, mask = torch.randn(3, 5, generator=g), torch.rand(3, 5, generator=g) > 0.3
    mask[:, 0] = True
    torch.testing.assert_close(
        functional.masked_softmax(scores, mask), torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
    )
    for T, S in ((3, 5), (4, 4), (5, 2)):
        assert torch.equal(functional.causal_mask(T, S), torch.ones(T, S, dtype=torch.bool).tril(S - T))
    pe = positional.sinusoidal_encoding(7, 6)
    angle = torch.arange(7)[:, None] / 10000 ** (torch.arange(0, 6, 2) / 6)
    torch.testing.assert_close(pe, torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(1))
    torch.testing.assert_close(positional.alibi_slopes(8), 2.0 ** (-8.0 * torch.arange(1, 9) / 8))
    att = attention.AdditiveAttention(4, 6, 5)
    s, keys, values = torch.randn(2, 3, 4, generator=g), torch.randn(2, 5, 6, generator=g), torch.randn(2, 5, 2)
    e = att.v_a(torch.tanh(att.W_a(s)[:, :, None] + att.U_a(keys)[:, None])).squeeze(-1)
    torch.testing.assert_close(att(s, keys, values)[0], torch.softmax(e, dim=-1) @ values)
    lu = attention.LuongAttention(4, 6, "general")
    w = torch.softmax(s @ lu.W_a(keys).transpose(1, 2), dim=-1)
    torch.testing.assert_close(lu(s, keys, values)[0], w @ values)
    H, T, S = 3, 2, 5
    ref = -positional.alibi_slopes(H)[:, None, None] * (
        torch.arange(S - T, S)[:, None] - torch.arange(S)[None, :]).abs()
    torch.testing.assert_close(positional.alibi_bias(H, T, S), ref)


def test_explain_path_says_which_path_and_why():
    torch.manual_seed(0)
    m = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    pad = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    assert m.explain_path(x, need_weights=True).startswith("explicit: need_weights=True")
    assert m.explain_path(x, causal=True).startswith("fused: is_causal=True")
    assert m.explain_path(x).startswith("fused: no mask (every query")
    assert "boolean mask" in m.explain_path(x, mask=pad) and m.explain_path(x, mask=pad).startswith("fused: attn_mask")
    assert "float mask" in m.explain_path(x, attn_bias=torch.zeros(4, 5, 5))
    cache = KVCache()
    m(x, causal=True, cache=cache)
    assert m.last_path.startswith("fused: is_causal=True")
    one = torch.randn(2, 1, 16)
    path = m.explain_path(one, causal=True, cache=cache)
    assert path.startswith("fused: no mask (a single causal query")
    m(one, causal=True, cache=cache)
    assert m.last_path == path
    assert "bottom-right causal mask (T=2, S=8)" in m.explain_path(torch.randn(2, 2, 16), causal=True, cache=cache)
    with pytest.raises(ValueError, match="query"):
        m.explain_path(torch.randn(2, 5, 8))  # checks its arguments like forward
