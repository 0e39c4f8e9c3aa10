"""CITATION.cff is valid enough for GitHub's "Cite this repository" and in step with the package:
the keys CFF 1.2.0 requires, the entity author, both licences, and the package's version."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import attnbook

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cff() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def test_required_keys(cff):
    for key in ("cff-version", "message", "title", "authors"):
        assert cff.get(key), f"CITATION.cff lacks {key!r}"
    assert cff["cff-version"] == "1.2.0"
    assert cff["authors"] == [{"name": "The attnbook developers"}]   # an entity, not a person


def test_version_is_the_package_version(cff):
    assert str(cff["version"]) == attnbook.__version__


def test_licences_and_repository(cff):
    assert cff["license"] == ["MIT", "CC-BY-4.0"]
    assert cff["repository-code"] == "https://github.com/attnbook/attnbook"
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert "Creative Commons Attribution 4.0" in (ROOT / "LICENSE-BOOK").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "LICENSE-BOOK" in readme and "CC BY 4.0" in readme
