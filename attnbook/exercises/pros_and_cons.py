"""Checkers for the exercises of "Pros and cons, applications, what comes next"
(book/pros_and_cons.ipynb).

* :func:`extrapolate` — carry a measured cost to another length with its log-log slope;
* :func:`overall_speedup` — the whole-program speedup when only one part gets faster (Amdahl);
* :func:`attention_flop_share` — the share of a Transformer layer's FLOPs that grows as n².

Each checker builds its own cases, compares with an independent computation and, when the
answer is wrong, names the likely slip.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from . import checker, expect

__all__ = ["extrapolate", "overall_speedup", "attention_flop_share"]


def _number(value: Any, what: str) -> float:
    expect(isinstance(value, (int, float)) and not isinstance(value, bool) or hasattr(value, "item"),
           f"{what} must be a number, got {type(value).__name__}")
    value = float(value)
    expect(math.isfinite(value), f"{what} must be finite, got {value}")
    return value


@checker("extrapolate", hint="a straight line on log-log axes is a power law: "
         "cost(n1) = cost(n0) * (n1 / n0) ** slope")
def extrapolate(fn: Callable[[float, float, int, int], Any]) -> str:
    cases = [(2.0, 2.0, 1024, 4096), (3.5, 1.0, 512, 8192), (10.0, 1.5, 4096, 1024),
             (1.0, 2.0, 1000, 1000)]
    for cost0, slope, n0, n1 in cases:
        want = cost0 * (n1 / n0) ** slope
        got = _number(fn(cost0, slope, n0, n1), f"extrapolate({cost0}, {slope}, {n0}, {n1})")
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        expect(not math.isclose(got, cost0 * (n0 / n1) ** slope, rel_tol=1e-9),
               f"extrapolate({cost0}, {slope}, {n0}, {n1}) gave {got:.4g}, the ratio upside "
               f"down: going from n0 = {n0} to n1 = {n1} multiplies the cost by (n1 / n0) ** slope")
        expect(not math.isclose(got, cost0 * slope * n1 / n0, rel_tol=1e-9),
               f"extrapolate({cost0}, {slope}, {n0}, {n1}) gave {got:.4g}: the slope is an "
               f"exponent, not a factor; a slope of 2 means 4x the cost for 2x the length")
        expect(False, f"extrapolate({cost0}, {slope}, {n0}, {n1}) gave {got:.4g}, "
               f"expected {want:.4g}")
    return "a slope of 2 turns 4x the length into 16x the cost."


@checker("overall speedup", hint="time after = (1 - share) + share / speedup, as a fraction "
         "of the time before; the overall speedup is its inverse")
def overall_speedup(fn: Callable[[float, float], Any]) -> str:
    for share, speedup in [(0.5, 2.0), (0.25, 10.0), (0.9, 4.0), (0.0, 3.0), (1.0, 5.0)]:
        want = 1 / ((1 - share) + share / speedup)
        got = _number(fn(share, speedup), f"overall_speedup({share}, {speedup})")
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        expect(not math.isclose(got, (1 - share) + share / speedup, rel_tol=1e-9),
               f"overall_speedup({share}, {speedup}) gave {got:.4g}: that is the remaining "
               f"*time* as a fraction; the speedup is its inverse")
        expect(not math.isclose(got, share * speedup, rel_tol=1e-9)
               and not math.isclose(got, 1 + share * (speedup - 1), rel_tol=1e-9),
               f"overall_speedup({share}, {speedup}) gave {got:.4g}: add up the *times* (the "
               f"untouched part plus the faster part), then invert; speedups do not add")
        expect(False, f"overall_speedup({share}, {speedup}) gave {got:.4g}, expected {want:.4g}")
    return "even an infinitely fast softmax cannot make attention faster than 1 / (1 - share)."


@checker("attention FLOP share", hint="QK^T and PV cost 2 n^2 d FLOPs each; the four d x d "
         "projections 2 n d^2 each; the FFN's two d x 4d matrices 8 n d^2 each")
def attention_flop_share(fn: Callable[[int, int], Any]) -> str:
    for n, d in [(512, 768), (4608, 768), (128, 64), (8192, 4096), (1, 1)]:
        want = n / (n + 6 * d)  # 4 n^2 d / (4 n^2 d + 24 n d^2)
        got = _number(fn(n, d), f"attention_flop_share({n}, {d})")
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        expect(not math.isclose(got, n / (n + 12 * d), rel_tol=1e-9),
               f"attention_flop_share({n}, {d}) gave {got:.4g}: you counted QK^T but not PV, "
               f"the product of the weights with the values, which costs as much")
        expect(not math.isclose(got, n / (n + 2 * d), rel_tol=1e-9),
               f"attention_flop_share({n}, {d}) gave {got:.4g}: the feed-forward block is "
               f"missing; with d_ff = 4d it costs twice as much as the four projections")
        expect(not math.isclose(got, 1 - want, rel_tol=1e-9),
               f"attention_flop_share({n}, {d}) gave {got:.4g}, the share of the *other* "
               f"FLOPs: the n^2 terms are QK^T and PV")
        expect(False, f"attention_flop_share({n}, {d}) gave {got:.4g}, expected {want:.4g}")
    return "the n^2 terms are half of the work at n = 6 d."
