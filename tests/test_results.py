"""attnbook.results: the committed measurements, the chapters that check them, the check itself."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from attnbook import results

BOOK = Path(__file__).resolve().parents[1] / "book"


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A copy of the results file that check() may rewrite."""
    path = tmp_path / "results.json"
    shutil.copy(results._path(), path)
    monkeypatch.setattr(results, "_path", lambda: path)
    return path


def test_every_result_is_recorded_and_checked_by_its_chapter():
    table = results.load()
    assert len(table) >= 10
    for key, r in table.items():
        assert r.value is not None, f"{key} has no recorded value"
        assert r.tolerance > 0 and r.claim and r.device == "cpu"
        text = (BOOK / f"{r.chapter}.ipynb").read_text(encoding="utf-8")
        assert re.search(rf'recorded\.check\(\\"{key}\\"', text), f"{r.chapter} never checks {key}"


def test_check_accepts_values_within_the_tolerance(scratch):
    r = results.load()["gpt_validation_loss"]
    assert results.check(r.key, r.value + 0.9 * r.tolerance) == pytest.approx(r.value + 0.9 * r.tolerance)
    relative = results.load()["kv_cache_time_ratio"]
    assert relative.relative
    results.check(relative.key, relative.value * (1 + 0.9 * relative.tolerance))


def test_check_rejects_values_outside_the_tolerance(scratch):
    r = results.load()["gpt_validation_loss"]
    with pytest.raises(results.ResultMismatch, match="gpt_validation_loss: measured"):
        results.check(r.key, r.value + 1.1 * r.tolerance)
    relative = results.load()["kv_cache_time_ratio"]
    with pytest.raises(results.ResultMismatch, match="relative tolerance"):
        results.check(relative.key, relative.value * (1 + 1.1 * relative.tolerance))


def test_another_device_is_not_checked(scratch):
    r = results.load()["gpt_validation_loss"]
    assert results.check(r.key, r.value + 10, device="cuda") == r.value + 10


def test_bad_input_is_a_value_error(scratch):
    with pytest.raises(ValueError, match="key must be one of"):
        results.check("no such result", 1.0)
    with pytest.raises(ValueError, match="value must be finite"):
        results.check("gpt_validation_loss", float("nan"))


def test_record_mode_rewrites_only_the_value(scratch, monkeypatch):
    before = json.loads(scratch.read_text(encoding="utf-8"))
    monkeypatch.setenv(results.RECORD_ENV, "1")
    results.check("gpt_validation_loss", 1.2345)
    after = json.loads(scratch.read_text(encoding="utf-8"))
    assert after["gpt_validation_loss"]["value"] == 1.2345
    after["gpt_validation_loss"]["value"] = before["gpt_validation_loss"]["value"]
    assert after == before


def test_formatting_follows_the_unit():
    r = results.Result("k", 0.9876, 0.01, False, "c", "claim", "%", "cpu")
    assert r.formatted() == "98.8%"
    assert results.Result("k", 3.14159, 0.1, True, "c", "claim", "x", "cpu").formatted() == "3.1x"
    assert results.Result("k", 1.7512, 0.1, False, "c", "claim", "nats", "cpu").formatted() == "1.75 nats"
    assert not r.matches(float("inf"))
