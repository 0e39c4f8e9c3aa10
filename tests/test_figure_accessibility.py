"""Figures are accessible: every figure cell of a chapter carries alt text, and no chapter draws
with colours or colour maps that readers with a red-green colour-vision deficiency cannot tell
apart. Static checks of the notebook sources (nothing is executed).

Alt text lives in the cell's metadata, ``{"mystnb": {"image": {"alt": "..."}}}``: MyST-NB gives
that ``alt`` to every image the cell outputs. A cell counts as a figure cell when a statement at
the top level of the cell (not inside a ``def`` or ``class``, which only defines a helper) shows
or draws a figure: ``plt.show()``, ``plt.subplots``/``plt.figure``, ``fig.<anything>``, a
``plot_*``, ``attention_heatmap``, ``head_grid`` or ``*_diagram`` call, an ``.imshow``, or an
interactive ``explore``/``*_explorer``/``interact`` (whose picture lives in the widget state).
A top-level call of a drawing function defined in the same cell counts too.
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
    r"\battention_heatmap\(|\bhead_grid\(|\w+_diagram\(|\.imshow\(|\bexplore\(|\w+_explorer\(|"
    r"\binteract(?:ive)?\("
)
ALT_COMMENT = re.compile(r"^\s*#\s*Alt text:", re.IGNORECASE | re.MULTILINE)


def _parse(source: str) -> ast.Module:
    """The cell's code, IPython magics and shell lines dropped so that it parses."""
    lines = [ln for ln in source.split("\n") if not ln.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines))


def is_figure_cell(cell) -> bool:
    """A code cell whose top-level statements draw, or call a function that this cell defines
    and that draws (a helper only defined here and called later does not count)."""
    if cell.cell_type != "code":
        return False
    tree = _parse(cell.source)
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    drawing_helpers = [s.name for s in tree.body
                       if isinstance(s, defs) and DRAWS.search(ast.unparse(s))]
    top = "\n".join(ast.unparse(s) for s in tree.body if not isinstance(s, defs))
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
    assert is_figure_cell(code("explore(draw, tau=(0.1, 5.0, 0.1))"))
    assert is_figure_cell(code("ax = viz.transformer_diagram(num_encoder_layers=2)"))
    assert is_figure_cell(code("for k in ks:\n    attention_heatmap(w[k])"))
    # a cell that only defines a drawing helper draws nothing itself
    assert not is_figure_cell(code("def draw(ax):\n    fig, ax = plt.subplots()\n    plt.show()"))
    assert is_figure_cell(code("def show(p):\n    plt.plot(p)\n    plt.show()\n\n\nshow(probe)"))
    assert is_figure_cell(code("display(widgets.interactive(show, tau=slider))"))
    assert not is_figure_cell(code("x = torch.randn(3)\nprint(x.sum())"))
    assert not is_figure_cell(nbformat.v4.new_markdown_cell("plt.show()"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_cell_has_alt_text(path):
    nb = nbformat.read(path, as_version=4)
    missing = [cell.get("id") for cell in nb.cells if is_figure_cell(cell) and not alt_text(cell)]
    assert not missing, (
        f"figure cells without metadata.mystnb.image.alt (one or two sentences: what is plotted "
        f"and what the reader should see): {missing}")


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
