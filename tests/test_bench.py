"""attnbook.bench: timing against a callable of known duration, peak memory against tensors of
known size, the table formatter, and argument validation."""

from __future__ import annotations

import time

import pytest
import torch

from attnbook import bench
from attnbook.bench import Result


def _skip_mps(device: torch.device) -> None:
    if device.type == "mps":  # the profiler's memory events are only verified for CPU and CUDA
        pytest.skip("peak memory on MPS is not verified")


def _sleeper(seconds: float):
    def fn() -> None:
        time.sleep(seconds)

    return fn


def test_time_of_a_sleep_is_measured_within_tolerance():
    calls = []

    def fn() -> None:
        calls.append(None)
        time.sleep(0.02)

    times = bench.measure_time(fn, repeats=4, warmup=2)
    assert len(times) == 4 and len(calls) == 6  # warm-up calls run but are not timed
    assert all(t >= 0.02 for t in times)  # sleep never returns early
    # the median is one call, not the sum of the repeats (0.08 s) nor anything far off it
    assert 0.02 <= sorted(times)[len(times) // 2] < 0.045


def test_benchmark_median_orders_two_durations():
    fast = bench.benchmark(_sleeper(0.005), "fast", repeats=3, memory=False)
    slow = bench.benchmark(_sleeper(0.03), "slow", repeats=3, memory=False)
    assert slow.median > fast.median + 0.02
    assert fast.peak_bytes is None and slow.times and len(slow.times) == 3


def test_peak_memory_of_one_tensor_is_its_size(device):
    _skip_mps(device)
    n = 1_000_000
    x = None

    def fn():
        nonlocal x
        x = torch.empty(n, dtype=torch.float32, device=device)
        x.fill_(1.0)
        return None

    peak = bench.measure_peak_memory(fn, device=device, warmup=0)
    assert abs(peak - 4 * n) <= 4096  # CUDA rounds to 512-byte blocks; the CPU count is exact


def test_peak_memory_is_the_maximum_not_the_total(device):
    _skip_mps(device)
    def fn():
        a = torch.ones(1_000_000, device=device)  # 4 MB
        del a
        b = torch.ones(500_000, device=device)  # 2 MB live together with c
        c = torch.ones(750_000, device=device)  # 3 MB
        return b.sum() + c.sum()

    peak = bench.measure_peak_memory(fn, device=device)
    assert 5_000_000 - 1024 <= peak <= 5_000_000 + 8192  # max(4 MB, 2 MB + 3 MB), not 9 MB


def test_inputs_allocated_before_the_call_do_not_count(device):
    _skip_mps(device)
    big = torch.ones(2_000_000, device=device)  # 8 MB, not part of the measurement
    peak = bench.measure_peak_memory(lambda: big[:1000] * 2, device=device)
    assert peak < 100_000


def test_peak_memory_sees_autograd_saved_tensors():
    x = torch.randn(500_000, requires_grad=True)  # 2 MB

    def fwd_bwd():
        x.grad = None
        y = x.exp()  # saved for backward: 2 MB
        z = y * y  # 2 MB, and y is kept alive by the graph
        z.sum().backward()

    peak = bench.measure_peak_memory(fwd_bwd)
    assert peak >= 2 * 2_000_000  # y and z live at once


def test_result_median_spread_and_formatting():
    r = Result("a", (0.003, 0.001, 0.002, 0.010), peak_bytes=3 * 2**20, params={"n": 4})
    assert r.median == pytest.approx(0.0025)
    assert r.spread > 0
    base = Result("b", (0.001,), peak_bytes=2**20, params={"n": 4, "pass": "fwd"})
    table = bench.format_table([r, base], baseline=lambda _: base)
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[0].split("|")[1].strip() == "n" and "pass" in lines[0]
    assert "2.5 ms" in lines[2] and "3.0 MiB" in lines[2] and "2.50" in lines[2]
    assert " 3 " in lines[2]  # memory ratio
    assert lines[3].count("1.00") == 1
    assert len({len(line) for line in lines}) == 1  # columns aligned


@pytest.mark.parametrize(
    ("seconds", "text"), [(2.5, "2.5 s"), (0.0123, "12.3 ms"), (4.56e-5, "45.6 µs")]
)
def test_format_seconds(seconds, text):
    assert bench.format_seconds(seconds) == text


@pytest.mark.parametrize(
    ("nbytes", "text"), [(None, "–"), (100, "100 B"), (3 * 2**10, "3.0 KiB"), (5 * 2**30, "5.0 GiB")]
)
def test_format_bytes(nbytes, text):
    assert bench.format_bytes(nbytes) == text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"repeats": 0}, "repeats"),
        ({"repeats": 2.0}, "repeats"),
        ({"warmup": -1}, "warmup"),
        ({"repeats": True}, "repeats"),
    ],
)
def test_measure_time_rejects_bad_counts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bench.measure_time(lambda: None, **kwargs)


def test_validation_errors():
    with pytest.raises(ValueError, match="fn must be callable"):
        bench.measure_time(42)
    with pytest.raises(ValueError, match="fn must be callable"):
        bench.measure_peak_memory("not a function")
    with pytest.raises(ValueError, match="warmup"):
        bench.measure_peak_memory(lambda: None, warmup=-2)
    with pytest.raises(ValueError, match="name"):
        bench.benchmark(lambda: None, "")
    with pytest.raises(ValueError, match="results must not be empty"):
        bench.format_table([])
    with pytest.raises(ValueError, match="Result"):
        bench.format_table([("a", 1.0)])


def test_compare_interleaves_and_labels():
    order = []

    def make(name: str, seconds: float):
        def fn() -> None:
            order.append(name)
            time.sleep(seconds)

        return fn

    results = bench.compare(
        {"a": make("a", 0.002), "b": make("b", 0.012)}, repeats=3, warmup=1, memory=False, n=7
    )
    assert [r.name for r in results] == ["a", "b"]
    assert order == ["a", "b"] * 4  # warm-up round, then the timed calls alternate
    assert results[1].median > results[0].median + 0.008
    assert all(r.params == {"n": 7} and r.peak_bytes is None for r in results)
    with pytest.raises(ValueError, match="callable"):
        bench.compare({"a": 3})
    with pytest.raises(ValueError, match="at least one"):
        bench.compare({})


# ---------------------------------------------------------------------------------------------
# Without device=: follow the inputs (issue 9). The "meta" device stands in for an accelerator
# on a CPU-only machine; the CUDA cases run where there is one.
# ---------------------------------------------------------------------------------------------


def _sync_calls(monkeypatch) -> list:
    calls = []
    original = bench._synchronize

    def recording(dev):
        calls.append(dev)
        original(dev)

    monkeypatch.setattr(bench, "_synchronize", recording)
    return calls


def test_benchmark_follows_the_device_of_the_inputs(monkeypatch):
    import functools

    from torch import nn

    x = torch.ones(4, device="meta")
    model = nn.Linear(4, 4, device="meta")

    class Step:  # a callable object holding its tensors as attributes
        def __init__(self):
            self.q = torch.ones(2, device="meta")

        def __call__(self):
            return self.q * 2

    def outer(t):
        return lambda: (t + 1).sum()

    cases = {
        "closure": lambda: x + 1,
        "module": lambda: model(x),
        "nested": outer(x),
        "partial": functools.partial(torch.add, x, 1),
        "bound method": Step().__call__,
        "object": Step(),
        "returned": lambda: torch.ones(3, device="meta"),  # found from the warm-up call
    }
    for name, fn in cases.items():
        calls = _sync_calls(monkeypatch)
        r = bench.benchmark(fn, name, repeats=2, warmup=1, memory=False)
        assert r.device == "meta", name
        assert [d.type for d in calls] == ["meta"] * 4, name  # before and after each timed call
    results = bench.compare({"a": cases["closure"], "b": lambda: torch.ones(2) + 1},
                            repeats=1, memory=False)
    assert [r.device for r in results] == ["meta", "cpu"]
    assert bench.benchmark(lambda: torch.ones(2) * 3, "cpu", memory=False).device == "cpu"
    assert bench.benchmark(lambda: x + 1, "forced", memory=False, device="cpu").device == "cpu"


def test_measure_time_syncs_the_inferred_device_around_each_call(monkeypatch):
    x = torch.ones(2, device="meta")
    calls = _sync_calls(monkeypatch)
    order = []
    monkeypatch.setattr(bench.time, "perf_counter", lambda: order.append("clock") or 0.0)

    def fn():
        order.append("fn")
        return x * 2

    bench.measure_time(fn, repeats=2, warmup=0)
    assert len(calls) == 4 and all(d.type == "meta" for d in calls)
    assert order == ["clock", "fn", "clock"] * 2


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_cuda_timing_and_peak_memory_without_a_device_argument(device):
    big = torch.randn(4096, 4096, device=device)
    n = 1_000_000

    def fn():
        return big @ big + torch.empty(n, device=device).sum()

    r = bench.benchmark(fn, "matmul", repeats=3)
    assert r.device.startswith("cuda")
    # the product's output (64 MiB) is held at the peak; kernels are timed, not their launch
    assert r.peak_bytes >= 4096 * 4096 * 4
    assert r.median > 1e-5

    def alloc():
        return torch.empty(n, dtype=torch.float32, device=device).fill_(1.0)

    torch.empty(1, device=device)  # CUDA initialised; the closure holds no tensor
    peak = bench.measure_peak_memory(alloc, warmup=1)
    assert abs(peak - 4 * n) <= 4096
