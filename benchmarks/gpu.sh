#!/usr/bin/env bash
# attnbook on a CUDA GPU: one report, benchmarks/README.md says how to run it and where the
# results are recorded.
#
# Stage 1 (default; within 5 minutes on an H200, start-up included):
#   1. the versions of Python, torch, CUDA, the GPU and triton;
#   2. the unit tests on CUDA: every test whose id names cuda (`pytest -k cuda`: the device
#      fixture's cuda parameter with the float32/float16/bfloat16 dtype matrix, the autocast
#      tests), summarised per variant;
#   3. the attention benchmarks on CUDA (benchmarks/attention.py, float32 and bfloat16);
#   4. benchmarks/triton_flash.py --json, when that script exists.
# Stage 2 (--notebooks): every chapter executed by nbval, where attnbook.utils.device() is CUDA.
#
# Everything lands in OUT_DIR (default: $OUT when set, else _build/gpu): gpu.md (the report:
# one summary table, then each step's table) and one .log per step. It installs nothing: the
# machine's python must have torch (+ triton, pytest, hypothesis, numpy, matplotlib); test files
# whose imports are missing there are not collected (and named). Wheels carried to the machine
# can be installed into a scratch directory with --wheels DIR.
#
#   bash benchmarks/gpu.sh                   # stage 1
#   bash benchmarks/gpu.sh --notebooks       # stages 1 and 2
#   bash benchmarks/gpu.sh --dry-run         # print and record the plan; runs on any machine
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --notebooks     also run stage 2 (nbval over book/*.ipynb on CUDA)
  --dry-run       check the plan without a GPU: versions and collection only, nothing timed
  --out DIR       where the report and logs go (default: $OUT, else _build/gpu)
  --python PY     the interpreter (default: $PYTHON, else .venv/bin/python if present, else python3)
  --wheels DIR    pip-install DIR/*.whl (--no-index --no-deps) into a scratch dir on PYTHONPATH
  --tests DIR     the unit tests to select the CUDA ones from (default: tests)
  -h, --help      this text
EOF
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT_DIR="${OUT:-$ROOT/_build/gpu}"
if [[ -x .venv/bin/python ]]; then PY_DEFAULT=.venv/bin/python; else PY_DEFAULT=python3; fi
PY="${PYTHON:-$PY_DEFAULT}"
NOTEBOOKS=0
DRY_RUN=0
WHEELS=""
TESTS=tests
while [[ $# -gt 0 ]]; do
  case "$1" in
    --notebooks) NOTEBOOKS=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --out) OUT_DIR="$2"; shift ;;
    --python) PY="$2"; shift ;;
    --wheels) WHEELS="$2"; shift ;;
    --tests) TESTS="$2"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
REPORT="$OUT_DIR/gpu.md"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's attnbook
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

if [[ -n "$WHEELS" ]]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/attnbook-site "$WHEELS"/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/attnbook-site"
fi

STARTED=$(date +%s)
ROWS=()      # the summary table's rows
SECTIONS=()  # Markdown sections after it
FAILED=0

has_cuda() {
  "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
}

has_modules() {  # has_modules a b c: every module importable by $PY
  "$PY" - "$@" <<'EOF'
import importlib.util, sys
sys.exit(0 if all(importlib.util.find_spec(m) for m in sys.argv[1:]) else 1)
EOF
}

# step STAGE NAME LOG COMMAND...: run COMMAND (output to OUT_DIR/LOG), record status and time.
step() {
  local stage="$1" name="$2" log="$3"
  shift 3
  local shown
  shown="$(printf '%q ' "$@")"
  shown="${shown% }"
  shown="${shown//$ROOT\//}"
  echo "== $name: $shown" >&2
  if [[ $DRY_RUN == 1 ]]; then
    ROWS+=("| $stage | $name | planned (--dry-run) | – | \`$shown\` |")
    return 0
  fi
  local t0 t1 rc=0
  t0=$(date +%s)
  "$@" >"$OUT_DIR/$log" 2>&1 || rc=$?
  t1=$(date +%s)
  if [[ $rc == 0 ]]; then
    ROWS+=("| $stage | $name | ok | $((t1 - t0)) | \`$log\` |")
  else
    ROWS+=("| $stage | $name | FAILED (exit $rc) | $((t1 - t0)) | \`$log\` |")
    FAILED=1
    tail -n 30 "$OUT_DIR/$log" >&2 || true
  fi
  return 0
}

skip() {  # skip STAGE NAME WHY
  echo "== $2: skipped, $3" >&2
  ROWS+=("| $1 | $2 | skipped: $3 | – | |")
}

# ---------------------------------------------------------------------------------- stage 1
VERSIONS="$("$PY" benchmarks/gpu_report.py versions)"
echo "$VERSIONS" >&2
if ! has_cuda && [[ $DRY_RUN == 0 ]]; then
  echo "gpu.sh: torch sees no CUDA device here; run it on the GPU machine, or use --dry-run" >&2
  exit 2
fi

mapfile -t IGNORES < <("$PY" benchmarks/gpu_report.py ignores "$TESTS")
PYTEST=("$PY" -m pytest -q -p no:cacheprovider -p no:xdist -m "not site" -k cuda
        --junitxml="$OUT_DIR/junit-cuda.xml" "${IGNORES[@]}" "$TESTS")
if [[ $DRY_RUN == 1 ]]; then
  # collection only: proves the CUDA selection and the ignores work on this machine
  if "${PYTEST[@]}" --collect-only -q >"$OUT_DIR/collect-cuda.log" 2>&1; then
    ROWS+=("| 1 | collect the CUDA tests | ok | – | \`collect-cuda.log\` |")
  else
    ROWS+=("| 1 | collect the CUDA tests | FAILED | – | \`collect-cuda.log\` |")
    FAILED=1
  fi
fi
step 1 "unit tests on CUDA (float32, float16, bfloat16, autocast)" pytest-cuda.log "${PYTEST[@]}"
if [[ -f "$OUT_DIR/junit-cuda.xml" && $DRY_RUN == 0 ]]; then
  SECTIONS+=("## Unit tests on CUDA, per variant"$'\n\n'"$("$PY" benchmarks/gpu_report.py junit "$OUT_DIR/junit-cuda.xml")")
fi

for dtype in float32 bfloat16; do
  extra=()
  [[ $dtype == float32 ]] || extra=(--quick --no-mha)
  step 1 "attention benchmarks, cuda $dtype" "attention-cuda-$dtype.md" \
    "$PY" benchmarks/attention.py --device cuda --dtype "$dtype" --repeats 5 "${extra[@]}"
  if [[ $DRY_RUN == 0 && -s "$OUT_DIR/attention-cuda-$dtype.md" ]]; then
    SECTIONS+=("## Attention benchmarks, cuda $dtype"$'\n\n'"$(grep -v '^# measuring' "$OUT_DIR/attention-cuda-$dtype.md")")
  fi
done

if [[ -f benchmarks/triton_flash.py ]]; then
  step 1 "Triton FlashAttention benchmark" triton_flash.log \
    "$PY" benchmarks/triton_flash.py --json "$OUT_DIR/triton_flash.json"
  if [[ $DRY_RUN == 0 && -s "$OUT_DIR/triton_flash.json" ]]; then
    SECTIONS+=("## Triton FlashAttention"$'\n\n'"$("$PY" benchmarks/gpu_report.py json-table "$OUT_DIR/triton_flash.json")")
  fi
else
  skip 1 "Triton FlashAttention benchmark" "benchmarks/triton_flash.py is not in this checkout"
fi
STAGE1=$(($(date +%s) - STARTED))

# ---------------------------------------------------------------------------------- stage 2
if [[ $NOTEBOOKS == 1 ]]; then
  if has_modules nbval nbformat nbclient ipykernel ipywidgets; then
    step 2 "notebooks under nbval on CUDA" nbval-cuda.log \
      "$PY" -m pytest -q -p no:cacheprovider -p no:xdist --nbval --nbval-cell-timeout=300 book
    if [[ $DRY_RUN == 0 && -f _build/notebook-times.md ]]; then
      SECTIONS+=("## Notebook execution times on CUDA (seconds)"$'\n\n'"$(cat _build/notebook-times.md)")
    fi
  else
    skip 2 "notebooks under nbval on CUDA" \
      "nbval, nbformat, nbclient, ipykernel or ipywidgets missing (carry wheels: --wheels)"
  fi
fi

# ---------------------------------------------------------------------------------- report
{
  echo "# attnbook on CUDA: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Command: \`bash benchmarks/gpu.sh $([[ $NOTEBOOKS == 1 ]] && echo --notebooks)$([[ $DRY_RUN == 1 ]] && echo ' --dry-run')\`"
  echo "at commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`; stage 1 took ${STAGE1} s."
  echo
  while IFS= read -r line; do echo "- $line"; done <<<"$VERSIONS"
  echo
  echo "| stage | step | status | seconds | output |"
  echo "|---|---|---|---:|---|"
  printf '%s\n' "${ROWS[@]}"
  for section in "${SECTIONS[@]}"; do
    echo
    echo "$section"
  done
} >"$REPORT"
echo "report: $REPORT" >&2
exit "$FAILED"
