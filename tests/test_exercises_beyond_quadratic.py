"""The checkers of the "Beyond quadratic" exercises: the notebook's reference solutions pass,
typical wrong answers are caught with a message that names the slip, stubs are "not attempted"."""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from attnbook.exercises import beyond_quadratic as check

NOTEBOOK = Path(__file__).resolve().parents[1] / "book" / "beyond_quadratic.ipynb"


def _solutions() -> dict:
    """Execute every ``solution`` cell of the chapter (each is self-contained) in one namespace."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    namespace: dict = {}
    cells = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(cells) >= 4
    for cell in cells:
        exec(compile(cell.source, f"{NOTEBOOK.name}:solution", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def solutions() -> dict:
    return _solutions()


def _wrong(feedback, *phrases):
    assert feedback.status == "wrong", feedback
    for phrase in phrases:
        assert phrase in feedback.message, (phrase, feedback.message)


# ---------------------------------------------------------------------------------------------
# the notebook's solutions pass; stubs are "not attempted"
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["chunked_linear_attention", "window_mask", "layers_needed",
                                  "positive_random_features"])
def test_reference_solution_passes(solutions, name):
    feedback = getattr(check, name)(solutions[f"{name}_solution"])
    assert feedback.passed, feedback


@pytest.mark.parametrize("name", ["chunked_linear_attention", "window_mask", "layers_needed",
                                  "positive_random_features"])
def test_stub_and_none_are_not_attempted(name):
    def stub(*args):
        raise NotImplementedError("hint")

    for answer in (stub, None):
        feedback = getattr(check, name)(answer)
        assert feedback.status == "not attempted" and "Hint:" in feedback.message


def test_every_checker_has_an_exercise_with_answer_check_and_solution_cells():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tags = [tuple(c.metadata.get("tags", [])) for c in nb.cells]
    for i, t in enumerate(tags):
        if t == ("answer",):
            assert tags[i - 1] == ("exercise",) and tags[i + 1] == ("check",)
            assert set(tags[i + 2]) == {"solution", "hide-cell"}
    assert sum(t == ("check",) for t in tags) == 4


# ---------------------------------------------------------------------------------------------
# Exercise 1: chunked linear attention
# ---------------------------------------------------------------------------------------------


def _phi(x):
    return F.elu(x) + 1


def _chunked(q, k, v, C, *, carry=True, diagonal=True, normalise=True, phi=_phi):
    fq, fk = phi(q), phi(k)
    S, z, rows = q.new_zeros(fq.shape[-1], v.shape[-1]), q.new_zeros(fq.shape[-1]), []
    for c0 in range(0, q.shape[0], C):
        Qc, Kc, Vc = fq[c0 : c0 + C], fk[c0 : c0 + C], v[c0 : c0 + C]
        A = (Qc @ Kc.T).tril(0 if diagonal else -1)
        num, den = Qc @ S + A @ Vc, Qc @ z + A.sum(-1)
        rows.append(num / den[:, None] if normalise else num)
        if carry:
            S, z = S + Kc.T @ Vc, z + Kc.sum(0)
    return torch.cat(rows)


def test_chunked_catches_a_forgotten_state():
    _wrong(check.chunked_linear_attention(lambda q, k, v, C: _chunked(q, k, v, C, carry=False)),
           "each chunk starts from an empty state")


def test_chunked_catches_a_strict_mask():
    _wrong(check.chunked_linear_attention(lambda q, k, v, C: _chunked(q, k, v, C, diagonal=False)),
           "does not see key t")


def test_chunked_catches_missing_normalisation_and_feature_map():
    _wrong(check.chunked_linear_attention(lambda q, k, v, C: _chunked(q, k, v, C, normalise=False)),
           "not normalised")
    _wrong(check.chunked_linear_attention(lambda q, k, v, C: _chunked(q, k, v, C, phi=lambda x: x)),
           "feature map is missing")


def test_chunked_catches_non_causal_and_wrong_shapes():
    def full(q, k, v, C):
        A = _phi(q) @ _phi(k).T
        return A @ v / A.sum(-1, keepdim=True)

    _wrong(check.chunked_linear_attention(full), "NON-causal")
    _wrong(check.chunked_linear_attention(lambda q, k, v, C: _chunked(q, k, v, C).T),
           "output shape", "one row per query")
    _wrong(check.chunked_linear_attention(lambda q, k, v, C: [0.0]), "should be a torch.Tensor")


# ---------------------------------------------------------------------------------------------
# Exercise 2: window mask
# ---------------------------------------------------------------------------------------------


def _mask(T, w, lo_extra=0, causal=True):
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    m = (j > i - w - lo_extra) & (i - j < w + lo_extra)
    return m & (j <= i) if causal else m


def test_window_mask_catches_off_by_one_and_future():
    _wrong(check.window_mask(lambda T, w: _mask(T, w, lo_extra=1)), "the window counts the query itself")
    _wrong(check.window_mask(lambda T, w: _mask(T, w, causal=False)), "lies in its future")
    _wrong(check.window_mask(lambda T, w: _mask(T, w).T), "transposed")
    _wrong(check.window_mask(lambda T, w: _mask(T, w).int()), "must be boolean")
    _wrong(check.window_mask(lambda T, w: _mask(T, w)[:, :-1]), "mask shape")


def test_window_mask_catches_a_window_one_too_short():
    def short(T, w):
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        return (j <= i) & (j > i - w + 1)

    _wrong(check.window_mask(short), "off-by-one at the far end")


# ---------------------------------------------------------------------------------------------
# Exercise 3: layers needed
# ---------------------------------------------------------------------------------------------


def test_layers_needed_catches_the_usual_formulas():
    _wrong(check.layers_needed(lambda n, w: math.ceil(n / w)), "ceil(n / window)")
    _wrong(check.layers_needed(lambda n, w: (n - 1) // (w - 1)), "rounded down")
    _wrong(check.layers_needed(lambda n, w: float(math.ceil((n - 1) / (w - 1)))), "return an int")
    _wrong(check.layers_needed(lambda n, w: 3), "the answer is")


# ---------------------------------------------------------------------------------------------
# Exercise 4: positive random features
# ---------------------------------------------------------------------------------------------


def test_random_features_catch_each_missing_piece():
    def make(scale=True, square=True, sqrt_m=True, trig=False):
        def features(x, omega):
            m, D = omega.shape
            xs = x * D**-0.25 if scale else x
            proj = xs @ omega.T
            if trig:
                return torch.cos(proj) / math.sqrt(m)
            expo = proj - 0.5 * (xs * xs).sum(-1, keepdim=True) if square else proj
            return torch.exp(expo) / (math.sqrt(m) if sqrt_m else 1.0)

        return features

    assert check.positive_random_features(make())
    _wrong(check.positive_random_features(make(sqrt_m=False)), "√m times too large")
    _wrong(check.positive_random_features(make(square=False)), "-|x'|²/2 is missing")
    _wrong(check.positive_random_features(make(scale=False)), "not scaled by D^(-1/4)")
    _wrong(check.positive_random_features(make(trig=True)), "negative or zero")
    _wrong(check.positive_random_features(lambda x, omega: make()(x, omega)[..., :-1]),
           "one feature per row of omega")
