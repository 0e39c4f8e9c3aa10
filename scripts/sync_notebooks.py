"""Write the shared Colab bootstrap cell into every notebook in book/ and normalise metadata.

The bootstrap cell is generated from ONE source (``bootstrap_source`` below, with the repository
URL and branch read from ``_config.yml``) and is the first code cell of every chapter. It is
tagged ``remove-cell`` so that the published site does not show it.

It also keeps the exercise cells in shape (scripts/exercise_cells.py): every cell tagged
``solution`` is hidden until asked for in the site, Jupyter and Colab (``hidden_solutions``), and
the first markdown cell states the reading and exercise time computed from the notebook (``timed``).

    python scripts/sync_notebooks.py          # rewrite notebooks in place
    python scripts/sync_notebooks.py --check  # exit 1 and list notebooks that differ
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import exercise_cells  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# attnbook bootstrap"
TAG = "remove-cell"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def repository(config_path: Path = ROOT / "_config.yml") -> tuple[str, str]:
    """The repository URL and branch, written once in ``_config.yml``."""
    repo = yaml.safe_load(config_path.read_text())["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def bootstrap_source() -> str:
    url, branch = repository()
    return "\n".join(
        [
            f"{MARKER}: install attnbook when it is missing (Colab, a fresh environment).",
            "# It does nothing where attnbook is installed. ATTNBOOK_PIP_SPEC overrides what pip installs.",
            "import importlib.util",
            "import os",
            "",
            'if importlib.util.find_spec("attnbook") is None:',
            f'    _spec = os.environ.get("ATTNBOOK_PIP_SPEC", "git+{url}@{branch}")',
            "    %pip install --quiet {_spec}",
            "    importlib.invalidate_caches()",
        ]
    )


def bootstrap_cell() -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(bootstrap_source())
    cell.metadata = {"tags": [TAG]}
    cell.id = "attnbook-bootstrap"
    return cell


def is_bootstrap(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and cell.source.startswith(MARKER)


def synced(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose first code cell is the bootstrap cell, with the python3 kernel."""
    nb = nbformat.from_dict(nb)
    cells = [c for c in nb.cells if not is_bootstrap(c)]
    first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
    cells.insert(first_code, bootstrap_cell())
    nb.cells = cells
    nb.metadata.pop("jupytext", None)  # authoring metadata, not part of the chapter
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.setdefault("language_info", {})["name"] = "python"
    nb.nbformat, nb.nbformat_minor = 4, max(nb.get("nbformat_minor", 5), 5)
    return nb


def hidden_solutions(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` in which every cell tagged ``solution`` is out of sight until asked for:
    tagged ``hide-cell`` (folded in the site), collapsed in JupyterLab/Notebook 7
    (``metadata.jupyter.source_hidden``/``outputs_hidden``) and shown as its title in Colab
    (``metadata.cellView = "form"`` and a first line ``# @title ... { display-mode: "form" }``).
    The cells still execute everywhere (nbval, the site build)."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type != "code" or exercise_cells.SOLUTION not in exercise_cells.tags(cell):
            continue
        if exercise_cells.HIDE not in cell.metadata["tags"]:
            cell.metadata["tags"].append(exercise_cells.HIDE)
        cell.metadata.update(copy.deepcopy(exercise_cells.SOLUTION_METADATA))
        lines = cell.source.split("\n")
        if lines[0].lstrip().startswith(("# @title", "#@title")):
            lines = lines[1:]
        cell.source = "\n".join([exercise_cells.SOLUTION_TITLE, *lines])
    return nb


def timed(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose first markdown cell states the reading and exercise time computed
    from the notebook's word count and exercises (scripts/exercise_cells.py)."""
    nb = nbformat.from_dict(nb)
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first is not None:
        first.source = exercise_cells.with_time_line(first.source, exercise_cells.timing(nb).line())
    return nb


def notebooks(book: Path = ROOT / "book") -> list[Path]:
    return sorted(p for p in book.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report notebooks that differ")
    args = parser.parse_args(argv)
    stale = []
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        new = timed(hidden_solutions(synced(nb)))
        if nbformat.writes(new) != nbformat.writes(nb):
            stale.append(path)
            if not args.check:
                nbformat.write(new, path)
    if args.check and stale:
        print("bootstrap cell or metadata out of date (run scripts/sync_notebooks.py):")
        print("\n".join(f"  {p.relative_to(ROOT)}" for p in stale))
        return 1
    for p in stale:
        print(f"synced {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
