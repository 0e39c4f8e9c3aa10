"""Figures are accessible: every figure cell of a chapter carries alt text, and no chapter draws
with colours or colour maps that readers with a red-green colour-vision deficiency cannot tell
apart. Static checks of the notebook sources (nothing is executed).

Alt text has one place per kind of picture:

* An ordinary figure (an image output of the cell) takes it from the cell's metadata,
  ``{"mystnb": {"image": {"alt": "..."}}}``: MyST-NB gives that ``alt`` to every image the cell
  outputs. A cell counts as a figure cell when a statement at the top level of the cell (not
  inside a ``def`` or ``class``, which only defines a helper) shows or draws a figure:
  ``plt.show()``, ``plt.subplots``/``plt.figure``, ``fig.<anything>``, a ``plot_*``,
  ``attention_heatmap``, ``head_grid`` or ``*_diagram`` call, or an ``.imshow``. A top-level call
  of a drawing function defined in the same cell counts too.
* An interactive explorer (``explore``, ``heatmap_explorer``, ``head_explorer``, ``Explorer``)
  shows its picture inside a widget, which the site draws from the saved widget state, so the
  cell's metadata never reaches it: the explorer call passes ``alt="..."`` (a string literal),
  which :mod:`attnbook.widgets` puts on the ``<img>`` of every picture it saves. Metadata alt on
  a cell whose only picture is an explorer's is refused (it would describe nothing), and so is
  ``ipywidgets.interact``/``interactive``, whose pictures carry no alt (use ``explore``).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import sync_notebooks  # noqa: E402

NOTEBOOKS = sync_notebooks.notebooks()

DRAWS = re.compile(
    r"\bplt\.(show|subplots?|figure|imshow|plot|bar|hist|scatter)\(|\bfig\.|\bplot_\w+\(|"
    r"\battention_heatmap\(|\bhead_grid\(|\w+_diagram\(|\.imshow\("
)
ALT_COMMENT = re.compile(r"^\s*#\s*Alt text:", re.IGNORECASE | re.MULTILINE)
INTERACT = {"interact", "interactive", "interact_manual"}


def _parse(source: str) -> ast.Module:
    """The cell's code, IPython magics and shell lines dropped so that it parses."""
    lines = [ln for ln in source.split("\n") if not ln.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines))


def _name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _is_explorer(call: ast.Call) -> bool:
    name = _name(call)
    return name in {"explore", "Explorer"} or name.endswith("_explorer")


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    return [s for s in tree.body if not isinstance(s, _DEFS)]


def _calls(cell, predicate) -> list[ast.Call]:
    """The calls satisfying ``predicate`` in the cell's top-level statements (not in a ``def``)."""
    return [node for stmt in _top_level(_parse(cell.source)) for node in ast.walk(stmt)
            if isinstance(node, ast.Call) and predicate(node)]


def explorer_calls(cell) -> list[ast.Call]:
    """The interactive explorers a code cell makes at its top level."""
    return _calls(cell, _is_explorer) if cell.cell_type == "code" else []


def interact_calls(cell) -> list[ast.Call]:
    """``ipywidgets.interact``/``interactive`` calls at the cell's top level."""
    return _calls(cell, lambda c: _name(c) in INTERACT) if cell.cell_type == "code" else []


def explorer_alt(call: ast.Call) -> str:
    """The explorer's ``alt=`` when it is a string literal (implicit concatenation included)."""
    for kw in call.keywords:
        if kw.arg == "alt" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value.strip()
    return ""


class _DropWidgets(ast.NodeTransformer):
    """Replace explorer and interact calls by ``None``: their pictures live in a widget."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if _is_explorer(node) or _name(node) in INTERACT:
            return ast.Constant(None)
        return self.generic_visit(node)


def is_figure_cell(cell) -> bool:
    """A code cell whose top-level statements draw an ordinary figure, or call a function that
    this cell defines and that draws (a helper only defined here and called later does not count;
    nor does a drawing function handed to an explorer, whose picture is a widget's)."""
    if cell.cell_type != "code":
        return False
    tree = _DropWidgets().visit(_parse(cell.source))
    drawing_helpers = [s.name for s in tree.body
                       if isinstance(s, _DEFS) and DRAWS.search(ast.unparse(s))]
    top = "\n".join(ast.unparse(s) for s in _top_level(tree))
    if DRAWS.search(top):
        return True
    return any(re.search(rf"\b{re.escape(name)}\(", top) for name in drawing_helpers)


def alt_text(cell) -> str:
    alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
    return alt.strip() if isinstance(alt, str) else ""


def test_the_heuristic():
    def code(src: str):
        return nbformat.v4.new_code_cell(src)

    assert is_figure_cell(code("fig, ax = plt.subplots()\nax.plot(x)\nplt.show()"))
    assert is_figure_cell(code("ax = viz.transformer_diagram(num_encoder_layers=2)"))
    assert is_figure_cell(code("for k in ks:\n    attention_heatmap(w[k])"))
    # a cell that only defines a drawing helper draws nothing itself
    assert not is_figure_cell(code("def draw(ax):\n    fig, ax = plt.subplots()\n    plt.show()"))
    assert is_figure_cell(code("def show(p):\n    plt.plot(p)\n    plt.show()\n\n\nshow(probe)"))
    assert not is_figure_cell(code("x = torch.randn(3)\nprint(x.sum())"))
    assert not is_figure_cell(nbformat.v4.new_markdown_cell("plt.show()"))
    # an explorer's picture is a widget's: the cell is an explorer cell, not a figure cell ...
    explorer = code("def draw(tau=1.0):\n    plt.plot(x / tau)\n\n\n"
                    "explore(draw, tau=(0.1, 5.0, 0.1), alt='A line; the slider scales it.')")
    assert not is_figure_cell(explorer)
    assert [explorer_alt(c) for c in explorer_calls(explorer)] == ["A line; the slider scales it."]
    # ... unless it also draws an ordinary figure
    assert is_figure_cell(code("plt.plot(x)\nplt.show()\nexplore(draw, tau=(0.1, 5.0, 0.1))"))
    for src in ("explore(draw, tau=(0.1, 5.0, 0.1))", "explore(draw, alt='  ', tau=(1, 2))",
                "widgets.head_explorer(w, alt=text)", "ex = Explorer(draw, {}, alt='')"):
        (call,) = explorer_calls(code(src))
        assert explorer_alt(call) == "", src
    (call,) = explorer_calls(code('head_explorer(w,\n              alt="Heads; "\n"the sliders.")'))
    assert explorer_alt(call) == "Heads; the sliders."
    assert not explorer_calls(code("def f():\n    return explore(draw, a=(1, 2))"))
    assert interact_calls(code("display(widgets.interactive(show, tau=slider))"))
    assert not is_figure_cell(code("display(widgets.interactive(show, tau=slider))"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_cell_has_alt_text(path):
    nb = nbformat.read(path, as_version=4)
    missing = [cell.get("id") for cell in nb.cells if is_figure_cell(cell) and not alt_text(cell)]
    assert not missing, (
        f"figure cells without metadata.mystnb.image.alt (one or two sentences: what is plotted "
        f"and what the reader should see): {missing}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_explorer_passes_alt(path):
    nb = nbformat.read(path, as_version=4)
    missing = [cell.get("id") for cell in nb.cells
               if any(not explorer_alt(call) for call in explorer_calls(cell))]
    assert not missing, (
        f"explorer cells whose explore(...)/*_explorer(...) call has no alt=\"...\" (one or two "
        f"sentences: what the first picture shows and what the controls change): {missing}")
    interact = [cell.get("id") for cell in nb.cells if interact_calls(cell)]
    assert not interact, (
        f"cells using ipywidgets.interact/interactive, whose pictures carry no alt text; use "
        f"attnbook.widgets.explore(..., alt=...): {interact}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_explorer_cells_keep_alt_in_one_place(path):
    nb = nbformat.read(path, as_version=4)
    dead = [cell.get("id") for cell in nb.cells
            if explorer_calls(cell) and alt_text(cell) and not is_figure_cell(cell)]
    assert not dead, (
        f"explorer cells with metadata.mystnb.image.alt, which does not reach a widget's picture; "
        f"put the text in the explorer's alt= instead: {dead}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_alt_text_is_in_metadata_not_in_comments(path):
    nb = nbformat.read(path, as_version=4)
    commented = [c.get("id") for c in nb.cells if c.cell_type == "code" and ALT_COMMENT.search(c.source)]
    assert not commented, f"cells with a '# Alt text:' comment; put it in metadata.mystnb.image.alt: {commented}"
    for cell in nb.cells:
        alt = alt_text(cell)
        if alt:
            assert not alt.lower().startswith(("image of", "picture of", "a picture of", "an image of")), (
                cell.get("id"), "say what the figure shows, not that it is an image")


# Colours a reader with a red-green deficiency confuses (named reds and greens, and tab10's red
# and green), and colour maps that run through red and green or are not perceptually ordered.
# Use the book's cycle ("C0".."C7", Okabe-Ito since attnbook.viz is imported), greys, or
# viridis/cividis/magma/gray for images and RdBu/PuOr for signed values.
UNSAFE_COLOURS = {
    "red", "green", "lime", "darkgreen", "forestgreen", "limegreen", "seagreen", "lawngreen",
    "darkred", "crimson", "firebrick", "tab:red", "tab:green", "xkcd:red", "xkcd:green",
}
UNSAFE_CMAPS = {
    "jet", "hsv", "rainbow", "gist_rainbow", "nipy_spectral", "gist_ncar", "RdYlGn", "Spectral",
    "brg", "prism", "flag", "gist_stern",
}
_STRING = re.compile(r"""(?<![\w.])(?:f?)(["'])([^"'\n]{1,30})\1""")
_SHORT_COLOUR = re.compile(r"""\b(?:color|c|colors|facecolor|edgecolor|fc|ec)\s*=\s*(["'])[rg]\1""")
_FORMAT = re.compile(r"""\.(?:plot|semilogx|semilogy|loglog|errorbar)\([^)\n]*?,\s*(["'])([-.:ov^<>sp*hHxXDd+|_]*[rg][-.:ov^<>sp*hHxXDd+|_]*)\1""")


def unsafe_colours(source: str) -> list[str]:
    found = []
    for match in _STRING.finditer(source):
        text = match.group(2)
        name = text[:-2] if text.endswith("_r") else text
        if text.lower() in UNSAFE_COLOURS or name in UNSAFE_CMAPS:
            found.append(text)
    found += [m.group(0) for m in _SHORT_COLOUR.finditer(source)]
    found += [m.group(2) for m in _FORMAT.finditer(source)]
    return found


def test_unsafe_colour_detector():
    assert unsafe_colours('ax.plot(x, color="tab:red")') == ["tab:red"]
    assert unsafe_colours("ax.imshow(w, cmap='RdYlGn_r')") == ["RdYlGn_r"]
    assert unsafe_colours('ax.plot(x, y, "r--")') == ["r--"]
    assert unsafe_colours('ax.bar(x, y, color="g")') == ['color="g"']
    assert unsafe_colours('ax.plot(x, y, "o-", color="C3")\nim = ax.imshow(w, cmap="RdBu_r")') == []
    assert unsafe_colours('print("the red line")\nopen(path, "r")') == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_red_green_colours(path):
    nb = nbformat.read(path, as_version=4)
    found = {
        cell.get("id"): unsafe_colours(cell.source)
        for cell in nb.cells
        if cell.cell_type == "code"
    }
    found = {k: v for k, v in found.items() if v}
    assert not found, f"colour-blind-unsafe colours or colour maps (cell id: found): {found}"
