"""Notebook hygiene: stored without outputs, python3 kernel, valid nbformat, all in the TOC,
and every notebook's first code cell is the one shared bootstrap cell."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import sync_notebooks  # noqa: E402

NOTEBOOKS = sync_notebooks.notebooks()


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def resolve(entry: str) -> Path | None:
    for suffix in (".ipynb", ".md"):
        path = ROOT / f"{entry}{suffix}"
        if path.exists():
            return path
    return None


def test_there_are_notebooks():
    assert NOTEBOOKS, "book/ holds no notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_stripped(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernelspec must be python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has stored outputs: run `make strip`"
            assert cell.execution_count is None, f"cell {i} has an execution count: run `make strip`"
    assert "widgets" not in nb.metadata, "stored widget state: run `make strip`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_the_shared_bootstrap(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a chapter without code"
    first = code[0]
    assert first.source == sync_notebooks.bootstrap_source(), (
        "bootstrap cell differs from scripts/sync_notebooks.py: run `make sync`"
    )
    assert sync_notebooks.TAG in first.metadata.get("tags", []), "bootstrap cell must be hidden"
    assert sum(sync_notebooks.is_bootstrap(c) for c in code) == 1


def test_bootstrap_reads_repository_from_config():
    url, branch = sync_notebooks.repository()
    source = sync_notebooks.bootstrap_source()
    assert f'"attnbook[book] @ git+{url}@{branch}"' in source
    assert "ATTNBOOK_PIP_SPEC" in source
    assert '%pip install --quiet "{_spec}"' in source  # quoted: the spec has spaces, brackets
    assert branch == "main", "the repository's notebooks follow main; only the site pins a SHA"


def test_every_notebook_is_in_the_toc_and_every_entry_exists():
    entries = toc_files()
    missing = [e for e in entries if resolve(e) is None]
    assert not missing, f"_toc.yml entries without a file: {missing}"
    listed = {resolve(e) for e in entries}
    orphans = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS if p not in listed]
    assert not orphans, f"notebooks missing from _toc.yml: {orphans}"


def test_sync_check_passes():
    assert sync_notebooks.main(["--check"]) == 0


# ---------------------------------------------------------------------------------------------
# --ref: the Pages workflow pins the chapters to the commit it builds
# ---------------------------------------------------------------------------------------------

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def book_copy(tmp_path):
    """_config.yml and two stored chapters, copied into a scratch repository root."""
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "book").mkdir()
    for path in NOTEBOOKS[:2]:
        shutil.copy(path, tmp_path / "book" / path.name)
    return tmp_path


def test_ref_pins_the_config_and_every_bootstrap_cell(book_copy):
    config = book_copy / "_config.yml"
    before = config.read_text()
    assert sync_notebooks.main(["--ref", SHA], root=book_copy) == 0
    after = config.read_text()
    # only repository.branch changed; comments and everything else stay
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines())
    assert [b.strip() for _, b in changed] == [f"branch: {SHA}"]
    assert yaml.safe_load(after)["repository"]["branch"] == SHA
    url = yaml.safe_load(after)["repository"]["url"].rstrip("/")
    for path in sorted((book_copy / "book").glob("*.ipynb")):
        first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert f'"attnbook[book] @ git+{url}@{SHA}"' in first.source
        assert "@main" not in first.source
    # the pinned copy is consistent: a plain --check and a --check of that ref both pass
    assert sync_notebooks.main(["--check"], root=book_copy) == 0
    assert sync_notebooks.main(["--check", "--ref", SHA], root=book_copy) == 0
    assert sync_notebooks.main(["--check", "--ref", "main"], root=book_copy) == 1
    # and pinning again is a no-op
    assert sync_notebooks.main(["--ref", SHA], root=book_copy) == 0
    assert config.read_text() == after


@pytest.mark.parametrize("ref", ['main"; import os', "a b", "../x", "-rf", ""])
def test_ref_rejects_what_is_not_a_sha_or_a_name(book_copy, ref):
    with pytest.raises(SystemExit):
        sync_notebooks.main(["--ref", ref], root=book_copy)
    assert yaml.safe_load((book_copy / "_config.yml").read_text())["repository"]["branch"] == "main"
