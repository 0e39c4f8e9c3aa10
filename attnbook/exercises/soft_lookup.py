"""Checkers for the exercises of "Attention as soft lookup" (book/soft_lookup.ipynb)."""

from __future__ import annotations

import math

import torch

from attnbook.exercises import Wrong, checker, expect
from attnbook.exercises._common import as_number, expect_close, expect_finite, expect_shape


def _data(T: int, S: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(S, generator=g, dtype=torch.float64) * 5).to(dtype)       # unsorted keys
    y = torch.randn(S, generator=g, dtype=torch.float64).to(dtype)
    q = (torch.rand(T, generator=g, dtype=torch.float64) * 5).to(dtype)
    return q, x, y


def _box_loop(q, x, y, h) -> torch.Tensor:
    out = []
    for qt in q.tolist():
        near = [yi for xi, yi in zip(x.tolist(), y.tolist()) if abs(qt - xi) <= h]
        out.append(sum(near) / len(near) if near else 0.0)
    return torch.tensor(out, dtype=torch.float64)


@checker("Nadaraya-Watson with a box kernel",
         hint="scores all 0, mask[t, i] = |q_t - x_i| <= h; masked_softmax(scores, mask) @ y")
def box_kernel(fn) -> str:
    q, x, y = _data(40, 60, seed=0)
    out = fn(q, x, y, 0.3)
    expect_shape(out, (40,), "the estimate for 40 queries", "one number per query")
    expect_close(out, _box_loop(q, x, y, 0.3), "the estimate on 40 random queries, h = 0.3",
                 "each query should get the plain mean of the y_i within h of it")
    edge = fn(torch.tensor([0.0], dtype=torch.float64), torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64),
              torch.tensor([0.0, 10.0, 20.0], dtype=torch.float64), 1.0)
    expect_close(edge, torch.tensor([5.0], dtype=torch.float64),
                 "the estimate at q = 0 with keys 0, 1, 2, values 0, 10, 20 and h = 1",
                 "the key at distance exactly h counts: K(u) = 1 for |u| <= 1, so use <=, not <")
    far = fn(torch.tensor([100.0, 1.0], dtype=torch.float64), x, y, 0.3)
    expect_shape(far, (2,), "the estimate for 2 queries")
    expect_finite(far, "the estimate at q = 100, far from every training point",
                  "a query with no neighbour has a fully masked row; masked_softmax gives it zero "
                  "weights (not NaN), so its estimate is 0")
    expect_close(far, _box_loop(torch.tensor([100.0, 1.0], dtype=torch.float64), x, y, 0.3),
                 "the estimate at q = 100 (no neighbour) and q = 1")
    q32, x32, y32 = _data(8, 20, seed=1, dtype=torch.float32)
    out32 = fn(q32, x32, y32, 0.5)
    expect(isinstance(out32, torch.Tensor) and out32.dtype == torch.float32,
           f"float32 inputs gave {getattr(out32, 'dtype', type(out32).__name__)}: follow the inputs' dtype")
    expect_close(out32, _box_loop(q32, x32, y32, 0.5), "the estimate in float32", atol=1e-5)
    return "the mean of the neighbours within h, edges included, and 0 where there is none."


@checker("1-nearest-neighbour regression",
         hint="the index of the nearest key is (q[:, None] - x[None, :]).abs().argmin(1); return y at it")
def nearest_neighbour(fn) -> str:
    for seed, (T, S) in enumerate(((50, 30), (7, 1), (20, 200))):
        q, x, y = _data(T, S, seed=10 + seed)
        q[0] = x[0]                                            # a query on a training point
        nearest = (q[:, None] - x[None, :]).abs().argmin(1)
        out = fn(q, x, y)
        expect(isinstance(out, torch.Tensor), f"your function returned a {type(out).__name__}, expected a tensor")
        if out.dtype in (torch.int64, torch.int32) or torch.equal(out.double(), nearest.double()):
            raise Wrong("your function returns the positions of the nearest keys; return their values y[i]")
        expect_shape(out, (T,), f"the prediction for {T} queries", "one value per query")
        far = (q[:, None] - x[None, :]).abs().argmax(1)
        expect(not (S > 1 and torch.allclose(out.double(), y[far])),
               "your function returns the value of the FARTHEST key: take argmin of the distance")
        expect_close(out, y[nearest], f"the prediction for {T} queries and {S} keys (x unsorted)",
                     "each query gets the y of its nearest key; the keys are not sorted here")
    # the statement of the exercise: a Gaussian Nadaraya-Watson at h = 1e-4 is this estimator
    q, x, y = _data(101, 100, seed=20)
    alpha = torch.softmax(-((q[:, None] - x[None, :]) ** 2) / (2 * 1e-4**2), dim=-1)
    expect_close(fn(q, x, y), alpha @ y, "your 1-NN on 101 queries",
                 "it should equal a Gaussian Nadaraya-Watson estimate with h = 1e-4")
    return "and a Gaussian Nadaraya-Watson estimate with h = 1e-4 gives the same numbers."


@checker("the Jacobian of softmax(e / tau)",
         hint="with a = softmax(e / tau), the chain rule gives (diag(a) - a a^T) / tau")
def jacobian_with_temperature(fn) -> str:
    g = torch.Generator().manual_seed(3)
    e = torch.randn(6, generator=g, dtype=torch.float64) * 2
    for tau in (0.1, 0.5, 1.0, 2.0):
        want = torch.autograd.functional.jacobian(lambda s, tau=tau: torch.softmax(s / tau, 0), e)
        got = fn(e.clone(), tau)
        expect_shape(got, (6, 6), f"the Jacobian for 6 scores at tau = {tau}", "one row per weight")
        got = got.detach().double()
        if torch.allclose(got, want, atol=1e-10):
            continue
        a, a1 = torch.softmax(e / tau, 0), torch.softmax(e, 0)
        J, J1 = torch.diag(a) - torch.outer(a, a), torch.diag(a1) - torch.outer(a1, a1)
        expect(not torch.allclose(got, J, atol=1e-10),
               f"at tau = {tau} your Jacobian is diag(a) - a a^T without the factor 1/tau: by the "
               "chain rule d softmax(e / tau) / de = J(a) / tau")
        expect(not torch.allclose(got, J * tau, atol=1e-10),
               f"at tau = {tau} your Jacobian is multiplied by tau: it should be divided by it")
        expect(not (torch.allclose(got, J1 / tau, atol=1e-10) or torch.allclose(got, J1, atol=1e-10)),
               f"at tau = {tau} your Jacobian uses a = softmax(e); it is the softmax of e / tau")
        expect_close(got, want, f"the Jacobian at tau = {tau}", atol=1e-10)
    one = fn(torch.tensor([1.5], dtype=torch.float64), 0.3)
    expect_close(one, torch.zeros(1, 1, dtype=torch.float64), "the Jacobian of a single score",
                 "one weight is always 1, whatever the score")
    norms = [float(torch.linalg.matrix_norm(fn(e, tau).double(), ord=2)) * 2 * tau for tau in (0.1, 1.0)]
    return f"its spectral norm is {max(norms):.2f} x 1/(2 tau) here, never more than 1/(2 tau)."


@checker("the smoothed maximum", hint="tau * torch.logsumexp(e / tau, dim=-1)")
def smooth_maximum(fn) -> str:
    g = torch.Generator().manual_seed(4)
    e = torch.randn(7, generator=g, dtype=torch.float64) * 2
    m = float(e.max())
    for tau in (1e-3, 0.1, 1.0, 10.0):
        raw = fn(e.clone(), tau)
        expect(not (isinstance(raw, (torch.Tensor, float)) and not math.isfinite(float(raw))),
               f"at tau = {tau} your value is {float(raw)}: exp(e / tau) overflows, with e / tau "
               f"up to {float(e.max()) / tau:.0f}; subtract the maximum inside the log "
               "(torch.logsumexp does)")
        value = as_number(raw, f"the smoothed maximum at tau = {tau}")
        want = float(tau * torch.logsumexp(e / tau, 0))
        if not math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-9):
            expect(not math.isclose(value, want / tau, rel_tol=1e-9, abs_tol=1e-9),
                   f"at tau = {tau} your value {value:.4g} is LSE(e / tau): multiply it by tau")
            expect(not math.isclose(value, m, abs_tol=1e-9) or tau < 0.01,
                   f"at tau = {tau} your value is max(e) itself; the smoothed maximum lies above it, "
                   "by up to tau log S")
            raise Wrong(f"at tau = {tau}: got {value:.6g}, expected tau * LSE(e / tau) = {want:.6g}")
        expect(m - 1e-9 <= value <= m + tau * math.log(len(e)) + 1e-9,
               f"at tau = {tau} your value {value:.4g} is outside [max e, max e + tau log S]")
        s = e.clone().requires_grad_()
        out = fn(s, tau)
        expect(isinstance(out, torch.Tensor) and out.requires_grad,
               "your function does not return a differentiable tensor: compute it with torch "
               "operations (no .item(), no float())")
        (grad,) = torch.autograd.grad(out, s)
        expect(not (grad.abs().max() == 1 and (grad != 0).sum() == 1 and tau >= 0.1),
               f"at tau = {tau} the gradient of your function is one-hot: that is the gradient of "
               "max, which is not smooth; the smoothed maximum's gradient is softmax(e / tau)")
        expect_close(grad, torch.softmax(e / tau, 0), f"the gradient of your function at tau = {tau}",
                     "it should be softmax(e / tau)", atol=1e-9)
    big = torch.tensor([1000.0, 998.0, -5.0], dtype=torch.float32)
    value = fn(big, 1.0)
    expect_finite(torch.as_tensor(value, dtype=torch.float64), "the smoothed maximum of scores near 1000 (float32)",
                  "exp(1000) overflows: subtract the maximum inside the log (torch.logsumexp does)")
    expect(abs(float(value) - float(torch.logsumexp(big.double(), 0))) < 1e-3,
           f"the smoothed maximum of [1000, 998, -5] is {float(value):.4f}, expected "
           f"{float(torch.logsumexp(big.double(), 0)):.4f}")
    return "between max(e) and max(e) + tau log S, with gradient softmax(e / tau), finite at 1000."
