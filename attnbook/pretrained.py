"""Released weights in ``attnbook`` models: GPT-2 (Radford et al., 2019).

GPT-2 is a decoder-only Transformer that :class:`attnbook.DecoderOnly` can express exactly:
pre-norm blocks with a final LayerNorm (``ln_f``), learned absolute positions added to the
*unscaled* token embedding, a GELU FFN in its tanh approximation, biases everywhere, LayerNorm
``eps = 1e-5`` and an output projection tied to the token embedding (``logits = h E^T``).

:func:`gpt2_from_state_dict` reads a state dict in the layout of Hugging Face's
``GPT2LMHeadModel`` (keys ``transformer.wte.weight``, ``transformer.h.0.attn.c_attn.weight``,
...; ``GPT2Model``'s keys without the ``transformer.`` prefix are accepted too). Two things
differ from ``nn.Linear``:

* GPT-2's ``Conv1D`` stores its weight as ``(in, out)`` and computes ``x W + b``: the transpose
  of ``nn.Linear``'s ``(out, in)`` weight, which computes ``x W^T + b``;
* ``c_attn`` packs the three input projections, ``[q | k | v] = x W_attn + b_attn`` with
  ``W_attn (E, 3E)``, so its columns are cut in three.

``transformers`` is not needed here (only a state dict of tensors); the tests build a random
``GPT2LMHeadModel`` with it and compare logits and generations. :func:`gpt2_from_hub` fetches
the released weights with ``huggingface_hub``, and only when the environment variable
``ATTNBOOK_ALLOW_DOWNLOADS=1`` is set: the book runs offline by default.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

import torch

from ._validate import require, shape_of
from .transformer import DecoderOnly

__all__ = [
    "DOWNLOADS_ENV",
    "downloads_allowed",
    "gpt2_from_state_dict",
    "gpt2_from_hub",
]

#: The environment variable that allows :func:`gpt2_from_hub` to use the network.
DOWNLOADS_ENV = "ATTNBOOK_ALLOW_DOWNLOADS"

# buffers some GPT-2 checkpoints carry (the causal mask and its fill value), not parameters
_BUFFERS = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)$")
_LAYER_KEYS = (
    "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
    "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
    "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
)


def downloads_allowed() -> bool:
    """True when ``ATTNBOOK_ALLOW_DOWNLOADS`` is set to ``1`` (or ``true``/``yes``)."""
    return os.environ.get(DOWNLOADS_ENV, "").strip().lower() in ("1", "true", "yes")


def _strip_prefix(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """GPT2Model-style keys (no ``transformer.``), without buffers; and ``lm_head.weight``."""
    require(isinstance(state_dict, Mapping), f"state_dict must be a mapping of tensors, got "
            f"{type(state_dict).__name__}")
    out: dict[str, torch.Tensor] = {}
    head = None
    for key, value in state_dict.items():
        require(isinstance(value, torch.Tensor), f"state_dict[{key!r}] must be a tensor, got "
                f"{type(value).__name__}")
        if key == "lm_head.weight":
            head = value
            continue
        key = key.removeprefix("transformer.")
        if not _BUFFERS.fullmatch(key):
            out[key] = value
    return out, head


def _take(sd: dict[str, torch.Tensor], key: str, shape: tuple[int, ...]) -> torch.Tensor:
    require(key in sd, f"state_dict has no {key!r} (a GPT2LMHeadModel state dict was expected)")
    t = sd.pop(key)
    require(tuple(t.shape) == shape, f"state_dict[{key!r}] must have shape {shape}, got shape {shape_of(t)}")
    return t


def _convert(sd: dict[str, torch.Tensor], num_layers: int, E: int, d_ff: int) -> dict[str, torch.Tensor]:
    """GPT-2 keys -> :class:`DecoderOnly` keys; every Conv1D weight transposed to nn.Linear's."""
    V, P = sd["wte.weight"].shape[0], sd["wpe.weight"].shape[0]
    new = {
        "embed.embedding.weight": _take(sd, "wte.weight", (V, E)),
        "positions.learned.weight": _take(sd, "wpe.weight", (P, E)),
        "norm.weight": _take(sd, "ln_f.weight", (E,)),
        "norm.bias": _take(sd, "ln_f.bias", (E,)),
    }
    for i in range(num_layers):
        def take(name: str, shape: tuple[int, ...], i: int = i) -> torch.Tensor:
            return _take(sd, f"h.{i}.{name}", shape)

        ours = f"layers.{i}."
        W_qkv = take("attn.c_attn.weight", (E, 3 * E))  # (E, 3E): x W_qkv = [q | k | v]
        b_qkv = take("attn.c_attn.bias", (3 * E,))
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            new[f"{ours}self_attn.{name}.weight"] = W_qkv[:, j * E : (j + 1) * E].t()  # (E, E)
            new[f"{ours}self_attn.{name}.bias"] = b_qkv[j * E : (j + 1) * E]
        new[f"{ours}self_attn.out_proj.weight"] = take("attn.c_proj.weight", (E, E)).t()
        new[f"{ours}self_attn.out_proj.bias"] = take("attn.c_proj.bias", (E,))
        new[f"{ours}ffn.linear1.weight"] = take("mlp.c_fc.weight", (E, d_ff)).t()  # (d_ff, E)
        new[f"{ours}ffn.linear1.bias"] = take("mlp.c_fc.bias", (d_ff,))
        new[f"{ours}ffn.linear2.weight"] = take("mlp.c_proj.weight", (d_ff, E)).t()  # (E, d_ff)
        new[f"{ours}ffn.linear2.bias"] = take("mlp.c_proj.bias", (E,))
        for n in (1, 2):
            new[f"{ours}norm{n}.weight"] = take(f"ln_{n}.weight", (E,))
            new[f"{ours}norm{n}.bias"] = take(f"ln_{n}.bias", (E,))
    require(not sd, f"state_dict has keys a GPT-2 model does not: {sorted(sd)[:8]}")
    new["out.weight"] = new["embed.embedding.weight"]  # tied: the same (V, E) matrix
    return new


def gpt2_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, num_heads: int, norm_eps: float = 1e-5
) -> DecoderOnly:
    """A :class:`DecoderOnly` whose logits equal GPT-2's, from a ``GPT2LMHeadModel`` state dict.

    The sizes come from the tensors: vocabulary ``V`` and width ``E`` from ``wte (V, E)``,
    the position table ``max_len`` from ``wpe``, ``d_ff`` from ``c_fc``, the number of layers
    from the ``h.<i>`` keys; ``num_heads`` is not in the weights and must be given (12 for the
    released ``gpt2``). The model is built as ``DecoderOnly(V, E, num_heads, L,
    positional="learned", activation="gelu_tanh", scale_embedding=False, tie_weights=True,
    norm_eps=norm_eps)``, in eval mode, in the dtype and on the device of ``wte``.
    ``ValueError`` for a missing, misshapen or unknown key, or an ``lm_head`` not tied to ``wte``.
    """
    sd, head = _strip_prefix(state_dict)
    require("wte.weight" in sd and "wpe.weight" in sd,
            f"state_dict must hold transformer.wte.weight and transformer.wpe.weight, got keys "
            f"{sorted(state_dict)[:6]}...")
    wte = sd["wte.weight"]
    require(wte.dim() == 2, f"state_dict['transformer.wte.weight'] must be (V, E), got shape {shape_of(wte)}")
    V, E = wte.shape
    require(isinstance(num_heads, int) and num_heads >= 1 and E % num_heads == 0,
            f"num_heads must be a positive int dividing the width E={E} of wte {shape_of(wte)}, "
            f"got {num_heads!r}")
    if head is not None:
        require(tuple(head.shape) == (V, E) and torch.equal(head, wte),
                f"lm_head.weight {shape_of(head)} must equal (be tied to) wte {shape_of(wte)}")
    layers = sorted({int(m.group(1)) for k in sd if (m := re.match(r"h\.(\d+)\.", k))})
    require(layers and layers == list(range(len(layers))),
            f"state_dict must hold layers h.0 .. h.<L-1>, got layer indices {layers}")
    c_fc = sd.get("h.0.mlp.c_fc.weight")
    require(c_fc is not None and c_fc.dim() == 2,
            f"state_dict['transformer.h.0.mlp.c_fc.weight'] must be (E, d_ff), got {shape_of(c_fc)}")
    d_ff = c_fc.shape[1]
    P = sd["wpe.weight"].shape[0]
    new = _convert(dict(sd), len(layers), E, d_ff)
    model = DecoderOnly(
        V, E, num_heads, len(layers), d_ff=d_ff, max_len=P, positional="learned",
        norm_first=True, activation="gelu_tanh", bias=True, norm_eps=norm_eps,
        scale_embedding=False, tie_weights=True,
    ).to(device=wte.device, dtype=wte.dtype)
    model.load_state_dict(new, strict=True)
    return model.eval()


def gpt2_from_hub(repo_id: str = "gpt2", *, revision: str | None = None) -> DecoderOnly:
    """The released GPT-2 weights (``repo_id`` on the Hugging Face Hub, e.g. ``"gpt2"``, the 124M
    model) in a :class:`DecoderOnly`, through ``huggingface_hub`` and ``safetensors`` (the
    ``gpt2`` extra). Refuses (``RuntimeError``, before touching the network) unless
    ``ATTNBOOK_ALLOW_DOWNLOADS=1``."""
    if not downloads_allowed():
        raise RuntimeError(
            f"downloads are off: set {DOWNLOADS_ENV}=1 to let attnbook fetch {repo_id!r} from the "
            f"Hugging Face Hub"
        )
    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file

    config = json.loads(open(hf_hub_download(repo_id, "config.json", revision=revision)).read())
    weights = load_file(hf_hub_download(repo_id, "model.safetensors", revision=revision))
    return gpt2_from_state_dict(
        weights, num_heads=int(config["n_head"]), norm_eps=float(config.get("layer_norm_epsilon", 1e-5))
    )
