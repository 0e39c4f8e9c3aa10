"""Checkers for the exercises of "Neural machine translation with attention"
(book/nmt_attention.ipynb)."""

from __future__ import annotations

import torch

from attnbook.exercises import Wrong, checker, expect
from attnbook.exercises._common import as_int, as_number, attempt

SOURCES = ["3 march 1998", "03/03/98", "tuesday, march 3, 1998", "14 july 1989",
           "dec 1 2001", "1st of may, 2020"]
TARGETS = ["1998-03-03", "1998-03-03", "1998-03-03", "1989-07-14", "2001-12-01", "2020-05-01"]


def _tiny_model(attention: str = "bahdanau", seed: int = 0):
    """An untrained date model small enough to run in a check, with its vocabulary."""
    from attnbook.data import Vocab
    from attnbook.seq2seq import build_seq2seq

    vocab = Vocab.from_texts(SOURCES + TARGETS)
    torch.manual_seed(seed)
    model = build_seq2seq(len(vocab), len(vocab), attention=attention, embed_dim=8, hidden_dim=8)
    return model.eval(), vocab


def _madds_of_key_projection(S: int, d_k: int, d_a: int) -> int:
    """Multiply-adds of U_a h_i for S keys, counted by PyTorch (a multiply-add is 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    from attnbook.attention import AdditiveAttention

    attention = AdditiveAttention(query_dim=4, key_dim=d_k, hidden_dim=d_a)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        attention.project_keys(torch.randn(1, S, d_k))
    return counter.get_total_flops() // 2


@checker("what precomputing U_a h_i saves",
         hint="U_a h_i is a (d_a, d_k) matrix times a d_k vector: d_a d_k multiply-adds per source "
              "position; recomputed, that happens at every one of the T output steps")
def key_projection_cost(fn) -> str:
    for S, T, d_k, d_a in ((20, 11, 128, 128), (5, 1, 3, 7), (7, 4, 16, 8)):
        once_counted = _madds_of_key_projection(S, d_k, d_a)
        want = (T * once_counted, once_counted)
        got = attempt(f"S={S}, T={T}, d_k={d_k}, d_a={d_a}", fn, S, T, d_k, d_a)
        expect(isinstance(got, tuple) and len(got) == 2,
               f"key_projection_madds({S}, {T}, {d_k}, {d_a}) should return (recomputed, once), got {got!r}")
        got = tuple(as_int(g, f"key_projection_madds({S}, {T}, {d_k}, {d_a})") for g in got)
        if got == want:
            continue
        call = f"key_projection_madds({S}, {T}, {d_k}, {d_a}) = {got}, expected {want}"
        expect(got != (want[1], want[0]) or T == 1, f"{call}: the order is (recomputed, once)")
        expect(got != (2 * want[0], 2 * want[1]), f"{call}: those are FLOPs; count a multiply-add once")
        expect(got != (T * S * d_a, S * d_a), f"{call}: each of the d_a outputs needs d_k multiply-adds")
        raise Wrong(f"{call} (PyTorch counts {once_counted:,} multiply-adds for one projection of the {S} keys)")
    return "recomputing costs T times as much: a factor of 11 for the date model."


@checker("beam search with a step function",
         hint="beam_search(model.step_fn, model.start(src, src_mask), bos=BOS, eos=EOS, "
              "max_len=max_len, batch_size=B, beam_size=beam_size, device=src.device).tokens")
def beam_decoding(fn) -> str:
    from attnbook.data import BOS, EOS, make_batch
    from attnbook.train import beam_search

    model, vocab = _tiny_model()
    batch = make_batch(list(zip(SOURCES, TARGETS)), vocab)
    greedy_tokens, _ = model.greedy_decode(batch.src, batch.src_mask, max_len=12)
    greedy = vocab.decode_batch(greedy_tokens)
    for beam_size in (1, 3):
        with torch.no_grad():
            want = vocab.decode_batch(beam_search(model.step_fn, model.start(batch.src, batch.src_mask),
                                                  bos=BOS, eos=EOS, max_len=12, batch_size=len(SOURCES),
                                                  beam_size=beam_size).tokens)
        tokens = attempt(f"beam_size={beam_size}", fn, model, batch.src, batch.src_mask, beam_size)
        expect(isinstance(tokens, torch.Tensor) and tokens.dim() == 2 and tokens.shape[0] == len(SOURCES),
               f"with beam_size={beam_size}: return the token ids (B, L) of the best hypotheses, "
               f"got {getattr(tokens, 'shape', type(tokens).__name__)}")
        got = vocab.decode_batch(tokens.cpu())
        if beam_size == 1:
            expect(got == greedy, f"with beam_size=1 your decoding differs from greedy decoding on "
                                  f"{sum(a != b for a, b in zip(got, greedy))} of {len(SOURCES)} "
                                  "sentences: a beam of one keeps only the best next token")
        if got != want:
            expect(not (beam_size > 1 and got == greedy),
                   f"with beam_size={beam_size} your output is the greedy one; pass beam_size on")
            raise Wrong(f"with beam_size={beam_size} your output differs from beam search on "
                        f"{sum(a != b for a, b in zip(got, want))} of {len(SOURCES)} sentences")
    changed = sum(a != b for a, b in zip(greedy, want))
    return (f"a beam of 1 is greedy decoding; on an untrained model a beam of 3 changes "
            f"{changed} of {len(SOURCES)} outputs.")


class _IgnoresPadding(torch.nn.Module):
    """A model that looks at every position, padding included (a mask of all True)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, src, src_mask, tgt_in):
        return self.model(src, torch.ones_like(src_mask), tgt_in)


@checker("the padding test",
         hint="pad src with `extra` zeros (the padding id) on the right, extend src_mask with as "
              "many False, run the model on both and return the largest |difference| of the logits")
def padding_test(fn) -> str:
    from attnbook.data import make_batch

    report = []
    for attention in ("bahdanau", "luong"):
        model, vocab = _tiny_model(attention, seed=1)
        one = make_batch([(SOURCES[0], TARGETS[0])], vocab)
        with torch.no_grad():
            gap = as_number(attempt(f"a {attention} model", fn, model, one.src, one.src_mask, one.tgt_in),
                            f"your gap for a {attention} model")
        if gap > 1e-4:
            raise Wrong(f"on an (untrained) {attention} model, which masks its padding, your test "
                        f"reports a difference of {gap:.3g}: mark the padded positions False in the "
                        "mask, and pad on the right, after the real characters")
        leaky = _IgnoresPadding(model)
        with torch.no_grad():
            gap_leaky = as_number(attempt("a model that reads its padding", fn, leaky, one.src, one.src_mask,
                                          one.tgt_in), "your gap for a model that reads its padding")
        expect(gap_leaky > 1e-3,
               f"on a model that reads its padding your test reports {gap_leaky:.3g}: it must catch "
               "such a model (did you pad the source at all? compare logits of the same tokens)")
        report.append(f"{attention}: {gap:.1e}")
    return f"padding changes nothing in a masked model ({', '.join(report)}) and is caught otherwise."
