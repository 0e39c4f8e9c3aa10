"""The exercises of every notebook in book/, read from their cell tags (scripts/exercise_cells.py).

For every chapter, present and future: at least three exercises; each computable exercise has its
four cells in order (exercise, answer, check, solution); each solution is hidden in the site,
Jupyter and Colab; each stub runs as shipped and is reported "not attempted yet"; and each
reference solution passes its checker. The per-chapter files tests/test_exercises_<stem>.py show
that the checkers also catch typical wrong answers.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import exercise_cells  # noqa: E402
import sync_notebooks  # noqa: E402
from exercise_support import (  # noqa: E402
    checker_module,
    final_check,
    reference,
    reference_extras,
    run_cell,
)

NOTEBOOKS = sync_notebooks.notebooks()
EXERCISES = [ex for path in NOTEBOOKS for ex in exercise_cells.exercises(path)]
CHECKED = [ex for ex in EXERCISES if ex.checked]


def ids(ex: exercise_cells.Exercise) -> str:
    return f"{ex.stem}-{ex.number}"


def cells(ex: exercise_cells.Exercise) -> dict[str, nbformat.NotebookNode]:
    nb = nbformat.read(ex.notebook, as_version=4)
    return {r: nb.cells[i] for r, i in ex.cells.items()}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_has_numbered_exercises(path):
    found = exercise_cells.exercises(path)
    assert len(found) >= 3, f"{path.name}: {len(found)} exercises tagged 'exercise', expected >= 3"
    assert [ex.number for ex in found] == list(range(1, len(found) + 1)), "numbered 1, 2, 3, ..."
    nb = nbformat.read(path, as_version=4)
    for ex in found:
        first = nb.cells[ex.cells[exercise_cells.EXERCISE]].source.split("\n", 1)[0]
        assert exercise_cells.HEADING.match(first), f"exercise cell must start '### Exercise N: title', got {first!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_come_in_order(path):
    """exercise, then answer, check, solution (computable) or solution alone (open), adjacent."""
    nb = nbformat.read(path, as_version=4)
    roles = [(i, exercise_cells.role(c)) for i, c in enumerate(nb.cells) if exercise_cells.role(c)]
    for k, (i, r) in enumerate(roles):
        following = roles[k + 1][1] if k + 1 < len(roles) else None
        adjacent = k + 1 < len(roles) and roles[k + 1][0] == i + 1
        if r == exercise_cells.ANSWER:
            assert following == exercise_cells.CHECK and adjacent, f"cell {i}: an answer cell must be followed by its check cell"
        if r == exercise_cells.CHECK:
            assert following == exercise_cells.SOLUTION and adjacent, f"cell {i}: a check cell must be followed by its solution cell"
        if r == exercise_cells.EXERCISE:
            assert following in (exercise_cells.ANSWER, exercise_cells.SOLUTION) and adjacent, (
                f"cell {i}: an exercise is followed by its answer cell, or (open-ended) its solution")
            assert nb.cells[i].cell_type == "markdown"
        if r in (exercise_cells.ANSWER, exercise_cells.CHECK, exercise_cells.SOLUTION):
            assert nb.cells[i].cell_type == "code", f"cell {i} tagged {r} must be a code cell"


@pytest.mark.parametrize("ex", EXERCISES, ids=ids)
def test_solution_is_hidden_everywhere(ex):
    assert exercise_cells.SOLUTION in ex.cells, "every exercise has a worked solution"
    cell = cells(ex)[exercise_cells.SOLUTION]
    assert exercise_cells.HIDE in cell.metadata["tags"], "the site folds cells tagged hide-cell"
    assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, "JupyterLab collapses source_hidden"
    assert cell.metadata.get("cellView") == "form", "Colab shows a cell with cellView 'form' as its title"
    assert cell.source.split("\n", 1)[0] == exercise_cells.SOLUTION_TITLE


@pytest.mark.parametrize("ex", CHECKED, ids=ids)
def test_check_cell_calls_its_chapter_checker(ex):
    c = cells(ex)
    source = c[exercise_cells.CHECK].source
    assert f"from attnbook.exercises import {ex.stem} as check" in source
    assert ex.checker and callable(getattr(checker_module(ex.stem), ex.checker, None)), (
        f"attnbook.exercises.{ex.stem} has no checker {ex.checker!r}")
    assert re.search(rf"check\.{ex.checker}\(\w+(, \w+)*\)\s*$", source), "the check's last line shows its Feedback"
    solution = c[exercise_cells.SOLUTION].source
    found = final_check(solution)
    assert found is not None and found[0] == ex.checker, (
        f"the solution must end with assert check.{ex.checker}(<name>_solution)")
    assert f"from attnbook.exercises import {ex.stem} as check" in solution, "solutions are self-contained"


@pytest.mark.parametrize("ex", CHECKED, ids=ids)
def test_stub_runs_and_is_not_attempted(ex):
    c = cells(ex)
    ns: dict = {}
    run_cell(c[exercise_cells.ANSWER].source, ns)
    feedback = run_cell(c[exercise_cells.CHECK].source, ns)
    assert feedback.status == "not attempted", str(feedback)
    assert "not attempted yet" in str(feedback) and "Hint:" in str(feedback)


@pytest.mark.parametrize("ex", CHECKED, ids=ids)
def test_reference_solution_passes_its_checker(ex):
    module = importlib.import_module(f"attnbook.exercises.{ex.stem}")
    refs = (reference(ex.stem, ex.checker), *reference_extras(ex.stem, ex.checker))
    feedback = getattr(module, ex.checker)(*refs)
    assert feedback.passed, str(feedback)


def test_every_checker_is_used_by_a_notebook():
    """No checker without an exercise: each public checker of attnbook.exercises.<stem> is called
    by a check cell of book/<stem>.ipynb."""
    for path in NOTEBOOKS:
        try:
            module = importlib.import_module(f"attnbook.exercises.{path.stem}")
        except ModuleNotFoundError:
            continue
        used = {ex.checker for ex in exercise_cells.exercises(path)}
        public = {n for n, f in vars(module).items()
                  if callable(f) and getattr(f, "__module__", "") == module.__name__
                  and getattr(f, "__wrapped__", None) is not None}
        assert public <= used, f"checkers of {path.stem} without an exercise: {sorted(public - used)}"


@pytest.mark.parametrize("ex", EXERCISES, ids=ids)
def test_exercise_code_fits_88_columns(ex):
    for role, c in cells(ex).items():
        if c.cell_type == "code":
            long = [line for line in c.source.split("\n") if len(line) > 88]
            assert not long, f"{role} cell: lines longer than 88 characters: {long}"
