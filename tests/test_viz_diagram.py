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
