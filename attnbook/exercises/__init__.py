"""Checkers for the book's exercises, one module per chapter (``attnbook.exercises.<chapter>``).

A checker takes the student's answer (a function or a value), runs it on cases of its own, and
returns a :class:`Feedback` that says *what* is wrong, not only whether it is::

    from attnbook.exercises import multi_head as check
    check.gqa_conversion(to_gqa)   # -> Feedback, shown as one line; truthy when correct

An answer that is still ``None``, or a stub that raises ``NotImplementedError``, is reported as
"not attempted yet" with a hint, so a notebook runs top to bottom before the student writes
anything. Checkers are written with :func:`checker` and :func:`expect`::

    @checker("softmax rows", hint="exponentiate, then divide by the row sum")
    def softmax_rows(fn):
        out = fn(torch.zeros(2, 3))
        expect(out.shape == (2, 3), f"output shape {tuple(out.shape)}, expected (2, 3)")
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Feedback", "Wrong", "checker", "expect"]

Status = Literal["correct", "wrong", "not attempted"]
_MARK = {"correct": "\u2705", "wrong": "\u274c", "not attempted": "\u270f\ufe0f"}


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: ``status`` and a message for the student; truthy iff correct."""

    exercise: str
    status: Status
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "correct"

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        label = "not attempted yet" if self.status == "not attempted" else self.status
        return f"{_MARK[self.status]} {self.exercise}: {label}. {self.message}"

    def __repr__(self) -> str:
        return str(self)


class Wrong(Exception):
    """Raised by :func:`expect` inside a checker; its message is what the student reads."""


def expect(condition: Any, message: str) -> None:
    """Fail the check with ``message`` (what is wrong, and a nudge) unless ``condition``."""
    if not condition:
        raise Wrong(message)


def checker(name: str, *, hint: str) -> Callable[[Callable[..., str | None]], Callable[..., Feedback]]:
    """Turn ``body(answer, ...)``, which calls :func:`expect`, into a checker returning Feedback.

    ``None`` answers and stubs raising ``NotImplementedError`` give "not attempted" with ``hint``;
    an exception raised by the student's code is reported with its type and message.
    """

    def wrap(body: Callable[..., str | None]) -> Callable[..., Feedback]:
        @functools.wraps(body)
        def check(answer: Any, *args: Any, **kwargs: Any) -> Feedback:
            if answer is None:
                return Feedback(name, "not attempted", f"Hint: {hint}")
            try:
                message = body(answer, *args, **kwargs)
            except NotImplementedError:
                return Feedback(name, "not attempted", f"Hint: {hint}")
            except Wrong as wrong:
                return Feedback(name, "wrong", str(wrong))
            except Exception as error:  # the student's code failed: say how
                return Feedback(name, "wrong", f"your code raised {type(error).__name__}: {error}")
            return Feedback(name, "correct", message or "every check passed.")

        return check

    return wrap


def __getattr__(name: str) -> Any:  # attnbook.exercises.<chapter>, imported on first use
    if name.startswith("_"):
        raise AttributeError(name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as error:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from error
