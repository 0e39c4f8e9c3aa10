"""The exercises of the book's notebooks, read from their cell tags.

Every chapter marks its exercises with cell tags (README, "Contributing a chapter"):

==========  ==========  ================================================================
tag         cell        holds
==========  ==========  ================================================================
exercise    markdown    ``### Exercise N: title`` and the task (a hint, for open ones)
answer      code        the student's stub, runnable as shipped (computable exercises)
check       code        ``check.<name>(answer)``, the checker's Feedback as last expression
solution    code        the reference (also tagged ``hide-cell``), ending with
                        ``assert check.<name>(<name>_solution)`` when there is a checker
==========  ==========  ================================================================

This module is the one reader of that convention: ``scripts/sync_notebooks.py`` (solution
metadata, reading time), the Sphinx extension ``scripts/exercise_index.py`` (the exercises page)
and the tests use it. It needs only the standard library and nbformat.
"""

from __future__ import annotations

import ast
import builtins
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

EXERCISE, ANSWER, CHECK, SOLUTION = "exercise", "answer", "check", "solution"
HIDE = "hide-cell"
ROLES = (EXERCISE, ANSWER, CHECK, SOLUTION)
HEADING = re.compile(r"^### Exercise (\d+): (.+?)\s*$")
CHECK_CALL = re.compile(r"\bcheck\.(\w+)\(")

# What a student should see of a solution until they ask for it. JupyterLab 4 and Notebook 7
# collapse a cell whose metadata.jupyter.source_hidden (input) / outputs_hidden (output) is true.
# Colab shows a cell in form view (metadata.cellView = "form", and the `display-mode: "form"` of
# its `# @title` line) as its title alone, with a "Show code" link; a double-click opens it.
# JupyterLab shows a collapsed cell as its first line and an ellipsis; a click opens it.
SOLUTION_TITLE = '# @title Solution: try the exercise first { display-mode: "form" }'
SOLUTION_METADATA = {"cellView": "form", "jupyter": {"source_hidden": True, "outputs_hidden": True}}

# Reading time: prose at WORDS_PER_MINUTE; an exercise takes EXERCISE_BASE_MINUTES, plus the time
# to read its task, plus MINUTES_PER_SOLUTION_LINE for each line of code its reference solution
# needed (a student writes about as much).
WORDS_PER_MINUTE = 200
EXERCISE_BASE_MINUTES = 3
MINUTES_PER_SOLUTION_LINE = 0.5
TIME_LINE = re.compile(r"^\*\*Time:\*\* .*$", re.MULTILINE)


def tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def role(cell: nbformat.NotebookNode) -> str | None:
    """The exercise role of a cell (one of ROLES), or None."""
    found = [t for t in tags(cell) if t in ROLES]
    return found[0] if found else None


@dataclass
class Exercise:
    """One exercise of a notebook: where its cells are and what checks it."""

    notebook: Path
    number: int
    title: str
    cells: dict[str, int]  # role -> index of the cell in the notebook
    task: str
    checker: str | None = None  # the name called as check.<name>(...) in the check cell

    @property
    def checked(self) -> bool:
        return ANSWER in self.cells and CHECK in self.cells

    @property
    def stem(self) -> str:
        return self.notebook.stem


def exercises(notebook: Path | nbformat.NotebookNode, path: Path | None = None) -> list[Exercise]:
    """The exercises of a notebook in order. Cells tagged answer/check/solution belong to the
    exercise cell before them."""
    if isinstance(notebook, Path):
        path, nb = notebook, nbformat.read(notebook, as_version=4)
    else:
        nb = notebook
    found: list[Exercise] = []
    for i, cell in enumerate(nb.cells):
        r = role(cell)
        if r == EXERCISE:
            first = cell.source.split("\n", 1)[0]
            match = HEADING.match(first)
            number, title = (int(match[1]), match[2]) if match else (len(found) + 1, first)
            found.append(Exercise(path or Path("?"), number, title, {EXERCISE: i}, cell.source))
        elif r is not None and found:
            found[-1].cells.setdefault(r, i)
            if r == CHECK and (call := CHECK_CALL.search(cell.source)):
                found[-1].checker = call[1]
    return found


def cell_source(notebook: Path, exercise: Exercise, which: str) -> str:
    nb = nbformat.read(notebook, as_version=4)
    return nb.cells[exercise.cells[which]].source


# ------------------------------------------------------------------------------------------------
# Running a solution cell outside its notebook
# ------------------------------------------------------------------------------------------------


def _bound(node: ast.AST) -> set[str]:
    """Names a statement binds (assignment targets, definitions, imports, loop variables...)."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            names.add(sub.id)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(sub.name)
        elif isinstance(sub, ast.arg):
            names.add(sub.arg)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in sub.names)
        elif isinstance(sub, ast.ExceptHandler) and sub.name:
            names.add(sub.name)
    return names


def _free(node: ast.stmt) -> set[str]:
    """Names a top-level statement reads that it does not bind itself. A definition's body is
    not run when it is defined, so only its decorators and defaults count."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        parts: list[ast.AST] = list(node.decorator_list)
        if isinstance(node, ast.ClassDef):
            parts += node.bases
        else:
            parts += node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
    else:
        parts = [node]
    loads = {
        sub.id for part in parts for sub in ast.walk(part)
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)
    }
    return loads - _bound(node)


_MUTATORS = {"append", "extend", "insert", "update", "setdefault", "pop", "remove", "clear",
             "add", "discard"}


def _base(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _changed(node: ast.stmt) -> set[str]:
    """Names a statement may change: those it assigns, those whose items or attributes it
    assigns, and the receivers of mutating methods (``x.append(...)``, in-place ``x.add_(...)``)."""
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            names.add(sub.id)
        elif isinstance(sub, (ast.Attribute, ast.Subscript)) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            names.add(_base(sub))
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute):
            method = sub.func.attr
            if method in _MUTATORS or (method.endswith("_") and not method.startswith("_")):
                names.add(_base(sub.func.value))
    return names - {None}


def run_solution(source: str, namespace: dict[str, Any] | None = None) -> tuple[dict, list[str]]:
    """Execute the self-contained part of a solution cell: every statement whose names are
    defined by the cell itself (or by ``namespace``) runs, in order; a statement that reads a
    variable of the notebook (a trained model, say) is skipped, and so is every later statement
    that reads a variable the skipped one may have set or changed. Returns the namespace and the
    source of the skipped statements.
    """
    ns: dict[str, Any] = {} if namespace is None else namespace
    ns.setdefault("__name__", "solution")
    tree = ast.parse(source)
    known = set(ns) | set(dir(builtins))
    tainted: set[str] = set()
    skipped: list[str] = []
    for node in tree.body:
        if _free(node) - known or _free(node) & tainted:
            skipped.append(ast.get_source_segment(source, node) or ast.dump(node))
            tainted |= _changed(node)  # these may now hold something else
            continue
        exec(compile(ast.Module(body=[node], type_ignores=[]), "<solution>", "exec"), ns)  # noqa: S102
        known |= set(ns)
    return ns, skipped


# ------------------------------------------------------------------------------------------------
# Reading and exercise time
# ------------------------------------------------------------------------------------------------

_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.DOTALL)
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_ROLE = re.compile(r"\{cite:[a-z]+\}`[^`]*`")
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def count_words(markdown: str) -> int:
    """Words of prose: link targets and citation roles are not read; an equation counts as one
    word per symbol group, roughly what reading it costs."""
    text = _ROLE.sub(" citation ", markdown)
    text = _LINK_TARGET.sub("]", text)
    text = TIME_LINE.sub("", text)
    math_words = sum(len(_WORD.findall(m)) for m in _MATH.findall(text))
    return len(_WORD.findall(_MATH.sub(" ", text))) + math_words


def code_lines(source: str) -> int:
    """Lines of code, not counting blanks, comments and the Colab title line."""
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


@dataclass(frozen=True)
class Timing:
    words: int
    reading_minutes: int
    exercises: int
    checked: int
    exercise_minutes: int

    def line(self) -> str:
        """The sentence written at the top of a chapter."""
        text = f"**Time:** about {self.reading_minutes} minutes to read ({self.words:,} words)"
        if not self.exercises:
            return text + "."
        checked = "all" if self.checked == self.exercises else str(self.checked)
        return text + (f" and about {self.exercise_minutes} minutes for the {self.exercises} "
                       f"exercises ({checked} with a checker).")


def timing(nb: nbformat.NotebookNode) -> Timing:
    """Reading time from the prose's word count, exercise time from the exercises' tasks and the
    size of their reference solutions (constants above)."""
    found = exercises(nb)
    exercise_cells = {i for ex in found for i in ex.cells.values()}
    words = sum(
        count_words(c.source) for i, c in enumerate(nb.cells)
        if c.cell_type == "markdown" and i not in exercise_cells
    )
    minutes = 0.0
    for ex in found:
        minutes += EXERCISE_BASE_MINUTES + count_words(ex.task) / WORDS_PER_MINUTE
        if SOLUTION in ex.cells:
            minutes += MINUTES_PER_SOLUTION_LINE * code_lines(nb.cells[ex.cells[SOLUTION]].source)
    return Timing(
        words=words,
        reading_minutes=max(1, round(words / WORDS_PER_MINUTE)),
        exercises=len(found),
        checked=sum(ex.checked for ex in found),
        exercise_minutes=5 * max(1, math.ceil(minutes / 5)) if found else 0,
    )


def with_time_line(first_markdown: str, line: str) -> str:
    """The chapter's first markdown cell with ``line`` as the paragraph after its title."""
    if TIME_LINE.search(first_markdown):
        return TIME_LINE.sub(line.replace("\\", "\\\\"), first_markdown, count=1)
    title, _, rest = first_markdown.partition("\n")
    return f"{title}\n\n{line}\n\n{rest.lstrip(chr(10))}".rstrip("\n")
