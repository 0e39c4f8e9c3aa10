"""The checkers of book/bottleneck.ipynb: the notebook's reference passes, typical mistakes are
caught with a message that says what is wrong."""

from __future__ import annotations

import math

from exercise_support import reference

from attnbook.exercises import bottleneck as check


def test_bits_per_number():
    assert check.bits_per_number(reference("bottleneck", "bits_per_number"))
    nats = check.bits_per_number(lambda n, d, alphabet=26: n * math.log(alphabet) / d)
    assert not nats and "in nats" in nats.message
    decimal = check.bits_per_number(lambda n, d, alphabet=26: n * math.log10(alphabet) / d)
    assert not decimal and "log10" in decimal.message
    whole = check.bits_per_number(lambda n, d, alphabet=26: n * math.log2(alphabet))
    assert not whole and "divide it over the" in whole.message
    one_letter = check.bits_per_number(lambda n, d, alphabet=26: math.log2(alphabet) / d)
    assert not one_letter and "one letter's share" in one_letter.message
    counts = check.bits_per_number(lambda n, d, alphabet=26: n * alphabet / d)
    assert not counts and "not 26" in counts.message
    fixed = check.bits_per_number(lambda n, d, alphabet=26: n * math.log2(26) / d)
    assert not fixed and "alphabet=2" in fixed.message
    stub = check.bits_per_number(lambda n, d, alphabet=26: (_ for _ in ()).throw(NotImplementedError))
    assert not stub and "log2(A)" in stub.message


def zipped_only(prediction, target):
    for j, (p, t) in enumerate(zip(prediction, target)):
        if p != t:
            return j
    return None


def one_based(prediction, target):
    j = reference("bottleneck", "first_error")(prediction, target)
    return None if j is None else j + 1


def test_first_error():
    assert check.first_error(reference("bottleneck", "first_error"))
    lengths = check.first_error(zipped_only)
    assert not lengths and "differ in length" in lengths.message
    counted = check.first_error(one_based)
    assert not counted and "count positions from 0" in counted.message
    minus_one = check.first_error(lambda p, t: -1 if p == t else zipped_only(p, t) or 0)
    assert not minus_one and "expected None" in minus_one.message
    crash = check.first_error(lambda p, t: next(j for j in range(len(t)) if p[j] != t[j]))
    assert not crash and "your code raised" in crash.message
