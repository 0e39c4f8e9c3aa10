"""The terms set in bold in the book, in reading order, and the glossary entries that define them.

The book sets a term in **bold** where it defines it. ``book/glossary.md`` must have an entry
for every such term that links to the chapter that defines it, the first chapter of
``_toc.yml`` in which it is bold. ``tests/test_glossary.py`` checks both with this module.

Not every bold phrase is a term: a paragraph may open with a bold lead-in ("**Padding.**"), and
a word may be bold for emphasis ("**not**"). Lead-ins end in ``.``, ``:`` or ``?``; bold that
contains math is a claim, not a name; the rest of the emphasis is listed in ``NOT_TERMS``,
chapter by chapter.

A bold adjective is defined by the entry of the noun phrase it qualifies: the text's
"**Global** attention" or "**causal** and **padding** masks" are covered by the entries
"Global attention", "Causal mask" and "Padding mask" (the nouns are in ``HEADS``).

    python scripts/glossary_terms.py            # every term and the chapter that defines it
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import book_text  # noqa: E402

ROOT = book_text.ROOT
GLOSSARY = "book/glossary"

# Code blocks, display and inline math and inline code are skipped; bold is matched where it
# starts first, so "**`attnbook` package**" is bold and "`h**2`" is code. Bold does not cross a
# blank line.
_TOKEN = re.compile(
    r"```.*?```"
    r"|\$\$.*?\$\$"
    r"|\*\*(?=\S)((?:(?!\n[ \t]*\n).)+?)(?<=\S)\*\*"
    r"|`[^`\n]*`"
    r"|\$[^$\n]+\$",
    re.DOTALL,
)
_LEAD_IN = (".", ":", "?")

# Nouns a bold adjective may qualify: "**additive** score" is the glossary's "Additive score".
HEADS = ("attention", "score", "mask", "encoding", "embedding", "positional embedding",
         "positional encoding", "lookup", "sampling", "decoding", "model", "pattern", "layer",
         "regression", "output")

# Bold phrases that are emphasis or headings, not terms: chapter -> phrases (normalised when read).
NOT_TERMS: dict[str, set[str]] = {
    "book/intro": {
        "look back",                              # the informal promise of attention
        "Part I, Where attention comes from",     # part titles
        "Part II, Attention is all you need",
    },
    "book/first_look": {
        "cat",                                    # the word the example resolves *it* to
        "animate", "inanimate",                   # the toy example's four hand-named features
        "verb or adjective", "function word",
    },
    "book/history": {
        "soft, learned alignment",                # restates soft alignment
        "global and local attention",             # list items naming Global and Local attention
        "global and local",
        "dropping recurrence", "dropped recurrence",   # milestones of the story, not terms
        "pretraining at scale",
        "the quadratic cost and its fixes", "quadratic",
        "one vector",                             # emphasis on the bottleneck
        "memories",                               # "images, speech and memories"
    },
    "book/soft_lookup": {
        "every",                                  # "compares the query with every key"
        "learning", "learned",                    # emphasis: learning the bandwidth, learned keys
        "mask out the diagonal", "masking the diagonal",   # an instruction and its summary
    },
    "book/nmt_attention": {
        "current",                                # Luong attends with the current state
        "one", "add",
        "per output step", "over source positions",
    },
    "book/self_attention": {
        "left",                                   # pads on the left
        "an empty row gives zero weights and a zero output",   # the book's convention, a claim
    },
    "book/multi_head": {"one", "adding", "least", "most", "whatever the number of heads"},
    "book/positions": {"not", "no"},
    "book/gpt": {"no induction head", "without"},
    "book/attention_cost": {
        "one thread", "CPU time of our thread", "fastest",   # how the chapter measures
        "Time", "Memory",                         # lead-ins of the two panels
        "The output and the inputs are linear",   # a claim
        "memory",                                 # "Attention's memory need not be quadratic"
    },
    "book/flash_from_scratch": {
        "exactly the same output", "merges two partial softmaxes", "together in one pass",
        "once, at the end", "entirely", "without autograd", "skips", "affine",
        "Proof",                                  # lead-in
        "recomputes",                             # the verb; the entry is "Recomputing"
    },
    "book/triton_kernel": {"one program", "transposed", "once"},
    "book/beyond_quadratic": {"Exact attention does not need quadratic memory"},   # a claim
}


@dataclass(frozen=True)
class Bold:
    """One bold phrase of the book: where it is and its text as written."""

    docname: str
    text: str

    @property
    def key(self) -> str:
        return normalise(self.text)


def normalise(phrase: str) -> str:
    """The form in which a bold phrase and a glossary term are compared: lower case, no code
    ticks, no parentheses ("Key-value (KV) cache", "Multi-query attention (MQA)"), hyphens as spaces, no
    surrounding punctuation, and the last word singular ("keys" -> "key")."""
    text = phrase.replace("`", "").lower()
    text = re.sub(r"\s*\([^()]*\)", "", text)
    text = re.sub(r"[\s-]+", " ", text).strip(" .,:;!?'\"()")
    words = text.split(" ")
    if len(words[-1]) > 3 and words[-1].endswith("s") and not words[-1].endswith("ss"):
        words[-1] = words[-1][:-1]
    return " ".join(words)


def bold_phrases(text: str) -> list[str]:
    """The bold phrases of a markdown text, in order."""
    return [m[1] for m in _TOKEN.finditer(text) if m[1] is not None]


def is_term(bold: Bold) -> bool:
    """False for lead-ins, claims with math, substitutions and the listed emphasis."""
    text = bold.text.strip()
    if text.endswith(_LEAD_IN) or "$" in text or "{{" in text:
        return False
    return bold.key not in {normalise(p) for p in NOT_TERMS.get(bold.docname, ())}


def book_bold(root: Path = ROOT, docs: list[str] | None = None) -> list[Bold]:
    """Every bold phrase that names a term, in reading order (the glossary itself excluded)."""
    found = []
    for docname in docs if docs is not None else book_text.toc_documents(root):
        if docname == GLOSSARY:
            continue
        for block in book_text.markdown_blocks(book_text.document_path(docname, root)):
            found += [b for b in (Bold(docname, p) for p in bold_phrases(block)) if is_term(b)]
    return found


@dataclass
class Entry:
    """One glossary entry: its terms (one per line) and the chapters its definition links to."""

    terms: list[str]
    links: list[str]  # docnames, in the order the definition names them

    def covers(self, bold_key: str) -> str | None:
        """How the entry defines a bold phrase: "exact", "head" (the phrase qualifies one of
        HEADS and the entry names the compound) or None."""
        keys = {normalise(t) for t in self.terms}
        if bold_key in keys:
            return "exact"
        if any(f"{bold_key} {head}" in keys for head in HEADS):
            return "head"
        return None


_DOC = re.compile(r"\{doc\}`([^`<]+?)`|\{doc\}`[^`<]*<([^`>]+)>`")


def glossary_entries(path: Path | None = None) -> list[Entry]:
    """The entries of the ``{glossary}`` directive of a MyST file: unindented lines are terms,
    indented lines the definition; ``{doc}`` links are resolved relative to the file's folder."""
    path = path or ROOT / f"{GLOSSARY}.md"
    text = path.read_text(encoding="utf-8")
    block = re.search(r"^```\{glossary\}[^\n]*\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    if block is None:
        raise ValueError(f"no ```{{glossary}} directive in {path}")
    folder = path.parent.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else "book"
    entries: list[Entry] = []
    in_definition = False
    for line in block[1].splitlines():
        if not line.strip() or line.startswith(":"):
            continue
        if line[0] in " \t":
            in_definition = True
            for m in _DOC.finditer(line):
                target = m[1] or m[2]
                entries[-1].links.append(target.lstrip("/") if target.startswith("/")
                                         else f"{folder}/{target}")
            continue
        if in_definition or not entries:
            entries.append(Entry([], []))
            in_definition = False
        entries[-1].terms.append(line.strip())
    return entries


def first_chapters(entries: list[Entry], bold: list[Bold]) -> dict[int, str]:
    """Entry index -> the first document, in reading order, in which the entry covers a bold
    phrase (exactly or as the noun a bold adjective qualifies)."""
    found: dict[int, str] = {}
    for i, entry in enumerate(entries):
        doc = next((b.docname for b in bold if entry.covers(b.key)), None)
        if doc is not None:
            found[i] = doc
    return found


def main() -> None:
    bold = book_bold()
    seen: dict[str, str] = {}
    for b in bold:
        seen.setdefault(b.key, b.docname)
    for key, docname in seen.items():
        print(f"{docname:28s} {key}")


if __name__ == "__main__":
    main()
