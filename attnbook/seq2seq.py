"""RNN encoder-decoders for sequence-to-sequence tasks, with and without attention.

* :class:`GRUEncoder` — a (bidirectional) GRU over the source; its states ``h_s`` are the
  *annotations* that attention reads, and ``s_0 = tanh(W_s h_summary)`` starts the decoder.
* :class:`ContextDecoder` — no attention (Cho et al., 2014; Sutskever et al., 2014): the whole
  source reaches the decoder through ONE fixed-length vector ``c``.
* :class:`BahdanauDecoder` — additive attention computed from the previous state ``s_{t-1}``
  *before* the recurrent step; the context is part of the GRU's input (Bahdanau et al., 2015).
* :class:`LuongDecoder` — ``dot`` / ``general`` / ``concat`` attention computed from the
  current state ``h_t`` *after* the recurrent step, then ``h̃_t = tanh(W_c [c_t; h_t])``
  (Luong et al., 2015). Without input feeding the GRU does not depend on the attention, so
  teacher forcing runs it as one call over the whole target.
* :class:`Seq2Seq` — encoder + decoder: teacher-forced logits, a step function for
  :func:`attnbook.train.greedy_decode` / :func:`attnbook.train.beam_search`, and greedy decoding
  that also returns the alignment matrices.
* :func:`build_seq2seq` — one call to build any of them.

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``E`` embedding size, ``H``
decoder state size, ``Dk`` annotation size (``2 x hidden`` for a bidirectional encoder), ``V``
target vocabulary. Masks are boolean, True = a real source token (= may attend). Padding must be
at the end of each row (what :func:`attnbook.data.make_batch` produces).

A decoder's per-step state is a dict of batch-first tensors, so beam search can reorder it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ._validate import check_ndim, check_positive_int, data_checks, require, shape_of
from .attention import AdditiveAttention, AttentionalOutput, LuongAttention

__all__ = [
    "GRUEncoder",
    "ContextDecoder",
    "BahdanauDecoder",
    "LuongDecoder",
    "Seq2Seq",
    "build_seq2seq",
    "ATTENTION_KINDS",
]

State = dict[str, torch.Tensor]
ATTENTION_KINDS = ("none", "bahdanau", "luong")


def _check_tokens(name: str, x: torch.Tensor, vocab_size: int) -> None:
    """``x`` must be a 2-D integer tensor of token ids in ``[0, vocab_size)``."""
    check_ndim(name, x, 2)
    require(
        not x.is_floating_point() and x.dtype != torch.bool,
        lambda: f"{name} must hold integer token ids, got dtype {x.dtype} with shape {shape_of(x)}",
    )
    require(x.shape[1] > 0, lambda: f"{name} must have at least one position, got shape {shape_of(x)}")
    if x.numel() and data_checks() and bool(((x < 0) | (x >= vocab_size)).any()):
        raise ValueError(
            f"{name} holds ids outside [0, {vocab_size}), got min {int(x.min())} and max {int(x.max())}"
        )


def _check_src_mask(src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
    """``src_mask (B, S)`` bool, True on a non-empty prefix of each row; returns lengths ``(B,)``."""
    require(isinstance(src_mask, torch.Tensor), lambda: f"src_mask must be a torch.Tensor, got {type(src_mask).__name__}")
    require(
        src_mask.dtype == torch.bool,
        lambda: f"src_mask must be boolean (True = real token), got dtype {src_mask.dtype} with shape {shape_of(src_mask)}",
    )
    require(
        src_mask.shape == src.shape,
        lambda: f"src_mask must have the shape of src {shape_of(src)}, got shape {shape_of(src_mask)}",
    )
    lengths = src_mask.sum(dim=1)  # (B,)
    require(bool((lengths > 0).all()), "src_mask must mark at least one real token in every row")
    positions = torch.arange(src.shape[1], device=src.device)  # (S,)
    require(
        bool((src_mask == (positions < lengths[:, None])).all()),
        "src_mask must be True on a prefix of each row (padding at the end, as make_batch pads)",
    )
    return lengths


# ---------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------


class GRUEncoder(nn.Module):
    """A GRU encoder (Cho et al., 2014), bidirectional as in Bahdanau et al. (2015).

    Forward states ``h→_s = GRU(x_s, h→_{s-1})``, backward states ``h←_s = GRU(x_s, h←_{s+1})``,
    annotations ``h_s = [h→_s; h←_s]`` (``Dk = 2 x hidden_dim``; ``h_s = h→_s`` when
    unidirectional). The summary of the whole source is ``[h→_S; h←_1]`` (the two states that
    have read every token) and the decoder starts from ``s_0 = tanh(W_s [h→_S; h←_1])``.

    ``forward(src (B, S), src_mask (B, S)) -> (annotations (B, S, Dk), s_0 (B, decoder_dim))``.
    Padded sequences are packed, so padding changes nothing; annotations are 0 on padding.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, decoder_dim: int,
                 bidirectional: bool = True, pad_idx: int = 0) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("embed_dim", embed_dim),
                            ("hidden_dim", hidden_dim), ("decoder_dim", decoder_dim)):
            check_positive_int(name, value)
        require(0 <= pad_idx < vocab_size, lambda: f"pad_idx must be in [0, {vocab_size}), got {pad_idx!r}")
        self.vocab_size, self.hidden_dim, self.bidirectional = vocab_size, hidden_dim, bidirectional
        self.out_dim = hidden_dim * (2 if bidirectional else 1)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx)
        self.rnn = nn.GRU(embed_dim, hidden_dim, batch_first=True, bidirectional=bidirectional)
        self.W_s = nn.Linear(self.out_dim, decoder_dim)

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_tokens("src", src, self.vocab_size)
        lengths = _check_src_mask(src, src_mask)  # (B,)
        x = self.embedding(src)  # (B, S, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = self.rnn(packed)  # h_n: (directions, B, hidden), the state after the last real token
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])  # (B, S, Dk)
        summary = torch.cat(list(h_n), dim=-1)  # (B, Dk) = [h→_S; h←_1]
        s0 = torch.tanh(self.W_s(summary))  # (B, H)
        return h, s0


# ---------------------------------------------------------------------------------------------
# Decoders
# ---------------------------------------------------------------------------------------------


class _Decoder(nn.Module):
    """Shared parts: target embedding ``E y``, output layer, argument checks, the step interface.

    Subclasses implement ``init_state(annotations, src_mask, s0) -> state``,
    ``step(y_prev (B,), state) -> (logits (B, V), state, weights (B, S) | None)`` and
    ``forward(tgt_in (B, T), state) -> (logits (B, T, V), weights (B, T, S) | None)``; the two
    give the same logits for the same tokens (teacher forcing = stepping with the true tokens).
    """

    uses_attention = True

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, key_dim: int,
                 pad_idx: int = 0) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("embed_dim", embed_dim),
                            ("hidden_dim", hidden_dim), ("key_dim", key_dim)):
            check_positive_int(name, value)
        require(0 <= pad_idx < vocab_size, lambda: f"pad_idx must be in [0, {vocab_size}), got {pad_idx!r}")
        self.vocab_size, self.embed_dim = vocab_size, embed_dim
        self.hidden_dim, self.key_dim = hidden_dim, key_dim
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx)

    def _check_memory(self, annotations: torch.Tensor, src_mask: torch.Tensor, s0: torch.Tensor) -> None:
        check_ndim("annotations", annotations, 3)
        B, S, Dk = annotations.shape
        require(Dk == self.key_dim,
                lambda: f"annotations must be (B, S, key_dim={self.key_dim}), got shape {shape_of(annotations)}")
        require(isinstance(src_mask, torch.Tensor) and src_mask.dtype == torch.bool
                and tuple(src_mask.shape) == (B, S),
                lambda: f"src_mask must be a boolean (B, S) = {(B, S)} tensor, got {shape_of(src_mask)}")
        check_ndim("s0", s0, 2)
        require(tuple(s0.shape) == (B, self.hidden_dim),
                lambda: f"s0 must be (B, hidden_dim) = {(B, self.hidden_dim)}, got shape {shape_of(s0)}")

    def _check_state(self, state: State) -> None:
        require(isinstance(state, dict) and "s" in state,
                lambda: f"state must be the dict made by init_state, got {type(state).__name__}")

    def _check_step_tokens(self, y_prev: torch.Tensor, state: State) -> None:
        self._check_state(state)
        check_ndim("y_prev", y_prev, 1)
        require(y_prev.shape[0] == state["s"].shape[0],
                lambda: f"y_prev must be (B,) with B={state['s'].shape[0]} (the state's batch), got shape {shape_of(y_prev)}")
        _check_tokens("y_prev", y_prev[:, None], self.vocab_size)

    def _check_tgt(self, tgt_in: torch.Tensor, state: State) -> None:
        self._check_state(state)
        _check_tokens("tgt_in", tgt_in, self.vocab_size)
        require(tgt_in.shape[0] == state["s"].shape[0],
                lambda: f"tgt_in must be (B, T) with B={state['s'].shape[0]} (the state's batch), got shape {shape_of(tgt_in)}")


class ContextDecoder(_Decoder):
    """An encoder-decoder WITHOUT attention (Cho et al., 2014; Sutskever et al., 2014).

    The source reaches the decoder only through the fixed-length vector ``c = s_0`` (the
    encoder's summary), given to every step:

    ``s_t = GRU([E y_{t-1}; c], s_{t-1})``,
    ``p(y_t | y_<t, x) = softmax(W_out tanh(W_o [s_t; c; E y_{t-1}]))``.

    Nothing depends on an attention, so teacher forcing runs the GRU as one call.
    ``key_dim`` is accepted for a uniform constructor and ignored. ``weights`` are ``None``.
    """

    uses_attention = False

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, key_dim: int,
                 pad_idx: int = 0) -> None:
        super().__init__(vocab_size, embed_dim, hidden_dim, key_dim, pad_idx)
        H = hidden_dim
        self.rnn = nn.GRU(embed_dim + H, H, batch_first=True)
        self.W_o = nn.Linear(2 * H + embed_dim, H)
        self.W_out = nn.Linear(H, vocab_size)

    def init_state(self, annotations: torch.Tensor, src_mask: torch.Tensor, s0: torch.Tensor) -> State:
        self._check_memory(annotations, src_mask, s0)
        return {"s": s0, "c": s0}  # (B, H), (B, H): the annotations are never looked at

    def _run(self, Ey: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """Ey ``(B, T, E)`` -> logits ``(B, T, V)``, last state ``(B, H)``."""
        c = state["c"][:, None].expand(-1, Ey.shape[1], -1)  # (B, T, H)
        s, s_last = self.rnn(torch.cat([Ey, c], dim=-1), state["s"][None].contiguous())  # (B, T, H)
        o = torch.tanh(self.W_o(torch.cat([s, c, Ey], dim=-1)))  # (B, T, H)
        return self.W_out(o), s_last[0]

    def step(self, y_prev: torch.Tensor, state: State) -> tuple[torch.Tensor, State, None]:
        self._check_step_tokens(y_prev, state)
        logits, s = self._run(self.embedding(y_prev)[:, None], state)  # (B, 1, V)
        return logits[:, 0], {**state, "s": s}, None

    def forward(self, tgt_in: torch.Tensor, state: State) -> tuple[torch.Tensor, None]:
        self._check_tgt(tgt_in, state)
        logits, _ = self._run(self.embedding(tgt_in), state)  # (B, T, V)
        return logits, None


class BahdanauDecoder(_Decoder):
    """The decoder of Bahdanau et al. (2015): attend with the PREVIOUS state, then step.

    ``e_ts = v_aᵀ tanh(W_a s_{t-1} + U_a h_s)``, ``α_ts = softmax_s(e_ts)``,
    ``c_t = Σ_s α_ts h_s`` (:class:`attnbook.attention.AdditiveAttention`),
    ``s_t = GRU([E y_{t-1}; c_t], s_{t-1})``,
    ``p(y_t | y_<t, x) = softmax(W_out tanh(W_o [s_t; c_t; E y_{t-1}]))`` (a tanh "deep output";
    the paper uses a maxout layer on ``s_{t-1}``).

    ``U_a h_s`` does not depend on ``t`` and is computed once per source (``init_state``). The
    context enters the GRU, so even with teacher forcing the decoder runs one step at a time.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, key_dim: int,
                 attention_dim: int | None = None, pad_idx: int = 0) -> None:
        super().__init__(vocab_size, embed_dim, hidden_dim, key_dim, pad_idx)
        H, Dk = hidden_dim, key_dim
        self.attention = AdditiveAttention(H, Dk, attention_dim or H)
        self.cell = nn.GRUCell(embed_dim + Dk, H)
        self.W_o = nn.Linear(H + Dk + embed_dim, H)
        self.W_out = nn.Linear(H, vocab_size)

    def init_state(self, annotations: torch.Tensor, src_mask: torch.Tensor, s0: torch.Tensor) -> State:
        self._check_memory(annotations, src_mask, s0)
        return {
            "s": s0,                                            # (B, H)
            "h": annotations,                                   # (B, S, Dk)
            "mask": src_mask,                                   # (B, S)
            "Uh": self.attention.project_keys(annotations),     # (B, S, Da): U_a h_s, once
        }

    def _recur(self, Ey: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One recurrent step. Ey ``(B, E)`` -> s_t ``(B, H)``, c_t ``(B, Dk)``, α_t ``(B, S)``."""
        c, alpha = self.attention(state["s"], state["h"], state["h"], state["mask"],
                                  projected_keys=state["Uh"])  # (B, Dk), (B, S)
        s = self.cell(torch.cat([Ey, c], dim=-1), state["s"])  # (B, H)
        return s, c, alpha

    def _readout(self, s: torch.Tensor, c: torch.Tensor, Ey: torch.Tensor) -> torch.Tensor:
        """logits = W_out tanh(W_o [s_t; c_t; E y_{t-1}]); works on (B, ·) and (B, T, ·)."""
        return self.W_out(torch.tanh(self.W_o(torch.cat([s, c, Ey], dim=-1))))

    def step(self, y_prev: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor]:
        self._check_step_tokens(y_prev, state)
        Ey = self.embedding(y_prev)  # (B, E)
        s, c, alpha = self._recur(Ey, state)
        return self._readout(s, c, Ey), {**state, "s": s}, alpha

    def forward(self, tgt_in: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_tgt(tgt_in, state)
        Ey = self.embedding(tgt_in)  # (B, T, E)
        states, contexts, alphas = [], [], []
        for t in range(tgt_in.shape[1]):  # a true recurrence: c_t needs s_{t-1}
            s, c, alpha = self._recur(Ey[:, t], state)
            state = {**state, "s": s}
            states.append(s)
            contexts.append(c)
            alphas.append(alpha)
        s_all, c_all = torch.stack(states, 1), torch.stack(contexts, 1)  # (B, T, H), (B, T, Dk)
        return self._readout(s_all, c_all, Ey), torch.stack(alphas, 1)  # (B, T, V), (B, T, S)


class LuongDecoder(_Decoder):
    """The global-attention decoder of Luong et al. (2015): step, then attend with the CURRENT state.

    ``h_t = GRU(E y_{t-1}, h_{t-1})`` (with input feeding: ``GRU([E y_{t-1}; h̃_{t-1}], h_{t-1})``),
    ``α_ts = softmax_s(score(h_t, h̄_s))`` with ``score`` one of ``h_tᵀ h̄_s`` (dot),
    ``h_tᵀ W_a h̄_s`` (general), ``v_aᵀ tanh(W_a [h_t; h̄_s])`` (concat)
    (:class:`attnbook.attention.LuongAttention`), ``c_t = Σ_s α_ts h̄_s``,
    ``h̃_t = tanh(W_c [c_t; h_t])`` (:class:`attnbook.attention.AttentionalOutput`),
    ``p(y_t | y_<t, x) = softmax(W_s h̃_t)``.

    Without input feeding (the default) the GRU never sees the attention, so teacher forcing runs
    it as ONE call over the whole target and attends for all ``T`` steps in one batched product.
    ``score="dot"`` needs ``hidden_dim == key_dim``.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, key_dim: int,
                 score: str = "general", input_feeding: bool = False,
                 attention_dim: int | None = None, pad_idx: int = 0) -> None:
        super().__init__(vocab_size, embed_dim, hidden_dim, key_dim, pad_idx)
        H, Dk = hidden_dim, key_dim
        self.score, self.input_feeding = score, bool(input_feeding)
        self.attention = LuongAttention(H, Dk, score=score,
                                        hidden_dim=(attention_dim or H) if score == "concat" else None)
        self.rnn = nn.GRU(embed_dim + (H if self.input_feeding else 0), H, batch_first=True)
        self.attentional = AttentionalOutput(Dk, H, H)  # W_c
        self.W_s = nn.Linear(H, vocab_size)

    def init_state(self, annotations: torch.Tensor, src_mask: torch.Tensor, s0: torch.Tensor) -> State:
        self._check_memory(annotations, src_mask, s0)
        state = {
            "s": s0,                                            # (B, H)
            "h": annotations,                                   # (B, S, Dk)
            "mask": src_mask,                                   # (B, S)
            "Wh": self.attention.project_keys(annotations),     # (B, S, ·): key side, once
        }
        if self.input_feeding:
            state["h_tilde"] = torch.zeros_like(s0)             # (B, H): h̃_0 = 0
        return state

    def _attend(self, h_t: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """h_t ``(B, H)`` or ``(B, T, H)`` -> h̃_t of the same shape and α ``(B, [T,] S)``."""
        c, alpha = self.attention(h_t, state["h"], state["h"], state["mask"],
                                  projected_keys=state["Wh"])  # (B, [T,] Dk), (B, [T,] S)
        return self.attentional(c, h_t), alpha

    def _step(self, Ey: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor]:
        """One step. Ey ``(B, E)`` -> logits ``(B, V)``, new state, α_t ``(B, S)``."""
        x = torch.cat([Ey, state["h_tilde"]], dim=-1) if self.input_feeding else Ey  # (B, E[+H])
        _, h = self.rnn(x[:, None], state["s"][None].contiguous())  # (1, B, H)
        h_t = h[0]  # (B, H)
        h_tilde, alpha = self._attend(h_t, state)
        new = {**state, "s": h_t}
        if self.input_feeding:
            new["h_tilde"] = h_tilde
        return self.W_s(h_tilde), new, alpha

    def step(self, y_prev: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor]:
        self._check_step_tokens(y_prev, state)
        return self._step(self.embedding(y_prev), state)

    def forward(self, tgt_in: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_tgt(tgt_in, state)
        Ey = self.embedding(tgt_in)  # (B, T, E)
        if self.input_feeding:  # h̃_{t-1} feeds step t: a per-step loop
            logits, alphas = [], []
            for t in range(tgt_in.shape[1]):
                z, state, alpha = self._step(Ey[:, t], state)
                logits.append(z)
                alphas.append(alpha)
            return torch.stack(logits, 1), torch.stack(alphas, 1)  # (B, T, V), (B, T, S)
        h_all, _ = self.rnn(Ey, state["s"][None].contiguous())  # (B, T, H): all h_t in one call
        h_tilde, alpha = self._attend(h_all, state)  # (B, T, H), (B, T, S)
        return self.W_s(h_tilde), alpha


# ---------------------------------------------------------------------------------------------
# Encoder + decoder
# ---------------------------------------------------------------------------------------------


class Seq2Seq(nn.Module):
    """An encoder-decoder: ``p(y | x) = Π_t p(y_t | y_<t, x)``.

    * ``forward(src (B, S), src_mask (B, S), tgt_in (B, T)) -> logits (B, T, V)`` — teacher
      forcing: ``tgt_in = <bos> y_1 .. y_{T-1}``; ``forward_with_alignments`` also returns the
      attention weights ``(B, T, S)`` (``None`` without attention).
    * ``start(src, src_mask) -> state`` and ``step_fn(prefix (B, t), state) -> (log_probs (B, V),
      state[, weights (B, S)])`` — the step interface of :func:`attnbook.train.greedy_decode`
      and :func:`attnbook.train.beam_search` (the state is a dict of batch-first tensors).
    * ``greedy_decode(src, src_mask, max_len) -> (tokens (B, L), alignments (B, L, S) | None)``.
    * ``translate(sources, src_vocab, tgt_vocab, max_len)`` — strings in, strings and per-pair
      alignment matrices out.
    """

    def __init__(self, encoder: GRUEncoder, decoder: _Decoder) -> None:
        super().__init__()
        require(isinstance(encoder, GRUEncoder), lambda: f"encoder must be a GRUEncoder, got {type(encoder).__name__}")
        require(isinstance(decoder, _Decoder), lambda: f"decoder must be a seq2seq decoder, got {type(decoder).__name__}")
        require(encoder.out_dim == decoder.key_dim,
                lambda: f"the encoder's annotations have {encoder.out_dim} features but the decoder expects "
                f"key_dim={decoder.key_dim}")
        require(encoder.W_s.out_features == decoder.hidden_dim,
                lambda: f"the encoder makes s_0 of size {encoder.W_s.out_features} but the decoder's "
                f"hidden_dim is {decoder.hidden_dim}")
        self.encoder, self.decoder = encoder, decoder

    @property
    def uses_attention(self) -> bool:
        return self.decoder.uses_attention

    def start(self, src: torch.Tensor, src_mask: torch.Tensor) -> State:
        """Encode the source and return the decoder's initial state."""
        h, s0 = self.encoder(src, src_mask)  # (B, S, Dk), (B, H)
        return self.decoder.init_state(h, src_mask, s0)

    def forward_with_alignments(self, src: torch.Tensor, src_mask: torch.Tensor,
                                tgt_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        state = self.start(src, src_mask)
        return self.decoder(tgt_in, state)  # (B, T, V), (B, T, S) | None

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.forward_with_alignments(src, src_mask, tgt_in)[0]  # (B, T, V)

    def step_fn(self, prefix: torch.Tensor, state: State) -> tuple:
        """The step function of :mod:`attnbook.train`: feeds ``prefix[:, -1]`` (the last token)."""
        check_ndim("prefix", prefix, 2)
        logits, state, alpha = self.decoder.step(prefix[:, -1], state)  # (B, V)
        log_probs = F.log_softmax(logits, dim=-1)
        return (log_probs, state) if alpha is None else (log_probs, state, alpha)

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, src_mask: torch.Tensor, max_len: int,
                      bos: int = 1, eos: int = 2, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``y_t = argmax p(y | y_<t, x)`` until every row has produced ``eos`` or ``max_len`` tokens.

        Returns tokens ``(B, L)`` (``<eos>`` included, ``pad`` after it) and the alignments
        ``(B, L, S)``: row ``t`` holds the attention weights used for token ``t`` (zeros after
        ``<eos>``; ``None`` for a decoder without attention).
        """
        check_positive_int("max_len", max_len)
        state = self.start(src, src_mask)
        B = src.shape[0]
        y = torch.full((B,), bos, dtype=torch.long, device=src.device)  # (B,)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)  # (B,)
        tokens, alphas = [], []
        for _ in range(max_len):
            logits, state, alpha = self.decoder.step(y, state)  # (B, V), (B, S)
            y = torch.where(done, torch.full_like(y, pad), logits.argmax(dim=-1))  # (B,)
            tokens.append(y)
            if alpha is not None:
                alphas.append(alpha.masked_fill(done[:, None], 0.0))
            done = done | (y == eos)
            if bool(done.all()):
                break
            y = torch.where(done, torch.full_like(y, bos), y)  # any valid id; output is padded
        return torch.stack(tokens, 1), (torch.stack(alphas, 1) if alphas else None)

    @torch.no_grad()
    def translate(self, sources: Sequence[str], src_vocab: Any, tgt_vocab: Any | None = None,
                  max_len: int = 32, batch_size: int = 256) -> tuple[list[str], list[torch.Tensor | None]]:
        """Greedy translations of ``sources`` (strings) and, per source, its alignment matrix
        ``(len(output) + 1, len(source))`` (the ``+ 1`` row is ``<eos>``; ``None`` without attention).

        ``src_vocab`` / ``tgt_vocab`` are :class:`attnbook.data.Vocab` s (``tgt_vocab`` defaults
        to ``src_vocab``). The model is put in eval mode for the call and restored after.
        """
        tgt_vocab = src_vocab if tgt_vocab is None else tgt_vocab
        require(len(sources) > 0 and all(isinstance(s, str) and s for s in sources),
                "sources must be a non-empty list of non-empty strings")
        check_positive_int("batch_size", batch_size)
        dev = next(self.parameters()).device
        was_training = self.training
        self.eval()
        outputs: list[str] = []
        alignments: list[torch.Tensor | None] = []
        try:
            for i in range(0, len(sources), batch_size):
                chunk = list(sources[i:i + batch_size])
                ids = [src_vocab.encode(s) for s in chunk]
                S = max(len(r) for r in ids)
                src = torch.tensor([r + [src_vocab.pad] * (S - len(r)) for r in ids], device=dev)  # (B, S)
                lengths = torch.tensor([len(r) for r in ids], device=dev)  # (B,)
                mask = torch.arange(S, device=dev) < lengths[:, None]  # (B, S)
                tokens, alpha = self.greedy_decode(src, mask, max_len, tgt_vocab.bos, tgt_vocab.eos,
                                                   tgt_vocab.pad)
                for b, row in enumerate(tokens):
                    text = tgt_vocab.decode(row)
                    outputs.append(text)
                    n_out = min(len(text) + 1, tokens.shape[1])
                    alignments.append(None if alpha is None else alpha[b, :n_out, : len(ids[b])].cpu())
        finally:
            self.train(was_training)
        return outputs, alignments


def build_seq2seq(src_vocab_size: int, tgt_vocab_size: int, attention: str = "bahdanau",
                  embed_dim: int = 32, hidden_dim: int = 64, bidirectional: bool = True,
                  score: str = "general", input_feeding: bool = False,
                  decoder_dim: int | None = None, attention_dim: int | None = None,
                  pad_idx: int = 0) -> Seq2Seq:
    """A :class:`Seq2Seq` with a :class:`GRUEncoder` (``hidden_dim`` per direction) and the decoder
    named by ``attention``: ``"none"`` (:class:`ContextDecoder`), ``"bahdanau"``
    (:class:`BahdanauDecoder`) or ``"luong"`` (:class:`LuongDecoder` with ``score`` and
    ``input_feeding``). The decoder state size ``decoder_dim`` defaults to the annotation size
    (``2 x hidden_dim`` when bidirectional), which the ``dot`` score needs.
    """
    require(attention in ATTENTION_KINDS, lambda: f"attention must be one of {ATTENTION_KINDS}, got {attention!r}")
    require(attention == "luong" or not input_feeding,
            lambda: f"input_feeding is a Luong decoder option, got attention={attention!r}")
    check_positive_int("hidden_dim", hidden_dim)
    key_dim = hidden_dim * (2 if bidirectional else 1)
    H = key_dim if decoder_dim is None else decoder_dim
    encoder = GRUEncoder(src_vocab_size, embed_dim, hidden_dim, H, bidirectional, pad_idx)
    decoder: _Decoder
    if attention == "none":
        decoder = ContextDecoder(tgt_vocab_size, embed_dim, H, key_dim, pad_idx)
    elif attention == "bahdanau":
        decoder = BahdanauDecoder(tgt_vocab_size, embed_dim, H, key_dim, attention_dim, pad_idx)
    else:
        decoder = LuongDecoder(tgt_vocab_size, embed_dim, H, key_dim, score, input_feeding,
                               attention_dim, pad_idx)
    return Seq2Seq(encoder, decoder)
