"""The checkers of book/pros_and_cons.ipynb's exercises (attnbook.exercises.pros_and_cons): the
notebook's reference solutions pass, the shipped stubs are "not attempted", and typical wrong
answers are caught with a message that names the slip."""

from __future__ import annotations

from pathlib import Path

import pytest
from exercise_support import run_tagged

from attnbook import results
from attnbook.exercises import pros_and_cons as check

NOTEBOOK = Path(__file__).resolve().parents[1] / "book" / "pros_and_cons.ipynb"
NAMES = ["extrapolate", "overall_speedup", "attention_flop_share"]


def _run(tag: str) -> dict:
    # the solutions go on to use the chapter's recorded values, v
    return run_tagged("pros_and_cons", tag, v={k: r.value for k, r in results.load().items()})


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes_and_stub_is_not_attempted(name):
    solutions, stubs = _run("solution"), _run("answer")
    verdict = getattr(check, name)(solutions[f"{name}_solution"])
    assert verdict.passed, str(verdict)
    todo = getattr(check, name)(stubs[name])
    assert todo.status == "not attempted" and "Hint" in str(todo)


def _wrong(verdict, *words):
    assert verdict.status == "wrong", str(verdict)
    for word in words:
        assert word in verdict.message, verdict.message


def test_extrapolate_wrong_answers():
    _wrong(check.extrapolate(lambda c, s, n0, n1: c * (n0 / n1) ** s), "upside down")
    _wrong(check.extrapolate(lambda c, s, n0, n1: c * s * n1 / n0), "exponent")
    _wrong(check.extrapolate(lambda c, s, n0, n1: c + s), "expected")
    _wrong(check.extrapolate(lambda c, s, n0, n1: "fast"), "must be a number")


def test_overall_speedup_wrong_answers():
    _wrong(check.overall_speedup(lambda p, s: (1 - p) + p / s), "inverse")
    _wrong(check.overall_speedup(lambda p, s: 1 + p * (s - 1)), "do not add")
    _wrong(check.overall_speedup(lambda p, s: s), "expected")


def test_attention_flop_share_wrong_answers():
    _wrong(check.attention_flop_share(lambda n, d: n / (n + 12 * d)), "PV")
    _wrong(check.attention_flop_share(lambda n, d: n / (n + 2 * d)), "feed-forward")
    _wrong(check.attention_flop_share(lambda n, d: 6 * d / (n + 6 * d)), "other")
    _wrong(check.attention_flop_share(lambda n, d: 0.5), "expected")
