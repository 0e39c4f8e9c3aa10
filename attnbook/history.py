"""The history of attention as a data table: the milestones the book's history chapter tells.

Each :class:`Milestone` names one work, the year (and, where known, the month) it was first made
public (the arXiv posting when there was one, so the year can precede the venue's year in
``book/references.bib``), the idea it added in one sentence, its citation key in
``book/references.bib`` and a theme from :data:`THEMES`. :data:`MILESTONES` is sorted by
``(year, month)``. :func:`select` filters it, :func:`rows` and :func:`markdown_table` turn it
into a plain table (no pandas), and :func:`attnbook.viz.plot_timeline` draws it.

    from attnbook.history import MILESTONES, select, markdown_table
    efficient = select(themes=["efficiency"], start=2019)
    print(markdown_table(efficient, columns=("year", "work", "idea")))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields

__all__ = [
    "THEMES",
    "Milestone",
    "MILESTONES",
    "COLUMNS",
    "select",
    "rows",
    "markdown_table",
    "cite_keys",
]

#: The themes of the story, in the order the history chapter tells them (also the colour order
#: of :func:`attnbook.viz.plot_timeline`).
THEMES: tuple[str, ...] = (
    "precursors",        # kernel smoothing, the softmax, gated recurrent memory
    "alignment",         # word alignment in statistical machine translation
    "encoder-decoder",   # neural sequence-to-sequence models and their fixed-length bottleneck
    "soft attention",    # learned, differentiable alignment inside RNN models
    "vision",            # attention over images
    "memory",            # attention as content-based addressing of an external memory
    "transformer",       # self-attention without recurrence
    "pretraining",       # Transformers pretrained at scale
    "positions",         # how attention learns word order
    "efficiency",        # the quadratic cost and its fixes
)


@dataclass(frozen=True)
class Milestone:
    """One work in the history of attention.

    ``year``/``month`` (``month`` 1..12 or ``None`` when not recorded) date its first public
    version; ``work`` is a short label for plots, ``idea`` one sentence on what it added,
    ``cite_key`` its key in ``book/references.bib`` and ``theme`` one of :data:`THEMES`.
    """

    year: int
    month: int | None
    work: str
    idea: str
    cite_key: str
    theme: str

    def __post_init__(self) -> None:
        if not isinstance(self.year, int) or not 1900 <= self.year <= 2100:
            raise ValueError(f"year must be an int in [1900, 2100], got {self.year!r} for {self.work!r}")
        if self.month is not None and (not isinstance(self.month, int) or not 1 <= self.month <= 12):
            raise ValueError(f"month must be None or an int in [1, 12], got {self.month!r} for {self.work!r}")
        for name in ("work", "idea", "cite_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        if self.theme not in THEMES:
            raise ValueError(f"theme must be one of {THEMES}, got {self.theme!r} for {self.work!r}")

    @property
    def date(self) -> float:
        """The date as a fractional year (mid-month; mid-year when the month is unknown)."""
        return self.year + ((self.month - 0.5) / 12 if self.month is not None else 0.5)


_M = Milestone

#: The milestones, sorted by (year, month); an unknown month sorts first in its year.
MILESTONES: tuple[Milestone, ...] = (
    _M(1964, None, "Kernel regression (Nadaraya)",
       "Predict at a query by averaging the training targets, weighted by a kernel of the distance to each training input: attention with a fixed similarity.",
       "nadaraya1964estimating", "precursors"),
    _M(1964, None, "Kernel regression (Watson)",
       "The same kernel-weighted average found independently: weights that are positive and sum to one.",
       "watson1964smooth", "precursors"),
    _M(1990, None, "Softmax",
       "Normalised exponentials turn arbitrary scores into a probability distribution and give the operation its name.",
       "bridle1990probabilistic", "precursors"),
    _M(1993, None, "IBM alignment models",
       "Translation probabilities are factored through a hidden alignment: which source word produced each target word.",
       "brown1993mathematics", "alignment"),
    _M(1996, None, "HMM word alignment",
       "Alignment probabilities depend on the jump from the previous aligned position, a relative-position prior.",
       "vogel1996hmm", "alignment"),
    _M(1997, 11, "LSTM",
       "Gated memory cells let recurrent networks carry information across long sequences.",
       "hochreiter1997long", "precursors"),
    _M(2013, 8, "Soft window (handwriting)",
       "A soft, differentiable window over the text lets a network decide which character it is writing.",
       "graves2013generating", "soft attention"),
    _M(2013, 10, "Continuous translation",
       "A neural network encodes the whole source sentence and generates its translation from that encoding.",
       "kalchbrenner2013recurrent", "encoder-decoder"),
    _M(2014, 6, "RNN encoder-decoder",
       "A recurrent encoder compresses the source into one fixed-length vector that a recurrent decoder expands.",
       "cho2014learning", "encoder-decoder"),
    _M(2014, 6, "Visual glimpses",
       "A network chooses where to look next in an image, a hard glimpse trained with reinforcement learning.",
       "mnih2014recurrent", "vision"),
    _M(2014, 9, "Sequence to sequence",
       "Deep LSTMs map a sentence to a vector and back; reversing the source shortens the paths that matter.",
       "sutskever2014sequence", "encoder-decoder"),
    _M(2014, 9, "Align and translate",
       "The decoder computes a soft alignment over all encoder states at every step, removing the fixed-length bottleneck.",
       "bahdanau2015neural", "soft attention"),
    _M(2014, 9, "The bottleneck measured",
       "Encoder-decoder translation quality falls quickly as sentences grow longer.",
       "cho2014properties", "encoder-decoder"),
    _M(2014, 10, "Neural Turing machines",
       "A controller reads and writes an external memory through content- and location-based soft addressing.",
       "graves2014neural", "memory"),
    _M(2014, 10, "Memory networks",
       "A model answers questions by retrieving supporting facts from a long-term memory.",
       "weston2015memory", "memory"),
    _M(2015, 2, "Show, attend and tell",
       "A caption generator attends over a grid of convolutional features, softly or with hard samples.",
       "xu2015show", "vision"),
    _M(2015, 3, "End-to-end memory nets",
       "Memory lookups become a softmax over key-value memories, trained end to end, with several hops.",
       "sukhbaatar2015end", "memory"),
    _M(2015, 6, "Pointer networks",
       "The attention distribution itself is the output: the model points at positions of its input.",
       "vinyals2015pointer", "memory"),
    _M(2015, 6, "Speech attention",
       "Location-aware attention aligns long audio sequences with their transcripts.",
       "chorowski2015attention", "soft attention"),
    _M(2015, 8, "Global and local attention",
       "Dot, general and concat scores; attending to all source words or to a predicted window.",
       "luong2015effective", "soft attention"),
    _M(2016, 1, "Intra-attention",
       "A sequence attends over its own earlier states while reading, an early form of self-attention.",
       "cheng2016long", "soft attention"),
    _M(2016, 6, "Decomposable attention",
       "Attention alone, without recurrence, aligns two sentences well enough for inference.",
       "parikh2016decomposable", "soft attention"),
    _M(2017, 3, "Self-attentive embedding",
       "Several attention distributions over one sentence's states give a matrix-valued sentence embedding.",
       "lin2017structured", "soft attention"),
    _M(2017, 5, "ConvS2S",
       "Convolutions replace recurrence in both encoder and decoder, with attention in every decoder layer.",
       "gehring2017convolutional", "transformer"),
    _M(2017, 6, "Transformer",
       "Scaled dot-product self-attention with multiple heads replaces recurrence entirely.",
       "vaswani2017attention", "transformer"),
    _M(2018, 3, "Relative positions",
       "Self-attention scores gain learned terms that depend on the distance between two tokens.",
       "shaw2018self", "positions"),
    _M(2018, 5, "Online softmax",
       "A softmax's normaliser can be computed in one streaming pass, the key to tiled attention.",
       "milakov2018online", "efficiency"),
    _M(2018, 6, "GPT",
       "A decoder-only Transformer pretrained as a language model transfers to many tasks.",
       "radford2018improving", "pretraining"),
    _M(2018, 10, "BERT",
       "A bidirectional Transformer encoder pretrained by filling in masked words.",
       "devlin2019bert", "pretraining"),
    _M(2019, 1, "Transformer-XL",
       "Segment-level recurrence and relative positions give attention a context beyond a fixed length.",
       "dai2019transformer", "positions"),
    _M(2019, 2, "GPT-2",
       "Scaling the decoder-only language model yields zero-shot task abilities.",
       "radford2019language", "pretraining"),
    _M(2019, 2, "Attention is not explanation",
       "In NLP models with recurrent encoders, attention weights often disagree with gradient and leave-one-out importance, and very different weights can give the same prediction.",
       "jain2019attention", "soft attention"),
    _M(2019, 4, "Sparse Transformer",
       "Fixed sparse attention patterns cut the cost from quadratic to about n times root n.",
       "child2019generating", "efficiency"),
    _M(2019, 8, "Attention is not not explanation",
       "Weights swapped in after training prove little about a model trained with its own; tests that respect this find attention informative for some tasks and not others.",
       "wiegreffe2019attention", "soft attention"),
    _M(2019, 11, "Multi-query",
       "All heads share one key and value head, shrinking the memory read at each decoding step.",
       "shazeer2019fast", "efficiency"),
    _M(2020, 1, "Reformer",
       "Locality-sensitive hashing groups similar queries and keys so each attends within its bucket.",
       "kitaev2020reformer", "efficiency"),
    _M(2020, 4, "Longformer",
       "Sliding-window attention plus a few global tokens scales linearly with document length.",
       "beltagy2020longformer", "efficiency"),
    _M(2020, 5, "GPT-3",
       "A 175-billion-parameter language model learns new tasks from examples in its prompt.",
       "brown2020language", "pretraining"),
    _M(2020, 6, "Linformer",
       "Keys and values are projected to a fixed length, making attention linear in sequence length.",
       "wang2020linformer", "efficiency"),
    _M(2020, 6, "Linear attention",
       "A kernel feature map replaces the exponential of the scores, so attention, normaliser included, can be computed as a recurrence.",
       "katharopoulos2020transformers", "efficiency"),
    _M(2020, 7, "Big Bird",
       "Window, global and random attention together approximate full attention at linear cost.",
       "zaheer2020bigbird", "efficiency"),
    _M(2020, 9, "Performer",
       "Random features give an unbiased linear-cost estimate of softmax attention.",
       "choromanski2021rethinking", "efficiency"),
    _M(2020, 10, "Vision Transformer",
       "An image cut into 16x16 patches is a sequence, and a plain Transformer classifies it.",
       "dosovitskiy2021image", "vision"),
    _M(2021, 4, "RoPE",
       "Rotating queries and keys by position-dependent angles makes scores depend on the positions only through their offset.",
       "su2021roformer", "positions"),
    _M(2021, 8, "ALiBi",
       "A linear distance penalty added to the scores lets models extrapolate to longer inputs.",
       "press2022train", "positions"),
    _M(2021, 12, "Chunked attention",
       "Working through the keys in chunks with a running softmax makes exact attention need far less than O(n^2) memory.",
       "rabe2021self", "efficiency"),
    _M(2022, 5, "FlashAttention",
       "Exact attention tiled to stay in fast on-chip memory, never writing the n x n matrix.",
       "dao2022flashattention", "efficiency"),
    _M(2022, 11, "Scaling inference",
       "Partitioning and multi-query attention for serving large Transformers at low latency.",
       "pope2023efficiently", "efficiency"),
    _M(2023, 5, "GQA",
       "Groups of query heads share key/value heads, between multi-head and multi-query attention.",
       "ainslie2023gqa", "efficiency"),
    _M(2023, 7, "FlashAttention-2",
       "Better work partitioning across the GPU brings tiled attention closer to peak throughput.",
       "dao2023flashattention2", "efficiency"),
    _M(2024, 7, "FlashAttention-3",
       "Overlapping data movement with computation, and optional FP8 arithmetic, fit tiled attention to Hopper GPUs.",
       "shah2024flashattention3", "efficiency"),
)

#: The column names of :func:`rows` (the fields of :class:`Milestone`, in order).
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Milestone))


def _sort_key(m: Milestone) -> tuple[int, int]:
    return (m.year, 0 if m.month is None else m.month)


def select(
    milestones: Iterable[Milestone] = MILESTONES,
    *,
    themes: Iterable[str] | None = None,
    start: int | None = None,
    end: int | None = None,
) -> tuple[Milestone, ...]:
    """The milestones whose theme is in ``themes`` (all when ``None``) and whose year lies in
    ``[start, end]`` (open when ``None``), sorted by date.

    Raises ``ValueError`` for a theme that is not in :data:`THEMES` or ``start > end``.
    """
    wanted = None if themes is None else tuple(themes)
    if wanted is not None:
        unknown = [t for t in wanted if t not in THEMES]
        if unknown:
            raise ValueError(f"themes must be drawn from {THEMES}, got unknown {unknown}")
    if start is not None and end is not None and start > end:
        raise ValueError(f"start must be <= end, got start={start}, end={end}")
    chosen = [
        m for m in milestones
        if (wanted is None or m.theme in wanted)
        and (start is None or m.year >= start)
        and (end is None or m.year <= end)
    ]
    return tuple(sorted(chosen, key=_sort_key))


def _check_columns(columns: Sequence[str]) -> None:
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown or not columns:
        raise ValueError(f"columns must be a non-empty selection of {COLUMNS}, got {tuple(columns)}")


def rows(
    milestones: Iterable[Milestone] = MILESTONES, columns: Sequence[str] = COLUMNS
) -> list[tuple]:
    """The table as a list of tuples: a header row (the column names) then one row per milestone.

    ``columns`` picks and orders the fields (default: all of :data:`COLUMNS`).
    """
    _check_columns(columns)
    index = [COLUMNS.index(c) for c in columns]
    body = [tuple(astuple(m)[i] for i in index) for m in milestones]
    return [tuple(columns), *body]


def markdown_table(
    milestones: Iterable[Milestone] = MILESTONES,
    columns: Sequence[str] = ("year", "work", "idea", "theme"),
    cite: bool = False,
) -> str:
    """A Markdown (pipe) table of the milestones. ``cite=True`` adds a column with the MyST
    citation ``{cite:p}`key``` of each row (rendered as a reference by the book). A month of
    ``None`` shows as an empty cell; ``|`` inside a cell is escaped."""
    milestones = tuple(milestones)
    table = rows(milestones, columns)
    header, body = table[0], table[1:]
    keys = [m.cite_key for m in milestones]

    def cell(value: object) -> str:
        return "" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + (" | reference |" if cite else " |"),
             "|" + "---|" * (len(header) + int(cite))]
    for i, row in enumerate(body):
        extra = f" | {{cite:p}}`{keys[i]}` |" if cite else " |"
        lines.append("| " + " | ".join(cell(v) for v in row) + extra)
    return "\n".join(lines)


def cite_keys(milestones: Iterable[Milestone] = MILESTONES) -> list[str]:
    """The citation keys of the milestones, in order, without repeats."""
    return list(dict.fromkeys(m.cite_key for m in milestones))
