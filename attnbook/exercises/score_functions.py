"""Checkers for the exercises of "Score functions" (book/score_functions.ipynb)."""

from __future__ import annotations

import math

import torch

from attnbook.exercises import Wrong, checker, expect
from attnbook.exercises._common import as_int, as_number, expect_close


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@checker("the general score as two projections",
         hint="s^T A B^T h = (A^T s) . (B^T h): (q @ A) @ (k @ B).transpose(-2, -1)")
def general_as_projections(fn) -> str:
    from attnbook.functional import general_score

    cases = [  # (name, q, k, A, B)
        ("q (1, 4, 8), k (1, 6, 8), rank 3", _randn(1, 4, 8, seed=0), _randn(1, 6, 8, seed=1),
         _randn(8, 3, seed=2), _randn(8, 3, seed=3)),
        ("q (2, 5, 6), k (2, 7, 4): queries and keys of different sizes, rank 2",
         _randn(2, 5, 6, seed=4), _randn(2, 7, 4, seed=5), _randn(6, 2, seed=6), _randn(4, 2, seed=7)),
        ("q (3, 8), k (9, 8) without a batch, rank 1", _randn(3, 8, seed=8), _randn(9, 8, seed=9),
         _randn(8, 1, seed=10), _randn(8, 1, seed=11)),
    ]
    for name, q, k, A, B in cases:
        want = general_score(q, k, A @ B.T)
        got = fn(q.clone(), k.clone(), A.clone(), B.clone())
        if isinstance(got, torch.Tensor) and got.shape == want.shape and torch.allclose(got.double(), want):
            continue
        if A.shape == B.shape and isinstance(got, torch.Tensor) and got.shape == want.shape:
            swapped = (q @ B) @ (k @ A).transpose(-2, -1)
            expect(not torch.allclose(got.double(), swapped),
                   f"{name}: you projected the queries with B and the keys with A; "
                   "s^T A B^T h = (A^T s) . (B^T h)")
            same = (q @ A) @ (k @ A).transpose(-2, -1)
            expect(not torch.allclose(got.double(), same),
                   f"{name}: you projected the keys with A too; they go through B")
        expect_close(got, want, f"{name}: your scores", "they should equal general_score(q, k, A @ B.T)",
                     atol=1e-9)
    return "q^T (A B^T) k is a dot product of projections: the Transformer's W^Q, W^K, in two lines."


@checker("the parameters of the additive score",
         hint="W_a is d_a x d_s, U_a is d_a x d_h, v_a has d_a entries, and none has a bias")
def additive_parameters(fn) -> str:
    from attnbook.attention import AdditiveAttention

    for d_s, d_h, d_a in ((4, 4, 6), (3, 5, 7), (10, 2, 1), (1000, 2000, 1000)):
        want = sum(p.numel() for p in AdditiveAttention(d_s, d_h, d_a).parameters())
        got = as_int(fn(d_s, d_h, d_a), f"additive_params({d_s}, {d_h}, {d_a})")
        if got == want:
            continue
        call = f"additive_params({d_s}, {d_h}, {d_a}) = {got:,}, but AdditiveAttention has {want:,}"
        expect(got != d_a * (d_s + d_h), f"{call}: you left out v_a, which has d_a = {d_a} entries")
        expect(got != want + 2 * d_a and got != want + 2 * d_a + 1,
               f"{call}: the projections have no bias (nn.Linear(..., bias=False))")
        expect(got != d_s * d_h * d_a, f"{call}: W_a and U_a are two matrices, d_a x d_s and d_a x d_h; "
                                       "their sizes add up, they do not multiply")
        raise Wrong(call)
    return "with Bahdanau's sizes (1000, 2000, 1000): 3,001,000 parameters."


@checker("the scale for other variances",
         hint="Var(q . k) = d sigma_q^2 sigma_k^2; divide by its square root")
def score_scale(fn) -> str:
    for sq, sk, d in ((1.0, 1.0, 64), (3.0, 0.5, 64), (0.2, 2.0, 16), (1.5, 1.5, 1)):
        want = 1 / (sq * sk * math.sqrt(d))
        got = as_number(fn(sq, sk, d), f"score_scale({sq}, {sk}, {d})")
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        call = f"score_scale({sq}, {sk}, {d}) = {got:.4g}, expected {want:.4g}"
        expect(not math.isclose(got, 1 / math.sqrt(d), rel_tol=1e-9),
               f"{call}: 1/sqrt(d) keeps the variance at 1 only when both variances are 1")
        expect(not math.isclose(got, want / (sq * sk), rel_tol=1e-9),
               f"{call}: you divided by the variances; the score's standard deviation is "
               "sigma_q sigma_k sqrt(d), so divide by the standard deviations")
        expect(not math.isclose(got, 1 / (sq * sk * d), rel_tol=1e-9),
               f"{call}: divide by the standard deviation (a square root), not by the variance d")
        raise Wrong(call)
    g = torch.Generator().manual_seed(5)
    sq, sk, d = 3.0, 0.5, 64
    q = sq * torch.randn(20000, d, generator=g, dtype=torch.float64)
    k = sk * torch.randn(20000, d, generator=g, dtype=torch.float64)
    var = float(((q * k).sum(-1) * fn(sq, sk, d)).var())
    expect(abs(var - 1) < 0.05, f"sampled scores with your scale have variance {var:.3f}, not 1")
    return f"20,000 sampled scores with sigma_q = 3, sigma_k = 0.5, d = 64 have variance {var:.3f}."


def _extreme_row(v: torch.Tensor, S: int) -> float:
    """The largest weight that additive scores can reach: one key at +||v||_1, the others at
    -||v||_1, built with saturated tanh (U = I, W = 0, keys of size 1e6)."""
    from attnbook.functional import additive_score

    d_a = v.numel()
    keys = -1e6 * torch.sign(v).expand(S, d_a).clone()
    keys[0] = 1e6 * torch.sign(v)
    e = additive_score(torch.zeros(1, 1, 1, dtype=torch.float64), keys[None],
                       torch.zeros(d_a, 1, dtype=torch.float64),
                       torch.eye(d_a, dtype=torch.float64), v)[0, 0]
    return float(torch.softmax(e, 0).max())


@checker("the largest additive weight",
         hint="|v^T tanh(x)| <= ||v||_1, so two scores differ by at most 2 ||v||_1")
def additive_weight_bound(fn) -> str:
    for seed, (d_a, S) in enumerate(((8, 10), (3, 2), (16, 50), (5, 1))):
        v = _randn(d_a, seed=20 + seed) * 0.3
        want = 1 / (1 + (S - 1) * math.exp(-2 * float(v.abs().sum())))
        got = as_number(fn(v.clone(), S), f"your bound for d_a = {d_a}, S = {S}")
        reached = _extreme_row(v, S)
        expect(got >= reached - 1e-9,
               f"for S = {S} and a v_a with ||v_a||_1 = {float(v.abs().sum()):.3f}, keys of size 1e6 "
               f"reach a largest weight of {reached:.4f}, above your bound {got:.4f}: the scores can "
               "be +||v_a||_1 for one key and -||v_a||_1 for all others")
        expect(math.isclose(got, want, rel_tol=1e-9),
               f"for S = {S}: your bound {got:.4f} holds but is not tight; inputs can reach "
               f"{reached:.4f} and no more: use 1 / (1 + (S - 1) exp(-2 ||v_a||_1))")
    return "and keys of size 1e6 reach it: the bound is tight."
