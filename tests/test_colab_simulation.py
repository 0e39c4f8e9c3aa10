"""Colab simulation: a notebook copied alone into an empty folder runs in a fresh virtual
environment that has torch and the notebook stack but NOT attnbook; its bootstrap cell installs
attnbook from a wheel named by ATTNBOOK_PIP_SPEC."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "book" / "first_look.ipynb"
# The stack Colab provides; torch is pinned by constraints.txt like the rest of the project.
STACK = ["torch", "numpy", "matplotlib", "ipywidgets", "tqdm", "ipykernel", "nbclient", "nbformat"]

RUN = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
print("EXECUTED", len(nb.cells), "cells")
"""


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{cmd[:4]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_notebook_installs_attnbook_in_a_fresh_environment(tmp_path):
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(ROOT)])
    (wheel,) = wheels.glob("attnbook-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(ROOT / "constraints.txt"), *STACK])
    # the kernel must see the fresh environment, not ours
    run([str(py), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"])
    missing = subprocess.run([str(py), "-c", "import attnbook"], capture_output=True, cwd=tmp_path)
    assert missing.returncode != 0, "attnbook must not be importable before the notebook runs"

    work = tmp_path / "colab"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(ATTNBOOK_PIP_SPEC=str(wheel), PATH=f"{env_dir / 'bin'}:{env['PATH']}",
               JUPYTER_PATH=str(env_dir / "share" / "jupyter"), MPLBACKEND="Agg")
    out = run([str(py), "-c", RUN, NOTEBOOK.name], cwd=work, env=env, timeout=900)
    assert "EXECUTED" in out.stdout
    installed = run([str(py), "-c", "import attnbook, sys; print(attnbook.__file__)"], cwd=tmp_path)
    assert str(env_dir) in installed.stdout, "attnbook was not installed into the fresh environment"
