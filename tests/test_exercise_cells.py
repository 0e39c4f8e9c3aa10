"""scripts/exercise_cells.py and the exercise part of scripts/sync_notebooks.py on small made-up
notebooks: reading the exercises, running a solution outside its notebook, the time line, and
hiding the solutions."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import exercise_cells  # noqa: E402
import sync_notebooks  # noqa: E402


def cell(kind: str, source: str, *tags: str) -> nbformat.NotebookNode:
    c = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def chapter(prose_words: int = 400) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        cell("md", "# A chapter\n\n" + " ".join(["word"] * prose_words)),
        cell("code", "x = 1"),
        cell("md", "### Exercise 1: Squares\n\nWrite `square(x)`.", "exercise"),
        cell("code", "def square(x):\n    raise NotImplementedError('hint')", "answer"),
        cell("code", "from attnbook.exercises import demo as check\n\ncheck.squares(square)", "check"),
        cell("code", "def square_solution(x):\n    return x * x\n\n\nassert square_solution(3) == 9",
             "solution"),
        cell("md", "### Exercise 2: Why?\n\nDiscuss.", "exercise"),
        cell("code", "# a worked answer\nprint(x)", "solution", "hide-cell"),
    ]
    return nb


def test_exercises_are_read_from_the_tags():
    first, second = exercise_cells.exercises(chapter())
    assert (first.number, first.title, first.checker, first.checked) == (1, "Squares", "squares", True)
    assert first.cells == {"exercise": 2, "answer": 3, "check": 4, "solution": 5}
    assert (second.number, second.title, second.checked) == (2, "Why?", False)
    assert second.cells == {"exercise": 6, "solution": 7}


def test_run_solution_skips_what_needs_the_notebook():
    source = "\n".join([
        "import math",
        "def f_solution(x):",
        "    return math.sqrt(x)",
        "y = model(3)",                 # reads a notebook variable: skipped
        "z = y + 1",                    # reads what the skipped statement set: skipped
        "results = {}",
        "for k in (1, 2):",
        "    results[k] = model(k)",   # skipped, and it changes `results`
        "assert results[1] == 1",      # so this is skipped too
        "assert f_solution(4) == 2",
    ])
    ns, skipped = exercise_cells.run_solution(source)
    assert ns["f_solution"](9) == 3 and "y" not in ns and "z" not in ns
    assert len(skipped) == 4 and skipped[0] == "y = model(3)"
    with pytest.raises(AssertionError):
        exercise_cells.run_solution("def g_solution():\n    return 1\n\nassert g_solution() == 2")


def test_word_count_reads_prose_not_markup():
    text = "Read [the chapter](history.ipynb) {cite:p}`vaswani2017attention`, then $a + b$."
    # Read, the, chapter, citation, then, and the two symbols a, b of the equation
    assert exercise_cells.count_words(text) == 7


def test_time_line_is_measured_and_rewritten_in_place():
    nb = chapter(prose_words=1000)
    timing = exercise_cells.timing(nb)
    assert timing.words == 1000 + 2  # "A chapter"
    assert timing.reading_minutes == round(1002 / exercise_cells.WORDS_PER_MINUTE)
    assert (timing.exercises, timing.checked) == (2, 1)
    assert timing.exercise_minutes % 5 == 0 and timing.exercise_minutes >= 2 * exercise_cells.EXERCISE_BASE_MINUTES
    once = sync_notebooks.timed(nb)
    first = once.cells[0].source
    assert first.startswith("# A chapter\n\n**Time:** about 5 minutes to read (1,002 words)")
    assert "2 exercises (1 with a checker)" in first
    twice = sync_notebooks.timed(once)
    assert twice.cells[0].source == first, "rewriting is idempotent"
    longer = chapter(prose_words=3000)
    longer.cells[0].source = first.replace("word", "more", 1) + " word" * 2000
    assert "about 15 minutes to read" in sync_notebooks.timed(longer).cells[0].source


def test_solutions_are_hidden_in_every_viewer():
    nb = sync_notebooks.hidden_solutions(chapter())
    for i in (5, 7):
        c = nb.cells[i]
        assert c.metadata["tags"].count("hide-cell") == 1
        assert c.metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
        assert c.metadata["cellView"] == "form"
        assert c.source.split("\n")[0] == exercise_cells.SOLUTION_TITLE
    assert nb.cells[5].source.split("\n", 1)[1].startswith("def square_solution")
    again = sync_notebooks.hidden_solutions(nb)
    assert nbformat.writes(again) == nbformat.writes(nb), "idempotent: one title line, one tag"
    for i in (1, 3, 4):
        assert "jupyter" not in nb.cells[i].metadata and "cellView" not in nb.cells[i].metadata
