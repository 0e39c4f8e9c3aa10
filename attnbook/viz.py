"""Figures shared by the chapters: attention heatmaps, grids of heads, the history timeline and
training curves.

Every function takes torch tensors (any device, any dtype, with or without grad) or NumPy
arrays, draws with matplotlib only, and returns the ``Axes`` (or ``Figure``) it drew on, so a
chapter can add to the plot or a test can read it back. Nothing here calls ``plt.show()``.

Conventions: in a ``(T, S)`` attention matrix row ``t`` is a query and column ``s`` a key, so
keys run along the x axis and queries down the y axis, and each row sums to one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "to_numpy",
    "attention_heatmap",
    "head_grid",
    "plot_timeline",
    "plot_curves",
    "theme_colors",
    "OKABE_ITO",
    "use_book_style",
]

#: The Okabe-Ito palette (Okabe & Ito, "Color Universal Design", 2002), safe for the common
#: colour-vision deficiencies, in the order of the book's colour cycle: ``"C0"`` blue,
#: ``"C1"`` orange, ``"C2"`` bluish green, ``"C3"`` vermillion, ``"C4"`` reddish purple,
#: ``"C5"`` sky blue, ``"C6"`` yellow, ``"C7"`` black. The first four keep matplotlib's own
#: order of hues (blue, orange, green, red), so ``"C3"`` against ``"C2"`` stays readable.
OKABE_ITO: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)

#: The default colour map of images: perceptually uniform and colour-blind safe.
BOOK_CMAP = "viridis"


def use_book_style() -> None:
    """Make matplotlib draw in the book's colour-blind-safe style: the :data:`OKABE_ITO` colour
    cycle (so ``"C0"`` ... ``"C7"`` and every default line, bar and marker use it) and
    :data:`BOOK_CMAP` for images. Importing :mod:`attnbook.viz` calls it; call it again after
    ``plt.rcdefaults()`` or a style sheet that resets the cycle."""
    from cycler import cycler

    mpl.rcParams["axes.prop_cycle"] = cycler(color=list(OKABE_ITO))
    mpl.rcParams["image.cmap"] = BOOK_CMAP


use_book_style()

# how many tick labels a panel shows before it thins them out
_MAX_TICK_LABELS = 40


def to_numpy(x: Any, name: str = "x") -> np.ndarray:
    """``x`` (torch tensor on any device/dtype, NumPy array or nested list) as a float64 array.

    Tensors are detached and copied to the CPU first; a ``ValueError`` names ``name`` when ``x``
    cannot be read as numbers.
    """
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}") from err


def _check_labels(name: str, labels: Sequence[Any] | None, n: int, what: str, shape: tuple) -> None:
    if labels is not None and len(labels) != n:
        raise ValueError(
            f"{name} has {len(labels)} labels but weights has {n} {what}, got shape {shape}"
        )


def _check_not_empty(name: str, w: np.ndarray, dims: Sequence[str]) -> None:
    """Every dimension of ``w`` (named by ``dims``, e.g. heads, queries, keys) must be > 0."""
    empty = [d for d, n in zip(dims, w.shape) if n == 0]
    if empty:
        raise ValueError(
            f"{name} must have at least one of each of {', '.join(dims)}, but has 0 "
            f"{' and 0 '.join(empty)}: got shape {w.shape}"
        )


def _set_ticks(ax: Axes, axis: str, n: int, labels: Sequence[Any] | None, rotate: bool) -> None:
    """Integer ticks on ``axis`` ('x' or 'y'), labelled with ``labels`` when given."""
    step = 1 if labels is not None and n <= _MAX_TICK_LABELS else max(1, int(np.ceil(n / 10)))
    ticks = np.arange(0, n, step)
    text = [str(labels[i]) for i in ticks] if labels is not None else [str(i) for i in ticks]
    if axis == "x":
        ax.set_xticks(ticks)
        if rotate:
            ax.set_xticklabels(text, rotation=45, ha="right", rotation_mode="anchor")
        else:
            ax.set_xticklabels(text)
    else:
        ax.set_yticks(ticks)
        ax.set_yticklabels(text)


def _annotate(ax: Axes, image: Any, w: np.ndarray, fmt: str) -> None:
    """Write each cell's value in it, black on light cells and white on dark ones."""
    T, S = w.shape
    fontsize = max(5.0, min(10.0, 110.0 / max(T, S)))
    for t in range(T):
        for s in range(S):
            r, g, b, _ = image.cmap(image.norm(w[t, s]))
            luminance = 0.299 * r + 0.587 * g + 0.114 * b
            ax.text(
                s, t, format(w[t, s], fmt), ha="center", va="center", fontsize=fontsize,
                color="black" if luminance > 0.5 else "white",
            )


def attention_heatmap(
    weights: Any,
    x_labels: Sequence[Any] | None = None,
    y_labels: Sequence[Any] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    cmap: str = "viridis",
    annotate: bool = False,
    colorbar: bool = True,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    fmt: str = ".2f",
    xlabel: str | None = "key",
    ylabel: str | None = "query",
    aspect: str | float = "equal",
) -> Axes:
    """Heatmap of one ``(T, S)`` attention matrix: keys along x, queries along y.

    ``weights[t, s]`` is drawn in row ``t`` (query ``y_labels[t]``) and column ``s`` (key
    ``x_labels[s]``); the x tick labels are rotated 45 degrees. ``annotate=True`` writes each
    value in its cell with ``fmt``. ``vmin``/``vmax`` fix the colour scale (e.g. 0 and 1 to
    compare several matrices). Draws on ``ax`` (a new figure when ``None``) and returns it.

    Raises ``ValueError`` when ``weights`` is not 2-D or empty, or a label list has the wrong
    length.
    """
    w = to_numpy(weights, "weights")
    if w.ndim != 2:
        raise ValueError(f"weights must be a 2-D (T, S) matrix, got shape {w.shape}")
    _check_not_empty("weights", w, ("queries", "keys"))
    T, S = w.shape
    _check_labels("x_labels", x_labels, S, "columns (keys)", w.shape)
    _check_labels("y_labels", y_labels, T, "rows (queries)", w.shape)
    if ax is None:
        width = min(12.0, 2.0 + 0.45 * S)
        height = min(10.0, 1.5 + 0.4 * T)
        _, ax = plt.subplots(figsize=(max(width, 3.5), max(height, 2.5)), layout="constrained")

    image = ax.imshow(w, cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")
    _set_ticks(ax, "x", S, x_labels, rotate=x_labels is not None)
    _set_ticks(ax, "y", T, y_labels, rotate=False)
    ax.tick_params(length=0)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if annotate:
        _annotate(ax, image, w, fmt)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    return ax


def head_grid(
    weights: Any,
    layer_labels: Sequence[Any] | None = None,
    head_labels: Sequence[Any] | None = None,
    x_labels: Sequence[Any] | None = None,
    y_labels: Sequence[Any] | None = None,
    title: str | None = None,
    *,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    panel_size: float = 2.4,
    colorbar: bool = True,
) -> Figure:
    """Grid of attention maps, one row per layer and one column per head, on one colour scale.

    ``weights`` is ``(L, H, T, S)``, or ``(H, T, S)`` for a single layer (one row). The colour
    limits are shared by every panel: ``vmin``/``vmax`` when given, else the minimum and maximum
    over all of ``weights``. Query labels are shown on the left column and key labels on the
    bottom row. Returns the new ``Figure``; its panels are ``fig.axes[:L * H]`` in row-major
    order (a colour bar, when drawn, is the last axes).

    Raises ``ValueError`` for other shapes, an empty dimension (zero heads, say) or label lists
    of the wrong length.
    """
    w = to_numpy(weights, "weights")
    if w.ndim == 3:
        w = w[None]
    if w.ndim != 4:
        raise ValueError(
            f"weights must be (L, H, T, S) or (H, T, S), got shape {to_numpy(weights).shape}"
        )
    _check_not_empty("weights", w, ("layers", "heads", "queries", "keys"))
    L, H, T, S = w.shape
    _check_labels("layer_labels", layer_labels, L, "layers", w.shape)
    _check_labels("head_labels", head_labels, H, "heads", w.shape)
    _check_labels("x_labels", x_labels, S, "keys", w.shape)
    _check_labels("y_labels", y_labels, T, "queries", w.shape)
    lo = float(np.nanmin(w)) if vmin is None else vmin
    hi = float(np.nanmax(w)) if vmax is None else vmax

    fig, axes = plt.subplots(
        L, H, figsize=(panel_size * H + 1.2, panel_size * L + 0.6),
        squeeze=False, layout="constrained",
    )
    image = None
    for layer in range(L):
        for head in range(H):
            ax = axes[layer, head]
            image = ax.imshow(w[layer, head], cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.tick_params(length=0, labelsize=8)
            if layer == L - 1:
                _set_ticks(ax, "x", S, x_labels, rotate=x_labels is not None)
            else:
                ax.set_xticks([])
            if head == 0:
                _set_ticks(ax, "y", T, y_labels, rotate=False)
                name = layer_labels[layer] if layer_labels is not None else f"layer {layer}"
                ax.set_ylabel(str(name))
            else:
                ax.set_yticks([])
            if layer == 0:
                ax.set_title(str(head_labels[head]) if head_labels is not None else f"head {head}")
    if colorbar and image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    if title:
        fig.suptitle(title)
    return fig


# colours of text on white: the Okabe-Ito palette without its yellow (too pale for text), then
# a neutral grey; more themes than that get the same hues darkened, then lightened
_THEME_BASE = tuple(c for c in OKABE_ITO if c != "#F0E442") + ("#999999",)


def _shade(color: str, amount: float) -> tuple[float, float, float, float]:
    """``color`` mixed with black (``amount < 0``) or white (``amount > 0``) by ``|amount|``."""
    rgb = np.asarray(mpl.colors.to_rgb(color))
    target = 1.0 if amount > 0 else 0.0
    r, g, b = rgb + (target - rgb) * abs(amount)
    return (float(r), float(g), float(b), 1.0)


def theme_colors(themes: Sequence[str]) -> dict[str, Any]:
    """One distinct colour per theme name, in the order given: the :data:`OKABE_ITO` colours
    that read well as text on white (all but yellow), then grey; past those eight, the same
    colours (but black) darkened, then lightened. Values are RGBA tuples."""
    hues = [c for c in _THEME_BASE if c != "#000000"]
    colors = ([_shade(c, 0.0) for c in _THEME_BASE] + [_shade(c, -0.45) for c in hues]
              + [_shade(c, 0.45) for c in hues])
    return {theme: colors[i % len(colors)] for i, theme in enumerate(themes)}


def _renderer(fig: Figure) -> Any:
    """The figure's renderer, to measure text (Agg-based canvases have ``get_renderer``)."""
    get = getattr(fig.canvas, "get_renderer", None)
    return get() if callable(get) else fig._get_renderer()


def _spread_same_year(years: Sequence[int]) -> np.ndarray:
    """x positions: entries that share a year are spread evenly within +-0.3 of it."""
    years = np.asarray(years, dtype=np.float64)
    x = years.copy()
    for year in np.unique(years):
        idx = np.flatnonzero(years == year)
        if len(idx) > 1:
            x[idx] = year + np.linspace(-0.3, 0.3, len(idx))
    return x


def plot_timeline(
    entries: Sequence[Any],
    ax: Axes | None = None,
    *,
    title: str | None = None,
    themes: Sequence[str] | None = None,
    compress_before: int | None = 2012,
    max_levels: int = 7,
    fontsize: float = 8.0,
) -> Axes:
    """Timeline of milestones: a marker per entry on a year axis, labels staggered above and
    below it so that they do not overlap, colours by theme.

    ``entries`` are objects with ``year``, ``work`` and ``theme`` attributes (e.g.
    :class:`attnbook.history.Milestone`), drawn in the order given (sort them by year first).
    Entries of the same year are spread within the year. Years before ``compress_before`` take
    a quarter of the width (the early history is sparse); ``None`` keeps the axis linear. Each
    label is put on the nearest free level (up, down, up two, ...), measured with the renderer.
    ``themes`` fixes the colour order (default: :data:`attnbook.history.THEMES`). Returns the
    ``Axes``; ``ax.collections[0]`` holds one marker per entry.
    """
    if len(entries) == 0:
        raise ValueError("entries must hold at least one milestone, got 0")
    for i, e in enumerate(entries):
        if not all(hasattr(e, a) for a in ("year", "work", "theme")):
            raise ValueError(f"entries[{i}] needs year, work and theme attributes, got {e!r}")
    if themes is None:
        from .history import THEMES

        themes = THEMES
    known = list(themes) + sorted({e.theme for e in entries} - set(themes))
    colors = theme_colors(known)

    if ax is None:
        _, ax = plt.subplots(figsize=(13, 6.5))
    fig = ax.figure
    years = [int(e.year) for e in entries]
    x = _spread_same_year(years)
    lo_year, hi_year = min(years) - 1, max(years) + 1

    if compress_before is not None and lo_year < compress_before < hi_year:
        # piecewise-linear scale: [lo, compress_before] -> a quarter of the width
        span_old = compress_before - lo_year
        span_new = hi_year - compress_before
        k = (span_new / 3.0) / span_old  # old years squeezed to 1/3 of the new ones' width

        def forward(v: np.ndarray) -> np.ndarray:
            v = np.asarray(v, dtype=np.float64)
            return np.where(v < compress_before, compress_before + (v - compress_before) * k, v)

        def inverse(v: np.ndarray) -> np.ndarray:
            v = np.asarray(v, dtype=np.float64)
            return np.where(v < compress_before, compress_before + (v - compress_before) / k, v)

        ax.set_xscale("function", functions=(forward, inverse))
        ax.axvline(compress_before, color="0.6", lw=0.8, ls=":", zorder=0)
    ax.set_xlim(lo_year, hi_year)
    ax.set_ylim(-max_levels - 0.8, max_levels + 0.8)
    ax.axhline(0, color="0.3", lw=1.2, zorder=1)

    point_colors = [colors[e.theme] for e in entries]
    ax.scatter(x, np.zeros(len(entries)), c=point_colors, s=40, zorder=3, edgecolors="white")

    renderer = _renderer(fig)
    placed: list[Any] = []  # bounding boxes (display coordinates) of the labels drawn so far
    order = [lv for k in range(1, max_levels + 1) for lv in (k, -k)]
    for xi, entry, color in zip(x, entries, point_colors):
        text = ax.text(
            xi, 0, f"{entry.work} ({entry.year})", fontsize=fontsize, color=color,
            ha="center", va="center", zorder=4,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": color, "lw": 0.6},
        )
        best, best_overlap = order[0], None
        for level in order:
            text.set_y(level)
            box = text.get_window_extent(renderer).expanded(1.04, 1.15)
            overlap = sum(box.overlaps(other) for other in placed)
            if best_overlap is None or overlap < best_overlap:
                best, best_overlap = level, overlap
            if overlap == 0:
                break
        text.set_y(best)
        placed.append(text.get_window_extent(renderer).expanded(1.04, 1.15))
        ax.plot([xi, xi], [0, best], color=color, lw=0.7, zorder=2)

    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ticks = sorted(set(years) | ({compress_before} if compress_before else set()))
    ticks = [t for t in ticks if lo_year <= t <= hi_year]
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks], rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("year")
    handles = [
        plt.Line2D([], [], marker="o", ls="", color=colors[t], label=t)
        for t in known if any(e.theme == t for e in entries)
    ]
    ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False, ncols=min(4, len(handles)))
    if title:
        ax.set_title(title)
    return ax


def plot_curves(
    histories: Mapping[str, Sequence[float]] | Sequence[float],
    xlabel: str = "step",
    ylabel: str = "loss",
    title: str | None = None,
    ax: Axes | None = None,
    logy: bool = False,
    *,
    x: Sequence[float] | None = None,
    smooth: int = 1,
) -> Axes:
    """Line plot of one or more curves (e.g. training and validation loss), one line per key.

    ``histories`` maps a legend label to a list of values (a bare list gives one unlabelled
    curve); values may be floats or 0-d tensors. ``x`` gives shared x values (default 0, 1, ...),
    ``smooth > 1`` draws a moving average over that many points beside the faint raw curve,
    ``logy`` puts y on a log scale. Returns the ``Axes``.
    """
    if not isinstance(histories, Mapping):
        histories = {"": histories}
    if len(histories) == 0:
        raise ValueError("histories must hold at least one curve, got an empty mapping")
    if not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"smooth must be a positive int, got {smooth!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    for label, values in histories.items():
        try:  # float() of a nested list or of a multi-element tensor fails: not a 1-D curve
            y = np.array([float(v) for v in values], dtype=np.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            shape = tuple(values.shape) if hasattr(values, "shape") else type(values).__name__
            raise ValueError(
                f"histories[{label!r}] must be a 1-D list of numbers, got {shape}"
            ) from err
        if len(y) == 0:
            raise ValueError(f"histories[{label!r}] must hold at least one value, got an empty curve")
        xs = np.arange(len(y)) if x is None else np.asarray(x, dtype=np.float64)
        if len(xs) != len(y):
            raise ValueError(f"x has {len(xs)} values but histories[{label!r}] has {len(y)}")
        if smooth > 1 and len(y) >= smooth:
            (line,) = ax.plot(xs, y, alpha=0.25)
            kernel = np.ones(smooth) / smooth
            ax.plot(xs[smooth - 1:], np.convolve(y, kernel, mode="valid"),
                    color=line.get_color(), label=label or None)
        else:
            ax.plot(xs, y, label=label or None)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if any(label for label in histories):
        ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return ax


# ---------------------------------------------------------------------------------------------
# Model diagrams
# ---------------------------------------------------------------------------------------------

# Okabe-Ito colours (colour-blind safe), light fills for the boxes of a diagram
_DIAGRAM_FILL = {
    "embed": "#cdeee3",   # bluish green
    "norm": "#f6f0b0",    # yellow
    "attn": "#fadcaa",    # orange
    "ffn": "#cfe8f7",     # sky blue
    "out": "#ecd3e3",     # reddish purple
    "io": "#ffffff",
}


def _box(ax: Axes, x: float, y: float, w: float, h: float, text: str, kind: str,
         fontsize: float = 9) -> Any:
    """A rounded box of ``kind`` (its fill, and the patch's gid) centred on ``(x, y)``."""
    from matplotlib.patches import FancyBboxPatch

    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                           facecolor=_DIAGRAM_FILL[kind], edgecolor="#333333", linewidth=1.0)
    patch.set_gid(kind)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
    return patch


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], gid: str | None = None,
           **kw: Any) -> Any:
    """An arrow from ``start`` to ``end`` (an annotation with an empty text, gid ``gid``)."""
    arrow = ax.annotate("", xy=end, xytext=start,
                        arrowprops={"arrowstyle": "-|>", "color": "#333333", "lw": 1.0, "shrinkA": 0,
                                    "shrinkB": 0, **kw})
    if gid is not None:
        arrow.set_gid(gid)
    return arrow


def _route(ax: Axes, points: Sequence[tuple[float, float]], gid: str | None = None) -> Any:
    """A line through ``points`` with an arrow head on its last segment (both with gid ``gid``)."""
    xs, ys = zip(*points[:-1])
    (line,) = ax.plot(xs, ys, color="#333333", lw=1.0)
    line.set_gid(gid)
    return _arrow(ax, points[-2], points[-1], gid=gid)


def _plus(ax: Axes, x: float, y: float) -> None:
    from matplotlib.patches import Circle

    ax.add_patch(Circle((x, y), 0.13, facecolor="white", edgecolor="#333333", linewidth=1.0))
    ax.text(x, y, "+", ha="center", va="center", fontsize=11)


def _check_count(name: str, value: Any) -> None:
    """``value`` must be an int >= 1 or a label (a string such as ``"N"``)."""
    if isinstance(value, bool) or not (isinstance(value, str) or (isinstance(value, int) and value >= 1)):
        raise ValueError(f"{name} must be an int >= 1 or a label, got {value!r}")


def _sublayers(ax: Axes, x: float, y: float, w: float, h: float,
               sublayers: Sequence[tuple[str, str]], norm_first: bool = True,
               side: str = "left") -> tuple[float, dict[str, float]]:
    """Residual sublayers stacked upwards from the stream at ``(x, y)``.

    Each ``(kind, text)`` is a box wrapped in a residual connection (drawn on ``side``) with its
    LayerNorm before it (``norm_first``, pre-norm) or after the sum (post-norm). Returns the
    stream's height above the last sublayer and the height of each sublayer's box by text.
    """
    centres = {}
    for kind, text in sublayers:
        stream_in = y
        if norm_first:
            y += 0.55
            _arrow(ax, (x, stream_in), (x, y - h / 2))
            _box(ax, x, y, w * 0.7, h, "LayerNorm", "norm")
            y += 0.8
            _arrow(ax, (x, y - 0.8 + h / 2), (x, y - 0.32))
        else:
            y += 0.8
            _arrow(ax, (x, stream_in), (x, y - 0.32))
        _box(ax, x, y, w, 0.62 if "\n" in text else h, text, kind)
        centres[text] = y
        y += 0.75
        _arrow(ax, (x, y - 0.75 + 0.31), (x, y - 0.13))
        _plus(ax, x, y)
        # the residual path around the sublayer
        sign = -1 if side == "left" else 1
        edge = x + sign * (w / 2 + 0.35)
        ax.plot([x, edge, edge], [stream_in + 0.1, stream_in + 0.1, y], color="#333333", lw=1.0)
        _arrow(ax, (edge, y), (x + sign * 0.13, y))
        y += 0.13
        if not norm_first:
            y += 0.5
            _arrow(ax, (x, y - 0.5), (x, y - h / 2))
            _box(ax, x, y, w * 0.7, h, "LayerNorm", "norm")
            y += h / 2
    return y, centres


def _embedded_input(ax: Axes, x: float, w: float, h: float, tokens: str, embedding: str,
                    positions: str | None, y: float = 0.0) -> float:
    """Tokens, their embedding and (when ``positions`` labels them) the added positions, drawn
    upwards from ``y``; returns the height where the stream leaves them."""
    _box(ax, x, y, w, h, tokens, "io")
    y += 0.85
    _arrow(ax, (x, y - 0.85 + h / 2), (x, y - h / 2))
    _box(ax, x, y, w, h, embedding, "embed")
    if positions is None:
        return y + h / 2
    y += 0.75
    _arrow(ax, (x, y - 0.75 + h / 2), (x, y - 0.13))
    _plus(ax, x, y)
    _box(ax, x + 2.35, y, 1.4, h, positions, "embed")
    _arrow(ax, (x + 2.35 - 0.7, y), (x + 0.13, y))
    return y + 0.13


def _repeat_frame(ax: Axes, x: float, w: float, bottom: float, top: float, count: int | str,
                  side: str = "right") -> None:
    """A dashed frame around a repeated block, with the repeat count on ``side``."""
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((x - w / 2 - 0.6, bottom - 0.05), w + 1.2, top - bottom + 0.1,
                           fill=False, linestyle="--", edgecolor="#777777", linewidth=1.0))
    tx, ha = (x + w / 2 + 0.7, "left") if side == "right" else (x - w / 2 - 0.7, "right")
    ax.text(tx, (bottom + top) / 2, f"$\\times$ {count}", fontsize=12, ha=ha, va="center")


def _finish(ax: Axes, xlim: tuple[float, float], ylim: tuple[float, float]) -> Axes:
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def decoder_only_diagram(
    *,
    num_layers: int | str = "N",
    positional: str = "learned",
    scale_embedding: bool = True,
    tied: bool = False,
    ax: Axes | None = None,
) -> Axes:
    """A decoder-only (GPT-style) Transformer drawn bottom to top: tokens, token embedding and
    positions, ``num_layers`` pre-norm blocks (LayerNorm -> masked multi-head self-attention ->
    residual add; LayerNorm -> FFN -> residual add), the final LayerNorm, the output projection
    (``E^T`` when ``tied``) and the softmax over the next token. ``scale_embedding`` marks the
    ``sqrt(d)`` factor of the token embedding.

    ``positional`` is ``"learned"``/``"sinusoidal"`` (added to the embedding), ``"rope"`` or
    ``"alibi"`` (inside attention) or ``"none"``. Returns the ``Axes`` (its boxes are patches
    with gids ``embed``, ``norm``, ``attn``, ``ffn``, ``out``, ``io``).
    """
    schemes = ("learned", "sinusoidal", "rope", "alibi", "none")
    if positional not in schemes:
        raise ValueError(f"positional must be one of {schemes}, got {positional!r}")
    _check_count("num_layers", num_layers)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 7.6), layout="constrained")
    w, h, x = 3.0, 0.46, 0.0
    y = 0.0
    scale = " $\\times\\sqrt{d}$" if scale_embedding else ""
    pos_label = {"learned": "learned $p_t$", "sinusoidal": "sinusoidal $p_t$"}.get(positional)
    below = _embedded_input(ax, x, w, h, "tokens $y_1 \\dots y_T$", f"token embedding $E[y_t]${scale}",
                            pos_label)
    # the repeated block
    top_of_stack = below + 0.35
    y = top_of_stack
    block_bottom = y
    attn_text = "masked multi-head\nself-attention"
    if positional == "rope":
        attn_text += " (RoPE)"
    elif positional == "alibi":
        attn_text += " (ALiBi)"
    y, _ = _sublayers(ax, x, y, w, h, (("attn", attn_text), ("ffn", "feed-forward (FFN)")))
    block_top = y + 0.1
    _repeat_frame(ax, x, w, block_bottom, block_top, num_layers)
    ax.plot([x, x], [below, block_bottom], color="#333333", lw=1.0)
    y = block_top + 0.55
    _arrow(ax, (x, block_top - 0.1), (x, y - h / 2))
    _box(ax, x, y, w * 0.7, h, "final LayerNorm", "norm")
    y += 0.8
    _arrow(ax, (x, y - 0.8 + h / 2), (x, y - h / 2))
    _box(ax, x, y, w, h, "linear $E^\\top$ (tied)" if tied else "linear $W_{out}$", "out")
    y += 0.8
    _arrow(ax, (x, y - 0.8 + h / 2), (x, y - h / 2))
    _box(ax, x, y, w, h, "softmax: $p(y_{t+1} \\mid y_{\\leq t})$", "io")
    return _finish(ax, (x - w / 2 - 0.9, x + w / 2 + 1.6), (-0.5, y + 0.5))


__all__ += ["decoder_only_diagram"]


def transformer_block_diagram(*, norm_first: bool = True, ax: Axes | None = None) -> Axes:
    """One Transformer (encoder) block drawn bottom to top: the residual stream ``x`` goes
    through multi-head self-attention and the feed-forward network, each wrapped in a residual
    connection, to the next block.

    ``norm_first=True`` (pre-norm) puts each LayerNorm on the sublayer's input and leaves the
    residual path untouched, ``x + F(LN(x))``; ``norm_first=False`` (post-norm, the 2017 paper)
    puts it after the sum, ``LN(x + F(x))``, so the stream itself passes through every
    LayerNorm. Returns the ``Axes`` (boxes are patches with gids ``norm``, ``attn``, ``ffn``,
    ``io``).
    """
    if not isinstance(norm_first, bool):
        raise ValueError(f"norm_first must be True (pre-norm) or False (post-norm), got {norm_first!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.6), layout="constrained")
    w, h, x = 3.0, 0.46, 0.0
    _box(ax, x, 0.0, w, h, "input $\\mathbf{x}$ (from the previous block)", "io")
    y, _ = _sublayers(ax, x, h / 2, w, h,
                      (("attn", "multi-head\nself-attention"), ("ffn", "feed-forward (FFN)")),
                      norm_first=norm_first)
    top = y + 0.55
    _arrow(ax, (x, y), (x, top - h / 2))
    _box(ax, x, top, w, h, "output (to the next block)", "io")
    name = "pre-norm" if norm_first else "post-norm"
    rule = ("$\\mathbf{x} + F(\\mathrm{LN}(\\mathbf{x}))$" if norm_first
            else "$\\mathrm{LN}(\\mathbf{x} + F(\\mathbf{x}))$")
    ax.text(x + w / 2 + 0.5, top / 2, f"{name}:\n{rule}", fontsize=11, ha="left", va="center")
    return _finish(ax, (x - w / 2 - 2.2, x + w / 2 + 3.6), (-0.4, top + 0.4))


def transformer_diagram(
    num_encoder_layers: int | str = "N",
    num_decoder_layers: int | str = "N",
    *,
    norm_first: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """The encoder-decoder Transformer: on the left the source tokens, their embedding (scaled
    by ``sqrt(d)``) plus positions and ``num_encoder_layers`` encoder blocks (self-attention,
    FFN); on the right the target tokens shifted right, the same input, and
    ``num_decoder_layers`` decoder blocks (masked self-attention, cross-attention whose keys and
    values are the encoder's output ``M``, FFN), then the output projection and softmax.

    Blocks are pre-norm (``norm_first=True``, each stack then ends in a final LayerNorm) or
    post-norm (no final LayerNorm). Returns the ``Axes``; the arrow carrying the memory has gid
    ``memory``.
    """
    _check_count("num_encoder_layers", num_encoder_layers)
    _check_count("num_decoder_layers", num_decoder_layers)
    if not isinstance(norm_first, bool):
        raise ValueError(f"norm_first must be True (pre-norm) or False (post-norm), got {norm_first!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 7.6), layout="constrained")
    w, h = 2.9, 0.46
    xe, xd = -2.3, 3.5
    stacks = {}
    for x, tokens, emb, layers, count, side in (
        (xe, "source $x_1 \\dots x_S$", "embedding $\\times\\sqrt{d}$",
         (("attn", "multi-head\nself-attention"), ("ffn", "feed-forward (FFN)")),
         num_encoder_layers, "left"),
        (xd, "target $y_0 \\dots y_{T-1}$", "embedding $\\times\\sqrt{d}$",
         (("attn", "masked multi-head\nself-attention"), ("attn", "multi-head\ncross-attention"),
          ("ffn", "feed-forward (FFN)")),
         num_decoder_layers, "right"),
    ):
        below = _embedded_input(ax, x, w, h, tokens, emb, None)
        # positions enter from the side away from the other stack
        y = below + 0.45
        _arrow(ax, (x, below), (x, y - 0.13))
        _plus(ax, x, y)
        px = x - 2.2 if side == "left" else x + 2.2
        _box(ax, px, y, 1.3, 0.62, "positions\n$p_t$", "embed")
        _arrow(ax, (px + (0.65 if side == "left" else -0.65), y), (x + (-0.13 if side == "left" else 0.13), y))
        bottom = y + 0.13 + 0.3
        ax.plot([x, x], [y + 0.13, bottom], color="#333333", lw=1.0)
        top, centres = _sublayers(ax, x, bottom, w, h, layers, norm_first=norm_first,
                                  side="left" if side == "left" else "right")
        _repeat_frame(ax, x, w, bottom, top + 0.1, count, side=side)
        y = top + 0.1
        if norm_first:
            y += 0.55
            _arrow(ax, (x, top), (x, y - h / 2))
            _box(ax, x, y, w * 0.7, h, "final LayerNorm", "norm")
            y += h / 2
        stacks[side] = (y, centres)
    # the memory: the encoder's output, keys and values of every cross-attention
    enc_top, _ = stacks["left"]
    dec_y, centres = stacks["right"]
    cross = centres["multi-head\ncross-attention"]
    mid = (xe + xd) / 2 + 0.1
    _route(ax, [(xe, enc_top), (xe, enc_top + 0.3), (mid, enc_top + 0.3), (mid, cross),
                (xd - w / 2, cross)], gid="memory")
    ax.text(mid - 0.1, enc_top + 0.45, "memory $\\mathbf{M}$", fontsize=9, ha="center", va="bottom")
    ax.text(mid + 0.08, cross + 0.08, "K, V", fontsize=8, ha="left", va="bottom")
    y = dec_y + 0.55
    _arrow(ax, (xd, dec_y), (xd, y - h / 2))
    _box(ax, xd, y, w, h, "linear $W_{out}$", "out")
    y += 0.8
    _arrow(ax, (xd, y - 0.8 + h / 2), (xd, y - h / 2))
    _box(ax, xd, y, w, h, "softmax: $p(y_t \\mid y_{<t}, x)$", "io")
    ax.text(xe, -0.75, "encoder", fontsize=11, ha="center", va="center", weight="bold")
    ax.text(xd, -0.75, "decoder (target shifted right)", fontsize=11, ha="center", va="center", weight="bold")
    return _finish(ax, (xe - w / 2 - 2.0, xd + w / 2 + 2.0), (-1.1, y + 0.45))


def multi_head_diagram(num_heads: int = 4, *, ax: Axes | None = None) -> Axes:
    """Multi-head attention drawn left to right: the inputs are projected by ``W^Q, W^K, W^V``,
    split into ``num_heads`` heads of ``D = E / H`` features, each head attends on its own,
    the heads' outputs are concatenated back to ``E`` features and mixed by ``W^O``.

    At most four heads are drawn; with more, the first two, a row of dots and the last one.
    Returns the ``Axes`` (one ``attn`` patch per head drawn).
    """
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be an int >= 1, got {num_heads!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
    shown = list(range(1, num_heads + 1)) if num_heads <= 4 else [1, 2, None, num_heads]
    rows = len(shown)
    gap = 0.95
    ys = [(rows - 1 - i) * gap for i in range(rows)]
    mid = (ys[0] + ys[-1]) / 2
    tall = max(ys[0] - ys[-1] + 0.7, 1.4)
    xs = {"in": 0.0, "proj": 2.1, "split": 4.1, "head": 6.55, "concat": 9.0, "out": 10.9, "y": 12.6}
    _box(ax, xs["in"], mid, 1.3, 0.9, "input\n$X$\n$(T, E)$", "io")
    _box(ax, xs["proj"], mid, 1.7, 1.2, "linear\n$W^Q, W^K, W^V$\n$(T, E)$ each", "embed", fontsize=8.5)
    _box(ax, xs["split"], mid, 1.2, tall, f"split\ninto\n$H = {num_heads}$\nheads", "norm")
    _box(ax, xs["concat"], mid, 1.2, tall, "concat-\nenate\n$(T, E)$", "norm")
    _box(ax, xs["out"], mid, 1.3, 1.0, "linear\n$W^O$", "out")
    _box(ax, xs["y"], mid, 1.3, 0.9, "output\n$(T, E)$", "io")
    _arrow(ax, (xs["in"] + 0.65, mid), (xs["proj"] - 0.85, mid))
    _arrow(ax, (xs["proj"] + 0.85, mid), (xs["split"] - 0.6, mid))
    _arrow(ax, (xs["concat"] + 0.6, mid), (xs["out"] - 0.65, mid))
    _arrow(ax, (xs["out"] + 0.65, mid), (xs["y"] - 0.65, mid))
    hw = 2.2
    for y, head in zip(ys, shown):
        if head is None:
            ax.text(xs["head"], y, "$\\vdots$", fontsize=14, ha="center", va="center")
            continue
        _box(ax, xs["head"], y, hw, 0.62, f"head {head}: attend\n$(T, D)$", "attn")
        _arrow(ax, (xs["split"] + 0.6, y), (xs["head"] - hw / 2, y))
        _arrow(ax, (xs["head"] + hw / 2, y), (xs["concat"] - 0.6, y))
    ax.text(xs["head"], ys[-1] - 0.65,
            "each head: softmax$(QK^\\top/\\sqrt{D})\\,V$, $D = E/H$",
            fontsize=9, ha="center", va="top")
    return _finish(ax, (xs["in"] - 0.8, xs["y"] + 0.8), (ys[-1] - 1.1, ys[0] + 0.6))


def seq2seq_attention_diagram(style: str = "bahdanau", *, ax: Axes | None = None) -> Axes:
    """One decoder step of an RNN encoder-decoder with attention, ``style`` ``"bahdanau"`` or
    ``"luong"``, showing where the query comes from.

    The encoder (a bidirectional GRU over ``x_1 .. x_S``) gives the annotations ``h_1 .. h_S``;
    the attention scores them against a decoder state, normalises the scores into weights
    ``alpha_ti`` and averages them into the context ``c_t``. Bahdanau: the query is the
    *previous* state ``s_{t-1}``, and ``c_t`` is an input of the GRU step that makes ``s_t``.
    Luong: the GRU steps first, the query is the *current* state ``h_t``, and ``c_t`` is combined
    with it after the GRU into the attentional state ``h~_t = tanh(W_c [c_t; h_t])``. Returns the
    ``Axes``; the query arrow has gid ``query`` and the context arrow gid ``context``.
    """
    if style not in ("bahdanau", "luong"):
        raise ValueError(f"style must be 'bahdanau' or 'luong', got {style!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.4), layout="constrained")
    h = 0.5
    # the encoder: tokens, one BiGRU, the annotations
    enc_x = [0.0, 1.2, 2.4, 3.6]
    enc_labels = ["1", "2", None, "S"]
    ax.text(1.8, -0.55, "encoder", fontsize=11, ha="center", va="center", weight="bold")
    _box(ax, 1.8, 1.1, 4.4, h, "bidirectional GRU", "ffn")
    ann = "\\bar{\\mathbf{h}}" if style == "luong" else "\\mathbf{h}"
    for x, i in zip(enc_x, enc_labels):
        if i is None:
            ax.text(x, 0.2, "$\\cdots$", fontsize=11, ha="center", va="center")
            ax.text(x, 2.2, "$\\cdots$", fontsize=11, ha="center", va="center")
            continue
        ax.text(x, 0.2, f"$x_{i}$", fontsize=10, ha="center", va="center")
        _arrow(ax, (x, 0.4), (x, 1.1 - h / 2))
        _arrow(ax, (x, 1.1 + h / 2), (x, 2.2 - 0.22))
        _box(ax, x, 2.2, 0.75, 0.44, f"${ann}_{i}$", "embed")
    # the attention: scores, softmax, weighted average
    att_x, att_y = 1.8, 3.5
    score = "additive score" if style == "bahdanau" else "dot / general / concat score"
    _box(ax, att_x, att_y, 4.4, 0.62, f"{score} $e_{{ti}}$,\nsoftmax over $i$: $\\alpha_{{ti}}$", "attn")
    for x, i in zip(enc_x, enc_labels):
        if i is not None:
            _arrow(ax, (x, 2.2 + 0.22), (x, att_y - 0.31))
    ctx_y = 4.9
    _box(ax, att_x, ctx_y, 2.6, h, "context $\\mathbf{c}_t = \\Sigma_i\\, \\alpha_{ti}" + ann + "_i$", "attn")
    _arrow(ax, (att_x, att_y + 0.31), (att_x, ctx_y - h / 2))
    # the decoder step
    dx = 7.9
    gw = 3.2
    ax.text(dx, -0.55, "decoder, step $t$", fontsize=11, ha="center", va="center", weight="bold")
    if style == "bahdanau":
        _box(ax, dx - 1.5, 0.2, 1.8, 0.5, "previous state\n$\\mathbf{s}_{t-1}$", "io")
        _box(ax, dx + 1.5, 0.2, 1.5, 0.44, "$E\\,y_{t-1}$", "embed")
        # the query: s_{t-1}, before the step
        _route(ax, [(dx - 1.5, 0.2 + 0.25), (dx - 1.5, 2.2), (4.6, 2.2), (4.6, att_y),
                    (att_x + 2.2, att_y)], gid="query")
        ax.text(4.8, 2.3, "query $\\mathbf{s}_{t-1}$", fontsize=9, ha="left", va="bottom")
        gru_y = 3.5
        _box(ax, dx, gru_y, gw, 0.62, "GRU step: $\\mathbf{s}_t$ from\n$[E y_{t-1}; \\mathbf{c}_t]$ and $\\mathbf{s}_{t-1}$",
             "ffn", fontsize=8.5)
        _route(ax, [(dx - 1.5, 1.6), (dx - 0.6, 1.6), (dx - 0.6, gru_y - 0.31)])
        _route(ax, [(dx + 1.5, 0.2 + 0.22), (dx + 1.5, 1.6), (dx + 0.6, 1.6), (dx + 0.6, gru_y - 0.31)])
        _route(ax, [(att_x + 1.3, ctx_y), (dx - 0.9, ctx_y), (dx - 0.9, gru_y + 0.31)], gid="context")
        out_y = 6.2
        _box(ax, dx, out_y, gw, 0.62, "read-out: softmax of\n$W_{out}\\tanh(W_o[\\mathbf{s}_t; \\mathbf{c}_t; E y_{t-1}])$",
             "out", fontsize=8.5)
        _arrow(ax, (dx + 0.4, gru_y + 0.31), (dx + 0.4, out_y - 0.31))
        ax.text(dx + 0.5, (gru_y + out_y) / 2 + 0.2, "$\\mathbf{s}_t$", fontsize=10, ha="left", va="center")
        _route(ax, [(att_x, ctx_y + h / 2), (att_x, out_y), (dx - gw / 2, out_y)])
    else:
        _box(ax, dx - 1.5, 0.2, 1.5, 0.44, "$E\\,y_{t-1}$", "embed")
        _box(ax, dx + 1.5, 0.2, 1.8, 0.5, "previous state\n$\\mathbf{h}_{t-1}$", "io")
        gru_y = 1.5
        _box(ax, dx, gru_y, gw, 0.5, "GRU step: $\\mathbf{h}_t$", "ffn")
        _arrow(ax, (dx - 1.5, 0.2 + 0.22), (dx - 1.0, gru_y - 0.25))
        _arrow(ax, (dx + 1.5, 0.2 + 0.25), (dx + 1.0, gru_y - 0.25))
        # the query: h_t, after the step
        _route(ax, [(dx - 0.4, gru_y + 0.25), (dx - 0.4, 2.5), (4.6, 2.5), (4.6, att_y),
                    (att_x + 2.2, att_y)], gid="query")
        ax.text(5.0, 2.6, "query $\\mathbf{h}_t$", fontsize=9, ha="left", va="bottom")
        comb_y = 4.9
        _box(ax, dx, comb_y, gw, 0.62, "attentional state\n$\\tilde{\\mathbf{h}}_t = \\tanh(W_c[\\mathbf{c}_t; \\mathbf{h}_t])$",
             "ffn", fontsize=8.5)
        _arrow(ax, (dx + 0.6, gru_y + 0.25), (dx + 0.6, comb_y - 0.31))
        _arrow(ax, (att_x + 1.3, ctx_y), (dx - gw / 2, ctx_y), gid="context")
        out_y = 6.2
        _box(ax, dx, out_y, gw, h, "softmax$(W_s \\tilde{\\mathbf{h}}_t)$", "out")
        _arrow(ax, (dx, comb_y + 0.31), (dx, out_y - h / 2))
    ax.text(dx, out_y + 0.55, "$p(y_t \\mid y_{<t}, x)$", fontsize=10, ha="center", va="center")
    _arrow(ax, (dx, out_y + 0.31 if style == "bahdanau" else out_y + h / 2), (dx, out_y + 0.42))
    return _finish(ax, (-0.7, dx + 2.9), (-0.9, out_y + 0.8))


__all__ += ["transformer_block_diagram", "transformer_diagram", "multi_head_diagram",
            "seq2seq_attention_diagram"]
