"""Colab simulation: a notebook copied alone into an empty folder runs in a fresh virtual
environment that has torch and the notebook stack but NOT attnbook; its bootstrap cell installs
attnbook, from a wheel named by ATTNBOOK_PIP_SPEC, or, pinned by ``sync_notebooks.py --ref``,
from the git commit the page was built from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "book" / "first_look.ipynb"
# The stack Colab provides; torch is pinned by constraints.txt like the rest of the project.
# Colab also ships scikit-learn, and triton with its CUDA builds of torch.
STACK = ["torch", "numpy", "matplotlib", "ipywidgets", "tqdm", "ipykernel", "nbclient", "nbformat",
         "scikit-learn", "triton; sys_platform == 'linux'"]

RUN = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
print("EXECUTED", len(nb.cells), "cells")
for cell in nb.cells:  # what the cells printed (pip's messages, say), for a failing assert
    for out in cell.get("outputs", []):
        print(out.get("text", ""), end="")
"""


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{cmd[:4]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory) -> Path:
    """A virtual environment with Colab's stack and a python3 kernel of its own, no attnbook."""
    env_dir = tmp_path_factory.mktemp("colab") / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # a current pip, as Colab has (the venv's bundled one may predate PEP 508 file URLs)
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--upgrade", "pip"])
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(ROOT / "constraints.txt"), *STACK])
    # the kernel must see the fresh environment, not ours
    run([str(py), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"])
    return env_dir


def _uninstall(env_dir: Path) -> None:
    py = env_dir / "bin" / "python"
    env = _kernel_env(env_dir)
    subprocess.run([str(py), "-m", "pip", "uninstall", "-q", "-y", "attnbook"], capture_output=True,
                   env=env)
    missing = subprocess.run([str(py), "-c", "import attnbook"], capture_output=True, cwd=env_dir,
                             env=env)
    assert missing.returncode != 0, "attnbook must not be importable before the notebook runs"


def _kernel_env(env_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "ATTNBOOK_PIP_SPEC"))}
    env.update(PATH=f"{env_dir / 'bin'}:{env['PATH']}",
               JUPYTER_PATH=str(env_dir / "share" / "jupyter"), MPLBACKEND="Agg", **extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this checkout, as ATTNBOOK_PIP_SPEC for the bootstrap cells."""
    wheels = tmp_path_factory.mktemp("wheels")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(ROOT)])
    (built,) = wheels.glob("attnbook-*.whl")
    return built


def test_notebook_installs_attnbook_in_a_fresh_environment(tmp_path, fresh_env, wheel):
    _uninstall(fresh_env)
    py = fresh_env / "bin" / "python"

    work = tmp_path / "colab"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    env = _kernel_env(fresh_env, ATTNBOOK_PIP_SPEC=str(wheel))
    out = run([str(py), "-c", RUN, NOTEBOOK.name], cwd=work, env=env, timeout=900)
    assert "EXECUTED" in out.stdout
    installed = run([str(py), "-c", "import attnbook, sys; print(attnbook.__file__)"], cwd=tmp_path,
                    env=_kernel_env(fresh_env))
    assert str(fresh_env) in installed.stdout, "attnbook was not installed into the fresh environment"


def test_a_pinned_bootstrap_installs_the_commit_its_page_was_built_from(tmp_path, fresh_env):
    """``sync_notebooks.py --ref SHA`` on a repository whose URL is a local git clone: the
    bootstrap cell alone, run in a fresh kernel with no override, installs that very commit
    (pip records the commit it built in direct_url.json)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    sha = head.stdout.strip()
    clone = tmp_path / "attnbook.git"
    run(["git", "clone", "-q", "--bare", "--no-local", str(ROOT), str(clone)])

    site = tmp_path / "site"
    (site / "book").mkdir(parents=True)
    config = (ROOT / "_config.yml").read_text()
    url = next(line.split("url:", 1)[1].strip() for line in config.splitlines()
               if line.strip().startswith("url:"))
    (site / "_config.yml").write_text(config.replace(url, clone.as_uri()))
    shutil.copy(NOTEBOOK, site / "book" / NOTEBOOK.name)
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import sync_notebooks
    finally:
        sys.path.pop(0)
    assert sync_notebooks.main(["--ref", sha], root=site) == 0

    nb = nbformat.read(site / "book" / NOTEBOOK.name, as_version=4)
    bootstrap = next(c for c in nb.cells if sync_notebooks.is_bootstrap(c))
    assert f"@{sha}" in bootstrap.source
    nb.cells = [bootstrap]
    nbformat.write(nb, site / "bootstrap.ipynb")

    _uninstall(fresh_env)
    py = fresh_env / "bin" / "python"
    out = run([str(py), "-c", RUN, "bootstrap.ipynb"], cwd=site, env=_kernel_env(fresh_env),
              timeout=900)
    assert "EXECUTED 1 cells" in out.stdout
    assert "attnbook" in run([str(py), "-m", "pip", "list"], env=_kernel_env(fresh_env)).stdout, \
        f"the bootstrap cell did not install attnbook; it printed:\n{out.stdout[-3000:]}"
    info = run([str(py), "-c", (
        "import importlib.metadata as m; d = m.distribution('attnbook'); "
        "print(d.read_text('direct_url.json'))")], cwd=tmp_path, env=_kernel_env(fresh_env))
    direct = json.loads(info.stdout)
    assert direct["vcs_info"]["commit_id"] == sha
    assert direct["url"] == clone.as_uri()


def test_every_chapter_bootstraps_and_imports_alone(tmp_path, fresh_env, wheel):
    """Each chapter copied alone into an empty folder: its bootstrap cell installs attnbook (the
    wheel of this checkout) and its first code cell, the imports and set-up, runs. The whole of
    first_look runs in the test above; nbval executes every chapter in the project's own
    environment."""
    _uninstall(fresh_env)
    py = fresh_env / "bin" / "python"
    env = _kernel_env(fresh_env, ATTNBOOK_PIP_SPEC=str(wheel))
    chapters = sorted((ROOT / "book").glob("*.ipynb"))
    assert len(chapters) >= 16
    for chapter in chapters:
        nb = nbformat.read(chapter, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "attnbook bootstrap" in code[0].source, f"{chapter.name}: no bootstrap cell first"
        nb.cells = code[:2]  # the bootstrap, then the imports and set-up
        work = tmp_path / chapter.stem
        work.mkdir()
        nbformat.write(nb, work / chapter.name)
        out = run([str(py), "-c", RUN, chapter.name], cwd=work, env=env, timeout=900)
        assert "EXECUTED 2 cells" in out.stdout, f"{chapter.name}:\n{out.stdout[-2000:]}"
