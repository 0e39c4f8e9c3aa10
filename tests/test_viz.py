"""Tests of attnbook.viz: every figure is read back (image arrays, tick labels, line data, text
boxes) and compared with the numbers it was given."""

from __future__ import annotations

from collections import namedtuple

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attnbook import viz  # noqa: E402

Milestone = namedtuple("Milestone", "year work theme")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _tick_texts(labels) -> list[str]:
    return [t.get_text() for t in labels]


def _weights(T: int, S: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(T, S, generator=g), dim=-1)  # (T, S)


# ---------------------------------------------------------------------------------------------
# to_numpy
# ---------------------------------------------------------------------------------------------


def test_to_numpy_tensor_with_grad_and_low_precision(device):
    x = torch.randn(3, 4, device=device, requires_grad=True)
    y = viz.to_numpy(x.to(torch.bfloat16))
    assert y.dtype == np.float64 and y.shape == (3, 4)
    np.testing.assert_allclose(y, x.detach().to(torch.bfloat16).double().cpu().numpy())
    np.testing.assert_array_equal(viz.to_numpy([[1, 2], [3, 4]]), np.array([[1.0, 2], [3, 4]]))


def test_to_numpy_rejects_non_numbers():
    with pytest.raises(ValueError, match="scores"):
        viz.to_numpy([["a", "b"]], name="scores")


# ---------------------------------------------------------------------------------------------
# attention_heatmap
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_heatmap_draws_the_given_numbers(device, dtype):
    w = _weights(4, 6).to(device=device, dtype=dtype)
    ax = viz.attention_heatmap(w)
    (image,) = ax.images
    drawn = np.asarray(image.get_array())
    assert drawn.shape == (4, 6)  # rows = queries, columns = keys
    np.testing.assert_allclose(drawn, w.double().cpu().numpy(), rtol=0, atol=0)
    assert ax.get_xlabel() == "key" and ax.get_ylabel() == "query"


def test_heatmap_orientation_row_is_query():
    w = torch.zeros(2, 3)
    w[1, 2] = 1.0  # query 1 looks at key 2
    ax = viz.attention_heatmap(w, colorbar=False)
    drawn = np.asarray(ax.images[0].get_array())
    assert drawn[1, 2] == 1.0 and drawn.sum() == 1.0
    # imshow: column index -> x, row index -> y (row 0 at the top)
    left, right, bottom, top = ax.images[0].get_extent()
    assert (left, right) == (-0.5, 2.5) and (bottom, top) == (1.5, -0.5)


def test_heatmap_labels_title_and_colour_limits():
    w = _weights(3, 4)
    keys, queries = ["a", "b", "c", "d"], ["x", "y", "z"]
    ax = viz.attention_heatmap(
        w, x_labels=keys, y_labels=queries, title="my title", vmin=0.0, vmax=1.0,
        xlabel="source", ylabel="target",
    )
    assert _tick_texts(ax.get_xticklabels()) == keys
    assert _tick_texts(ax.get_yticklabels()) == queries
    assert list(ax.get_xticks()) == [0, 1, 2, 3] and list(ax.get_yticks()) == [0, 1, 2]
    assert ax.get_title() == "my title"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("source", "target")
    assert ax.images[0].get_clim() == (0.0, 1.0)
    assert all(t.get_rotation() == 45 for t in ax.get_xticklabels())


def test_heatmap_default_limits_stretch_to_data_and_colorbar():
    w = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    ax = viz.attention_heatmap(w)
    np.testing.assert_allclose(ax.images[0].get_clim(), (0.2, 0.8))
    assert len(ax.figure.axes) == 2  # the heatmap and its colour bar
    ax2 = viz.attention_heatmap(w, colorbar=False, xlabel=None, ylabel=None)
    assert len(ax2.figure.axes) == 1 and ax2.get_xlabel() == "" and ax2.get_ylabel() == ""


def test_heatmap_annotate_writes_every_value_with_contrast():
    w = torch.tensor([[0.0, 1.0], [0.25, 0.75]])
    ax = viz.attention_heatmap(w, annotate=True, fmt=".3f", vmin=0, vmax=1, cmap="gray")
    texts = {(t.get_position(), t.get_text()): t.get_color() for t in ax.texts}
    assert len(ax.texts) == 4
    assert texts[((1, 0), "1.000")] == "black"  # white cell -> black text
    assert texts[((0, 0), "0.000")] == "white"  # black cell -> white text
    assert ((0, 1), "0.250") in texts and ((1, 1), "0.750") in texts


def test_heatmap_draws_on_given_axes():
    fig, (a1, a2) = plt.subplots(1, 2)
    out = viz.attention_heatmap(_weights(2, 2), ax=a2, colorbar=False)
    assert out is a2 and len(a1.images) == 0 and len(a2.images) == 1


def test_heatmap_thins_ticks_for_long_sequences():
    w = _weights(5, 100)
    ax = viz.attention_heatmap(w, x_labels=[f"k{i}" for i in range(100)])
    ticks = list(ax.get_xticks())
    assert ticks == list(range(0, 100, 10))
    assert _tick_texts(ax.get_xticklabels()) == [f"k{i}" for i in range(0, 100, 10)]


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), (1, 1, 2, 2)])
def test_heatmap_rejects_non_matrix(shape):
    with pytest.raises(ValueError, match=r"2-D.*" + str(shape).replace("(", r"\(").replace(")", r"\)")):
        viz.attention_heatmap(torch.rand(shape))


def test_heatmap_rejects_wrong_label_lengths():
    w = _weights(3, 4)
    with pytest.raises(ValueError, match="x_labels has 3 labels"):
        viz.attention_heatmap(w, x_labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="y_labels has 4 labels"):
        viz.attention_heatmap(w, y_labels=["a", "b", "c", "d"])
    assert plt.get_fignums() == []  # raised before drawing anything


# ---------------------------------------------------------------------------------------------
# head_grid
# ---------------------------------------------------------------------------------------------


def test_head_grid_panels_hold_each_head_in_row_major_order():
    L, H, T, S = 2, 3, 4, 5
    w = torch.softmax(torch.randn(L, H, T, S, generator=torch.Generator().manual_seed(1)), -1)
    fig = viz.head_grid(w)
    assert len(fig.axes) == L * H + 1  # panels + colour bar
    for i, ax in enumerate(fig.axes[: L * H]):
        layer, head = divmod(i, H)
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), w[layer, head].double().numpy())
        # one shared colour scale: the minimum and maximum over the whole tensor
        np.testing.assert_allclose(ax.images[0].get_clim(), (w.min().item(), w.max().item()), rtol=1e-6)
    assert [ax.get_title() for ax in fig.axes[:H]] == ["head 0", "head 1", "head 2"]
    assert [fig.axes[r * H].get_ylabel() for r in range(L)] == ["layer 0", "layer 1"]


def test_head_grid_single_layer_labels_and_limits():
    H, T, S = 2, 3, 4
    w = torch.rand(H, T, S)
    keys, queries = list("abcd"), list("xyz")
    fig = viz.head_grid(
        w, layer_labels=["enc"], head_labels=["h-a", "h-b"], x_labels=keys, y_labels=queries,
        title="grid", vmin=0, vmax=1, colorbar=False,
    )
    assert len(fig.axes) == H  # one row, no colour bar
    first, second = fig.axes
    assert (first.get_title(), second.get_title()) == ("h-a", "h-b")
    assert first.get_ylabel() == "enc" and second.get_ylabel() == ""
    assert _tick_texts(first.get_yticklabels()) == queries and list(second.get_yticks()) == []
    assert _tick_texts(second.get_xticklabels()) == keys  # bottom row shows the keys
    assert first.images[0].get_clim() == (0, 1)
    assert fig.get_suptitle() == "grid"


def test_head_grid_only_bottom_row_has_key_ticks():
    fig = viz.head_grid(torch.rand(2, 1, 3, 3), colorbar=False)
    top, bottom = fig.axes
    assert list(top.get_xticks()) == [] and list(bottom.get_xticks()) == [0, 1, 2]


@pytest.mark.parametrize("shape", [(3, 3), (1, 2, 3, 4, 5)])
def test_head_grid_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="got shape"):
        viz.head_grid(torch.rand(shape))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"layer_labels": ["a", "b"]}, "layer_labels"),
        ({"head_labels": ["a"]}, "head_labels"),
        ({"x_labels": list("abc")}, "x_labels"),
        ({"y_labels": list("abcdef")}, "y_labels"),
    ],
)
def test_head_grid_rejects_wrong_label_lengths(kwargs, name):
    with pytest.raises(ValueError, match=name):
        viz.head_grid(torch.rand(1, 2, 3, 4), **kwargs)


# ---------------------------------------------------------------------------------------------
# plot_timeline
# ---------------------------------------------------------------------------------------------

THEMES = ["alignment", "transformer", "efficiency"]
ENTRIES = [
    Milestone(1964, "Nadaraya-Watson", "alignment"),
    Milestone(2014, "Bahdanau", "alignment"),
    Milestone(2015, "Luong", "alignment"),
    Milestone(2015, "Show, attend and tell", "alignment"),
    Milestone(2017, "Transformer", "transformer"),
    Milestone(2017, "Multi-head", "transformer"),
    Milestone(2017, "Position encodings", "transformer"),
    Milestone(2020, "Linear attention", "efficiency"),
    Milestone(2022, "FlashAttention", "efficiency"),
]


def test_timeline_markers_labels_and_colours():
    ax = viz.plot_timeline(ENTRIES, themes=THEMES, title="history")
    markers = ax.collections[0]
    xy = np.asarray(markers.get_offsets())
    assert xy.shape == (len(ENTRIES), 2) and np.all(xy[:, 1] == 0)
    # entries of one year are spread within +-0.3 of it, in order
    np.testing.assert_allclose(xy[4:7, 0], [2016.7, 2017.0, 2017.3])
    np.testing.assert_allclose(xy[[0, 1, 7, 8], 0], [1964, 2014, 2020, 2022])
    texts = [t.get_text() for t in ax.texts]
    assert texts == [f"{e.work} ({e.year})" for e in ENTRIES]
    colors = viz.theme_colors(THEMES)
    for text, entry in zip(ax.texts, ENTRIES):
        assert matplotlib.colors.same_color(text.get_color(), colors[entry.theme])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == THEMES
    assert ax.get_title() == "history"


def test_timeline_labels_do_not_overlap():
    ax = viz.plot_timeline(ENTRIES, themes=THEMES)
    renderer = ax.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    for i in range(len(boxes)):
        for j in range(i):
            assert not boxes[i].overlaps(boxes[j]), (ax.texts[i].get_text(), ax.texts[j].get_text())
    levels = [t.get_position()[1] for t in ax.texts]
    assert all(level != 0 and float(level).is_integer() for level in levels)


def test_timeline_compresses_early_years():
    ax = viz.plot_timeline(ENTRIES, themes=THEMES, compress_before=2012)
    to_px = ax.transData.transform
    early = to_px((2012, 0))[0] - to_px((1963, 0))[0]  # 49 years
    late = to_px((2023, 0))[0] - to_px((2012, 0))[0]  # 11 years
    assert early < late
    linear = viz.plot_timeline(ENTRIES, themes=THEMES, compress_before=None)
    to_px = linear.transData.transform
    assert to_px((2012, 0))[0] - to_px((1963, 0))[0] > to_px((2023, 0))[0] - to_px((2012, 0))[0]


def test_timeline_unknown_theme_gets_its_own_colour():
    entries = [Milestone(2017, "A", "transformer"), Milestone(2018, "B", "other")]
    ax = viz.plot_timeline(entries, themes=THEMES)
    c0, c1 = (t.get_color() for t in ax.texts)
    assert not matplotlib.colors.same_color(c0, c1)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["transformer", "other"]


def test_timeline_rejects_bad_entries():
    with pytest.raises(ValueError, match="at least one"):
        viz.plot_timeline([], themes=THEMES)
    with pytest.raises(ValueError, match=r"entries\[1\]"):
        viz.plot_timeline([ENTRIES[0], (2017, "x")], themes=THEMES)


def test_theme_colors_distinct():
    for n in (3, 10, 15):
        colors = viz.theme_colors([f"t{i}" for i in range(n)])
        rgba = {tuple(np.round(matplotlib.colors.to_rgba(c), 6)) for c in colors.values()}
        assert len(rgba) == n


# ---------------------------------------------------------------------------------------------
# plot_curves
# ---------------------------------------------------------------------------------------------


def test_curves_one_line_per_history_with_its_values():
    train = [3.0, 2.0, 1.5, 1.2]
    valid = [torch.tensor(3.1), torch.tensor(2.4), torch.tensor(2.0), torch.tensor(1.9)]
    ax = viz.plot_curves({"train": train, "valid": valid}, ylabel="loss", title="curves")
    lines = ax.get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_ydata(), train)
    np.testing.assert_allclose(lines[1].get_ydata(), [3.1, 2.4, 2.0, 1.9], rtol=1e-6)
    np.testing.assert_array_equal(lines[0].get_xdata(), [0, 1, 2, 3])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "valid"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("step", "loss", "curves")


def test_curves_bare_list_custom_x_and_log_scale():
    ax = viz.plot_curves([1.0, 0.1, 0.01], x=[10, 20, 30], logy=True, xlabel="epoch")
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [10, 20, 30])
    assert ax.get_yscale() == "log" and ax.get_legend() is None and ax.get_xlabel() == "epoch"


def test_curves_smoothing_draws_moving_average():
    y = np.arange(10.0) ** 2
    ax = viz.plot_curves({"loss": list(y)}, smooth=3)
    raw, smooth = ax.get_lines()
    np.testing.assert_allclose(raw.get_ydata(), y)
    expected = [(y[i] + y[i + 1] + y[i + 2]) / 3 for i in range(8)]
    np.testing.assert_allclose(smooth.get_ydata(), expected)
    np.testing.assert_array_equal(smooth.get_xdata(), np.arange(2, 10))
    assert raw.get_color() == smooth.get_color() and raw.get_alpha() < 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss"]


def test_curves_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        viz.plot_curves({})
    with pytest.raises(ValueError, match="smooth"):
        viz.plot_curves([1.0, 2.0], smooth=0)
    with pytest.raises(ValueError, match="x has 2 values"):
        viz.plot_curves({"a": [1.0, 2.0, 3.0]}, x=[0, 1])
    with pytest.raises(ValueError, match="histories"):
        viz.plot_curves({"a": [[1.0, 2.0], [3.0, 4.0]]})
    with pytest.raises(ValueError, match="histories"):
        viz.plot_curves({"a": torch.ones(2, 3)})


# ---------------------------------------------------------------------------------------------
# Empty inputs: a ValueError naming the argument and the empty dimension (issue 9)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "empty"),
    [((0, 3, 4), "0 heads"), ((2, 0, 3, 4), "0 heads"), ((0, 2, 3, 4), "0 layers"),
     ((2, 3, 0, 4), "0 queries"), ((2, 3, 4, 0), "0 keys"), ((2, 0, 0), "0 queries and 0 keys")],
)
def test_head_grid_rejects_zero_heads_and_empty_maps(shape, empty):
    with pytest.raises(ValueError, match=rf"weights .*{empty}.*got shape"):
        viz.head_grid(torch.rand(shape))


@pytest.mark.parametrize(("shape", "empty"), [((0, 4), "0 queries"), ((3, 0), "0 keys")])
def test_attention_heatmap_rejects_an_empty_matrix(shape, empty):
    with pytest.raises(ValueError, match=rf"weights .*{empty}.*got shape"):
        viz.attention_heatmap(torch.rand(shape))


def test_plot_curves_rejects_an_empty_curve():
    with pytest.raises(ValueError, match=r"histories\['val'\].*empty"):
        viz.plot_curves({"train": [1.0, 0.5], "val": []})


# ---------------------------------------------------------------------------------------------
# the book's colour-blind-safe style
# ---------------------------------------------------------------------------------------------


def _same_colors(a, b) -> bool:
    return len(a) == len(b) and all(matplotlib.colors.same_color(x, y) for x, y in zip(a, b))


def test_importing_viz_sets_the_okabe_ito_cycle_and_viridis():
    import importlib

    plt.rcdefaults()
    importlib.reload(viz)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    assert _same_colors(cycle, viz.OKABE_ITO)
    assert plt.rcParams["image.cmap"] == "viridis"
    assert matplotlib.colors.same_color("C2", "#009E73")
    _, ax = plt.subplots()
    lines = [ax.plot([0, 1])[0] for _ in range(3)]
    assert _same_colors([line.get_color() for line in lines], viz.OKABE_ITO[:3])
    plt.close("all")


def test_use_book_style_restores_the_cycle():
    plt.rcdefaults()
    assert not _same_colors(plt.rcParams["axes.prop_cycle"].by_key()["color"], viz.OKABE_ITO)
    viz.use_book_style()
    assert _same_colors(plt.rcParams["axes.prop_cycle"].by_key()["color"], viz.OKABE_ITO)


def test_theme_colors_come_from_the_palette():
    palette = [c for c in viz.OKABE_ITO if c != "#F0E442"] + ["#999999"]  # no yellow text
    colors = list(viz.theme_colors([f"t{i}" for i in range(8)]).values())
    assert _same_colors(colors, palette)
    # the history chapter's ten themes: eight palette colours, then darker shades of the first two
    ten = list(viz.theme_colors([f"t{i}" for i in range(10)]).values())
    assert _same_colors(ten[:8], palette)
    for shade, base in zip(ten[8:], palette[:2]):
        assert sum(matplotlib.colors.to_rgb(shade)) < sum(matplotlib.colors.to_rgb(base))


def test_heatmaps_default_to_a_colour_blind_safe_map():
    ax = viz.attention_heatmap(torch.softmax(torch.randn(3, 4), -1))
    assert ax.images[0].get_cmap().name == "viridis"
    fig = viz.head_grid(torch.softmax(torch.randn(1, 2, 3, 3), -1))
    assert all(a.images[0].get_cmap().name == "viridis" for a in fig.axes if a.images)
    plt.close("all")
