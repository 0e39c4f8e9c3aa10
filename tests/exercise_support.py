"""Test helpers for the exercise checkers: the reference solutions, taken from the notebooks.

A reference solution lives in one place only, the chapter's ``solution`` cell. The tests execute
that cell's self-contained part (``scripts/exercise_cells.run_solution``: the statements that
read a variable of the notebook, such as a trained model, are skipped) and take the reference
from the final ``assert check.<name>(<reference>)``.
"""

from __future__ import annotations
import __future__

import ast
import functools
import importlib
import sys
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import exercise_cells  # noqa: E402


def notebook(stem: str) -> Path:
    return ROOT / "book" / f"{stem}.ipynb"


def checker_module(stem: str):
    return importlib.import_module(f"attnbook.exercises.{stem}")


def final_check(source: str) -> tuple[str, ast.expr] | None:
    """(checker name, reference expression) of a solution's final ``assert check.<name>(ref)``."""
    body = ast.parse(source).body
    last = body[-1] if body else None
    if not (isinstance(last, ast.Assert) and isinstance(last.test, ast.Call)):
        return None
    func = last.test.func
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            and func.value.id == "check" and last.test.args):
        return None
    return func.attr, last.test.args[0]


def extra_args(source: str) -> list[ast.expr]:
    """The arguments after the first of a solution's final ``assert check.<name>(ref, ...)``
    (a checker that takes several answers, e.g. two related functions)."""
    return list(ast.parse(source).body[-1].test.args[1:])


@functools.cache
def _solutions(stem: str) -> dict[str, tuple[Any, list[str]]]:
    """checker name -> (reference, skipped statements), for every checked exercise of a chapter."""
    path = notebook(stem)
    nb = nbformat.read(path, as_version=4)
    out = {}
    for ex in exercise_cells.exercises(path):
        if not ex.checked or exercise_cells.SOLUTION not in ex.cells:
            continue
        source = nb.cells[ex.cells[exercise_cells.SOLUTION]].source
        found = final_check(source)
        assert found is not None, f"{stem} exercise {ex.number}: the solution does not end with assert check.<name>(...)"
        name, ref = found
        ns, skipped = exercise_cells.run_solution(source)
        assert not skipped or ast.get_source_segment(source, ast.parse(source).body[-1]) not in skipped, (
            f"{stem} exercise {ex.number}: the final check reads a variable of the notebook")
        value = eval(compile(ast.Expression(ref), "<reference>", "eval"), ns)  # noqa: S307
        extras = tuple(eval(compile(ast.Expression(a), "<reference>", "eval"), ns)  # noqa: S307
                       for a in extra_args(source))
        out[name] = (value, skipped, extras)
    return out


def reference(stem: str, name: str) -> Any:
    """The reference answer that the notebook's solution cell gives to ``check.<name>``."""
    solutions = _solutions(stem)
    assert name in solutions, f"no solution cell of {stem} ends with assert check.{name}(...)"
    return solutions[name][0]


def reference_extras(stem: str, name: str) -> tuple[Any, ...]:
    """The further reference answers of a checker that takes several (empty for most)."""
    return _solutions(stem)[name][2]


def run_cell(source: str, ns: dict[str, Any]) -> Any:
    """Execute a code cell like a notebook does: the value of its last expression is returned.
    Annotations are not evaluated, so a stub may annotate with names the notebook imported."""
    tree = ast.parse(source)
    flags = __future__.annotations.compiler_flag
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<cell>", "exec", flags=flags, dont_inherit=True), ns)  # noqa: S102
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), "<cell>", "eval", flags=flags, dont_inherit=True), ns)  # noqa: S307


def solution_cells(stem: str, count: int) -> dict[str, Any]:
    """Every ``solution`` cell of a chapter whose solutions are self-contained (imports and
    definitions, ending with ``assert check.<name>(...)``), executed in order in one fresh
    namespace; the chapter must have exactly ``count`` of them, each folded (``hide-cell``)."""
    cells = [c for c in nbformat.read(notebook(stem), as_version=4).cells
             if exercise_cells.SOLUTION in exercise_cells.tags(c)]
    assert len(cells) == count, f"{stem}: {len(cells)} solution cells, expected {count}"
    ns: dict[str, Any] = {}
    for cell in cells:
        assert exercise_cells.HIDE in exercise_cells.tags(cell)
        exec(compile(cell.source, f"<{stem} solution>", "exec"), ns)  # noqa: S102
    return ns


def tagged_cells(stem: str, tag: str) -> list[str]:
    """The sources of a chapter's cells tagged ``tag`` (``answer``, ``solution``...), in order."""
    nb = nbformat.read(notebook(stem), as_version=4)
    return [c.source for c in nb.cells if tag in c.metadata.get("tags", [])]


def run_tagged(stem: str, tag: str, **namespace: Any) -> dict:
    """Execute a chapter's cells tagged ``tag`` in one namespace (seeded with ``namespace``) and
    return it: the shipped stubs (``answer``) or the whole reference solutions (``solution``),
    each of which ends with its own ``assert check.<name>(...)``."""
    for source in tagged_cells(stem, tag):
        exec(compile(source, str(notebook(stem)), "exec"), namespace)
    return namespace
