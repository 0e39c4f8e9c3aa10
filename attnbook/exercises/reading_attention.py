"""Checkers for the exercises of "Reading attention maps" (book/reading_attention.ipynb).

* :func:`kendall_tau` — Kendall's rank correlation of two score vectors, by counting pairs;
* :func:`uniform_weights` — the uniform counterfactual attention over the real keys of a mask;
* :func:`grad_times_input` — gradient x input importance of each token, by autograd.

Each checker builds its own cases, compares with an independent computation and, when the
answer is wrong, names the likely slip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from . import checker, expect
from ._common import as_number, expect_shape

__all__ = ["kendall_tau", "uniform_weights", "grad_times_input"]


def _tau_reference(a: torch.Tensor, b: torch.Tensor) -> float:
    n, score = len(a), 0.0
    for i in range(n):
        for j in range(i + 1, n):
            score += float(torch.sign(a[i] - a[j]) * torch.sign(b[i] - b[j]))
    return score / (n * (n - 1) / 2)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    return _pearson(a.argsort().argsort().double(), b.argsort().argsort().double())


@checker("Kendall's tau", hint="for every pair i < j: +1 if a and b order the pair the same way, "
         "-1 if they disagree; divide the sum by the number of pairs n(n-1)/2")
def kendall_tau(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> str:
    g = torch.Generator().manual_seed(0)
    cases = [(torch.arange(5.0), torch.arange(5.0)), (torch.arange(5.0), -torch.arange(5.0))]
    for n in (4, 7, 12):
        a = torch.randn(n, generator=g, dtype=torch.float64)
        cases.append((a, a ** 3 + torch.randn(n, generator=g, dtype=torch.float64)))
    cases.append((torch.tensor([0.1, 0.5, 0.2, 0.9]), torch.tensor([1.0, 30.0, 2.0, 4.0])))
    for a, b in cases:
        want = _tau_reference(a, b)
        got = as_number(fn(a.clone(), b.clone()), f"kendall_tau of two vectors of length {len(a)}")
        if abs(got - want) < 1e-6:
            continue
        expect(abs(got - 2 * want) > 1e-6, "your value is twice tau: you counted each pair twice "
               "(i, j and j, i) but divided by the number of unordered pairs n(n-1)/2.")
        n = len(a)
        expect(abs(got - want * (n - 1) / n) > 1e-6,
               "divide by the number of pairs i < j, n(n-1)/2, not by n^2/2.")
        expect(abs(got - _pearson(a.double(), b.double())) > 1e-6,
               "that is Pearson's correlation of the values; tau only compares the ORDER of pairs.")
        expect(abs(got - _spearman(a, b)) > 1e-6,
               "that is Spearman's rank correlation; tau counts agreeing and disagreeing pairs.")
        expect(False, f"for a = {a.tolist()} and b = {b.tolist()} tau is {want:.4f}, you returned "
               f"{got:.4f}: count the pairs on which the two orders agree, minus those on which they "
               f"disagree.")
    return "+1 when two scores rank the tokens alike, -1 when they rank them in reverse."


@checker("uniform attention", hint="weight 1/n on each of the n real keys of a row (mask True), "
         "0 on padding; a row with no real key gets all zeros, never NaN")
def uniform_weights(fn: Callable[[torch.Tensor], Any]) -> str:
    masks = [
        torch.tensor([[True, True, True, False, False]]),
        torch.tensor([[True, False, False], [True, True, True]]),
        torch.tensor([[[True, True], [False, False]]]),
    ]
    for mask in masks:
        want = mask.double() / mask.double().sum(-1, keepdim=True).clamp_min(1)
        got = fn(mask.clone())
        expect_shape(got, tuple(mask.shape), f"uniform_weights(mask of shape {tuple(mask.shape)})",
                     "one weight per key")
        got = got.double()
        expect(not torch.isnan(got).any(), "a row whose keys are all padding came out NaN (0 / 0): "
               "give it zeros, as masked_softmax does (clamp the count to at least 1).")
        if torch.allclose(got, want, atol=1e-6):
            continue
        S = mask.shape[-1]
        expect(not torch.allclose(got, torch.full_like(got, 1.0 / S), atol=1e-6),
               "you spread the weight over every key, padding included: padded keys must get 0 "
               "and the real keys share the whole weight.")
        expect(bool((got[~mask] == 0).all()), "padded keys (mask False) must get weight 0.")
        expect(False, f"for mask {mask.tolist()} the weights should be {want.tolist()}, got "
               f"{got.tolist()}: each row sums to one over its real keys.")
    return "each row spreads its weight evenly over its real keys."


def _toy(seed: int, E: int) -> Callable[[torch.Tensor], torch.Tensor]:
    W = torch.randn(E, E, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:  # (B, S, E) -> (B,), tokens interact through the sum
        return (torch.tanh(x @ W).sum(1) ** 2).sum(-1)

    return f


@checker("gradient x input", hint="x = x.detach().requires_grad_(); grad, = torch.autograd.grad("
         "f(x).sum(), x); then the norm over the last dimension of grad * x")
def grad_times_input(fn: Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], Any]) -> str:
    g = torch.Generator().manual_seed(4)
    for B, S, E in [(1, 3, 2), (2, 5, 4)]:
        f = _toy(B + S, E)
        x = torch.randn(B, S, E, generator=g, dtype=torch.float64)
        want = torch.zeros(B, S, dtype=torch.float64)
        grads = torch.zeros(B, S, E, dtype=torch.float64)
        for b in range(B):  # row by row with the full Jacobian: an independent route
            J = torch.autograd.functional.jacobian(lambda r, f=f: f(r[None])[0], x[b])  # (S, E)
            grads[b] = J
            want[b] = (J * x[b]).norm(dim=-1)
        got = fn(f, x.clone())
        expect_shape(got, (B, S), f"grad_times_input(f, x of shape {(B, S, E)})",
                     "one score per token: take the norm over the embedding dimension")
        got = got.detach().double()
        if torch.allclose(got, want, atol=1e-8):
            continue
        expect(not torch.allclose(got, grads.norm(dim=-1), atol=1e-8),
               "that is the size of the gradient alone: multiply it elementwise by x first.")
        expect(not torch.allclose(got, (grads * x).sum(-1), atol=1e-8),
               "that is the dot product of gradient and input (signed, summed over E); the book "
               "uses the norm of the elementwise product, || grad * x ||_2.")
        expect(False, f"wrong scores for x of shape {(B, S, E)}: differentiate f(x).sum() with "
               f"respect to x, multiply by x and take the norm over the last dimension.")
    return "one backward pass gives every token's gradient x input score."
