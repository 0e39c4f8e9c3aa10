"""A Sphinx extension: the ``exercise-index`` directive lists every exercise of the book.

It is generated at build time from the notebooks' cell tags (``scripts/exercise_cells.py``), so a
new chapter appears as soon as it is in the table of contents. Each entry links to the
exercise's heading and says whether the exercise has a checker. Registered in ``_config.yml``::

    sphinx:
      local_extensions:
        exercise_index: scripts

and used in ``book/exercises.md`` as a ``{exercise-index}`` directive.

At read time the directive parses every notebook (the titles' ``$...$`` become math nodes, so
the page loads MathJax); when the page is written, the chapters are put in table-of-contents
order and each link gets the id of the exercise's section in the chapter's own doctree. A
heading that cannot be found is a warning, which ``--warningiserror`` turns into an error.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

sys.path.insert(0, str(Path(__file__).resolve().parent))
import exercise_cells  # noqa: E402

logger = logging.getLogger(__name__)
_MATH = re.compile(r"\$([^$]+)\$")
_SECTION = re.compile(r"^Exercise (\d+):")


class exercise_chapter(nodes.General, nodes.Element):  # noqa: N801 (docutils node naming)
    """One chapter's exercises; ``docname`` names the chapter. Replaced when the page is written."""


class exercise_link(nodes.General, nodes.Inline, nodes.TextElement):  # noqa: N801
    """The title of one exercise; becomes a reference to its section when the page is written."""


def _inline(text: str) -> list[nodes.Node]:
    """Text with ``$...$`` turned into math nodes."""
    parts: list[nodes.Node] = []
    for i, piece in enumerate(_MATH.split(text)):
        if piece:
            parts.append(nodes.math(piece, piece) if i % 2 else nodes.Text(piece))
    return parts


def _notebooks(env: Any) -> dict[str, Path]:
    found = {}
    for docname in sorted(env.found_docs):
        path = Path(env.doc2path(docname))
        if path.suffix == ".ipynb":
            found[docname] = path
    return found


class ExerciseIndex(SphinxDirective):
    """``{exercise-index}``: every chapter's exercises, in the order of the table of contents."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        out: list[nodes.Node] = []
        for docname, path in _notebooks(self.env).items():
            self.env.note_dependency(str(path))
            found = exercise_cells.exercises(path)
            if not found:
                continue
            chapter = exercise_chapter(docname=docname)
            items = nodes.bullet_list()
            for ex in found:
                link = exercise_link("", "", *_inline(f"Exercise {ex.number}: {ex.title}"),
                                     docname=docname, number=ex.number)
                if ex.checked:
                    note = [nodes.Text(" — with a checker, "),
                            nodes.literal(text=f"check.{ex.checker}"), nodes.Text(".")]
                else:
                    note = [nodes.Text(" — open: a hint and a worked solution.")]
                items += nodes.list_item("", nodes.paragraph("", "", link, *note))
            chapter += items
            out.append(chapter)
        total = sum(len(c[0].children) for c in out)
        checked = sum(1 for c in out for item in c[0].children if "with a checker" in item.astext())
        summary = nodes.paragraph(text=f"{total} exercises in {len(out)} chapters; {checked} of them "
                                       "have a checker that runs your answer and says what is wrong.")
        return [summary, *out]


def _toc_order(env: Any, root: str) -> list[str]:
    """Documents in the order a reader meets them: depth first through the toctrees."""
    order: list[str] = []

    def visit(doc: str) -> None:
        if doc in order:
            return
        order.append(doc)
        for child in env.toctree_includes.get(doc, []):
            visit(child)

    visit(root)
    return order


def _exercise_ids(env: Any, docname: str) -> dict[int, str]:
    """Exercise number -> the id of its section in the chapter's doctree."""
    ids = {}
    for section in env.get_doctree(docname).findall(nodes.section):
        title = section.next_node(nodes.title)
        match = _SECTION.match(title.astext()) if title is not None else None
        if match and section["ids"]:
            ids.setdefault(int(match[1]), section["ids"][0])
    return ids


def _resolve(app: Sphinx, doctree: nodes.document, fromdocname: str) -> None:
    env = app.env
    chapters = list(doctree.findall(exercise_chapter))
    if not chapters:
        return
    rank = {doc: i for i, doc in enumerate(_toc_order(env, app.config.root_doc))}
    parent = chapters[0].parent
    where = parent.index(chapters[0])
    for chapter in chapters:
        parent.remove(chapter)
    for chapter in sorted((c for c in chapters if c["docname"] in rank), key=lambda c: rank[c["docname"]]):
        docname = chapter["docname"]
        uri = app.builder.get_relative_uri(fromdocname, docname)
        ids = _exercise_ids(env, docname)
        number = env.toc_secnumbers.get(docname, {}).get("")
        label = (".".join(map(str, number)) + ". ") if number else ""
        title = env.titles[docname].deepcopy()
        heading = nodes.paragraph("", "", nodes.strong("", "", nodes.reference(
            "", "", nodes.Text(label), *title.children, internal=True, refuri=uri)))
        for link in chapter.findall(exercise_link):
            anchor = ids.get(link["number"])
            if anchor is None:
                logger.warning(f"exercise index: no section 'Exercise {link['number']}: ...' in {docname}",
                               location=fromdocname)
                link.replace_self(link.children)
                continue
            link.replace_self(nodes.reference("", "", *link.children, internal=True,
                                              refuri=f"{uri}#{anchor}"))
        parent.insert(where, [heading, *chapter.children])
        where += 2


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_node(exercise_chapter)
    app.add_node(exercise_link)
    app.add_directive("exercise-index", ExerciseIndex)
    app.connect("doctree-resolved", _resolve)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
