"""The checkers of book/nmt_attention.ipynb: the notebook's reference passes, typical mistakes
are caught with a message that says what is wrong."""

from __future__ import annotations

import torch
from exercise_support import reference

from attnbook.data import BOS, EOS
from attnbook.exercises import nmt_attention as check
from attnbook.train import beam_search


def test_key_projection_cost():
    assert check.key_projection_cost(reference("nmt_attention", "key_projection_cost"))
    flops = check.key_projection_cost(lambda S, T, dk, da: (2 * T * S * dk * da, 2 * S * dk * da))
    assert not flops and "count a multiply-add once" in flops.message
    swapped = check.key_projection_cost(lambda S, T, dk, da: (S * dk * da, T * S * dk * da))
    assert not swapped and "(recomputed, once)" in swapped.message
    no_dk = check.key_projection_cost(lambda S, T, dk, da: (T * S * da, S * da))
    assert not no_dk and "needs d_k multiply-adds" in no_dk.message


def greedy_always(model, src, src_mask, beam_size, max_len=12):
    return model.greedy_decode(src, src_mask, max_len=max_len)[0]


def beam_plus_one(model, src, src_mask, beam_size, max_len=12):
    with torch.no_grad():
        return beam_search(model.step_fn, model.start(src, src_mask), bos=BOS, eos=EOS,
                           max_len=max_len, batch_size=src.shape[0], beam_size=beam_size + 1).tokens


def test_beam_decoding():
    assert check.beam_decoding(reference("nmt_attention", "beam_decoding"))
    greedy = check.beam_decoding(greedy_always)
    assert not greedy and "pass beam_size on" in greedy.message
    wider = check.beam_decoding(beam_plus_one)
    assert not wider and "differs from greedy decoding" in wider.message
    strings = check.beam_decoding(lambda m, s, sm, k, max_len=12: ["1998-03-03"] * s.shape[0])
    assert not strings and "return the token ids (B, L)" in strings.message


def gap(model, src, src_mask, tgt_in, extra=10, mask_value=False, left=False, pad_src=True):
    B = src.shape[0]
    pad = torch.zeros(B, extra, dtype=src.dtype)
    more = torch.full((B, extra), mask_value)
    if not pad_src:
        return 0.0
    src2 = torch.cat([pad, src], 1) if left else torch.cat([src, pad], 1)
    mask2 = torch.cat([more, src_mask], 1) if left else torch.cat([src_mask, more], 1)
    with torch.no_grad():
        return float((model(src, src_mask, tgt_in) - model(src2, mask2, tgt_in)).abs().max())


def test_padding_test():
    assert check.padding_test(reference("nmt_attention", "padding_test"))
    unmasked = check.padding_test(lambda *a: gap(*a, mask_value=True))
    assert not unmasked and "mark the padded positions False" in unmasked.message
    nothing = check.padding_test(lambda *a: gap(*a, pad_src=False))
    assert not nothing and "it must catch such a model" in nothing.message
