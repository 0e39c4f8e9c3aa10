"""Build the API reference page alone, fast: the check that its docstrings render without a
warning, without executing any chapter.

The full site build (``make site``) executes every notebook. This builds four pages only
(``book/intro``, ``book/notation``, ``book/api``, ``book/execution``) with the repository's own
``_config.yml``, except that notebooks are not executed and the generated logo is not needed,
and with ``--warningiserror`` as in ``make site``. The output lands in ``_build/api/``
(``_build/api/_build/html/book/api.html``); ``tests/test_api_docs.py`` checks it.

    python scripts/build_api_docs.py            # about 20 s of CPU
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["book/notation", "book/api", "book/execution"]


def config_text(root: Path = ROOT) -> str:
    """The repository's _config.yml, with execution off, absolute extension paths and no logo."""
    text = (root / "_config.yml").read_text()
    text = re.sub(r"(?m)^(\s*execute_notebooks:\s*).*$", r"\1'off'", text)
    text = re.sub(r"(?m)^(\s*attnbook_sphinx:\s*)(\S+)\s*$",
                  lambda m: m.group(1) + str((root / m.group(2)).resolve()), text)
    return re.sub(r"(?m)^\s*(logo|favicon):.*\n", "", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "api")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        config, toc = Path(tmp) / "_config.yml", Path(tmp) / "_toc.yml"
        config.write_text(config_text())
        toc.write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                       + "".join(f"  - file: {page}\n" for page in PAGES))
        shutil.rmtree(args.out, ignore_errors=True)
        jb = Path(sys.executable).with_name("jupyter-book")
        result = subprocess.run(
            [str(jb), "build", str(ROOT), "--config", str(config), "--toc", str(toc),
             "--path-output", str(args.out), "--warningiserror", "--keep-going", "--quiet"],
            cwd=ROOT,
        )
    page = args.out / "_build" / "html" / "book" / "api.html"
    print(f"{'built' if result.returncode == 0 else 'FAILED'}: {page}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
