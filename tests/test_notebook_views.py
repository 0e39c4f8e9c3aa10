"""What a student sees of the exercise solutions in JupyterLab 4 and Jupyter Notebook 7.

A chapter is opened in a headless Chromium (Debian's, /usr/bin/chromium) served by a local
``jupyter lab`` / ``jupyter notebook`` (no token, a private settings folder), and the cells are
read from the page: every cell tagged ``solution`` must be collapsed, showing only its first line
(the ``# @title`` line) as a placeholder; no other cell may be collapsed; clicking a placeholder
opens the solution. Screenshots go to ``_build/screenshots/``. Colab cannot be reached from here:
its form view (``cellView: "form"`` and the ``# @title ... { display-mode: "form" }`` line) is
checked as metadata by tests/test_exercises.py.

Marked ``site``: run with ``pytest -m site tests/test_notebook_views.py``. It skips unless
jupyterlab, notebook, playwright and Chromium are installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import exercise_cells  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
JUPYTER = Path(sys.executable).parent / "jupyter"
CHAPTER = "first_look"
SHOTS = ROOT / "_build" / "screenshots"
READ_CELLS = """() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].map(c => ({
    placeholder: !!c.querySelector('.jp-InputPlaceholder'),
    text: (c.querySelector('.jp-InputPlaceholder') || c).innerText.trim().split('\\n')[0]}))"""


def _missing() -> str | None:
    try:
        import jupyterlab  # noqa: F401
        import notebook  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as error:
        return f"{error.name} is not installed"
    return None if CHROMIUM.exists() else "no Chromium at /usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    if (why := _missing()) is not None:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("jupyter")
    shutil.copy(ROOT / "book" / f"{CHAPTER}.ipynb", work)
    # render every cell at once (no windowing), so that all of them can be read from the page
    settings = work / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    return work


def _cells_in(app: str, work: Path) -> tuple[list[dict], bool]:
    """The cells as the app shows them, and whether a click opens the first solution."""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(work / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(work / "runtime"), JUPYTER_CONFIG_DIR=str(work / "config"))
    server = subprocess.Popen(
        [str(JUPYTER), app, "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={work}",
         "--allow-root"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(180):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(1)
        path = f"lab/tree/{CHAPTER}.ipynb" if app == "lab" else f"notebooks/{CHAPTER}.ipynb"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/{path}", timeout=300_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=300_000)
            page.wait_for_function("document.querySelectorAll('.jp-Notebook .jp-Cell').length > 10",
                                   timeout=120_000)
            cells = page.evaluate(READ_CELLS)
            first = next(i for i, c in enumerate(cells) if c["placeholder"])
            cell = page.locator(".jp-Notebook .jp-Cell").nth(first)
            cell.scroll_into_view_if_needed()
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / f"{app}-solution-collapsed.png"))
            cell.locator(".jp-InputPlaceholder").click()
            page.wait_for_timeout(1000)
            opened = cell.locator(".jp-InputArea").is_visible() and "_solution" in cell.inner_text()
            page.screenshot(path=str(SHOTS / f"{app}-solution-opened.png"))
            browser.close()
        return cells, opened
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.parametrize("app", ["lab", "notebook"], ids=["JupyterLab 4", "Notebook 7"])
def test_solutions_are_collapsed(app, workdir):
    nb = nbformat.read(workdir / f"{CHAPTER}.ipynb", as_version=4)
    solutions = {i for ex in exercise_cells.exercises(nb) for r, i in ex.cells.items()
                 if r == exercise_cells.SOLUTION}
    cells, opened = _cells_in(app, workdir)
    assert len(cells) == len(nb.cells), "every cell is on the page"
    collapsed = {i for i, c in enumerate(cells) if c["placeholder"]}
    assert collapsed == solutions, "exactly the solution cells are collapsed"
    for i in solutions:
        assert cells[i]["text"].startswith(exercise_cells.SOLUTION_TITLE[:20]), cells[i]
    assert opened, "a click on the placeholder shows the solution's code"
