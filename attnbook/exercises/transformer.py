"""Checkers for the exercises of "The Transformer" (book/transformer.ipynb)."""

from __future__ import annotations

import math

import torch

from attnbook.exercises import Wrong, checker, expect
from attnbook.exercises._common import as_int, as_number, attempt


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@checker("the parameters of a Transformer layer",
         hint="attention: four E x E projections with biases; FFN: E x d_ff and d_ff x E with "
              "biases; a LayerNorm has a gain and a bias of E each (two of them in the encoder "
              "layer, three in the decoder layer, which also has cross-attention)")
def layer_parameters(fn) -> str:
    from attnbook.transformer import DecoderLayer, EncoderLayer

    for E, d_ff in ((64, 128), (32, 96), (48, 48)):
        got = attempt(f"E = {E}, d_ff = {d_ff}", fn, E, d_ff)
        expect(isinstance(got, tuple) and len(got) == 2,
               f"layer_params({E}, {d_ff}) should return (encoder layer, decoder layer), got {got!r}")
        enc, dec = (as_int(n, f"layer_params({E}, {d_ff})") for n in got)
        for heads in (1, 4, 8):
            want_enc = _count(EncoderLayer(d_model=E, num_heads=heads, d_ff=d_ff))
            want_dec = _count(DecoderLayer(d_model=E, num_heads=heads, d_ff=d_ff))
            for what, n, want, norms, attns in (("encoder", enc, want_enc, 2, 1),
                                                ("decoder", dec, want_dec, 3, 2)):
                if n == want:
                    continue
                call = (f"your {what} layer with E = {E}, d_ff = {d_ff} has {n:,} parameters, "
                        f"but {what.capitalize()}Layer has {want:,} (with {heads} heads)")
                expect(n != want - attns * 4 * E - d_ff - E,
                       f"{call}: you left out the biases of the projections")
                expect(n != want - norms * E, f"{call}: a LayerNorm has a gain AND a bias, 2 E parameters")
                expect(n != want - 2 * E, f"{call}: the {what} layer has {norms} LayerNorms")
                expect(not (heads > 1 and n == want + (heads - 1) * attns * 4 * (E * E + E)),
                       f"{call}: the number of heads does not multiply the projections; it only "
                       "splits them")
                raise Wrong(call)
    ffn = 2 * 64 * 128 + 128 + 64
    return f"the FFN is {ffn / fn(64, 128)[0]:.0%} of an encoder layer with E = 64, d_ff = 128."


def _encoders(seed: int = 0):
    """Two small encoders of token ids (B, S) -> (B, S, E): self-attention without positions,
    and the same with a learned position table added to the embeddings."""
    from attnbook.attention import MultiHeadAttention

    torch.manual_seed(seed)
    emb, attn = torch.nn.Embedding(11, 16), MultiHeadAttention(16, 4)
    norm = torch.nn.LayerNorm(16)
    pos = torch.nn.Parameter(torch.randn(12, 16))

    def encode(src: torch.Tensor, with_positions: bool = False) -> torch.Tensor:
        with torch.no_grad():
            x = emb(src) + (pos[: src.shape[1]] if with_positions else 0)   # (B, S, E)
            return norm(x + attn(x)[0])                                     # (B, S, E)

    return encode, lambda src: encode(src, with_positions=True)


@checker("permutation equivariance",
         hint="compare encode(src[:, perm]) with encode(src)[:, perm]: permute the positions of "
              "the input, and the rows of the output")
def permutation_gap(fn) -> str:
    plain, positioned = _encoders()
    g = torch.Generator().manual_seed(3)
    src = torch.randint(0, 11, (10, 10), generator=g)                       # (B, S), B = S
    perm = torch.randperm(10, generator=g)
    gap = as_number(attempt("an encoder without positions", fn, plain, src.clone(), perm.clone()),
                    "your gap for an encoder without positions")
    expect(gap >= 0, f"your gap is {gap}: return the largest absolute difference, a number >= 0")
    if gap > 1e-4:
        unpermuted = float((plain(src[:, perm]) - plain(src)).abs().max())
        expect(not math.isclose(gap, unpermuted, rel_tol=1e-4),
               f"for an encoder without positions your gap is {gap:.3g}: you compared "
               "encode(src[:, perm]) with encode(src); permute the output's rows too")
        dim0 = float((plain(src[:, perm]) - plain(src)[perm]).abs().max())
        expect(not math.isclose(gap, dim0, rel_tol=1e-4),
               f"for an encoder without positions your gap is {gap:.3g}: you permuted the output "
               "along dimension 0, the batch; the positions are dimension 1")
        raise Wrong(f"for an encoder without positions your gap is {gap:.3g}, expected about 0: "
                    "permute dimension 1 (the positions) of the input and of the output")
    gap = as_number(attempt("an encoder with positions", fn, positioned, src.clone(), perm.clone()),
                    "your gap for an encoder with positions")
    want = float((positioned(src[:, perm]) - positioned(src)[:, perm]).abs().max())
    expect(math.isclose(gap, want, rel_tol=1e-4),
           f"for an encoder with positions your gap is {gap:.3g}, expected {want:.3g}: the largest "
           "absolute difference over every entry")
    return f"about 0 without positions, {want:.2f} with a position table."


@checker("the warm-up and cosine schedule",
         hint="(step + 1) / warmup_steps during the warm-up; then (1 + cos(pi p)) / 2 with p the "
              "fraction of the decay phase done, and 0 after total_steps")
def warmup_schedule(fn) -> str:
    from attnbook.train import warmup_cosine_lambda

    for warmup, total in ((20, 60), (10, 200), (0, 50), (5, 6)):
        reference = warmup_cosine_lambda(warmup, total)
        for step in range(total + 10):
            want = reference(step)
            got = as_number(attempt(f"step {step} of ({warmup}, {total})", fn, step, warmup, total),
                            f"warmup_cosine_factor({step}, {warmup}, {total})")
            if math.isclose(got, want, abs_tol=1e-9):
                continue
            call = f"warmup_cosine_factor({step}, {warmup}, {total}) = {got:.4f}, expected {want:.4f}"
            expect(not (step < warmup and math.isclose(got, step / warmup, abs_tol=1e-9)),
                   f"{call}: at step 0 a factor of 0 wastes the first update; warm up with "
                   "(step + 1) / warmup_steps")
            if step >= warmup and step <= total:
                over_total = 0.5 * (1 + math.cos(math.pi * step / total))
                expect(not math.isclose(got, over_total, abs_tol=1e-9),
                       f"{call}: the cosine runs over the decay phase only, "
                       "p = (step - warmup_steps) / (total_steps - warmup_steps)")
            expect(step <= total, f"{call}: after total_steps the factor stays at 0 (clamp p at 1)")
            raise Wrong(call)
    return "it rises linearly for warmup_steps, then follows a half cosine down to 0."


@checker("the numbers in a KV cache",
         hint="every decoder layer keeps K and V, each (B, H, t, D)")
def kv_cache_size(fn) -> str:
    from attnbook.attention import KVCache, MultiHeadAttention

    for B, L, H, D, t in ((2, 3, 4, 8, 5), (1, 1, 1, 4, 1), (3, 2, 2, 16, 7)):
        E = H * D
        layers = [MultiHeadAttention(E, H) for _ in range(L)]
        caches = [KVCache() for _ in range(L)]
        with torch.no_grad():
            for _ in range(t):
                x = torch.randn(B, 1, E)
                for layer, cache in zip(layers, caches):
                    x = layer(x, causal=True, cache=cache)[0]
        want = sum(c.k.numel() + c.v.numel() for c in caches)
        got = as_int(attempt(f"B={B}, L={L}, H={H}, D={D}, t={t}", fn, B, L, H, D, t),
                     f"kv_cache_numbers({B}, {L}, {H}, {D}, {t})")
        if got == want:
            continue
        call = (f"kv_cache_numbers({B}, {L}, {H}, {D}, {t}) = {got:,}, but {L} layers' caches "
                f"hold {want:,} numbers after {t} tokens")
        expect(2 * got != want, f"{call}: each layer keeps the keys AND the values")
        expect(got != want // L or L == 1, f"{call}: each of the {L} layers has its own cache")
        expect(got not in (2 * want, 4 * want), f"{call}: count numbers, not bytes")
        raise Wrong(call)
    gib = 2 * 32 * 1 * 4096 * 4096 * 2 / 2**30
    return f"a 32-layer model with E = 4096 needs {gib:.0f} GiB of float16 cache for 4096 tokens."
