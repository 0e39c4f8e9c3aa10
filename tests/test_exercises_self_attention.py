"""The checkers of book/self_attention.ipynb: the notebook's reference passes, typical mistakes
are caught with a message that says what is wrong."""

from __future__ import annotations

import torch
from exercise_support import reference

from attnbook.exercises import self_attention as check
from attnbook.functional import causal_mask, scaled_dot_product_attention


def prefixes(q, k, v, lo=lambda t, T: 0, hi=lambda t, T: t + 1):
    T = q.shape[-2]
    rows = [scaled_dot_product_attention(q[..., t:t + 1, :], k[..., lo(t, T):hi(t, T), :],
                                         v[..., lo(t, T):hi(t, T), :])[0] for t in range(T)]
    return torch.cat(rows, dim=-2)


def test_causal_by_prefixes():
    assert check.causal_by_prefixes(reference("self_attention", "causal_by_prefixes"))
    everything = check.causal_by_prefixes(lambda q, k, v: scaled_dot_product_attention(q, k, v)[0])
    assert not everything and "WITHOUT a mask" in everything.message
    future = check.causal_by_prefixes(lambda q, k, v: prefixes(q, k, v, lo=lambda t, T: t, hi=lambda t, T: T))
    assert not future and "its future" in future.message
    strict = check.causal_by_prefixes(lambda q, k, v: prefixes(q, k, v, hi=lambda t, T: t))
    assert not strict and "includes key t itself" in strict.message


def test_weight_bytes():
    assert check.weight_bytes(reference("self_attention", "weight_bytes"))
    linear = check.weight_bytes(lambda B, H, T, b=4: B * H * T * b)
    assert not linear and "T * T per head" in linear.message
    numbers = check.weight_bytes(lambda B, H, T, b=4: B * H * T * T)
    assert not numbers and "multiply by the bytes per number" in numbers.message


def limits(q, k, v, swap=False, lowest=False, feature_mean=False):
    T = q.shape[-2]
    cold = v.mean(-1) if feature_mean else v.mean(-2, keepdim=True).expand(*v.shape[:-2], T, v.shape[-1])
    scores = q @ k.transpose(-2, -1)
    best = scores.argmin(-1) if lowest else scores.argmax(-1)
    hot = torch.gather(v, -2, best[..., None].expand(*best.shape, v.shape[-1]))
    return (hot, cold) if swap else (cold, hot)


def test_temperature_limits():
    assert check.temperature_limits(reference("self_attention", "temperature_limits"))
    swapped = check.temperature_limits(lambda q, k, v: limits(q, k, v, swap=True))
    assert not swapped and "swapped" in swapped.message
    lowest = check.temperature_limits(lambda q, k, v: limits(q, k, v, lowest=True))
    assert not lowest and "LOWEST-scoring" in lowest.message
    features = check.temperature_limits(lambda q, k, v: limits(q, k, v, feature_mean=True))
    assert not features and "mean over the keys (dim=-2)" in features.message


def test_empty_rows():
    assert check.empty_rows(reference("self_attention", "empty_rows"))
    right = check.empty_rows(
        lambda T, p: ~((torch.arange(T) < T - p)[None, :] & causal_mask(T)).any(-1))
    assert not right and "LEFT padding" in right.message
    inverted = check.empty_rows(
        lambda T, p: ((torch.arange(T) >= p)[None, :] & causal_mask(T)).any(-1))
    assert not inverted and "DO see a real key" in inverted.message
