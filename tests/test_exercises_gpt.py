"""The checkers of book/gpt.ipynb's exercises (attnbook.exercises.gpt): the notebook's own
reference solutions (read from its `solution` cells) pass, the shipped stubs are "not attempted",
and typical wrong answers are caught with a message that names the slip."""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import pytest
import torch
from exercise_support import run_tagged

from attnbook.exercises import gpt as check

NOTEBOOK = Path(__file__).resolve().parents[1] / "book" / "gpt.ipynb"



@pytest.fixture(scope="module")
def solutions() -> dict:
    return run_tagged("gpt", "solution")


@pytest.fixture(scope="module")
def stubs() -> dict:
    return run_tagged("gpt", "answer")


def test_the_notebook_follows_the_exercise_convention():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    exercises = [i for i, t in enumerate(tags) if "exercise" in t]
    assert len(exercises) >= 3
    for i in exercises:
        assert nb.cells[i].source.startswith("### Exercise")
        assert "answer" in tags[i + 1] and "check" in tags[i + 2]
        assert "solution" in tags[i + 3] and "hide-cell" in tags[i + 3]
        assert "_solution" in nb.cells[i + 3].source and "assert check." in nb.cells[i + 3].source


@pytest.mark.parametrize(
    "name", ["trigram_cross_entropy", "nucleus", "induction_scores", "split_c_attn"]
)
def test_reference_passes_and_stub_is_not_attempted(solutions, stubs, name):
    verdict = getattr(check, name)(solutions[f"{name}_solution"])
    assert verdict.passed, str(verdict)
    todo = getattr(check, name)(stubs[name])
    assert todo.status == "not attempted" and "Hint" in str(todo)
    assert getattr(check, name)(None).status == "not attempted"


def _trigram_table(train, V, smooth=1.0, contexts_from_all_pairs=False):
    codes = (train[:-2] * V + train[1:-1]) * V + train[2:]
    counts = torch.bincount(codes, minlength=V**3).view(V * V, V).double()
    if contexts_from_all_pairs:
        ctx = torch.bincount(train[:-1] * V + train[1:], minlength=V * V).double()[:, None]
    else:
        ctx = counts.sum(dim=1, keepdim=True)
    return (counts + smooth) / (ctx + smooth * V)


def test_trigram_wrong_answers_are_named(solutions):
    ref = solutions["trigram_cross_entropy_solution"]

    def unsmoothed(train, val, V):
        p = _trigram_table(train, V, smooth=0.0)
        return float(-p[val[:-2] * V + val[1:-1], val[2:]].log().mean())

    def in_bits(train, val, V):
        return ref(train, val, V) / math.log(2)

    def bigram(train, val, V):
        counts = torch.bincount(train[:-1] * V + train[1:], minlength=V * V).view(V, V).double()
        p = (counts + 1) / (counts.sum(dim=1, keepdim=True) + V)
        return float(-p[val[1:-1], val[2:]].log().mean())

    def all_pairs(train, val, V):
        p = _trigram_table(train, V, contexts_from_all_pairs=True)
        return float(-p[val[:-2] * V + val[1:-1], val[2:]].log().mean())

    expected = {unsmoothed: "smoothing", in_bits: "bits", bigram: "TWO previous",
                all_pairs: "START a training triple"}
    for wrong, phrase in expected.items():
        verdict = check.trigram_cross_entropy(wrong)
        assert verdict.status == "wrong" and phrase in verdict.message, (wrong.__name__, verdict)
    crashed = check.trigram_cross_entropy(lambda train, val, V: train.nope())
    assert crashed.status == "wrong" and "AttributeError" in crashed.message


def test_nucleus_wrong_answers_are_named():
    def inclusive(probs, p):  # keeps tokens while the mass INCLUDING them is <= p
        s, order = probs.sort(descending=True)
        keep = torch.zeros(len(probs), dtype=torch.bool)
        keep[order] = s.cumsum(0) <= p
        return keep

    def unsorted(probs, p):
        return (probs.cumsum(0) - probs) < p

    def everything(probs, p):
        return probs > 0

    def wrong_shape(probs, p):
        return torch.ones(len(probs) + 1, dtype=torch.bool)

    expected = {inclusive: "kept mass", unsorted: "UNSORTED", everything: "stop at the first",
                wrong_shape: "shape"}
    for wrong, phrase in expected.items():
        verdict = check.nucleus(wrong)
        assert verdict.status == "wrong" and phrase in verdict.message, (wrong.__name__, verdict)


def test_induction_wrong_answers_are_named():
    def duplicate(weights, L):
        i = torch.arange(L, 2 * L)
        return weights[:, i, i - L].mean(-1)

    def previous(weights, L):
        j = torch.arange(1, 2 * L)
        return weights[:, j, j - 1].mean(-1)

    def pooled(weights, L):
        i = torch.arange(L, 2 * L)
        return weights[:, i, i - L + 1].mean()

    def both_copies(weights, L):
        i = torch.arange(1, 2 * L)
        return weights[:, i, (i - L + 1).clamp(min=0)].mean(-1)

    expected = {duplicate: "duplicate-token", previous: "previous-token", pooled: "one per head",
                both_copies: "second copy"}
    for wrong, phrase in expected.items():
        verdict = check.induction_scores(wrong)
        assert verdict.status == "wrong" and phrase in verdict.message, (wrong.__name__, verdict)


def test_split_c_attn_wrong_answers_are_named():
    def untransposed(weight, bias):
        E = weight.shape[0]
        return [(weight[:, j * E : (j + 1) * E], bias[j * E : (j + 1) * E]) for j in range(3)]

    def reversed_order(weight, bias):
        E = weight.shape[0]
        return [(weight[:, j * E : (j + 1) * E].T, bias[j * E : (j + 1) * E]) for j in (2, 1, 0)]

    def rows(weight, bias):
        return [(w, b) for w, b in zip(weight.chunk(3, dim=0), bias.chunk(3))] + [None]

    def by_rows_of_the_transpose(weight, bias):
        E = weight.shape[0]
        return [(weight.T[:, j * E : (j + 1) * E], bias[j * E : (j + 1) * E]) for j in range(3)]

    expected = {untransposed: "Transpose", reversed_order: "order", rows: "three",
                by_rows_of_the_transpose: "COLUMNS"}
    for wrong, phrase in expected.items():
        verdict = check.split_c_attn(wrong)
        assert verdict.status == "wrong" and phrase in verdict.message, (wrong.__name__, verdict)
