"""Notebook hygiene: stored without outputs, python3 kernel, valid nbformat, all in the TOC,
and every notebook's first code cell is the one shared bootstrap cell."""

from __future__ import annotations

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
    assert f"git+{url}@{branch}" in source
    assert "ATTNBOOK_PIP_SPEC" in source


def test_every_notebook_is_in_the_toc_and_every_entry_exists():
    entries = toc_files()
    missing = [e for e in entries if resolve(e) is None]
    assert not missing, f"_toc.yml entries without a file: {missing}"
    listed = {resolve(e) for e in entries}
    orphans = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS if p not in listed]
    assert not orphans, f"notebooks missing from _toc.yml: {orphans}"


def test_sync_check_passes():
    assert sync_notebooks.main(["--check"]) == 0
