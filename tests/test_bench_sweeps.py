"""attnbook.bench's sweep helpers: thread control, the device ceilings' formulas, the size sweep
(memory against tensors of known size, labels, timing on and off) and the log-log fit."""

from __future__ import annotations

import math
import time

import pytest
import torch

from attnbook import bench
from attnbook.bench import Result


def test_cpu_threads_sets_and_restores():
    before = torch.get_num_threads()
    with bench.cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with bench.cpu_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), bench.cpu_threads(1):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before  # restored after an error too
    with pytest.raises(ValueError, match="n must be an int"), bench.cpu_threads(0):
        pass


def test_matmul_ceiling_is_2n3_over_the_fastest_call(monkeypatch):
    calls = []

    def fake_time(fn, *, repeats, warmup, device):  # the wall clock
        calls.append(fn())
        return [0.5, 0.25, 1.0]

    monkeypatch.setattr(bench, "measure_time", fake_time)
    assert bench.matmul_ceiling(n=8) == 2 * 8**3 / 0.25
    assert calls[0].shape == (8, 8)  # it timed an (n, n) product


def test_memory_bandwidth_counts_a_read_and_a_write(monkeypatch):
    monkeypatch.setattr(bench, "measure_time", lambda fn, **kw: [fn() is not None and 0.1, 0.2])
    assert bench.memory_bandwidth(nbytes=4096) == pytest.approx(2 * 4096 / 0.1)


@pytest.mark.parametrize("clock", ["wall", "thread"])
def test_ceilings_on_this_machine_are_plausible(clock):
    with bench.cpu_threads(1):
        flops = bench.matmul_ceiling(n=128, repeats=2, warmup=1, clock=clock)
        bandwidth = bench.memory_bandwidth(nbytes=2**20, repeats=2, warmup=1, clock=clock)
    assert 1e6 < flops < 1e16 and 1e6 < bandwidth < 1e14
    with pytest.raises(ValueError, match="clock"):
        bench.matmul_ceiling(n=8, clock="gpu")
    with pytest.raises(ValueError, match="repeats"):
        bench.memory_bandwidth(nbytes=64, repeats=0)


def _allocator(n: int):
    def fn():
        x = torch.ones(n, dtype=torch.float32)  # 4 n bytes
        y = torch.ones(2 * n, dtype=torch.float64)  # 16 n bytes, both alive
        return x.sum() + y.sum()

    return fn


def test_sweep_measures_each_size_and_labels_it():
    results = bench.sweep({"alloc": _allocator, "sleep": lambda n: lambda: time.sleep(1e-4)},
                          [1000, 4000], repeats=2, warmup=0, param="size")
    assert [(r.name, r.params) for r in results] == [
        ("alloc", {"size": 1000}), ("sleep", {"size": 1000}),
        ("alloc", {"size": 4000}), ("sleep", {"size": 4000}),
    ]
    assert all(isinstance(r, Result) and len(r.times) == 2 for r in results)
    alloc = [r.peak_bytes for r in results if r.name == "alloc"]
    for n, peak in zip([1000, 4000], alloc):
        assert 20 * n <= peak <= 20 * n + 64  # the two tensors, plus the scalars of .sum()
    assert all(r.times[0] >= 1e-4 for r in results if r.name == "sleep")


def test_sweep_memory_only_and_progress():
    seen = []

    def progress(rounds):
        seen.extend(rounds)
        return rounds

    results = bench.sweep({"alloc": _allocator}, [100], timing=False, progress=progress)
    assert seen == [0, 1]  # one warm-up round, one memory round
    assert results[0].times == () and results[0].peak_bytes >= 2000
    seen.clear()
    timed = bench.sweep({"alloc": _allocator}, [100], memory=False, repeats=3, warmup=2,
                        progress=progress)
    assert seen == [0, 1, 2, 3, 4] and timed[0].peak_bytes is None and len(timed[0].times) == 3


def test_sweep_interleaves_sizes_and_candidates():
    order = []

    def maker(tag):
        return lambda n: lambda: order.append((n, tag))

    bench.sweep({"a": maker("a"), "b": maker("b")}, [1, 2], repeats=2, warmup=0, memory=False)
    one_round = [(1, "a"), (1, "b"), (2, "a"), (2, "b")]
    assert order == one_round * 2  # round-robin over every (size, name), not size after size


def test_sweep_thread_clock_excludes_waiting():
    # sleeping uses no CPU: the wall clock sees it, the thread's CPU time does not
    nap = {"nap": lambda n: lambda: time.sleep(n / 1000)}
    wall = bench.sweep(nap, [20], repeats=2, warmup=0, memory=False)
    cpu = bench.sweep(nap, [20], repeats=2, warmup=0, memory=False, clock="thread")
    assert min(wall[0].times) >= 0.02 and max(cpu[0].times) < 0.01
    # work does count
    spin = {"spin": lambda n: lambda: sum(range(n))}
    busy = bench.sweep(spin, [200_000], repeats=2, warmup=0, memory=False, clock="thread")
    assert min(busy[0].times) > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"makers": {}, "sizes": [1]}, "makers"),
        ({"makers": {"a": 3}, "sizes": [1]}, "makers"),
        ({"makers": {"a": _allocator}, "sizes": []}, "sizes"),
        ({"makers": {"a": _allocator}, "sizes": [0]}, "sizes"),
        ({"makers": {"a": _allocator}, "sizes": [1], "timing": False, "memory": False}, "timing"),
        ({"makers": {"a": _allocator}, "sizes": [1], "clock": "cpu"}, "clock"),
        ({"makers": {"a": _allocator}, "sizes": [1], "clock": "thread", "device": "meta"},
         "only valid on the CPU"),
        ({"makers": {"a": _allocator}, "sizes": [1], "repeats": 0}, "repeats"),
    ],
)
def test_sweep_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bench.sweep(**kwargs)


def test_loglog_fit_recovers_a_power_law():
    x = [2.0**i for i in range(4, 11)]
    for p, c in [(1.0, 3.0), (2.0, 0.5), (0.5, 10.0)]:
        slope, intercept = bench.loglog_fit(x, [c * v**p for v in x])
        assert slope == pytest.approx(p) and math.exp(intercept) == pytest.approx(c)
    # least squares, not the two end points: a noisy middle moves the fit by a known amount
    gen = torch.Generator().manual_seed(0)
    noise = torch.exp(0.05 * torch.randn(len(x), generator=gen)).tolist()
    y = [v**2 * e for v, e in zip(x, noise)]
    lx = torch.tensor(x, dtype=torch.float64).log()
    ly = torch.tensor(y, dtype=torch.float64).log()
    A = torch.stack([lx, torch.ones_like(lx)], 1)  # (n, 2) design matrix
    ref = torch.linalg.lstsq(A, ly[:, None]).solution[:, 0]
    assert bench.loglog_slope(x, y) == pytest.approx(float(ref[0]), rel=1e-9)
    ends = (ly[-1] - ly[0]) / (lx[-1] - lx[0])
    assert abs(float(ends) - bench.loglog_slope(x, y)) > 1e-3  # the test tells the two apart


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [([1, 2], [1], "length"), ([2, 2], [1, 3], "distinct"), ([1, 2], [0, 1], "positive"),
     ([1, -2], [1, 1], "positive"), ([1, 2], [1, float("inf")], "positive")],
)
def test_loglog_fit_rejects(x, y, match):
    with pytest.raises(ValueError, match=match):
        bench.loglog_fit(x, y)
