"""Helpers of ``benchmarks/gpu.sh``: what the machine has, which test files it can collect, and
the Markdown tables of the report. Standard library only (the GPU machine installs nothing).

    python benchmarks/gpu_report.py versions              # one line per component
    python benchmarks/gpu_report.py ignores tests         # --ignore=... for uncollectable files
    python benchmarks/gpu_report.py junit FILE.xml        # pass/fail/skip per dtype variant
    python benchmarks/gpu_report.py json-table FILE.json  # a list of flat records -> a table
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import platform
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the variants a CUDA test id names, most specific first ("bfloat16" contains "float16")
VARIANTS = ("autocast", "bfloat16", "float16", "float32", "float64")


def versions() -> list[str]:
    """Python, torch, CUDA, the GPU and triton, as this interpreter sees them."""
    lines = [f"Python {platform.python_version()} ({sys.executable})"]
    try:
        import torch
    except ImportError as err:
        return [*lines, f"torch: not importable ({err})"]
    lines.append(f"torch {torch.__version__} (CUDA {torch.version.cuda}, "
                 f"cuDNN {torch.backends.cudnn.version() if torch.cuda.is_available() else '–'})")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, "
                         f"compute capability {p.major}.{p.minor}")
    else:
        lines.append("GPU: none (torch.cuda.is_available() is False)")
    try:
        import triton

        lines.append(f"triton {triton.__version__}")
    except ImportError:
        lines.append("triton: not installed")
    return lines


def _local(name: str, root: Path, here: Path) -> bool:
    return any((base / f"{name}.py").exists() or (base / name / "__init__.py").exists()
               for base in (here, root, root / "tests", root / "scripts", root / "benchmarks"))


def missing_imports(path: Path, root: Path = ROOT) -> list[str]:
    """Top-level modules that ``path`` imports at module level and this interpreter lacks."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:  # module level only: imports inside tests are the tests' business
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names
                  if not _local(n, root, path.parent) and importlib.util.find_spec(n) is None)


def ignores(tests: Path) -> list[tuple[Path, list[str]]]:
    """Test files that cannot be collected here, with the modules they miss."""
    out = []
    for path in sorted(tests.glob("test_*.py")):
        missing = missing_imports(path)
        if missing:
            out.append((path, missing))
    return out


def variant(name: str) -> str:
    lowered = name.lower()
    return next((v for v in VARIANTS if v in lowered), "other")


def junit_rows(xml_path: Path) -> list[tuple[str, int, int, int, int]]:
    """``(variant, passed, failed, errors, skipped)`` from a pytest --junitxml file."""
    counts: dict[str, Counter] = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        kind = variant(case.get("name", ""))
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "errors", "skipped": "skipped"}[child.tag]
        counts.setdefault(kind, Counter())[outcome] += 1
    order = [*VARIANTS, "other"]
    return [(k, c["passed"], c["failed"], c["errors"], c["skipped"])
            for k, c in sorted(counts.items(), key=lambda kv: order.index(kv[0]))]


def junit_table(xml_path: Path) -> str:
    rows = junit_rows(xml_path)
    total = [sum(r[i] for r in rows) for i in range(1, 5)]
    lines = ["| variant | passed | failed | errors | skipped |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {p} | {f} | {e} | {s} |" for k, p, f, e, s in rows]
    lines.append(f"| **all** | **{total[0]}** | **{total[1]}** | **{total[2]}** | **{total[3]}** |")
    failed = [f"{case.get('classname')}::{case.get('name')}"
              for case in ET.parse(xml_path).getroot().iter("testcase")
              if any(child.tag in ("failure", "error") for child in case)]
    if failed:
        lines += ["", "Failed:", *(f"- `{name}`" for name in failed)]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return re.sub(r"[|\n]", " ", str(value))


def json_table(json_path: Path) -> str:
    """A Markdown table of a JSON list of flat records (or ``{"results": [...]}``); any other
    JSON is shown as a code block."""
    data = json.loads(json_path.read_text())
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        data = data["results"]
    if not (isinstance(data, list) and data and all(isinstance(r, dict) for r in data)):
        return "```json\n" + json.dumps(data, indent=1)[:20000] + "\n```"
    keys = list(dict.fromkeys(k for r in data for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(r.get(k, "")) for k in keys) + " |" for r in data]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("versions")
    p = sub.add_parser("ignores")
    p.add_argument("tests", type=Path)
    p = sub.add_parser("junit")
    p.add_argument("xml", type=Path)
    p = sub.add_parser("json-table")
    p.add_argument("json", type=Path)
    args = parser.parse_args(argv)
    if args.command == "versions":
        print("\n".join(versions()))
    elif args.command == "ignores":
        for path, missing in ignores(args.tests):
            print(f"# not collected: {path.name} needs {', '.join(missing)}", file=sys.stderr)
            print(f"--ignore={path}")
    elif args.command == "junit":
        print(junit_table(args.xml))
    else:
        print(json_table(args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
