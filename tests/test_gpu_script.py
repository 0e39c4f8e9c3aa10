"""benchmarks/gpu.sh and its helpers, on a machine without a GPU: the report's tables from
known inputs, which test files a machine without some packages skips, the --dry-run plan on a
tiny test folder, the refusal to "benchmark" CUDA without CUDA, and shellcheck (when present)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
GPU_SH = ROOT / "benchmarks" / "gpu.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_report  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
 <testcase classname="tests.test_functional" name="test_sdpa[cuda-float32]"/>
 <testcase classname="tests.test_functional" name="test_sdpa[cuda-float16]"/>
 <testcase classname="tests.test_functional" name="test_sdpa[cuda-bfloat16]"><failure message="x"/></testcase>
 <testcase classname="tests.test_attention" name="test_autocast_cuda_float16"/>
 <testcase classname="tests.test_attention" name="test_mha[cuda-bfloat16]"><skipped message="y"/></testcase>
 <testcase classname="tests.test_train" name="test_fit[cuda]"/>
</testsuite></testsuites>
"""


def test_junit_rows_count_each_variant(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    assert gpu_report.junit_rows(path) == [
        ("autocast", 1, 0, 0, 0), ("bfloat16", 0, 1, 0, 1), ("float16", 1, 0, 0, 0),
        ("float32", 1, 0, 0, 0), ("other", 1, 0, 0, 0),
    ]
    table = gpu_report.junit_table(path)
    assert "| **all** | **4** | **1** | **0** | **1** |" in table
    assert "`tests.test_functional::test_sdpa[cuda-bfloat16]`" in table


def test_json_table_of_records_and_of_anything_else(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"results": [{"n": 1024, "ms": 0.123456, "name": "a|b"},
                                            {"n": 2048, "tflops": 310.0}]}))
    assert gpu_report.json_table(path).splitlines() == [
        "| n | ms | name | tflops |", "|---|---|---|---|",
        "| 1024 | 0.1235 | a b |  |", "| 2048 |  |  | 310 |",
    ]
    path.write_text(json.dumps({"speedup": 2.5}))
    assert gpu_report.json_table(path).startswith("```json")


def test_test_files_with_missing_imports_are_named(tmp_path):
    (tmp_path / "helpers.py").write_text("X = 1\n")
    (tmp_path / "test_ok.py").write_text("import torch\nimport helpers\nfrom attnbook import bench\n")
    (tmp_path / "test_needs.py").write_text(
        "import torch\nimport no_such_module_here\n\ndef test():\n    import other_missing\n")
    assert gpu_report.ignores(tmp_path) == [(tmp_path / "test_needs.py", ["no_such_module_here"])]


def _tiny_tests(tmp_path: Path) -> Path:
    tests = tmp_path / "tiny"
    tests.mkdir()
    (tests / "test_tiny.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.parametrize('device', ['cpu', 'cuda'])\n"
        "@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])\n"
        "def test_x(device, dtype):\n    pass\n")
    (tests / "test_missing.py").write_text("import no_such_module_here\n")
    return tests


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env["PYTHON"] = sys.executable
    return env


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_without_cuda_it_refuses_to_run_and_says_why(tmp_path):
    out = subprocess.run(["bash", str(GPU_SH), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert out.returncode == 2
    assert "no CUDA device" in out.stderr and "--dry-run" in out.stderr


def test_dry_run_writes_the_plan_as_one_report(tmp_path):
    tests = _tiny_tests(tmp_path)
    out_dir = tmp_path / "o"
    result = subprocess.run(
        ["bash", str(GPU_SH), "--dry-run", "--notebooks", "--out", str(out_dir),
         "--tests", str(tests)],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    report = (out_dir / "gpu.md").read_text()
    assert report.startswith("# attnbook on CUDA: ")
    assert f"torch {torch.__version__}" in report
    rows = [line for line in report.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    steps = [line.split("|")[2].strip() for line in rows]
    assert steps[:4] == ["collect the CUDA tests",
                         "unit tests on CUDA (float32, float16, bfloat16, autocast)",
                         "attention benchmarks, cuda float32", "attention benchmarks, cuda bfloat16"]
    assert rows[0].split("|")[3].strip() == "ok"
    assert any("-k cuda" in r and f"--ignore={tests / 'test_missing.py'}" in r for r in rows)
    assert any("--device cuda --dtype bfloat16" in r for r in rows)
    assert any(r.startswith("| 2 ") for r in rows)  # stage 2 planned or skipped, never silent
    collected = (out_dir / "collect-cuda.log").read_text()
    assert "test_tiny.py: 2" in collected  # the two cuda cases of four
    assert "no such module" not in result.stderr.lower()


def test_attention_benchmark_refuses_cuda_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "attention.py"), "--device",
                          "cuda"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2 and "no CUDA device" in out.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_gpu_sh_is_shellcheck_clean():
    out = subprocess.run(["shellcheck", str(GPU_SH)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
