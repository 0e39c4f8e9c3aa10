"""GPT-2's weights in attnbook (attnbook.pretrained), offline: a small randomly initialised
``transformers.GPT2LMHeadModel`` (no download) is loaded into a DecoderOnly, which must give the
same logits and the same greedy generations, with and without the KV cache. Also the
DecoderOnly options that GPT-2 needs (activation, bias, norm_eps, scale_embedding,
tie_weights), each checked against its formula."""

from __future__ import annotations

import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the network, even by accident
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from attnbook import pretrained  # noqa: E402
from attnbook.train import generate  # noqa: E402
from attnbook.transformer import DecoderOnly, FeedForward  # noqa: E402

transformers = pytest.importorskip("transformers")


def _hf_model(seed=0, dtype=torch.float32, **cfg):
    # no end-of-text token: generate() would stop a row at it (and min_new_tokens would forbid
    # it), which is not plain greedy decoding
    args = dict(vocab_size=97, n_positions=64, n_embd=48, n_layer=3, n_head=4,
                bos_token_id=None, eos_token_id=None, pad_token_id=None)
    args.update(cfg)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**args)).eval()
    with torch.no_grad():  # random biases and LayerNorms too, so a mix-up cannot hide
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.to(dtype)


def _tokens(B, T, V=97, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def pair():
    hf = _hf_model()
    return hf, pretrained.gpt2_from_state_dict(hf.state_dict(), num_heads=4)


def test_the_loaded_model_has_gpt2s_shape(pair):
    hf, ours = pair
    assert isinstance(ours, DecoderOnly) and not ours.training
    assert (ours.vocab_size, ours.d_model, ours.num_heads, len(ours.layers)) == (97, 48, 4, 3)
    assert ours.positional == "learned" and ours.max_len == 64
    assert ours.out.weight is ours.embed.embedding.weight and ours.out.bias is None
    assert ours.layers[0].ffn.activation == "gelu_tanh" and not ours.embed.scale
    n_hf = sum(p.numel() for p in hf.parameters())  # HF counts the tied matrix once, as we do
    assert sum(p.numel() for p in ours.parameters()) == n_hf


@pytest.mark.parametrize(("B", "T"), [(1, 1), (3, 17), (2, 64)])
def test_equal_logits(pair, B, T):
    hf, ours = pair
    x = _tokens(B, T)
    with torch.no_grad():
        expected = hf(x).logits
        got = ours(x)
    assert got.shape == expected.shape == (B, T, 97)
    assert (got - expected).abs().max() <= 1e-5


def test_equal_logits_float64():
    hf = _hf_model(seed=3, dtype=torch.float64)
    ours = pretrained.gpt2_from_state_dict(hf.state_dict(), num_heads=4)
    assert ours.embed.embedding.weight.dtype == torch.float64
    x = _tokens(2, 20)
    with torch.no_grad():
        assert torch.allclose(ours(x), hf(x).logits, atol=1e-10, rtol=1e-10)


def test_cached_logits_equal_gpt2s(pair):
    hf, ours = pair
    x = _tokens(2, 12)
    caches = ours.new_caches()
    with torch.no_grad():
        steps = [ours(x[:, :5], caches=caches)] + [ours(x[:, t : t + 1], caches=caches) for t in range(5, 12)]
        expected = hf(x).logits
    assert (torch.cat(steps, dim=1) - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("B", [1, 4])
def test_equal_greedy_generations_with_and_without_cache(pair, B):
    hf, ours = pair
    prompt = _tokens(B, 6, seed=B)
    with torch.no_grad():
        expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=40,
                               do_sample=False, use_cache=True)
    cached = generate(ours, prompt, 40, temperature=0, use_cache=True)
    uncached = generate(ours, prompt, 40, temperature=0, use_cache=False)
    assert expected.shape == (B, 46)
    assert torch.equal(cached, expected)
    assert torch.equal(uncached, expected)


def test_gpt2model_layout_and_old_buffers_are_accepted(pair):
    hf, ours = pair
    sd = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    for i in range(3):  # what older checkpoints (e.g. the released gpt2) carry besides weights
        sd[f"h.{i}.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
        sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    again = pretrained.gpt2_from_state_dict(sd, num_heads=4)
    x = _tokens(2, 9)
    assert torch.equal(again(x), ours(x))


def test_conv1d_weights_are_transposed_and_c_attn_split(pair):
    hf, ours = pair
    W = hf.transformer.h[1].attn.c_attn.weight  # (E, 3E): x W = [q | k | v]
    a = ours.layers[1].self_attn
    E = 48
    assert torch.equal(a.q_proj.weight, W[:, :E].T)
    assert torch.equal(a.k_proj.weight, W[:, E : 2 * E].T)
    assert torch.equal(a.v_proj.weight, W[:, 2 * E :].T)
    assert torch.equal(ours.layers[1].ffn.linear1.weight, hf.transformer.h[1].mlp.c_fc.weight.T)
    assert torch.equal(ours.positions.learned.weight, hf.transformer.wpe.weight)


def test_bad_state_dicts(pair):
    hf, _ = pair
    sd = dict(hf.state_dict())
    with pytest.raises(ValueError, match="num_heads"):
        pretrained.gpt2_from_state_dict(sd, num_heads=5)
    missing = {k: v for k, v in sd.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    with pytest.raises(ValueError, match=r"h\.1\.mlp\.c_fc\.bias"):
        pretrained.gpt2_from_state_dict(missing, num_heads=4)
    bad = dict(sd, **{"transformer.h.2.attn.c_proj.weight": torch.zeros(48, 47)})
    with pytest.raises(ValueError, match=r"c_proj.*\(48, 48\).*\(48, 47\)"):
        pretrained.gpt2_from_state_dict(bad, num_heads=4)
    extra = dict(sd, **{"transformer.h.0.attn.rotary.weight": torch.zeros(3)})
    with pytest.raises(ValueError, match="rotary"):
        pretrained.gpt2_from_state_dict(extra, num_heads=4)
    untied = dict(sd, **{"lm_head.weight": torch.zeros(97, 48)})
    with pytest.raises(ValueError, match="tied"):
        pretrained.gpt2_from_state_dict(untied, num_heads=4)
    with pytest.raises(ValueError, match="wte"):
        pretrained.gpt2_from_state_dict({"foo": torch.zeros(1)}, num_heads=4)


def test_hub_download_needs_permission(monkeypatch):
    monkeypatch.delenv(pretrained.DOWNLOADS_ENV, raising=False)
    assert not pretrained.downloads_allowed()
    with pytest.raises(RuntimeError, match="ATTNBOOK_ALLOW_DOWNLOADS=1"):
        pretrained.gpt2_from_hub("gpt2")
    monkeypatch.setenv(pretrained.DOWNLOADS_ENV, "1")
    assert pretrained.downloads_allowed()


def test_hub_loader_reads_the_config_and_the_safetensors(monkeypatch, tmp_path, pair):
    # gpt2_from_hub end to end, with huggingface_hub's download replaced by local files
    hf, ours = pair
    save_file = pytest.importorskip("safetensors.torch").save_file
    import huggingface_hub

    files = {"config.json": tmp_path / "config.json", "model.safetensors": tmp_path / "m.st"}
    files["config.json"].write_text(json.dumps({"n_head": 4, "layer_norm_epsilon": 1e-5}))
    weights = {k.removeprefix("transformer."): v.contiguous() for k, v in hf.state_dict().items()
               if k != "lm_head.weight"}  # the released file's layout: GPT2Model keys
    save_file(weights, files["model.safetensors"])
    calls = []

    def fake_download(repo_id, filename, revision=None):
        calls.append((repo_id, filename))
        return str(files[filename])

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setenv(pretrained.DOWNLOADS_ENV, "1")
    model = pretrained.gpt2_from_hub("gpt2")
    assert calls == [("gpt2", "config.json"), ("gpt2", "model.safetensors")]
    x = _tokens(2, 9)
    assert torch.equal(model(x), ours(x))


# ---------------------------------------------------------------------------------------------
# the DecoderOnly options GPT-2 needs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_feedforward_activations(activation):
    torch.manual_seed(0)
    ffn = FeedForward(8, 32, activation=activation)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    ffn = ffn.double()
    h = x @ ffn.linear1.weight.T + ffn.linear1.bias
    f = {
        "relu": h.clamp(min=0),
        "gelu": 0.5 * h * (1 + torch.erf(h / math.sqrt(2))),
        "gelu_tanh": 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3))),
    }[activation]
    assert torch.allclose(ffn(x), f @ ffn.linear2.weight.T + ffn.linear2.bias, atol=1e-12)


def test_bias_norm_eps_scale_and_tie():
    torch.manual_seed(0)
    m = DecoderOnly(13, 16, 4, 2, bias=False, norm_eps=1e-3, scale_embedding=False,
                    tie_weights=True, positional="none")
    layer = m.layers[0]
    for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                layer.self_attn.out_proj, layer.ffn.linear1, layer.ffn.linear2):
        assert lin.bias is None
    assert {layer.norm1.eps, layer.norm2.eps, m.norm.eps} == {1e-3}
    x = torch.tensor([[3, 1, 4]])
    assert torch.equal(m.embed(x), m.embed.embedding.weight[x])  # no sqrt(d_model)
    assert m.out.weight is m.embed.embedding.weight and m.out.bias is None
    n_tied = sum(p.numel() for p in m.parameters())
    untied = DecoderOnly(13, 16, 4, 2, bias=False, norm_eps=1e-3, scale_embedding=False, positional="none")
    assert sum(p.numel() for p in untied.parameters()) == n_tied + 13 * 16 + 13  # W_out and b_out
    # the tied matrix gets both gradients: through the input and through the output
    logits = m(x)
    h = m.norm(m.layers[1](m.layers[0](m.embed(x), causal=True)[0], causal=True)[0])
    assert torch.allclose(logits, h @ m.embed.embedding.weight.T, atol=1e-6)
    # defaults keep the book's Transformer: scaled embedding, ReLU, biases, untied output
    d = DecoderOnly(13, 16, 4, 2)
    assert d.embed.scale and d.layers[0].ffn.activation == "relu" and d.out.bias is not None
    assert torch.allclose(d.embed(x), d.embed.embedding.weight[x] * 4.0)


def test_new_options_are_keyword_only_and_checked():
    with pytest.raises(TypeError):
        DecoderOnly(13, 16, 4, 2, 64)  # d_ff must be passed by name
    with pytest.raises(ValueError, match="activation"):
        DecoderOnly(13, 16, 4, 2, activation="swish")
    with pytest.raises(ValueError, match="norm_eps"):
        DecoderOnly(13, 16, 4, 2, norm_eps=0.0)


def test_gelu_tanh_matches_transformers_gelu_new():
    from transformers.activations import ACT2FN

    x = torch.linspace(-6, 6, 1001)
    ffn = FeedForward(1, 1, activation="gelu_tanh")
    assert torch.allclose(ffn._f(x), ACT2FN["gelu_new"](x), atol=1e-6)
    assert not torch.allclose(ffn._f(x), F.gelu(x), atol=1e-6)  # not the exact GELU
