"""The exercises page (book/exercises.md, scripts/exercise_index.py) is generated from the
notebooks: a small book of two real chapters and one new, made-up chapter is built without
executing anything, and its exercises page must list every exercise of the three in
table-of-contents order, say which have a checker, and link to anchors that exist."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import exercise_cells  # noqa: E402

JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"
CHAPTERS = ["first_look", "nmt_attention"]


def new_chapter() -> nbformat.NotebookNode:
    """A chapter written after the index: two exercises, one checked, one open."""
    def cell(kind, source, tags):
        c = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
        c.metadata["tags"] = tags
        return c

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A new chapter\n\nWritten after the index."),
        nbformat.v4.new_markdown_cell("## Exercises"),
        cell("md", "### Exercise 1: Cost of $T^2$ scores\n\nCount them.", ["exercise"]),
        cell("code", "def count(T):\n    raise NotImplementedError('hint')", ["answer"]),
        cell("code", "check.count_scores(count)", ["check"]),
        cell("code", "def count_solution(T):\n    return T * T", ["solution", "hide-cell"]),
        cell("md", "### Exercise 2: Why?\n\nDiscuss.", ["exercise"]),
        cell("code", "# a worked answer", ["solution", "hide-cell"]),
    ]
    return nb


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if not JUPYTER_BOOK.exists():
        pytest.skip("jupyter-book is not installed")
    src = tmp_path_factory.mktemp("book")
    book = src / "book"
    book.mkdir()
    for stem in CHAPTERS:
        shutil.copy(ROOT / "book" / f"{stem}.ipynb", book)
    nbformat.write(new_chapter(), book / "new_chapter.ipynb")
    shutil.copy(ROOT / "book" / "exercises.md", book)
    shutil.copy(ROOT / "book" / "references.bib", book)
    (book / "intro.md").write_text("# Test book\n")
    toc = {"format": "jb-book", "root": "book/intro", "parts": [
        {"caption": "Chapters", "numbered": True,
         "chapters": [{"file": f"book/{s}"} for s in (*CHAPTERS, "new_chapter")]},
        {"caption": "Back matter", "chapters": [{"file": "book/exercises"}]},
    ]}
    (src / "_toc.yml").write_text(yaml.safe_dump(toc))
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    mini = {
        "title": "exercise index test", "only_build_toc_files": True,
        "exclude_patterns": ["_build", "**/.*"],
        "execute": {"execute_notebooks": "off"},
        "bibtex_bibfiles": ["book/references.bib"], "parse": config["parse"],
        "sphinx": {"local_extensions": {"exercise_index": str(ROOT / "scripts")},
                   "config": {"bibtex_reference_style": "author_year"}},
    }
    (src / "_config.yml").write_text(yaml.safe_dump(mini))
    result = subprocess.run([str(JUPYTER_BOOK), "build", str(src), "--keep-going"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "exercise index" not in log, "the extension warned: " + log[-3000:]
    return src / "_build" / "html" / "book"


def page_text(path: Path) -> str:
    text = re.sub(r"<[^>]+>", " ", path.read_text())
    return re.sub(r"\s+", " ", html.unescape(text))


def test_every_exercise_is_listed_in_order(site):
    text = page_text(site / "exercises.html")
    expected = [(stem, ex) for stem in CHAPTERS for ex in exercise_cells.exercises(ROOT / "book" / f"{stem}.ipynb")]
    expected += [("new_chapter", ex) for ex in exercise_cells.exercises(new_chapter())]
    positions = []
    for stem, ex in expected:
        plain = re.sub(r"\$([^$]+)\$", r"\\(\1\\)", f"Exercise {ex.number}: {ex.title}")
        assert plain in text, f"{stem}: {plain!r} is missing from the exercises page"
        positions.append(text.index(plain, positions[-1] if positions else 0))
    assert positions == sorted(positions), "chapters in table-of-contents order"
    total = len(expected)
    checked = sum(ex.checked for _, ex in expected)
    assert f"{total} exercises in 3 chapters; {checked} of them have a checker" in text


def test_checkers_and_open_exercises_are_marked(site):
    text = page_text(site / "exercises.html")
    assert "Exercise 1: Cost of \\(T^2\\) scores — with a checker, check.count_scores" in text
    assert "Exercise 2: Why? — open: a hint and a worked solution." in text
    for ex in exercise_cells.exercises(ROOT / "book" / "nmt_attention.ipynb"):
        assert (f"check.{ex.checker}" in text) == ex.checked


def test_links_resolve_to_the_exercise_headings(site):
    page = (site / "exercises.html").read_text()
    links = [h for h in re.findall(r'href="([^"#]+\.html)#([^"]+)"', page) if h[0] != "exercises.html"]
    assert len(links) == sum(len(exercise_cells.exercises(ROOT / "book" / f"{s}.ipynb")) for s in CHAPTERS) + 2
    for target, anchor in links:
        target_page = (site / target).read_text()
        match = re.search(rf'<section[^>]* id="{re.escape(anchor)}"[^>]*>\s*<h3>(.*?)</h3>', target_page, re.S)
        assert match, f"{target}#{anchor} is not a section"
        assert re.search(r"\bExercise \d+: ", page_text_of(match[1])), match[1]


def page_text_of(fragment: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()
