"""The checkers of book/soft_lookup.ipynb: the notebook's reference passes, typical mistakes are
caught with a message that says what is wrong."""

from __future__ import annotations

import torch
from exercise_support import reference

from attnbook.exercises import soft_lookup as check


def box_strict(q, x, y, h):
    mask = (q[:, None] - x[None, :]).abs() < h
    w = mask.to(y.dtype)
    return (w @ y) / w.sum(1).clamp_min(1)


def box_plain_softmax(q, x, y, h):
    mask = (q[:, None] - x[None, :]).abs() <= h
    scores = torch.zeros(mask.shape, dtype=y.dtype).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, -1) @ y


def box_gaussian(q, x, y, h):
    return torch.softmax(-((q[:, None] - x[None, :]) ** 2) / (2 * h**2), -1) @ y


def test_box_kernel():
    assert check.box_kernel(reference("soft_lookup", "box_kernel"))
    strict = check.box_kernel(box_strict)
    assert not strict and "use <=, not <" in strict.message
    nan = check.box_kernel(box_plain_softmax)
    assert not nan and "contains NaN" in nan.message and "masked_softmax" in nan.message
    gaussian = check.box_kernel(box_gaussian)
    assert not gaussian and "plain mean of the y_i within h" in gaussian.message


def test_nearest_neighbour():
    assert check.nearest_neighbour(reference("soft_lookup", "nearest_neighbour"))
    indices = check.nearest_neighbour(lambda q, x, y: (q[:, None] - x[None, :]).abs().argmin(1))
    assert not indices and "return their values y[i]" in indices.message
    farthest = check.nearest_neighbour(lambda q, x, y: y[(q[:, None] - x[None, :]).abs().argmax(1)])
    assert not farthest and "FARTHEST" in farthest.message
    sorted_only = check.nearest_neighbour(
        lambda q, x, y: y[torch.searchsorted(x.contiguous(), q).clamp(max=len(x) - 1)])
    assert not sorted_only and "not sorted" in sorted_only.message


def jacobian(e, tau, factor=None, inner_tau=True):
    a = torch.softmax(e / tau if inner_tau else e, 0)
    J = torch.diag(a) - torch.outer(a, a)
    return J * (1 / tau if factor is None else factor)


def test_jacobian_with_temperature():
    assert check.jacobian_with_temperature(reference("soft_lookup", "jacobian_with_temperature"))
    no_factor = check.jacobian_with_temperature(lambda e, tau: jacobian(e, tau, factor=1.0))
    assert not no_factor and "without the factor 1/tau" in no_factor.message
    times = check.jacobian_with_temperature(lambda e, tau: jacobian(e, tau, factor=tau))
    assert not times and "multiplied by tau" in times.message
    plain = check.jacobian_with_temperature(lambda e, tau: jacobian(e, tau, inner_tau=False))
    assert not plain and "uses a = softmax(e)" in plain.message


def test_smooth_maximum():
    assert check.smooth_maximum(reference("soft_lookup", "smooth_maximum"))
    no_tau = check.smooth_maximum(lambda e, tau: torch.logsumexp(e / tau, -1))
    assert not no_tau and "multiply it by tau" in no_tau.message
    hard = check.smooth_maximum(lambda e, tau: e.max())
    assert not hard and "gradient of max" in hard.message
    naive = check.smooth_maximum(lambda e, tau: tau * torch.log(torch.exp(e / tau).sum()))
    assert not naive and "overflows" in naive.message
    detached = check.smooth_maximum(lambda e, tau: (tau * torch.logsumexp(e / tau, -1)).detach())
    assert not detached and "differentiable" in detached.message
