"""attnbook.viz.decoder_only_diagram: the boxes and labels a reader needs are drawn, in order
from the tokens at the bottom to the softmax at the top, and bad options are refused."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from attnbook import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(ax) -> list[tuple[float, str]]:
    return sorted((t.get_position()[1], t.get_text()) for t in ax.texts)


def test_boxes_from_tokens_to_softmax():
    ax = viz.decoder_only_diagram(num_layers=4)
    texts = [t for _, t in _texts(ax)]
    order = ["tokens", "token embedding", "learned", "self-attention", "feed-forward",
             "final LayerNorm", "linear", "softmax"]
    heights = [next(y for y, t in _texts(ax) if key in t) for key in order]
    assert heights == sorted(heights) and len(set(heights)) == len(heights)
    assert sum("LayerNorm" in t for t in texts) == 3
    assert any("4" in t for t in texts)  # the repeat count
    kinds = [p.get_gid() for p in ax.patches if p.get_gid()]
    assert kinds.count("norm") == 3 and kinds.count("attn") == 1 and kinds.count("ffn") == 1
    assert any("sqrt{d}" in t for t in texts) and any("W_{out}" in t for t in texts)


def test_gpt2_and_rope_variants():
    ax = viz.decoder_only_diagram(scale_embedding=False, tied=True)
    texts = [t for _, t in _texts(ax)]
    assert not any("sqrt{d}" in t for t in texts) and any("tied" in t for t in texts)
    assert any("N" in t for t in texts)
    ax = viz.decoder_only_diagram(positional="rope")
    texts = [t for _, t in _texts(ax)]
    assert any("RoPE" in t for t in texts) and not any("p_t" in t for t in texts)


def test_bad_options():
    with pytest.raises(ValueError, match="positional"):
        viz.decoder_only_diagram(positional="absolute")
    with pytest.raises(ValueError, match="num_layers"):
        viz.decoder_only_diagram(num_layers=0)


def _gids(ax) -> list[str]:
    return [p.get_gid() for p in ax.patches if p.get_gid()]


def _arrow_by_gid(ax, gid):
    return next(t for t in ax.texts if t.get_gid() == gid)


def _box_at(ax, xy):
    """The diagram box (a patch with a gid) that contains the point ``xy``."""
    for p in ax.patches:
        if p.get_gid() and p.get_path().transformed(p.get_patch_transform()).contains_point(xy, radius=0.05):
            return p
    return None


def _text_in(ax, patch):
    bbox = patch.get_extents().transformed(ax.transData.inverted())
    return " ".join(t.get_text() for t in ax.texts if bbox.contains(*t.get_position()))


@pytest.mark.parametrize("style, source, query", [("bahdanau", "previous state", "s}_{t-1}"),
                                                  ("luong", "GRU step", "h}_t")])
def test_seq2seq_query_comes_from_the_right_state(style, source, query):
    ax = viz.seq2seq_attention_diagram(style)
    texts = " ".join(t for _, t in _texts(ax))
    assert "bidirectional GRU" in texts and "alpha_{ti}" in texts and "c}_t" in texts
    # the query line begins at the decoder state (Bahdanau: s_{t-1}, before the step; Luong: the
    # GRU's new state h_t) and its arrow ends at the score box
    line = next(ln for ln in ax.lines if ln.get_gid() == "query")
    start = _box_at(ax, line.get_xydata()[0])
    assert start is not None and source in _text_in(ax, start)
    end = _box_at(ax, _arrow_by_gid(ax, "query").xy)
    assert end is not None and end.get_gid() == "attn" and "score" in _text_in(ax, end)
    assert any(query in t.get_text() and "query" in t.get_text() for t in ax.texts)
    context = _arrow_by_gid(ax, "context")
    target = _box_at(ax, context.xy)
    assert target is not None and target.get_gid() == "ffn"
    if style == "bahdanau":  # the context is an input of the recurrence
        assert "GRU" in _text_in(ax, target)
    else:  # the context is combined with h_t after the recurrence, into h~_t
        assert "W_c" in _text_in(ax, target) and "tilde" in _text_in(ax, target)
        assert "GRU" not in _text_in(ax, target)


def test_transformer_block_norm_placement():
    for norm_first in (True, False):
        ax = viz.transformer_block_diagram(norm_first=norm_first)
        kinds = _gids(ax)
        assert kinds.count("norm") == 2 and kinds.count("attn") == 1 and kinds.count("ffn") == 1
        texts = _texts(ax)
        heights = {key: [y for y, t in texts if key in t] for key in ("LayerNorm", "self-attention", "feed-forward")}
        attn, ffn = heights["self-attention"][0], heights["feed-forward"][0]
        norms = heights["LayerNorm"]
        if norm_first:  # each LayerNorm just below its sublayer
            assert norms[0] < attn < norms[1] < ffn
        else:  # each LayerNorm after its residual sum
            assert attn < norms[0] < ffn < norms[1]
        label = "pre-norm" if norm_first else "post-norm"
        assert any(label in t for _, t in texts)


def test_transformer_whole_model():
    ax = viz.transformer_diagram(3, 2)
    texts = [t for _, t in _texts(ax)]
    assert any("$\\times$ 3" in t for t in texts) and any("$\\times$ 2" in t for t in texts)
    for key in ("source", "target", "masked multi-head", "cross-attention", "W_{out}", "softmax",
                "memory"):
        assert any(key in t for t in texts), key
    assert sum("final LayerNorm" in t for t in texts) == 2
    assert sum("positions" in t for t in texts) == 2
    kinds = _gids(ax)
    assert kinds.count("attn") == 3 and kinds.count("ffn") == 2
    memory = _arrow_by_gid(ax, "memory")
    assert "cross-attention" in _text_in(ax, _box_at(ax, memory.xy))
    post = viz.transformer_diagram(norm_first=False)
    assert not any("final LayerNorm" in t for _, t in _texts(post))


@pytest.mark.parametrize("num_heads, drawn", [(1, 1), (4, 4), (8, 3)])
def test_multi_head_split_attend_concat_project(num_heads, drawn):
    ax = viz.multi_head_diagram(num_heads)
    assert _gids(ax).count("attn") == drawn
    xs = {}
    for t in ax.texts:
        for key in ("W^Q", "split", "head 1", "concat", "W^O"):
            if key in t.get_text():
                xs.setdefault(key, t.get_position()[0])
    order = ["W^Q", "split", "head 1", "concat", "W^O"]
    assert [xs[k] for k in order] == sorted(xs[k] for k in order)
    assert any(f"H = {num_heads}" in t.get_text() for t in ax.texts)
    if num_heads > 4:
        assert any(f"head {num_heads}" in t.get_text() for t in ax.texts)


@pytest.mark.parametrize("call, name", [
    (lambda: viz.seq2seq_attention_diagram("vaswani"), "style"),
    (lambda: viz.transformer_block_diagram(norm_first="yes"), "norm_first"),
    (lambda: viz.transformer_diagram(0, 2), "num_encoder_layers"),
    (lambda: viz.transformer_diagram(2, -1), "num_decoder_layers"),
    (lambda: viz.transformer_diagram(norm_first=None), "norm_first"),
    (lambda: viz.multi_head_diagram(0), "num_heads"),
    (lambda: viz.multi_head_diagram(2.0), "num_heads"),
])
def test_new_diagrams_refuse_bad_arguments(call, name):
    with pytest.raises(ValueError, match=name):
        call()
