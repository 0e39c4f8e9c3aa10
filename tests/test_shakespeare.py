"""Tiny Shakespeare as package data: the text equals the shared copy (by hash and content), a
corrupted file is refused, the split is the customary 90/10 one, the tensors decode back to the
text, the language-modelling windows are what they say, and a built wheel ships the data."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from attnbook import data

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path("/work/shared/data/tinyshakespeare.txt")


@pytest.fixture(scope="module")
def text() -> str:
    return data.shakespeare_text()


@pytest.fixture(scope="module")
def corpus() -> data.CharCorpus:
    return data.load_shakespeare()


def test_text_is_the_corpus(text):
    assert len(text) == 1_115_394
    assert len(set(text)) == 65
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == data.SHAKESPEARE_SHA256
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    if SHARED.exists():  # the project's shared copy, where there is one
        assert text == SHARED.read_text(encoding="utf-8")


def test_a_corrupted_file_is_refused(monkeypatch):
    from importlib import resources

    real = resources.files

    class Fake:
        def __init__(self, path):
            self.path = path

        def joinpath(self, *parts):
            return Fake(self.path.joinpath(*parts))

        def read_bytes(self):
            raw = gzip.decompress(self.path.read_bytes())
            return gzip.compress(raw.replace(b"Citizen", b"Citizem", 1))

    monkeypatch.setattr(resources, "files", lambda pkg: Fake(real(pkg)))
    with pytest.raises(ValueError, match="corrupted.*sha256"):
        data.shakespeare_text()


def test_split_and_vocab(corpus, text):
    train, val, vocab = corpus
    assert train.dtype == val.dtype == torch.long and train.dim() == val.dim() == 1
    assert (len(train), len(val)) == (1_003_854, 111_540)
    assert len(train) == int(0.9 * len(text)) and len(train) + len(val) == len(text)
    assert len(vocab) == 4 + 65 and set(vocab.itos[4:]) == set(text)
    assert int(train.min()) >= 4 and int(val.min()) >= 4  # no special token in the text
    # decoding gives the text back, split where the customary split cuts it
    assert vocab.decode(train[:5000]) == text[:5000]
    assert vocab.decode(val) == text[len(train):]
    assert vocab.decode(train[-300:]) == text[len(train) - 300 : len(train)]


def test_encode_text_matches_vocab_encode():
    vocab = data.Vocab("abc\n")
    for s in ("abc\nca", "ab\u00e9c"):  # ASCII fast path, and the general path with an unknown
        assert data.encode_text(s, vocab).tolist() == vocab.encode(s)


def test_char_corpus_bad_arguments():
    with pytest.raises(ValueError, match="val_fraction"):
        data.char_corpus("hello world", val_fraction=1.5)
    with pytest.raises(ValueError, match="text"):
        data.char_corpus("h")


def test_random_windows_are_shifted_slices():
    tokens = torch.arange(100)
    stream = iter(data.RandomWindows(tokens, context=8, batch_size=5, seed=3))
    for _ in range(20):
        x, y = next(stream)
        assert x.shape == y.shape == (5, 8)
        assert torch.equal(y, x + 1)  # y is x shifted by one position
        assert torch.equal(x[:, 1:], x[:, :-1] + 1)  # contiguous windows
        assert int(x.min()) >= 0 and int(y.max()) <= 99
    again = iter(data.RandomWindows(tokens, context=8, batch_size=5, seed=3))
    first = next(iter(data.RandomWindows(tokens, context=8, batch_size=5, seed=3)))
    assert torch.equal(next(again)[0], first[0])  # reproducible from the seed


def test_sequential_windows_cover_every_target_once():
    tokens = torch.arange(103)
    batches = data.sequential_windows(tokens, context=10, batch_size=4)
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([y for _, y in batches])
    assert xs.shape == (10, 10) and [len(x) for x, _ in batches] == [4, 4, 2]
    assert torch.equal(ys.flatten(), torch.arange(1, 101))  # each target once, in order
    assert torch.equal(xs.flatten(), torch.arange(100))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"context": 0}, "context"), ({"batch_size": 0}, "batch_size"), ({"context": 200}, "tokens")],
)
def test_windows_bad_arguments(kwargs, name):
    args = {"tokens": torch.arange(100), "context": 8, "batch_size": 4}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        data.sequential_windows(**args)
    with pytest.raises(ValueError, match=name):
        data.RandomWindows(**args)
    with pytest.raises(ValueError, match="tokens"):
        data.RandomWindows(torch.randn(100), 8, 4)


def test_the_wheel_ships_the_corpus(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("attnbook-*.whl")
    with zipfile.ZipFile(wheel) as z:
        blob = z.read("attnbook/resources/tinyshakespeare.txt.gz")
    assert hashlib.sha256(gzip.decompress(blob)).hexdigest() == data.SHAKESPEARE_SHA256
