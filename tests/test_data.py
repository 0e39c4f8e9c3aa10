"""Tests of attnbook.data: every generated target is recomputed independently (``datetime``
parsing, Python's ``sorted``/``int``/``ord``), batches are decoded back to the strings they came
from, and the corpus loader reads a file written here."""

from __future__ import annotations

import datetime as dt
import re
import string
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.data import (
    BOS,
    DATE_FORMATS,
    EOS,
    PAD,
    SPECIALS,
    UNK,
    BatchIterator,
    Vocab,
    addition_pairs,
    caesar,
    cipher_pairs,
    copy_pairs,
    date_pairs,
    date_range,
    date_splits,
    format_date,
    load_sentence_pairs,
    make_batch,
    random_strings,
    reverse_pairs,
    sort_pairs,
)

# ---------------------------------------------------------------------------------------------
# Dates: an independent parser per format, built on datetime.strptime
# ---------------------------------------------------------------------------------------------

_ORDINAL = re.compile(r"\b(\d{1,2})(st|nd|rd|th)\b")


def _two_digit_year(parsed: dt.date) -> dt.date:
    """strptime's %y maps 00-68 to 20xx; the package's range maps 50-99 to 19xx, 00-49 to 20xx."""
    yy = parsed.year % 100
    return parsed.replace(year=(1900 if yy >= 50 else 2000) + yy)


def _strip_ordinal(text: str) -> str:
    return _ORDINAL.sub(r"\1", text)


# format name -> (strptime pattern, post-processing)
_PARSERS = {
    "d B Y": ("%d %B %Y", None),
    "mm/dd/yy": ("%m/%d/%y", _two_digit_year),
    "A, B d, Y": ("%A, %B %d, %Y", None),
    "b d Y (lower)": ("%b %d %Y", None),
    "Y.m.d": ("%Y.%m.%d", None),
    "dth of B, Y": ("%d of %B, %Y", None),
    "B d, Y (upper)": ("%B %d, %Y", None),
    "dd.mm.YYYY": ("%d.%m.%Y", None),
    "d b yy": ("%d %b %y", _two_digit_year),
    "B dth, Y": ("%B %d, %Y", None),
    "a d b Y": ("%a %d %b %Y", None),
    "YYYYmmdd": ("%Y%m%d", None),
    "m/d/Y": ("%m/%d/%Y", None),
}


def _parse(text: str, fmt: str) -> dt.date:
    pattern, post = _PARSERS[fmt]
    parsed = dt.datetime.strptime(_strip_ordinal(text), pattern).date()
    return post(parsed) if post else parsed


def test_every_format_has_a_parser():
    assert set(_PARSERS) == set(DATE_FORMATS)


@pytest.mark.parametrize("fmt", sorted(DATE_FORMATS))
def test_each_format_parses_back_to_the_iso_target(fmt):
    pairs = date_pairs(300, seed=1, formats=[fmt])
    assert len(pairs) == 300
    for source, target in pairs:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", target)
        assert _parse(source, fmt) == dt.date.fromisoformat(target), (source, target)


def test_format_details_the_parser_cannot_see():
    d = dt.date(1997, 3, 3)  # a Monday
    assert format_date(d, "b d Y (lower)") == "mar 3 1997"
    assert format_date(d, "B d, Y (upper)") == "MARCH 3, 1997"
    assert format_date(d, "a d b Y") == "Mon 3 Mar 1997"
    assert format_date(d, "A, B d, Y") == "Monday, March 3, 1997"
    assert format_date(d, "mm/dd/yy") == "03/03/97"
    assert format_date(dt.date(2004, 12, 25), "YYYYmmdd") == "20041225"
    # English ordinals, including the 11th-13th exceptions
    expected = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th",
                21: "21st", 22: "22nd", 23: "23rd", 24: "24th", 30: "30th", 31: "31st"}
    for day, word in expected.items():
        assert format_date(dt.date(2001, 1, day), "dth of B, Y") == f"{word} of January, 2001"


def test_no_string_means_two_dates():
    """The module promises that no formatted string is ambiguous inside the date range."""
    seen: dict[str, dt.date] = {}
    for day in date_range(1950, 2049):
        for fmt in DATE_FORMATS:
            text = format_date(day, fmt)
            assert seen.setdefault(text, day) == day, (text, seen[text], day)


def test_date_range_covers_every_day():
    days = date_range(1999, 2000)
    assert days[0] == dt.date(1999, 1, 1) and days[-1] == dt.date(2000, 12, 31)
    assert len(days) == 365 + 366
    assert all((b - a).days == 1 for a, b in zip(days, days[1:]))


def test_date_pairs_deterministic_and_seed_dependent():
    assert date_pairs(50, seed=3) == date_pairs(50, seed=3)
    assert date_pairs(50, seed=3) != date_pairs(50, seed=4)
    assert date_pairs(0) == []


def test_date_pairs_leave_the_global_random_state_alone():
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    date_pairs(20, seed=5)
    assert random.random() == expected


def test_date_pairs_use_every_format():
    sources = [s for s, _ in date_pairs(2000, seed=0)]
    used = {fmt for fmt in DATE_FORMATS for s in sources if _matches(s, fmt)}
    assert used == set(DATE_FORMATS)


def _matches(text: str, fmt: str) -> bool:
    try:
        _parse(text, fmt)
    except ValueError:
        return False
    return True


def test_date_pairs_respect_the_year_range():
    for _, target in date_pairs(500, seed=2, start_year=1990, end_year=1992):
        assert 1990 <= dt.date.fromisoformat(target).year <= 1992


def test_date_splits_are_disjoint_by_date():
    train, test = date_splits(3000, 800, seed=0, test_fraction=0.2)
    assert len(train) == 3000 and len(test) == 800
    train_dates, test_dates = {t for _, t in train}, {t for _, t in test}
    assert train_dates.isdisjoint(test_dates)
    # the held-out days are ~20% of the range: far fewer distinct test dates than 800 is
    # impossible only if the split kept almost nothing; check both sides are drawn widely
    assert len(test_dates) > 600 and len(train_dates) > 2500
    assert date_splits(100, 50, seed=7) == date_splits(100, 50, seed=7)
    assert date_splits(100, 50, seed=7) != date_splits(100, 50, seed=8)


def test_date_splits_targets_match_sources():
    train, test = date_splits(200, 200, seed=1)
    for source, target in train + test:
        fmts = [f for f in DATE_FORMATS if _matches(source, f)]
        assert fmts, source
        assert all(_parse(source, f) == dt.date.fromisoformat(target) for f in fmts), source


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: date_pairs(-1), "n"),
        (lambda: date_pairs(5, formats=["nope"]), "formats"),
        (lambda: date_pairs(5, formats=[]), "formats"),
        (lambda: date_pairs(5, start_year=2000, end_year=1990), "start_year"),
        (lambda: date_pairs(5, start_year=1900, end_year=2049), "100 years"),
        (lambda: date_splits(5, 5, test_fraction=0.0), "test_fraction"),
        (lambda: date_splits(5, 5, test_fraction=1.0), "test_fraction"),
        (lambda: date_splits(-5, 5), "n_train"),
        (lambda: format_date("1997-03-03", "d B Y"), "date"),
        (lambda: format_date(dt.date(1997, 3, 3), "nope"), "fmt"),
    ],
)
def test_dates_bad_inputs(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# ---------------------------------------------------------------------------------------------
# Algorithmic tasks
# ---------------------------------------------------------------------------------------------


def test_random_strings_lengths_alphabet_determinism():
    out = random_strings(400, seed=0, min_len=3, max_len=7, alphabet="xyz")
    assert len(out) == 400
    assert {len(s) for s in out} == {3, 4, 5, 6, 7}
    assert set("".join(out)) == set("xyz")
    assert out == random_strings(400, seed=0, min_len=3, max_len=7, alphabet="xyz")
    assert out != random_strings(400, seed=1, min_len=3, max_len=7, alphabet="xyz")


def test_copy_reverse_sort_targets():
    for s, t in copy_pairs(200, seed=0):
        assert s == t and set(s) <= set("abcdefghij") and 1 <= len(s) <= 10
    for s, t in reverse_pairs(200, seed=0):
        assert len(s) == len(t) and all(t[i] == s[len(s) - 1 - i] for i in range(len(s)))
    for s, t in sort_pairs(200, seed=0):
        assert Counter(s) == Counter(t)                      # same multiset of characters
        assert all(a <= b for a, b in zip(t, t[1:]))         # non-decreasing
    # the three tasks share their sources for the same seed
    assert [s for s, _ in copy_pairs(50, seed=9)] == [s for s, _ in reverse_pairs(50, seed=9)]


def test_addition_targets():
    pairs = addition_pairs(500, seed=0, max_digits=3)
    digit_counts = set()
    for s, t in pairs:
        a, b = s.split("+")
        for x in (a, b):
            assert x.isdigit() and (x == "0" or not x.startswith("0"))  # no leading zero
            assert 1 <= len(x) <= 3
            digit_counts.add(len(x))
        assert int(t) == int(a) + int(b) and t == str(int(t))
    assert digit_counts == {1, 2, 3}
    assert addition_pairs(30, seed=4) == addition_pairs(30, seed=4)


def _caesar_reference(text: str, shift: int) -> str:
    return "".join(
        chr((ord(c) - ord("a") + shift) % 26 + ord("a")) if "a" <= c <= "z" else c for c in text
    )


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=string.ascii_lowercase + " .!Z", max_size=30), st.integers(-30, 30))
def test_caesar_matches_ord_arithmetic(text, shift):
    assert caesar(text, shift) == _caesar_reference(text, shift)
    assert caesar(caesar(text, shift), -shift) == text


def test_cipher_pairs_targets():
    pairs = cipher_pairs(200, seed=0, min_len=5, max_len=40)
    for s, t in pairs:
        assert 5 <= len(s) <= 40 and len(t) == len(s)
        assert t == _caesar_reference(s, 3)
    assert caesar("xyz") == "abc"


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: random_strings(-1), "n"),
        (lambda: copy_pairs(5, min_len=0), "min_len"),
        (lambda: reverse_pairs(5, min_len=4, max_len=3), "min_len"),
        (lambda: sort_pairs(5, alphabet=""), "alphabet"),
        (lambda: addition_pairs(5, max_digits=0), "max_digits"),
        (lambda: cipher_pairs(-2), "n"),
    ],
)
def test_tasks_bad_inputs(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# ---------------------------------------------------------------------------------------------
# Vocab
# ---------------------------------------------------------------------------------------------


def test_vocab_layout():
    v = Vocab("cabca")
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert v.itos == list(SPECIALS) + ["a", "b", "c"]
    assert len(v) == 7 and "a" in v and "z" not in v
    assert (v.pad, v.bos, v.eos, v.unk) == (0, 1, 2, 3)
    assert Vocab.from_texts(["hello", "world"]).itos[4:] == sorted(set("helloworld"))
    assert Vocab.from_alphabet(string.digits).itos[4:] == list(string.digits)


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="abcdef -", max_size=20))
def test_vocab_round_trip(text):
    v = Vocab("abcdef -")
    ids = v.encode(text, bos=True, eos=True)
    assert ids[0] == BOS and ids[-1] == EOS and len(ids) == len(text) + 2
    assert all(v.itos[i] == c for i, c in zip(ids[1:-1], text))
    assert v.decode(ids) == text
    assert v.decode(torch.tensor(ids + [PAD, PAD])) == text
    assert v.decode(v.encode(text)) == text


def test_vocab_decode_rules():
    v = Vocab("ab")
    a, b = v.stoi["a"], v.stoi["b"]
    assert v.encode("axb") == [a, UNK, b]
    assert v.decode([BOS, a, UNK, b, EOS, a, a]) == "a?b"          # stops at <eos>
    assert v.decode([PAD, a, PAD, b]) == "ab"                       # pads dropped
    assert v.decode([BOS, a, EOS, PAD], strip_specials=False) == "<bos>a<eos><pad>"
    batch = torch.tensor([[a, b, EOS, PAD], [b, EOS, a, a]])
    assert v.decode_batch(batch) == ["ab", "b"]


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda v: Vocab(["ab"]), "chars"),
        (lambda v: v.encode(3), "text"),
        (lambda v: v.decode([0, 99]), "ids"),
        (lambda v: v.decode([-1]), "ids"),
        (lambda v: v.decode(torch.zeros(2, 2, dtype=torch.long)), "ids"),
        (lambda v: v.decode_batch(torch.zeros(3, dtype=torch.long)), "ids"),
        (lambda v: Vocab.from_texts(["ok", 5]), "texts"),
    ],
)
def test_vocab_bad_inputs(call, name):
    with pytest.raises(ValueError, match=name):
        call(Vocab("ab"))


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


def test_make_batch_padding_and_shifts():
    v = Vocab("abcd")
    pairs = [("abc", "d"), ("a", "abcd"), ("dcba", "")]
    batch = make_batch(pairs, v)
    assert len(batch) == 3
    assert batch.src.shape == (3, 4) and batch.tgt_in.shape == (3, 5) and batch.tgt_out.shape == (3, 5)
    assert batch.src.dtype == torch.long and batch.src_mask.dtype == torch.bool
    assert batch.src_lengths.tolist() == [3, 1, 4]
    assert batch.tgt_lengths.tolist() == [2, 5, 1]
    for r, (s, t) in enumerate(pairs):
        n, m = len(s), len(t)
        assert batch.src[r, :n].tolist() == v.encode(s)
        assert batch.src[r, n:].eq(PAD).all()
        assert batch.src_mask[r].tolist() == [True] * n + [False] * (4 - n)
        assert batch.tgt_in[r, : m + 1].tolist() == [BOS] + v.encode(t)
        assert batch.tgt_out[r, : m + 1].tolist() == v.encode(t) + [EOS]
        assert batch.tgt_in[r, m + 1:].eq(PAD).all() and batch.tgt_out[r, m + 1:].eq(PAD).all()
        assert batch.tgt_mask[r].tolist() == [True] * (m + 1) + [False] * (4 - m)
    # teacher forcing: the input is the output shifted right by one
    assert torch.equal(batch.tgt_in[:, 1:] * batch.tgt_mask[:, 1:],
                       batch.tgt_out[:, :-1] * batch.tgt_mask[:, 1:])
    assert torch.equal(batch.src_mask, batch.src != PAD)


def test_make_batch_separate_target_vocab_and_device():
    src_v, tgt_v = Vocab("abc"), Vocab("0123456789-")
    batch = make_batch([("ab", "1997-03-03")], src_v, tgt_v, device="cpu")
    assert tgt_v.decode(batch.tgt_out[0]) == "1997-03-03"
    assert src_v.decode(batch.src[0]) == "ab"
    moved = batch.to("cpu")
    assert all(torch.equal(getattr(moved, k), getattr(batch, k)) for k in ("src", "tgt_in", "tgt_mask"))


@pytest.mark.parametrize(
    "pairs",
    [[], [("", "x")], [("a",)], [("a", 3)], ["ab"]],
    ids=["empty", "empty-source", "one-field", "non-string", "not-a-pair"],
)
def test_make_batch_bad_inputs(pairs):
    with pytest.raises(ValueError, match="pairs"):
        make_batch(pairs, Vocab("abx"))


def _pairs_of(batch, v: Vocab) -> list[tuple[str, str]]:
    return list(zip(v.decode_batch(batch.src), v.decode_batch(batch.tgt_out)))


@pytest.mark.parametrize("batch_size, drop_last", [(7, False), (7, True), (50, False), (1, False)])
def test_batch_iterator_covers_every_pair(batch_size, drop_last):
    v = Vocab("abcdefghij")
    pairs = reverse_pairs(50, seed=0)
    it = BatchIterator(pairs, v, batch_size=batch_size, seed=3, drop_last=drop_last)
    expected_len = 50 // batch_size if drop_last else -(-50 // batch_size)
    assert len(it) == expected_len
    for _ in range(2):  # two epochs
        batches = list(it)
        assert len(batches) == expected_len
        seen = [p for b in batches for p in _pairs_of(b, v)]
        assert all(len(b) == batch_size for b in batches[:-1])
        if drop_last:
            assert len(seen) == expected_len * batch_size
            assert not (Counter(seen) - Counter(pairs))          # a sub-multiset of the pairs
        else:
            assert Counter(seen) == Counter(pairs)                # every pair exactly once


def test_batch_iterator_shuffles_reproducibly():
    v = Vocab("abcdefghij")
    pairs = copy_pairs(40, seed=1)
    a, b = BatchIterator(pairs, v, batch_size=8, seed=5), BatchIterator(pairs, v, batch_size=8, seed=5)
    epoch_a0, epoch_b0 = [_pairs_of(x, v) for x in a], [_pairs_of(x, v) for x in b]
    assert epoch_a0 == epoch_b0                                  # same seed, same order
    epoch_a1 = [_pairs_of(x, v) for x in a]
    assert epoch_a1 != epoch_a0                                  # the next epoch is reshuffled
    ordered = BatchIterator(pairs, v, batch_size=8, shuffle=False)
    assert [p for x in ordered for p in _pairs_of(x, v)] == pairs


def test_batch_iterator_bad_inputs():
    v = Vocab("ab")
    with pytest.raises(ValueError, match="pairs"):
        BatchIterator([], v)
    with pytest.raises(ValueError, match="batch_size"):
        BatchIterator([("a", "b")], v, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        BatchIterator([("a", "b")], v, batch_size=2, drop_last=True)


# ---------------------------------------------------------------------------------------------
# Local corpora
# ---------------------------------------------------------------------------------------------

_TATOEBA = (
    "Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #1158250 (Wittydev)\n"
    "Hi.\tSalut !\n"
    "\n"
    "only one field\n"
    "   Run!  \t  Cours !  \r\n"
    "\tmissing source\n"
    "missing target\t \n"
    "Wait.\tAttends.\textra\tcolumns\n"
)


def test_load_sentence_pairs(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_text(_TATOEBA, encoding="utf-8")
    expected = [("Go.", "Va !"), ("Hi.", "Salut !"), ("Run!", "Cours !"), ("Wait.", "Attends.")]
    assert load_sentence_pairs(path) == expected
    assert load_sentence_pairs(str(path)) == expected
    assert load_sentence_pairs(path, max_pairs=2) == expected[:2]
    assert load_sentence_pairs(path, max_pairs=0) == []


def test_load_sentence_pairs_unicode(tmp_path):
    path = tmp_path / "deu.txt"
    path.write_text("Grüß dich.\tSalut à toi.\n", encoding="utf-8")
    assert load_sentence_pairs(path) == [("Grüß dich.", "Salut à toi.")]


def test_load_sentence_pairs_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load_sentence_pairs(tmp_path / "absent.txt")
    with pytest.raises(ValueError, match="path"):
        load_sentence_pairs(tmp_path)                      # a directory
    path = tmp_path / "x.txt"
    path.write_text("a\tb\n", encoding="utf-8")
    with pytest.raises(ValueError, match="max_pairs"):
        load_sentence_pairs(path, max_pairs=-1)


# ---------------------------------------------------------------------------------------------
# load_sentence_pairs: encodings and files that hold no pair (issue 9)
# ---------------------------------------------------------------------------------------------


def test_load_sentence_pairs_drops_a_utf8_bom(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffGo.\tVa !\nHi.\tSalut !\n".encode())
    assert load_sentence_pairs(path) == [("Go.", "Va !"), ("Hi.", "Salut !")]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le-bom", "utf-16-be-bom"])
def test_load_sentence_pairs_decodes_utf16_with_a_bom(tmp_path, encoding):
    text = "Grüß dich.\tSalut à toi.\r\nGo.\tVa !\r\n"
    data = {
        "utf-16": text.encode("utf-16"),
        "utf-16-le-bom": b"\xff\xfe" + text.encode("utf-16-le"),
        "utf-16-be-bom": b"\xfe\xff" + text.encode("utf-16-be"),
    }[encoding]
    path = tmp_path / "u16.txt"
    path.write_bytes(data)
    assert load_sentence_pairs(path) == [("Grüß dich.", "Salut à toi."), ("Go.", "Va !")]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("Go.\tVa !\nÉté.\tSommer.\n".encode("latin-1"), r"not utf-8 text.*line 2"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", r"not utf-8 text|binary"),
        ("Go.\tVa !\n".encode("utf-16-le"), r"binary.*byte-order mark"),  # UTF-16 without BOM
        (b"", r"no source<TAB>target pair.*0 lines"),
        (b"\n  \n\t\n", r"no source<TAB>target pair.*all blank"),
        (b"just one column\nand another\n", r"no source<TAB>target pair.*2 without.*line 1"),
    ],
    ids=["latin-1", "binary", "utf-16-no-bom", "empty", "blank", "malformed"],
)
def test_load_sentence_pairs_rejects_files_it_cannot_read(tmp_path, data, match):
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=match) as info:
        load_sentence_pairs(path)
    assert str(path) in str(info.value)
