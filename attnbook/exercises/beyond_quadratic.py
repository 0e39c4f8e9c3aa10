"""Checkers for the exercises of the chapter "Beyond quadratic" (``book/beyond_quadratic.ipynb``).

Each checker runs the student's answer on cases of its own (edge cases included), compares it
with :mod:`attnbook.efficient` or a brute-force computation, and, when the answer is wrong,
recognises the usual slips and says which one it looks like.
"""

from __future__ import annotations

import math

import torch

from ..efficient import (
    FavorFeatures,
    elu_feature_map,
    linear_attention,
    receptive_field,
    sliding_window_mask,
)
from . import checker, expect

__all__ = [
    "chunked_linear_attention",
    "window_mask",
    "layers_needed",
    "positive_random_features",
]


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-6) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=tol, atol=tol, equal_nan=True))


def _tensor(out: object, what: str) -> torch.Tensor:
    expect(isinstance(out, torch.Tensor), f"{what} should be a torch.Tensor, got {type(out).__name__}")
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Exercise 1: causal linear attention chunk by chunk
# ---------------------------------------------------------------------------------------------


def _chunked(q, k, v, C, phi=elu_feature_map, *, carry=True, diagonal=True, causal=True,
             normalise=True):
    """Chunked causal linear attention and its usual slips (flags), float64, q (T, D)."""
    fq, fk = phi(q), phi(k)
    S = torch.zeros(fq.shape[-1], v.shape[-1], dtype=q.dtype)
    z = torch.zeros(fq.shape[-1], dtype=q.dtype)
    rows = []
    for c0 in range(0, q.shape[0], C):
        Qc, Kc, Vc = fq[c0 : c0 + C], fk[c0 : c0 + C], v[c0 : c0 + C]
        A = Qc @ Kc.T  # (C, C)
        if causal:
            A = A.tril() if diagonal else A.tril(-1)
        num, den = Qc @ S + A @ Vc, Qc @ z + A.sum(-1)
        rows.append(num / den[:, None] if normalise else num)
        if carry:
            S, z = S + Kc.T @ Vc, z + Kc.sum(0)
    return torch.cat(rows)


@checker(
    "causal linear attention, chunk by chunk",
    hint="carry S = Σ φ(k_j) v_jᵀ and z = Σ φ(k_j) over the chunks already done; inside a chunk "
    "add the masked product tril(φ(Q_c) φ(K_c)ᵀ) V_c; divide by the matching denominator",
)
def chunked_linear_attention(fn) -> str:
    """``fn(q (T, D), k (T, D), v (T, Dv), chunk) -> (T, Dv)`` must equal causal linear
    attention with ``φ(x) = elu(x) + 1`` for every chunk size."""
    g = torch.Generator().manual_seed(11)
    for T, D, Dv, C in [(7, 3, 2, 3), (1, 2, 2, 4), (12, 4, 5, 4), (9, 3, 3, 1), (6, 2, 3, 20)]:
        q, k, v = (torch.randn(T, d, generator=g, dtype=torch.float64) for d in (D, D, Dv))
        out = _tensor(fn(q, k, v, C), "the output")
        expect(tuple(out.shape) == (T, Dv),
               f"output shape {tuple(out.shape)} for q {(T, D)} and v {(T, Dv)}, expected {(T, Dv)}: "
               "one row per query, as wide as the values")
        out = out.double()
        if _close(out, linear_attention(q, k, v, causal=True)):
            continue
        where = f"(T = {T}, chunk = {C})"
        expect(not _close(out, _chunked(q, k, v, C, carry=False)),
               f"each chunk starts from an empty state {where}: after a chunk, add φ(K_c)ᵀ V_c to "
               "S and the column sums of φ(K_c) to z, so later chunks see the earlier keys")
        expect(not _close(out, _chunked(q, k, v, C, diagonal=False)),
               f"query t does not see key t {where}: the mask inside a chunk keeps the diagonal "
               "(j <= t, not j < t)")
        expect(not _close(out, _chunked(q, k, v, C, causal=False)),
               f"inside a chunk, queries see later keys {where}: mask φ(Q_c) φ(K_c)ᵀ to its lower "
               "triangle")
        expect(not _close(out, linear_attention(q, k, v)),
               f"this is NON-causal linear attention {where}: row t may only use keys 0..t")
        expect(not _close(out, _chunked(q, k, v, C, normalise=False)),
               f"the rows are not normalised {where}: divide by φ(q_t)ᵀ z_t plus the row sums of "
               "the masked chunk product, so that each output is a weighted average")
        expect(not _close(out, _chunked(q, k, v, C, phi=lambda x: x)),
               f"the feature map is missing {where}: apply φ(x) = elu(x) + 1 to queries and keys")
        expect(bool(torch.isfinite(out).all()), f"your output holds NaN or inf {where}")
        bad = int((out - linear_attention(q, k, v, causal=True)).abs().amax(dim=-1).argmax())
        expect(False, f"row {bad} differs from causal linear attention {where}")
    return "equal to causal linear attention for every chunk size, 1 and larger than T included."


# ---------------------------------------------------------------------------------------------
# Exercise 2: the causal sliding-window mask
# ---------------------------------------------------------------------------------------------


@checker("a causal sliding-window mask", hint="query i may attend to key j when i - window < j <= i")
def window_mask(fn) -> str:
    """``fn(T, window) -> (T, T)`` boolean mask, True = may attend."""
    for T, w in [(1, 1), (5, 1), (6, 2), (8, 3), (5, 10)]:
        m = _tensor(fn(T, w), "the mask")
        expect(m.dtype == torch.bool,
               f"the mask must be boolean (True = may attend), got dtype {m.dtype}")
        expect(tuple(m.shape) == (T, T), f"mask shape {tuple(m.shape)} for T = {T}, expected {(T, T)}")
        expected = sliding_window_mask(T, window=w, causal=True)
        if torch.equal(m.cpu(), expected):
            continue
        m = m.cpu()
        future = (m & ~torch.ones(T, T, dtype=torch.bool).tril()).nonzero()
        if len(future) and torch.equal(m.T, expected):
            expect(False, "your mask is transposed: rows are queries and columns are keys")
        if len(future):
            i, j = future[0].tolist()
            expect(False, f"query {i} may see key {j}, which lies in its future: a causal window "
                          f"needs j <= i (T = {T}, window = {w})")
        counts = m.sum(dim=1)
        wanted = expected.sum(dim=1)
        i = int((counts != wanted).nonzero()[0]) if bool((counts != wanted).any()) else 0
        if counts[i] == wanted[i] + 1:
            expect(False, f"query {i} sees {int(counts[i])} keys, expected {int(wanted[i])}: the "
                          "window counts the query itself, so it reaches back only window - 1 steps "
                          f"(i - window < j), T = {T}, window = {w}")
        if counts[i] + 1 == wanted[i]:
            expect(False, f"query {i} sees {int(counts[i])} keys, expected {int(wanted[i])}: an "
                          "off-by-one at the far end, keep every j with i - window < j")
        expect(False, f"row {i} differs from the window i - {w} < j <= i (T = {T})")
    return "the mask is right for every case, window 1 and windows wider than T included."


# ---------------------------------------------------------------------------------------------
# Exercise 3: how many windowed layers to see the whole sequence
# ---------------------------------------------------------------------------------------------


def _layers_by_search(n: int, w: int) -> int:
    """Smallest L with position n-1 depending on position 0: apply the one-layer relation of
    :func:`receptive_field` again and again until the first input reaches the last output."""
    step = receptive_field(sliding_window_mask(n, window=w), 1).double()  # (n, n)
    reach, L = torch.eye(n, dtype=torch.float64), 0
    while reach[-1, 0] == 0:
        reach, L = (step @ reach).clamp_(max=1.0), L + 1
    return L


@checker(
    "layers needed to see the whole sequence",
    hint="one causal window layer lets position i read i - (window - 1) .. i; stacking L layers "
    "reaches back L (window - 1) positions",
)
def layers_needed(fn) -> str:
    """``fn(n, window) -> int``: fewest stacked causal windowed layers in which the last of ``n``
    positions depends on the first (``n >= 2``, ``window >= 2``)."""
    for n, w in [(2, 2), (5, 2), (16, 4), (17, 4), (64, 8), (100, 3), (10, 200), (65, 9)]:
        answer = fn(n, w)
        expect(isinstance(answer, int) and not isinstance(answer, bool),
               f"return an int, got {type(answer).__name__} {answer!r} for n = {n}, window = {w}")
        truth = _layers_by_search(n, w)
        if answer == truth:
            continue
        expect(answer != (n - 1) // (w - 1),
               f"for n = {n}, window = {w} you answered {answer}, rounded down: the last layer must "
               f"still reach position 0, so round (n - 1) / (window - 1) up (answer {truth})")
        expect(answer != math.ceil(n / w),
               f"for n = {n}, window = {w} you answered ceil(n / window) = {answer}, but {truth} "
               "layers are needed: a window of w positions moves information only w - 1 steps, "
               "because it includes the query itself")
        expect(False, f"for n = {n}, window = {w} the answer is {truth} layers, you gave {answer}")
    return "right on every case, including a window wider than the sequence."


# ---------------------------------------------------------------------------------------------
# Exercise 4: Performer's positive random features
# ---------------------------------------------------------------------------------------------


@checker(
    "Performer's positive random features",
    hint="with x' = x / D^(1/4): φ(x)_i = exp(ω_i · x' - |x'|² / 2) / √m for the m rows ω_i of omega",
)
def positive_random_features(fn) -> str:
    """``fn(x (..., D), omega (m, D)) -> (..., m)`` must equal :class:`FavorFeatures`."""
    g = torch.Generator().manual_seed(5)
    for shape, m in [((7, 4), 16), ((2, 3, 8), 5), ((1, 1), 3)]:
        D = shape[-1]
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        omega = torch.randn(m, D, generator=g, dtype=torch.float64)
        ref = FavorFeatures(D, m).double()
        ref.omega.copy_(omega)
        out = _tensor(fn(x, omega), "the features")
        expect(tuple(out.shape) == (*shape[:-1], m),
               f"features of shape {tuple(out.shape)} for x {shape} and omega {(m, D)}, expected "
               f"{(*shape[:-1], m)}: one feature per row of omega")
        out = out.double()
        expected = ref(x)
        if _close(out, expected):
            continue
        expect(bool((out > 0).all()),
               "some features are negative or zero: FAVOR+ uses exp(...), which keeps every "
               "feature, and so every attention weight, positive")
        expect(not _close(out, expected * math.sqrt(m)),
               "the features are √m times too large: divide by √m so that φ(q)·φ(k) averages "
               "the m terms instead of summing them")
        xs = x * D**-0.25
        expect(not _close(out, torch.exp(xs @ omega.T) / math.sqrt(m)),
               "the term -|x'|²/2 is missing from the exponent: without it, E[φ(q)·φ(k)] is "
               "exp(q'·k' + |q'|²/2 + |k'|²/2), not exp(q'·k')")
        expect(not _close(out, torch.exp(x @ omega.T - 0.5 * (x * x).sum(-1, keepdim=True)) / math.sqrt(m)),
               "x was not scaled by D^(-1/4): scale queries and keys so that the kernel is "
               "exp(q·k / √D), the one softmax attention uses")
        err = float((out - expected).abs().max())
        expect(False, f"the features differ from FAVOR+ by up to {err:.3g} (x {shape}, m = {m})")
    return "your features equal FAVOR+'s on every case."
