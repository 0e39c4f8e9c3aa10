"""Write the shared Colab bootstrap cell into every notebook in book/ and normalise metadata.

The bootstrap cell is generated from ONE source (``bootstrap_source`` below, with the repository
URL and ref read from ``_config.yml``'s ``repository.url`` and ``repository.branch``) and is the
first code cell of every chapter. It is tagged ``remove-cell`` so that the published site does
not show it. In Colab it installs ``attnbook[book]`` from that repository at that ref.

In the repository the ref is ``main``. The Pages workflow pins it to the commit being built
before it builds the site (``--ref $GITHUB_SHA``): that rewrites ``repository.branch`` in
``_config.yml``, from which Jupyter Book makes each page's Colab launch button
(``.../blob/<sha>/book/<chapter>.ipynb``), and every notebook's bootstrap cell, so the notebook a
reader opens and the package it installs are the ones the page was built from.

    python scripts/sync_notebooks.py              # rewrite notebooks in place
    python scripts/sync_notebooks.py --check      # exit 1 and list notebooks that differ
    python scripts/sync_notebooks.py --ref SHA    # pin _config.yml and every notebook to SHA

It also keeps the exercise cells in shape (scripts/exercise_cells.py): every cell tagged
``solution`` is hidden until asked for in the site, Jupyter and Colab (``hidden_solutions``), and
the first markdown cell states the reading and exercise time computed from the notebook (``timed``).
"""

from __future__ import annotations

import argparse
import copy
import re
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
EXTRA = "book"  # the pyproject extra with what the chapters need beyond the package
# a commit SHA, or a branch or tag name (no quotes, spaces or "..": it is written into code)
REF = re.compile(r"[0-9a-f]{40}|[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")


def repository(config_path: Path = ROOT / "_config.yml") -> tuple[str, str]:
    """The repository URL and ref (branch, tag or commit), written once in ``_config.yml``."""
    repo = yaml.safe_load(config_path.read_text())["repository"]
    return repo["url"].rstrip("/"), str(repo.get("branch", "main"))


def check_ref(ref: str) -> str:
    if not REF.fullmatch(ref) or ".." in ref:
        raise ValueError(f"ref must be a commit SHA or a branch/tag name, got {ref!r}")
    return ref


def pip_spec(url: str, ref: str) -> str:
    """What the bootstrap cell installs: ``attnbook[book] @ git+<url>@<ref>``."""
    return f"attnbook[{EXTRA}] @ git+{url}@{check_ref(ref)}"


def bootstrap_source(config_path: Path = ROOT / "_config.yml") -> str:
    url, ref = repository(config_path)
    return "\n".join(
        [
            f"{MARKER}: install attnbook when it is missing (Colab, a fresh environment).",
            "# It installs the attnbook of the commit this page was built from and does nothing",
            "# where attnbook is installed. ATTNBOOK_PIP_SPEC overrides what pip installs.",
            "import importlib.util",
            "import os",
            "",
            'if importlib.util.find_spec("attnbook") is None:',
            "    _spec = os.environ.get(",
            f'        "ATTNBOOK_PIP_SPEC", "{pip_spec(url, ref)}"',
            "    )",
            '    %pip install --quiet "{_spec}"',
            "    importlib.invalidate_caches()",
        ]
    )


def set_ref(ref: str, config_path: Path = ROOT / "_config.yml") -> bool:
    """Write ``ref`` as ``repository.branch`` in ``_config.yml`` (only that line changes, the
    comments stay); returns whether the file changed."""
    check_ref(ref)
    text = config_path.read_text()
    block = re.search(r"^repository:[ \t]*\n((?:[ \t]+.*\n|[ \t]*\n)*)", text, re.MULTILINE)
    if block is None:
        raise ValueError(f"{config_path} has no repository: section")
    body = block.group(1)
    line = re.compile(r"^([ \t]+branch:[ \t]*)\S.*$", re.MULTILINE)
    if line.search(body):
        new_body = line.sub(lambda m: m.group(1) + ref, body, count=1)
    else:
        indent = re.match(r"[ \t]+", body).group(0) if body.strip() else "  "
        new_body = f"{indent}branch: {ref}\n" + body
    new = text[: block.start(1)] + new_body + text[block.end(1):]
    if new != text:
        config_path.write_text(new)
    assert repository(config_path)[1] == ref, "the rewritten _config.yml does not read back"
    return new != text


def bootstrap_cell(config_path: Path = ROOT / "_config.yml") -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(bootstrap_source(config_path))
    cell.metadata = {"tags": [TAG]}
    cell.id = "attnbook-bootstrap"
    return cell


def is_bootstrap(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and cell.source.startswith(MARKER)


def synced(nb: nbformat.NotebookNode,
           config_path: Path = ROOT / "_config.yml") -> nbformat.NotebookNode:
    """A copy of ``nb`` whose first code cell is the bootstrap cell, with the python3 kernel."""
    nb = nbformat.from_dict(nb)
    cells = [c for c in nb.cells if not is_bootstrap(c)]
    first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
    cells.insert(first_code, bootstrap_cell(config_path))
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


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report notebooks that differ")
    parser.add_argument("--ref", help="pin _config.yml's repository.branch (and so every "
                                      "bootstrap cell and Colab button) to this commit or tag")
    args = parser.parse_args(argv)
    config = root / "_config.yml"
    if args.ref is not None:
        try:
            check_ref(args.ref)
        except ValueError as err:
            parser.error(str(err))
        if args.check:
            if repository(config)[1] != args.ref:
                print(f"_config.yml's repository.branch is {repository(config)[1]!r}, "
                      f"not {args.ref!r}")
                return 1
        elif set_ref(args.ref, config):
            print(f"pinned _config.yml's repository.branch to {args.ref}")
    stale = []
    for path in notebooks(root / "book"):
        nb = nbformat.read(path, as_version=4)
        new = timed(hidden_solutions(synced(nb, config)))
        if nbformat.writes(new) != nbformat.writes(nb):
            stale.append(path)
            if not args.check:
                nbformat.write(new, path)
    if args.check and stale:
        print("bootstrap cell or metadata out of date (run scripts/sync_notebooks.py):")
        print("\n".join(f"  {p.relative_to(root)}" for p in stale))
        return 1
    for p in stale:
        print(f"synced {p.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
