"""No host synchronisation and no graph break in a forward pass; the decoding fast path.

A forward pass must not read tensor values back to the host (on a GPU each read waits for every
queued kernel) except for the data checks, which are on by default, skipped under
``torch.compile`` and switched off with ``attnbook.utils.set_data_checks(False)``. Dynamo must
see each attention model as one graph, and a compiled cached decoding loop must not recompile
at every step.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo as dynamo
from helpers import HostReads
from torch._dynamo.testing import CompileCounterWithBackend

import attnbook.attention as attention_module
import attnbook.positional as positional_module
from attnbook.attention import KVCache, MultiHeadAttention
from attnbook.positional import POSITIONAL_SCHEMES, RotaryEmbedding, alibi_bias
from attnbook.transformer import DecoderOnly, Transformer
from attnbook.utils import data_checks_enabled, set_data_checks

V = 13
SCHEMES = list(POSITIONAL_SCHEMES)


def _lm(positional="sinusoidal", **kw) -> DecoderOnly:
    torch.manual_seed(0)
    return DecoderOnly(V, 16, 4, 2, max_len=64, positional=positional, **kw).eval()


def _s2s(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(11, V, 16, 4, 2, 2, max_len=64, **kw).eval()


def _tokens(B, T, vocab=V, seed=1):
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


def _explain(fn, *args, **kwargs):
    dynamo.reset()
    result = dynamo.explain(fn)(*args, **kwargs)
    reasons = [str(r.reason).splitlines()[0] for r in result.break_reasons]
    return result.graph_count, result.graph_break_count, reasons


# ---------------------------------------------------------------------------------------------
# the data-check switch
# ---------------------------------------------------------------------------------------------


def test_set_data_checks_switch_and_context_manager():
    assert data_checks_enabled()
    model = _lm()
    bad = torch.tensor([[1, V]])  # V is out of the vocabulary
    with pytest.raises(ValueError, match=rf"tokens must hold token ids in \[0, {V}\), got values in \[1, {V}\]"):
        model(bad)
    with set_data_checks(False):
        assert not data_checks_enabled()
        model(torch.tensor([[1, V - 1]]))  # valid ids run as before, unchecked
    assert data_checks_enabled()  # restored on exit
    set_data_checks(False)
    try:
        assert not data_checks_enabled()
    finally:
        set_data_checks(True)
    with pytest.raises(ValueError, match="enabled"):
        set_data_checks("off")


# ---------------------------------------------------------------------------------------------
# no host reads in a forward pass
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("positional", SCHEMES)
def test_decoder_only_forward_reads_nothing_back_without_data_checks(positional):
    model = _lm(positional, num_kv_heads=2)
    x = _tokens(2, 7)
    pad = torch.ones(2, 7, dtype=torch.bool)
    pad[1, 5:] = False
    with HostReads() as on:
        model(x)
    assert on.calls == ["__bool__"]  # the one data check: token ids in range
    with set_data_checks(False), torch.no_grad():
        with HostReads() as off:
            model(x)
            model(x, key_padding_mask=pad)
            model(x, return_attention=True)
            caches = model.new_caches()
            model(x[:, :4], caches=caches)
            for t in range(4, 7):  # cached decoding, one token at a time
                model(x[:, t : t + 1], caches=caches)
    assert off.calls == []


def test_transformer_and_attention_read_nothing_back_without_data_checks():
    model = _s2s(positional="rope")
    src, tgt = _tokens(2, 6, vocab=11), _tokens(2, 5)
    src_mask = torch.ones(2, 6, dtype=torch.bool)
    src_mask[0, 4:] = False
    with HostReads() as on:
        model(src, tgt, src_mask)
    assert on.calls == ["__bool__", "__bool__"]  # src and tgt_in ids
    mha = MultiHeadAttention(16, 4, num_kv_heads=2)
    x = torch.randn(2, 5, 16)
    with set_data_checks(False), torch.no_grad():
        with HostReads() as off:
            model(src, tgt, src_mask)
            state = model.initial_state(src, src_mask)
            prefix = tgt[:, :1]
            for t in range(1, 5):
                prefix = torch.cat([prefix, tgt[:, t : t + 1]], 1)
                model.step(prefix, state)
            mha(x, causal=True, attn_bias=alibi_bias(4, 5, 5), rope=RotaryEmbedding(4))
            mha(x, mask=src_mask[:, None, None, :5], need_weights=True)
            cache = KVCache()
            for t in range(5):
                mha(x[:, t : t + 1], causal=True, cache=cache)
    assert off.calls == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("positional", ["rope", "alibi", "learned"])
def test_cuda_cached_decoding_does_not_synchronise(positional):
    model = _lm(positional).cuda()
    x = _tokens(2, 8).cuda()
    with set_data_checks(False), torch.no_grad():
        caches = model.new_caches()
        model(x[:, :4], caches=caches)  # the prompt (builds the tables once)
        torch.cuda.set_sync_debug_mode("error")
        try:
            for t in range(4, 8):
                model(x[:, t : t + 1], caches=caches)
        finally:
            torch.cuda.set_sync_debug_mode("default")


# ---------------------------------------------------------------------------------------------
# one graph per model under torch.compile
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("positional", SCHEMES)
def test_decoder_only_is_one_graph(positional):
    graphs, breaks, reasons = _explain(_lm(positional), _tokens(2, 7))
    assert graphs >= 1 and breaks == 0, reasons


def test_transformer_and_cached_steps_are_one_graph():
    model = _s2s(positional="alibi")
    src, tgt = _tokens(2, 6, vocab=11), _tokens(2, 5)
    graphs, breaks, reasons = _explain(model, src, tgt, torch.ones(2, 6, dtype=torch.bool))
    assert graphs >= 1 and breaks == 0, reasons
    memory = model.encode(src)
    caches = model.new_caches()
    model.decode(tgt[:, :3], memory, caches=caches)
    graphs, breaks, reasons = _explain(model.decode, tgt[:, 3:4], memory, caches=caches)
    assert graphs >= 1 and breaks == 0, reasons
    for positional in ("rope", "learned"):
        lm = _lm(positional)
        caches = lm.new_caches()
        lm(_tokens(2, 4), caches=caches)
        graphs, breaks, reasons = _explain(lm, _tokens(2, 1), caches=caches)
        assert graphs >= 1 and breaks == 0, (positional, reasons)


def test_compiled_cached_decoding_recompiles_at_most_twice():
    """Prompt (empty caches), first step (P = 4) and the second step, after which the cache
    length is a symbolic size: 16 steps, 3 compilations."""
    model = _lm("rope")
    dynamo.reset()
    counter = CompileCounterWithBackend("eager")
    compiled = torch.compile(model, backend=counter)
    tokens = _tokens(2, 4)
    with torch.no_grad():
        caches = model.new_caches()
        logits = compiled(tokens, caches=caches)
        for _ in range(16):
            nxt = logits[:, -1:].argmax(-1)  # (B, 1)
            tokens = torch.cat([tokens, nxt], 1)
            logits = compiled(nxt, caches=caches)
        reference = model(tokens)
    assert counter.frame_count <= 3  # one compilation + at most 2 recompilations
    assert caches[0].length == 20
    torch.testing.assert_close(logits[:, -1], reference[:, -1], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# the decoding fast path
# ---------------------------------------------------------------------------------------------


class _SDPASpy:
    """Records the keyword arguments of every F.scaled_dot_product_attention call."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def __call__(self, q, k, v, **kwargs):
        self.calls.append({"T": q.shape[-2], "S": k.shape[-2], **kwargs})
        return self.real(q, k, v, **kwargs)


@pytest.mark.parametrize("positional", SCHEMES)
def test_single_query_cached_step_builds_no_mask(positional, monkeypatch):
    model = _lm(positional)
    x = _tokens(2, 9)
    full = model(x)
    spy = _SDPASpy(torch.nn.functional.scaled_dot_product_attention)
    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", spy)
    caches = model.new_caches()
    steps = [model(x[:, :5], caches=caches)]
    spy.calls.clear()
    steps += [model(x[:, t : t + 1], caches=caches) for t in range(5, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)
    assert len(spy.calls) == 4 * 2  # 4 steps x 2 layers
    for call in spy.calls:
        assert call["T"] == 1 and not call.get("is_causal", False)
        mask = call.get("attn_mask")
        if positional == "alibi":  # only the bias: a float (H, 1, S) slice, no boolean mask
            assert mask.is_floating_point() and mask.shape == (4, 1, call["S"])
        else:
            assert mask is None
    path = model.layers[0].self_attn.last_path
    if positional == "alibi":
        assert path.startswith("fused: attn_mask from attn_bias as a float mask;"), path
    else:
        assert path.startswith("fused: no mask (a single causal query"), path


def test_alibi_bias_is_built_once_and_sliced(monkeypatch):
    model = _lm("alibi")
    built = []
    real = positional_module.alibi_bias
    monkeypatch.setattr(positional_module, "alibi_bias", lambda *a, **k: built.append(a) or real(*a, **k))
    x = _tokens(2, 9)
    full = model(x)  # first use: the table for (cpu, float32)
    assert len(built) == 1
    caches = model.new_caches()
    steps = [model(x[:, :3], caches=caches)] + [model(x[:, t : t + 1], caches=caches) for t in range(3, 9)]
    model(x)
    assert len(built) == 1  # never rebuilt per forward
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)
    scheme = model.positions
    bias = scheme.bias(2, 7, torch.device("cpu"), torch.float32)
    table = scheme._alibi[(torch.device("cpu"), torch.float32)]
    assert bias.untyped_storage().data_ptr() == table.untyped_storage().data_ptr()  # a view
    torch.testing.assert_close(bias, real(4, 2, 7))
    scheme.bias(1, 1000, torch.device("cpu"), torch.float32)  # longer than the table: grown once
    assert len(built) == 2
    torch.testing.assert_close(scheme.bias(3, 1000, torch.device("cpu"), torch.float32), real(4, 3, 1000))
    model.double()  # moving the model drops the tables; the next use builds one in float64
    assert scheme._alibi == {}
    model(x)
    assert len(built) == 3 and (torch.device("cpu"), torch.float64) in scheme._alibi
