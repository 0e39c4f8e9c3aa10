"""Attention below quadratic cost: linear attention, sliding windows, a strided sparse
pattern, Performer's random features, and a small decoder whose attention can be swapped.

Shapes follow :func:`attnbook.functional.scaled_dot_product_attention`: q ``(..., T, D)``,
k ``(..., S, D)``, v ``(..., S, Dv)`` -> out ``(..., T, Dv)`` (out only; none of these functions
forms the ``T x S`` weight matrix). Positions are aligned bottom-right as in the rest of the
package: query ``i`` sits at position ``p_i = i + (S - T)`` of the key sequence.

* :func:`linear_attention` — ``out_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / φ(q_i)ᵀ Σ_j φ(k_j)``
  (Katharopoulos et al. 2020), default ``φ(x) = elu(x) + 1``. Linear in the length: the sums
  are formed once (non-causal) or chunk by chunk (causal). :func:`linear_attention_step` is
  the same causal function as a recurrence with a constant-size state
  ``S_t = S_{t-1} + φ(k_t) v_tᵀ``, ``z_t = z_{t-1} + φ(k_t)`` (an RNN with a matrix state).
* :func:`sliding_window_attention` — softmax attention restricted to the keys ``j`` with
  ``p_i - window < j <= p_i`` (causal) or ``|p_i - j| < window``; computed in blocks of
  ``window`` queries, each against its own block of keys and the one before (and after, when
  not causal), so time and memory are ``O(T · window)``. :func:`sliding_window_mask` is the banded reference.
* :func:`strided_attention` — the strided pattern of Child et al. (2019): query ``i`` sees the
  last ``stride`` keys and every ``stride``-th key before them, ``O(T (stride + T / stride))``.
  :func:`strided_mask` is the reference mask.
* :class:`FavorFeatures` — Performer's positive orthogonal random features (Choromanski et al.
  2021), a feature map for :func:`linear_attention` whose dot products estimate
  ``exp(qᵀk / sqrt(D))`` without bias.
* :func:`receptive_field` — which inputs can reach which outputs after ``L`` stacked layers.
* :class:`SwappableDecoder` — a pre-norm decoder-only language model built from
  :class:`SwappableSelfAttention` blocks whose causal attention function is a parameter
  (``"exact"``, ``"materialised"``, ``"window"``, ``"strided"``, ``"linear"`` or a callable).

Every function validates its arguments before computing (``ValueError`` naming the argument
and the shapes), follows the device and dtype of its inputs, computes float16/bfloat16 inputs
in float32 (autocast off inside), returns zeros for a query that sees no key, and never reads a
device tensor back to the host.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_ndim, require, shape_of
from .functional import _check_qkv, scaled_dot_product_attention
from .positional import sinusoidal_encoding

__all__ = [
    "elu_feature_map",
    "linear_attention",
    "LinearAttentionState",
    "linear_attention_step",
    "sliding_window_mask",
    "sliding_window_attention",
    "strided_mask",
    "strided_attention",
    "FavorFeatures",
    "receptive_field",
    "ATTENTION_KINDS",
    "causal_attention",
    "SwappableSelfAttention",
    "SwappableDecoder",
]

FeatureMap = Callable[[torch.Tensor], torch.Tensor]
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def _check_positive_int(name: str, value: object) -> None:
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        f"{name} must be a positive int, got {value!r}",
    )


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half inputs (sums of many terms overflow or lose precision in 16 bits)."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


@contextlib.contextmanager
def _no_autocast(device: torch.device) -> Iterator[None]:
    """Autocast off on ``device``: the working dtype chosen here is the one used."""
    if device.type in ("cpu", "cuda", "mps", "xpu"):
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    else:  # pragma: no cover - devices without autocast
        yield


def _softmax_keep(scores: torch.Tensor, keep: torch.Tensor, may_be_empty: bool) -> torch.Tensor:
    """Softmax over the last dimension restricted to ``keep`` (bool, broadcastable to
    ``scores``); a row with nothing kept gives zeros.

    The mask is turned into an additive bias (0 or -inf) that leaves fully masked rows finite,
    so one fused softmax does the work; those rows are zeroed afterwards when ``may_be_empty``
    (the callers know it from the shapes alone, so nothing is read back from the device).
    """
    row_any = keep.any(dim=-1, keepdim=True)  # (..., 1)
    bias = torch.zeros(keep.shape, dtype=scores.dtype, device=scores.device)
    bias.masked_fill_(~keep & row_any, float("-inf"))
    weights = torch.softmax(scores + bias, dim=-1)
    return weights * row_any if may_be_empty else weights


def _pad_time(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Zero-pad (or, for a negative count, trim) dimension -2 of ``x (..., n, d)``."""
    if before < 0:
        x, before = x[..., -before:, :], 0
    if after < 0:
        x, after = x[..., : x.shape[-2] + after, :], 0
    return F.pad(x, (0, 0, before, after))


# --------------------------------------------------------------------------------------------
# linear attention (Katharopoulos et al. 2020)
# --------------------------------------------------------------------------------------------


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """``φ(x) = elu(x) + 1`` elementwise: positive everywhere, ``x + 1`` for ``x > 0`` and
    ``e^x`` below (Katharopoulos et al. 2020). ``(..., D) -> (..., D)``."""
    return F.elu(x) + 1.0


def _apply_feature_map(
    feature_map: FeatureMap | None, phi_in: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    fm = elu_feature_map if feature_map is None else feature_map
    out = {name: fm(x) for name, x in phi_in.items()}
    shapes = {name: shape_of(x) for name, x in phi_in.items()}
    for name, y in out.items():
        x = phi_in[name]
        require(
            isinstance(y, torch.Tensor) and y.shape[:-1] == x.shape[:-1],
            f"feature_map must map {name} {shape_of(x)} to a tensor of shape (..., F) with the "
            f"same leading dimensions, got {shape_of(y) if isinstance(y, torch.Tensor) else type(y).__name__}",
        )
    sizes = {y.shape[-1] for y in out.values()}
    require(
        len(sizes) == 1,
        f"feature_map must give queries and keys the same feature size F, got "
        f"{ {n: shape_of(y) for n, y in out.items()} } from inputs {shapes}",
    )
    return out


def _linear_causal(phi_q, phi_k, v, chunk: int, S0=None, z0=None):
    """Causal linear attention with query ``i`` aligned to key ``i`` (``T = S``), chunk by chunk.

    phi_q, phi_k ``(..., T, F)``, v ``(..., T, Dv)``; optional initial state ``S0 (..., F, Dv)``,
    ``z0 (..., F)`` (keys every query sees). Returns numerator ``(..., T, Dv)`` and denominator
    ``(..., T)``. Inside a chunk of ``C`` steps the masked ``C x C`` product is formed; across
    chunks the running state carries the sums, so memory is ``O(T (C + F Dv / C))``.
    """
    T = phi_q.shape[-2]
    if T <= chunk and S0 is None:  # one chunk: the masked T x T form, nothing to carry
        tril = torch.ones(T, T, dtype=torch.bool, device=v.device).tril()  # (T, T)
        A = (phi_q @ phi_k.transpose(-2, -1)).masked_fill(~tril, 0.0)  # (..., T, T)
        return A @ v, A.sum(dim=-1)  # (..., T, Dv), (..., T)
    C = max(1, min(chunk, T))
    n = -(-T // C)  # number of chunks
    pad = n * C - T
    Qc = _pad_time(phi_q, 0, pad).unflatten(-2, (n, C))  # (..., n, C, F)
    Kc = _pad_time(phi_k, 0, pad).unflatten(-2, (n, C))  # (..., n, C, F)
    Vc = _pad_time(v, 0, pad).unflatten(-2, (n, C))  # (..., n, C, Dv)
    KV = Kc.transpose(-2, -1) @ Vc  # (..., n, F, Dv): Σ_{j in chunk} φ(k_j) v_jᵀ
    Kz = Kc.sum(dim=-2)  # (..., n, F)
    # state before each chunk: exclusive prefix sums over the chunks
    S_prev = torch.cat([torch.zeros_like(KV[..., :1, :, :]), KV[..., :-1, :, :].cumsum(-3)], -3)
    z_prev = torch.cat([torch.zeros_like(Kz[..., :1, :]), Kz[..., :-1, :].cumsum(-2)], -2)
    if S0 is not None:
        S_prev = S_prev + S0.unsqueeze(-3)  # (..., n, F, Dv)
        z_prev = z_prev + z0.unsqueeze(-2)  # (..., n, F)
    tril = torch.ones(C, C, dtype=torch.bool, device=v.device).tril()  # (C, C)
    A = (Qc @ Kc.transpose(-2, -1)).masked_fill(~tril, 0.0)  # (..., n, C, C)
    num = Qc @ S_prev + A @ Vc  # (..., n, C, Dv)
    den = (Qc * z_prev.unsqueeze(-2)).sum(-1) + A.sum(-1)  # (..., n, C)
    num = num.flatten(-3, -2)[..., :T, :]  # (..., T, Dv)
    den = den.flatten(-2, -1)[..., :T]  # (..., T)
    return num, den


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    feature_map: FeatureMap | None = None,
    *,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Linear attention: ``out_i = φ(q_i)ᵀ (Σ_j φ(k_j) v_jᵀ) / φ(q_i)ᵀ (Σ_j φ(k_j))``.

    Softmax attention weighs key ``j`` by ``exp(q_i·k_j/√D)``; replacing that kernel with
    ``φ(q_i)·φ(k_j)`` lets the sums over ``j`` be formed once and shared by every query
    (associativity: ``(φ(Q) φ(K)ᵀ) V = φ(Q) (φ(K)ᵀ V)``), for ``O((T + S) F Dv)`` time and
    ``O(F Dv)`` extra memory instead of ``O(T S)`` (Katharopoulos et al. 2020).
    ``feature_map`` maps ``(..., D) -> (..., F)`` with positive outputs (default
    :func:`elu_feature_map`, which is ``elu(x) + 1``; see :class:`FavorFeatures` for
    Performer's). With ``causal=True`` query ``i`` sums over keys ``j <= i + (S - T)``, chunk by
    chunk (``chunk_size`` steps): the parallel form of :func:`linear_attention_step`.

    q ``(..., T, D)``, k ``(..., S, D)``, v ``(..., S, Dv)`` -> ``(..., T, Dv)``. A query with no
    visible key (or a zero denominator) gives zeros. Half inputs are computed in float32.
    """
    _check_qkv(q, k, v)
    require(isinstance(causal, bool), f"causal must be a bool, got {causal!r}")
    require(
        feature_map is None or callable(feature_map),
        f"feature_map must be None or a callable, got {type(feature_map).__name__}",
    )
    _check_positive_int("chunk_size", chunk_size)
    T, S, Dv = q.shape[-2], k.shape[-2], v.shape[-1]
    work = _work_dtype(q)
    with _no_autocast(q.device):
        phi = _apply_feature_map(feature_map, {"q": q.to(work), "k": k.to(work)})
        phi_q, phi_k, v_w = phi["q"], phi["k"], v.to(work)  # (..., T, F), (..., S, F), (..., S, Dv)
        if not causal:
            KV = phi_k.transpose(-2, -1) @ v_w  # (..., F, Dv)
            z = phi_k.sum(dim=-2)  # (..., F)
            num = phi_q @ KV  # (..., T, Dv)
            den = phi_q @ z.unsqueeze(-1)  # (..., T, 1)
            return (num / torch.where(den > 0, den, torch.ones_like(den))).to(q.dtype)
        shift = S - T  # query i sees keys j <= i + shift
        if shift == 0:
            num, den = _linear_causal(phi_q, phi_k, v_w, chunk_size)
        elif shift > 0:  # keys 0..shift-1 are seen by every query: an initial state
            pre_k, pre_v = phi_k[..., :shift, :], v_w[..., :shift, :]
            S0 = pre_k.transpose(-2, -1) @ pre_v  # (..., F, Dv)
            z0 = pre_k.sum(dim=-2)  # (..., F)
            num, den = _linear_causal(phi_q, phi_k[..., shift:, :], v_w[..., shift:, :],
                                      chunk_size, S0, z0)
        else:  # the first -shift queries see no key at all
            num, den = _linear_causal(phi_q[..., -shift:, :], phi_k, v_w, chunk_size)
            num = _pad_time(num, -shift, 0)  # (..., T, Dv), zero rows first
            den = F.pad(den, (-shift, 0))  # (..., T)
        den = den.unsqueeze(-1)  # (..., T, 1)
        out = num / torch.where(den > 0, den, torch.ones_like(den))
    return out.reshape(*q.shape[:-1], Dv).to(q.dtype)


@dataclass
class LinearAttentionState:
    """The recurrent state of causal linear attention after ``t`` steps:
    ``S = Σ_{j<=t} φ(k_j) v_jᵀ`` ``(..., F, Dv)`` and ``z = Σ_{j<=t} φ(k_j)`` ``(..., F)``.
    Its size does not depend on ``t``."""

    S: torch.Tensor
    z: torch.Tensor

    @property
    def nbytes(self) -> int:
        """Bytes held by the state (constant over time)."""
        return self.S.numel() * self.S.element_size() + self.z.numel() * self.z.element_size()


def linear_attention_step(
    q_t: torch.Tensor,
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    state: LinearAttentionState | None = None,
    *,
    feature_map: FeatureMap | None = None,
) -> tuple[torch.Tensor, LinearAttentionState]:
    """One step of causal linear attention as a recurrence (an RNN with a matrix state):

    ``S_t = S_{t-1} + φ(k_t) v_tᵀ``, ``z_t = z_{t-1} + φ(k_t)``,
    ``out_t = φ(q_t)ᵀ S_t / φ(q_t)ᵀ z_t``.

    q_t, k_t ``(..., D)``, v_t ``(..., Dv)``; ``state`` from the previous step (``None`` at the
    start) -> (out_t ``(..., Dv)``, the new state). Feeding ``t = 0, 1, ...`` in turn gives
    ``linear_attention(q, k, v, causal=True)`` row by row, in constant memory per step. The
    state is kept in float32 for half inputs; the inputs are not modified (autograd works).
    """
    for name, x in (("q_t", q_t), ("k_t", k_t), ("v_t", v_t)):
        check_ndim(name, x, range(1, 8))
        require(x.is_floating_point(), f"{name} must be floating point, got dtype {x.dtype}")
    require(
        q_t.shape == k_t.shape and v_t.shape[:-1] == q_t.shape[:-1],
        f"q_t and k_t must have the same shape (..., D) and v_t the shape (..., Dv) with the same "
        f"leading dimensions, got q_t {shape_of(q_t)}, k_t {shape_of(k_t)}, v_t {shape_of(v_t)}",
    )
    require(
        q_t.dtype == k_t.dtype == v_t.dtype and q_t.device == k_t.device == v_t.device,
        f"q_t, k_t and v_t must share dtype and device, got {q_t.dtype}/{q_t.device}, "
        f"{k_t.dtype}/{k_t.device}, {v_t.dtype}/{v_t.device}",
    )
    require(
        feature_map is None or callable(feature_map),
        f"feature_map must be None or a callable, got {type(feature_map).__name__}",
    )
    work = _work_dtype(q_t)
    with _no_autocast(q_t.device):
        phi = _apply_feature_map(feature_map, {"q_t": q_t.to(work), "k_t": k_t.to(work)})
        phi_q, phi_k, v_w = phi["q_t"], phi["k_t"], v_t.to(work)  # (..., F), (..., F), (..., Dv)
        lead, Fdim, Dv = q_t.shape[:-1], phi_q.shape[-1], v_t.shape[-1]
        if state is None:
            S_prev = torch.zeros(*lead, Fdim, Dv, dtype=work, device=q_t.device)
            z_prev = torch.zeros(*lead, Fdim, dtype=work, device=q_t.device)
        else:
            require(
                isinstance(state, LinearAttentionState)
                and state.S.shape == (*lead, Fdim, Dv) and state.z.shape == (*lead, Fdim),
                f"state must be a LinearAttentionState with S {(*lead, Fdim, Dv)} and z "
                f"{(*lead, Fdim)} for q_t {shape_of(q_t)} and v_t {shape_of(v_t)}, got "
                + (f"S {shape_of(state.S)} and z {shape_of(state.z)}"
                   if isinstance(state, LinearAttentionState) else type(state).__name__),
            )
            S_prev, z_prev = state.S, state.z
        S_t = S_prev + phi_k.unsqueeze(-1) * v_w.unsqueeze(-2)  # (..., F, Dv)
        z_t = z_prev + phi_k  # (..., F)
        num = (phi_q.unsqueeze(-2) @ S_t).squeeze(-2)  # (..., Dv)
        den = (phi_q * z_t).sum(dim=-1, keepdim=True)  # (..., 1)
        out = num / torch.where(den > 0, den, torch.ones_like(den))
    return out.to(q_t.dtype), LinearAttentionState(S_t, z_t)


# --------------------------------------------------------------------------------------------
# Performer's random features (Choromanski et al. 2021)
# --------------------------------------------------------------------------------------------


def _orthogonal_gaussian(m: int, d: int, generator: torch.Generator | None) -> torch.Tensor:
    """``m`` rows in ``R^d`` that are exactly orthogonal within each block of ``d`` rows and
    whose lengths are distributed like those of Gaussian vectors. ``(m, d)`` float64."""
    n_blocks = -(-m // d)
    G = torch.randn(n_blocks, d, d, generator=generator, dtype=torch.float64)
    Qm, _ = torch.linalg.qr(G)  # (blocks, d, d), orthonormal columns in each block
    W = Qm.transpose(-2, -1).reshape(n_blocks * d, d)[:m]  # (m, d) unit rows
    norms = torch.randn(m, d, generator=generator, dtype=torch.float64).norm(dim=1)  # chi_d
    return W * norms[:, None]


class FavorFeatures(nn.Module):
    """Positive random features ``φ(x) = exp(ωᵢᵀx' - |x'|²/2) / √m``, ``x' = x / D^{1/4}``,
    ``i = 1..m`` (FAVOR+, Choromanski et al. 2021), as a ``feature_map`` for
    :func:`linear_attention`.

    With ``ω ~ N(0, I_D)``, ``E[φ(q)ᵀφ(k)] = exp(q'ᵀk') = exp(qᵀk / √D)``: the softmax kernel,
    estimated without bias and with positive terms only. ``orthogonal=True`` draws the ``ω`` in
    exactly orthogonal blocks of ``D`` (lengths still Gaussian), which lowers the variance.
    The exponent is at most ``|ωᵢ|²/2`` (complete the square), so it cannot overflow.
    ``(..., D) -> (..., m)``; ``redraw(generator)`` draws new ``ω``.
    """

    omega: torch.Tensor

    def __init__(
        self,
        dim: int,
        num_features: int,
        *,
        orthogonal: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int("dim", dim)
        _check_positive_int("num_features", num_features)
        self.dim, self.num_features, self.orthogonal = dim, num_features, orthogonal
        self.register_buffer("omega", torch.empty(num_features, dim))
        self.redraw(generator)

    @torch.no_grad()
    def redraw(self, generator: torch.Generator | None = None) -> None:
        """Draw new projections ``ω`` (on the CPU with ``generator``, then moved)."""
        m, d = self.num_features, self.dim
        if self.orthogonal:
            W = _orthogonal_gaussian(m, d, generator)
        else:
            W = torch.randn(m, d, generator=generator, dtype=torch.float64)
        self.omega.copy_(W.to(self.omega.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require(
            isinstance(x, torch.Tensor) and x.dim() >= 1 and x.shape[-1] == self.dim,
            f"x must have shape (..., D={self.dim}), got {shape_of(x)}",
        )
        x = x * self.dim**-0.25  # (..., D)
        omega = self.omega.to(dtype=x.dtype)  # (m, D)
        proj = x @ omega.T  # (..., m)
        expo = proj - 0.5 * (x * x).sum(dim=-1, keepdim=True)  # (..., m)
        return torch.exp(expo) / math.sqrt(self.num_features)  # (..., m)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_features={self.num_features}, orthogonal={self.orthogonal}"


# --------------------------------------------------------------------------------------------
# sliding-window (local) attention
# --------------------------------------------------------------------------------------------


def _check_window(window: object) -> None:
    _check_positive_int("window", window)


def sliding_window_mask(
    T: int,
    S: int | None = None,
    *,
    window: int,
    causal: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Banded boolean mask ``(T, S)`` (True = may attend) with query ``i`` at position
    ``p = i + (S - T)``: ``p - window < j <= p`` when ``causal``, ``|p - j| < window``
    otherwise. The reference for :func:`sliding_window_attention`."""
    S = T if S is None else S
    require(isinstance(T, int) and T >= 0, f"T must be a non-negative int, got {T!r}")
    require(isinstance(S, int) and S >= 0, f"S must be a non-negative int, got {S!r}")
    _check_window(window)
    p = torch.arange(T, device=device).unsqueeze(1) + (S - T)  # (T, 1)
    j = torch.arange(S, device=device).unsqueeze(0)  # (1, S)
    if causal:
        return (j <= p) & (j > p - window)  # (T, S)
    return (j - p).abs() < window  # (T, S)


def _local_blocks(q, k, v, w: int, causal: bool):
    """Cut attention into blocks of ``w`` queries, each with the slab of keys its window covers.

    q ``(..., T, D)``, k ``(..., S, D)``, v ``(..., S, Dv)`` -> Qb ``(..., n, w, D)``,
    Kb ``(..., n, L, D)``, Vb ``(..., n, L, Dv)``, keep ``(n, w, L)`` with ``L = 2w`` (causal:
    a block and the one before it) or ``3w`` (also the one after). Keys are trimmed to those
    some query can see and padded so that query ``i`` of block ``b`` (offset ``r``) sees slab
    columns ``r .. r + w - 1`` (causal) or ``r .. r + 2w - 2``.
    """
    T, S = q.shape[-2], k.shape[-2]
    shift = S - T
    lo = max(0, shift - w + 1)  # keys before lo are out of every window
    S2, shift2 = S - lo, shift - lo
    before = w - 1 - shift2  # >= 0: now query i sees padded keys i .. i + (w-1 or 2w-2)
    n = -(-T // w)
    blocks = 2 if causal else 3  # key blocks per query block
    after = (n + blocks - 1) * w - before - S2  # >= 0 since before + S2 = T + w - 1
    Qb = _pad_time(q, 0, n * w - T).unflatten(-2, (n, w))  # (..., n, w, D)
    Kp = _pad_time(k[..., lo:, :], before, after).unflatten(-2, (n + blocks - 1, w))
    Vp = _pad_time(v[..., lo:, :], before, after).unflatten(-2, (n + blocks - 1, w))
    Kb = torch.cat([Kp[..., s : s + n, :, :] for s in range(blocks)], dim=-2)  # (..., n, L, D)
    Vb = torch.cat([Vp[..., s : s + n, :, :] for s in range(blocks)], dim=-2)  # (..., n, L, Dv)
    L = blocks * w
    r = torch.arange(w, device=q.device).view(1, w, 1)  # query offset in its block
    c = torch.arange(L, device=q.device).view(1, 1, L)  # slab column
    b = torch.arange(n, device=q.device).view(n, 1, 1)  # block index
    reach = w - 1 if causal else 2 * w - 2
    pos = b * w + c  # padded key position of each slab column
    keep = (c >= r) & (c <= r + reach) & (pos >= before) & (pos < before + S2)  # (n, w, L)
    return Qb, Kb, Vb, keep


def sliding_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    causal: bool = True,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """Softmax attention over a sliding window of keys, in ``O(T · window)`` time and memory.

    Query ``i`` (at position ``p = i + (S - T)``) attends to keys ``p - window < j <= p``
    (``causal``) or ``|p - j| < window``; with ``T = S``, ``p = i``. Equal to
    ``scaled_dot_product_attention(q, k, v, mask=sliding_window_mask(...))``, but computed in
    blocks of ``window`` queries, each against its own block of ``window`` keys and the block
    before it (and after it, non-causal), which hold every key its windows cover: the score
    tensor is ``(..., T/window, window, 2 window)`` instead of ``(..., T, S)`` (Beltagy et al.
    2020). A query that sees no key gives zeros.

    q ``(..., T, D)``, k ``(..., S, D)``, v ``(..., S, Dv)`` -> ``(..., T, Dv)``; ``scale``
    replaces ``1/√D``. Half inputs are computed in float32.
    """
    _check_qkv(q, k, v)
    _check_window(window)
    require(isinstance(causal, bool), f"causal must be a bool, got {causal!r}")
    T, S, Dv = q.shape[-2], k.shape[-2], v.shape[-1]
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    if T == 0:
        return q.new_zeros(*q.shape[:-1], Dv)
    w = min(window, max(T, S, 1))  # a wider window changes nothing
    work = _work_dtype(q)
    with _no_autocast(q.device):
        Qb, Kb, Vb, keep = _local_blocks(q.to(work), k.to(work), v.to(work), w, causal)
        scores = (Qb * scale) @ Kb.transpose(-2, -1)  # (..., n, w, L)
        empty_rows = S == 0 or T > S  # only queries before the first key see nothing
        out = _softmax_keep(scores, keep, empty_rows) @ Vb  # (..., n, w, Dv)
        out = out.flatten(-3, -2)[..., :T, :]  # (..., T, Dv)
    return out.to(q.dtype)


# --------------------------------------------------------------------------------------------
# a strided sparse pattern (Child et al. 2019)
# --------------------------------------------------------------------------------------------


def strided_mask(
    T: int, *, stride: int, causal: bool = True, device: torch.device | str | None = None
) -> torch.Tensor:
    """The strided pattern of Child et al. (2019) as a boolean ``(T, T)`` mask: query ``i``
    attends to key ``j`` when ``|i - j| < stride`` (the local part) or ``(i - j) mod stride = 0``
    (the strided part), and, when ``causal``, only to ``j <= i``. Each row holds about
    ``stride + T / stride`` keys, ``O(√T)`` for ``stride ≈ √T``."""
    require(isinstance(T, int) and T >= 0, f"T must be a non-negative int, got {T!r}")
    _check_positive_int("stride", stride)
    i = torch.arange(T, device=device).unsqueeze(1)  # (T, 1)
    j = torch.arange(T, device=device).unsqueeze(0)  # (1, T)
    m = ((i - j).abs() < stride) | ((i - j) % stride == 0)  # (T, T)
    return m & (j <= i) if causal else m


def strided_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    stride: int,
    causal: bool = True,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """Softmax self-attention restricted to :func:`strided_mask`, in ``O(T (stride + T/stride))``.

    One softmax over the union of two key sets: the local window (computed in blocks as in
    :func:`sliding_window_attention`) and the keys ``i - stride, i - 2 stride, ...`` (and, when
    not causal, ``i + stride, ...``), found by laying the sequence out as a ``(T/stride, stride)``
    grid, in which they are the other entries of query ``i``'s column. Equal to
    ``scaled_dot_product_attention(q, k, v, mask=strided_mask(T, stride=stride, causal=causal))``.

    Self-attention only: q ``(..., T, D)``, k ``(..., T, D)``, v ``(..., T, Dv)`` ->
    ``(..., T, Dv)``; ``scale`` replaces ``1/√D``. Half inputs are computed in float32.
    """
    _check_qkv(q, k, v)
    _check_positive_int("stride", stride)
    require(isinstance(causal, bool), f"causal must be a bool, got {causal!r}")
    T, S, Dv = q.shape[-2], k.shape[-2], v.shape[-1]
    require(T == S, f"strided_attention is self-attention: q and k must have the same length, "
                    f"got q {shape_of(q)} and k {shape_of(k)}")
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    if T == 0:
        return q.new_zeros(*q.shape[:-1], Dv)
    l = min(stride, T)  # noqa: E741 - the paper's symbol; stride >= T is the full pattern
    work = _work_dtype(q)
    with _no_autocast(q.device):
        q_w, k_w, v_w = q.to(work), k.to(work), v.to(work)
        Qb, Kb, Vb, keep_loc = _local_blocks(q_w, k_w, v_w, l, causal)  # blocks of l queries
        m = Qb.shape[-3]  # rows of the (m, l) grid
        s_loc = Qb @ Kb.transpose(-2, -1)  # (..., m, l, L)
        # the grid: position a*l + r is row a, column r; strided keys share the column
        Kg = _pad_time(k_w, 0, m * l - T).unflatten(-2, (m, l))  # (..., m, l, D)
        Vg = _pad_time(v_w, 0, m * l - T).unflatten(-2, (m, l))  # (..., m, l, Dv)
        s_str = Qb.transpose(-3, -2) @ Kg.permute(*range(Kg.dim() - 3), -2, -1, -3)  # (..., l, m, m)
        s_str = s_str.transpose(-3, -2)  # (..., m, l, m): [row a, column r, key row a']
        a = torch.arange(m, device=q.device).view(m, 1, 1)
        r = torch.arange(l, device=q.device).view(1, l, 1)
        a2 = torch.arange(m, device=q.device).view(1, 1, m)
        # a' = a is the query itself, already in the local part
        keep_str = ((a2 < a) if causal else (a2 != a)) & (a2 * l + r < T)  # (m, l, m)
        scores = torch.cat([s_loc, s_str], dim=-1) * scale  # (..., m, l, L + m)
        keep = torch.cat([keep_loc, keep_str], dim=-1)  # (m, l, L + m)
        weights = _softmax_keep(scores, keep, False)  # T = S: i sees i
        w_loc, w_str = weights[..., : s_loc.shape[-1]], weights[..., s_loc.shape[-1]:]
        out = w_loc @ Vb  # (..., m, l, Dv)
        out = out + (w_str.transpose(-3, -2) @ Vg.transpose(-3, -2)).transpose(-3, -2)
        out = out.flatten(-3, -2)[..., :T, :]  # (..., T, Dv)
    return out.to(q.dtype)


# --------------------------------------------------------------------------------------------
# receptive field of stacked layers
# --------------------------------------------------------------------------------------------


def receptive_field(mask: torch.Tensor, num_layers: int) -> torch.Tensor:
    """Which inputs can influence which outputs after ``num_layers`` layers with ``mask``.

    ``R_1 = M ∨ I`` (the residual connection keeps every position's own input) and
    ``R_{l+1} = (M ∨ I) R_l`` in Boolean arithmetic: output ``i`` of the stack depends on input
    ``j`` iff there is a path ``j -> ... -> i`` along allowed edges. mask ``(T, T)`` bool ->
    ``(T, T)`` bool.
    """
    check_ndim("mask", mask, 2)
    require(mask.dtype == torch.bool, f"mask must be boolean, got dtype {mask.dtype}")
    require(mask.shape[0] == mask.shape[1], f"mask must be square (T, T), got {shape_of(mask)}")
    require(
        isinstance(num_layers, int) and not isinstance(num_layers, bool) and num_layers >= 0,
        f"num_layers must be a non-negative int, got {num_layers!r}",
    )
    T = mask.shape[0]
    step = (mask | torch.eye(T, dtype=torch.bool, device=mask.device)).float()  # (T, T)
    reach = torch.eye(T, device=mask.device)  # (T, T)
    for _ in range(num_layers):
        reach = (step @ reach).clamp_(max=1.0)  # counts of paths, capped: stays exact
    return reach > 0


# --------------------------------------------------------------------------------------------
# a decoder-only model with a swappable causal attention
# --------------------------------------------------------------------------------------------

ATTENTION_KINDS: tuple[str, ...] = ("exact", "materialised", "window", "strided", "linear")


def causal_attention(
    kind: str,
    *,
    window: int = 16,
    stride: int = 16,
    feature_map: FeatureMap | None = None,
) -> AttentionFn:
    """A causal self-attention function ``(q, k, v) -> out`` on ``(B, H, T, D)`` tensors.

    ``"exact"``: PyTorch's fused ``scaled_dot_product_attention`` (tiled where a kernel exists);
    ``"materialised"``: :func:`attnbook.functional.scaled_dot_product_attention`, which forms
    the ``T x T`` weights (the same function, a different cost); ``"window"``:
    :func:`sliding_window_attention` with ``window``; ``"strided"``: :func:`strided_attention`
    with ``stride``; ``"linear"``: :func:`linear_attention` with ``feature_map``.
    """
    require(kind in ATTENTION_KINDS, f"kind must be one of {ATTENTION_KINDS}, got {kind!r}")
    _check_window(window)
    _check_positive_int("stride", stride)
    if kind == "exact":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if kind == "materialised":
        return lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True)[0]
    if kind == "window":
        return lambda q, k, v: sliding_window_attention(q, k, v, window, causal=True)
    if kind == "strided":
        return lambda q, k, v: strided_attention(q, k, v, stride, causal=True)
    return lambda q, k, v: linear_attention(q, k, v, causal=True, feature_map=feature_map)


class SwappableSelfAttention(nn.Module):
    """Multi-head causal self-attention whose attention function is a parameter:

    ``Q, K, V = x W_qkv`` split into ``H`` heads, ``O = attention(Q, K, V)`` per head,
    ``out = concat(O) W_o``. x ``(B, T, E)`` -> ``(B, T, E)``; ``attention`` maps
    ``(B, H, T, D)`` queries, keys, values to ``(B, H, T, D)``.
    """

    def __init__(self, d_model: int, num_heads: int, attention: AttentionFn) -> None:
        super().__init__()
        _check_positive_int("d_model", d_model)
        _check_positive_int("num_heads", num_heads)
        require(d_model % num_heads == 0,
                f"d_model must be divisible by num_heads, got {d_model} and {num_heads}")
        require(callable(attention), f"attention must be callable, got {type(attention).__name__}")
        self.d_model, self.num_heads = d_model, num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_ndim("x", x, 3)
        require(x.shape[-1] == self.d_model,
                f"x must have shape (B, T, d_model={self.d_model}), got {shape_of(x)}")
        B, T, E = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.num_heads, E // self.num_heads)  # (B, T, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, D)
        o = self.attention(q, k, v)  # (B, H, T, D)
        return self.out_proj(o.transpose(1, 2).reshape(B, T, E))  # (B, T, E)


class _Block(nn.Module):
    """Pre-norm block: ``x + SA(LN(x))`` then ``x + FFN(LN(x))``."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, attention: AttentionFn) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attn = SwappableSelfAttention(d_model, num_heads, attention)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x))  # (B, T, E)
        return x + self.ffn(self.norm2(x))  # (B, T, E)


class SwappableDecoder(nn.Module):
    """A small pre-norm decoder-only language model whose causal attention can be swapped.

    ``logits = W_out LN(Block_L(... Block_1(E[tokens] + PE)))`` with sinusoidal positions
    ``PE`` and :class:`SwappableSelfAttention` in every block. ``attention`` is a kind of
    :func:`causal_attention` (``window``, ``stride``, ``feature_map`` are its options) or a
    callable ``(q, k, v) -> out``. ``set_attention`` swaps it in a built (or trained) model:
    the parameters do not depend on the attention function.

    tokens ``(B, T)`` long -> logits ``(B, T, vocab_size)``.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        *,
        attention: str | AttentionFn = "exact",
        d_ff: int | None = None,
        window: int = 16,
        stride: int = 16,
        feature_map: FeatureMap | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model),
                            ("num_heads", num_heads), ("num_layers", num_layers)):
            _check_positive_int(name, value)
        require(d_model % 2 == 0, f"d_model must be even (sinusoidal positions), got {d_model}")
        d_ff = 4 * d_model if d_ff is None else d_ff
        _check_positive_int("d_ff", d_ff)
        self.vocab_size, self.d_model = vocab_size, d_model
        fn = self._resolve(attention, window, stride, feature_map)
        self.embedding = nn.Embedding(vocab_size, d_model)  # N(0, 1): unit-variance coordinates
        self.blocks = nn.ModuleList(_Block(d_model, num_heads, d_ff, fn) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size)
        self.register_buffer("pe", sinusoidal_encoding(256, d_model), persistent=False)

    @staticmethod
    def _resolve(attention, window, stride, feature_map) -> AttentionFn:
        if isinstance(attention, str):
            return causal_attention(attention, window=window, stride=stride, feature_map=feature_map)
        require(callable(attention),
                f"attention must be one of {ATTENTION_KINDS} or a callable, got {attention!r}")
        return attention

    def set_attention(
        self,
        attention: str | AttentionFn,
        *,
        window: int = 16,
        stride: int = 16,
        feature_map: FeatureMap | None = None,
    ) -> SwappableDecoder:
        """Use another attention function in every block (in place); returns the model."""
        fn = self._resolve(attention, window, stride, feature_map)
        for block in self.blocks:
            block.self_attn.attention = fn
        return self

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_ndim("tokens", tokens, 2)
        require(not tokens.is_floating_point() and tokens.dtype != torch.bool,
                f"tokens must be an integer tensor of ids, got dtype {tokens.dtype} "
                f"with shape {shape_of(tokens)}")
        T = tokens.shape[1]
        if T > self.pe.shape[0]:  # grow the table; positions have no upper limit
            self.pe = sinusoidal_encoding(max(T, 2 * self.pe.shape[0]), self.d_model,
                                          device=self.pe.device)
        x = self.embedding(tokens) + self.pe[:T].to(self.embedding.weight.dtype)  # (B, T, E)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.norm(x))  # (B, T, V)
