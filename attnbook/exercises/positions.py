"""Checkers for the exercises of "Positions" (book/positions.ipynb)."""

from __future__ import annotations

import math

import torch

from attnbook.exercises import Wrong, checker, expect
from attnbook.exercises._common import as_int, as_tensor, attempt, expect_close, expect_shape


@checker("the similarity of sinusoidal encodings",
         hint="PE_p . PE_{p+k} = sum over the d/2 pairs of cos(k w_i), w_i = 10000^(-2i/d)")
def sinusoidal_similarity(fn) -> str:
    from attnbook.positional import sinusoidal_encoding

    for d in (64, 16):
        ks = torch.arange(-64, 65)
        got = as_tensor(attempt(f"d = {d}", fn, ks.clone(), d), f"your similarity for d = {d}")
        expect_shape(got, (129,), f"your similarity for d = {d} and k = -64..64", "one number per offset")
        got = got.detach().cpu().double()
        table = sinusoidal_encoding(300, d, dtype=torch.float64)            # (P, d)
        for p in (64, 150):
            want = table[p + ks] @ table[p]                                 # PE_{p+k} . PE_p
            if torch.allclose(got, want, atol=1e-9):
                continue
            expect(not torch.allclose(got, 2 * want, atol=1e-9),
                   f"d = {d}: your values are twice PE_p . PE_(p+k): there are d/2 frequencies, one "
                   "per (sin, cos) pair, not d")
            all_dims = 10000.0 ** (-torch.arange(d, dtype=torch.float64) / d)
            expect(not torch.allclose(got, torch.cos(ks[:, None] * all_dims).sum(-1), atol=1e-9),
                   f"d = {d}: your frequencies are 10000^(-j/d) for every dimension j; pair i has "
                   "w_i = 10000^(-2i/d), i = 0 .. d/2 - 1")
            omega = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            expect(not torch.allclose(got, torch.sin(ks[:, None] * omega).sum(-1), atol=1e-9),
                   f"d = {d}: you summed sines; sin(a) sin(b) + cos(a) cos(b) = cos(a - b), so the "
                   "similarity is a sum of cosines")
            expect_close(got, want, f"d = {d}: your similarity at offsets -64..64",
                         f"it should equal PE_p . PE_(p+k) of the sinusoidal table (p = {p})", atol=1e-9)
    return "equal to PE_p . PE_(p+k) at every p: it depends on k only."


@checker("the pairs that never turn a full circle",
         hint="theta_i = base^(-2i/D); positions 0..L-1 give offsets up to L - 1; keep the i with "
              "(L - 1) theta_i < 2 pi")
def rope_turns(fn) -> str:
    from attnbook.positional import RotaryEmbedding

    for D, base, L in ((16, 10000.0, 32), (64, 10000.0, 32), (4, 25.13, 32), (8, 100.0, 10)):
        theta = RotaryEmbedding(D, base=base).theta
        want = [i for i in range(D // 2) if (L - 1) * float(theta[i]) < 2 * math.pi]
        got = attempt(f"D = {D}, base = {base}, L = {L}", fn, D, base, L)
        expect(isinstance(got, (list, tuple, torch.Tensor)),
               f"pairs_short_of_a_turn({D}, {base}, {L}) should be a list of pair indices, got {type(got).__name__}")
        got = sorted(int(i) for i in (got.tolist() if isinstance(got, torch.Tensor) else got))
        if got == want:
            continue
        call = f"pairs_short_of_a_turn({D}, {base}, {L}) = {got}, expected {want}"
        with_L = [i for i in range(D // 2) if L * float(theta[i]) < 2 * math.pi]
        expect(got != with_L, f"{call}: positions 0..{L - 1} give relative offsets up to {L - 1}, not {L}")
        half = [i for i in range(D // 2) if (L - 1) * base ** (-i / D) < 2 * math.pi]
        expect(got != half, f"{call}: pair i turns base^(-2i/D) radians per position (2i, not i)")
        raise Wrong(call)
    return "with D = 16 and base 10000, pairs 2..7 never see a full turn in training."


@checker("ALiBi's window", hint="the weights on distances 0, 1, 2, ... fall like e^(-m delta): the share of "
                                "the first n is 1 - e^(-m n); solve for n and round up")
def alibi_window(fn) -> str:
    from attnbook.positional import alibi_slopes

    distances = torch.arange(10_000, dtype=torch.float64)
    for m in [*alibi_slopes(4, dtype=torch.float64).tolist(), 5.0, 0.01]:
        for share in (0.9, 0.5, 0.99):
            w = torch.softmax(-m * distances, dim=0)
            cumulative = w.cumsum(0)
            want = int((cumulative < share).sum()) + 1                # smallest n with share reached
            got = as_int(attempt(f"m = {m}, share = {share}", fn, m, share), f"alibi_window({m}, {share})")
            if got == want:
                continue
            reached = float(cumulative[got - 1]) if 1 <= got <= len(cumulative) else float("nan")
            call = f"alibi_window({m:.4g}, {share}) = {got}, expected {want}"
            expect(got != math.ceil(math.log10(1 / (1 - share)) / m),
                   f"{call}: use the natural logarithm: the weights fall like e^(-m delta)")
            expect(not (got == want - 1),
                   f"{call}: the nearest {got} keys hold only {reached:.4f} of the weight, below "
                   f"{share}: round up, not down")
            raise Wrong(f"{call}: the nearest {got} keys hold {reached:.4f} of the weight")
    return "the smallest window that holds the share, checked against a softmax over 10,000 keys."


def _tiny_training(P: int, T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A learned table of P positions, before and after 5 Adam steps on sequences of T < P tokens."""
    from attnbook.positional import LearnedPositionalEmbedding

    torch.manual_seed(seed)
    vocab, dim = 5, 8
    tok, pos = torch.nn.Embedding(vocab, dim), LearnedPositionalEmbedding(P, dim, init_std=0.5)
    head = torch.nn.Linear(dim, vocab)
    before = pos.weight.detach().clone()
    params = [*tok.parameters(), *pos.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=0.05)
    for _ in range(5):
        x = torch.randint(0, vocab, (16, T))
        logits = head(tok(x) + pos(torch.arange(T)))                   # (16, T, vocab)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), x.roll(1, 1).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return pos.weight.detach().clone(), before


@checker("the rows of a learned table", hint="(trained - initial).norm(dim=1): one number per position")
def learned_rows(fn) -> str:
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    got = attempt("two random (10, 6) tables", fn, a.clone(), b.clone())
    expect_shape(got, (10,), "the change of a (10, 6) table", "one number per position (the norm over dim=1)")
    got = got.detach().double()
    expect(not torch.allclose(got, a.double().norm(dim=1)),
           "your numbers are the norms of the trained rows; measure how far each row moved: "
           "the norm of trained - initial")
    expect(not torch.allclose(got, ((a - b).double() ** 2).sum(1)),
           "your numbers are squared norms; take the square root (torch.linalg.vector_norm)")
    expect_close(got, (a - b).double().norm(dim=1), "the change of two random (10, 6) tables")
    trained, initial = _tiny_training(P=16, T=8)
    moved = attempt("a table trained on sequences of 8 tokens", fn, trained, initial).detach().double()
    expect(bool((moved[8:] == 0).all()) and bool((moved[:8] > 0).all()),
           f"a table of 16 positions trained on sequences of 8: your changes {moved.tolist()} "
           "should be positive for rows 0-7 and exactly 0 for rows 8-15")
    return "in a table trained on 8 positions, rows 8-15 did not move at all: no gradient reached them."
