"""Time and peak memory of a callable, a result record, and a table formatter.

Used by the chapters and by ``benchmarks/``. Two measurements, taken in separate runs so that
neither disturbs the other:

* **time** — :func:`measure_time` calls ``fn`` ``warmup`` times (discarded: lazy initialisation,
  allocator caches, autotuning), then ``repeats`` times with :func:`time.perf_counter` around
  each call. On CUDA (and MPS) the device is synchronised before starting and before stopping
  the clock, so the time covers the queued kernels, not just their launch. When ``device=`` is
  omitted it is the device of the tensors ``fn`` works on (those it closes over: tensors,
  modules' parameters, through closures, ``functools.partial`` and bound methods; else those
  its warm-up call returned), so a CUDA workload is never timed by its launches alone. Report the median:
  it ignores the occasional call disturbed by another process.
* **peak memory** — :func:`measure_peak_memory` is the largest number of bytes that ``fn``'s
  tensors hold *at one time* during the call, above what was allocated when the call started
  (tensors created before the call, such as the inputs, do not count; a tensor that ``fn``
  returns does).

  - On CUDA it is ``torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()`` around
    the call, after ``torch.cuda.reset_peak_memory_stats()``: the caching allocator's own count
    of live tensor bytes (rounded up to its 512-byte blocks), not the memory it reserves.
  - On the CPU (and any other device) PyTorch keeps no such counter, and neither
    ``tracemalloc`` nor the process RSS sees it reliably (torch allocates outside Python's
    allocator; the RSS counts touched pages and glibc's free lists, not live tensors). So the
    call runs once under :class:`torch.profiler.profile` with ``profile_memory=True``, which
    records one event per tensor allocation (+bytes) and deallocation (-bytes) on the device;
    summing those events in time order gives the live bytes after each event, and the peak is
    their maximum. This counts the bytes PyTorch's allocator handed out for tensors (including
    autograd's saved tensors and temporaries freed inside an op) and nothing else: not Python
    objects, not the memory of libraries that allocate on their own.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import os
import statistics
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ._validate import require

__all__ = [
    "Result",
    "measure_time",
    "measure_peak_memory",
    "benchmark",
    "compare",
    "format_table",
    "format_seconds",
    "format_bytes",
]

@dataclass(frozen=True)
class Result:
    """One measurement: ``name`` of what ran, per-call ``times`` in seconds (warm-up excluded),
    ``peak_bytes`` (``None`` when not measured), the ``device`` it ran on and free-form
    ``params`` (e.g. ``{"n": 1024, "pass": "fwd+bwd"}``) that label it in a table."""

    name: str
    times: tuple[float, ...]
    peak_bytes: int | None = None
    device: str = "cpu"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        """Median time per call in seconds (``nan`` when no time was measured)."""
        return statistics.median(self.times) if self.times else float("nan")

    @property
    def spread(self) -> float:
        """Half the interquartile range of the times, in seconds (0 with fewer than 2 times)."""
        if len(self.times) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.times, n=4, method="inclusive")
        return (q3 - q1) / 2


def _tensor_devices(obj: Any, depth: int = 3, seen: set[int] | None = None) -> Iterator[torch.device]:
    """Devices of the tensors that ``obj`` holds or closes over: tensors, modules (parameters
    and buffers), tuples/lists/dicts of them, and, for callables, their closure cells, default
    arguments, ``functools.partial`` arguments and bound ``self`` (``depth`` levels deep)."""
    seen = set() if seen is None else seen
    if depth < 0 or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj.device
    elif isinstance(obj, torch.nn.Module):
        for t in itertools.chain(obj.parameters(), obj.buffers()):
            yield t.device
            return
    elif isinstance(obj, (tuple, list)):
        for item in obj[:64]:
            yield from _tensor_devices(item, depth - 1, seen)
    elif isinstance(obj, Mapping):
        for item in list(obj.values())[:64]:
            yield from _tensor_devices(item, depth - 1, seen)
    elif isinstance(obj, functools.partial):
        for item in (obj.func, obj.args, obj.keywords):
            yield from _tensor_devices(item, depth - 1, seen)
    elif inspect.ismethod(obj):
        yield from _tensor_devices(obj.__self__, depth - 1, seen)
        yield from _tensor_devices(obj.__func__, depth - 1, seen)
    elif inspect.isfunction(obj):
        cells = [c.cell_contents for c in obj.__closure__ or () if _cell_is_set(c)]
        for item in (*cells, obj.__defaults__ or (), obj.__kwdefaults__ or {}):
            yield from _tensor_devices(item, depth - 1, seen)
    elif not isinstance(obj, (type, types.ModuleType)) and hasattr(obj, "__dict__"):
        # an object (a callable step-function class, say): the tensors among its attributes
        yield from _tensor_devices(dict(list(vars(obj).items())[:64]), depth - 1, seen)


def _cell_is_set(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises ValueError
    except ValueError:
        return False
    return True


def _pick_device(devices: Iterable[torch.device]) -> torch.device | None:
    """The first accelerator among ``devices``, else the CPU if any, else ``None``."""
    found = None
    for dev in devices:
        if dev.type != "cpu":
            return dev
        found = dev
    return found


def _resolve_device(
    device: torch.device | str | None, fn: Callable[[], Any], result: Any = None
) -> torch.device:
    """``device`` when given; else the device of the tensors ``fn`` works on (what it closes
    over, else what it returned), else CUDA's current device when CUDA is initialised, else
    the CPU."""
    if device is not None:
        return torch.device(device)
    found = _pick_device(_tensor_devices(fn))
    if found is None or found.type == "cpu":
        returned = _pick_device(_tensor_devices(result, depth=2))
        found = returned if returned is not None and returned.type != "cpu" else found
    if found is not None:
        return found
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _check_fn(fn: Any) -> None:
    require(callable(fn), f"fn must be callable, got {type(fn).__name__}")


def _check_count(name: str, value: Any, minimum: int) -> None:
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        f"{name} must be an int >= {minimum}, got {value!r}",
    )


def measure_time(
    fn: Callable[[], Any],
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str | None = None,
) -> list[float]:
    """Seconds per call of ``fn()``: ``warmup`` discarded calls, then ``repeats`` timed ones.

    The clock is read with :func:`time.perf_counter`; on CUDA/MPS ``device`` is synchronised
    before each start and stop. Without ``device`` the device of the tensors ``fn`` closes over
    (or returns from its warm-up call) is used, so a CUDA workload is synchronised and timed,
    not just launched. Returns the ``repeats`` times (take the median).
    """
    _check_fn(fn)
    _check_count("repeats", repeats, 1)
    _check_count("warmup", warmup, 0)
    result = None
    for _ in range(warmup):
        result = fn()
    dev = _resolve_device(device, fn, result)
    del result
    times = []
    for _ in range(repeats):
        _synchronize(dev)
        start = time.perf_counter()
        fn()
        _synchronize(dev)
        times.append(time.perf_counter() - start)
    return times


def _peak_from_events(events: Iterable[tuple[int, int]]) -> int:
    """Peak of the running sum of ``(timestamp, bytes)`` allocation events (frees negative)."""
    live = peak = 0
    for _, nbytes in sorted(events, key=lambda e: e[0]):  # sorted() is stable for ties
        live += nbytes
        peak = max(peak, live)
    return peak


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a moment: some builds of kineto (the profiler's
    backend) log a line to stderr at every profiler start and stop, whatever its log level."""
    fd = 2  # the C++ side writes to the process's fd 2, whatever sys.stderr is
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _profiler_peak(fn: Callable[[], Any], dev: torch.device) -> int:
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr(), warnings.catch_warnings():
        # some torch versions warn that a profiler started by hand drops earlier cycles' events
        warnings.filterwarnings("ignore", message=".*clears events", category=UserWarning)
        prof.start()
    try:
        result = fn()
        del result  # a returned tensor counts at its peak; freeing it here changes nothing
    finally:
        with _quiet_stderr():
            prof.stop()
    kineto = getattr(prof.profiler, "kineto_results", None)
    require(kineto is not None, "this torch build's profiler records no memory events")
    events = [
        (e.start_ns(), e.nbytes())
        for e in kineto.events()
        if e.name() == "[memory]" and e.device_type().name.lower() == dev.type
    ]
    return _peak_from_events(events)


def measure_peak_memory(
    fn: Callable[[], Any], *, device: torch.device | str | None = None, warmup: int = 1
) -> int:
    """Peak bytes held by tensors that ``fn()`` allocates on ``device``, above the start level.

    ``warmup`` calls run first (so one-off caches do not count). CUDA: the caching allocator's
    counters; CPU and others: the profiler's allocation events (see the module docstring).
    Without ``device``, the device of the tensors ``fn`` works on (as in :func:`measure_time`).
    """
    _check_fn(fn)
    _check_count("warmup", warmup, 0)
    result = None
    for _ in range(warmup):
        result = fn()
    dev = _resolve_device(device, fn, result)
    del result
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        start = torch.cuda.memory_allocated(dev)
        result = fn()
        torch.cuda.synchronize(dev)
        del result
        return torch.cuda.max_memory_allocated(dev) - start
    return _profiler_peak(fn, dev)


def benchmark(
    fn: Callable[[], Any],
    name: str,
    *,
    repeats: int = 5,
    warmup: int = 1,
    memory: bool = True,
    device: torch.device | str | None = None,
    **params: Any,
) -> Result:
    """Time ``fn`` (median of ``repeats`` after ``warmup``) and, if ``memory``, its peak bytes
    in a separate call; ``params`` label the :class:`Result` (``n=1024``, ``pass="fwd"`` ...).
    ``device`` defaults to the device of the tensors ``fn`` works on (see :func:`measure_time`)
    and is recorded in the result."""
    require(isinstance(name, str) and name != "", f"name must be a non-empty str, got {name!r}")
    _check_fn(fn)
    _check_count("warmup", warmup, 0)
    result = None
    for _ in range(warmup):
        result = fn()
    dev = _resolve_device(device, fn, result)
    del result
    times = measure_time(fn, repeats=repeats, warmup=0, device=dev)
    peak = measure_peak_memory(fn, device=dev, warmup=0) if memory else None
    return Result(name, tuple(times), peak, str(dev), dict(params))


def compare(
    fns: Mapping[str, Callable[[], Any]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    memory: bool = True,
    device: torch.device | str | None = None,
    **params: Any,
) -> list[Result]:
    """:func:`benchmark` for several callables side by side, one :class:`Result` each.

    The timed calls are interleaved round-robin (``a, b, c, a, b, c, ...``) so that a change in
    the machine's load (another process, thermal throttling) hits every candidate alike and
    their ratios stay meaningful. Peak memory is measured afterwards, one call each. Each
    callable's device defaults to that of the tensors it works on (see :func:`measure_time`).
    """
    require(len(fns) > 0, "fns must name at least one callable")
    for name, fn in fns.items():
        require(isinstance(name, str) and name != "", f"names must be non-empty str, got {name!r}")
        require(callable(fn), f"fns[{name!r}] must be callable, got {type(fn).__name__}")
    _check_count("repeats", repeats, 1)
    _check_count("warmup", warmup, 0)
    results: dict[str, Any] = {name: None for name in fns}
    for _ in range(warmup):
        for name, fn in fns.items():
            results[name] = fn()
    devs = {name: _resolve_device(device, fn, results[name]) for name, fn in fns.items()}
    results.clear()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].extend(measure_time(fn, repeats=1, warmup=0, device=devs[name]))
    return [
        Result(
            name,
            tuple(times[name]),
            measure_peak_memory(fn, device=devs[name], warmup=0) if memory else None,
            str(devs[name]),
            dict(params),
        )
        for name, fn in fns.items()
    ]


def format_seconds(seconds: float) -> str:
    """``0.00123`` -> ``'1.23 ms'`` (s, ms or µs, three significant digits)."""
    if seconds != seconds:  # nan
        return "–"
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= factor or unit == "µs":
            return f"{seconds / factor:.3g} {unit}"
    raise AssertionError("unreachable")


def format_bytes(nbytes: int | None) -> str:
    """``3 * 2**20`` -> ``'3.0 MiB'`` (B, KiB, MiB or GiB); ``None`` -> ``'–'``."""
    if nbytes is None:
        return "–"
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(nbytes) >= factor:
            return f"{nbytes / factor:.1f} {unit}"
    return f"{nbytes} B"


def format_table(
    results: Sequence[Result],
    params: Sequence[str] | None = None,
    *,
    baseline: Callable[[Result], Result | None] | None = None,
) -> str:
    """A Markdown table, one row per result: the ``params`` columns (default: every key that
    appears, in order of first appearance), ``name``, the median time, the spread and the peak
    memory. With ``baseline`` (a function mapping a row to the row it is compared with, or
    ``None``) two more columns give time and memory as multiples of that row."""
    require(len(results) > 0, "results must not be empty")
    require(
        all(isinstance(r, Result) for r in results),
        f"results must all be Result, got {sorted({type(r).__name__ for r in results})}",
    )
    if params is None:
        params = list(dict.fromkeys(k for r in results for k in r.params))
    header = [*params, "name", "time (median)", "± (IQR/2)", "peak memory"]
    if baseline is not None:
        header += ["time ×", "memory ×"]
    rows = []
    for r in results:
        row = [str(r.params.get(p, "")) for p in params]
        spread = format_seconds(r.spread) if r.times else "–"
        row += [r.name, format_seconds(r.median), spread, format_bytes(r.peak_bytes)]
        if baseline is not None:
            b = baseline(r)
            t_ratio = f"{r.median / b.median:.2f}" if b is not None and r.times and b.times else ""
            m_ratio = (
                f"{r.peak_bytes / b.peak_bytes:.3g}"
                if b is not None and r.peak_bytes is not None and b.peak_bytes
                else ""
            )
            row += [t_ratio, m_ratio]
        rows.append(row)
    widths = [max(len(h), *(len(row[c]) for row in rows)) for c, h in enumerate(header)]
    numeric = {"time (median)", "± (IQR/2)", "peak memory", "time ×", "memory ×"}

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if h in numeric else c.ljust(w) for c, w, h in zip(cells, widths, header)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if h in numeric else "-" * (w + 2) for w, h in zip(widths, header)
    ) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


# --------------------------------------------------------------------------------------------
# Scaling sweeps and device ceilings (used by the chapter "What attention costs")
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` and restore the old count after it
    (``None`` leaves it alone). On a shared CPU one thread gives steadier timings: a parallel
    kernel waits for its slowest thread, and another program can stall any of them."""
    if n is None:
        yield
        return
    _check_count("n", n, 1)
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


CLOCKS = ("wall", "thread")


def _nothing() -> None:
    """A callable that touches no tensor: :func:`_resolve_device` then picks the default."""


def _check_clock(clock: str, dev: torch.device) -> None:
    require(clock in CLOCKS, f"clock must be one of {CLOCKS}, got {clock!r}")
    require(
        clock == "wall" or dev.type == "cpu",
        f"clock='thread' measures CPU work and is only valid on the CPU, got device {dev}",
    )


def _thread_seconds(fn: Callable[[], Any]) -> float:
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def _timed(
    fn: Callable[[], Any], repeats: int, warmup: int, dev: torch.device, clock: str
) -> list[float]:
    """Seconds per call by ``clock``: ``"wall"`` is :func:`measure_time` (synchronising CUDA and
    MPS); ``"thread"`` is the CPU time of the calling thread, :func:`time.thread_time`."""
    if clock == "wall":
        return measure_time(fn, repeats=repeats, warmup=warmup, device=dev)
    for _ in range(warmup):
        fn()
    return [_thread_seconds(fn) for _ in range(repeats)]


def matmul_ceiling(
    *,
    n: int = 1024,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    repeats: int = 5,
    warmup: int = 2,
    clock: str = "wall",
) -> float:
    """The device's matrix-multiply rate in FLOP/s: ``2 n³`` over the fastest of ``repeats``
    timed ``(n, n) @ (n, n)`` products. The fastest call is the least disturbed one (other
    programs can only add time), so this estimates what the device can do, not its average.
    ``clock`` as in :func:`sweep`."""
    _check_count("n", n, 1)
    _check_count("repeats", repeats, 1)
    _check_count("warmup", warmup, 0)
    dev = _resolve_device(device, _nothing)
    _check_clock(clock, dev)
    a = torch.randn(n, n, device=dev).to(dtype)  # (n, n)
    b = torch.randn(n, n, device=dev).to(dtype)  # (n, n)
    return 2 * n**3 / min(_timed(lambda: a @ b, repeats, warmup, dev, clock))


def memory_bandwidth(
    *,
    nbytes: int = 2**28,
    device: torch.device | str | None = None,
    repeats: int = 5,
    warmup: int = 2,
    clock: str = "wall",
) -> float:
    """Main-memory bandwidth in bytes/s: a copy of ``nbytes`` bytes reads and writes them, so
    ``2 nbytes`` over the fastest of ``repeats`` copies. Take ``nbytes`` well above the caches
    (the default 256 MiB is) or this measures the cache instead. ``clock`` as in :func:`sweep`."""
    _check_count("nbytes", nbytes, 4)
    _check_count("repeats", repeats, 1)
    _check_count("warmup", warmup, 0)
    dev = _resolve_device(device, _nothing)
    _check_clock(clock, dev)
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=dev)  # (nbytes / 4,)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / min(_timed(lambda: dst.copy_(src), repeats, warmup, dev, clock))


def sweep(
    makers: Mapping[str, Callable[[int], Callable[[], Any]]],
    sizes: Sequence[int],
    *,
    repeats: int = 3,
    warmup: int = 1,
    timing: bool = True,
    memory: bool = True,
    device: torch.device | str | None = None,
    param: str = "n",
    clock: str = "wall",
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> list[Result]:
    """Measure several implementations over a range of sizes.

    For each size ``n`` and each ``name``, ``makers[name](n)`` builds the callable to measure
    (its inputs made outside the timed call). All of them are built first; then ``warmup``
    rounds and ``repeats`` timed rounds each call every (size, name) pair once, round-robin, so
    that a drift in the machine's load hits every size and every candidate alike and the ratios
    between sizes (the slope of a log-log plot) stay meaningful. Finally the peak memory of one
    call of each is measured (:func:`measure_peak_memory`).

    ``clock="wall"`` times with :func:`measure_time` (synchronising CUDA/MPS). ``clock="thread"``
    measures the CPU time of the calling thread (:func:`time.thread_time`): on a CPU with
    ``torch.set_num_threads(1)`` all the work runs in that thread, and the time another program
    held the core is not counted. It is refused for other devices, whose work runs elsewhere.

    Returns one :class:`Result` per (size, name), sizes in order, labelled ``{param: n}``;
    ``timing=False`` leaves ``times`` empty, ``memory=False`` leaves ``peak_bytes`` ``None``.
    ``progress`` wraps the rounds (e.g. ``tqdm.auto.tqdm``).
    """
    require(len(makers) > 0, "makers must name at least one callable factory")
    for name, make in makers.items():
        require(callable(make), f"makers[{name!r}] must be callable, got {type(make).__name__}")
    require(
        len(sizes) > 0 and all(isinstance(n, int) and n > 0 for n in sizes),
        f"sizes must be positive ints, got {list(sizes)!r}",
    )
    require(timing or memory, "at least one of timing and memory must be measured")
    _check_count("repeats", repeats, 1)
    _check_count("warmup", warmup, 0)
    fns = {(n, name): make(n) for n in sizes for name, make in makers.items()}
    dev = _resolve_device(device, next(iter(fns.values())))  # (the inputs' device by default)
    _check_clock(clock, dev)
    times: dict[tuple[int, str], list[float]] = {key: [] for key in fns}
    rounds = list(range(warmup + (repeats if timing else 0) + (1 if memory else 0)))
    peaks: dict[tuple[int, str], int | None] = dict.fromkeys(fns)
    for r in progress(rounds) if progress is not None else rounds:
        if r < warmup:
            for fn in fns.values():
                fn()
        elif timing and r < warmup + repeats:
            for key, fn in fns.items():
                times[key] += _timed(fn, 1, 0, dev, clock)
        else:
            for key, fn in fns.items():
                peaks[key] = measure_peak_memory(fn, device=dev, warmup=0)
    return [
        Result(name, tuple(times[(n, name)]), peaks[(n, name)], str(dev), {param: n})
        for n, name in fns
    ]


def loglog_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares line through ``(log x, log y)``: returns ``(slope, intercept)``, so that
    ``y ≈ e^intercept · x^slope``. The slope is the exponent of a power law: 1 for linear
    growth, 2 for quadratic."""
    import math  # here rather than at the top: this section is appended to the module

    xs, ys = [float(v) for v in x], [float(v) for v in y]
    require(len(xs) == len(ys), f"x and y must have the same length, got {len(xs)} and {len(ys)}")
    require(len(set(xs)) >= 2, f"x must hold at least two distinct values, got {xs}")
    require(
        all(v > 0 and math.isfinite(v) for v in xs + ys),
        f"x and y must be positive and finite for a log-log fit, got x={xs}, y={ys}",
    )
    lx, ly = [math.log(v) for v in xs], [math.log(v) for v in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    slope = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
    return slope, my - slope * mx


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """The slope of :func:`loglog_fit`: the fitted exponent ``p`` in ``y ∝ x^p``."""
    return loglog_fit(x, y)[0]


__all__ += ["cpu_threads", "matmul_ceiling", "memory_bandwidth", "sweep", "loglog_fit",
            "loglog_slope"]
