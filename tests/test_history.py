"""Tests of attnbook.history: the milestone table is consistent with book/references.bib, sorted,
free of duplicates, themed from the fixed set, and its helpers filter and format it correctly."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from attnbook import history, viz  # noqa: E402
from attnbook.history import COLUMNS, MILESTONES, THEMES, Milestone  # noqa: E402

BIB = Path(__file__).resolve().parents[1] / "book" / "references.bib"


def parse_bib(text: str) -> dict[str, dict[str, str]]:
    """key -> {field: value} for every ``@type{key, field = {value}, ...}`` entry (a small
    parser written for this test: entries start at ``@``, fields are ``name = {...}`` or
    ``name = "..."`` or a bare number)."""
    entries: dict[str, dict[str, str]] = {}
    for match in re.finditer(r"@(\w+)\s*\{\s*([^,\s]+)\s*,", text):
        key = match.group(2)
        assert key not in entries, f"duplicate bib key {key}"
        start = match.end()
        nxt = text.find("\n@", start)
        body = text[start: nxt if nxt != -1 else len(text)]
        fields = {
            name.lower(): value
            for name, value in re.findall(r"(\w+)\s*=\s*[{\"]?([^\n]*?)[}\"]?\s*,?\s*$", body, re.M)
        }
        entries[key] = {"type": match.group(1).lower(), **fields}
    return entries


@pytest.fixture(scope="module")
def bib() -> dict[str, dict[str, str]]:
    return parse_bib(BIB.read_text(encoding="utf-8"))


def test_bib_parser_reads_a_known_entry(bib):
    # guards the parser itself: a wrong regex would make the tests below vacuous
    assert len(bib) >= 49
    assert bib["vaswani2017attention"]["year"] == "2017"
    assert bib["vaswani2017attention"]["type"] == "inproceedings"
    assert "Attention Is All You Need" in bib["vaswani2017attention"]["title"]


def test_every_cite_key_is_in_the_bibliography(bib):
    missing = [m.cite_key for m in MILESTONES if m.cite_key not in bib]
    assert not missing, f"cite keys missing from references.bib: {missing}"


def test_every_bib_entry_used_here_has_author_title_and_year(bib):
    for m in MILESTONES:
        entry = bib[m.cite_key]
        for field in ("author", "title", "year"):
            assert entry.get(field), f"{m.cite_key} has no {field}"


def test_years_agree_with_the_bibliography(bib):
    # the table dates the first public version (often an arXiv preprint), which can precede
    # the venue's year by at most one year, and never follow it
    for m in MILESTONES:
        bib_year = int(bib[m.cite_key]["year"])
        assert bib_year - 1 <= m.year <= bib_year, (m.work, m.year, bib_year)


def test_years_are_plausible_and_sorted():
    assert all(1950 <= m.year <= 2026 for m in MILESTONES)
    dates = [(m.year, 0 if m.month is None else m.month) for m in MILESTONES]
    assert dates == sorted(dates), "MILESTONES must be sorted by (year, month)"
    assert MILESTONES[0].year <= 1993 and MILESTONES[-1].year >= 2022  # spans the story


def test_no_duplicates():
    keys = [m.cite_key for m in MILESTONES]
    works = [m.work.lower() for m in MILESTONES]
    assert len(set(keys)) == len(keys), "a cite key appears twice"
    assert len(set(works)) == len(works), "a work label appears twice"
    assert len(set(MILESTONES)) == len(MILESTONES)


def test_themes_come_from_the_fixed_set_and_each_is_used():
    assert len(set(THEMES)) == len(THEMES)
    used = {m.theme for m in MILESTONES}
    assert used <= set(THEMES)
    assert used == set(THEMES), f"themes with no milestone: {set(THEMES) - used}"


def test_the_story_the_chapter_tells_is_in_the_table():
    keys = {m.cite_key for m in MILESTONES}
    required = {
        "brown1993mathematics", "sutskever2014sequence", "cho2014learning", "bahdanau2015neural",
        "luong2015effective", "xu2015show", "vaswani2017attention", "devlin2019bert",
        "radford2018improving", "dosovitskiy2021image", "child2019generating",
        "beltagy2020longformer", "katharopoulos2020transformers", "choromanski2021rethinking",
        "dao2022flashattention", "shazeer2019fast", "ainslie2023gqa", "su2021roformer",
        "press2022train", "nadaraya1964estimating", "sukhbaatar2015end", "vinyals2015pointer",
    }
    assert required <= keys, f"missing: {required - keys}"


def test_text_fields_are_short_labels_and_full_sentences():
    for m in MILESTONES:
        assert len(m.work) <= 45, f"label too long for the timeline: {m.work!r}"
        assert m.idea[0].isupper() and m.idea.endswith("."), m.idea
        assert m.month is None or 1 <= m.month <= 12


def test_milestone_is_frozen_and_validates():
    m = MILESTONES[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.year = 2000  # type: ignore[misc]
    good = dict(year=2017, month=6, work="w", idea="An idea.", cite_key="k", theme="transformer")
    Milestone(**good)
    for bad in ({"theme": "magic"}, {"month": 13}, {"month": 0}, {"year": 1066},
                {"year": 2017.5}, {"work": " "}, {"cite_key": ""}):
        with pytest.raises(ValueError):
            Milestone(**{**good, **bad})


def test_date_is_a_fractional_year():
    m = Milestone(2017, 6, "w", "An idea.", "k", "transformer")
    assert m.date == pytest.approx(2017 + 5.5 / 12)
    assert Milestone(2017, None, "w", "An idea.", "k", "transformer").date == 2017.5


@pytest.mark.parametrize("themes", [None, ["efficiency"], ["vision", "memory"], []])
@pytest.mark.parametrize("start,end", [(None, None), (2014, 2016), (2020, None), (None, 1999)])
def test_select_matches_a_brute_force_filter(themes, start, end):
    got = history.select(themes=themes, start=start, end=end)
    expected = []
    for m in MILESTONES:
        if themes is not None and m.theme not in themes:
            continue
        if start is not None and m.year < start:
            continue
        if end is not None and m.year > end:
            continue
        expected.append(m)
    assert list(got) == expected


def test_select_sorts_its_input_and_rejects_bad_arguments():
    shuffled = list(reversed(MILESTONES))
    got = history.select(shuffled)
    assert sorted(got, key=repr) == sorted(MILESTONES, key=repr)
    dates = [(m.year, m.month or 0) for m in got]
    assert dates == sorted(dates)
    assert history.select(MILESTONES) == MILESTONES  # already sorted: unchanged (stable)
    with pytest.raises(ValueError, match="themes"):
        history.select(themes=["efficiency", "astrology"])
    with pytest.raises(ValueError, match="start"):
        history.select(start=2020, end=2010)


def test_rows_has_a_header_and_one_row_per_milestone():
    table = history.rows()
    assert table[0] == COLUMNS == ("year", "month", "work", "idea", "cite_key", "theme")
    assert len(table) == len(MILESTONES) + 1
    for row, m in zip(table[1:], MILESTONES):
        assert row == (m.year, m.month, m.work, m.idea, m.cite_key, m.theme)
    picked = history.rows(MILESTONES[:3], columns=("work", "year"))
    assert picked == [("work", "year")] + [(m.work, m.year) for m in MILESTONES[:3]]
    with pytest.raises(ValueError, match="columns"):
        history.rows(columns=("year", "venue"))
    with pytest.raises(ValueError, match="columns"):
        history.rows(columns=())


def test_markdown_table_is_well_formed():
    sel = history.select(themes=["positions"])
    text = history.markdown_table(sel, columns=("year", "work"), cite=True)
    lines = text.splitlines()
    assert len(lines) == len(sel) + 2
    assert lines[0] == "| year | work | reference |"
    assert all(line.count("|") == 4 for line in lines), "every row needs 3 cells"
    for line, m in zip(lines[2:], sel):
        assert f"{{cite:p}}`{m.cite_key}`" in line and m.work in line
    # a generator works too, and a pipe inside a cell is escaped
    odd = Milestone(2000, None, "a|b", "An idea.", "k", "precursors")
    assert "a\\|b" in history.markdown_table(iter([odd]), columns=("work",))


def test_cite_keys_are_unique_and_in_order():
    keys = history.cite_keys()
    assert keys == [m.cite_key for m in MILESTONES]
    doubled = history.cite_keys(MILESTONES + MILESTONES[:2])
    assert doubled == keys


def test_plot_timeline_draws_the_table():
    ax = viz.plot_timeline(MILESTONES, title="history")
    try:
        assert len(ax.collections[0].get_offsets()) == len(MILESTONES)
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == list(THEMES)  # default colour order is history.THEMES, all used
        labels = {t.get_text() for t in ax.texts}
        assert {f"{m.work} ({m.year})" for m in MILESTONES} <= labels
    finally:
        plt.close(ax.figure)
