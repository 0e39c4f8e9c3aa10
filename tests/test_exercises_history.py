"""The checkers of book/history.ipynb: the notebook's reference passes, typical mistakes are
caught with a message that says what is wrong."""

from __future__ import annotations

import torch
from exercise_support import reference

from attnbook.exercises import history as check
from attnbook.history import MILESTONES, select


def ibm1(pairs, f_words, e_words, iterations=15, over_english=False, extra=0):
    """A loop version of IBM Model 1 with two optional slips."""
    fi = {w: i for i, w in enumerate(sorted({w for f, _ in pairs for w in f}))}
    ei = {w: i for i, w in enumerate(sorted({w for _, e in pairs for w in e}))}
    t = torch.full((len(fi), len(ei)), 1.0 / len(fi), dtype=torch.float64)
    for _ in range(iterations + extra):
        counts = torch.zeros_like(t)
        for f, e in pairs:
            probs = t[[fi[w] for w in f]][:, [ei[w] for w in e]]
            post = probs / probs.sum(-1, keepdim=True)
            for j, fw in enumerate(f):
                for i, ew in enumerate(e):
                    counts[fi[fw], ei[ew]] += post[j, i]
        t = counts / (counts.sum(1, keepdim=True) if over_english else counts.sum(0, keepdim=True))
    probs = t[[fi[w] for w in f_words]][:, [ei[w] for w in e_words]]
    return probs / probs.sum(-1, keepdim=True)


def test_ibm_model1():
    assert check.ibm_model1(reference("history", "ibm_model1"))
    assert check.ibm_model1(ibm1)
    english = check.ibm_model1(lambda *a: ibm1(*a, over_english=True))
    assert not english and "normalise each English word's counts over the French words" in english.message
    one_more = check.ibm_model1(lambda *a: ibm1(*a, extra=1))
    assert not one_more and "iterations instead of" in one_more.message
    unnormalised = check.ibm_model1(lambda *a: ibm1(*a) * 2)
    assert not unnormalised and "rows of your posterior sum to" in unnormalised.message
    no_null = check.ibm_model1(lambda p, f, e, it=15: ibm1(p, f, e, it)[:, 1:])
    assert not no_null and "NULL included" in no_null.message


def first_failure(accuracy, threshold=0.9):
    n = 1
    while accuracy(n) >= threshold:
        n += 1
    return n


def strict(accuracy, threshold=0.9):
    n = 0
    while accuracy(n + 1) > threshold:
        n += 1
    return n


def last_passing(accuracy, threshold=0.9):
    return max((n for n in range(1, 50) if accuracy(n) >= threshold), default=0)


def test_longest_readable():
    assert check.longest_readable(reference("history", "longest_readable"))
    off_by_one = check.longest_readable(first_failure)
    assert not off_by_one and "first length that FAILS" in off_by_one.message
    greater = check.longest_readable(strict)
    assert not greater and "(>=, not >)" in greater.message
    scan = check.longest_readable(last_passing)
    assert not scan and "stop at the first drop" in scan.message


def test_band_size():
    assert check.band_size(reference("history", "band_size"))
    no_edges = check.band_size(lambda n, half: n * (2 * half + 1))
    assert not no_edges and "cut short by the ends" in no_edges.message
    no_clip = check.band_size(lambda n, half: n * (2 * half + 1) - half * (half + 1))
    assert not no_clip and "wider than the sequence" in no_clip.message
    half_width = check.band_size(lambda n, half: n * half)
    assert not half_width and "2 half + 1 keys" in half_width.message


def share(theme, since, denominator=None, start_offset=0, scale=1.0):
    recent = select(start=since + start_offset)
    count = len(select(themes=[theme], start=since + start_offset))
    total = len(recent) if denominator is None else denominator
    return scale * count / total if total else 0.0


def test_theme_share():
    assert check.theme_share(reference("history", "theme_share"))
    everything = check.theme_share(lambda t, s: share(t, s, denominator=len(MILESTONES)))
    assert not everything and "divided by all" in everything.message
    exclusive = check.theme_share(lambda t, s: share(t, s, start_offset=1))
    assert not exclusive and "leaves out the year" in exclusive.message
    percent = check.theme_share(lambda t, s: share(t, s, scale=100.0))
    assert not percent and "not a percentage" in percent.message
    count = check.theme_share(lambda t, s: len(select(themes=[t], start=s)))
    assert not count and "is the count" in count.message
