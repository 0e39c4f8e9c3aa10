"""Checkers for the exercises of "A short history of attention" (book/history.ipynb)."""

from __future__ import annotations

import math

import torch

from attnbook.exercises import Wrong, checker, expect
from attnbook.exercises._common import as_int, as_number, as_tensor, expect_close, expect_shape

Pair = tuple[list[str], list[str]]

CORPUS = [
    ("le chat", "the cat"), ("le chien", "the dog"), ("un chat", "a cat"),
    ("un chien noir", "a black dog"), ("le chat noir", "the black cat"),
    ("le petit chien", "the small dog"),
]


def _pairs(corpus) -> list[Pair]:
    return [(f.split(), ["NULL"] + e.split()) for f, e in corpus]


def _em(pairs: list[Pair], iterations: int, over: str = "french"):
    """IBM Model 1 by EM from a uniform t(f | e), vectorised; ``over`` names the words the M step
    normalises over ("english" is the classic slip). Returns t and the two word indices."""
    f_vocab = sorted({w for f, _ in pairs for w in f})
    e_vocab = sorted({w for _, e in pairs for w in e})
    fi = {w: i for i, w in enumerate(f_vocab)}
    ei = {w: i for i, w in enumerate(e_vocab)}
    t = torch.full((len(f_vocab), len(e_vocab)), 1.0 / len(f_vocab), dtype=torch.float64)
    for _ in range(iterations):
        counts = torch.zeros_like(t)
        for f, e in pairs:
            rows = torch.tensor([fi[w] for w in f])
            cols = torch.tensor([ei[w] for w in e])
            probs = t[rows][:, cols]                                        # (m, l+1)
            post = probs / probs.sum(-1, keepdim=True)
            counts.index_put_((rows[:, None].expand_as(post), cols[None, :].expand_as(post)),
                              post, accumulate=True)
        t = counts / (counts.sum(0, keepdim=True) if over == "french" else counts.sum(1, keepdim=True))
    return t, fi, ei


def _posterior(pairs: list[Pair], f_words, e_words, iterations: int, over: str = "french"):
    t, fi, ei = _em(pairs, iterations, over)
    probs = t[[fi[w] for w in f_words]][:, [ei[w] for w in e_words]]
    return probs / probs.sum(-1, keepdim=True)


@checker("IBM Model 1 posteriors",
         hint="start from a uniform t(f | e); the E step takes the posterior of each alignment "
              "(t normalised over the English words of the pair), the M step normalises the "
              "counts over the French words")
def ibm_model1(fn) -> str:
    chapter = _pairs(CORPUS + [("un petit chat", "a small cat")])
    tiny = _pairs([("a b", "x y"), ("a", "x"), ("b c", "y z")])
    cases = [
        ("the chapter's corpus with (un petit chat, a small cat), 15 iterations",
         chapter, "un petit chat".split(), ["NULL", "a", "small", "cat"], 15),
        ("the chapter's corpus, 0 iterations", chapter, "le chien noir".split(),
         ["NULL", "the", "black", "dog"], 0),
        ("a corpus of three pairs, 4 iterations", tiny, ["b", "c"], ["NULL", "y", "z"], 4),
        ("the chapter's corpus, 1 iteration", chapter, "le petit chien".split(),
         ["NULL", "the", "small", "dog"], 1),
    ]
    for name, pairs, f_words, e_words, iterations in cases:
        got = as_tensor(fn([(list(f), list(e)) for f, e in pairs], list(f_words), list(e_words),
                           iterations), f"{name}: your posterior")
        want = _posterior(pairs, f_words, e_words, iterations)
        expect_shape(got, want.shape, f"{name}: your posterior",
                     "one row per French word, one column per English word, NULL included")
        got = got.detach().cpu().double()
        expect(torch.allclose(got.sum(-1), torch.ones(len(f_words), dtype=torch.float64), atol=1e-6),
               f"{name}: the rows of your posterior sum to {[round(v, 3) for v in got.sum(-1).tolist()]}: "
               "p(a_j = i | f, e) is a distribution over the English words i for each French word j")
        if iterations == 0:
            expect(torch.allclose(got, want, atol=1e-6),
                   f"{name}: with no EM step t(f | e) is uniform, so every English word (NULL "
                   f"included) should get 1/{len(e_words)}; got {got[0].tolist()}")
        if torch.allclose(got, want, atol=1e-6):
            continue
        slips = {
            "normalised t over the English words (rows) in the M step; normalise each English "
            "word's counts over the French words f instead (columns of t sum to 1)":
                _posterior(pairs, f_words, e_words, iterations, over="english"),
            f"ran {iterations - 1} EM iterations instead of {iterations}":
                _posterior(pairs, f_words, e_words, max(iterations - 1, 0)),
            f"ran {iterations + 1} EM iterations instead of {iterations}":
                _posterior(pairs, f_words, e_words, iterations + 1),
        }
        for slip, variant in slips.items():
            expect(not torch.allclose(got, variant, atol=1e-6), f"{name}: your posterior is what EM gives if it {slip}")
        expect_close(got, want, f"{name}: your posterior", atol=1e-6)
    post = _posterior(*cases[0][1:])
    links = {f: cases[0][3][int(post[j].argmax())] for j, f in enumerate(cases[0][2])}
    return "on the new pair, " + ", ".join(f"{f} -> {e} ({post[j].max():.0%})"
                                           for j, (f, e) in enumerate(links.items())) + "."


@checker("the longest readable sentence",
         hint="start at n = 1 and grow n while accuracy(n) >= threshold; return the last n that passed")
def longest_readable(fn) -> str:
    def step(limit: int, below: float = 0.5):
        return lambda n: 1.0 if n <= limit else below

    cases = [
        ("accuracy 1 up to n = 7, then 0.5", step(7), 0.9, 7),
        ("accuracy exactly 0.9 up to n = 5, then 0.8",
         lambda n: 0.9 if n <= 5 else 0.8, 0.9, 5),
        ("accuracy below the threshold already at n = 1", step(0, below=0.3), 0.9, 0),
        ("accuracy that drops below 0.9 at n = 4 and comes back at n = 6",
         lambda n: 0.5 if n in (4, 5) else 1.0 if n < 12 else 0.2, 0.9, 3),
        ("accuracy 0.95 up to n = 20, threshold 0.95", lambda n: 0.95 if n <= 20 else 0.94, 0.95, 20),
    ]
    for name, accuracy, threshold, want in cases:
        def counted(n, accuracy=accuracy, name=name, calls=[]):  # noqa: B006 (one list per case)
            expect(isinstance(n, int) and n >= 1,
                   f"{name}: your function asked for the accuracy at n = {n!r}; lengths start at 1")
            calls.append(n)
            expect(len(calls) <= 10_000, f"{name}: your function asked for the accuracy more "
                                         "than 10,000 times: does its loop stop?")
            return accuracy(n)

        got = as_int(fn(counted, threshold), f"{name}: your answer")
        if got == want:
            continue
        expect(got != want + 1, f"{name}: you returned {got}, the first length that FAILS; "
                                "return the last one that passes")
        expect(not (0 <= got < want and accuracy(got + 1) == threshold),
               f"{name}: you stopped at n = {got}, but accuracy({got + 1}) = {threshold} reaches "
               "the threshold: an accuracy equal to the threshold counts as readable (>=, not >)")
        expect(not (got > want and accuracy(got) >= threshold),
               f"{name}: you returned {got}, but the accuracy drops below {threshold} at n = "
               f"{want + 1} already: stop at the first drop (a sentence of {want + 1} words is "
               "not readable, even if a longer one happens to be)")
        raise Wrong(f"{name}: expected {want}, got {got}")
    return "it stops at the first length that falls below the threshold."


def _band(n: int, half: int) -> int:
    i = torch.arange(n)
    return int(((i[:, None] - i[None, :]).abs() <= half).sum())


@checker("the size of a sliding window",
         hint="count the keys of query i, min(n - 1, i + half) - max(0, i - half) + 1, and add "
              "them up; or subtract the two cut-off triangles from n (2 half + 1)")
def band_size(fn) -> str:
    pairs = [(n, half) for n in (1, 2, 5, 10, 33) for half in (0, 1, 3, 4, 9, 40)]
    cases = [p for p in pairs if p[1] < p[0]] + [(5000, 100)] + [p for p in pairs if p[1] >= p[0]]
    for n, half in cases:
        got = as_int(fn(n, half), f"band_size({n}, {half})")
        want = _band(n, half) if n <= 100 else n * (2 * half + 1) - half * (half + 1)
        if got == want:
            continue
        expect(not (got == n * (2 * half + 1) and half < n),
               f"band_size({n}, {half}) = {got} = n (2 half + 1), expected {want}: the windows of "
               f"the first and last {half} positions are cut short by the ends of the sequence")
        expect(not (half >= n and want == n * n),
               f"band_size({n}, {half}) = {got}, expected {want} = n²: when the window is wider "
               "than the sequence, every pair counts")
        expect(got != n * half, f"band_size({n}, {half}) = {got} = n · half: a window of half-width "
                                f"{half} holds 2 half + 1 keys (both sides and the query itself)")
        raise Wrong(f"band_size({n}, {half}) = {got}, but a banded mask |i - j| <= {half} has {want} True entries")
    return "equal to the number of True entries of the banded mask, edges included."


@checker("the share of a theme", hint="len(select(themes=[theme], start=since)) / len(select(start=since))")
def theme_share(fn) -> str:
    from attnbook.history import MILESTONES, THEMES

    years = sorted({m.year for m in MILESTONES})
    cases = [(theme, since) for theme in ("efficiency", "transformer", "alignment", THEMES[0])
             for since in (years[0], 2014, 2017, 2019, 2020, years[-1])]
    cases.append(("efficiency", years[-1] + 1))
    for theme, since in cases:
        recent = [m for m in MILESTONES if m.year >= since]
        want = sum(m.theme == theme for m in recent) / len(recent) if recent else 0.0
        got = as_number(fn(theme, since), f"theme_share({theme!r}, {since})")
        if math.isclose(got, want, abs_tol=1e-9):
            continue
        if not recent:
            raise Wrong(f"theme_share({theme!r}, {since}): there are no milestones from {since} on; "
                        f"return 0.0, got {got}")
        count = sum(m.theme == theme for m in recent)
        expect(not math.isclose(got, 100 * want), f"theme_share({theme!r}, {since}) = {got}: a fraction "
                                                  f"between 0 and 1, not a percentage ({want:.3f})")
        expect(got != count, f"theme_share({theme!r}, {since}) = {got} is the count; divide by the "
                             f"{len(recent)} milestones from {since} on")
        overall = sum(m.theme == theme for m in recent) / len(MILESTONES)
        expect(not math.isclose(got, overall), f"theme_share({theme!r}, {since}) = {got:.3f}: you divided by "
                                               f"all {len(MILESTONES)} milestones, not by the "
                                               f"{len(recent)} from {since} on")
        later = [m for m in MILESTONES if m.year > since]
        expect(not (later and math.isclose(got, sum(m.theme == theme for m in later) / len(later))),
               f"theme_share({theme!r}, {since}) = {got:.3f} leaves out the year {since} itself: "
               "'from since on' includes it (select's start is inclusive)")
        raise Wrong(f"theme_share({theme!r}, {since}) = {got:.3f}, expected {want:.3f}")
    eff = [m for m in MILESTONES if m.year >= 2019]
    share = sum(m.theme == "efficiency" for m in eff) / len(eff)
    return f"since 2019, {share:.0%} of the {len(eff)} milestones are about efficiency."
