"""A Sphinx extension: each entry of the bibliography says which chapters cite it.

The chapters cite with ``{cite}`key```, ``{cite:p}`a,b``` or ``{cite:t}`key``` in their markdown
(``book_text.markdown_blocks``); this module reads those roles from the sources
(``cited_in``) and, when a page with a ``{bibliography}`` is written, appends to every entry a
"Cited in" line that links to the citing chapters in table-of-contents order (the order of
``exercise_index._toc_order``). Nothing is maintained by hand: a new citation appears in the
bibliography the next time the book is built. Registered in ``_config.yml``::

    sphinx:
      local_extensions:
        citation_index: scripts

    python scripts/citation_index.py      # every cited key and the chapters that cite it
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from docutils import nodes

sys.path.insert(0, str(Path(__file__).resolve().parent))
import book_text  # noqa: E402

CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")
BIB_ENTRY = re.compile(r"^@\w+\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)


def cited_keys(path: Path) -> list[str]:
    """The keys a document cites, in order of first citation (markdown only, not code)."""
    keys: list[str] = []
    for block in book_text.markdown_blocks(path):
        for match in CITE.finditer(block):
            for key in match[1].split(","):
                key = key.strip()
                if key and key not in keys:
                    keys.append(key)
    return keys


def cited_in(documents: Iterable[tuple[str, Path]]) -> dict[str, list[str]]:
    """Bib key -> the docnames that cite it, in the order the documents are given."""
    found: dict[str, list[str]] = {}
    for docname, path in documents:
        for key in cited_keys(path):
            found.setdefault(key, []).append(docname)
    return found


def bib_keys(path: Path) -> list[str]:
    """The keys of a BibTeX file, in file order."""
    return BIB_ENTRY.findall(path.read_text(encoding="utf-8"))


def book_citations(root: Path = book_text.ROOT) -> dict[str, list[str]]:
    """``cited_in`` over the book's documents in ``_toc.yml`` order."""
    docs = book_text.toc_documents(root)
    return cited_in((d, book_text.document_path(d, root)) for d in docs)


# --- Sphinx -----------------------------------------------------------------------------------


def _citation_ids(env: Any, docname: str) -> dict[str, str]:
    """Node id -> bib key, for the bibliography entries of one document."""
    domain = env.get_domain("cite")
    ids = {}
    for bib_key, bibliography in domain.bibliographies.items():
        if bib_key.docname == docname:
            for key, node in bibliography.citation_nodes.items():
                if node["ids"]:
                    ids[node["ids"][0]] = key
    return ids


def _resolve(app: Any, doctree: nodes.document, fromdocname: str) -> None:
    env = app.env
    entries = [n for n in doctree.findall(nodes.citation) if n["ids"]]
    ids = _citation_ids(env, fromdocname) if entries else {}
    if not ids:
        return
    import exercise_index  # the toc-order reader of the exercises page

    order = [d for d in exercise_index._toc_order(env, app.config.root_doc) if d != fromdocname]
    citing = cited_in((d, Path(env.doc2path(d))) for d in order)
    for entry in entries:
        docs = citing.get(ids.get(entry["ids"][0], ""), [])
        if not docs:
            continue
        para = nodes.paragraph("", "Cited in ", classes=["cited-in"])
        for i, doc in enumerate(docs):
            if i:
                para += nodes.Text(", ")
            para += nodes.reference("", "", *env.titles[doc].deepcopy().children, internal=True,
                                    refuri=app.builder.get_relative_uri(fromdocname, doc))
        para += nodes.Text(".")
        entry += para


def _outdated(app: Any, env: Any, added: set, changed: set, removed: set) -> list[str]:
    """Rewrite the bibliography pages whenever a chapter changes: its citations may have."""
    if not (added or changed or removed):
        return []
    return sorted({key.docname for key in env.get_domain("cite").bibliographies})


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-resolved", _resolve)
    app.connect("env-get-outdated", _outdated)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


def main() -> None:
    for key, docs in sorted(book_citations().items()):
        print(f"{key:32s} {', '.join(d.removeprefix('book/') for d in docs)}")


if __name__ == "__main__":
    main()
