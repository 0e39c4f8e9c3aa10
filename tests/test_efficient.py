"""Tests of attnbook.efficient against float64 brute force: every query's key set is written
out from the definition, one query at a time, and its softmax (or kernel-weighted) average is
computed in float64 on the CPU."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.efficient import (
    ATTENTION_KINDS,
    FavorFeatures,
    LinearAttentionState,
    SwappableDecoder,
    SwappableSelfAttention,
    causal_attention,
    elu_feature_map,
    linear_attention,
    linear_attention_step,
    receptive_field,
    sliding_window_attention,
    sliding_window_mask,
    strided_attention,
    strided_mask,
)
from attnbook.functional import scaled_dot_product_attention

# ---------------------------------------------------------------------------------------------
# float64 references
# ---------------------------------------------------------------------------------------------


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(..., T, D) -> (N, T, D), float64 on the CPU."""
    return x.detach().cpu().double().reshape(math.prod(x.shape[:-2]), *x.shape[-2:])


def _brute(q, k, v, allowed, weight):
    """out[i] = Σ_{j allowed(i, j)} w(q_i, k_j) v_j / Σ w, one query at a time (zeros if no key).

    ``weight(q_i, K) -> (len(K),)`` gives the unnormalised weights of the allowed keys.
    """
    q3, k3, v3 = _flat(q), _flat(k), _flat(v)
    N, T, S = q3.shape[0], q3.shape[1], k3.shape[1]
    out = torch.zeros(N, T, v3.shape[-1], dtype=torch.float64)
    for n in range(N):
        for i in range(T):
            js = [j for j in range(S) if allowed(i, j)]
            if not js:
                continue
            w = weight(q3[n, i], k3[n, js])  # (len(js),)
            if float(w.sum()) > 0:
                out[n, i] = (w[:, None] * v3[n, js]).sum(0) / w.sum()
    return out.reshape(*q.shape[:-1], v.shape[-1])


def _softmax_weight(scale):
    def weight(qi, K):
        s = (K @ qi) * scale
        return torch.exp(s - s.max())

    return weight


def _kernel_weight(phi):
    return lambda qi, K: phi(K) @ phi(qi)


def _window_allowed(T, S, window, causal):
    def allowed(i, j):
        p = i + (S - T)
        return (p - window < j <= p) if causal else abs(p - j) < window

    return allowed


def _strided_allowed(stride, causal):
    def allowed(i, j):
        ok = abs(i - j) < stride or (i - j) % stride == 0
        return ok and (j <= i or not causal)

    return allowed


def _qkv(shape_q, S, Dv, *, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    *lead, T, D = shape_q
    q = torch.randn(*lead, T, D, generator=g, dtype=torch.float64)
    k = torch.randn(*lead, S, D, generator=g, dtype=torch.float64)
    v = torch.randn(*lead, S, Dv, generator=g, dtype=torch.float64)
    return (x.to(device=device, dtype=dtype) for x in (q, k, v))


def _close(actual, expected, rtol=1e-10, atol=1e-10):
    torch.testing.assert_close(actual.detach().cpu().double(), expected, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# linear attention
# ---------------------------------------------------------------------------------------------

LENGTHS = [(7, 7), (5, 9), (9, 5), (1, 1), (70, 70), (0, 3), (3, 0), (65, 130)]


@pytest.mark.parametrize("T,S", LENGTHS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 4, 64])
def test_linear_attention_matches_brute_force(T, S, causal, chunk_size):
    q, k, v = _qkv((2, 3, T, 4), S, 5)
    out = linear_attention(q, k, v, causal=causal, chunk_size=chunk_size)
    allowed = (lambda i, j: j <= i + (S - T)) if causal else (lambda i, j: True)
    assert out.shape == (2, 3, T, 5)
    _close(out, _brute(q, k, v, allowed, _kernel_weight(elu_feature_map)))


@settings(max_examples=30, deadline=None)
@given(T=st.integers(1, 20), S=st.integers(0, 20), causal=st.booleans(), chunk=st.integers(1, 8),
       D=st.integers(1, 5), Dv=st.integers(1, 4))
def test_linear_attention_property(T, S, causal, chunk, D, Dv):
    q, k, v = _qkv((2, T, D), S, Dv, seed=T * 100 + S)
    out = linear_attention(q, k, v, causal=causal, chunk_size=chunk)
    allowed = (lambda i, j: j <= i + (S - T)) if causal else (lambda i, j: True)
    _close(out, _brute(q, k, v, allowed, _kernel_weight(elu_feature_map)))


def test_elu_feature_map_is_elu_plus_one_and_positive():
    x = torch.linspace(-30, 30, 601, dtype=torch.float64)
    expected = torch.where(x > 0, x + 1, torch.exp(x))
    _close(elu_feature_map(x), expected)
    assert (elu_feature_map(x) > 0).all()


def test_linear_attention_with_a_custom_feature_map_and_zero_denominators():
    q, k, v = _qkv((2, 6, 3), 6, 4)
    relu = torch.relu
    for causal in (False, True):
        out = linear_attention(q, k, v, causal=causal, feature_map=relu)
        allowed = (lambda i, j: j <= i) if causal else (lambda i, j: True)
        _close(out, _brute(q, k, v, allowed, _kernel_weight(relu)))
    # every feature zero: the denominator is 0 and the output must be 0, never NaN
    zero = linear_attention(-q.abs() - 1, k, v, feature_map=relu)
    assert torch.equal(zero, torch.zeros_like(zero))


def test_linear_attention_equals_kernel_smoother_with_feature_dot_products():
    """The associativity trick: φ(Q) (φ(K)ᵀ V) = (φ(Q) φ(K)ᵀ) V, normalised by rows."""
    q, k, v = _qkv((4, 3), 11, 2)
    A = elu_feature_map(q) @ elu_feature_map(k).T  # (T, S)
    expected = (A / A.sum(1, keepdim=True)) @ v
    _close(linear_attention(q, k, v), expected)


@pytest.mark.parametrize("T,S", [(9, 9), (4, 9), (9, 4)])
def test_recurrent_step_equals_the_parallel_causal_form(T, S):
    q, k, v = _qkv((2, T, 3), S, 4)
    out_parallel = linear_attention(q, k, v, causal=True, chunk_size=4)
    # the step form is for T = S (one key per query); aligned bottom-right otherwise
    state, outs = None, []
    for t in range(S):
        i = t - (S - T)
        qt = q[:, i] if 0 <= i < T else torch.zeros_like(q[:, 0])
        o, state = linear_attention_step(qt, k[:, t], v[:, t], state)
        if 0 <= i < T:
            outs.append(o)
    if T > S:  # queries before the first key see nothing
        outs = [torch.zeros_like(v[:, 0])] * (T - S) + outs
    _close(torch.stack(outs, dim=1), out_parallel.double())
    assert isinstance(state, LinearAttentionState)
    assert state.S.shape == (2, 3, 4) and state.z.shape == (2, 3)


def test_recurrent_state_has_constant_size_and_gradients_match():
    q, k, v = _qkv((3, 12, 4), 12, 4)
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    state, outs, sizes = None, [], []
    for t in range(12):
        o, state = linear_attention_step(q[:, t], k[:, t], v[:, t], state)
        outs.append(o)
        sizes.append(state.nbytes)
    assert len(set(sizes)) == 1 and sizes[0] == (3 * 4 * 4 + 3 * 4) * 8
    w = torch.randn(3, 12, 4, dtype=torch.float64)
    g_rec = torch.autograd.grad((torch.stack(outs, 1) * w).sum(), (q, k, v))
    g_par = torch.autograd.grad((linear_attention(q, k, v, causal=True, chunk_size=5) * w).sum(), (q, k, v))
    for a, b in zip(g_rec, g_par):
        torch.testing.assert_close(a, b)


def test_linear_attention_gradcheck():
    q, k, v = _qkv((1, 5, 2), 5, 2)
    for causal in (False, True):
        inputs = tuple(x.clone().requires_grad_() for x in (q, k, v))
        assert torch.autograd.gradcheck(
            lambda a, b, c, causal=causal: linear_attention(a, b, c, causal=causal, chunk_size=2), inputs
        )


# ---------------------------------------------------------------------------------------------
# sliding windows
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T,S", [(7, 7), (5, 9), (9, 5), (1, 1), (33, 33), (0, 4), (4, 0), (3, 40)])
@pytest.mark.parametrize("window", [1, 2, 3, 8, 50])
@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window_attention_matches_brute_force(T, S, window, causal):
    q, k, v = _qkv((2, T, 4), S, 3)
    out = sliding_window_attention(q, k, v, window, causal=causal)
    assert out.shape == (2, T, 3)
    _close(out, _brute(q, k, v, _window_allowed(T, S, window, causal), _softmax_weight(0.5)))


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 24), S=st.integers(0, 24), window=st.integers(1, 12), causal=st.booleans())
def test_sliding_window_property_blocked_equals_banded_mask(T, S, window, causal):
    q, k, v = _qkv((3, T, 2), S, 2, seed=T + 31 * S)
    mask = sliding_window_mask(T, S, window=window, causal=causal)
    expected, _ = scaled_dot_product_attention(q, k, v, mask=mask)
    _close(sliding_window_attention(q, k, v, window, causal=causal), expected)


def test_sliding_window_mask_definition():
    for T, S, w in [(6, 6, 2), (4, 7, 3), (7, 4, 2)]:
        for causal in (True, False):
            m = sliding_window_mask(T, S, window=w, causal=causal)
            allowed = _window_allowed(T, S, w, causal)
            expected = torch.tensor([[allowed(i, j) for j in range(S)] for i in range(T)])
            assert m.dtype == torch.bool and torch.equal(m, expected)


def test_wide_window_is_full_attention_and_scale_is_used():
    q, k, v = _qkv((2, 10, 4), 10, 3)
    full, _ = scaled_dot_product_attention(q, k, v, causal=True)
    _close(sliding_window_attention(q, k, v, 10), full)
    _close(sliding_window_attention(q, k, v, 1000), full)
    scaled, _ = scaled_dot_product_attention(q, k, v, causal=True, scale=0.1)
    _close(sliding_window_attention(q, k, v, 10, scale=0.1), scaled)


def test_sliding_window_rows_with_no_key_are_zero_with_zero_gradient():
    q, k, v = _qkv((1, 6, 3), 2, 3)  # T > S causal: queries 0..3 see no key
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    out = sliding_window_attention(q, k, v, 3, causal=True)
    assert torch.equal(out[:, :4], torch.zeros_like(out[:, :4]))
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.equal(q.grad[:, :4], torch.zeros_like(q.grad[:, :4]))


def test_sliding_window_gradcheck():
    q, k, v = _qkv((1, 7, 2), 7, 2)
    for causal in (True, False):
        inputs = tuple(x.clone().requires_grad_() for x in (q, k, v))
        assert torch.autograd.gradcheck(
            lambda a, b, c, causal=causal: sliding_window_attention(a, b, c, 3, causal=causal), inputs
        )


# ---------------------------------------------------------------------------------------------
# strided sparse attention
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 2, 5, 16, 17, 33])
@pytest.mark.parametrize("stride", [1, 2, 3, 4, 40])
@pytest.mark.parametrize("causal", [True, False])
def test_strided_attention_matches_brute_force(T, stride, causal):
    q, k, v = _qkv((2, T, 4), T, 3)
    out = strided_attention(q, k, v, stride, causal=causal)
    _close(out, _brute(q, k, v, _strided_allowed(stride, causal), _softmax_weight(0.5)))


@settings(max_examples=30, deadline=None)
@given(T=st.integers(1, 40), stride=st.integers(1, 10), causal=st.booleans())
def test_strided_property_equals_masked_reference(T, stride, causal):
    q, k, v = _qkv((2, T, 3), T, 2, seed=T * 7 + stride)
    expected, _ = scaled_dot_product_attention(q, k, v, mask=strided_mask(T, stride=stride, causal=causal))
    _close(strided_attention(q, k, v, stride, causal=causal), expected)


def test_strided_mask_definition_and_row_counts():
    for T, stride in [(9, 3), (16, 4), (5, 7)]:
        for causal in (True, False):
            allowed = _strided_allowed(stride, causal)
            expected = torch.tensor([[allowed(i, j) for j in range(T)] for i in range(T)])
            assert torch.equal(strided_mask(T, stride=stride, causal=causal), expected)
    # the last row of a causal mask with stride sqrt(T): about 2 sqrt(T) keys, not T
    m = strided_mask(256, stride=16)
    assert int(m[-1].sum()) == 16 + 15  # 16 local (incl. itself) + 15 earlier multiples


def test_strided_gradcheck():
    q, k, v = _qkv((1, 7, 2), 7, 2)
    inputs = tuple(x.clone().requires_grad_() for x in (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: strided_attention(a, b, c, 2), inputs)


# ---------------------------------------------------------------------------------------------
# Performer random features
# ---------------------------------------------------------------------------------------------


def test_favor_features_estimate_the_softmax_kernel_without_bias():
    D, m = 4, 64
    q = torch.tensor([0.3, -0.5, 0.8, 0.1], dtype=torch.float64)
    k = torch.tensor([-0.2, 0.4, 0.6, -0.7], dtype=torch.float64)
    target = math.exp(float(q @ k) / math.sqrt(D))
    g = torch.Generator().manual_seed(0)
    estimates = []
    for _ in range(400):
        fm = FavorFeatures(D, m, orthogonal=False, generator=g).double()
        estimates.append(float(fm(q) @ fm(k)))
    est = torch.tensor(estimates, dtype=torch.float64)
    stderr = float(est.std()) / math.sqrt(len(estimates))
    assert abs(float(est.mean()) - target) < 4 * stderr
    assert (est > 0).all()


def test_favor_orthogonal_blocks_and_shapes():
    fm = FavorFeatures(8, 20, generator=torch.Generator().manual_seed(1)).double()
    W = fm.omega
    for start in (0, 8, 16):
        block = W[start : start + 8]
        gram = block @ block.T
        norms = torch.diagonal(gram).sqrt()
        cosines = (gram - torch.diag(torch.diagonal(gram))) / (norms[:, None] * norms[None, :])
        assert cosines.abs().max() < 1e-6  # orthogonal up to the float32 rounding of the buffer
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    assert fm(x).shape == (3, 5, 20) and (fm(x) > 0).all()
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., D=8\), got \(3, 5\)"):
        fm(torch.randn(3, 5))
    with pytest.raises(ValueError, match="num_features"):
        FavorFeatures(8, 0)


def test_favor_linear_attention_approaches_softmax_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 16, 8, generator=g, dtype=torch.float64) * 0.5 for _ in range(3))
    exact, _ = scaled_dot_product_attention(q, k, v)
    errors = []
    for m in (16, 4096):
        fm = FavorFeatures(8, m, generator=torch.Generator().manual_seed(2)).double()
        errors.append(float((linear_attention(q, k, v, feature_map=fm) - exact).abs().max()))
    assert errors[1] < 0.05 and errors[1] < errors[0] / 3


# ---------------------------------------------------------------------------------------------
# receptive field
# ---------------------------------------------------------------------------------------------


def test_receptive_field_of_stacked_windows():
    T, w = 40, 4
    mask = sliding_window_mask(T, window=w)
    for L in range(0, 6):
        R = receptive_field(mask, L)
        # after L layers the last position reaches back L (w - 1) steps
        assert int(R[-1].sum()) == min(T, L * (w - 1) + 1)
    assert torch.equal(receptive_field(mask, 0), torch.eye(T, dtype=torch.bool))


def test_receptive_field_matches_path_search():
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(9, 9, generator=g) < 0.2
    R = receptive_field(mask, 3)
    edges = mask | torch.eye(9, dtype=torch.bool)
    for i in range(9):
        frontier = {i}
        for _ in range(3):  # inputs reachable by walking back 3 layers
            frontier = {j for f in frontier for j in range(9) if edges[f, j]}
        assert {j for j in range(9) if R[i, j]} == frontier


def test_two_strided_layers_reach_every_earlier_position():
    m = strided_mask(64, stride=8)
    R = receptive_field(m, 2)
    assert torch.equal(R, torch.ones(64, 64, dtype=torch.bool).tril())
    assert not torch.equal(receptive_field(m, 1), R)


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [
    lambda q, k, v: linear_attention(q, k, v),
    lambda q, k, v: sliding_window_attention(q, k, v, 2),
    lambda q, k, v: strided_attention(q, k, v, 2),
])
def test_shape_errors_name_the_arguments(fn):
    q = torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match=r"q and k must have the same feature size D, got q \(2, 5, 4\) and k \(2, 5, 3\)"):
        fn(q, torch.randn(2, 5, 3), torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match=r"k and v must have the same number of keys S"):
        fn(q, torch.randn(2, 5, 4), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match=r"q must have 2 or 3 or"):
        fn(torch.randn(4), torch.randn(2, 5, 4), torch.randn(2, 5, 4))


def test_option_errors():
    q = torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match="window must be a positive int, got 0"):
        sliding_window_attention(q, q, q, 0)
    with pytest.raises(ValueError, match="stride must be a positive int, got 2.5"):
        strided_attention(q, q, q, 2.5)
    with pytest.raises(ValueError, match=r"same length, got q \(2, 5, 4\) and k \(2, 6, 4\)"):
        strided_attention(q, torch.randn(2, 6, 4), torch.randn(2, 6, 4), 2)
    with pytest.raises(ValueError, match="causal must be a bool"):
        linear_attention(q, q, q, causal="yes")
    with pytest.raises(ValueError, match="feature_map must be None or a callable"):
        linear_attention(q, q, q, feature_map=3)
    with pytest.raises(ValueError, match=r"feature_map must give queries and keys the same feature size"):
        k6 = torch.randn(2, 6, 4)
        linear_attention(q, k6, k6, feature_map=lambda x: x if x.shape[-2] == 5 else x[..., :2])
    with pytest.raises(ValueError, match=r"feature_map must map q \(2, 5, 4\)"):
        linear_attention(q, q, q, feature_map=lambda x: x.sum())
    with pytest.raises(ValueError, match="chunk_size"):
        linear_attention(q, q, q, chunk_size=0)
    with pytest.raises(ValueError, match=r"state must be a LinearAttentionState with S \(2, 4, 4\)"):
        linear_attention_step(q[:, 0], q[:, 0], q[:, 0], LinearAttentionState(torch.zeros(3), torch.zeros(3)))
    with pytest.raises(ValueError, match=r"q_t and k_t must have the same shape"):
        linear_attention_step(q[:, 0], q[:, 0, :3], q[:, 0])
    with pytest.raises(ValueError, match="window must be a positive int"):
        sliding_window_mask(4, window=0)
    with pytest.raises(ValueError, match="mask must be boolean"):
        receptive_field(torch.ones(3, 3), 1)
    with pytest.raises(ValueError, match=r"mask must be square \(T, T\), got \(3, 4\)"):
        receptive_field(torch.ones(3, 4, dtype=torch.bool), 1)


# ---------------------------------------------------------------------------------------------
# devices, dtypes, autocast
# ---------------------------------------------------------------------------------------------

FUNCTIONS = {
    "linear": lambda q, k, v: linear_attention(q, k, v, causal=True, chunk_size=4),
    "linear-full": lambda q, k, v: linear_attention(q, k, v),
    "window": lambda q, k, v: sliding_window_attention(q, k, v, 3),
    "window-full": lambda q, k, v: sliding_window_attention(q, k, v, 3, causal=False),
    "strided": lambda q, k, v: strided_attention(q, k, v, 3),
    "favor": lambda q, k, v: linear_attention(
        q, k, v, feature_map=FavorFeatures(8, 32, generator=torch.Generator().manual_seed(0)).to(q.device)
    ),
}


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_device_and_dtype_follow_the_inputs(name, device, dtype, tol):
    fn = FUNCTIONS[name]
    q, k, v = _qkv((2, 2, 11, 8), 11, 8, seed=5)
    expected = fn(q, k, v)  # float64 on the CPU
    out = fn(*(x.to(device=device, dtype=dtype) for x in (q, k, v)))
    assert out.dtype == dtype and out.device.type == device.type
    torch.testing.assert_close(out.cpu().double(), expected, **tol)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_float16_is_computed_in_float32(name):
    fn = FUNCTIONS[name]
    q, k, v = _qkv((1, 2, 40, 8), 40, 8, seed=6)
    q = q * 4  # large scores: a float16 softmax or running sum would lose much more than this
    expected = fn(q, k, v)
    out = fn(*(x.half() for x in (q, k, v)))
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_autocast_does_not_lower_the_working_precision(name):
    fn = FUNCTIONS[name]
    q, k, v = _qkv((1, 2, 12, 8), 12, 8, seed=7, dtype=torch.float32)
    plain = fn(q, k, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = fn(q, k, v)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, plain)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_no_host_synchronisation_on_cuda(name):
    fn = FUNCTIONS[name]
    q, k, v = _qkv((1, 2, 33, 8), 33, 8, dtype=torch.float32, device="cuda")
    fn(q, k, v)  # warm-up (lazy initialisation may synchronise)
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn(q, k, v)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ---------------------------------------------------------------------------------------------
# the swappable decoder
# ---------------------------------------------------------------------------------------------


def test_causal_attention_kinds_and_errors():
    q, k, v = _qkv((2, 2, 9, 4), 9, 4, dtype=torch.float32)
    exact = causal_attention("exact")(q, k, v)
    torch.testing.assert_close(causal_attention("materialised")(q, k, v), exact)
    torch.testing.assert_close(causal_attention("window", window=9)(q, k, v), exact)
    torch.testing.assert_close(causal_attention("strided", stride=9)(q, k, v), exact)
    torch.testing.assert_close(causal_attention("linear")(q, k, v), linear_attention(q, k, v, causal=True))
    with pytest.raises(ValueError, match=r"kind must be one of \('exact'"):
        causal_attention("fast")


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_swappable_decoder_is_causal_and_trains(kind, device):
    torch.manual_seed(0)
    model = SwappableDecoder(13, 16, 2, 2, attention=kind, window=3, stride=3).to(device)
    x = torch.randint(0, 13, (2, 12), device=device)
    logits = model(x)
    assert logits.shape == (2, 12, 13)
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 1) % 13  # change the future
    torch.testing.assert_close(model(y)[:, :7], logits[:, :7])  # the past does not move
    logits.logsumexp(-1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_set_attention_keeps_the_parameters():
    torch.manual_seed(0)
    model = SwappableDecoder(11, 32, 4, 2).eval()
    x = torch.randint(0, 11, (2, 300))  # past the initial table of 256 positions
    exact = model(x)
    state = {k: t.clone() for k, t in model.state_dict().items()}
    for kind, opts in [("window", {"window": 300}), ("strided", {"stride": 300}), ("materialised", {})]:
        torch.testing.assert_close(model.set_attention(kind, **opts)(x), exact, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(state[k], t) for k, t in model.state_dict().items())
    calls = []
    model.set_attention(lambda q, k, v: calls.append(q.shape) or F.scaled_dot_product_attention(q, k, v, is_causal=True))
    torch.testing.assert_close(model(x), exact, rtol=1e-4, atol=1e-4)
    assert calls == [(2, 4, 300, 8)] * 2


def test_swappable_validation():
    with pytest.raises(ValueError, match="d_model must be divisible by num_heads, got 10 and 4"):
        SwappableSelfAttention(10, 4, causal_attention("exact"))
    with pytest.raises(ValueError, match="attention must be callable"):
        SwappableSelfAttention(8, 2, "exact")
    with pytest.raises(ValueError, match=r"attention must be one of .* or a callable"):
        SwappableDecoder(5, 8, 2, 1, attention=3)
    model = SwappableDecoder(5, 8, 2, 1)
    with pytest.raises(ValueError, match=r"tokens must have 2 dimensions, got shape \(4,\)"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, d_model=8\), got \(1, 2, 4\)"):
        model.blocks[0].self_attn(torch.zeros(1, 2, 4))
