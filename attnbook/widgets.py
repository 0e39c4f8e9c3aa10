"""Interactive explorers for the chapters, built on :mod:`attnbook.viz` and ipywidgets.

The one rule these helpers exist for: **the initial plot must appear in the static HTML book.**
Jupyter Book executes each notebook once with nbclient and stores the widgets' state; the
HTML page then shows each ``Output`` widget's stored outputs (there is no kernel behind the
page, so moving a slider there does nothing, but the first picture is there). :func:`explore`
therefore draws the first picture while the cell runs, renders every figure to a PNG itself
and puts it straight into the ``Output`` widget's ``outputs``. This does not depend on the
matplotlib backend, works in Jupyter, Colab and VS Code, and needs no ``plt.show()`` (a
``plt.show()`` inside the plotting function is harmless: it is ignored while drawing).

Typical chapter cell::

    from attnbook.widgets import explore

    def draw(temperature=1.0):
        w = torch.softmax(scores / temperature, dim=-1)
        attention_heatmap(w, x_labels=src, y_labels=tgt, vmin=0, vmax=1)

    explore(draw, temperature=(0.1, 5.0, 0.1))   # last expression of the cell: displays it

Controls follow ``ipywidgets.interact``'s abbreviations: ``(min, max, step)`` -> slider
(int or float by the numbers' types), a list or dict -> dropdown, a bool -> checkbox, a str ->
text box, a widget -> itself, ``ipywidgets.fixed(v)`` -> a constant.
"""

from __future__ import annotations

import base64
import contextlib
import html
import inspect
import io
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import viz

__all__ = ["Explorer", "explore", "heatmap_explorer", "head_explorer", "figure_output"]


def figure_output(fig: Figure, dpi: int = 100, alt: str | None = None) -> dict[str, Any]:
    """A Jupyter ``display_data`` output (PNG + text) holding a picture of ``fig``.

    With ``alt``, the output also carries the picture as ``text/html``, an ``<img>`` with that
    alt text: front ends and the book's widget manager prefer HTML to PNG, so the picture a
    screen reader meets in an explorer is described (a PNG output has no place for alt text)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    png = base64.b64encode(buf.getvalue()).decode("ascii")
    w, h = fig.get_size_inches()
    data = {"image/png": png, "text/plain": f"<Figure size {w * dpi:.0f}x{h * dpi:.0f}>"}
    if alt is not None:
        if not isinstance(alt, str) or not alt.strip():
            raise ValueError(f"alt must be a non-empty string, got {alt!r}")
        data["text/html"] = (f'<img alt="{html.escape(" ".join(alt.split()), quote=True)}" '
                             f'src="data:image/png;base64,{png}"/>')
    return {"output_type": "display_data", "data": data, "metadata": {}}


def _rich_output(obj: Any) -> dict[str, Any] | None:
    """A ``display_data`` output for an object with a rich repr (Markdown, HTML, Latex)."""
    data: dict[str, Any] = {}
    for mime, method in (("text/markdown", "_repr_markdown_"), ("text/html", "_repr_html_"),
                         ("text/latex", "_repr_latex_")):
        fn = getattr(obj, method, None)
        if callable(fn):
            value = fn()
            if value is not None:
                data[mime] = value[0] if isinstance(value, tuple) else value
    if not data:
        return None
    data["text/plain"] = repr(obj)
    return {"output_type": "display_data", "data": data, "metadata": {}}


@contextlib.contextmanager
def _show_ignored() -> Iterator[None]:
    """Make ``plt.show()`` a no-op while a plotting function runs (we render figures ourselves)."""
    original = plt.show
    plt.show = lambda *args, **kwargs: None
    try:
        yield
    finally:
        plt.show = original


def _defaults(plot_fn: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults of ``plot_fn``: a slider starts there rather than mid-range."""
    try:
        params = inspect.signature(plot_fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _make_control(name: str, abbrev: Any, default: Any = inspect.Parameter.empty) -> widgets.Widget:
    if isinstance(abbrev, widgets.Widget):
        control = abbrev
    else:
        control = widgets.interactive.widget_from_abbrev(abbrev, default)
        if control is None:
            raise ValueError(f"control {name}={abbrev!r} is not a widget or an interact abbreviation")
    if isinstance(control, widgets.DOMWidget) and hasattr(control, "description"):
        if not control.description:
            control.description = name
        control.style.description_width = "initial"
    if hasattr(control, "continuous_update"):
        control.continuous_update = False  # redraw when the slider is released
    return control


class Explorer(widgets.VBox):
    """Controls above an ``Output`` that shows ``plot_fn(**values)``; see :func:`explore`.

    Attributes: ``controls`` (name -> widget), ``out`` (the ``Output``), ``result`` (what
    ``plot_fn`` returned last), ``draws`` (how many times it was drawn). ``redraw()`` draws
    again with the controls' current values.
    """

    def __init__(
        self,
        plot_fn: Callable[..., Any],
        controls: Mapping[str, Any],
        *,
        figsize: tuple[float, float] | None = None,
        dpi: int = 100,
        horizontal: bool = False,
        alt: str | None = None,
    ) -> None:
        if not callable(plot_fn):
            raise ValueError(f"plot_fn must be callable, got {type(plot_fn).__name__}")
        if alt is not None and (not isinstance(alt, str) or not alt.strip()):
            raise ValueError(f"alt must be a non-empty string, got {alt!r}")
        self.plot_fn = plot_fn
        self.alt = alt
        self.figsize = figsize
        self.dpi = dpi
        self.fixed: dict[str, Any] = {}
        self.controls: dict[str, widgets.Widget] = {}
        defaults = _defaults(plot_fn)
        for name, abbrev in controls.items():
            if isinstance(abbrev, widgets.fixed):
                self.fixed[name] = abbrev.value
            else:
                default = defaults.get(name, inspect.Parameter.empty)
                self.controls[name] = _make_control(name, abbrev, default)
        self.out = widgets.Output()
        self.result: Any = None
        self.draws = 0
        box = widgets.HBox if horizontal else widgets.VBox
        super().__init__([box(list(self.controls.values())), self.out])
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.redraw(raise_errors=True)  # the initial state, stored in the notebook

    @property
    def kwargs(self) -> dict[str, Any]:
        """The arguments ``plot_fn`` gets now: the controls' values and the fixed ones."""
        return {**self.fixed, **{name: c.value for name, c in self.controls.items()}}

    def _on_change(self, change: dict[str, Any]) -> None:
        self.redraw(raise_errors=False)

    def redraw(self, raise_errors: bool = False) -> None:
        """Call ``plot_fn`` with the current values and replace the ``Output``'s contents with
        its printed text, its rich return value (e.g. ``IPython.display.Markdown``) and a PNG of
        every figure it drew. Errors propagate when ``raise_errors`` (at construction, so a
        notebook run fails loudly), else their traceback is shown in the output."""
        before = set(plt.get_fignums())
        fig = plt.figure(figsize=self.figsize) if self.figsize else plt.figure()
        outputs: list[dict[str, Any]] = []
        stdout = io.StringIO()
        try:
            with _show_ignored(), contextlib.redirect_stdout(stdout):
                self.result = self.plot_fn(**self.kwargs)
        except Exception:
            if raise_errors:
                self._close_new(before)
                raise
            outputs.append({"output_type": "stream", "name": "stderr", "text": traceback.format_exc()})
        if stdout.getvalue():
            outputs.insert(0, {"output_type": "stream", "name": "stdout", "text": stdout.getvalue()})
        rich = _rich_output(self.result) if self.result is not None else None
        if rich is not None:
            outputs.append(rich)
        for num in plt.get_fignums():
            if num in before:
                continue
            figure = plt.figure(num)
            if figure is fig and not fig.axes:
                continue  # the blank figure we opened, unused
            outputs.append(figure_output(figure, self.dpi, alt=self.alt))
        self._close_new(before)
        self.out.outputs = tuple(outputs)
        self.draws += 1

    @staticmethod
    def _close_new(before: set[int]) -> None:
        for num in plt.get_fignums():
            if num not in before:
                plt.close(num)


def explore(
    plot_fn: Callable[..., Any],
    *,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
    horizontal: bool = False,
    alt: str | None = None,
    **controls: Any,
) -> Explorer:
    """An interactive plot whose first state is drawn now (so it is saved in the notebook and
    shown by the static HTML book): one control per keyword, redrawn when a control changes.

    ``plot_fn(**values)`` draws with matplotlib (on the current figure, which is fresh and of
    size ``figsize``, or on figures it makes itself) and may print text or return an
    ``IPython.display.Markdown``/``HTML`` object to show under the controls. Controls use
    ``ipywidgets.interact``'s abbreviations or are widgets (see the module docstring);
    sliders redraw on release. Make ``explore(...)`` the last expression of the cell (or
    ``display`` it). ``alt`` describes the pictures for screen readers (see
    :func:`figure_output`; the static book shows the first one). Returns the
    :class:`Explorer` widget.
    """
    return Explorer(plot_fn, controls, figsize=figsize, dpi=dpi, horizontal=horizontal, alt=alt)


def _unpack(result: Any) -> dict[str, Any]:
    if isinstance(result, Mapping):
        if "weights" not in result:
            raise ValueError(f"compute_fn returned a mapping without 'weights': keys {list(result)}")
        return dict(result)
    return {"weights": result}


def heatmap_explorer(
    compute_fn: Callable[..., Any],
    x_labels: Sequence[Any] | None = None,
    y_labels: Sequence[Any] | None = None,
    *,
    title: str | None = None,
    annotate: bool = False,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cmap: str = "viridis",
    figsize: tuple[float, float] | None = None,
    alt: str | None = None,
    **controls: Any,
) -> Explorer:
    """An attention heatmap that is recomputed when a control changes.

    ``compute_fn(**values)`` returns a ``(T, S)`` weight matrix, or a mapping with key
    ``"weights"`` and optionally ``"x_labels"``, ``"y_labels"``, ``"title"`` (labels that
    depend on the controls). Fixed labels and title can be passed here instead. The colour scale
    is 0..1 by default so that pictures for different control values compare; pass
    ``vmin=None, vmax=None`` to stretch it to each matrix. ``alt`` describes the pictures for
    screen readers (see :func:`explore`). Returns the :class:`Explorer`.
    """

    def draw(**values: Any) -> Axes:
        spec = _unpack(compute_fn(**values))
        ax = plt.gcf().add_subplot()
        return viz.attention_heatmap(
            spec["weights"],
            x_labels=spec.get("x_labels", x_labels),
            y_labels=spec.get("y_labels", y_labels),
            ax=ax, title=spec.get("title", title), annotate=annotate, cmap=cmap,
            vmin=vmin, vmax=vmax,
        )

    return explore(draw, figsize=figsize or (6, 4.5), alt=alt, **controls)


def head_explorer(
    weights: Any,
    x_labels: Sequence[Any] | None = None,
    y_labels: Sequence[Any] | None = None,
    *,
    layer_labels: Sequence[Any] | None = None,
    head_labels: Sequence[Any] | None = None,
    annotate: bool = False,
    cmap: str = "viridis",
    figsize: tuple[float, float] | None = None,
    alt: str | None = None,
) -> Explorer:
    """Layer and head sliders over precomputed attention weights ``(L, H, T, S)`` (or
    ``(H, T, S)``: one layer, no layer slider). Every picture uses the colour scale of the
    whole tensor so heads compare. ``alt`` describes the pictures for screen readers (see
    :func:`explore`). Returns the :class:`Explorer` (controls ``layer``, ``head``).

    Raises ``ValueError`` for other shapes, an empty dimension (zero heads, say) or label lists
    of the wrong length.
    """
    w = viz.to_numpy(weights, "weights")
    if w.ndim == 3:
        w = w[None]
    if w.ndim != 4:
        raise ValueError(f"weights must be (L, H, T, S) or (H, T, S), got shape {viz.to_numpy(weights).shape}")
    viz._check_not_empty("weights", w, ("layers", "heads", "queries", "keys"))
    L, H, T, S = w.shape
    viz._check_labels("layer_labels", layer_labels, L, "layers", w.shape)
    viz._check_labels("head_labels", head_labels, H, "heads", w.shape)
    viz._check_labels("x_labels", x_labels, S, "keys", w.shape)
    viz._check_labels("y_labels", y_labels, T, "queries", w.shape)
    lo, hi = float(np.nanmin(w)), float(np.nanmax(w))

    def draw(layer: int = 0, head: int = 0) -> Axes:
        name_l = layer_labels[layer] if layer_labels is not None else f"layer {layer}"
        name_h = head_labels[head] if head_labels is not None else f"head {head}"
        return viz.attention_heatmap(
            w[layer, head], x_labels=x_labels, y_labels=y_labels, ax=plt.gcf().add_subplot(),
            title=f"{name_l}, {name_h}", annotate=annotate, cmap=cmap, vmin=lo, vmax=hi,
        )

    controls: dict[str, Any] = {
        "layer": widgets.IntSlider(value=0, min=0, max=L - 1, description="layer")
        if L > 1 else widgets.fixed(0),
        "head": widgets.IntSlider(value=0, min=0, max=H - 1, description="head")
        if H > 1 else widgets.fixed(0),
    }
    size = figsize or (min(12.0, 2.5 + 0.45 * S), min(10.0, 1.8 + 0.4 * T))
    return explore(draw, figsize=size, alt=alt, **controls)
