"""Tests of attnbook.widgets: the initial picture is stored in the Output widget as a PNG, a
changed control redraws, fixed values and every kind of control reach the plotting function."""

from __future__ import annotations

import base64
import inspect
import io

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from IPython.display import Markdown  # noqa: E402

from attnbook import widgets as aw  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _pngs(explorer: aw.Explorer) -> list[np.ndarray]:
    """The images stored in the explorer's Output, decoded to (height, width, 4) arrays."""
    images = []
    for out in explorer.out.outputs:
        png = out.get("data", {}).get("image/png")
        if png is not None:
            raw = base64.b64decode(png)
            assert raw.startswith(b"\x89PNG\r\n\x1a\n")
            images.append(mpimg.imread(io.BytesIO(raw), format="png"))
    return images


def _recorder():
    calls: list[dict] = []

    def draw(**kwargs):
        calls.append(kwargs)
        fig = plt.gcf()
        ax = fig.add_subplot()
        value = float(kwargs.get("a", 0))
        ax.imshow(np.full((2, 2), value), vmin=0, vmax=10, cmap="gray")
        return ax

    return draw, calls


# ---------------------------------------------------------------------------------------------
# explore
# ---------------------------------------------------------------------------------------------


def test_explore_draws_initial_state_as_png_into_output():
    draw, calls = _recorder()
    ex = aw.explore(draw, a=(0, 10, 1))
    assert isinstance(ex, widgets.VBox) and ex.out in ex.children
    assert calls == [{"a": 5}]  # interact's slider starts in the middle of (0, 10)
    assert ex.draws == 1
    (image,) = _pngs(ex)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    # something was drawn: the picture is not a blank page
    assert (image[..., :3] < 0.9).any()
    assert plt.get_fignums() == []  # every figure drawn for the widget was closed


def test_changing_a_control_redraws_with_the_new_value():
    draw, calls = _recorder()
    ex = aw.explore(draw, a=(0, 10, 1))
    before = _pngs(ex)[0]
    ex.controls["a"].value = 10
    assert calls[-1] == {"a": 10} and ex.draws == 2
    after = _pngs(ex)[0]
    assert len(ex.out.outputs) == 1  # replaced, not appended
    # the image went from mid grey (5/10) to white (10/10): the picture changed
    assert before.shape != after.shape or not np.array_equal(before, after)
    assert ex.result is not None and np.asarray(ex.result.images[0].get_array())[0, 0] == 10.0


def test_fixed_arguments_are_passed_but_get_no_control():
    draw, calls = _recorder()
    ex = aw.explore(draw, a=(0, 10, 2), b=widgets.fixed("const"))
    assert set(ex.controls) == {"a"}
    assert calls[0]["b"] == "const" and ex.kwargs == {"a": calls[0]["a"], "b": "const"}
    ex.controls["a"].value = 2
    assert calls[-1] == {"a": 2, "b": "const"}


def test_every_kind_of_control():
    seen: list[dict] = []

    def draw(n, x, choice, mapped, flag, text, custom):
        seen.append(dict(n=n, x=x, choice=choice, mapped=mapped, flag=flag, text=text, custom=custom))
        plt.plot([0, 1], [0, n])

    custom = widgets.IntText(value=7)
    ex = aw.explore(
        draw, n=(1, 9, 2), x=(0.0, 1.0, 0.25), choice=["dot", "general"], mapped={"one": 1, "two": 2},
        flag=True, text="hello", custom=custom,
    )
    c = ex.controls
    assert isinstance(c["n"], widgets.IntSlider) and isinstance(c["x"], widgets.FloatSlider)
    assert isinstance(c["choice"], widgets.Dropdown) and isinstance(c["mapped"], widgets.Dropdown)
    assert isinstance(c["flag"], widgets.Checkbox) and isinstance(c["text"], widgets.Text)
    assert c["custom"] is custom
    assert seen[0] == dict(n=5, x=0.5, choice="dot", mapped=1, flag=True, text="hello", custom=7)
    # descriptions default to the argument name; sliders redraw on release only
    assert c["n"].description == "n" and c["flag"].description == "flag"
    assert c["n"].continuous_update is False and c["x"].continuous_update is False

    c["choice"].value = "general"
    c["flag"].value = False
    c["text"].value = "bye"
    c["mapped"].value = 2
    custom.value = 3
    assert seen[-1] == dict(n=5, x=0.5, choice="general", mapped=2, flag=False, text="bye", custom=3)
    assert ex.draws == 6


def test_printed_text_and_rich_return_values_are_shown():
    def draw(k=1):
        print(f"k is {k}")
        plt.plot([0, k])
        return Markdown(f"**k = {k}**")

    ex = aw.explore(draw, k=(1, 3, 1))
    kinds = [(o["output_type"], sorted(o.get("data", {}))) for o in ex.out.outputs]
    assert kinds[0] == ("stream", [])
    assert ex.out.outputs[0]["text"] == "k is 1\n"  # the default, not mid-range
    markdown = [o for o in ex.out.outputs if "text/markdown" in o.get("data", {})]
    assert markdown[0]["data"]["text/markdown"] == "**k = 1**"
    assert len(_pngs(ex)) == 1


def test_several_figures_and_unused_blank_figure():
    def two(a=1):
        plt.figure()
        plt.plot([0, a])
        plt.figure()
        plt.plot([a, 0])

    assert len(_pngs(aw.explore(two, a=(1, 3, 1)))) == 2

    def text_only(a=1):
        print("no figure")

    ex = aw.explore(text_only, a=(1, 3, 1))
    assert _pngs(ex) == []  # the blank figure opened for the function is not shown


def test_figsize_and_dpi_set_the_picture():
    def draw(a=1):
        plt.plot([0, a])

    ex = aw.explore(draw, figsize=(4.0, 3.0), dpi=50, a=(1, 3, 1))
    (out,) = ex.out.outputs
    assert out["data"]["text/plain"] == "<Figure size 200x150>"
    (image,) = _pngs(ex)
    # bbox_inches="tight" trims the margins a little, never adds much
    assert 100 < image.shape[1] <= 210 and 75 < image.shape[0] <= 160


def test_errors_raise_at_construction_and_show_later():
    def draw(a=1):
        if a > 2:
            raise RuntimeError("too big")
        plt.plot([0, a])

    ex = aw.explore(draw, a=(1, 3, 1))
    ex.controls["a"].value = 3  # a failing redraw must not raise inside the widget callback
    (out,) = ex.out.outputs
    assert out["output_type"] == "stream" and out["name"] == "stderr"
    assert "RuntimeError: too big" in out["text"]
    assert plt.get_fignums() == []

    with pytest.raises(RuntimeError, match="too big"):
        aw.explore(draw, a=(3, 5, 1))
    assert plt.get_fignums() == []


def test_explore_rejects_bad_arguments():
    with pytest.raises(ValueError, match="plot_fn must be callable"):
        aw.explore(42, a=(0, 1, 1))
    with pytest.raises(ValueError, match="control b="):
        aw.explore(lambda a, b: None, a=(0, 1, 1), b=object())


def test_show_is_ignored_while_drawing_and_restored():
    original = plt.show

    def draw(a=1):
        plt.plot([0, a])
        plt.show()  # must not clear the figure before it is captured

    ex = aw.explore(draw, a=(1, 3, 1))
    assert len(_pngs(ex)) == 1 and plt.show is original


def test_figure_output_is_display_data():
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1])
    out = aw.figure_output(fig, dpi=80)
    assert out["output_type"] == "display_data" and out["data"]["text/plain"] == "<Figure size 160x80>"
    assert base64.b64decode(out["data"]["image/png"]).startswith(b"\x89PNG")



def test_figure_output_with_alt_adds_an_html_image_carrying_it():
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1])
    plain = aw.figure_output(fig)
    assert "text/html" not in plain["data"]
    out = aw.figure_output(fig, alt='A rising "line" <of> weights.\n Second line.')
    png = out["data"]["image/png"]
    assert out["data"]["text/html"] == (
        '<img alt="A rising &quot;line&quot; &lt;of&gt; weights. Second line." '
        f'src="data:image/png;base64,{png}"/>')
    for bad in ("", "   ", 3):
        with pytest.raises(ValueError, match="alt"):
            aw.figure_output(fig, alt=bad)


def test_explore_alt_describes_every_picture_it_draws():
    draw, _ = _recorder()
    ex = aw.explore(draw, alt="A test picture.", a=(0, 10, 1))
    (output,) = [o for o in ex.out.outputs if "image/png" in o["data"]]
    assert output["data"]["text/html"].startswith('<img alt="A test picture." src="data:image/png')
    ex.controls["a"].value = 3
    (output,) = [o for o in ex.out.outputs if "image/png" in o["data"]]
    assert 'alt="A test picture."' in output["data"]["text/html"]
    assert "text/html" not in aw.explore(draw, a=(0, 10, 1)).out.outputs[-1]["data"]
    with pytest.raises(ValueError, match="alt"):
        aw.explore(draw, alt="", a=(0, 10, 1))


# ---------------------------------------------------------------------------------------------
# heatmap_explorer
# ---------------------------------------------------------------------------------------------


def _scores() -> torch.Tensor:
    return torch.randn(3, 4, generator=torch.Generator().manual_seed(0))  # (T, S)


def test_heatmap_explorer_recomputes_weights():
    scores = _scores()

    def weights(tau=1.0):
        return torch.softmax(scores / tau, dim=-1)

    ex = aw.heatmap_explorer(weights, x_labels=list("abcd"), y_labels=list("xyz"),
                             title="softmax", tau=(0.5, 2.0, 0.5))
    tau0 = ex.controls["tau"].value
    ax = ex.result
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), weights(tau0).double().numpy(),
                               rtol=1e-6)
    assert ax.images[0].get_clim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcd")
    assert ax.get_title() == "softmax"
    assert len(_pngs(ex)) == 1

    ex.controls["tau"].value = 0.5
    np.testing.assert_allclose(np.asarray(ex.result.images[0].get_array()),
                               weights(0.5).double().numpy(), rtol=1e-6)


def test_heatmap_explorer_mapping_with_labels_that_change():
    def compute(n=2):
        w = torch.full((n, n), 1.0 / n)
        return {"weights": w, "x_labels": [f"k{i}" for i in range(n)],
                "y_labels": [f"q{i}" for i in range(n)], "title": f"n={n}"}

    ex = aw.heatmap_explorer(compute, n=(2, 4, 1), vmin=None, vmax=None)
    assert ex.result.get_title() == "n=3"
    assert [t.get_text() for t in ex.result.get_yticklabels()] == ["q0", "q1", "q2"]
    ex.controls["n"].value = 4
    assert np.asarray(ex.result.images[0].get_array()).shape == (4, 4)


def test_heatmap_explorer_rejects_mapping_without_weights():
    with pytest.raises(ValueError, match="without 'weights'"):
        aw.heatmap_explorer(lambda a=1: {"w": torch.eye(2)}, a=(1, 2, 1))


def _html_alts(explorer: aw.Explorer) -> list[str | None]:
    """The HTML ``<img>`` of every picture the explorer shows (None where a picture has none)."""
    return [o["data"].get("text/html") for o in explorer.out.outputs
            if "image/png" in o.get("data", {})]


@pytest.mark.parametrize("make", [
    lambda alt: aw.heatmap_explorer(lambda tau=1.0: torch.softmax(_scores() / tau, -1),
                                    tau=(0.5, 2.0, 0.5), alt=alt),
    lambda alt: aw.head_explorer(torch.full((2, 2, 3, 3), 1 / 3), alt=alt),
], ids=["heatmap_explorer", "head_explorer"])
def test_explorer_helpers_pass_alt_through(make):
    ex = make("Attention weights; the sliders change them.")
    assert ex.alt == "Attention weights; the sliders change them."
    (html,) = _html_alts(ex)
    assert html.startswith('<img alt="Attention weights; the sliders change them." src="data:')
    name = next(iter(ex.controls))
    control = ex.controls[name]
    control.value = control.max
    (html,) = _html_alts(ex)
    assert 'alt="Attention weights; the sliders change them."' in html
    assert _html_alts(make(None)) == [None]  # no alt: a plain PNG, as before
    for bad in ("", "  ", 3):
        with pytest.raises(ValueError, match="alt"):
            make(bad)


@pytest.mark.parametrize("helper", [aw.heatmap_explorer, aw.head_explorer])
def test_explorer_helpers_take_alt_by_keyword_only(helper):
    param = inspect.signature(helper).parameters["alt"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is None


# ---------------------------------------------------------------------------------------------
# head_explorer
# ---------------------------------------------------------------------------------------------


def test_head_explorer_sliders_pick_layer_and_head():
    L, H, T, S = 2, 3, 4, 5
    w = torch.softmax(torch.randn(L, H, T, S, generator=torch.Generator().manual_seed(2)), -1)
    ex = aw.head_explorer(w, layer_labels=["enc", "dec"])
    assert set(ex.controls) == {"layer", "head"}
    assert (ex.controls["layer"].max, ex.controls["head"].max) == (L - 1, H - 1)
    np.testing.assert_allclose(np.asarray(ex.result.images[0].get_array()), w[0, 0].double().numpy())
    assert ex.result.get_title() == "enc, head 0"
    ex.controls["layer"].value = 1
    ex.controls["head"].value = 2
    np.testing.assert_allclose(np.asarray(ex.result.images[0].get_array()), w[1, 2].double().numpy())
    assert ex.result.get_title() == "dec, head 2"
    # every picture shares the colour scale of the whole tensor
    np.testing.assert_allclose(ex.result.images[0].get_clim(), (w.min().item(), w.max().item()),
                               rtol=1e-6)
    assert len(_pngs(ex)) == 1


def test_head_explorer_single_layer_and_single_head():
    ex = aw.head_explorer(torch.rand(2, 3, 3), x_labels=list("abc"), head_labels=["h0", "h1"])
    assert set(ex.controls) == {"head"} and ex.fixed == {"layer": 0}
    assert ex.result.get_title() == "layer 0, h0"
    one = aw.head_explorer(torch.rand(1, 3, 3))
    assert one.controls == {} and one.fixed == {"layer": 0, "head": 0}
    assert len(_pngs(one)) == 1


@pytest.mark.parametrize("shape", [(3, 3), (4,), (1, 1, 1, 2, 2)])
def test_head_explorer_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"\(L, H, T, S\) or \(H, T, S\)"):
        aw.head_explorer(torch.rand(shape))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"layer_labels": ["a", "b"]}, "layer_labels"),
        ({"head_labels": ["a"]}, "head_labels"),
        ({"x_labels": list("abc")}, "x_labels"),
        ({"y_labels": list("abcdef")}, "y_labels"),
    ],
)
def test_head_explorer_rejects_wrong_label_lengths(kwargs, name):
    with pytest.raises(ValueError, match=name):
        aw.head_explorer(torch.rand(1, 2, 3, 4), **kwargs)


def test_explore_sliders_start_at_the_plot_functions_defaults():
    def draw(temperature=1.0, k=3, mode="b"):
        plt.plot([0, k], [0, temperature])

    e = aw.explore(draw, temperature=(0.1, 5.0, 0.1), k=(1, 10), mode=["a", "b"])
    assert e.kwargs == {"temperature": 1.0, "k": 3, "mode": "b"}


@pytest.mark.parametrize(("shape", "empty"), [((0, 3, 3), "0 heads"), ((2, 0, 3, 3), "0 heads"),
                                              ((1, 2, 3, 0), "0 keys")])
def test_head_explorer_rejects_zero_heads_and_empty_maps(shape, empty):
    with pytest.raises(ValueError, match=rf"weights .*{empty}.*got shape"):
        aw.head_explorer(torch.rand(shape))
