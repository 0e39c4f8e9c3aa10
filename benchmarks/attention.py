"""Time and peak memory of attention implementations, measured side by side in one run.

    .venv/bin/python benchmarks/attention.py            # full run (a few minutes on 2 cores)
    .venv/bin/python benchmarks/attention.py --quick    # smaller sizes, a smoke test
    python3 benchmarks/attention.py --device cuda --dtype bfloat16   # on a GPU (benchmarks/gpu.sh)

Prints ONE Markdown table and then the performance targets with PASS/MISS. Every row is the
median of ``--repeats`` calls after a warm-up call; the candidates of one group (same size, same
pass) are timed interleaved (attnbook.bench.compare), so their ratios are not skewed by a change
in the machine's load. Peak memory is measured by attnbook.bench.measure_peak_memory: bytes of
tensors held at once during the call, above what existed before it (the inputs do not count).

Rows (B=1, H=8, D=64, n queries = n keys):
  naive        softmax(Q Kᵀ / √D) V written out: the T × S matrix materialised
  attnbook     attnbook.functional.scaled_dot_product_attention (returns the weights too)
  flash        attnbook.functional.flash_attention (tiles of 128, online softmax)
  torch        torch.nn.functional.scaled_dot_product_attention (PyTorch's fused kernel)
and MultiHeadAttention vs nn.MultiheadAttention (E=512, H=8, self-attention, batch first),
need_weights=False, in training (fwd+bwd) and in inference (eval mode, no grad).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attnbook import bench
from attnbook.functional import flash_attention, scaled_dot_product_attention

B, H, D = 1, 8, 64
E = 512  # model width of the multi-head rows (H heads of E / H = 64)


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """``softmax(Q Kᵀ / √D) V`` with the ``(B, H, T, S)`` scores and weights in memory."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, S)
    if causal:
        T, S = scores.shape[-2:]
        keep = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)  # (T, S)
        scores = scores.masked_fill(~keep, float("-inf"))
    return scores.softmax(dim=-1) @ v  # (B, H, T, D)


IMPLEMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "naive": naive_attention,
    "attnbook.sdpa": lambda q, k, v, causal: scaled_dot_product_attention(q, k, v, causal=causal)[0],
    "flash": lambda q, k, v, causal: flash_attention(q, k, v, causal=causal),
    "torch.sdpa": lambda q, k, v, causal: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
}


# where and in what precision the tensors live (set by --device and --dtype)
DEVICE = torch.device("cpu")
DTYPE = torch.float32


def _randn(*shape: int, generator: torch.Generator, requires_grad: bool = False) -> torch.Tensor:
    """Random numbers drawn on the CPU (the same on every device), then moved to DEVICE/DTYPE."""
    x = torch.randn(*shape, generator=generator).to(device=DEVICE, dtype=DTYPE)
    return x.requires_grad_(requires_grad)


def attention_callables(n: int, train: bool, causal: bool, names: list[str]) -> dict[str, Callable]:
    """One zero-argument callable per implementation: forward, or forward + backward."""
    g = torch.Generator().manual_seed(n)
    q, k, v = (_randn(B, H, n, D, generator=g, requires_grad=train) for _ in range(3))
    grad_out = _randn(B, H, n, D, generator=g)

    def make(f: Callable[..., torch.Tensor]) -> Callable[[], None]:
        if not train:
            return lambda: f(q, k, v, causal)
        return lambda: torch.autograd.grad(f(q, k, v, causal), (q, k, v), grad_out)

    return {name: make(IMPLEMENTATIONS[name]) for name in names}


def mha_callables(n: int, train: bool) -> dict[str, Callable]:
    """attnbook.MultiHeadAttention vs nn.MultiheadAttention with the same weights."""
    from attnbook import MultiHeadAttention

    torch.manual_seed(0)
    ours = MultiHeadAttention(E, H).to(device=DEVICE, dtype=DTYPE)
    ref = nn.MultiheadAttention(E, H, batch_first=True).to(device=DEVICE, dtype=DTYPE)
    with torch.no_grad():  # copy the weights so both compute the same function
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = _randn(B, n, E, generator=torch.Generator().manual_seed(n))  # (B, n, E)
    with torch.no_grad():
        ours.eval(), ref.eval()
        diff = (ours(x, need_weights=False)[0] - ref(x, x, x, need_weights=False)[0]).abs().max()
    tol = 1e-4 if DTYPE == torch.float32 else 5e-2  # half precision rounds differently
    assert diff < tol, f"MultiHeadAttention and nn.MultiheadAttention differ by {diff:.2e}"
    grad_out = _randn(B, n, E, generator=torch.Generator().manual_seed(n + 1))

    if train:
        ours.train(), ref.train()

        def step(module: nn.Module, forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
            def run() -> None:
                module.zero_grad(set_to_none=True)
                forward().backward(grad_out)

            return run

        x.requires_grad_(False)
        return {
            "MultiHeadAttention": step(ours, lambda: ours(x, need_weights=False)[0]),
            "nn.MultiheadAttention": step(ref, lambda: ref(x, x, x, need_weights=False)[0]),
        }

    def infer(forward: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.no_grad():
                return forward()

        return run

    return {
        "MultiHeadAttention": infer(lambda: ours(x, need_weights=False)[0]),
        "nn.MultiheadAttention": infer(lambda: ref(x, x, x, need_weights=False)[0]),
    }


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or cpu
    where = f"{cpu}, {torch.get_num_threads()} torch threads"
    if DEVICE.type == "cuda":
        props = torch.cuda.get_device_properties(DEVICE)
        where = (f"{props.name} ({props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}), "
                 f"host {cpu}")
    return (
        f"{where}, torch {torch.__version__}, {str(DTYPE).removeprefix('torch.')}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.machine()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n in {256, 1024}, memory up to 2048")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 5, quick 3)")
    parser.add_argument("--no-mha", action="store_true", help="skip the MultiHeadAttention rows")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps ...")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                        help="precision of the inputs and weights (default float32)")
    args = parser.parse_args(argv)
    global DEVICE, DTYPE
    DEVICE, DTYPE = torch.device(args.device), getattr(torch, args.dtype)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device")
    sizes = [256, 1024] if args.quick else [256, 1024, 4096]
    memory_only = 2048 if args.quick else 8192
    repeats = args.repeats or (3 if args.quick else 5)
    big = sizes[-1]
    print(f"# machine: {machine()}", flush=True)
    print(f"# command: {' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}", flush=True)

    results: list[bench.Result] = []

    def run(fns: dict[str, Callable], n: int, pass_: str, mask: str, timed: bool = True) -> None:
        params = {"n": n, "pass": pass_, "mask": mask}
        label = ", ".join(f"{k}={v}" for k, v in params.items())
        print(f"# measuring {label}: {', '.join(fns)}", file=sys.stderr, flush=True)
        if timed:
            results.extend(bench.compare(fns, repeats=repeats, warmup=1, memory=True,
                                         device=DEVICE, **params))
        else:  # memory only: one call each, no timing
            results.extend(
                bench.Result(name, (), bench.measure_peak_memory(fn, warmup=0, device=DEVICE),
                             str(DEVICE), dict(params))
                for name, fn in fns.items()
            )

    every = list(IMPLEMENTATIONS)
    for n in sizes:
        for train in (False, True):
            pass_ = "fwd+bwd" if train else "fwd"
            run(attention_callables(n, train, False, every), n=n, pass_=pass_, mask="none")
            run(attention_callables(n, train, True, ["flash", "torch.sdpa"]), n=n, pass_=pass_, mask="causal")
    for train in (False, True):
        pass_ = "fwd+bwd" if train else "fwd"
        run(attention_callables(memory_only, train, False, every), timed=False,
            n=memory_only, pass_=pass_, mask="none")

    have_mha = not args.no_mha
    if have_mha:
        try:
            from attnbook import MultiHeadAttention  # noqa: F401
        except (ImportError, AttributeError) as error:
            print(f"# MultiHeadAttention rows skipped: {error}", file=sys.stderr)
            have_mha = False
    if have_mha:
        for n in sizes:
            run(mha_callables(n, train=True), n=n, pass_="fwd+bwd", mask="E=512")
            run(mha_callables(n, train=False), n=n, pass_="inference", mask="E=512")

    def find(name: str, n: int, pass_: str, mask: str) -> bench.Result | None:
        for r in results:
            if r.name == name and r.params == {"n": n, "pass": pass_, "mask": mask}:
                return r
        return None

    def baseline(r: bench.Result) -> bench.Result | None:
        ref = "nn.MultiheadAttention" if r.params["mask"] == "E=512" else "torch.sdpa"
        return find(ref, r.params["n"], r.params["pass"], r.params["mask"])

    table = bench.format_table(results, ["n", "pass", "mask"], baseline=baseline)
    print()
    print(table)
    print()
    print("time × and memory × are relative to torch.sdpa (attention rows) or to")
    print("nn.MultiheadAttention (E=512 rows) of the same n and pass. '–': not measured.")
    print()

    checks: list[tuple[str, float | None, str, float]] = []

    def ratio(a: bench.Result | None, b: bench.Result | None, what: str) -> float | None:
        if a is None or b is None:
            return None
        if what == "time":
            return a.median / b.median
        return a.peak_bytes / b.peak_bytes if b.peak_bytes else None

    flash_fb, sdpa_fb = find("flash", big, "fwd+bwd", "none"), find("torch.sdpa", big, "fwd+bwd", "none")
    flash_c, sdpa_c = find("flash", big, "fwd+bwd", "causal"), find("torch.sdpa", big, "fwd+bwd", "causal")
    checks.append((f"flash fwd+bwd time / torch.sdpa, n={big}", ratio(flash_fb, sdpa_fb, "time"), "<=", 1.5))
    checks.append(
        (f"flash causal fwd+bwd time / torch.sdpa causal, n={big}", ratio(flash_c, sdpa_c, "time"), "<=", 2.0)
    )
    checks.append(
        (
            f"flash fwd+bwd peak memory / naive, n={memory_only}",
            ratio(find("flash", memory_only, "fwd+bwd", "none"), find("naive", memory_only, "fwd+bwd", "none"), "memory"),
            "<=",
            1 / 16,
        )
    )
    if have_mha:
        for n in sizes:
            checks.append(
                (
                    f"MultiHeadAttention fwd+bwd time / nn.MultiheadAttention, n={n}",
                    ratio(find("MultiHeadAttention", n, "fwd+bwd", "E=512"),
                          find("nn.MultiheadAttention", n, "fwd+bwd", "E=512"), "time"),
                    "<=",
                    1.10,
                )
            )
        ours_inf = find("MultiHeadAttention", big, "inference", "E=512")
        ref_inf = find("nn.MultiheadAttention", big, "inference", "E=512")
        checks.append(
            (f"MultiHeadAttention inference peak memory / nn.MHA, n={big}", ratio(ours_inf, ref_inf, "memory"), "<=", 0.25)
        )
        checks.append(
            (f"MultiHeadAttention inference time / nn.MHA, n={big}", ratio(ours_inf, ref_inf, "time"), "<=", 0.8)
        )
    print("| target | measured | goal | verdict |")
    print("|---|---:|---:|---|")
    failed = 0
    for what, value, op, goal in checks:
        ok = value is not None and value <= goal
        failed += not ok
        shown = "–" if value is None else f"{value:.3g}"
        print(f"| {what} | {shown} | {op} {goal:.3g} | {'PASS' if ok else 'MISS'} |")
    if args.quick:
        print("\n(--quick: the targets are defined at n=4096 and 8192; these are the smaller sizes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
