"""Argument checks shared by the package: each raises ``ValueError`` naming the argument and
the shape it got, before any arithmetic is done.

Two kinds of checks live here:

* *free* checks read only what the host already knows (shapes, dtypes, devices, Python
  numbers such as a cache length). They always run, also under ``torch.compile``.
* *data* checks read tensor values (token ids in range, positions below a table's length,
  indices in range). On a GPU that means copying a value back to the host and waiting for the
  device (a synchronisation), and under ``torch.compile`` it would split the graph. They run
  only when :func:`data_checks` is true: switched on by default, off with
  :func:`attnbook.utils.set_data_checks`, and always skipped while ``torch.compile`` traces.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch

__all__ = [
    "require",
    "shape_of",
    "check_ndim",
    "check_size",
    "check_mask",
    "check_bias",
    "check_positive_int",
    "check_int",
    "check_bool",
    "check_floating",
    "check_scale",
    "check_same_device",
    "check_input_dtype",
    "check_token_tensor",
    "check_token_ids",
    "check_batch_index",
    "data_checks",
    "autocast_enabled",
]

# the switch behind data_checks(); attnbook.utils.set_data_checks writes it
_DATA_CHECKS = True


def data_checks() -> bool:
    """Whether checks that read tensor values run now: the switch is on and ``torch.compile`` is
    not tracing (inside a compiled graph a host read would break the graph)."""
    return _DATA_CHECKS and not torch.compiler.is_compiling()


def autocast_enabled(device_type: str) -> bool:
    """``torch.autocast`` is active for tensors on ``device_type`` (e.g. ``"cuda"``, ``"cpu"``)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except (RuntimeError, TypeError):  # a device type autocast does not know (e.g. "meta")
        return False


def shape_of(x: torch.Tensor | None) -> str:
    """``(2, 3, 4)`` style text for a tensor's shape (``None`` for a missing tensor)."""
    return "None" if x is None else str(tuple(x.shape))


def require(condition: bool, message: str | Callable[[], str]) -> None:
    """Raise ``ValueError(message)`` unless ``condition`` holds.

    ``message`` may be a function returning the text (``lambda: f"... {shape_of(x)}"``): it is
    then formatted only when the check fails. That keeps a passing check free, and lets
    ``torch.compile`` trace it with symbolic shapes (formatting a symbolic shape would break the
    graph)."""
    if not condition:
        raise ValueError(message() if callable(message) else message)


def check_positive_int(name: str, value: int) -> None:
    """``value`` must be an ``int`` (not a ``bool``) ``> 0``."""
    require(
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        lambda: f"{name} must be a positive int, got {value!r}",
    )


def check_int(name: str, value: int, minimum: int = 1) -> None:
    """``value`` must be an ``int`` (not a ``bool``) ``>= minimum``."""
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        lambda: f"{name} must be an int >= {minimum}, got {value!r}",
    )


def check_bool(name: str, value: bool) -> None:
    """``value`` must be a ``bool`` (``causal="no"`` is truthy: refuse it rather than guess)."""
    require(isinstance(value, bool), lambda: f"{name} must be True or False, got {value!r}")


def check_floating(name: str, x: torch.Tensor) -> None:
    """``x`` must be a floating point tensor."""
    require(
        x.is_floating_point(),
        lambda: f"{name} must be floating point, got dtype {x.dtype} with shape {shape_of(x)}",
    )


def check_scale(name: str, scale: float | None) -> None:
    """``scale`` must be ``None`` or a finite real number."""
    if scale is None:
        return
    require(
        isinstance(scale, numbers.Real) and not isinstance(scale, bool) and math.isfinite(scale),
        lambda: f"{name} must be None or a finite number, got {scale!r}",
    )


def check_ndim(name: str, x: torch.Tensor, ndim: int | Sequence[int]) -> None:
    """``x`` must be a tensor with ``ndim`` dimensions (or one of several allowed counts)."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    require(isinstance(x, torch.Tensor), lambda: f"{name} must be a torch.Tensor, got {type(x).__name__}")
    require(
        x.dim() in allowed,
        lambda: f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {shape_of(x)}",
    )


def check_size(name: str, x: torch.Tensor, dim: int, size: int, what: str = "") -> None:
    """``x.shape[dim]`` must equal ``size``; ``what`` says where the expected size comes from."""
    require(
        x.dim() >= (dim + 1 if dim >= 0 else -dim) and x.shape[dim] == size,
        lambda: f"{name} must have size {size} in dimension {dim}{' (' + what + ')' if what else ''}, "
        f"got shape {shape_of(x)}",
    )


def check_same_device(name: str, x: torch.Tensor, device: torch.device, other: str = "q") -> None:
    """``x`` must live on ``device`` (the device of ``other``)."""
    require(
        x.device == device,
        lambda: f"{name} must be on the device of {other} ({device}), got {x.device} "
        f"(shape {shape_of(x)})",
    )


def _broadcasts(shape: Sequence[int], target: Sequence[int]) -> bool:
    return len(shape) <= len(target) and all(
        m in (1, t) for m, t in zip(reversed(tuple(shape)), reversed(tuple(target)))
    )


def check_mask(
    name: str, mask: torch.Tensor, target: Sequence[int], device: torch.device | None = None
) -> None:
    """``mask`` must be boolean, broadcastable to ``target`` (e.g. the scores' shape) and, when
    ``device`` is given, on that device."""
    require(isinstance(mask, torch.Tensor), lambda: f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    require(
        mask.dtype == torch.bool,
        lambda: f"{name} must be a boolean tensor (True = may attend), got dtype {mask.dtype} "
        f"with shape {shape_of(mask)}",
    )
    target = tuple(target)
    require(_broadcasts(mask.shape, target), lambda: f"{name} with shape {shape_of(mask)} does not broadcast to {target}")
    if device is not None:
        check_same_device(name, mask, device)


def check_bias(
    name: str, bias: torch.Tensor, target: Sequence[int], device: torch.device | None = None
) -> None:
    """``bias`` must be a floating point tensor broadcastable to ``target`` and, when ``device`` is
    given, on that device. Any floating dtype is accepted; callers cast it to their compute dtype."""
    require(
        isinstance(bias, torch.Tensor) and bias.is_floating_point(),
        lambda: f"{name} must be a floating point tensor, got {type(bias).__name__} "
        f"{getattr(bias, 'dtype', '')} with shape {shape_of(bias) if isinstance(bias, torch.Tensor) else '?'}",
    )
    target = tuple(target)
    require(_broadcasts(bias.shape, target), lambda: f"{name} with shape {shape_of(bias)} does not broadcast to {target}")
    if device is not None:
        check_same_device(name, bias, device)


def check_input_dtype(name: str, x: torch.Tensor, dtype: torch.dtype) -> None:
    """``x`` must be floating point and, outside ``torch.autocast``, have ``dtype`` (the module's
    parameters' dtype). Under autocast a half input next to float parameters is the normal case
    (autocast casts both for each operation), so any floating dtype is accepted."""
    require(
        x.is_floating_point(),
        lambda: f"{name} must be floating point, got dtype {x.dtype} with shape {shape_of(x)}",
    )
    require(
        x.dtype == dtype or autocast_enabled(x.device.type),
        lambda: f"{name} must have the parameters' dtype {dtype} (or run under torch.autocast), got "
        f"{x.dtype} with shape {shape_of(x)}",
    )


def check_token_tensor(name: str, tokens: torch.Tensor) -> None:
    """``tokens`` must be a 2-D integer tensor (the free half of :func:`check_token_ids`)."""
    check_ndim(name, tokens, 2)
    require(
        tokens.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8),
        lambda: f"{name} must be an integer (long) tensor of token ids, got dtype {tokens.dtype} "
        f"with shape {shape_of(tokens)}",
    )


def check_token_ids(name: str, tokens: torch.Tensor, vocab_size: int) -> None:
    """``tokens`` must be a 2-D integer tensor; with :func:`data_checks` on, its ids must lie in
    ``[0, vocab_size)`` (one host read; the details are read only when the check fails)."""
    check_token_tensor(name, tokens)
    if data_checks() and tokens.numel():
        if bool(((tokens < 0) | (tokens >= vocab_size)).any()):
            lo, hi = int(tokens.min()), int(tokens.max())
            raise ValueError(
                f"{name} must hold token ids in [0, {vocab_size}), got values in [{lo}, {hi}] "
                f"(shape {shape_of(tokens)})"
            )


def check_batch_index(name: str, index: torch.Tensor, batch: int) -> None:
    """With :func:`data_checks` on: every entry of the integer tensor ``index`` lies in
    ``[0, batch)`` (one host read for the whole tensor; the details only when it fails)."""
    if index.numel() and data_checks() and bool(((index < 0) | (index >= batch)).any()):
        lo, hi = int(index.min()), int(index.max())
        raise ValueError(
            f"{name} must hold batch rows in [0, {batch}), got values in [{lo}, {hi}] "
            f"(shape {shape_of(index)})"
        )
