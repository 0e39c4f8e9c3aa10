"""Checkers for the exercises of "Multi-head attention" (book/multi_head.ipynb)."""

from __future__ import annotations

import torch

from attnbook.exercises import Wrong, checker, expect
from attnbook.exercises._common import as_int, as_tensor, attempt, expect_close, expect_shape


def _counted_flops(B: int, T: int, E: int, H: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    from attnbook.attention import MultiHeadAttention

    layer = MultiHeadAttention(E, H)
    x = torch.randn(B, T, E)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer(x, need_weights=True)
    return counter.get_total_flops()


@checker("the FLOPs of multi-head attention",
         hint="four (B T, E) x (E, E) projections, and per head two (T, D) x (D, T)-sized products; "
              "a multiply-add is 2 FLOPs")
def mha_flops(fn) -> str:
    for B, T, E in ((2, 32, 64), (1, 5, 16), (3, 7, 24)):
        counted = {H: _counted_flops(B, T, E, H) for H in (1, 2, 4, 8)}
        expect(len(set(counted.values())) == 1, f"the counter disagrees across H: {counted}")
        want = counted[1]
        got = as_int(fn(B, T, E), f"mha_flops({B}, {T}, {E})")
        if got == want:
            continue
        call = f"mha_flops({B}, {T}, {E}) = {got:,}, but FlopCounterMode counts {want:,} for H = 1, 2, 4 and 8"
        expect(got * 2 != want, f"{call}: you counted multiply-adds; a multiply-add is 2 FLOPs")
        expect(got != 6 * B * T * E * E + 4 * B * T * T * E,
               f"{call}: the output projection W^O is a fourth (E x E) product")
        expect(got != 8 * B * T * E * E + 2 * B * T * T * E,
               f"{call}: the product A V costs as much as Q K^T (2 B T^2 E FLOPs each)")
        expect(got != 8 * B * T * E * E, f"{call}: the two products Q K^T and A V are missing")
        raise Wrong(call)
    return "the same count for every H: heads cut the E features, they do not add work."


def _layer(E: int, H: int, bias: bool = True, seed: int = 0):
    from attnbook.attention import MultiHeadAttention

    torch.manual_seed(seed)
    layer = MultiHeadAttention(E, H, bias=bias)
    if bias:
        with torch.no_grad():
            for lin in (layer.q_proj, layer.k_proj, layer.v_proj, layer.out_proj):
                lin.bias.normal_()
    return layer


def _pooled(weight: torch.Tensor, G: int, H: int) -> torch.Tensor:
    """Mean of the rows of each group of H/G consecutive heads: (H D, ...) -> (G D, ...)."""
    D = weight.shape[0] // H
    return weight.reshape(G, H // G, D, *weight.shape[1:]).mean(1).reshape(G * D, *weight.shape[1:])


@checker("uptraining to grouped-query attention",
         hint="view k_proj.weight (H D, E) as (G, H/G, D, E), average over the H/G axis; the same "
              "for v_proj and the biases; copy q_proj and out_proj")
def gqa_conversion(fn) -> str:
    from attnbook.attention import MultiHeadAttention

    for E, H, G, bias in ((32, 8, 2, True), (24, 6, 3, True), (16, 4, 1, True), (16, 4, 4, False)):
        D = E // H
        mha = _layer(E, H, bias=bias, seed=E + G)
        before = {k: v.clone() for k, v in mha.state_dict().items()}
        name = f"E = {E}, H = {H}, G = {G}{'' if bias else ', no biases'}"
        gqa = attempt(name, fn, mha, G)
        expect(isinstance(gqa, MultiHeadAttention),
               f"{name}: return a MultiHeadAttention, got {type(gqa).__name__}")
        expect(all(torch.equal(before[k], v) for k, v in mha.state_dict().items()),
               f"{name}: your function changed the original layer; build a new one")
        expect(gqa.num_kv_heads == G, f"{name}: the new layer has {gqa.num_kv_heads} key/value heads, "
                                      f"expected G = {G} (MultiHeadAttention(E, H, num_kv_heads=G))")
        for proj in ("q_proj", "out_proj"):
            expect(torch.equal(getattr(gqa, proj).weight, getattr(mha, proj).weight),
                   f"{name}: {proj}.weight differs from the original's: copy W^Q and W^O unchanged")
        for proj in ("k_proj", "v_proj"):
            w, w0 = getattr(gqa, proj).weight.detach(), getattr(mha, proj).weight.detach()
            expect_shape(w, (G * D, E), f"{name}: {proj}.weight",
                         f"(G D, E): did you average the {H} heads over each group of {H // G}?")
            if H > G:
                expect(not torch.allclose(w, w0.reshape(G, H // G, D, E)[:, 0].reshape(G * D, E)),
                       f"{name}: {proj} holds the FIRST head of each group; the uptraining "
                       "recipe takes the mean of the group's heads")
                interleaved = w0.reshape(H // G, G, D, E).mean(0).reshape(G * D, E)
                expect(G == 1 or not torch.allclose(w, interleaved),
                       f"{name}: {proj} averages heads {list(range(0, H, G))} into group 0: the "
                       f"heads of a group are consecutive (heads 0..{H // G - 1} form group 0)")
            expect_close(w, _pooled(w0, G, H), f"{name}: {proj}.weight",
                         "each group's rows should be the mean of its heads' rows")
            if bias:
                expect_close(getattr(gqa, proj).bias.detach(), _pooled(getattr(mha, proj).bias.detach(), G, H),
                             f"{name}: {proj}.bias", "pool the biases the same way")
    # where the heads of each group are already equal, the conversion changes nothing
    mha = _layer(32, 8, seed=7)
    with torch.no_grad():
        for proj in ("k_proj", "v_proj"):
            lin = getattr(mha, proj)
            w = lin.weight.view(2, 4, 4, 32)
            w.copy_(w[:, :1].expand_as(w).clone())
            b = lin.bias.view(2, 4, 4)
            b.copy_(b[:, :1].expand_as(b).clone())
    x = torch.randn(3, 9, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expect_close(fn(mha, 2)(x)[0], mha(x)[0], "the output of a layer whose heads are equal within each group",
                     "there the conversion must not change the function", atol=1e-5)
    return "mean-pooled K and V, W^Q and W^O copied; a layer with equal heads in a group is unchanged."


@checker("the longest context that fits",
         hint="per token, every layer stores K and V: 2 * layers * kv_heads * head_dim numbers; "
              "divide the budget by the bytes of one token and round down")
def context_length(fn) -> str:
    from attnbook.attention import KVCache, MultiHeadAttention

    # real caches first: 3 layers, 2 key/value heads of size 4, float32 (192 bytes a token)
    layers, G, D, E, H = 3, 2, 4, 16, 4
    stack = [MultiHeadAttention(E, H, num_kv_heads=G) for _ in range(layers)]
    caches = [KVCache() for _ in range(layers)]
    sizes = []
    with torch.no_grad():
        for _ in range(12):
            x = torch.randn(1, 1, E)
            for layer, cache in zip(stack, caches):
                layer(x, causal=True, cache=cache)
            sizes.append(sum(t.numel() * t.element_size() for c in caches for t in (c.k, c.v)))
    for budget in (1000, 1152, 1151, 191):
        want = sum(s <= budget for s in sizes)
        got = as_int(fn(budget, layers, G, D, 4), f"max_context_tokens({budget}, {layers}, {G}, {D}, 4)")
        if got == want:
            continue
        call = (f"max_context_tokens({budget}, {layers}, {G}, {D}, 4) = {got}, but real caches of "
                f"{layers} layers hold {want} tokens within {budget} bytes")
        expect(got != budget // (layers * G * D * 4), f"{call}: a cache stores keys AND values (2 per token)")
        expect(got != budget // (2 * G * D * 4), f"{call}: every one of the {layers} layers has its own cache")
        expect(not (got == want + 1 and want < len(sizes)),
               f"{call}: {got} tokens need {sizes[got - 1]} bytes, more than the budget: round down")
        raise Wrong(call)
    for L, Gb, Db, b in ((80, 64, 128, 2), (80, 8, 128, 2), (32, 1, 64, 1)):
        budget = 40 * 2**30
        want = budget // (2 * L * Gb * Db * b)
        got = as_int(fn(budget, L, Gb, Db, b), f"max_context_tokens(40 GiB, {L}, {Gb}, {Db}, {b})")
        expect(got == want, f"max_context_tokens(40 GiB, {L}, {Gb}, {Db}, {b}) = {got}, expected {want}")
    mha, gqa = (40 * 2**30) // (2 * 80 * 64 * 128 * 2), (40 * 2**30) // (2 * 80 * 8 * 128 * 2)
    return f"40 GiB hold {mha:,} tokens with 64 key/value heads and {gqa:,} with 8 ({gqa // mha}x)."


@checker("pruning the least useful heads",
         hint="ablated[h] is the accuracy LEFT after removing head h alone: the highest values mark "
              "the most dispensable heads; a mask holds 1 for a kept head, 0 for a removed one")
def head_pruning(fn) -> str:
    cases = [([0.8, 0.81, 0.3, 0.99, 0.6, 0.7], 1), ([0.9, 0.5, 0.95, 0.7], 2),
             ([0.4, 0.6, 0.5], 0), ([0.2, 0.9, 0.7, 0.1, 0.5, 0.6, 0.3, 0.8], 3)]
    for ablated, k in cases:
        H = len(ablated)
        order = sorted(range(H), key=lambda h: ablated[h], reverse=True)      # most dispensable first
        want_least, want_most = torch.ones(H), torch.ones(H)
        want_least[order[:k]] = 0.0
        if k:
            want_most[order[-k:]] = 0.0
        out = fn(list(ablated), k)
        call = f"pruning_masks({ablated}, k={k})"
        expect(isinstance(out, tuple) and len(out) == 2, f"{call}: return two masks, got {type(out).__name__}")
        least, most = (as_tensor(m, f"{call}: your mask") for m in out)
        for mask, want, what in ((least, want_least, "the first mask"), (most, want_most, "the second mask")):
            expect_shape(mask, (H,), f"{call}: {what}", "one entry per head (1 = keep, 0 = remove)")
            mask = mask.detach().cpu().double()
            if torch.equal(mask, want.double()):
                continue
            expect(not (k and torch.equal(least.detach().cpu().double(), want_most.double())),
                   f"{call}: your first mask removes the heads whose removal HURT most; ablated[h] is "
                   "the accuracy left WITHOUT head h, so a high value marks a dispensable head")
            expect(not torch.equal(mask, 1 - want.double()),
                   f"{call}: {what} holds 1 for the removed heads; a head mask keeps a head with 1 "
                   "and removes it with 0")
            raise Wrong(f"{call}: {what} is {mask.tolist()}, expected {want.tolist()}")
    return "it removes the k heads with the highest accuracy-without-them, or the k lowest."
