"""Checkers for the exercises of "A GPT of our own" (book/gpt.ipynb).

* :func:`trigram_cross_entropy` — the add-one smoothed trigram baseline, in nats;
* :func:`nucleus` — the keep-mask of top-p (nucleus) sampling;
* :func:`induction_scores` — each head's attention to the token after the previous occurrence;
* :func:`split_c_attn` — GPT-2's packed Conv1D ``c_attn`` as three ``nn.Linear`` weights.

Each checker builds its own cases (edge cases included), compares with an independent
computation and, when the answer is wrong, names the likely slip.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

from . import checker, expect

__all__ = ["trigram_cross_entropy", "nucleus", "induction_scores", "split_c_attn"]


def _number(value: Any, what: str) -> float:
    """``float(value)`` or a Wrong verdict that says what came back."""
    ok = isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1)
    expect(ok, f"{what} must be one number (a float or a 0-d tensor), got {type(value).__name__}"
               f"{tuple(value.shape) if isinstance(value, torch.Tensor) else ''}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Exercise: the trigram baseline
# ---------------------------------------------------------------------------------------------


def _ngram_reference(train: list[int], val: list[int], V: int, n: int = 3, base: float = math.e,
                     context_counts_all: bool = False, start: int | None = None) -> float:
    """Pure-Python add-one ``n``-gram model, averaged over the predictions of ``val[i]`` from
    ``val[i-n+1 : i]`` for ``i >= start`` (default ``n - 1``: the first ``n - 1`` characters
    are only context)."""
    grams = Counter(tuple(train[i : i + n]) for i in range(len(train) - n + 1))
    stop = len(train) - n + 2 if context_counts_all else len(train) - n + 1
    contexts = Counter(tuple(train[i : i + n - 1]) for i in range(stop))
    terms = [(grams[tuple(val[i - n + 1 : i + 1])] + 1) / (contexts[tuple(val[i - n + 1 : i])] + V)
             for i in range(n - 1 if start is None else start, len(val))]
    return -sum(math.log(p, base) for p in terms) / len(terms)


def _trigram_cases() -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    g = torch.Generator().manual_seed(0)
    cases = [
        (torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 0]), torch.tensor([0, 1, 2, 1, 0]), 3),
        # a context never seen in training (3, 0) and a symbol never seen at all (4)
        (torch.tensor([0, 1, 2, 3, 3, 1, 2, 3]), torch.tensor([3, 0, 4, 1, 2, 3]), 5),
    ]
    text = torch.randint(0, 5, (500,), generator=g)
    cases.append((text[:420], text[420:], 6))  # symbol 5 never occurs
    return cases


@checker("trigram baseline", hint="count the triples (a, b, c) and the pairs (a, b) that start a "
         "triple in the training tokens; p(c | a, b) = (n(a, b, c) + 1) / (n(a, b, .) + V); "
         "average -log p over the len(val) - 2 validation triples")
def trigram_cross_entropy(fn: Callable[[torch.Tensor, torch.Tensor, int], Any]) -> str:
    for train, val, V in _trigram_cases():
        tr, va = train.tolist(), val.tolist()
        got = _number(fn(train.clone(), val.clone(), V), "the cross-entropy")
        want = _ngram_reference(tr, va, V)
        expect(math.isfinite(got), f"you returned {got} on a case with a validation triple never "
               f"seen in training: without smoothing p = 0 there. Add one to every count (and V "
               f"to each denominator).")
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            continue
        shown = f"train={tr[:10]}{'...' if len(tr) > 10 else ''}, val={va[:10]}, V={V}"
        if math.isclose(got, _ngram_reference(tr, va, V, base=2), rel_tol=1e-6):
            expect(False, f"got {got:.4f} = {want:.4f} / ln 2: that is in bits. Use the natural "
                          f"logarithm (nats), as the training loss does.")
        for n, name in ((2, "bigram"), (1, "unigram")):
            near = [_ngram_reference(tr, va, V, n=n, start=k) for k in {n - 1, 2}]
            if any(math.isclose(got, x, rel_tol=1e-6) for x in near):
                expect(False, f"on {shown} you returned {got:.4f}, the {name} cross-entropy: "
                              f"condition on the TWO previous characters, p(c | a, b).")
        if math.isclose(got, _ngram_reference(tr, va, V, context_counts_all=True), rel_tol=1e-6):
            expect(False, f"on {shown} you returned {got:.4f}, expected {want:.4f}: the "
                          f"denominator n(a, b, .) counts pairs that START a training triple, so "
                          f"the final pair of the training text (with no successor) does not count.")
        expect(False, f"on {shown} you returned {got:.4f}, expected {want:.4f}. Check the +1 / +V "
                      f"smoothing and that you average over the len(val) - 2 triples.")
    return "your trigram model matches an independent count on every case."


# ---------------------------------------------------------------------------------------------
# Exercise: nucleus (top-p) filtering
# ---------------------------------------------------------------------------------------------


def _nucleus_cases() -> list[tuple[torch.Tensor, float]]:
    g = torch.Generator().manual_seed(1)
    shuffled = torch.softmax(torch.randn(12, generator=g) * 2, dim=0)
    return [
        (torch.tensor([0.1, 0.5, 0.15, 0.25]), 0.7),     # unsorted: 0.5 + 0.25 = 0.75 >= 0.7
        (torch.tensor([0.1, 0.5, 0.15, 0.25]), 0.75),    # exactly reached by two tokens
        (torch.tensor([0.05, 0.9, 0.05]), 0.5),          # the top token alone
        (torch.tensor([0.4, 0.3, 0.2, 0.1]), 0.95),      # three are not enough
        (torch.tensor([0.25, 0.25, 0.25, 0.25]), 1.0),   # everything
        (shuffled, 0.9),
    ]


@checker("nucleus (top-p) mask", hint="sort the probabilities in decreasing order, take the "
         "cumulative sum, and keep a token while the mass BEFORE it is still below p")
def nucleus(fn: Callable[[torch.Tensor, float], Any]) -> str:
    for probs, p in _nucleus_cases():
        keep = fn(probs.clone(), p)
        expect(isinstance(keep, torch.Tensor), f"return a boolean tensor, got {type(keep).__name__}")
        expect(tuple(keep.shape) == tuple(probs.shape),
               f"for probs of shape {tuple(probs.shape)} your mask has shape {tuple(keep.shape)}: "
               f"one entry per token, in the order of probs")
        keep = keep.bool()
        sorted_p = sorted(probs.tolist(), reverse=True)
        n = next(i + 1 for i in range(len(sorted_p)) if math.fsum(sorted_p[: i + 1]) >= p - 1e-9)
        mass = float(probs[keep].sum())
        shown = [round(x, 3) for x in probs.tolist()]
        expect(keep.any(), f"probs={shown}, p={p}: you kept nothing; the most probable token "
                           f"must always stay")
        expect(mass >= p - 1e-6, f"probs={shown}, p={p}: the kept mass is {mass:.3f} < p. Keep "
               f"the token that makes the running sum cross p (compare the mass before each "
               f"token with p, not the mass including it).")
        if int(keep.sum()) < len(probs):
            expect(float(probs[keep].min()) >= float(probs[~keep].max()),
                   f"probs={shown}, p={p}: you kept a token less probable than one you dropped: "
                   f"did you cut the UNSORTED probabilities? Sort first, then map back.")
        expect(int(keep.sum()) <= n, f"probs={shown}, p={p}: you kept {int(keep.sum())} tokens "
               f"but the {n} most probable ones already hold >= p: stop at the first crossing.")
    return "smallest set with mass >= p, on sorted and unsorted inputs."


# ---------------------------------------------------------------------------------------------
# Exercise: induction scores
# ---------------------------------------------------------------------------------------------


def _attention_cases() -> list[tuple[torch.Tensor, int]]:
    """Causal attention maps ``(H, 2L, 2L)`` with known heads planted among random ones."""
    g = torch.Generator().manual_seed(2)
    cases = []
    for H, L in ((3, 5), (4, 8)):
        T = 2 * L
        scores = torch.randn(H, T, T, generator=g)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        w = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        rows = torch.arange(L, T)
        induction = torch.zeros(T, T)
        induction[:, 0] = 1.0
        induction[rows, rows - L + 1] = 1.0
        induction[rows, 0] = 0.0
        w[0] = 0.8 * induction + 0.2 * w[0]                       # a strong induction head
        prev = torch.zeros(T, T)
        prev[0, 0] = 1.0
        prev[torch.arange(1, T), torch.arange(0, T - 1)] = 1.0
        w[1] = 0.9 * prev + 0.1 * w[1]                            # a previous-token head
        cases.append((w, L))
    return cases


def _induction_reference(w: torch.Tensor, L: int) -> torch.Tensor:
    i = torch.arange(L, 2 * L)
    return w[:, i, i - L + 1].mean(dim=-1)  # (H,)


@checker("induction scores", hint="for each query i in the second copy (i = L .. 2L-1), read "
         "the weight on key i - L + 1, the token AFTER the earlier occurrence of token i; "
         "average over those i, one number per head")
def induction_scores(fn: Callable[[torch.Tensor, int], Any]) -> str:
    for w, L in _attention_cases():
        H = w.shape[0]
        got = fn(w.clone(), L)
        expect(isinstance(got, torch.Tensor), f"return a tensor of H scores, got {type(got).__name__}")
        expect(tuple(got.shape) == (H,), f"weights of shape {tuple(w.shape)} (H={H}) should give "
               f"{H} scores, one per head; you returned shape {tuple(got.shape)}. Average over "
               f"the queries only.")
        want = _induction_reference(w, L)
        if torch.allclose(got.double(), want.double(), atol=1e-6):
            continue
        i = torch.arange(L, 2 * L)
        if torch.allclose(got.double(), w[:, i, i - L].mean(-1).double(), atol=1e-6):
            expect(False, "you read key i - L, the earlier occurrence of the same token (a "
                          "'duplicate-token' head). An induction head looks one step further: "
                          "key i - L + 1, what came NEXT last time.")
        j = torch.arange(1, 2 * L)
        if torch.allclose(got.double(), w[:, j, j - 1].mean(-1).double(), atol=1e-6):
            expect(False, "you measured attention to the previous token (i - 1): that is the "
                          "previous-token score. Induction: key i - L + 1 for i in the second copy.")
        expect(False, f"scores {[round(x, 3) for x in got.tolist()]}, expected "
                      f"{[round(x, 3) for x in want.tolist()]} (the planted induction head is "
                      f"head 0). Average over the queries of the second copy only, "
                      f"i = L .. 2L-1, reading key i - L + 1.")
    return "head 0 (planted induction head) scores high and your numbers match."


# ---------------------------------------------------------------------------------------------
# Exercise: GPT-2's c_attn as three nn.Linear
# ---------------------------------------------------------------------------------------------


@checker("c_attn split", hint="Conv1D computes x @ W + b with W of shape (E, 3E); the columns "
         "0:E give q, E:2E k, 2E:3E v; nn.Linear stores (out, in), so transpose each block")
def split_c_attn(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> str:
    for E in (4, 6):
        g = torch.Generator().manual_seed(E)
        W = torch.randn(E, 3 * E, generator=g)
        b = torch.randn(3 * E, generator=g)
        x = torch.randn(5, E, generator=g)
        out = fn(W.clone(), b.clone())
        expect(isinstance(out, (tuple, list)) and len(out) == 3,
               f"return three (weight, bias) pairs for q, k, v, got {type(out).__name__}"
               f"{' of length ' + str(len(out)) if hasattr(out, '__len__') else ''}")
        qkv = (x @ W + b).split(E, dim=-1)  # what GPT-2 computes
        for name, pair, want in zip("qkv", out, qkv):
            expect(isinstance(pair, (tuple, list)) and len(pair) == 2,
                   f"{name}: expected a (weight, bias) pair, got {type(pair).__name__}")
            Wn, bn = pair
            expect(tuple(Wn.shape) == (E, E) and tuple(bn.shape) == (E,),
                   f"{name}: weight {tuple(Wn.shape)} and bias {tuple(bn.shape)}, expected "
                   f"({E}, {E}) and ({E},) for E={E}: cut the 3E COLUMNS of W (dim 1) in three")
            got = torch.nn.functional.linear(x, Wn, bn)
            if torch.allclose(got, want, atol=1e-5):
                continue
            if torch.allclose(torch.nn.functional.linear(x, Wn.T, bn), want, atol=1e-5):
                expect(False, f"{name}: right block, but nn.Linear computes x @ weight.T: "
                              f"Conv1D stores (in, out), nn.Linear (out, in). Transpose it.")
            others = [k for k, o in zip("qkv", qkv) if torch.allclose(got, o, atol=1e-5)]
            expect(not others, f"{name}: your weights compute {others[0] if others else ''}: "
                               f"the order in c_attn is q, k, v")
            expect(False, f"{name}: nn.functional.linear(x, weight, bias) differs from GPT-2's "
                          f"(x @ W + b)[:, {'qkv'.index(name)}E:{'qkv'.index(name) + 1}E]")
    return "q, k and v reproduce GPT-2's Conv1D exactly."
