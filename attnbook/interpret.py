"""Reading attention weights: attention rollout (Abnar & Zuidema 2020), importance by gradient
and by leaving a token out, and counterfactual attention for the tests of Jain & Wallace (2019)
and Wiegreffe & Pinter (2019)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ._validate import check_bool, check_floating, check_ndim, require, shape_of

__all__ = [
    "attention_rollout",
    "counterfactual_weights",
    "override_attention",
    "gradient_importance",
    "leave_one_out",
    "total_variation",
    "kendall_tau",
    "COUNTERFACTUAL_KINDS",
]


def attention_rollout(weights: Sequence[torch.Tensor], residual: bool = True) -> torch.Tensor:
    """Roll attention through the layers: ``weights`` a list of per-layer ``(B, H, T, T)``
    attention, first layer first -> ``(B, T, T)``.

    Per layer the heads are averaged, ``A = mean_h A_h``; with ``residual`` the skip connection
    is accounted for as ``A' = 0.5 A + 0.5 I`` with rows renormalised to sum to one. The layers'
    matrices are multiplied with the last layer on the left::

        R = A'_L A'_{L-1} ... A'_1

    so ``R[b, i, j]`` is how much of the output at token ``i`` flows from input token ``j``.
    """
    check_bool("residual", residual)
    require(
        isinstance(weights, (list, tuple)) and len(weights) > 0,
        lambda: f"weights must be a non-empty list of (B, H, T, T) tensors, got {type(weights).__name__}",
    )
    first = weights[0]
    require(
        isinstance(first, torch.Tensor) and first.ndim == 4 and first.shape[-1] == first.shape[-2],
        lambda: f"weights[0] must have shape (B, H, T, T), got shape "
        f"{shape_of(first) if isinstance(first, torch.Tensor) else type(first).__name__}",
    )
    for i, w in enumerate(weights):
        require(
            isinstance(w, torch.Tensor) and tuple(w.shape[:1]) + tuple(w.shape[2:]) == (
                first.shape[0], first.shape[2], first.shape[3]) and w.ndim == 4,
            lambda i=i, w=w: f"weights[{i}] must have shape (B, H, T, T) = "
            f"({first.shape[0]}, H, {first.shape[2]}, {first.shape[3]}) like weights[0], got shape "
            f"{shape_of(w) if isinstance(w, torch.Tensor) else type(w).__name__}",
        )
    T = first.shape[-1]
    eye = torch.eye(T, dtype=first.dtype, device=first.device)  # (T, T)
    rollout = None
    for w in weights:
        a = w.mean(dim=1)  # (B, T, T)
        if residual:
            a = 0.5 * a + 0.5 * eye
            a = a / a.sum(dim=-1, keepdim=True)  # (B, T, T)
        rollout = a if rollout is None else a @ rollout  # later layer on the left
    return rollout  # (B, T, T)


# ---------------------------------------------------------------------------------------------
# Is attention explanation? Importance scores and counterfactual attention (Jain & Wallace 2019)
# ---------------------------------------------------------------------------------------------

COUNTERFACTUAL_KINDS = ("uniform", "permute", "random")


def _row_mask(weights: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``mask`` broadcast to the shape of ``weights`` (all True when ``None``)."""
    if mask is None:
        return torch.ones_like(weights, dtype=torch.bool)
    require(
        isinstance(mask, torch.Tensor) and mask.dtype == torch.bool,
        lambda: f"mask must be a boolean tensor (True = real token), got "
        f"{f'dtype {mask.dtype} with shape {shape_of(mask)}' if isinstance(mask, torch.Tensor) else type(mask).__name__}",
    )
    if mask.dim() == 2 and weights.dim() == 3 and mask.shape[0] == weights.shape[0]:
        mask = mask[:, None, :]  # a key-padding mask (B, S) for weights (B, T, S)
    require(
        mask.dim() == weights.dim()
        and all(m in (1, w) for m, w in zip(mask.shape, weights.shape))
        and mask.shape[-1] == weights.shape[-1],
        lambda: f"mask must broadcast to the weights' shape {shape_of(weights)}, got shape {shape_of(mask)}",
    )
    return mask.to(weights.device).expand_as(weights)


def counterfactual_weights(
    weights: torch.Tensor,
    mask: torch.Tensor | None = None,
    kind: str = "uniform",
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Replace attention distributions ``weights (..., S)`` (rows sum to one over the keys where
    ``mask (..., S)`` is True) by counterfactual ones of the same shape (Jain & Wallace 2019):

    * ``"uniform"``: ``α̃_s = m_s / Σ_j m_j``, the same weight on every real key;
    * ``"permute"``: the row's own weights shuffled among its real keys,
      ``α̃_{π(s)} = α_s`` for a random permutation ``π`` of the real keys;
    * ``"random"``: a draw from the uniform distribution on the simplex over the real keys,
      ``α̃_s = m_s u_s / Σ_j m_j u_j`` with ``u_s = -log U_s``, ``U_s ~ U(0, 1)``.

    Masked keys get weight 0. ``generator`` seeds the random kinds (its device is used to
    draw; the result follows ``weights``' device and dtype).
    """
    require(isinstance(weights, torch.Tensor) and weights.dim() >= 1,
            lambda: f"weights must be a tensor (..., S), got {type(weights).__name__}")
    check_floating("weights", weights)
    require(kind in COUNTERFACTUAL_KINDS,
            lambda: f"kind must be one of {COUNTERFACTUAL_KINDS}, got {kind!r}")
    m = _row_mask(weights, mask)  # (..., S)
    mf = m.to(weights.dtype)
    if kind == "uniform":
        return mf / mf.sum(-1, keepdim=True).clamp_min(1)
    where = generator.device if generator is not None else weights.device
    u = torch.rand(weights.shape, generator=generator, device=where).to(weights)  # (..., S)
    if kind == "random":
        e = -torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)) * mf  # Exp(1) draws on real keys
        return e / e.sum(-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)
    # permute: real keys in their order, and real keys in a random order; masked keys sort last
    in_order = torch.sort((~m).to(torch.uint8), dim=-1, stable=True).indices  # (..., S)
    shuffled = torch.argsort(u.masked_fill(~m, 2.0), dim=-1)  # (..., S)
    out = torch.zeros_like(weights).scatter(-1, shuffled, weights.gather(-1, in_order))
    return out * mf


@contextmanager
def override_attention(
    module: nn.Module,
    fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
) -> Iterator[None]:
    """Within the ``with`` block, every call of the RNN attention ``module``
    (:class:`attnbook.AdditiveAttention` or :class:`attnbook.LuongAttention`, called as
    ``module(query, keys, values, mask)``) uses the weights ``α̃ = fn(α, mask)`` in place of its
    own ``α`` (``(B, S)`` or ``(B, T, S)``, ``mask`` the call's ``(B, S)`` mask or ``None``),
    and returns the context ``c̃ = Σ_s α̃_s v_s`` made from them.

    A forward hook does it, so the model's code is unchanged and the hook is removed on exit,
    also after an error. Gradients flow through ``fn``'s result (train with a frozen uniform
    attention by returning ``counterfactual_weights(α, mask, "uniform")``).
    """
    from .attention import AdditiveAttention, LuongAttention

    require(isinstance(module, (AdditiveAttention, LuongAttention)),
            lambda: f"module must be an AdditiveAttention or LuongAttention, got {type(module).__name__}")
    require(callable(fn), lambda: f"fn must be callable (weights, mask) -> weights, got {type(fn).__name__}")

    def hook(mod: nn.Module, args: tuple, kwargs: dict, output: tuple) -> tuple:
        values = args[2] if len(args) > 2 else kwargs["values"]  # (B, S, Dv)
        mask = args[3] if len(args) > 3 else kwargs.get("mask")  # (B, S) | None
        _, alpha = output  # (B, S) or (B, T, S)
        new = fn(alpha, mask)
        require(isinstance(new, torch.Tensor) and new.shape == alpha.shape,
                lambda: f"fn must return weights of the shape it got, {shape_of(alpha)}, got "
                f"{shape_of(new) if isinstance(new, torch.Tensor) else type(new).__name__}")
        if new.dim() == 2:
            context = torch.einsum("bs,bsd->bd", new, values)  # (B, Dv)
        else:
            context = torch.einsum("bts,bsd->btd", new, values)  # (B, T, Dv)
        return context, new

    handle = module.register_forward_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def gradient_importance(output: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Gradient x input importance of each input token: ``output (B,)`` computed from
    ``inputs (B, S, E)`` (e.g. token embeddings, in the autograd graph) -> ``(B, S)``::

        g_{b,s} = || (∂ output_b / ∂ x_{b,s}) ⊙ x_{b,s} ||_2

    Row ``b`` of ``output`` must depend on row ``b`` of ``inputs`` only (a model's outputs for
    a batch), so one backward pass of ``Σ_b output_b`` gives every row's gradient. The graph
    is kept (``retain_graph``), so several outputs of one forward pass can be explained.
    """
    check_ndim("inputs", inputs, 3)
    check_ndim("output", output, 1)
    require(output.shape[0] == inputs.shape[0],
            lambda: f"output must be (B,) with B={inputs.shape[0]} like inputs {shape_of(inputs)}, "
            f"got shape {shape_of(output)}")
    require(output.requires_grad and inputs.requires_grad,
            lambda: f"output {shape_of(output)} must be computed from inputs {shape_of(inputs)} "
            "with gradients on (inputs.requires_grad and no torch.no_grad)")
    (grad,) = torch.autograd.grad(output.sum(), inputs, retain_graph=True)  # (B, S, E)
    return (grad * inputs).norm(dim=-1).detach()  # (B, S)


def leave_one_out(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    tokens: torch.Tensor,
    mask: torch.Tensor,
    pad: int = 0,
) -> torch.Tensor:
    """Run ``fn(tokens', mask') -> (B, *F)`` once per position ``s`` on the batch with token ``s``
    deleted (the tokens after it move one left, a ``pad`` is appended and the mask shortened by
    one) -> ``(B, S, *F)``, computed without gradients.

    ``tokens (B, S)`` integer ids and ``mask (B, S)`` boolean, True on a prefix of each row
    with at least two real tokens. Deleting a padding position leaves the row as it was, so
    entry ``[b, s]`` for a padded ``s`` is ``fn`` of the intact row. Compare with ``fn(tokens,
    mask)`` to get leave-one-out importance (e.g. ``total_variation``).
    """
    check_ndim("tokens", tokens, 2)
    require(not tokens.is_floating_point(),
            lambda: f"tokens must hold integer ids, got dtype {tokens.dtype} with shape {shape_of(tokens)}")
    require(isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.shape == tokens.shape,
            lambda: f"mask must be a boolean tensor of the tokens' shape {shape_of(tokens)}, got "
            f"{shape_of(mask) if isinstance(mask, torch.Tensor) else type(mask).__name__}")
    require(callable(fn), lambda: f"fn must be callable (tokens, mask) -> (B, ...), got {type(fn).__name__}")
    require(bool((mask.sum(-1) >= 2).all()),
            lambda: f"mask must mark at least two real tokens in every row, got row lengths "
            f"{mask.sum(-1).tolist()} for tokens of shape {shape_of(tokens)}")
    B, S = tokens.shape
    pad_col = torch.full((B, 1), pad, dtype=tokens.dtype, device=tokens.device)  # (B, 1)
    off_col = torch.zeros(B, 1, dtype=torch.bool, device=mask.device)  # (B, 1)
    outs = []
    with torch.no_grad():
        for s in range(S):
            t = torch.cat([tokens[:, :s], tokens[:, s + 1:], pad_col], dim=1)  # (B, S)
            m = torch.cat([mask[:, :s], mask[:, s + 1:], off_col], dim=1)  # (B, S)
            outs.append(fn(t, m))  # (B, *F)
    return torch.stack(outs, dim=1)  # (B, S, *F)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Total-variation distance between distributions along the last dimension,
    ``TV(p, q) = ½ Σ_v |p_v - q_v|`` in ``[0, 1]``: ``p, q (..., V)`` -> ``(...)``."""
    require(isinstance(p, torch.Tensor) and isinstance(q, torch.Tensor) and p.shape == q.shape
            and p.dim() >= 1,
            lambda: f"p and q must be tensors of one shape (..., V), got p "
            f"{shape_of(p) if isinstance(p, torch.Tensor) else type(p).__name__} and q "
            f"{shape_of(q) if isinstance(q, torch.Tensor) else type(q).__name__}")
    check_floating("p", p)
    return 0.5 * (p - q).abs().sum(-1)


def kendall_tau(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Kendall's rank correlation (the tie-corrected tau-b) of two scores along the last
    dimension, row by row: ``a, b (..., n)`` -> ``(...)``, over the items where ``mask (..., n)``
    is True (all when ``None``)::

        τ_b = Σ_{i<j} sgn(a_i - a_j) sgn(b_i - b_j) / sqrt(Σ_{i<j} |sgn(a_i - a_j)| · Σ_{i<j} |sgn(b_i - b_j)|)

    Without ties this is (concordant - discordant) / (n(n-1)/2). A row in which either score is
    constant has no defined correlation and gives NaN (as ``scipy.stats.kendalltau`` does).
    Builds ``(..., n, n)`` sign tensors: meant for the short rows of an attention map.
    """
    require(isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and a.dim() >= 1,
            lambda: f"a and b must be tensors of one shape (..., n), got a "
            f"{shape_of(a) if isinstance(a, torch.Tensor) else type(a).__name__} and b "
            f"{shape_of(b) if isinstance(b, torch.Tensor) else type(b).__name__}")
    m = _row_mask(a, mask)  # (..., n)
    sa = torch.sign(a[..., :, None] - a[..., None, :])  # (..., n, n)
    sb = torch.sign(b[..., :, None] - b[..., None, :]).to(sa.dtype)  # (..., n, n)
    pairs = m[..., :, None] & m[..., None, :]
    pairs = torch.triu(pairs, diagonal=1)  # (..., n, n): i < j, both real
    sa, sb = sa * pairs, sb * pairs
    num = (sa * sb).sum((-1, -2))  # (...)
    den = torch.sqrt(sa.abs().sum((-1, -2)) * sb.abs().sum((-1, -2)))  # (...)
    return num / den  # NaN where a score is constant (0 / 0)
