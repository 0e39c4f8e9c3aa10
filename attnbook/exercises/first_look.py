"""Checkers for the exercises of "A first look at attention" (book/first_look.ipynb)."""

from __future__ import annotations

import math

import torch

from attnbook.exercises import Wrong, checker, expect
from attnbook.exercises._common import as_number, as_tensor, expect_close, expect_shape

FEATURES = ("animate", "inanimate", "verb/adj", "function")
# The chapter's sentence and hand-made features, and a second sentence of the checker's own.
TABLE = {
    "the": [0, 0, 0, 1], "cat": [1, 0, 0, 0], "sat": [0, 0, 1, 0], "on": [0, 0, 0, 1],
    "mat": [0, 1, 0, 0], "because": [0, 0, 0, 1], "it": [0.3, 0.3, 0, 0.2],
    "was": [0, 0, 1, 0.5], "tired": [0, 0, 1, 0],
    "dog": [1, 0, 0, 0], "chased": [0, 0, 1, 0], "ball": [0, 1, 0, 0], "round": [0, 0, 1, 0],
}
SENTENCES = (
    ("the cat sat on the mat because it was tired", "mat"),
    ("the dog chased the ball because it was round", "ball"),
)


def keys(sentence: str) -> torch.Tensor:
    """The keys (= features) of a sentence, (T, 4) float64."""
    return torch.tensor([TABLE[w] for w in sentence.split()], dtype=torch.float64)


def weights_of(query: torch.Tensor, sentence: str) -> torch.Tensor:
    """softmax(q K^T / sqrt(d_k)) for one query, (T,)."""
    K = keys(sentence)
    return torch.softmax(K @ query / math.sqrt(K.shape[1]), dim=0)


@checker("a query for inanimate nouns",
         hint="the query is what 'it' looks for: put a large number on the 'inanimate' feature")
def inanimate_query(query) -> str:
    q = as_tensor(query, "your query").detach().cpu().double()
    expect_shape(q, (4,), "your query", f"one number per feature {FEATURES}")
    expect(bool(torch.isfinite(q).all()), f"your query {q.tolist()} contains NaN or inf")
    report = []
    for sentence, noun in SENTENCES:
        words = sentence.split()
        w = weights_of(q, sentence)
        top = words[int(w.argmax())]
        expect(not torch.allclose(w, w.mean().expand_as(w), atol=1e-3),
               "your query gives every word the same weight: it asks for no feature at all")
        if top != noun:
            why = ("your query still asks for the animate feature (the first number)"
                   if top in ("cat", "dog") else
                   f"'{top}' matches your query best; ask for the inanimate feature, the second number")
            raise Wrong(f"in '{sentence}', 'it' looks most at '{top}' (weight {w.max():.2f}), "
                        f"not at '{noun}': {why}")
        second = int(w.topk(2).indices[1])
        expect(w.max() >= 2 * w[second],
               f"in '{sentence}', '{noun}' gets the most weight, {w.max():.2f}, but not even "
               f"twice what '{words[second]}' gets ({w[second]:.2f}): make the inanimate number "
               "larger, so that 'it' clearly prefers the inanimate noun")
        report.append(f"'{noun}' gets {w.max():.0%} in '{sentence}'")
    return "; ".join(report) + "."


def _scores_of_it() -> torch.Tensor:
    """The chapter's scores of 'it' (query asks for 'animate' with 8.0), divided by sqrt(d_k)."""
    q = torch.tensor([8.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    return keys(SENTENCES[0][0]) @ q / 2.0


def _largest(e: torch.Tensor, target: int, taus: torch.Tensor, level: float) -> float | None:
    ok = [float(t) for t in taus if torch.softmax(e.double() / float(t), 0)[target] >= level]
    return max(ok) if ok else None


@checker("the largest temperature with 99% on one key",
         hint="for every candidate tau compute softmax(e / tau)[target]; keep the largest tau "
              "that reaches the level")
def largest_temperature(fn) -> str:
    g = torch.Generator().manual_seed(0)
    e_it = _scores_of_it()
    shuffled = torch.logspace(1, -2, 61, dtype=torch.float64)[torch.randperm(61, generator=g)]
    e_rand = torch.randn(7, generator=g, dtype=torch.float64) * 4
    best = int(e_rand.argmax())
    worst = int(e_rand.argmin())
    cases = [
        ("the chapter's row of 'it', target 'cat', a sorted grid",
         e_it, 1, torch.logspace(1, -2, 301, dtype=torch.float64), 0.99),
        ("random scores, an unsorted grid", e_rand, best, shuffled, 0.99),
        ("random float32 scores, an unsorted grid, level 0.9", e_rand.float(), best, shuffled.float(), 0.9),
        ("a target that does not have the highest score", e_rand, worst, shuffled, 0.99),
    ]
    for name, e, target, taus, level in cases:
        want = _largest(e, target, taus, level)
        got = fn(e.clone(), target, taus.clone(), level)
        if want is None:
            expect(got is None,
                   f"{name}: no tau can put {level:.0%} on key {target}, whose score is not the "
                   f"highest (a low temperature moves the weight to the best key), so return None; "
                   f"you returned {got!r}")
            continue
        expect(got is not None, f"{name}: you returned None, but tau = {want:.4g} works")
        tau = as_number(got, f"{name}: your tau")
        expect(any(math.isclose(tau, float(t), rel_tol=1e-6) for t in taus),
               f"{name}: your answer {tau:.4g} is not one of the candidate temperatures: "
               "return the tau itself, not the weight")
        reached = float(torch.softmax(e.double() / tau, 0)[target])
        expect(reached >= level,
               f"{name}: at tau = {tau:.4g}, softmax(e / tau) puts only {reached:.3f} on key "
               f"{target}, below {level}: divide the scores by tau, do not multiply")
        expect(math.isclose(tau, want, rel_tol=1e-6),
               f"{name}: tau = {tau:.4g} works, but so does the larger tau = {want:.4g}: the "
               "exercise asks for the largest" if tau < want else
               f"{name}: expected tau = {want:.4g}, got {tau:.4g}")
    tau_99 = _largest(e_it, 1, torch.logspace(1, -2, 301, dtype=torch.float64), 0.99)
    return f"on the grid, 'it' puts at least 99% on 'cat' for tau <= {tau_99:.3f}."


@checker("a softmax that never overflows",
         hint="subtract each row's maximum (e.amax(-1, keepdim=True)) before exp, then normalise")
def stable_softmax(fn) -> str:
    g = torch.Generator().manual_seed(1)
    ordinary = torch.randn(3, 5, generator=g)
    out = fn(ordinary.clone())
    expect_shape(out, (3, 5), "softmax of a (3, 5) tensor", "one weight per score")
    sums = out.double().sum(-1)
    if not torch.allclose(sums, torch.ones(3, dtype=torch.float64), atol=1e-5):
        columns = out.double().sum(0)
        expect(not torch.allclose(columns, torch.ones(5, dtype=torch.float64), atol=1e-5),
               "your columns sum to 1, not your rows: normalise over the last dimension (dim=-1)")
        raise Wrong(f"the rows sum to {[round(v, 4) for v in sums.tolist()]}, not 1: divide by "
                    "the sum of each row")
    expect_close(out, torch.softmax(ordinary, -1), "softmax of ordinary scores")
    # every row shifted by its own constant: the weights do not change (shift invariance)
    shifts = torch.tensor([[1000.0], [-1000.0], [0.5]])
    big = fn(ordinary + shifts)
    expect_close(big, torch.softmax(ordinary, -1), "softmax of scores shifted by +1000, -1000, 0.5",
                 "exp(1000) overflows float32 (and exp(-1000) underflows to 0): subtract the "
                 "row's maximum before exp, which leaves the weights unchanged")
    spread = torch.tensor([[0.0, 200.0, 100.0], [-50.0, 40.0, 39.0]])
    expect_close(fn(spread), torch.softmax(spread, -1), "softmax of [[0, 200, 100], [-50, 40, 39]]",
                 "subtract the maximum, not the mean: only then is every exponent <= 0")
    masked = torch.tensor([[0.0, float("-inf"), 1.0], [3.0, 2.0, float("-inf")]])
    expect_close(fn(masked), torch.softmax(masked, -1), "softmax of a row with a -inf (masked) score",
                 "a score of -inf must get weight exactly 0")
    one_d = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    expect_close(fn(one_d), torch.softmax(one_d, -1), "softmax of a 1-D tensor of 3 scores")
    half = (ordinary * 10).to(torch.float16)
    out16 = fn(half)
    expect(isinstance(out16, torch.Tensor) and out16.dtype == torch.float16,
           f"a float16 input came back as {getattr(out16, 'dtype', type(out16).__name__)}: keep the input's dtype")
    expect_close(out16, torch.softmax(half.float(), -1), "softmax of float16 scores up to about 30",
                 "float16 overflows above exp(11): subtract the maximum", atol=2e-3, rtol=1e-2)
    return "equal to torch.softmax, unchanged by a shift of 1000, finite in float16."
