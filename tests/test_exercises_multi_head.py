"""The checkers of book/multi_head.ipynb: the notebook's reference passes, typical mistakes are
caught with a message that says what is wrong."""

from __future__ import annotations

import math

import torch
from exercise_support import reference

from attnbook import MultiHeadAttention
from attnbook.exercises import multi_head as check


def test_mha_flops():
    assert check.mha_flops(reference("multi_head", "mha_flops"))
    madds = check.mha_flops(lambda B, T, E: 4 * B * T * E**2 + 2 * B * T**2 * E)
    assert not madds and "a multiply-add is 2 FLOPs" in madds.message
    three = check.mha_flops(lambda B, T, E: 6 * B * T * E**2 + 4 * B * T**2 * E)
    assert not three and "fourth (E x E) product" in three.message
    no_av = check.mha_flops(lambda B, T, E: 8 * B * T * E**2 + 2 * B * T**2 * E)
    assert not no_av and "A V costs as much as Q K^T" in no_av.message


def convert(mha, G, pick=None, interleave=False, copy_q=True, pool=True):
    E, H = mha.embed_dim, mha.num_heads
    D, bias = E // H, mha.q_proj.bias is not None
    out = MultiHeadAttention(E, H, num_kv_heads=G if pool else H, bias=bias)
    with torch.no_grad():
        if copy_q:
            out.q_proj.load_state_dict(mha.q_proj.state_dict())
        out.out_proj.load_state_dict(mha.out_proj.state_dict())
        for name in ("k_proj", "v_proj") if pool else ():
            src, dst = getattr(mha, name), getattr(out, name)
            if interleave:
                w = src.weight.view(H // G, G, D, E).mean(0)
                b = src.bias.view(H // G, G, D).mean(0) if bias else None
            elif pick is not None:
                w = src.weight.view(G, H // G, D, E)[:, pick]
                b = src.bias.view(G, H // G, D)[:, pick] if bias else None
            else:
                w = src.weight.view(G, H // G, D, E).mean(1)
                b = src.bias.view(G, H // G, D).mean(1) if bias else None
            dst.weight.copy_(w.reshape(G * D, E))
            if bias:
                dst.bias.copy_(b.reshape(G * D))
    return out


def test_gqa_conversion():
    assert check.gqa_conversion(reference("multi_head", "gqa_conversion"))
    assert check.gqa_conversion(convert)
    first = check.gqa_conversion(lambda m, G: convert(m, G, pick=0))
    assert not first and "FIRST head of each group" in first.message
    interleaved = check.gqa_conversion(lambda m, G: convert(m, G, interleave=True))
    assert not interleaved and "heads of a group are consecutive" in interleaved.message
    fresh_q = check.gqa_conversion(lambda m, G: convert(m, G, copy_q=False))
    assert not fresh_q and "copy W^Q and W^O unchanged" in fresh_q.message
    unpooled = check.gqa_conversion(lambda m, G: convert(m, G, pool=False))
    assert not unpooled and "key/value heads, expected G" in unpooled.message


def test_context_length():
    assert check.context_length(reference("multi_head", "context_length"))
    no_two = check.context_length(lambda b, L, G, D, n: b // (L * G * D * n))
    assert not no_two and "keys AND values" in no_two.message
    one_layer = check.context_length(lambda b, L, G, D, n: b // (2 * G * D * n))
    assert not one_layer and "its own cache" in one_layer.message
    ceil = check.context_length(lambda b, L, G, D, n: math.ceil(b / (2 * L * G * D * n)))
    assert not ceil and "round down" in ceil.message


def masks(ablated, k, reverse=True, inverted=False):
    H = len(ablated)
    order = sorted(range(H), key=lambda h: ablated[h], reverse=reverse)
    least, most = torch.ones(H), torch.ones(H)
    least[order[:k]] = 0.0
    most[order[H - k:]] = 0.0
    return (1 - least, 1 - most) if inverted else (least, most)


def test_head_pruning():
    assert check.head_pruning(reference("multi_head", "head_pruning"))
    backwards = check.head_pruning(lambda a, k: masks(a, k, reverse=False))
    assert not backwards and "HURT most" in backwards.message
    inverted = check.head_pruning(lambda a, k: masks(a, k, inverted=True))
    assert not inverted and "1 for the removed heads" in inverted.message
    indices = check.head_pruning(lambda a, k: (torch.tensor([0, 1]), torch.tensor([2, 3])))
    assert not indices and "one entry per head" in indices.message
