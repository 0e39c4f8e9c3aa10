"""Checkers for the exercises of "The bottleneck experiment" (book/bottleneck.ipynb)."""

from __future__ import annotations

import math

from attnbook.exercises import Wrong, checker, expect
from attnbook.exercises._common import as_number, attempt


@checker("the bits a fixed vector must carry",
         hint="a string of n letters drawn uniformly from an alphabet of A letters carries "
              "n log2(A) bits; share them out over the d numbers of the vector")
def bits_per_number(fn) -> str:
    for n, d, alphabet in ((16, 128, 26), (3, 128, 26), (40, 64, 26), (10, 5, 2), (7, 3, 4)):
        want = n * math.log2(alphabet) / d
        call = f"bits_per_number({n}, {d}, alphabet={alphabet})"
        got = as_number(attempt(call, fn, n, d, alphabet=alphabet), call)
        if math.isclose(got, want, rel_tol=1e-6):
            continue
        said = f"{call} = {got:.4g}, expected {want:.4g}"
        expect(not math.isclose(got, n * math.log(alphabet) / d, rel_tol=1e-6),
               f"{said}: that is in nats (natural log); bits need log base 2")
        expect(not math.isclose(got, n * math.log10(alphabet) / d, rel_tol=1e-6),
               f"{said}: that is in decimal digits (log10); bits need log base 2")
        expect(not math.isclose(got, n * math.log2(alphabet), rel_tol=1e-6),
               f"{said}: that is the whole string's information; divide it over the {d} numbers")
        expect(not math.isclose(got, math.log2(alphabet) / d, rel_tol=1e-6),
               f"{said}: that is one letter's share; the vector must hold all {n} letters")
        expect(not math.isclose(got, n * alphabet / d, rel_tol=1e-6),
               f"{said}: a letter out of {alphabet} carries log2({alphabet}) bits, not {alphabet}")
        raise Wrong(said)
    return "16 letters need 75 bits: under 0.6 bits for each of the 128 numbers."


_CASES = [  # (prediction, target, the index of the first wrong letter or None)
    ("khoor", "khoor", None),
    ("khoro", "khoor", 3),
    ("xhoor", "khoor", 0),
    ("kho", "khoor", 3),          # stopped early: the 4th letter is missing
    ("khoorr", "khoor", 5),       # went on: a letter where the target has ended
    ("", "abc", 0),
    ("a", "a", None),
]


@checker("where the first mistake falls",
         hint="walk along both strings together; when one of them runs out first, the first "
              "mistake is at the length of the shorter one")
def first_error(fn) -> str:
    for prediction, target, want in _CASES:
        call = f"first_error({prediction!r}, {target!r})"
        got = attempt(call, fn, prediction, target)
        if want is None:
            expect(got is None, f"{call} = {got!r}, expected None: the two strings are equal")
            continue
        expect(got is not None, f"{call} = None, expected {want}: the strings differ "
               + ("in length" if len(prediction) != len(target) else "at a letter"))
        expect(isinstance(got, int) and not isinstance(got, bool),
               f"{call} should be an int (the index of the letter), got {type(got).__name__}")
        expect(got != want + 1, f"{call} = {got}, expected {want}: count positions from 0")
        expect(got == want, f"{call} = {got}, expected {want}"
               + (": a string that ends early or goes on too long is wrong where the shorter "
                  "one ends" if len(prediction) != len(target) else ""))
    return "a string is exactly right when first_error is None."
