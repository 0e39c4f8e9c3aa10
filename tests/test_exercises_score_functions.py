"""The checkers of book/score_functions.ipynb: the notebook's reference passes, typical mistakes
are caught with a message that says what is wrong."""

from __future__ import annotations

import math

from exercise_support import reference

from attnbook.exercises import score_functions as check


def test_general_as_projections():
    assert check.general_as_projections(reference("score_functions", "general_as_projections"))
    swapped = check.general_as_projections(lambda q, k, A, B: (q @ B) @ (k @ A).transpose(-2, -1))
    assert not swapped and "queries with B and the keys with A" in swapped.message
    same = check.general_as_projections(lambda q, k, A, B: (q @ A) @ (k @ A).transpose(-2, -1))
    assert not same and "keys with A too" in same.message
    batch_t = check.general_as_projections(lambda q, k, A, B: (q @ A) @ (k @ B).mT * 2)
    assert not batch_t and "general_score(q, k, A @ B.T)" in batch_t.message


def test_additive_parameters():
    assert check.additive_parameters(reference("score_functions", "additive_parameters"))
    no_v = check.additive_parameters(lambda d_s, d_h, d_a: d_a * (d_s + d_h))
    assert not no_v and "left out v_a" in no_v.message
    biases = check.additive_parameters(lambda d_s, d_h, d_a: d_a * (d_s + d_h + 1) + 2 * d_a)
    assert not biases and "no bias" in biases.message
    product = check.additive_parameters(lambda d_s, d_h, d_a: d_s * d_h * d_a)
    assert not product and "do not multiply" in product.message


def test_score_scale():
    assert check.score_scale(reference("score_functions", "score_scale"))
    plain = check.score_scale(lambda sq, sk, d: 1 / math.sqrt(d))
    assert not plain and "only when both variances are 1" in plain.message
    variances = check.score_scale(lambda sq, sk, d: 1 / (sq**2 * sk**2 * math.sqrt(d)))
    assert not variances and "divided by the variances" in variances.message
    no_root = check.score_scale(lambda sq, sk, d: 1 / (sq * sk * d))
    assert not no_root and "not by the variance d" in no_root.message


def test_additive_weight_bound():
    assert check.additive_weight_bound(reference("score_functions", "additive_weight_bound"))
    l2 = check.additive_weight_bound(
        lambda v, S: 1 / (1 + (S - 1) * math.exp(-2 * float(v.norm()))))
    assert not l2 and "above your bound" in l2.message
    no_two = check.additive_weight_bound(
        lambda v, S: 1 / (1 + (S - 1) * math.exp(-float(v.abs().sum()))))
    assert not no_two and "above your bound" in no_two.message
    loose = check.additive_weight_bound(lambda v, S: 1.0)
    assert not loose and "not tight" in loose.message
