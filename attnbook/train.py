"""Training and decoding utilities shared by the chapters: a fit loop with a progress bar,
learning-rate schedules, GENERIC greedy and beam-search decoding, metrics and checkpoints.

Decoding is model-agnostic. A model exposes a *step function*

    step_fn(prefix, state) -> (log_probs, new_state)            or
    step_fn(prefix, state) -> (log_probs, new_state, extra)

with ``prefix (B, t)`` the tokens so far (starting with ``<bos>``), ``log_probs (B, V)`` for the
next token, ``state`` anything the model carries between steps (``None`` for a model that
recomputes from the prefix) and ``extra (B, ...)`` an optional per-step tensor such as an
attention row (collected into ``(B, L, ...)``). Everything in ``state`` must be batch-first:
tensors, and tuples / lists / dicts of them (``None`` entries allowed), or objects with an
``index_select(indices)`` method. Beam search repeats and reorders the state along dimension 0,
so the encoder memory of an encoder-decoder belongs in ``state``, not in a closure.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ._validate import data_checks, require

__all__ = [
    "History", "fit", "evaluate_loss", "warmup_cosine_lambda", "warmup_cosine", "noam_lambda", "noam",
    "Decoded", "greedy_decode", "beam_search", "exact_match", "token_accuracy",
    "sequence_cross_entropy", "save_checkpoint", "load_checkpoint", "move_to", "model_device",
    "SeedRuns", "over_seeds",
]


# ---------------------------------------------------------------------------------------------
# Moving things to a device
# ---------------------------------------------------------------------------------------------

def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for an empty model."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def move_to(obj: Any, device: torch.device | str) -> Any:
    """``obj`` with every tensor on ``device``: tensors, objects with ``.to`` (e.g.
    :class:`attnbook.data.Batch`), and tuples / lists / dicts of them."""
    if isinstance(obj, torch.Tensor) or (hasattr(obj, "to") and callable(obj.to)):
        return obj.to(device)
    if isinstance(obj, tuple):
        return type(obj)(*(move_to(o, device) for o in obj)) if hasattr(obj, "_fields") \
            else tuple(move_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [move_to(o, device) for o in obj]
    if isinstance(obj, Mapping):
        return {k: move_to(v, device) for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------------------------------------
# Loss, fit loop, schedules
# ---------------------------------------------------------------------------------------------

def sequence_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, pad_idx: int = 0,
                           label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the non-padding target tokens.

    logits ``(B, T, V)``, targets ``(B, T)`` of class indices in ``[0, V)``; positions where
    ``targets == pad_idx`` are ignored. A batch with no real token (all padding) gives ``0``
    (with zero gradients), not ``nan``. Equivalent to::

        real = targets != pad_idx                           # (B, T), when real.any()
        torch.nn.functional.cross_entropy(
            logits[real], targets[real], label_smoothing=label_smoothing)

    Raises ``ValueError`` for bad shapes or a floating-point ``targets``, and (a data check, see
    :mod:`attnbook.utils`) for target indices outside ``[0, V)``.
    """
    require(logits.dim() == 3, f"logits must be (B, T, V), got shape {tuple(logits.shape)}")
    require(targets.shape == logits.shape[:2],
            f"targets must be (B, T) = {tuple(logits.shape[:2])}, got shape {tuple(targets.shape)}")
    require(not targets.dtype.is_floating_point and not targets.dtype.is_complex
            and targets.dtype != torch.bool,
            f"targets must hold integer class indices, got dtype {targets.dtype} "
            f"with shape {tuple(targets.shape)}")
    V = logits.shape[-1]
    flat = targets.reshape(-1).long()                                   # (B*T,)
    real = flat != pad_idx                                              # (B*T,)
    if data_checks() and flat.numel() > 0:
        outside = real & ((flat < 0) | (flat >= V))
        if bool(outside.any()):
            bad = flat[outside]
            raise ValueError(
                f"targets must hold class indices in [0, {V}) (V = logits.shape[-1]) or "
                f"pad_idx={pad_idx}, got values from {int(bad.min())} to {int(bad.max())} "
                f"in targets of shape {tuple(targets.shape)} (logits {tuple(logits.shape)})"
            )
    total = nn.functional.cross_entropy(
        logits.reshape(-1, V), flat, ignore_index=pad_idx,
        label_smoothing=label_smoothing, reduction="sum",
    )
    return total / real.sum().clamp(min=1).to(total.dtype)


@dataclass
class History:
    """What :func:`fit` records: one loss (and learning rate, gradient norm) per step."""

    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def steps_per_second(self) -> float:
        """Optimiser updates per second of wall-clock time."""
        return len(self.losses) / self.seconds if self.seconds > 0 else float("nan")

    def smoothed(self, window: int = 20) -> list[float]:
        """Running mean of the last ``window`` losses (for plots)."""
        out, total = [], 0.0
        for i, x in enumerate(self.losses):
            total += x - (self.losses[i - window] if i >= window else 0.0)
            out.append(total / min(i + 1, window))
        return out


def _cycle(batches: Iterable[Any]) -> Iterator[Any]:
    """Iterate ``batches`` for ever: a re-iterable (list, BatchIterator) starts a new epoch when
    it runs out; a one-shot iterator that runs out is an error."""
    while True:
        it = iter(batches)
        empty = True
        for b in it:
            empty = False
            yield b
        require(not empty, "batches yielded no batch (an empty or exhausted iterator)")
        require(it is not batches, "batches ran out before `steps` steps; pass a re-iterable "
                                   "(a list or attnbook.data.BatchIterator) or fewer steps")


def fit(model: nn.Module, batches: Iterable[Any],
        loss_fn: Callable[[nn.Module, Any], torch.Tensor],
        optimizer: torch.optim.Optimizer, steps: int,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        clip_grad_norm: float | None = None, progress: bool = True,
        desc: str = "training", history: History | None = None, *,
        log_every: int = 10) -> History:
    """Train for exactly ``steps`` optimiser updates and return the per-step :class:`History`.

    Each step: take the next batch (``batches`` is cycled; each batch is moved to the model's
    device), ``loss = loss_fn(model, batch)``, backward, optional gradient-norm clipping,
    ``optimizer.step()``, ``scheduler.step()``. The model is put in train mode. Pass an existing
    ``history`` to continue one.

    No host sync per step: the losses (and gradient norms) stay on the device and are read back
    together once every ``log_every`` steps and at the end, which is when the progress bar and
    ``history`` are updated. A non-finite loss (or, with clipping, gradient norm) is detected on
    the device: that update is not applied (the parameters are restored with ``torch.where``,
    its gradients replaced by zeros before the optimiser sees them), nor is any later one, and
    the next read raises ``ValueError`` naming the step. ``history`` then holds the steps before
    it and the model the weights after the last finite step (a stateful optimiser's moments,
    and the scheduler, have advanced by the skipped steps with zero gradients).
    """
    require(isinstance(steps, int) and steps >= 0, f"steps must be a non-negative int, got {steps!r}")
    require(clip_grad_norm is None or clip_grad_norm > 0,
            f"clip_grad_norm must be None or > 0, got {clip_grad_norm!r}")
    require(callable(loss_fn), f"loss_fn must be callable, got {type(loss_fn).__name__}")
    require(isinstance(log_every, int) and not isinstance(log_every, bool) and log_every >= 1,
            f"log_every must be an int >= 1, got {log_every!r}")
    history = History() if history is None else history
    dev = model_device(model)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    model.train()
    stream = _cycle(batches)
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=True)
    ok = torch.ones((), dtype=torch.bool, device=dev)  # False from the first non-finite step on
    losses: list[torch.Tensor] = []                    # this window's losses, on the device
    norms: list[torch.Tensor] = []
    lrs: list[float] = []
    first = len(history.losses)                         # the window's first step number

    def read() -> None:
        """One host sync: move the window's values into ``history``; raise at a bad step."""
        nonlocal first
        if not losses:
            return
        values = torch.stack([v.detach().float() for v in losses]).tolist()
        grads = torch.stack([v.detach().float() for v in norms]).tolist() if norms else []
        rates = list(lrs)
        losses.clear(), norms.clear(), lrs.clear()
        for i, value in enumerate(values):
            norm = grads[i] if grads else 0.0
            if not (math.isfinite(value) and math.isfinite(norm)):
                history.losses.extend(values[:i])
                history.lrs.extend(rates[:i])
                history.grad_norms.extend(grads[:i])
                what = f"loss is {value}" if not math.isfinite(value) else \
                    f"gradient norm is {norm} (loss {value})"
                held = f"after step {first + i - 1}" if first + i > 0 else "it started with"
                raise ValueError(
                    f"fit: the {what} at step {first + i}; that update and the "
                    f"{len(values) - i - 1} after it were not applied, so the model holds the "
                    f"weights {held}. Lower the learning rate, clip the gradients "
                    f"(clip_grad_norm=...) or check that batch."
                )
        history.losses.extend(values)
        history.lrs.extend(rates)
        history.grad_norms.extend(grads)
        first += len(values)
        bar.set_postfix(loss=f"{history.losses[-1]:.4f}")

    start = time.perf_counter()
    try:
        for step in bar:
            batch = move_to(next(stream), dev)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch)
            require(isinstance(loss, torch.Tensor) and loss.dim() == 0,
                    f"loss_fn must return a scalar tensor, got "
                    f"{getattr(loss, 'shape', type(loss).__name__)}")
            loss.backward()
            finite = torch.isfinite(loss.detach()).to(ok.device)
            if clip_grad_norm is not None:
                norm = nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
                norms.append(norm.detach())
                finite = finite & torch.isfinite(norm.detach()).to(ok.device)
            ok = ok & finite
            losses.append(loss.detach())
            lrs.append(optimizer.param_groups[0]["lr"])
            with torch.no_grad():
                before = []
                for p in params:
                    if p.grad is not None:  # a bad step's gradients never reach the optimiser
                        p.grad = torch.where(ok.to(p.grad.device), p.grad, 0.0)
                    before.append(p.detach().clone())
            optimizer.step()
            with torch.no_grad():
                for p, old in zip(params, before):  # undo the update of a bad step
                    p.copy_(torch.where(ok.to(p.device), p, old))
            if scheduler is not None:
                scheduler.step()
            if (step + 1) % log_every == 0:
                read()
        read()
    except BaseException:
        if losses:  # interrupted (an error in loss_fn, Ctrl-C): keep the steps it measured
            with contextlib.suppress(ValueError):
                read()
        raise
    finally:
        history.seconds += time.perf_counter() - start
        bar.close()
    return history


@dataclass(frozen=True)
class SeedRuns:
    """What :func:`over_seeds` returns: one value per seed, their mean, sample standard
    deviation (0 for a single seed), minimum and maximum."""

    seeds: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        n = len(self.values)
        if n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (n - 1))

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.std:.2g} (min {self.min:.4g}, max {self.max:.4g}, {len(self.values)} seeds)"


def over_seeds(fn: Callable[[int], float], seeds: Sequence[int]) -> SeedRuns:
    """Run ``fn(seed)`` for every seed (each after ``torch.manual_seed(seed)``) and collect the
    numbers it returns into a :class:`SeedRuns` (mean and spread)."""
    require(callable(fn), f"fn must be callable, got {type(fn).__name__}")
    seeds = tuple(seeds)
    require(len(seeds) > 0 and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds),
            f"seeds must be a non-empty sequence of ints, got {seeds!r}")
    values = []
    for seed in seeds:
        torch.manual_seed(seed)
        value = fn(seed)
        require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                f"fn({seed}) must return a finite number, got {value!r}")
        values.append(float(value))
    return SeedRuns(seeds, tuple(values))


@torch.no_grad()
def evaluate_loss(model: nn.Module, batches: Iterable[Any],
                  loss_fn: Callable[[nn.Module, Any], torch.Tensor]) -> float:
    """Mean of ``loss_fn(model, batch)`` over one pass of ``batches``, in eval mode (the model's
    previous mode is restored)."""
    was_training, dev = model.training, model_device(model)
    model.eval()
    total, n = 0.0, 0
    try:
        for batch in batches:
            total += float(loss_fn(model, move_to(batch, dev)))
            n += 1
    finally:
        model.train(was_training)
    require(n > 0, "batches yielded no batch")
    return total / n


def warmup_cosine_lambda(warmup_steps: int, total_steps: int,
                         min_ratio: float = 0.0) -> Callable[[int], float]:
    """The multiplier of the base learning rate at step ``s``:

    ``(s + 1) / warmup_steps`` for ``s < warmup_steps`` (linear warm-up), then
    ``min_ratio + (1 - min_ratio) * (1 + cos(pi * p)) / 2`` with ``p`` the fraction of the decay
    phase done (cosine decay to ``min_ratio``); ``min_ratio`` after ``total_steps``.
    """
    require(isinstance(warmup_steps, int) and warmup_steps >= 0,
            f"warmup_steps must be a non-negative int, got {warmup_steps!r}")
    require(isinstance(total_steps, int) and total_steps > warmup_steps,
            f"total_steps must be an int > warmup_steps={warmup_steps}, got {total_steps!r}")
    require(0.0 <= min_ratio <= 1.0, f"min_ratio must be in [0, 1], got {min_ratio!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        p = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))

    return factor


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`warmup_cosine_lambda` (call ``.step()`` once per update)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine_lambda(warmup_steps, total_steps, min_ratio)
    )


def noam_lambda(d_model: int, warmup_steps: int) -> Callable[[int], float]:
    """The learning rate of Vaswani et al. (2017, eq. 3) at update ``s`` (counted from 0)::

        lrate(s) = d_model ** -0.5 * min(n ** -0.5, n * warmup_steps ** -1.5),   n = s + 1

    a linear rise for ``warmup_steps`` updates, then a decay as ``1 / sqrt(n)``; the peak,
    at ``n = warmup_steps``, is ``(d_model * warmup_steps) ** -0.5``. Use it as the multiplier
    of a base learning rate of 1 (see :func:`noam`).
    """
    require(isinstance(d_model, int) and not isinstance(d_model, bool) and d_model > 0,
            f"d_model must be a positive int, got {d_model!r}")
    require(isinstance(warmup_steps, int) and not isinstance(warmup_steps, bool)
            and warmup_steps > 0, f"warmup_steps must be a positive int, got {warmup_steps!r}")

    def rate(step: int) -> float:
        n = step + 1
        return d_model ** -0.5 * min(n ** -0.5, n * warmup_steps ** -1.5)

    return rate


def noam(optimizer: torch.optim.Optimizer, d_model: int,
         warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`noam_lambda`; give the optimiser ``lr=1.0`` so that the
    multiplier is the learning rate (call ``.step()`` once per update)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, noam_lambda(d_model, warmup_steps))


# ---------------------------------------------------------------------------------------------
# Generic decoding
# ---------------------------------------------------------------------------------------------

StepFn = Callable[[torch.Tensor, Any], tuple]


@dataclass
class Decoded:
    """Decoder output. ``tokens (B, L)`` without ``<bos>``, ``<eos>`` included, ``pad`` after it;
    ``lengths (B,)`` counts tokens up to and including ``<eos>`` (``L`` when none was produced);
    ``scores (B,)`` the total log-probability (beam search: divided by ``length ** alpha``);
    ``extras (B, L, ...)`` the stacked per-step extras of the step function (or ``None``)."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    scores: torch.Tensor
    extras: torch.Tensor | None = None


def _index_state(state: Any, index: torch.Tensor) -> Any:
    """Select rows ``index`` (dimension 0) of every tensor in ``state``."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.index_select(0, index.to(state.device))
    if hasattr(state, "index_select"):
        return state.index_select(index)
    if isinstance(state, tuple):
        items = [_index_state(s, index) for s in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    if isinstance(state, list):
        return [_index_state(s, index) for s in state]
    if isinstance(state, Mapping):
        return {k: _index_state(v, index) for k, v in state.items()}
    if isinstance(state, (int, float, str, bool)):
        return state
    raise ValueError(
        f"state must hold tensors, tuples/lists/dicts of them or objects with index_select, "
        f"got {type(state).__name__}"
    )


def _check_state_batch(state: Any, batch: int, where: str = "state") -> None:
    """Every tensor in ``state`` must have ``batch`` rows (dimension 0), before beam search
    repeats them; ``where`` names the entry in the error (``state['memory']``, ``state[1]``)."""
    if isinstance(state, torch.Tensor):
        require(state.dim() >= 1,
                f"{where} must be batch-first with batch_size={batch} rows, got a 0-d tensor")
        require(state.shape[0] == batch,
                f"{where} must be batch-first with batch_size={batch} rows in dimension 0, "
                f"got shape {tuple(state.shape)}")
    elif isinstance(state, (tuple, list)):
        for i, item in enumerate(state):
            _check_state_batch(item, batch, f"{where}[{i}]")
    elif isinstance(state, Mapping):
        for key, item in state.items():
            _check_state_batch(item, batch, f"{where}[{key!r}]")


def _call_step(step_fn: StepFn, prefix: torch.Tensor, state: Any, batch: int):
    out = step_fn(prefix, state)
    require(isinstance(out, tuple) and len(out) in (2, 3),
            "step_fn must return (log_probs, state) or (log_probs, state, extra)")
    log_probs, new_state = out[0], out[1]
    extra = out[2] if len(out) == 3 else None
    require(isinstance(log_probs, torch.Tensor) and log_probs.dim() == 2 and log_probs.shape[0] == batch,
            f"step_fn must return log_probs of shape (B={batch}, V), "
            f"got {getattr(log_probs, 'shape', type(log_probs).__name__)}")
    return log_probs, new_state, extra


def _check_decode_args(bos: int, eos: int, max_len: int, batch_size: int) -> None:
    require(isinstance(max_len, int) and max_len >= 1, f"max_len must be an int >= 1, got {max_len!r}")
    require(isinstance(batch_size, int) and batch_size >= 1, f"batch_size must be an int >= 1, got {batch_size!r}")
    require(isinstance(bos, int) and isinstance(eos, int), f"bos and eos must be ints, got {bos!r}, {eos!r}")


@torch.no_grad()
def greedy_decode(step_fn: StepFn, state: Any, bos: int, eos: int, max_len: int,
                  batch_size: int, device: torch.device | str | None = None,
                  pad: int = 0) -> Decoded:
    """Greedy decoding: ``y_t = argmax_v log p(v | y_<t)`` until every row produced ``eos`` or
    ``max_len`` tokens were generated. See the module docstring for ``step_fn``."""
    _check_decode_args(bos, eos, max_len, batch_size)
    prefix = torch.full((batch_size, 1), bos, dtype=torch.long, device=device)  # (B, 1)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)             # (B,)
    lengths = torch.full((batch_size,), max_len, dtype=torch.long, device=device)
    scores = torch.zeros(batch_size, device=device)
    extras: list[torch.Tensor] = []
    for t in range(max_len):
        log_probs, state, extra = _call_step(step_fn, prefix, state, batch_size)  # (B, V)
        best, y = log_probs.max(dim=-1)                                  # (B,), (B,)
        y = torch.where(done, torch.full_like(y, pad), y)
        scores = scores + torch.where(done, torch.zeros_like(best), best).to(scores.dtype)
        if extra is not None:
            extras.append(torch.where(done.view(-1, *[1] * (extra.dim() - 1)),
                                      torch.zeros_like(extra), extra))
        prefix = torch.cat([prefix, y[:, None]], dim=1)                  # (B, t + 2)
        newly = (~done) & (y == eos)
        lengths = torch.where(newly, torch.full_like(lengths, t + 1), lengths)
        done = done | newly
        if bool(done.all()):
            break
    return Decoded(prefix[:, 1:], lengths, scores, torch.stack(extras, 1) if extras else None)


@torch.no_grad()
def beam_search(step_fn: StepFn, state: Any, bos: int, eos: int, max_len: int,
                batch_size: int, beam_size: int = 4, alpha: float = 0.0,
                device: torch.device | str | None = None, pad: int = 0) -> Decoded:
    """Beam search with length normalisation; returns the best hypothesis of each row.

    Keeps the ``beam_size`` prefixes of highest total log-probability. A hypothesis that
    produced ``eos`` is finished: it stays in the beam with a frozen score (it can only be
    extended by ``pad`` at log-probability 0). At the end every kept hypothesis is ranked by
    ``score / length ** alpha`` (``alpha = 0``: raw log-probability; ``alpha = 1``: per-token
    mean), ``length`` counting ``eos``. ``beam_size = 1`` is greedy decoding. The step function
    is called on ``B * beam_size`` rows; ``state`` is repeated and reordered along dimension 0.
    """
    _check_decode_args(bos, eos, max_len, batch_size)
    require(isinstance(beam_size, int) and beam_size >= 1, f"beam_size must be an int >= 1, got {beam_size!r}")
    require(alpha >= 0.0, f"alpha must be >= 0, got {alpha!r}")
    _check_state_batch(state, batch_size)
    B, K = batch_size, beam_size
    rows = torch.arange(B, device=device).repeat_interleave(K)          # (B*K,)
    state = _index_state(state, rows)
    prefix = torch.full((B * K, 1), bos, dtype=torch.long, device=device)  # (B*K, 1)
    scores = torch.full((B, K), float("-inf"), device=device)           # (B, K)
    scores[:, 0] = 0.0                                                   # one live beam at start
    done = torch.zeros(B * K, dtype=torch.bool, device=device)          # (B*K,)
    lengths = torch.full((B * K,), max_len, dtype=torch.long, device=device)
    extras: torch.Tensor | None = None                                   # (B*K, t, ...)
    for t in range(max_len):
        log_probs, state, extra = _call_step(step_fn, prefix, state, B * K)  # (B*K, V)
        log_probs = log_probs.to(scores.dtype)
        V = log_probs.shape[-1]
        frozen = torch.full_like(log_probs, float("-inf"))
        frozen[:, pad] = 0.0
        log_probs = torch.where(done[:, None], frozen, log_probs)       # finished: only pad
        cand = (scores.reshape(B * K, 1) + log_probs).reshape(B, K * V)  # (B, K*V)
        scores, idx = cand.topk(K, dim=-1)                               # (B, K)
        origin = (idx // V + torch.arange(B, device=device)[:, None] * K).reshape(-1)  # (B*K,)
        y = (idx % V).reshape(-1)                                        # (B*K,)
        state = _index_state(state, origin)
        prefix = torch.cat([prefix.index_select(0, origin), y[:, None]], dim=1)
        if extra is not None:
            extra = torch.where(done.view(-1, *[1] * (extra.dim() - 1)), torch.zeros_like(extra), extra)
            step_extra = extra[:, None]
            extras = step_extra.index_select(0, origin) if extras is None else \
                torch.cat([extras, step_extra], 1).index_select(0, origin)
        was_done = done.index_select(0, origin)
        lengths = lengths.index_select(0, origin)
        newly = (~was_done) & (y == eos)
        lengths = torch.where(newly, torch.full_like(lengths, t + 1), lengths)
        done = was_done | newly
        if bool(done.all()):
            break
    steps = prefix.shape[1] - 1
    lengths = torch.minimum(lengths, torch.full_like(lengths, steps))
    norm = scores / lengths.reshape(B, K).to(scores.dtype).pow(alpha)    # (B, K)
    best = norm.argmax(dim=-1) + torch.arange(B, device=device) * K      # (B,)
    return Decoded(
        prefix.index_select(0, best)[:, 1:],
        lengths.index_select(0, best),
        norm.reshape(-1).index_select(0, best),
        None if extras is None else extras.index_select(0, best),
    )


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------

def _strip(row: Sequence[int], pad_idx: int, eos_idx: int | None) -> list[int]:
    out = []
    for tok in row:
        if eos_idx is not None and tok == eos_idx:
            break
        if tok != pad_idx:
            out.append(tok)
    return out


def exact_match(predictions: torch.Tensor | Sequence[str], targets: torch.Tensor | Sequence[str],
                pad_idx: int = 0, eos_idx: int | None = None) -> float:
    """Fraction of rows predicted exactly.

    Strings are compared as they are. Token tensors ``(B, L1)`` and ``(B, L2)`` are compared
    after cutting each row at its first ``eos_idx`` (when given) and dropping ``pad_idx``.
    """
    require(len(predictions) == len(targets),
            f"predictions and targets must have the same number of rows, got {len(predictions)} and {len(targets)}")
    require(len(targets) > 0, "targets must not be empty")
    if isinstance(predictions, torch.Tensor) or isinstance(targets, torch.Tensor):
        require(isinstance(predictions, torch.Tensor) and predictions.dim() == 2,
                f"predictions must be a (B, L) tensor, got {getattr(predictions, 'shape', type(predictions).__name__)}")
        require(isinstance(targets, torch.Tensor) and targets.dim() == 2,
                f"targets must be a (B, L) tensor, got {getattr(targets, 'shape', type(targets).__name__)}")
        hits = [
            _strip(p, pad_idx, eos_idx) == _strip(t, pad_idx, eos_idx)
            for p, t in zip(predictions.tolist(), targets.tolist())
        ]
    else:
        hits = [p == t for p, t in zip(predictions, targets)]
    return sum(hits) / len(hits)


def token_accuracy(predictions: torch.Tensor, targets: torch.Tensor, pad_idx: int = 0) -> float:
    """Fraction of non-padding target positions predicted correctly.

    ``predictions`` are tokens ``(B, L)`` or logits ``(B, L, V)`` (arg-maxed); ``targets (B, T)``.
    Predictions are cut or padded to ``T``; a missing position counts as wrong.
    """
    require(isinstance(targets, torch.Tensor) and targets.dim() == 2,
            f"targets must be a (B, T) tensor, got {getattr(targets, 'shape', type(targets).__name__)}")
    require(isinstance(predictions, torch.Tensor) and predictions.dim() in (2, 3),
            f"predictions must be (B, L) tokens or (B, L, V) logits, got "
            f"{getattr(predictions, 'shape', type(predictions).__name__)}")
    require(predictions.shape[0] == targets.shape[0],
            f"predictions and targets must have the same batch size, got shapes "
            f"{tuple(predictions.shape)} and {tuple(targets.shape)}")
    if predictions.dim() == 3:
        predictions = predictions.argmax(dim=-1)
    T = targets.shape[1]
    pred = predictions[:, :T]
    if pred.shape[1] < T:  # missing positions can never match a real token
        fill = torch.full((pred.shape[0], T - pred.shape[1]), -1, dtype=pred.dtype, device=pred.device)
        pred = torch.cat([pred, fill], dim=1)
    real = targets != pad_idx
    n = int(real.sum())
    require(n > 0, "targets has no non-padding token")
    return int(((pred.to(targets.device) == targets) & real).sum()) / n


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

def save_checkpoint(model: nn.Module, path: str | Path, optimizer: torch.optim.Optimizer | None = None,
                    **meta: int | float | str | bool) -> Path:
    """Save the model's ``state_dict`` (and the optimiser's, and plain ``meta`` values) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob: dict[str, Any] = {"model": model.state_dict(), "meta": dict(meta)}
    if optimizer is not None:
        blob["optimizer"] = optimizer.state_dict()
    torch.save(blob, path)
    return path


def load_checkpoint(model: nn.Module, path: str | Path,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Load a :func:`save_checkpoint` file into ``model`` (and ``optimizer``) with
    ``torch.load(..., weights_only=True)``, mapped to the model's device; returns ``meta``."""
    path = Path(path)
    require(path.is_file(), f"path must be an existing checkpoint file, got {str(path)!r}")
    try:
        blob = torch.load(path, map_location=model_device(model), weights_only=True)
    except Exception as err:  # truncated, garbage, or not written by torch.save
        raise ValueError(
            f"path {str(path)!r} is not a readable checkpoint: torch.load failed with "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from err
    require(isinstance(blob, dict) and isinstance(blob.get("model"), Mapping),
            f"path {str(path)!r} is not a save_checkpoint file: expected a dict with 'model', "
            f"got {type(blob).__name__}"
            f"{' with keys ' + str(sorted(map(str, blob))) if isinstance(blob, dict) else ''}")
    try:
        model.load_state_dict(blob["model"])
    except RuntimeError as err:
        raise ValueError(
            f"the checkpoint {str(path)!r} does not fit the model "
            f"({type(model).__name__}): {err}"
        ) from err
    if optimizer is not None:
        require("optimizer" in blob, f"the checkpoint {str(path)!r} holds no optimizer state")
        optimizer.load_state_dict(blob["optimizer"])
    return blob.get("meta", {})


# ---------------------------------------------------------------------------------------------
# Sampling from a language model
# ---------------------------------------------------------------------------------------------

def _check_logits(logits: torch.Tensor) -> None:
    require(isinstance(logits, torch.Tensor) and logits.dim() == 2 and logits.is_floating_point(),
            f"logits must be a floating point (B, V) tensor, got "
            f"{getattr(logits, 'dtype', type(logits).__name__)} with shape "
            f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else '?'}")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row and set the others to ``-inf`` (Fan et al.,
    2018): after a softmax exactly ``k`` tokens have non-zero probability (ties at the boundary
    are broken by ``torch.topk``). logits ``(B, V)`` -> ``(B, V)``; ``k >= V`` keeps everything."""
    _check_logits(logits)
    require(isinstance(k, int) and not isinstance(k, bool) and k >= 1,
            f"k must be an int >= 1, got {k!r} (logits shape {tuple(logits.shape)})")
    if k >= logits.shape[-1]:
        return logits
    keep = logits.topk(k, dim=-1).indices                              # (B, k)
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(-1, keep, logits.gather(-1, keep))              # (B, V)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al., 2020): keep the *smallest* set of most probable tokens
    whose total probability is at least ``p`` and set the other logits to ``-inf``.

    With the probabilities sorted in decreasing order, ``pi_(1) >= pi_(2) >= ...``, token ``(j)``
    is kept iff the mass before it, ``sum_{i<j} pi_(i)``, is below ``p``; so the most probable
    token is always kept and ``p = 1`` keeps every token of non-zero probability.
    logits ``(B, V)`` -> ``(B, V)``.
    """
    _check_logits(logits)
    require(isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 < p <= 1.0,
            f"p must be a number in (0, 1], got {p!r} (logits shape {tuple(logits.shape)})")
    sorted_logits, order = logits.sort(dim=-1, descending=True)        # (B, V)
    probs = torch.softmax(sorted_logits.float(), dim=-1)               # (B, V)
    before = probs.cumsum(dim=-1) - probs                              # mass of the tokens ahead
    drop_sorted = before >= p                                          # (B, V)
    drop_sorted[:, 0] = False                                          # the top token stays
    drop = drop_sorted.scatter(-1, order, drop_sorted)                 # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from ``softmax(logits / temperature)``, after :func:`top_k_filter` and
    then :func:`top_p_filter` (each when given). ``temperature = 0`` is greedy: ``argmax``
    (the limit of the tempered distribution as ``temperature -> 0``). logits ``(B, V)`` ->
    tokens ``(B,)`` long. ``generator`` (a CPU or same-device ``torch.Generator``) makes the
    draw reproducible."""
    _check_logits(logits)
    require(isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
            and temperature >= 0.0, f"temperature must be a number >= 0, got {temperature!r}")
    if temperature == 0:
        return logits.argmax(dim=-1)                                   # (B,)
    scaled = logits.float() / temperature                              # (B, V)
    if top_k is not None:
        scaled = top_k_filter(scaled, top_k)
    if top_p is not None:
        scaled = top_p_filter(scaled, top_p)
    probs = torch.softmax(scaled, dim=-1)                              # (B, V)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]      # (B,)


@torch.no_grad()
def generate(model: nn.Module, prompt: torch.Tensor, max_new_tokens: int, *,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             use_cache: bool = True, window: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue ``prompt (B, T0)`` by ``max_new_tokens`` tokens drawn with :func:`sample_next`
    from a decoder-only language model (:class:`attnbook.DecoderOnly`: ``model(tokens)`` ->
    logits ``(B, T, V)``; with ``use_cache`` also ``model.new_caches()`` and ``caches=``).
    Returns ``(B, T0 + max_new_tokens)``, the prompt included.

    * ``use_cache=True``: the prompt is fed once, then one token per step; each layer's
      :class:`attnbook.KVCache` keeps the keys and values of the earlier positions, so step ``t``
      costs ``O(t)`` attention work and ``O(1)`` everything else.
    * ``use_cache=False``: every step recomputes the whole sequence (``O(t^2)`` attention and
      ``O(t)`` everything else); with ``window`` only the last ``window`` tokens are fed (a
      sliding context, for models whose positions stop at ``max_len``).

    Both give the same tokens when ``window`` is None (the cached logits equal the full
    forward's). ``temperature = 0`` is greedy decoding. The model is put in eval mode (and its
    previous mode restored).
    """
    require(isinstance(prompt, torch.Tensor) and prompt.dim() == 2 and prompt.shape[1] >= 1
            and not prompt.is_floating_point(),
            f"prompt must be a (B, T0) integer tensor with T0 >= 1, got "
            f"{getattr(prompt, 'dtype', type(prompt).__name__)} with shape "
            f"{tuple(prompt.shape) if isinstance(prompt, torch.Tensor) else '?'}")
    require(isinstance(max_new_tokens, int) and max_new_tokens >= 0,
            f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    require(window is None or (isinstance(window, int) and window >= 1),
            f"window must be None or an int >= 1, got {window!r}")
    require(not (use_cache and window is not None),
            "window (a sliding context) needs use_cache=False: cached keys cannot be re-positioned")
    B, T0 = prompt.shape
    out = torch.empty(B, T0 + max_new_tokens, dtype=torch.long, device=prompt.device)
    out[:, :T0] = prompt
    was_training = model.training
    model.eval()
    try:
        caches = model.new_caches() if use_cache else None
        feed = out[:, :T0]                                             # (B, T0)
        for t in range(T0, T0 + max_new_tokens):
            if not use_cache:
                feed = out[:, (0 if window is None else max(0, t - window)):t]  # (B, <= t)
            logits = model(feed, caches=caches)[:, -1]                 # (B, V)
            out[:, t] = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                                    generator=generator)
            feed = out[:, t : t + 1]                                   # (B, 1), cached path
    finally:
        model.train(was_training)
    return out


__all__ += ["top_k_filter", "top_p_filter", "sample_next", "generate"]
