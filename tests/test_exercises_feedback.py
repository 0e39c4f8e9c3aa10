"""The exercise-checker machinery: verdicts for correct, wrong, crashing and missing answers."""

from __future__ import annotations

import torch

from attnbook.exercises import checker, expect


@checker("row softmax", hint="exponentiate, then divide by the row sum")
def softmax_rows(fn):
    x = torch.tensor([[0.0, 1.0, 2.0]])
    out = fn(x)
    expect(tuple(out.shape) == (1, 3), f"output shape {tuple(out.shape)}, expected (1, 3)")
    expect(torch.allclose(out.sum(-1), torch.ones(1)), "rows do not sum to 1: did you normalise?")
    expect(torch.allclose(out, torch.softmax(x, -1)), "rows sum to 1 but are not softmax(x)")


def stub(x):
    raise NotImplementedError("exponentiate, then normalise")


def test_verdicts():
    assert softmax_rows(lambda x: torch.softmax(x, -1)).passed
    missing, todo = softmax_rows(None), softmax_rows(stub)
    assert missing.status == todo.status == "not attempted" and "Hint" in str(todo)
    unnormalised = softmax_rows(torch.exp)
    assert not unnormalised and "normalise" in unnormalised.message
    crashed = softmax_rows(lambda x: x.nope())
    assert crashed.status == "wrong" and "AttributeError" in crashed.message
