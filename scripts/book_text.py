"""The book's documents in reading order and the markdown they contain.

A small reader shared by the back-matter tools: ``scripts/glossary_terms.py`` (the bold terms
the glossary must define) and ``scripts/citation_index.py`` (which chapters cite each entry of
the bibliography). It needs only the standard library and PyYAML, so the tests can call it
without building the book.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_documents(root: Path = ROOT) -> list[str]:
    """Every document of ``_toc.yml`` in reading order, as docnames (``book/first_look``)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    order = [toc["root"]]

    def visit(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                order.append(entry["file"])
            visit(entry.get("sections", []))

    for part in toc.get("parts", []):
        visit(part.get("chapters", []))
    visit(toc.get("chapters", []))
    return order


def document_path(docname: str, root: Path = ROOT) -> Path:
    """The source file of a docname: the notebook if there is one, else the markdown file."""
    for suffix in (".ipynb", ".md"):
        path = root / f"{docname}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(f"no .ipynb or .md source for {docname!r} under {root}")


def markdown_blocks(path: Path) -> list[str]:
    """The markdown of a document: one string per markdown cell of a notebook, or the whole
    text of a ``.md`` file. Code cells are left out: they are not prose."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".ipynb":
        return [text]
    cells = json.loads(text)["cells"]
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in cells if c["cell_type"] == "markdown"]
