"""The checkers of book/first_look.ipynb: the notebook's reference passes, typical mistakes are
caught with a message that says what is wrong."""

from __future__ import annotations

import torch
from exercise_support import reference

from attnbook.exercises import first_look as check


def test_inanimate_query():
    assert check.inanimate_query(reference("first_look", "inanimate_query"))
    assert check.inanimate_query([0, 3, 0, 0])  # a list is fine too
    animate = check.inanimate_query(torch.tensor([4.0, 0.0, 0.0, 0.0]))
    assert not animate and "still asks for the animate feature" in animate.message
    weak = check.inanimate_query(torch.tensor([0.0, 1.0, 0.0, 0.0]))
    assert not weak and "not even twice" in weak.message and "larger" in weak.message
    three = check.inanimate_query(torch.tensor([0.0, 4.0, 0.0]))
    assert not three and "shape (3,), expected (4,)" in three.message
    nothing = check.inanimate_query(torch.zeros(4))
    assert not nothing and "same weight" in nothing.message


def largest_tau_smallest(e, target, taus, level=0.99):
    ok = [float(t) for t in taus if torch.softmax(e / t, -1)[target] >= level]
    return min(ok, default=None)


def largest_tau_first_in_grid(e, target, taus, level=0.99):
    return next((float(t) for t in taus if torch.softmax(e / t, -1)[target] >= level), None)


def largest_tau_multiplied(e, target, taus, level=0.99):
    ok = [float(t) for t in taus if torch.softmax(e * t, -1)[target] >= level]
    return max(ok, default=None)


def largest_tau_weight(e, target, taus, level=0.99):
    """Returns the weight reached at the largest tau, not the tau."""
    ok = [float(t) for t in taus if torch.softmax(e / t, -1)[target] >= level]
    return float(torch.softmax(e / max(ok), -1)[target]) if ok else None


def test_largest_temperature():
    assert check.largest_temperature(reference("first_look", "largest_temperature"))
    smallest = check.largest_temperature(largest_tau_smallest)
    assert not smallest and "asks for the largest" in smallest.message
    first = check.largest_temperature(largest_tau_first_in_grid)
    assert not first and "unsorted grid" in first.message and "asks for the largest" in first.message
    multiplied = check.largest_temperature(largest_tau_multiplied)
    assert not multiplied and "divide the scores by tau" in multiplied.message
    weight = check.largest_temperature(largest_tau_weight)
    assert not weight and "not one of the candidate temperatures" in weight.message


def softmax_naive(e):
    return torch.exp(e) / torch.exp(e).sum(-1, keepdim=True)


def softmax_global_max(e):
    z = torch.exp(e - e.max())
    return z / z.sum(-1, keepdim=True)


def softmax_columns(e):
    z = torch.exp(e - e.amax(0, keepdim=True))
    return z / z.sum(0, keepdim=True)


def softmax_mean(e):
    z = torch.exp(e - e.mean(-1, keepdim=True))
    return z / z.sum(-1, keepdim=True)


def test_stable_softmax():
    assert check.stable_softmax(reference("first_look", "stable_softmax"))
    naive = check.stable_softmax(softmax_naive)
    assert not naive and "+1000" in naive.message and "subtract" in naive.message
    global_max = check.stable_softmax(softmax_global_max)
    assert not global_max and "shifted by +1000, -1000" in global_max.message
    columns = check.stable_softmax(softmax_columns)
    assert not columns and "columns sum to 1" in columns.message
    mean = check.stable_softmax(softmax_mean)
    assert not mean and "not the mean" in mean.message
