"""The checkers of book/positions.ipynb: the notebook's reference passes, typical mistakes are
caught with a message that says what is wrong."""

from __future__ import annotations

import math

import torch
from exercise_support import reference

from attnbook.exercises import positions as check


def similarity(ks, d, step=2, fn=torch.cos, factor=1.0):
    omega = 10000.0 ** (-torch.arange(0, d, step, dtype=torch.float64) / d)
    return factor * fn(ks.double()[:, None] * omega).sum(-1)


def test_sinusoidal_similarity():
    assert check.sinusoidal_similarity(reference("positions", "sinusoidal_similarity"))
    every_dim = check.sinusoidal_similarity(lambda ks, d: similarity(ks, d, step=1))
    assert not every_dim and "for every dimension j" in every_dim.message
    double = check.sinusoidal_similarity(lambda ks, d: similarity(ks, d, factor=2.0))
    assert not double and "twice" in double.message
    sines = check.sinusoidal_similarity(lambda ks, d: similarity(ks, d, fn=torch.sin))
    assert not sines and "sum of cosines" in sines.message


def short(D, base, L, offset=1, two=2):
    return [i for i in range(D // 2)
            if (L - offset) * base ** (-two * i / D) < 2 * math.pi]


def test_rope_turns():
    assert check.rope_turns(reference("positions", "rope_turns"))
    full_length = check.rope_turns(lambda D, b, L: short(D, b, L, offset=0))
    assert not full_length and "up to 31, not 32" in full_length.message
    no_two = check.rope_turns(lambda D, b, L: short(D, b, L, two=1))
    assert not no_two and "(2i, not i)" in no_two.message


def test_alibi_window():
    assert check.alibi_window(reference("positions", "alibi_window"))
    floor = check.alibi_window(lambda m, share=0.9: math.floor(math.log(1 / (1 - share)) / m))
    assert not floor and "round up, not down" in floor.message
    log10 = check.alibi_window(lambda m, share=0.9: math.ceil(math.log10(1 / (1 - share)) / m))
    assert not log10 and "natural logarithm" in log10.message


def test_learned_rows():
    assert check.learned_rows(reference("positions", "learned_rows"))
    columns = check.learned_rows(lambda t, i: (t - i).norm(dim=0))
    assert not columns and "one number per position" in columns.message
    trained_only = check.learned_rows(lambda t, i: t.norm(dim=1))
    assert not trained_only and "trained - initial" in trained_only.message
    squared = check.learned_rows(lambda t, i: ((t - i) ** 2).sum(1))
    assert not squared and "squared norms" in squared.message
