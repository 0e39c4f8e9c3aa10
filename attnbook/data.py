"""Tasks generated in code, a character ``Vocab``, padded batches and a local corpus loader.

Every generator takes a ``seed`` and uses its own ``random.Random(seed)``, so the same call
returns the same pairs on every machine, without touching the global random state. Nothing here
reaches the network: real corpora are read from a local file (:func:`load_sentence_pairs`).

Pairs are ``(source, target)`` strings; :func:`make_batch` turns a list of pairs into padded
``LongTensor``s with boolean masks (``True`` = a real token, the mask convention of the package).
"""

from __future__ import annotations

import datetime as _dt
import random
import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from ._validate import require

__all__ = [
    "PAD", "BOS", "EOS", "UNK", "SPECIALS", "Vocab",
    "DATE_FORMATS", "format_date", "date_range", "date_pairs", "date_splits",
    "random_strings", "copy_pairs", "reverse_pairs", "sort_pairs", "addition_pairs",
    "caesar", "cipher_pairs",
    "Batch", "make_batch", "BatchIterator", "load_sentence_pairs",
]

# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

#: Indices of the four special symbols that every :class:`Vocab` starts with.
PAD, BOS, EOS, UNK = 0, 1, 2, 3
#: The special symbols' names, in index order.
SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")


class Vocab:
    """A character vocabulary: four specials (``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2,
    ``<unk>`` = 3) followed by the characters in sorted order.

    ``encode("ab", bos=True, eos=True) -> [1, i_a, i_b, 2]``; unknown characters map to ``unk``.
    ``decode`` stops at the first ``<eos>`` and drops the other specials.
    """

    pad, bos, eos, unk = PAD, BOS, EOS, UNK

    def __init__(self, chars: Iterable[str]) -> None:
        chars = sorted(set(chars))
        for c in chars:
            require(
                isinstance(c, str) and len(c) == 1,
                f"chars must be single characters, got {c!r}",
            )
        self.itos: list[str] = list(SPECIALS) + chars
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Vocab:
        """The vocabulary of every character that occurs in ``texts``."""
        texts = list(texts)
        require(all(isinstance(t, str) for t in texts), "texts must be an iterable of str")
        return cls(c for t in texts for c in t)

    @classmethod
    def from_alphabet(cls, alphabet: str | Iterable[str]) -> Vocab:
        """The vocabulary of the characters of ``alphabet`` (e.g. ``string.ascii_lowercase``)."""
        return cls(alphabet)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, char: str) -> bool:
        return char in self.stoi

    def __repr__(self) -> str:
        return f"Vocab({len(self)} symbols: {''.join(self.itos[len(SPECIALS):])!r})"

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Indices of the characters of ``text``, optionally framed by ``<bos>`` / ``<eos>``."""
        require(isinstance(text, str), f"text must be a str, got {type(text).__name__}")
        ids = [self.stoi.get(c, UNK) for c in text]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids: Iterable[int] | torch.Tensor, strip_specials: bool = True) -> str:
        """The text of ``ids``: stops at the first ``<eos>``; drops ``<pad>``/``<bos>``
        (and shows ``<unk>`` as ``"?"``) unless ``strip_specials=False``."""
        if isinstance(ids, torch.Tensor):
            require(ids.dim() == 1, f"ids must be 1-D, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        out = []
        for i in ids:
            i = int(i)
            require(0 <= i < len(self), f"ids contains {i}, outside the vocabulary of {len(self)}")
            if strip_specials:
                if i == EOS:
                    break
                if i in (PAD, BOS):
                    continue
                out.append("?" if i == UNK else self.itos[i])
            else:
                out.append(self.itos[i])
        return "".join(out)

    def decode_batch(self, ids: torch.Tensor) -> list[str]:
        """``decode`` for each row of a ``(B, L)`` tensor."""
        require(isinstance(ids, torch.Tensor) and ids.dim() == 2,
                f"ids must be a 2-D tensor, got {getattr(ids, 'shape', type(ids).__name__)}")
        return [self.decode(row) for row in ids]


# ---------------------------------------------------------------------------------------------
# Date translation: many human formats -> ISO 8601 (YYYY-MM-DD)
# ---------------------------------------------------------------------------------------------

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _ordinal(n: int) -> str:
    """``1 -> "1st"``, ``2 -> "2nd"``, ``11 -> "11th"``, ``23 -> "23rd"``."""
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# name -> formatter. The names say the field order; "/" always means month/day (US order)
# and "." with the year last always means day.month (European order), so no string is ambiguous
# inside the date range (two-digit years: 50-99 -> 19xx, 00-49 -> 20xx).
#: Human date formats by name (the names say the field order): ``name -> formatter(date)``.
#:
#: :meta hide-value:
DATE_FORMATS: dict[str, Callable[[_dt.date], str]] = {
    "d B Y": lambda d: f"{d.day} {_MONTHS[d.month - 1]} {d.year}",           # 3 March 1997
    "mm/dd/yy": lambda d: f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}",  # 03/03/97
    "A, B d, Y": lambda d: f"{_DAYS[d.weekday()]}, {_MONTHS[d.month - 1]} {d.day}, {d.year}",
    "b d Y (lower)": lambda d: f"{_MONTHS[d.month - 1][:3].lower()} {d.day} {d.year}",  # mar 3 1997
    "Y.m.d": lambda d: f"{d.year}.{d.month}.{d.day}",                        # 1997.3.3
    "dth of B, Y": lambda d: f"{_ordinal(d.day)} of {_MONTHS[d.month - 1]}, {d.year}",
    "B d, Y (upper)": lambda d: f"{_MONTHS[d.month - 1].upper()} {d.day}, {d.year}",  # MARCH 3, 1997
    "dd.mm.YYYY": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",           # 03.03.1997
    "d b yy": lambda d: f"{d.day} {_MONTHS[d.month - 1][:3]} {d.year % 100:02d}",  # 3 Mar 97
    "B dth, Y": lambda d: f"{_MONTHS[d.month - 1]} {_ordinal(d.day)}, {d.year}",  # March 3rd, 1997
    "a d b Y": lambda d: f"{_DAYS[d.weekday()][:3]} {d.day} {_MONTHS[d.month - 1][:3]} {d.year}",
    "YYYYmmdd": lambda d: f"{d.year}{d.month:02d}{d.day:02d}",               # 19970303
    "m/d/Y": lambda d: f"{d.month}/{d.day}/{d.year}",                        # 3/3/1997
}


def format_date(date: _dt.date, fmt: str) -> str:
    """``date`` written in the human format named ``fmt`` (a key of :data:`DATE_FORMATS`)."""
    require(isinstance(date, _dt.date), f"date must be a datetime.date, got {type(date).__name__}")
    require(fmt in DATE_FORMATS, f"fmt must be one of {sorted(DATE_FORMATS)}, got {fmt!r}")
    return DATE_FORMATS[fmt](date)


def date_range(start_year: int = 1950, end_year: int = 2049) -> list[_dt.date]:
    """Every calendar day from 1 January ``start_year`` to 31 December ``end_year``."""
    require(
        isinstance(start_year, int) and isinstance(end_year, int) and 1 <= start_year <= end_year <= 9999,
        f"start_year and end_year must be ints with 1 <= start_year <= end_year <= 9999, "
        f"got {start_year!r}, {end_year!r}",
    )
    require(
        end_year - start_year < 100,
        f"the range must span at most 100 years (two-digit years), got {start_year}-{end_year}",
    )
    first, last = _dt.date(start_year, 1, 1), _dt.date(end_year, 12, 31)
    return [first + _dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _check_formats(formats: Sequence[str] | None) -> list[str]:
    formats = list(DATE_FORMATS) if formats is None else list(formats)
    require(len(formats) > 0, "formats must not be empty")
    bad = [f for f in formats if f not in DATE_FORMATS]
    require(not bad, f"formats has unknown names {bad}; known: {sorted(DATE_FORMATS)}")
    return formats


def _pairs_for(dates: Sequence[_dt.date], n: int, rng: random.Random,
               formats: list[str]) -> list[tuple[str, str]]:
    return [
        (format_date(d, rng.choice(formats)), d.isoformat())
        for d in (rng.choice(dates) for _ in range(n))
    ]


def date_pairs(n: int, seed: int = 0, formats: Sequence[str] | None = None,
               start_year: int = 1950, end_year: int = 2049) -> list[tuple[str, str]]:
    """``n`` pairs ``("3 March 1997", "1997-03-03")``: a random day of the range written in a
    random format of ``formats`` (default: all of :data:`DATE_FORMATS`)."""
    require(isinstance(n, int) and n >= 0, f"n must be a non-negative int, got {n!r}")
    formats = _check_formats(formats)
    return _pairs_for(date_range(start_year, end_year), n, random.Random(seed), formats)


def date_splits(n_train: int, n_test: int, seed: int = 0, test_fraction: float = 0.2,
                formats: Sequence[str] | None = None, start_year: int = 1950,
                end_year: int = 2049) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Train and test pairs whose DATES never overlap.

    The days of the range are shuffled (with ``seed``) and split: a ``test_fraction`` of them is
    reserved for the test set, so a test date is never seen in training in any format.
    """
    require(isinstance(n_train, int) and n_train >= 0, f"n_train must be a non-negative int, got {n_train!r}")
    require(isinstance(n_test, int) and n_test >= 0, f"n_test must be a non-negative int, got {n_test!r}")
    require(0.0 < test_fraction < 1.0, f"test_fraction must be in (0, 1), got {test_fraction!r}")
    formats = _check_formats(formats)
    rng = random.Random(seed)
    days = date_range(start_year, end_year)
    rng.shuffle(days)
    n_held = max(1, round(test_fraction * len(days)))
    test_days, train_days = days[:n_held], days[n_held:]
    return _pairs_for(train_days, n_train, rng, formats), _pairs_for(test_days, n_test, rng, formats)


# ---------------------------------------------------------------------------------------------
# Algorithmic tasks
# ---------------------------------------------------------------------------------------------

def _check_lengths(min_len: int, max_len: int) -> None:
    require(
        isinstance(min_len, int) and isinstance(max_len, int) and 1 <= min_len <= max_len,
        f"min_len and max_len must be ints with 1 <= min_len <= max_len, got {min_len!r}, {max_len!r}",
    )


def random_strings(n: int, seed: int = 0, min_len: int = 1, max_len: int = 10,
                   alphabet: str = string.ascii_lowercase) -> list[str]:
    """``n`` strings of uniform random length in ``[min_len, max_len]`` over ``alphabet``."""
    require(isinstance(n, int) and n >= 0, f"n must be a non-negative int, got {n!r}")
    _check_lengths(min_len, max_len)
    require(len(alphabet) > 0, "alphabet must not be empty")
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(min_len, max_len)))
            for _ in range(n)]


def copy_pairs(n: int, seed: int = 0, min_len: int = 1, max_len: int = 10,
               alphabet: str = "abcdefghij") -> list[tuple[str, str]]:
    """``("cab", "cab")``: the target is the source."""
    return [(s, s) for s in random_strings(n, seed, min_len, max_len, alphabet)]


def reverse_pairs(n: int, seed: int = 0, min_len: int = 1, max_len: int = 10,
                  alphabet: str = "abcdefghij") -> list[tuple[str, str]]:
    """``("cab", "bac")``: the target is the source reversed."""
    return [(s, s[::-1]) for s in random_strings(n, seed, min_len, max_len, alphabet)]


def sort_pairs(n: int, seed: int = 0, min_len: int = 1, max_len: int = 10,
               alphabet: str = "abcdefghij") -> list[tuple[str, str]]:
    """``("cab", "abc")``: the target is the source's characters in sorted order."""
    return [(s, "".join(sorted(s))) for s in random_strings(n, seed, min_len, max_len, alphabet)]


def addition_pairs(n: int, seed: int = 0, max_digits: int = 3) -> list[tuple[str, str]]:
    """``("123+45", "168")``: two numbers of 1..``max_digits`` digits and their sum."""
    require(isinstance(n, int) and n >= 0, f"n must be a non-negative int, got {n!r}")
    require(isinstance(max_digits, int) and max_digits >= 1, f"max_digits must be an int >= 1, got {max_digits!r}")
    rng = random.Random(seed)

    def number() -> int:
        digits = rng.randint(1, max_digits)
        return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)

    out = []
    for _ in range(n):
        a, b = number(), number()
        out.append((f"{a}+{b}", str(a + b)))
    return out


def caesar(text: str, shift: int = 3, alphabet: str = string.ascii_lowercase) -> str:
    """Each letter of ``alphabet`` moved ``shift`` places on (cyclically); others unchanged."""
    table = {c: alphabet[(i + shift) % len(alphabet)] for i, c in enumerate(alphabet)}
    return "".join(table.get(c, c) for c in text)


def cipher_pairs(n: int, seed: int = 0, min_len: int = 5, max_len: int = 40,
                 shift: int = 3) -> list[tuple[str, str]]:
    """``("abcxyz", "defabc")``: random lowercase strings and their Caesar cipher (shift 3).

    Source and target have the same length, so accuracy can be plotted against input length.
    """
    return [(s, caesar(s, shift)) for s in random_strings(n, seed, min_len, max_len)]


# ---------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------

@dataclass
class Batch:
    """A padded batch. ``src (B, S)``; ``tgt_in (B, T)`` = ``<bos> y_1 .. y_n``;
    ``tgt_out (B, T)`` = ``y_1 .. y_n <eos>``; lengths ``(B,)``; masks bool, True = real token."""

    src: torch.Tensor          # (B, S) long
    tgt_in: torch.Tensor       # (B, T) long
    tgt_out: torch.Tensor      # (B, T) long
    src_lengths: torch.Tensor  # (B,) long
    tgt_lengths: torch.Tensor  # (B,) long, counts <eos>
    src_mask: torch.Tensor     # (B, S) bool
    tgt_mask: torch.Tensor     # (B, T) bool

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on ``device``."""
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.src.shape[0]


def _pad(rows: list[list[int]], pad: int = PAD) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)


def make_batch(pairs: Sequence[tuple[str, str]], src_vocab: Vocab,
               tgt_vocab: Vocab | None = None, device: torch.device | str | None = None) -> Batch:
    """Pad ``(source, target)`` string pairs into a :class:`Batch` (``tgt_vocab`` defaults to
    ``src_vocab``)."""
    require(len(pairs) > 0, "pairs must not be empty")
    for p in pairs:
        require(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(s, str) for s in p),
            f"pairs must hold (source, target) string pairs, got {p!r}",
        )
        require(len(p[0]) > 0, f"pairs must have non-empty sources, got {p!r}")
    tgt_vocab = src_vocab if tgt_vocab is None else tgt_vocab
    src_ids = [src_vocab.encode(s) for s, _ in pairs]
    tgt_ids = [tgt_vocab.encode(t) for _, t in pairs]
    src = _pad(src_ids)                                      # (B, S)
    tgt_in = _pad([[BOS] + t for t in tgt_ids])              # (B, T)
    tgt_out = _pad([t + [EOS] for t in tgt_ids])             # (B, T)
    src_lengths = torch.tensor([len(s) for s in src_ids])    # (B,)
    tgt_lengths = torch.tensor([len(t) + 1 for t in tgt_ids])  # (B,)
    batch = Batch(
        src=src, tgt_in=tgt_in, tgt_out=tgt_out,
        src_lengths=src_lengths, tgt_lengths=tgt_lengths,
        src_mask=torch.arange(src.shape[1]) < src_lengths[:, None],     # (B, S)
        tgt_mask=torch.arange(tgt_in.shape[1]) < tgt_lengths[:, None],  # (B, T)
    )
    return batch if device is None else batch.to(device)


class BatchIterator:
    """Shuffled padded batches of ``pairs``. Each ``iter()`` is one epoch; epoch ``e`` is
    shuffled with ``random.Random(seed + e)``, so a run is reproducible and epochs differ.

    ``for batch in BatchIterator(pairs, vocab, batch_size=64, seed=0): ...``
    """

    def __init__(self, pairs: Sequence[tuple[str, str]], src_vocab: Vocab,
                 tgt_vocab: Vocab | None = None, batch_size: int = 64, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False) -> None:
        require(len(pairs) > 0, "pairs must not be empty")
        require(isinstance(batch_size, int) and batch_size >= 1, f"batch_size must be an int >= 1, got {batch_size!r}")
        require(not (drop_last and batch_size > len(pairs)),
                f"batch_size={batch_size} > len(pairs)={len(pairs)} with drop_last=True gives no batch")
        self.pairs, self.src_vocab, self.tgt_vocab = list(pairs), src_vocab, tgt_vocab
        self.batch_size, self.seed, self.shuffle, self.drop_last = batch_size, seed, shuffle, drop_last
        self.epoch = 0

    def __len__(self) -> int:
        n, b = len(self.pairs), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[Batch]:
        order = list(range(len(self.pairs)))
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(order)
        self.epoch += 1
        for i in range(len(self)):
            chunk = [self.pairs[j] for j in order[i * self.batch_size:(i + 1) * self.batch_size]]
            yield make_batch(chunk, self.src_vocab, self.tgt_vocab)


# ---------------------------------------------------------------------------------------------
# Real corpora from a local file
# ---------------------------------------------------------------------------------------------

def _text_encoding(path: Path) -> str:
    """The codec for ``path``: UTF-16 when it starts with a UTF-16 byte-order mark, else UTF-8
    (``utf-8-sig``, which drops a UTF-8 byte-order mark)."""
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    return "utf-8-sig"


def _decode_error(path: Path, encoding: str) -> str:
    """Where ``path`` stops being ``encoding`` text: the byte and its line (read again, only
    on this error path)."""
    data = path.read_bytes()
    try:
        data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[:err.start].decode(encoding, errors="ignore").count("\n") + 1
        where = f"undecodable byte {data[err.start:err.start + 1]!r} on line {line}"
    else:  # pragma: no cover - the streaming decoder failed, so the whole-file one does too
        where = "undecodable bytes"
    return (f"path {str(path)!r} is not {encoding.removesuffix('-sig')} text: {where} "
            f"(a Latin-1 or binary file? re-save it as UTF-8)")


def load_sentence_pairs(path: str | Path, max_pairs: int | None = None) -> list[tuple[str, str]]:
    """Read ``source<TAB>target[<TAB>attribution...]`` lines (the Tatoeba / ManyThings format).

    The file is UTF-8 (a leading byte-order mark is dropped) or UTF-16 with a byte-order mark
    (decoded as such). Blank lines and lines without two non-empty fields are skipped;
    surrounding whitespace is stripped; at most ``max_pairs`` pairs are returned (all when
    ``None``).

    Raises ``ValueError`` naming ``path`` when the file is missing, is not UTF-8/UTF-16 text
    (e.g. Latin-1 or a binary file: the message gives the line), or holds no pair at all (an
    empty or wholly malformed file), rather than returning ``[]``.
    """
    require(max_pairs is None or (isinstance(max_pairs, int) and max_pairs >= 0),
            f"max_pairs must be None or a non-negative int, got {max_pairs!r}")
    path = Path(path)
    require(path.is_file(), f"path must be an existing file, got {str(path)!r}")
    encoding = _text_encoding(path)
    pairs: list[tuple[str, str]] = []
    lines = malformed = 0
    first_bad: str | None = None
    with path.open(encoding=encoding, errors="strict", newline="") as f:
        try:
            for line in f:
                if max_pairs is not None and len(pairs) >= max_pairs:
                    break
                lines += 1
                require("\x00" not in line,
                        f"path {str(path)!r} looks like a binary file, not {encoding} text "
                        f"(a NUL character on line {lines}; UTF-16 needs a byte-order mark)")
                parts = line.rstrip("\r\n").split("\t")
                src, tgt = (parts[0].strip(), parts[1].strip()) if len(parts) >= 2 else ("", "")
                if src and tgt:
                    pairs.append((src, tgt))
                elif line.strip():
                    malformed += 1
                    first_bad = first_bad or f"line {lines}: {line.strip()[:60]!r}"
        except UnicodeDecodeError as err:
            raise ValueError(_decode_error(path, encoding)) from err
    if max_pairs != 0:
        require(
            pairs,
            f"path {str(path)!r} holds no source<TAB>target pair: {lines} lines read, "
            + (f"{malformed} without two tab-separated fields (first: {first_bad})"
               if malformed else "all blank"),
        )
    return pairs


# ---------------------------------------------------------------------------------------------
# Tiny Shakespeare: a character-level language-modelling corpus shipped with the package
# ---------------------------------------------------------------------------------------------

#: sha256 of the decompressed ``tinyshakespeare.txt`` (1,115,394 characters, 65 distinct).
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
_SHAKESPEARE_FILE = "tinyshakespeare.txt.gz"


def shakespeare_text() -> str:
    """The tiny-Shakespeare corpus (Karpathy, 2015): plays by Shakespeare, concatenated.

    Read from the package data ``attnbook/resources/tinyshakespeare.txt.gz`` (never from the
    network); the sha256 of the decompressed bytes must equal :data:`SHAKESPEARE_SHA256`, else
    ``ValueError``.
    """
    import gzip
    import hashlib
    from importlib import resources

    blob = resources.files("attnbook").joinpath("resources", _SHAKESPEARE_FILE).read_bytes()
    raw = gzip.decompress(blob)
    digest = hashlib.sha256(raw).hexdigest()
    require(
        digest == SHAKESPEARE_SHA256,
        f"attnbook/resources/{_SHAKESPEARE_FILE} is corrupted: sha256 of its text is {digest}, "
        f"expected {SHAKESPEARE_SHA256}; reinstall attnbook",
    )
    return raw.decode("utf-8")


@dataclass(frozen=True)
class CharCorpus:
    """A text split for character-level language modelling: ``train`` and ``val`` are 1-D long
    tensors of token ids (``vocab.encode`` of consecutive parts of ``text``)."""

    train: torch.Tensor  # (N_train,) long
    val: torch.Tensor    # (N_val,) long
    vocab: Vocab

    def __iter__(self) -> Iterator[object]:  # train, val, vocab = corpus
        return iter((self.train, self.val, self.vocab))


def encode_text(text: str, vocab: Vocab) -> torch.Tensor:
    """``vocab.encode(text)`` as a 1-D long tensor ``(len(text),)`` (a table lookup for ASCII
    text, so a megabyte takes milliseconds)."""
    require(isinstance(text, str), f"text must be a str, got {type(text).__name__}")
    if text.isascii():
        table = torch.full((128,), UNK, dtype=torch.long)
        for c, i in vocab.stoi.items():
            if len(c) == 1 and ord(c) < 128:
                table[ord(c)] = i
        codes = torch.frombuffer(bytearray(text.encode("ascii")), dtype=torch.uint8)
        return table[codes.long()]  # (N,)
    return torch.tensor(vocab.encode(text), dtype=torch.long)


def char_corpus(text: str, val_fraction: float = 0.1) -> CharCorpus:
    """Split ``text`` into its first ``1 - val_fraction`` (training) and the rest (validation),
    with the character :class:`Vocab` of the whole text."""
    require(isinstance(text, str) and len(text) >= 2, f"text must be a str of >= 2 characters, "
            f"got {type(text).__name__} of length {len(text) if isinstance(text, str) else '?'}")
    require(isinstance(val_fraction, float) and 0.0 < val_fraction < 1.0,
            f"val_fraction must be a float in (0, 1), got {val_fraction!r}")
    vocab = Vocab.from_texts([text])
    ids = encode_text(text, vocab)  # (N,)
    n_train = int((1.0 - val_fraction) * len(text))
    require(0 < n_train < len(text), f"val_fraction={val_fraction} leaves an empty split of "
            f"{len(text)} characters")
    return CharCorpus(ids[:n_train], ids[n_train:], vocab)


def load_shakespeare(val_fraction: float = 0.1) -> CharCorpus:
    """Tiny Shakespeare as token tensors: the customary split, the first 90% of the characters
    for training (1,003,854) and the last 10% for validation (111,540), with a character
    :class:`Vocab` (the 4 specials + 65 characters). The text is checked by its sha256."""
    return char_corpus(shakespeare_text(), val_fraction)


def _check_windows(tokens: torch.Tensor, context: int, batch_size: int) -> None:
    require(isinstance(tokens, torch.Tensor) and tokens.dim() == 1 and not tokens.is_floating_point(),
            f"tokens must be a 1-D integer tensor, got "
            f"{getattr(tokens, 'dtype', type(tokens).__name__)} with shape "
            f"{tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else '?'}")
    require(isinstance(context, int) and context >= 1, f"context must be an int >= 1, got {context!r}")
    require(isinstance(batch_size, int) and batch_size >= 1,
            f"batch_size must be an int >= 1, got {batch_size!r}")
    require(tokens.shape[0] > context, f"tokens must hold more than context={context} tokens, "
            f"got shape {tuple(tokens.shape)}")


class RandomWindows:
    """An endless stream of language-modelling batches ``(x, y)``, each ``(batch_size, context)``:
    ``x`` a window of ``tokens`` starting at a uniformly random offset and ``y`` the same window
    shifted by one (the next token at every position). Reproducible: the offsets come from a
    ``torch.Generator`` seeded with ``seed`` once, when the stream is made (so a second ``iter``
    continues it). Made for :func:`attnbook.train.fit`."""

    def __init__(self, tokens: torch.Tensor, context: int, batch_size: int, *, seed: int = 0) -> None:
        _check_windows(tokens, context, batch_size)
        self.tokens, self.context, self.batch_size = tokens, context, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._offsets = torch.arange(context + 1)  # (C + 1,)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        N, C = self.tokens.shape[0], self.context
        while True:
            start = torch.randint(N - C, (self.batch_size,), generator=self.generator)  # (B,)
            chunk = self.tokens[start[:, None] + self._offsets.to(self.tokens.device)]  # (B, C+1)
            yield chunk[:, :-1], chunk[:, 1:]  # x (B, C), y (B, C)


def sequential_windows(tokens: torch.Tensor, context: int,
                       batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``tokens`` cut into the ``W = (N - 1) // context`` non-overlapping windows
    ``x_w = tokens[w C : (w+1) C]``, ``y_w = tokens[w C + 1 : (w+1) C + 1]``, in order, batched
    by ``batch_size`` (the last batch may be smaller): every target but the last ``(N - 1) % C``
    is predicted exactly once, so the mean loss over these batches (weighted by batch size) is
    the corpus's cross-entropy at context length ``C``."""
    _check_windows(tokens, context, batch_size)
    W = (tokens.shape[0] - 1) // context
    x = tokens[: W * context].view(W, context)          # (W, C)
    y = tokens[1 : W * context + 1].view(W, context)    # (W, C)
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, W, batch_size)]


__all__ += [
    "SHAKESPEARE_SHA256", "shakespeare_text", "CharCorpus", "encode_text", "char_corpus",
    "load_shakespeare", "RandomWindows", "sequential_windows",
]
