"""The checkers of book/transformer.ipynb: the notebook's reference passes, typical mistakes are
caught with a message that says what is wrong."""

from __future__ import annotations

import math

import torch
from exercise_support import reference

from attnbook.exercises import transformer as check


def params(E, d_ff, biases=True, norm=2, dec_norms=3):
    """(encoder, decoder) parameter counts, with optional slips."""
    attention = 4 * (E * E + E) if biases else 4 * E * E
    ffn = 2 * E * d_ff + (d_ff + E if biases else 0)
    return attention + ffn + 2 * norm * E, 2 * attention + ffn + dec_norms * norm * E


def test_layer_parameters():
    assert check.layer_parameters(reference("transformer", "layer_parameters"))
    no_bias = check.layer_parameters(lambda E, f: params(E, f, biases=False))
    assert not no_bias and "biases of the projections" in no_bias.message
    gain_only = check.layer_parameters(lambda E, f: params(E, f, norm=1))
    assert not gain_only and "a gain AND a bias" in gain_only.message
    two_norms = check.layer_parameters(lambda E, f: params(E, f, dec_norms=2))
    assert not two_norms and "has 3 LayerNorms" in two_norms.message


def gap(encode, src, perm, permute_output=True, output_dim=1):
    with torch.no_grad():
        ref = encode(src)
        if permute_output:
            ref = ref[:, perm] if output_dim == 1 else ref[perm]
        return float((encode(src[:, perm]) - ref).abs().max())


def test_permutation_gap():
    assert check.permutation_gap(reference("transformer", "permutation_gap"))
    unpermuted = check.permutation_gap(lambda e, s, p: gap(e, s, p, permute_output=False))
    assert not unpermuted and "permute the output's rows too" in unpermuted.message
    batch = check.permutation_gap(lambda e, s, p: gap(e, s, p, output_dim=0))
    assert not batch and "dimension 0, the batch" in batch.message
    signed = check.permutation_gap(lambda e, s, p: float((e(s[:, p]) - e(s)[:, p]).min()))
    assert not signed and "largest absolute difference" in signed.message


def schedule(step, warmup, total, zero_start=False, over_total=False, clamp=True):
    if step < warmup:
        return step / warmup if zero_start else (step + 1) / warmup
    p = step / total if over_total else (step - warmup) / (total - warmup)
    return 0.5 * (1 + math.cos(math.pi * (min(1.0, p) if clamp else p)))


def test_warmup_schedule():
    assert check.warmup_schedule(reference("transformer", "warmup_schedule"))
    zero = check.warmup_schedule(lambda s, w, t: schedule(s, w, t, zero_start=True))
    assert not zero and "(step + 1) / warmup_steps" in zero.message
    whole = check.warmup_schedule(lambda s, w, t: schedule(s, w, t, over_total=True))
    assert not whole and "decay phase only" in whole.message
    unclamped = check.warmup_schedule(lambda s, w, t: schedule(s, w, t, clamp=False))
    assert not unclamped and "stays at 0" in unclamped.message


def test_kv_cache_size():
    assert check.kv_cache_size(reference("transformer", "kv_cache_size"))
    keys_only = check.kv_cache_size(lambda B, L, H, D, t: L * B * H * D * t)
    assert not keys_only and "keys AND the values" in keys_only.message
    one_layer = check.kv_cache_size(lambda B, L, H, D, t: 2 * B * H * D * t)
    assert not one_layer and "its own cache" in one_layer.message
    in_bytes = check.kv_cache_size(lambda B, L, H, D, t: 2 * L * B * H * D * t * 4)
    assert not in_bytes and "not bytes" in in_bytes.message
