"""The checkers of book/reading_attention.ipynb's exercises
(attnbook.exercises.reading_attention): the notebook's own reference solutions pass, the shipped
stubs are "not attempted", and typical wrong answers are caught with a message naming the slip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from exercise_support import run_tagged
from scipy.stats import kendalltau

from attnbook.exercises import reading_attention as check

NOTEBOOK = Path(__file__).resolve().parents[1] / "book" / "reading_attention.ipynb"
NAMES = ["kendall_tau", "uniform_weights", "grad_times_input"]




@pytest.mark.parametrize("name", NAMES)
def test_reference_passes_and_stub_is_not_attempted(name):
    solutions, stubs = run_tagged("reading_attention", "solution"), run_tagged("reading_attention", "answer")
    verdict = getattr(check, name)(solutions[f"{name}_solution"])
    assert verdict.passed, str(verdict)
    todo = getattr(check, name)(stubs[name])
    assert todo.status == "not attempted" and "Hint" in str(todo)
    assert getattr(check, name)(None).status == "not attempted"


def test_independent_answers_pass():
    from attnbook.interpret import counterfactual_weights, gradient_importance

    assert check.kendall_tau(lambda a, b: kendalltau(a.numpy(), b.numpy())[0])
    assert check.uniform_weights(lambda m: counterfactual_weights(m.double(), m, "uniform"))

    def by_package(f, x):
        x = x.detach().requires_grad_()
        return gradient_importance(f(x), x)

    assert check.grad_times_input(by_package)


def _wrong(verdict, *words):
    assert verdict.status == "wrong", str(verdict)
    for word in words:
        assert word in verdict.message, verdict.message


def _pairs(a, b):
    n = len(a)
    return [(i, j) for i in range(n) for j in range(n) if i != j], n


def test_kendall_tau_wrong_answers():
    def ordered_pairs(a, b):  # every pair twice, divided once
        pairs, n = _pairs(a, b)
        s = sum(float(torch.sign(a[i] - a[j]) * torch.sign(b[i] - b[j])) for i, j in pairs)
        return s / (n * (n - 1) / 2)

    def pearson(a, b):
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / (a.norm() * b.norm()))

    def spearman(a, b):
        return pearson(a.argsort().argsort().double(), b.argsort().argsort().double())

    _wrong(check.kendall_tau(ordered_pairs), "twice")
    _wrong(check.kendall_tau(pearson), "Pearson")
    _wrong(check.kendall_tau(spearman), "Spearman")
    _wrong(check.kendall_tau(lambda a, b: "high"), "number")


def test_uniform_weights_wrong_answers():
    _wrong(check.uniform_weights(lambda m: torch.full(m.shape, 1.0 / m.shape[-1])), "padding included")
    _wrong(check.uniform_weights(lambda m: m.float() / m.float().sum(-1, keepdim=True)), "NaN")
    _wrong(check.uniform_weights(lambda m: m.float()[..., :-1]), "shape")


def _grad(f, x):
    x = x.detach().requires_grad_()
    (g,) = torch.autograd.grad(f(x).sum(), x)
    return g, x.detach()


def test_grad_times_input_wrong_answers():
    def gradient_only(f, x):
        g, _ = _grad(f, x)
        return g.norm(dim=-1)

    def dot_product(f, x):
        g, x = _grad(f, x)
        return (g * x).sum(-1)

    def no_norm(f, x):
        g, x = _grad(f, x)
        return g * x

    _wrong(check.grad_times_input(gradient_only), "gradient alone")
    _wrong(check.grad_times_input(dot_product), "dot product")
    _wrong(check.grad_times_input(no_norm), "shape")
