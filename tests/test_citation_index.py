"""The bibliography's "Cited in" links (scripts/citation_index.py) are generated from the
chapters' {cite} roles: checked on the real book's sources, on a made-up notebook, through the
Sphinx hook with stand-ins for the build objects, and in a Sphinx build of three small markdown
pages (no notebook is built or executed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.utils import new_document
from sphinxcontrib.bibtex.directives import BibliographyKey

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import book_text  # noqa: E402
import citation_index as ci  # noqa: E402

BIB = ROOT / "book" / "references.bib"


def notebook(path: Path, markdown: list[str], code: list[str] = ()) -> Path:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": m} for m in markdown]
    cells += [{"cell_type": "code", "metadata": {}, "source": c, "outputs": [],
               "execution_count": None} for c in code]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))
    return path


@pytest.fixture(scope="module")
def book() -> dict[str, list[str]]:
    return ci.book_citations()


def test_the_extension_is_registered():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["sphinx"]["local_extensions"]["citation_index"] == "scripts"
    assert "{bibliography}" in (ROOT / "book" / "bibliography.md").read_text()


def test_every_key_cited_in_the_book_is_in_the_bibliography_and_gets_its_chapters(book):
    bib = set(ci.bib_keys(BIB))
    assert len(bib) > 50
    assert set(book) <= bib, f"cited but not in references.bib: {set(book) - bib}"
    uncited = bib - set(book)
    assert not uncited, f"entries of references.bib that no chapter cites: {uncited}"
    toc = book_text.toc_documents()
    for key, docs in book.items():
        assert docs, key
        assert docs == sorted(docs, key=toc.index), f"{key}: chapters not in reading order"


def test_known_citations_are_found(book):
    assert "book/flash_from_scratch" in book["dao2022flashattention"]
    assert "book/self_attention" in book["vaswani2017attention"]
    # the second key of a {cite:p}`a,b` role
    assert "book/multi_head" in book["ainslie2023gqa"]
    # every chapter that cites anything is found
    citing = {d for docs in book.values() for d in docs}
    for stem in ("history", "soft_lookup", "gpt", "triton_kernel", "beyond_quadratic"):
        assert f"book/{stem}" in citing


def test_a_made_up_notebook(tmp_path):
    a = notebook(tmp_path / "a.ipynb",
                 ["See {cite}`zed2020` and {cite:t}`alpha1999`.",
                  "Again {cite:p}`alpha1999, beta2001`."],
                 code=["# {cite}`incode2000` is code, not a citation"])
    b = notebook(tmp_path / "b.ipynb", ["Only {cite:p}`beta2001`; **no** other cite here."])
    assert ci.cited_keys(a) == ["zed2020", "alpha1999", "beta2001"]
    found = ci.cited_in([("book/b", b), ("book/a", a)])
    assert found == {"beta2001": ["book/b", "book/a"], "zed2020": ["book/a"],
                     "alpha1999": ["book/a"]}
    # a key the bibliography lacks is what the book test above would report
    assert set(found) - set(ci.bib_keys(BIB)) == {"beta2001", "zed2020", "alpha1999"}


def test_bib_keys_reads_entry_keys(tmp_path):
    bib = tmp_path / "r.bib"
    bib.write_text("@article{one2000,\n title={A},\n}\n\n@inproceedings{ two2001 ,\n}\n")
    assert ci.bib_keys(bib) == ["one2000", "two2001"]


def test_the_sphinx_hook_appends_cited_in_links(tmp_path):
    """doctree-resolved: each bibliography entry gets links to the chapters that cite it."""
    ch1 = notebook(tmp_path / "ch1.ipynb", ["{cite:p}`alpha1999`"])
    ch2 = notebook(tmp_path / "ch2.ipynb", ["{cite}`alpha1999,beta2001`"])
    paths = {"book/ch1": ch1, "book/ch2": ch2, "book/intro": tmp_path / "intro.md",
             "book/bibliography": tmp_path / "bibliography.md"}
    paths["book/intro"].write_text("# Intro\n")
    paths["book/bibliography"].write_text("# Bibliography\n")

    doctree = new_document("bib", get_default_settings(Parser))
    for node_id in ("id-alpha", "id-beta", "id-gamma"):
        doctree += nodes.citation("", nodes.label(text=node_id), ids=[node_id])
    bibliography = SimpleNamespace(citation_nodes={
        "alpha1999": {"ids": ["id-alpha"]}, "beta2001": {"ids": ["id-beta"]},
        "gamma2002": {"ids": ["id-gamma"]}})
    domain = SimpleNamespace(bibliographies={
        BibliographyKey(docname="book/bibliography", id_="bibliography-id1"): bibliography})
    env = SimpleNamespace(
        get_domain=lambda name: domain,
        toctree_includes={"book/intro": ["book/ch1", "book/ch2", "book/bibliography"]},
        doc2path=lambda d: str(paths[d]),
        titles={d: nodes.title(text=d.split("/")[1].upper()) for d in paths})
    app = SimpleNamespace(env=env, config=SimpleNamespace(root_doc="book/intro"),
                          builder=SimpleNamespace(get_relative_uri=lambda a, b: f"{b}.html"))

    ci._resolve(app, doctree, "book/bibliography")
    lines = {c["ids"][0]: c for c in doctree.findall(nodes.citation)}
    alpha = [p for p in lines["id-alpha"].findall(nodes.paragraph) if "cited-in" in p["classes"]]
    assert alpha and alpha[0].astext() == "Cited in CH1, CH2."
    assert [r["refuri"] for r in alpha[0].findall(nodes.reference)] == ["book/ch1.html",
                                                                        "book/ch2.html"]
    assert lines["id-beta"].astext().endswith("Cited in CH2.")
    assert "Cited in" not in lines["id-gamma"].astext()   # cited nowhere: no line
    assert ci._outdated(app, env, set(), {"book/ch1"}, set()) == ["book/bibliography"]
    assert ci._outdated(app, env, set(), set(), set()) == []


def test_a_small_sphinx_build_shows_the_cited_in_lines(tmp_path):
    """End to end with the real sphinxcontrib-bibtex: three markdown pages, no notebooks."""
    sphinx_build = Path(sys.executable).parent / "sphinx-build"
    if not sphinx_build.exists():
        pytest.skip("sphinx-build is not installed")
    book = tmp_path / "src" / "book"
    book.mkdir(parents=True)
    (book / "references.bib").write_text(BIB.read_text())
    (book / "bibliography.md").write_text((ROOT / "book" / "bibliography.md").read_text())
    (book / "intro.md").write_text("# Intro\n\n```{toctree}\none\ntwo\nbibliography\n```\n")
    (book / "one.md").write_text("# Chapter one\n\nSee {cite:p}`vaswani2017attention`.\n")
    (book / "two.md").write_text("# Chapter two\n\n{cite:p}`bahdanau2015neural,vaswani2017attention`"
                                 " and {cite:t}`ba2016layer`.\n")
    (tmp_path / "src" / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'scripts')!r})\n"
        "extensions = ['myst_parser', 'sphinxcontrib.bibtex', 'exercise_index', 'citation_index']\n"
        "bibtex_bibfiles = ['book/references.bib']\nbibtex_reference_style = 'author_year'\n"
        "root_doc = 'book/intro'\n")
    out = tmp_path / "out"
    result = subprocess.run([str(sphinx_build), "-q", "-b", "html", "-j", "1",
                             str(tmp_path / "src"), str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    page = (out / "book" / "bibliography.html").read_text()
    lines = [re.sub(r"<[^>]+>", "", m) for m in re.findall(r'<p class="cited-in">(.*?)</p>', page,
                                                             re.DOTALL)]
    assert sorted(lines) == ["Cited in Chapter one, Chapter two.", "Cited in Chapter two.",
                             "Cited in Chapter two."]
    assert 'href="one.html"' in page and 'href="two.html"' in page
