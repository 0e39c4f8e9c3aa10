"""The book's measured results: one committed file that chapters check and the last chapter reads.

``attnbook/resources/results.json`` holds, for each key, the number a chapter measured on the
reference machine (a 2-core CPU), a tolerance, the chapter that measures it and the claim it
supports. It ships with the package, so a chapter opened alone (in Colab, say) finds it.

- A chapter that produces a number calls :func:`check`: it fails unless the new measurement
  lies within the tolerance of the recorded one, so the file cannot drift from the chapters.
- The pros-and-cons chapter reads the numbers with :func:`load`; nothing there is typed in.
- With the environment variable ``ATTNBOOK_RECORD_RESULTS=1``, :func:`check` writes the new
  value into the file instead (after a deliberate change to a chapter; review the diff).

Equivalent to, for a relative tolerance::

    assert abs(value / recorded - 1) <= tolerance
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ._validate import require

__all__ = ["RECORD_ENV", "Result", "ResultMismatch", "check", "load"]

RECORD_ENV = "ATTNBOOK_RECORD_RESULTS"
_FILE = ("resources", "results.json")


class ResultMismatch(AssertionError):
    """A chapter measured a number outside the tolerance of the one recorded in the file."""


@dataclass(frozen=True)
class Result:
    """One recorded measurement: ``value`` within ``tolerance`` (absolute, or relative when
    ``relative``), measured by ``chapter`` on ``device``, supporting ``claim``."""

    key: str
    value: float | None
    tolerance: float
    relative: bool
    chapter: str
    claim: str
    unit: str
    device: str

    def matches(self, value: float) -> bool:
        """Whether ``value`` lies within the tolerance of the recorded value."""
        if self.value is None or not math.isfinite(value):
            return False
        if self.relative:
            return abs(value / self.value - 1) <= self.tolerance
        return abs(value - self.value) <= self.tolerance

    def formatted(self, value: float | None = None) -> str:
        """The value with its unit, as the book prints it."""
        v = self.value if value is None else value
        if v is None:
            return "not recorded"
        if self.unit == "%":
            return f"{100 * v:.1f}%"
        if self.unit == "x":
            return f"{v:.1f}x"
        return f"{v:.2f} {self.unit}".rstrip()


def _path() -> Path:
    return Path(str(resources.files("attnbook").joinpath(*_FILE)))


def load() -> dict[str, Result]:
    """Every recorded result, by key."""
    raw = json.loads(_path().read_text(encoding="utf-8"))
    return {key: Result(key=key, **entry) for key, entry in raw.items()}


def check(key: str, value: float, *, device: str = "cpu") -> float:
    """Check a chapter's measurement against the recorded one and return it.

    ``device`` is where the chapter ran (``dev.type``); a measurement made on another device than
    the recorded one is returned unchecked, since chapters train larger models on a GPU.
    Raises ``ResultMismatch`` when the value is outside the tolerance, ``ValueError`` for an
    unknown key or a non-finite value.
    """
    table = load()
    require(key in table, lambda: f"key must be one of {sorted(table)}, got {key!r}")
    value = float(value)
    require(math.isfinite(value), lambda: f"value must be finite, got {value} for {key!r}")
    result = table[key]
    if device != result.device:
        return value
    if os.environ.get(RECORD_ENV) == "1":
        raw = json.loads(_path().read_text(encoding="utf-8"))
        raw[key]["value"] = value
        _path().write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return value
    if not result.matches(value):
        kind = "relative" if result.relative else "absolute"
        raise ResultMismatch(
            f"{key}: measured {value:.4g}, recorded {result.value} ({kind} tolerance "
            f"{result.tolerance}) in attnbook/resources/results.json; if the chapter "
            f"changed on purpose, rerun it with {RECORD_ENV}=1 and commit the file"
        )
    return value
