"""The checkers of book/vision.ipynb's exercises (attnbook.exercises.vision): the notebook's own
reference solutions pass, the shipped stubs are "not attempted", and typical wrong answers are
caught with a message that names the slip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from exercise_support import run_tagged

from attnbook.exercises import vision as check

NOTEBOOK = Path(__file__).resolve().parents[1] / "book" / "vision.ipynb"
NAMES = ["patchify", "class_token_map", "rollout"]



@pytest.fixture(scope="module")
def solutions() -> dict:
    return run_tagged("vision", "solution")


@pytest.fixture(scope="module")
def stubs() -> dict:
    return run_tagged("vision", "answer")


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes_and_stub_is_not_attempted(solutions, stubs, name):
    verdict = getattr(check, name)(solutions[f"{name}_solution"])
    assert verdict.passed, str(verdict)
    todo = getattr(check, name)(stubs[name])
    assert todo.status == "not attempted" and "Hint" in str(todo)
    assert getattr(check, name)(None).status == "not attempted"


def test_package_answers_pass():
    from attnbook.interpret import attention_rollout
    from attnbook.vision import patchify

    assert check.patchify(patchify)
    assert check.rollout(attention_rollout)


def _wrong(verdict, *words):
    assert verdict.status == "wrong", str(verdict)
    for word in words:
        assert word in verdict.message, verdict.message


def test_patchify_wrong_answers():
    def unfold_order(images, P):  # channel-first within a patch
        cols = torch.nn.functional.unfold(images, kernel_size=P, stride=P)
        return cols.transpose(1, 2)

    def plain_reshape(images, P):
        B, C, H, W = images.shape
        return images.reshape(B, -1, P * P * C)

    def column_major(images, P):
        B, C, H, W = images.shape
        x = images.reshape(B, C, H // P, P, W // P, P).permute(0, 4, 2, 3, 5, 1)
        return x.reshape(B, -1, P * P * C)

    _wrong(check.patchify(unfold_order), "F.unfold")
    _wrong(check.patchify(plain_reshape), "mixes pixels")
    _wrong(check.patchify(column_major), "columns first")
    _wrong(check.patchify(lambda images, P: images), "shape")


def test_class_token_map_wrong_answers():
    _wrong(check.class_token_map(lambda w, s: w[:, 0, 0, 1:].reshape(-1, s, s)), "head 0")
    _wrong(check.class_token_map(lambda w, s: w[:, :, 1:, 0].mean(1).reshape(-1, s, s)), "TO the class")
    _wrong(check.class_token_map(lambda w, s: w[:, :, 0, 1:].mean(1).reshape(-1, s, s).transpose(1, 2)),
           "transposed")
    _wrong(check.class_token_map(lambda w, s: w[:, :, 0, :].mean(1)), "shape")


def test_rollout_wrong_answers():
    def reversed_order(weights):
        T = weights[0].shape[-1]
        eye = torch.eye(T, dtype=weights[0].dtype)
        R = eye
        for w in weights:
            A = 0.5 * w.mean(1) + 0.5 * eye
            R = R @ (A / A.sum(-1, keepdim=True))
        return R

    def no_residual(weights):
        R = weights[0].mean(1)
        for w in weights[1:]:
            R = w.mean(1) @ R
        return R

    def no_head_average(weights):
        T = weights[0].shape[-1]
        eye = torch.eye(T, dtype=weights[0].dtype)
        R = eye
        for w in weights:
            R = (0.5 * w[:, 0] + 0.5 * eye) @ R
        return R

    _wrong(check.rollout(reversed_order), "wrong order")
    _wrong(check.rollout(no_residual), "residual")
    _wrong(check.rollout(no_head_average), "head average")
