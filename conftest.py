"""Root conftest: Triton's interpreter on machines without CUDA, and per-notebook execution
times for nbval runs.

Without a CUDA device the Triton kernels (attnbook.kernels) run in Triton's CPU interpreter,
which is chosen by TRITON_INTERPRET=1 *before* the kernels are defined; setting it here, before
any test module is imported, covers the test process, its xdist workers and nbval's notebook
kernels (which inherit the environment).

nbval turns each notebook cell into a test item; this plugin adds up the call durations per
notebook and prints a table at the end of the run (also written to _build/notebook-times.md).

nbval waits only 5 s for each output message after a cell's reply; on a loaded CI machine a
kernel can take longer to flush a training cell's output, and a green notebook then fails with
"Timeout of 5 seconds exceeded waiting for output" (it happened once in CI). The cell's own
limit stays --nbval-cell-timeout; the wait for its output is raised to OUTPUT_TIMEOUT.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"

OUTPUT_TIMEOUT = 120  # seconds nbval waits for each output message once a cell has replied

_times: dict[str, float] = defaultdict(float)
_failed: set[str] = set()


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook cells
            item.output_timeout = OUTPUT_TIMEOUT


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    if not path.endswith(".ipynb"):
        return
    _times[path] += report.duration  # setup + call + teardown phases, summed
    if report.failed:
        _failed.add(path)


def pytest_terminal_summary(terminalreporter):
    if not _times:
        return
    rows = sorted(_times.items())
    total = sum(t for _, t in rows)
    lines = ["| notebook | seconds | status |", "|---|---:|---|"]
    lines += [f"| {p} | {t:.1f} | {'FAILED' if p in _failed else 'ok'} |" for p, t in rows]
    lines.append(f"| **total** | **{total:.1f}** | |")
    terminalreporter.section("notebook execution times (seconds)")
    for line in lines:
        terminalreporter.write_line(line)
    out = Path("_build")
    out.mkdir(exist_ok=True)
    (out / "notebook-times.md").write_text("\n".join(lines) + "\n")
