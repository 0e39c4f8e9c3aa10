"""The checkers of book/attention_cost.ipynb: the notebook's reference solutions pass, stubs are
"not attempted", and typical mistakes are caught with a message that says what is wrong."""

from __future__ import annotations

import math

import pytest
import torch
from exercise_support import solution_cells

from attnbook.exercises import attention_cost as check


@pytest.fixture(scope="module")
def solutions() -> dict:
    return solution_cells("attention_cost", 3)


def stub(*args):
    raise NotImplementedError("not yet")


def test_matmul_flops(solutions):
    assert check.matmul_flops(solutions["attention_matmul_flops_solution"])
    assert check.matmul_flops(stub).status == "not attempted"
    half = check.matmul_flops(lambda B, H, T, S, D, Dv: B * H * T * S * (D + Dv))
    assert not half and "two FLOPs" in half.message
    square = check.matmul_flops(lambda B, H, T, S, D, Dv: 2 * B * H * T * T * (D + Dv))
    assert not square and "T x S, not T x T" in square.message
    same_d = check.matmul_flops(lambda B, H, T, S, D, Dv: 4 * B * H * T * S * D)
    assert not same_d and "size Dv" in same_d.message
    only_qk = check.matmul_flops(lambda B, H, T, S, D, Dv: 2 * B * H * T * S * D)
    assert not only_qk and "but not P V" in only_qk.message
    text = check.matmul_flops(lambda *a: "many")
    assert not text and "expected a number" in text.message


def test_kv_cache(solutions):
    assert check.kv_cache(solutions["kv_cache_size_solution"])
    assert check.kv_cache(None).status == "not attempted"

    def size(dtype):
        return torch.empty((), dtype=dtype).element_size()

    only_k = check.kv_cache(lambda b, L, H, G, D, S, dt: L * b * G * S * D * size(dt))
    assert not only_k and "keys *and* values" in only_k.message
    all_heads = check.kv_cache(lambda b, L, H, G, D, S, dt: 2 * L * b * H * S * D * size(dt))
    assert not all_heads and "num_kv_heads shared" in all_heads.message
    numbers = check.kv_cache(lambda b, L, H, G, D, S, dt: 2 * L * b * G * S * D)
    assert not numbers and "number of numbers" in numbers.message
    one_layer = check.kv_cache(lambda b, L, H, G, D, S, dt: 2 * b * G * S * D * size(dt))
    assert not one_layer and "layers has its own cache" in one_layer.message


def test_fused_intensity(solutions):
    intensity = solutions["fused_intensity_solution"]
    length = solutions["compute_bound_length_solution"]
    assert check.fused_intensity(intensity, length)
    assert check.fused_intensity(stub, stub).status == "not attempted"
    assert check.fused_intensity(intensity, stub).status == "not attempted"
    materialised = check.fused_intensity(lambda n, d, b: 4 * n * n * d / (4 * n * n * b), length)
    assert not materialised and "never writes it" in materialised.message
    numbers = check.fused_intensity(lambda n, d, b: n, length)
    assert not numbers and "not bytes" in numbers.message
    too_short = check.fused_intensity(intensity, lambda ridge, d, b: math.floor(ridge * b) - 1)
    assert not too_short and "still below the ridge" in too_short.message
    too_long = check.fused_intensity(intensity, lambda ridge, d, b: math.ceil(ridge * b) + 5)
    assert not too_long and "smallest" in too_long.message
