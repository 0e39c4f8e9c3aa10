"""attnbook: the small PyTorch package behind the attnbook textbook.

The public names are imported lazily, so ``import attnbook`` loads nothing but torch's
metadata-free surface; ``attnbook.MultiHeadAttention`` imports ``attnbook.attention`` on first
use. Plotting (``attnbook.viz``) and widgets (``attnbook.widgets``) are never imported by the
model code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "AdditiveAttention": "attention",
    "AttentionalOutput": "attention",
    "LuongAttention": "attention",
    "MultiHeadAttention": "attention",
    "KVCache": "attention",
    "sinusoidal_encoding": "positional",
    "LearnedPositionalEmbedding": "positional",
    "RotaryEmbedding": "positional",
    "alibi_bias": "positional",
    "Transformer": "transformer",
    "TransformerConfig": "transformer",
    "DecoderOnly": "transformer",
    "DecoderOnlyConfig": "transformer",
    "AttentionWeights": "transformer",
    "Seq2Seq": "seq2seq",
    "VisionTransformer": "vision",
    "device": "utils",
    "seed_everything": "utils",
}

_SUBMODULES = (
    "functional", "attention", "positional", "efficient", "kernels", "transformer", "seq2seq", "pretrained",
    "data", "train", "cost", "viz", "widgets", "bench", "utils", "history", "exercises", "vision", "interpret", "results",
)

__all__ = sorted(_EXPORTS) + list(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .attention import (
        AdditiveAttention,
        AttentionalOutput,
        KVCache,
        LuongAttention,
        MultiHeadAttention,
    )
    from .positional import (
        LearnedPositionalEmbedding,
        RotaryEmbedding,
        alibi_bias,
        sinusoidal_encoding,
    )
    from .seq2seq import Seq2Seq
    from .transformer import (
        AttentionWeights,
        DecoderOnly,
        DecoderOnlyConfig,
        Transformer,
        TransformerConfig,
    )
    from .utils import device, seed_everything
    from .vision import VisionTransformer
