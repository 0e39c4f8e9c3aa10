"""Checkers of the chapter "A FlashAttention kernel in Triton": the reference solutions (read
from the notebook's `solution` cells) pass, typical wrong answers are caught with their message.

Each solution cell is written to a file and imported as a module, so that ``@triton.jit`` can
read its source (it needs a file; the interpreter does too for its rewriting).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import nbformat
import pytest
import torch

from attnbook import kernels
from attnbook.exercises import triton_kernel as check
from attnbook.kernels import tile_schedule

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "book" / "triton_kernel.ipynb"
needs_kernels = pytest.mark.skipif(
    not kernels.is_available()
    or not (torch.cuda.is_available() or kernels.interpreter_requested()),
    reason="needs triton and a CUDA device or TRITON_INTERPRET=1",
)


def solution_sources() -> list[str]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return [c.source for c in nb.cells if "solution" in c.metadata.get("tags", [])]


@pytest.fixture(scope="module")
def solutions(tmp_path_factory) -> dict:
    """name -> object for every ``*_solution`` (and the open-ended exercise's ``window_*``
    functions) defined by the notebook's solution cells."""
    if not kernels.is_available():
        pytest.skip("triton is not installed")
    found = {}
    folder = tmp_path_factory.mktemp("solutions")
    for i, source in enumerate(solution_sources()):
        path = folder / f"triton_kernel_solution_{i}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # runs the cell, including its own assertions
        found |= {k: v for k, v in vars(module).items()
                  if k.endswith("_solution") or k.startswith("window_")}
    return found


def test_every_exercise_has_its_cells():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert sum("exercise" in t for t in tags) >= 3
    assert sum("check" in t for t in tags) == sum("answer" in t for t in tags) == 3
    assert all("hide-cell" in t for t in tags if "solution" in t)


# --------------------------------------------------------------------------------------------
# Exercise 1: tiles visited
# --------------------------------------------------------------------------------------------


@needs_kernels
def test_tiles_visited_solution_passes(solutions):
    assert check.tiles_visited(solutions["tiles_visited_solution"])


def test_tiles_visited_catches_typical_mistakes():
    def all_tiles(T, S, bm, bn, causal):
        return math.ceil(T / bm) * math.ceil(S / bn)

    def top_left(T, S, bm, bn, causal):  # diagonal through (0, 0)
        if not causal:
            return all_tiles(T, S, bm, bn, causal)
        return sum(min(math.ceil(S / bn), (min(m + bm, T) - 1) // bn + 1)
                   for m in range(0, T, bm))

    def floor_tiles(T, S, bm, bn, causal):  # forgets the partial tiles
        return tile_schedule(T // bm * bm, S // bn * bn, bm, bn, causal=causal).visited()

    assert check.tiles_visited(None).status == "not attempted"
    wrong = check.tiles_visited(all_tiles)
    assert not wrong and "above the diagonal are skipped" in wrong.message
    wrong = check.tiles_visited(top_left)
    assert not wrong and "bottom-right" in wrong.message
    wrong = check.tiles_visited(floor_tiles)
    assert not wrong and "partial tile" in wrong.message
    wrong = check.tiles_visited(lambda *args: 1.5)
    assert not wrong and "return an int" in wrong.message


# --------------------------------------------------------------------------------------------
# Exercise 2: the Delta kernel
# --------------------------------------------------------------------------------------------

if kernels.is_available():
    import triton
    import triton.language as tl

    @triton.jit
    def _first_block_only(Out, DO, DELTA, T, D: tl.constexpr, BLOCK: tl.constexpr):
        rows = tl.arange(0, BLOCK)  # forgets the program id: every program does block 0
        n = tl.program_id(1)
        cols = tl.arange(0, D)
        offsets = n * T * D + rows[:, None] * D + cols[None, :]
        inside = rows[:, None] < T
        o = tl.load(Out + offsets, mask=inside, other=0.0).to(tl.float32)
        do = tl.load(DO + offsets, mask=inside, other=0.0).to(tl.float32)
        tl.store(DELTA + n * T + rows, tl.sum(o * do, axis=1), mask=rows < T)

    def _wrong_grid(o, do, block=32):
        N, T, D = o.shape
        delta = torch.zeros(N, T, dtype=torch.float32, device=o.device)
        _first_block_only[(triton.cdiv(T, block), N)](o.contiguous(), do.contiguous(), delta,
                                                       T, D=D, BLOCK=block)
        return delta


@needs_kernels
def test_row_dot_solution_passes(solutions):
    assert check.row_dot(solutions["row_dot_solution"])


@needs_kernels
def test_row_dot_catches_typical_mistakes():
    assert check.row_dot(None).status == "not attempted"
    wrong = check.row_dot(_wrong_grid)
    assert not wrong and "does your grid launch cdiv(T, BLOCK) programs" in wrong.message
    wrong = check.row_dot(lambda o, do: (o * do).sum(-1))  # keeps the input dtype
    assert not wrong and "expected torch.float32" in wrong.message
    wrong = check.row_dot(lambda o, do: (o.float() * do.float()).sum(1))  # wrong axis
    assert not wrong and "one number per row" in wrong.message
    wrong = check.row_dot(lambda o, do: (o.half().float() * do.float()).sum(-1))
    assert not wrong and "off by up to" in wrong.message


# --------------------------------------------------------------------------------------------
# Exercise 3: merging two partial results
# --------------------------------------------------------------------------------------------


@needs_kernels
def test_combine_solution_passes(solutions):
    assert check.combine_partials(solutions["combine_solution"])


def test_combine_catches_typical_mistakes():
    def average(o1, lse1, o2, lse2):
        return (o1 + o2) / 2, torch.logaddexp(lse1, lse2)

    def unguarded(o1, lse1, o2, lse2):
        lse = torch.logaddexp(lse1, lse2)
        return (torch.exp(lse1 - lse)[..., None] * o1 + torch.exp(lse2 - lse)[..., None] * o2,
                lse)

    def max_lse(o1, lse1, o2, lse2):
        lse = torch.logaddexp(lse1, lse2)
        shift = lse.masked_fill(lse.isneginf(), 0.0)
        o = torch.exp(lse1 - shift)[..., None] * o1 + torch.exp(lse2 - shift)[..., None] * o2
        return o, torch.maximum(lse1, lse2)

    assert check.combine_partials(None).status == "not attempted"
    wrong = check.combine_partials(average)
    assert not wrong and "plain average" in wrong.message
    wrong = check.combine_partials(unguarded)
    assert not wrong and "NaN" in wrong.message
    wrong = check.combine_partials(max_lse)
    assert not wrong and "logaddexp" in wrong.message
    wrong = check.combine_partials(lambda *args: args[0])
    assert not wrong and "return a pair" in wrong.message


@needs_kernels
def test_sliding_window_solution_reduces_to_causal_for_a_wide_window(solutions):
    window_tiles = solutions["window_tiles"]
    for n, bm, bn in [(256, 32, 32), (200, 16, 64), (97, 64, 16)]:
        assert window_tiles(n, bm, bn, n) == tile_schedule(n, n, bm, bn, causal=True).visited()
        assert window_tiles(n, bm, bn, 1) < tile_schedule(n, n, bm, bn, causal=True).visited()
