"""Tests of attnbook.seq2seq: shapes, teacher forcing = step-by-step decoding, padding
invariance, alignments, the Luong one-call path against a loop of its equations, learning, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnbook.data import Vocab, copy_pairs, make_batch
from attnbook.seq2seq import (
    BahdanauDecoder,
    ContextDecoder,
    GRUEncoder,
    LuongDecoder,
    Seq2Seq,
    build_seq2seq,
)
from attnbook.train import beam_search, greedy_decode

V_SRC, V_TGT = 11, 9


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny GRUs run fastest on one CPU thread (and do not fight other processes for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
CONFIGS = [
    pytest.param({"attention": "none"}, id="none"),
    pytest.param({"attention": "bahdanau"}, id="bahdanau"),
    pytest.param({"attention": "luong", "score": "dot"}, id="luong-dot"),
    pytest.param({"attention": "luong", "score": "general"}, id="luong-general"),
    pytest.param({"attention": "luong", "score": "concat"}, id="luong-concat"),
    pytest.param({"attention": "luong", "score": "general", "input_feeding": True}, id="luong-feed"),
    pytest.param({"attention": "bahdanau", "bidirectional": False}, id="bahdanau-uni"),
]


def _model(cfg: dict, device="cpu", dtype=torch.float32, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    model = build_seq2seq(V_SRC, V_TGT, embed_dim=6, hidden_dim=5, **cfg)
    return model.to(device=device, dtype=dtype).eval()


def _batch(device="cpu", B: int = 3, S: int = 7, T: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([S, 4, 1][:B] + [S] * max(0, B - 3))  # (B,) ragged, one length-1 row
    src = torch.randint(4, V_SRC, (B, S), generator=g)
    mask = torch.arange(S)[None] < lengths[:, None]  # (B, S)
    src = src.masked_fill(~mask, 0)
    tgt_in = torch.randint(3, V_TGT, (B, T), generator=g)
    tgt_in[:, 0] = 1  # <bos>
    return src.to(device), mask.to(device), tgt_in.to(device)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_shapes(cfg, device, dtype):
    if dtype == torch.bfloat16:
        pytest.skip("GRUs are not used in bfloat16 here")
    model = _model(cfg, device, dtype)
    src, mask, tgt_in = _batch(device)
    h, s0 = model.encoder(src, mask)
    Dk = 10 if cfg.get("bidirectional", True) else 5
    assert h.shape == (3, 7, Dk) and s0.shape == (3, Dk)
    assert torch.all(h[~mask] == 0), "annotations must be zero on padding"
    logits, alpha = model.forward_with_alignments(src, mask, tgt_in)
    assert logits.shape == (3, 5, V_TGT) and logits.dtype == dtype
    if cfg["attention"] == "none":
        assert alpha is None
    else:
        assert alpha.shape == (3, 5, 7)
    assert torch.equal(model(src, mask, tgt_in), logits)
    tokens, align = model.greedy_decode(src, mask, max_len=6)
    assert tokens.shape[0] == 3 and 1 <= tokens.shape[1] <= 6
    assert (align is None) == (cfg["attention"] == "none")
    if align is not None:
        assert align.shape == (3, tokens.shape[1], 7)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_teacher_forcing_equals_stepping(cfg, device, dtype, tol):
    if dtype == torch.bfloat16:
        pytest.skip("GRUs are not used in bfloat16 here")
    model = _model(cfg, device, dtype)
    src, mask, tgt_in = _batch(device)
    # cuDNN may run float32 GRUs in TF32; compare the two paths at full float32 precision
    with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
        logits, alpha = model.forward_with_alignments(src, mask, tgt_in)
        state = model.start(src, mask)
        step_logits, step_alpha = [], []
        for t in range(tgt_in.shape[1]):
            z, state, a = model.decoder.step(tgt_in[:, t], state)
            step_logits.append(z)
            step_alpha.append(a)
    torch.testing.assert_close(torch.stack(step_logits, 1), logits, **tol)
    if alpha is not None:
        torch.testing.assert_close(torch.stack(step_alpha, 1), alpha, **tol)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_padding_does_not_change_outputs(cfg):
    model = _model(cfg, dtype=torch.float64)
    src, mask, tgt_in = _batch()
    logits, alpha = model.forward_with_alignments(src, mask, tgt_in)
    extra = 4  # more padding columns, holding arbitrary ids (they must be ignored)
    src2 = torch.cat([src, torch.randint(0, V_SRC, (3, extra))], 1)
    mask2 = torch.cat([mask, torch.zeros(3, extra, dtype=torch.bool)], 1)
    src2[:, : src.shape[1]] = src
    src2 = torch.where(mask2, src2, torch.randint(0, V_SRC, src2.shape))
    logits2, alpha2 = model.forward_with_alignments(src2, mask2, tgt_in)
    torch.testing.assert_close(logits2, logits, rtol=1e-10, atol=1e-10)
    if alpha is not None:
        torch.testing.assert_close(alpha2[..., : src.shape[1]], alpha, rtol=1e-10, atol=1e-10)
        assert torch.all(alpha2[..., src.shape[1]:] == 0)
    # each row alone (no padding at all) gives the same logits as in the batch
    for b in range(3):
        n = int(mask[b].sum())
        alone = model(src[b : b + 1, :n], mask[b : b + 1, :n], tgt_in[b : b + 1])
        torch.testing.assert_close(alone[0], logits[b], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c.values[0]["attention"] != "none"])
def test_alignments_are_distributions_over_real_tokens(cfg):
    model = _model(cfg)
    src, mask, tgt_in = _batch()
    _, alpha = model.forward_with_alignments(src, mask, tgt_in)  # (B, T, S)
    assert torch.all(alpha >= 0)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3, 5))
    assert torch.all(alpha.masked_select(~mask[:, None, :].expand_as(alpha)) == 0)
    tokens, align = model.greedy_decode(src, mask, max_len=6)
    alive = torch.ones_like(tokens, dtype=torch.bool)  # rows up to and including the first eos
    alive[:, 1:] = (tokens[:, :-1] == 2).cumsum(1) == 0
    torch.testing.assert_close(align.sum(-1)[alive], torch.ones(int(alive.sum())))
    assert torch.all(align.sum(-1)[~alive] == 0)
    assert torch.all(align.masked_select(~mask[:, None, :].expand_as(align)) == 0)


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_luong_one_call_equals_a_loop_of_its_equations(score):
    """h_t = GRU(E y_{t-1}, h_{t-1}); α = softmax(score); c = Σ α h̄; h̃ = tanh(W_c[c; h]); W_s h̃,
    written here with the raw GRU equations of Cho et al. (2014) in float64."""
    model = _model({"attention": "luong", "score": score}, dtype=torch.float64)
    src, mask, tgt_in = _batch()
    logits = model(src, mask, tgt_in)
    dec = model.decoder
    hbar, s0 = model.encoder(src, mask)  # (B, S, Dk), (B, H)
    W_ih, W_hh = dec.rnn.weight_ih_l0, dec.rnn.weight_hh_l0
    b_ih, b_hh = dec.rnn.bias_ih_l0, dec.rnn.bias_hh_l0
    h = s0
    expected = []
    for t in range(tgt_in.shape[1]):
        x = dec.embedding.weight[tgt_in[:, t]]  # (B, E)
        r_i, z_i, n_i = (x @ W_ih.T + b_ih).chunk(3, -1)
        r_h, z_h, n_h = (h @ W_hh.T + b_hh).chunk(3, -1)
        r, z = torch.sigmoid(r_i + r_h), torch.sigmoid(z_i + z_h)
        n = torch.tanh(n_i + r * n_h)
        h = (1 - z) * n + z * h  # (B, H)
        scores = []
        for s in range(hbar.shape[1]):
            hs = hbar[:, s]  # (B, Dk)
            if score == "dot":
                e = (h * hs).sum(-1)
            elif score == "general":
                e = (h * (hs @ dec.attention.W_a.weight.T)).sum(-1)
            else:
                e = dec.attention.v_a(torch.tanh(dec.attention.W_a(torch.cat([h, hs], -1))))[:, 0]
            scores.append(e)
        e = torch.stack(scores, -1).masked_fill(~mask, float("-inf"))  # (B, S)
        a = torch.softmax(e, -1)
        c = (a[:, :, None] * hbar).sum(1)  # (B, Dk)
        h_tilde = torch.tanh(torch.cat([c, h], -1) @ dec.attentional.W_c.weight.T)
        expected.append(h_tilde @ dec.W_s.weight.T + dec.W_s.bias)
    torch.testing.assert_close(logits, torch.stack(expected, 1), rtol=1e-10, atol=1e-10)


def test_bahdanau_attends_with_the_previous_state():
    """Step 1's weights depend only on s_0 and the annotations: e = v_aᵀ tanh(W_a s_0 + U_a h_s)."""
    model = _model({"attention": "bahdanau"}, dtype=torch.float64)
    src, mask, tgt_in = _batch()
    hbar, s0 = model.encoder(src, mask)
    att = model.decoder.attention
    e = att.v_a(torch.tanh(att.W_a(s0)[:, None] + att.U_a(hbar)))[..., 0]  # (B, S)
    expected = torch.softmax(e.masked_fill(~mask, float("-inf")), -1)
    _, alpha = model.forward_with_alignments(src, mask, tgt_in)
    torch.testing.assert_close(alpha[:, 0], expected, rtol=1e-10, atol=1e-10)
    # ... and not on y_0: another first token leaves the first row unchanged
    _, alpha2 = model.forward_with_alignments(src, mask, tgt_in.roll(1, 0))
    torch.testing.assert_close(alpha2[:, 0], alpha[:, 0], rtol=1e-12, atol=1e-12)


def test_encoder_summary_uses_both_directions():
    """s_0 = tanh(W_s [h→_S; h←_1]): the forward state at the last real token, the backward one
    at the first."""
    torch.manual_seed(0)
    enc = GRUEncoder(V_SRC, 6, 5, 7).double()
    src, mask, _ = _batch()
    h, s0 = enc(src, mask)
    lengths = mask.sum(1)
    fwd_last = h[torch.arange(3), lengths - 1, :5]
    bwd_first = h[:, 0, 5:]
    expected = torch.tanh(enc.W_s(torch.cat([fwd_last, bwd_first], -1)))
    torch.testing.assert_close(s0, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg", CONFIGS[:3])
def test_greedy_matches_train_greedy_and_beam_of_one(cfg):
    model = _model(cfg)
    src, mask, _ = _batch()
    tokens, align = model.greedy_decode(src, mask, max_len=6)
    ref = greedy_decode(model.step_fn, model.start(src, mask), bos=1, eos=2, max_len=6, batch_size=3)
    assert torch.equal(tokens, ref.tokens)
    if align is not None:
        torch.testing.assert_close(align, ref.extras)
    beam = beam_search(model.step_fn, model.start(src, mask), bos=1, eos=2, max_len=6,
                       batch_size=3, beam_size=1)
    assert torch.equal(beam.tokens, ref.tokens)
    wide = beam_search(model.step_fn, model.start(src, mask), bos=1, eos=2, max_len=6,
                       batch_size=3, beam_size=3)
    # the beam's score is the teacher-forced log-probability of the sequence it returns
    tgt_in = torch.cat([torch.ones(3, 1, dtype=torch.long), wide.tokens[:, :-1]], 1)  # (B, L)
    log_p = model(src, mask, tgt_in).log_softmax(-1).gather(-1, wide.tokens[..., None])[..., 0]
    counted = torch.arange(wide.tokens.shape[1])[None] < wide.lengths[:, None]  # (B, L)
    torch.testing.assert_close(wide.scores, (log_p * counted).sum(1))


@pytest.mark.parametrize("attention", ["none", "luong", "bahdanau"])
def test_tiny_model_learns_to_copy(attention):
    torch.manual_seed(0)
    pairs = copy_pairs(8, seed=0, min_len=3, max_len=5, alphabet="abcd")
    vocab = Vocab.from_alphabet("abcd")
    batch = make_batch(pairs, vocab)
    model = build_seq2seq(len(vocab), len(vocab), attention, embed_dim=8, hidden_dim=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss() -> torch.Tensor:
        logits = model(batch.src, batch.src_mask, batch.tgt_in)
        return F.cross_entropy(logits.reshape(-1, len(vocab)), batch.tgt_out.reshape(-1), ignore_index=0)

    first = float(loss().detach())
    for _ in range(150):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert float(loss().detach()) < 0.1 * first
    preds, align = model.translate([s for s, _ in pairs], vocab, max_len=8)
    assert sum(p == t for p, (_, t) in zip(preds, pairs)) >= 6
    if attention != "none":
        assert align[0].shape == (len(preds[0]) + 1, len(pairs[0][0]))


def test_translate_restores_training_mode():
    model = _model({"attention": "bahdanau"}).train()
    vocab = Vocab("abcdefg")
    out, align = model.translate(["abc", "g"], vocab, max_len=4)
    assert model.training and len(out) == 2 and len(align) == 2


def test_errors():
    model = _model({"attention": "bahdanau"})
    src, mask, tgt_in = _batch()
    with pytest.raises(ValueError, match="src_mask"):
        model(src, mask.long(), tgt_in)
    with pytest.raises(ValueError, match="src_mask"):
        model(src, mask[:, :-1], tgt_in)
    with pytest.raises(ValueError, match="prefix"):
        model(src, mask.flip(1), tgt_in)  # padding at the front
    no_tokens = mask.clone()
    no_tokens[2] = False
    with pytest.raises(ValueError, match="at least one real token"):
        model(src, no_tokens, tgt_in)
    with pytest.raises(ValueError, match="src"):
        model(src.float(), mask, tgt_in)
    with pytest.raises(ValueError, match="src"):
        model(src + V_SRC, mask, tgt_in)
    with pytest.raises(ValueError, match="tgt_in"):
        model(src, mask, tgt_in[:2])
    with pytest.raises(ValueError, match="tgt_in"):
        model(src, mask, tgt_in + V_TGT)
    with pytest.raises(ValueError, match="attention"):
        build_seq2seq(5, 5, attention="transformer")
    with pytest.raises(ValueError, match="input_feeding"):
        build_seq2seq(5, 5, attention="bahdanau", input_feeding=True)
    with pytest.raises(ValueError, match="dot"):
        build_seq2seq(5, 5, attention="luong", score="dot", decoder_dim=7)
    with pytest.raises(ValueError, match="hidden_dim"):
        build_seq2seq(5, 5, hidden_dim=0)
    with pytest.raises(ValueError, match="key_dim"):
        Seq2Seq(GRUEncoder(5, 4, 3, 6), BahdanauDecoder(5, 4, 6, 5))
    with pytest.raises(ValueError, match="hidden_dim"):
        Seq2Seq(GRUEncoder(5, 4, 3, 6), LuongDecoder(5, 4, 7, 6))
    with pytest.raises(ValueError, match="encoder"):
        Seq2Seq(torch.nn.Linear(2, 2), ContextDecoder(5, 4, 6, 6))
    state = model.start(src, mask)
    with pytest.raises(ValueError, match="y_prev"):
        model.decoder.step(tgt_in[:2, 0], state)
    with pytest.raises(ValueError, match="max_len"):
        model.greedy_decode(src, mask, max_len=0)
    with pytest.raises(ValueError, match="annotations"):
        model.decoder.init_state(torch.zeros(3, 7, 4), mask, torch.zeros(3, 10))
