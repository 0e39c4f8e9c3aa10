"""The Triton FlashAttention kernel (attnbook.kernels) against PyTorch's SDPA flash backend, on CUDA.

    .venv/bin/python benchmarks/triton_flash.py                      # the full table (minutes)
    .venv/bin/python benchmarks/triton_flash.py --quick              # small sizes, a smoke test
    .venv/bin/python benchmarks/triton_flash.py --json benchmarks/results/triton_flash.json

Rows: bfloat16, batch 4 x 32 heads, head dim d in {64, 128}, n = T = S in {1024, 4096, 16384},
non-causal and causal, forward and backward, for ``attnbook.kernels.flash_attention`` (Triton)
and ``torch.nn.functional.scaled_dot_product_attention`` restricted to its FLASH_ATTENTION
backend.

Method: the inputs are made once per shape; each callable runs ``--warmup`` times (this
compiles and autotunes the Triton kernels), then ``--repeats`` (>= 20) times, each call between
two CUDA events; the table gives the median time. The backward rows time
``torch.autograd.grad(out, (q, k, v), dO)`` alone, on a graph built before timing. FLOPs count
the matrix products only: forward 4·B·H·n²·d (two products), halved for causal; backward 2.5 x
the forward (five products), as in the FlashAttention papers. TFLOP/s is FLOPs / median time;
"% peak" divides by the device's dense bfloat16 peak from its datasheet (when the device is in
the table below) and "% matmul" by the TFLOP/s of a bfloat16 8192³ ``torch.matmul`` measured
the same way. Errors: max |x - x_ref| / max |x_ref| over the output (forward rows) or over dq,
dk, dv (backward rows), x_ref from SDPA's memory-efficient backend in float32 on the same
(bfloat16-rounded) inputs.

The targets printed at the end (issue: Part III, section 3): at n = 4096, d = 64, non-causal,
Triton forward >= 70% of SDPA flash's TFLOP/s, backward >= 50%, and every max error < 1e-2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

# dense (no sparsity) bfloat16 tensor-core peak, TFLOP/s, from the vendors' datasheets
DATASHEET_BF16_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10G": 70.0,
    "RTX 4090": 165.2,
}


def datasheet_peak(name: str) -> float | None:
    for key, value in DATASHEET_BF16_TFLOPS.items():
        if key.lower() in name.lower():
            return value * 1e12
    return None


def cuda_times(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Seconds per call: ``warmup`` discarded calls, then ``repeats`` calls timed by CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(repeats)]
    for start, stop in events:
        start.record()
        fn()
        stop.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(stop) / 1e3 for start, stop in events]


def matmul_tflops(repeats: int, warmup: int) -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    t = statistics.median(cuda_times(lambda: a @ b, repeats, warmup))
    return 2 * 8192**3 / t


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.float() - ref).abs().max() / ref.abs().max()).item()


def sdpa_flash(q, k, v, causal):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def sdpa_reference(q, k, v, causal):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def measure_shape(B, H, n, d, causal, args, impls) -> list[dict]:
    g = torch.Generator(device="cuda").manual_seed(n + d)
    q, k, v = (torch.randn(B, H, n, d, device="cuda", dtype=torch.bfloat16, generator=g)
               for _ in range(3))
    dout = torch.randn(B, H, n, d, device="cuda", dtype=torch.bfloat16, generator=g)
    # reference in float32 (memory-efficient backend: no n x n matrix)
    q32, k32, v32 = (x.float().requires_grad_() for x in (q, k, v))
    ref_out = sdpa_reference(q32, k32, v32, causal)
    ref_grads = torch.autograd.grad(ref_out, (q32, k32, v32), dout.float())
    ref_out = ref_out.detach()
    del q32, k32, v32

    fwd_flops = 4 * B * H * n * n * d / (2 if causal else 1)
    rows = []
    for name, fn in impls.items():
        qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
        with torch.no_grad():
            fwd_times = cuda_times(lambda fn=fn: fn(q, k, v, causal), args.repeats, args.warmup)
            out = fn(q, k, v, causal)
        fwd_err = rel_err(out, ref_out)
        out_g = fn(qg, kg, vg, causal)
        bwd_times = cuda_times(
            lambda out_g=out_g, qg=qg, kg=kg, vg=vg: torch.autograd.grad(
                out_g, (qg, kg, vg), dout, retain_graph=True),
            args.repeats, args.warmup)
        grads = torch.autograd.grad(out_g, (qg, kg, vg), dout)
        bwd_err = max(rel_err(gr, r) for gr, r in zip(grads, ref_grads))
        for pass_, times, flops, err in (("fwd", fwd_times, fwd_flops, fwd_err),
                                         ("bwd", bwd_times, 2.5 * fwd_flops, bwd_err)):
            t = statistics.median(times)
            q1, _, q3 = statistics.quantiles(times, n=4)
            rows.append({"impl": name, "pass": pass_, "B": B, "H": H, "n": n, "d": d,
                         "causal": causal, "ms": 1e3 * t, "ms_iqr_half": 1e3 * (q3 - q1) / 2,
                         "tflops": flops / t / 1e12, "max_rel_err": err})
        del out_g, grads
    torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write device, versions, method and rows here")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="B=2, H=8, n in {1024, 2048}")
    parser.add_argument("--causal", choices=["both", "no", "yes"], default="both")
    args = parser.parse_args(argv)
    if args.repeats < 20:
        parser.error("--repeats must be >= 20")
    if not torch.cuda.is_available():
        print("benchmarks/triton_flash.py measures CUDA kernels: no CUDA device here.")
        return 2

    import triton

    from attnbook.kernels import flash_attention

    B, H = (2, 8) if args.quick else (4, 32)
    ns = (1024, 2048) if args.quick else (1024, 4096, 16384)
    causals = {"both": (False, True), "no": (False,), "yes": (True,)}[args.causal]
    impls = {
        "triton (attnbook.kernels)": lambda q, k, v, c: flash_attention(q, k, v, causal=c),
        "sdpa flash": sdpa_flash,
    }
    name = torch.cuda.get_device_name()
    peak = datasheet_peak(name)
    mm = matmul_tflops(args.repeats, args.warmup)
    rows = []
    for d in (64, 128):
        for n in ns:
            for causal in causals:
                rows += measure_shape(B, H, n, d, causal, args, impls)
                print(f"  measured d={d} n={n} causal={causal}", file=sys.stderr)
    for row in rows:
        row["pct_peak"] = None if peak is None else 100 * row["tflops"] * 1e12 / peak
        row["pct_matmul"] = 100 * row["tflops"] * 1e12 / mm

    print(f"\n{name}, torch {torch.__version__}, triton {triton.__version__}, bfloat16, "
          f"B={B}, H={H}; matmul ceiling {mm / 1e12:.0f} TFLOP/s"
          + (f", datasheet peak {peak / 1e12:.0f} TFLOP/s" if peak else "") + "\n")
    header = "| d | n | causal | pass | implementation | ms (median) | TFLOP/s | % peak | % matmul | max rel. error |"
    print(header)
    print("|---:|---:|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        pct = "–" if r["pct_peak"] is None else f"{r['pct_peak']:.0f}"
        print(f"| {r['d']} | {r['n']} | {r['causal']} | {r['pass']} | {r['impl']} | "
              f"{r['ms']:.3f} | {r['tflops']:.0f} | {pct} | {r['pct_matmul']:.0f} | "
              f"{r['max_rel_err']:.1e} |")

    targets = []
    n_t = 4096 if not args.quick else 2048
    for pass_, goal in (("fwd", 0.70), ("bwd", 0.50)):
        pick = {r["impl"]: r for r in rows
                if r["pass"] == pass_ and r["n"] == n_t and r["d"] == 64 and not r["causal"]}
        if len(pick) == 2:
            ratio = pick["triton (attnbook.kernels)"]["tflops"] / pick["sdpa flash"]["tflops"]
            targets.append({"target": f"{pass_} TFLOP/s triton / sdpa flash, n={n_t}, d=64",
                            "measured": ratio, "goal": f">= {goal}", "pass": ratio >= goal})
    worst = max(r["max_rel_err"] for r in rows if r["impl"].startswith("triton"))
    targets.append({"target": "triton max relative error (all rows)", "measured": worst,
                    "goal": "< 1e-2", "pass": worst < 1e-2})
    print("\n| target | measured | goal | verdict |\n|---|---:|---|---|")
    for t in targets:
        print(f"| {t['target']} | {t['measured']:.3g} | {t['goal']} | "
              f"{'PASS' if t['pass'] else 'MISS'} |")

    if args.json:
        record = {
            "device": name,
            "capability": ".".join(map(str, torch.cuda.get_device_capability())),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "torch": torch.__version__, "triton": triton.__version__,
            "cuda": torch.version.cuda, "python": platform.python_version(),
            "dtype": "bfloat16", "B": B, "H": H,
            "method": (f"warm-up {args.warmup} calls (compiles and autotunes), then the median "
                       f"of {args.repeats} calls each timed by CUDA events; backward = "
                       "autograd.grad on a prebuilt graph; FLOPs: forward 4·B·H·n²·d (halved "
                       "for causal), backward 2.5x forward; error vs SDPA memory-efficient "
                       "backend in float32"),
            "datasheet_peak_tflops": None if peak is None else peak / 1e12,
            "matmul_tflops": mm / 1e12,
            "rows": rows, "targets": targets,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
