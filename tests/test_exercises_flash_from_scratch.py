"""The checkers of book/flash_from_scratch.ipynb: the notebook's reference solutions pass, stubs
are "not attempted", and typical mistakes are caught with a message that says what is wrong."""

from __future__ import annotations

import math

import pytest
import torch
from exercise_support import solution_cells

from attnbook.exercises import flash_from_scratch as check


@pytest.fixture(scope="module")
def solutions() -> dict:
    return solution_cells("flash_from_scratch", 3)


def stub(*args):
    raise NotImplementedError("not yet")


def test_merge_partials(solutions):
    assert check.merge_partials(solutions["merge_partials_solution"])
    assert check.merge_partials(stub).status == "not attempted"

    def no_rescale(a, b):
        return torch.maximum(a[0], b[0]), a[1] + b[1], a[2] + b[2]

    wrong = check.merge_partials(no_rescale)
    assert not wrong and "without rescaling" in wrong.message

    def nan_on_empty(a, b):
        m = torch.maximum(a[0], b[0])
        alpha, beta = torch.exp(a[0] - m), torch.exp(b[0] - m)
        return m, alpha * a[1] + beta * b[1], alpha[:, None] * a[2] + beta[:, None] * b[2]

    nan = check.merge_partials(nan_on_empty)
    assert not nan and "NaN" in nan.message

    def sums_only(a, b):
        m = torch.maximum(a[0], b[0])
        safe = m.masked_fill(m == -math.inf, 0.0)
        alpha, beta = torch.exp(a[0] - safe), torch.exp(b[0] - safe)
        return m, alpha * a[1] + beta * b[1], a[2] + b[2]

    outputs = check.merge_partials(sums_only)
    assert not outputs and "same rescaling" in outputs.message
    pair = check.merge_partials(lambda a, b: (a[0], a[1]))
    assert not pair and "three tensors" in pair.message


def test_causal_tiles(solutions):
    assert check.causal_tiles(solutions["causal_tiles_solution"])
    assert check.causal_tiles(stub).status == "not attempted"
    every = check.causal_tiles(lambda T, S, bq, bk: math.ceil(T / bq) * math.ceil(S / bk))
    assert not every and "every tile" in every.message

    def top_left(T, S, bq, bk):
        return sum(1 for i0 in range(0, T, bq) for j0 in range(0, S, bk)
                   if j0 <= min(i0 + bq, T) - 1)

    tl = check.causal_tiles(top_left)
    assert not tl and "bottom-right" in tl.message
    triangle = check.causal_tiles(lambda T, S, bq, bk: (T // bq) * (T // bq + 1) // 2)
    assert not triangle and "N(N + 1)/2" in triangle.message
    fraction = check.causal_tiles(lambda T, S, bq, bk: 2.5)
    assert not fraction and "integer" in fraction.message


def test_attention_backward(solutions):
    assert check.attention_backward(solutions["attention_backward_solution"])
    assert check.attention_backward(stub).status == "not attempted"

    def parts(q, k, v, dO, scale):
        P = torch.softmax(scale * q @ k.transpose(-2, -1), dim=-1)
        return P, P @ v, P.transpose(-2, -1) @ dO, dO @ v.transpose(-2, -1)

    def no_correction(q, k, v, dO, scale):
        P, out, dv, dP = parts(q, k, v, dO, scale)
        dS = P * dP
        return scale * dS @ k, scale * dS.transpose(-2, -1) @ q, dv

    wrong = check.attention_backward(no_correction)
    assert not wrong and "rowsum(dO ∘ O)" in wrong.message

    def no_scale(q, k, v, dO, scale):
        P, out, dv, dP = parts(q, k, v, dO, scale)
        dS = P * (dP - (dO * out).sum(-1, keepdim=True))
        return dS @ k, dS.transpose(-2, -1) @ q, dv

    unscaled = check.attention_backward(no_scale)
    assert not unscaled and "factor scale" in unscaled.message

    def transposed(q, k, v, dO, scale):
        P, out, dv, dP = parts(q, k, v, dO, scale)
        return q, k, dO.transpose(-2, -1) @ P  # dv with the factors swapped

    shapes = check.attention_backward(transposed)
    assert not shapes and "shape" in shapes.message

    def unnormalised_dv(q, k, v, dO, scale):
        S = scale * q @ k.transpose(-2, -1)
        return q, k, torch.exp(S).transpose(-2, -1) @ dO

    dv_wrong = check.attention_backward(unnormalised_dv)
    assert not dv_wrong and "dv is wrong" in dv_wrong.message
