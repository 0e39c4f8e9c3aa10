"""The glossary (book/glossary.md) defines every term the book sets in bold, and each entry links
to the chapter that introduces it: the first document of _toc.yml in which the term is bold.
The bold phrases are read from the sources (scripts/glossary_terms.py); nothing is built."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import book_text  # noqa: E402
import glossary_terms as gt  # noqa: E402


@pytest.fixture(scope="module")
def bold() -> list[gt.Bold]:
    return gt.book_bold()


@pytest.fixture(scope="module")
def entries() -> list[gt.Entry]:
    return gt.glossary_entries()


def uncovered(bold: list[gt.Bold], entries: list[gt.Entry]) -> list[tuple[str, str]]:
    return [(b.docname, b.text) for b in bold if not any(e.covers(b.key) for e in entries)]


def test_the_glossary_is_in_the_toc_before_the_exercises():
    docs = book_text.toc_documents()
    assert gt.GLOSSARY in docs
    assert docs.index(gt.GLOSSARY) < docs.index("book/exercises")


def test_the_reader_finds_the_book_s_bold_terms(bold):
    """Not vacuous: the terms are found, in reading order, and lead-ins and code are not."""
    keys = [b.key for b in bold]
    assert len(set(keys)) > 80
    for term in ("query", "soft lookup", "online softmax", "induction head", "kv cache"):
        assert term in keys, term
    assert keys.index("query") < keys.index("online softmax")
    assert "time" not in keys                      # "**Time:**", a lead-in
    assert not any("attn_bias" in k for k in keys)  # `...h**2, attn_bias=-x**2...` is code


def test_every_bold_term_has_an_entry(bold, entries):
    missing = uncovered(bold, entries)
    assert not missing, f"bold terms without a glossary entry (book/glossary.md): {missing}"


def test_every_entry_links_to_the_chapter_that_introduces_it(bold, entries):
    docs = set(book_text.toc_documents())
    first = gt.first_chapters(entries, bold)
    wrong = []
    for i, entry in enumerate(entries):
        assert entry.links, f"{entry.terms}: no {{doc}} link to a chapter"
        assert all(link in docs for link in entry.links), f"{entry.terms}: {entry.links} not in toc"
        if first.get(i) != entry.links[0]:
            wrong.append((entry.terms[0], entry.links[0], first.get(i)))
    assert not wrong, f"(term, links to, first bold in): {wrong}"


def test_every_entry_is_a_bold_term(bold, entries):
    """No stale entries: each one defines something the book sets in bold."""
    stale = [e.terms for e in entries if not any(e.covers(b.key) for b in bold)]
    assert not stale, stale


def test_normalisation():
    assert gt.normalise("**Keys**".strip("*")) == "key"
    assert gt.normalise("Multi-query attention (MQA)") == "multi query attention"
    assert gt.normalise("key-value (KV) cache") == gt.normalise("Key-value cache")
    assert gt.normalise("`attnbook` package,") == "attnbook package"
    assert gt.normalise("Padding") != gt.normalise("pass")


def test_a_new_bold_term_without_an_entry_fails(tmp_path, entries):
    """A chapter that sets a new term in bold is caught until the glossary defines it."""
    book = tmp_path / "book"
    book.mkdir()
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": [
        "# New\n\n**Padding.** A lead-in. The **zigzag mask** is new, `x**2` is code, "
        "and **Global** attention is known.\n"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (book / "new.ipynb").write_text(json.dumps(nb))
    found = gt.book_bold(tmp_path, ["book/new"])
    assert [b.text for b in found] == ["zigzag mask", "Global"]
    assert uncovered(found, entries) == [("book/new", "zigzag mask")]


def test_a_wrong_chapter_link_is_caught(tmp_path, bold):
    glossary = tmp_path / "glossary.md"
    glossary.write_text("# G\n\n```{glossary}\nSoft lookup\n  Wrong chapter, {doc}`gpt`.\n```\n")
    entries = gt.glossary_entries(glossary)
    assert entries[0].terms == ["Soft lookup"] and entries[0].links == ["book/gpt"]
    assert gt.first_chapters(entries, bold)[0] == "book/soft_lookup"
