"""Device selection, reproducibility and the data-check switch used by every chapter."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from . import _validate

__all__ = ["device", "seed_everything", "set_data_checks", "data_checks_enabled"]


def device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, *, deterministic: bool = False) -> torch.Generator:
    """Seed Python's ``random``, NumPy's global generator and PyTorch (the CPU generator and every
    CUDA/MPS device's), and return a new CPU ``torch.Generator`` seeded with ``seed``.

    Equivalent to::

        random.seed(seed); np.random.seed(seed % 2**32); torch.manual_seed(seed)
        return torch.Generator().manual_seed(seed)

    What it does *not* do: Python's string hashing (the order of a ``set`` of strings) is
    randomised once, when the interpreter starts, from the ``PYTHONHASHSEED`` environment
    variable; setting that variable in a running process changes nothing, so this function
    leaves it alone (set it before starting Python if a set's order matters). Seeding alone does
    not make GPU results bitwise repeatable either: some CUDA kernels (cuBLAS reductions,
    atomics in scatter/index backward passes) are nondeterministic.

    ``deterministic=True`` also asks for repeatable kernels: it calls
    ``torch.use_deterministic_algorithms(True)`` (an operation without a deterministic
    implementation then raises ``RuntimeError`` instead of varying), turns off cuDNN's
    autotuner (``torch.backends.cudnn.benchmark = False``, ``cudnn.deterministic = True``) and
    sets ``CUBLAS_WORKSPACE_CONFIG=":4096:8"``, which cuBLAS needs for deterministic results;
    cuBLAS reads it when CUDA initialises it, so call this before the first CUDA matmul. These
    are process-wide settings and slow some operations down; ``deterministic=False`` (the
    default) leaves them as they are.

    Raises ``ValueError`` for a seed that is not a non-negative integer, or a ``deterministic``
    that is not a bool.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _validate.check_bool("deterministic", deterministic)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA and MPS generators too
    if deterministic:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return torch.Generator().manual_seed(seed)


def data_checks_enabled() -> bool:
    """Whether the value-reading input checks are switched on (see :class:`set_data_checks`)."""
    return _validate._DATA_CHECKS


class set_data_checks:
    """Switch the checks that read tensor *values* on or off (on by default).

    attnbook checks its inputs before computing. Most checks are free: shapes, dtypes, devices
    and Python integers the host already knows. A few must read values: token ids within the
    vocabulary, positions within a learned table, indices within a batch, mask lengths. On a GPU
    reading a value means copying it to the host and waiting for every queued kernel (a
    synchronisation), which stalls the pipeline on every forward pass; under ``torch.compile`` it
    would split the graph in two. So these data checks:

    * run by default, in eager mode, so a bad token id is a clear ``ValueError`` rather than a
      device-side assert or a silently wrong embedding;
    * are skipped while ``torch.compile`` traces a model (``torch.compiler.is_compiling()``),
      so compiled models have no graph breaks;
    * can be switched off here, e.g. for a generation loop on a GPU that must not synchronise
      (with them off, a cached decoding step runs under
      ``torch.cuda.set_sync_debug_mode("error")``).

    Free checks always run. Use it as a call or as a context manager (which restores the
    previous setting on exit), like ``torch.set_grad_enabled``::

        attnbook.utils.set_data_checks(False)      # from now on
        with attnbook.utils.set_data_checks(False):  # only inside the block
            ...
    """

    def __init__(self, enabled: bool) -> None:
        _validate.check_bool("enabled", enabled)
        self.previous = _validate._DATA_CHECKS
        self.enabled = enabled
        _validate._DATA_CHECKS = enabled

    def __enter__(self) -> set_data_checks:
        return self

    def __exit__(self, *exc: object) -> None:
        _validate._DATA_CHECKS = self.previous

    def __repr__(self) -> str:
        return f"set_data_checks({self.enabled})"
