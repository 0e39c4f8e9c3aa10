"""Sampling from a language model (attnbook.train): top-k keeps exactly k tokens, top-p the
smallest set of mass >= p (checked against a brute-force search over subsets' sizes), a
vanishing temperature is greedy, the sampled frequencies follow the filtered distribution, and
generate() gives the same tokens with and without the KV cache."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.train import generate, sample_next, top_k_filter, top_p_filter
from attnbook.transformer import DecoderOnly

V = 11


def _logits(B=4, V=V, seed=0) -> torch.Tensor:
    return torch.randn(B, V, generator=torch.Generator().manual_seed(seed)) * 2


@pytest.mark.parametrize("k", [1, 2, 5, V - 1, V, V + 3])
def test_top_k_keeps_exactly_k(k):
    logits = _logits()
    out = top_k_filter(logits, k)
    kept = torch.isfinite(out)
    assert (kept.sum(-1) == min(k, V)).all()
    # the kept ones are the k largest, unchanged
    kth = logits.sort(-1, descending=True).values[:, min(k, V) - 1 : min(k, V)]  # (B, 1)
    assert torch.equal(kept, logits >= kth)
    assert torch.equal(out[kept], logits[kept])
    assert (torch.softmax(out, -1) > 0).sum(-1).eq(min(k, V)).all()


def test_top_k_keeps_exactly_k_with_ties():
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0]])
    assert torch.isfinite(top_k_filter(logits, 2)).sum() == 2


def _smallest_nucleus_size(probs: torch.Tensor, p: float) -> int:
    """Brute force: the fewest tokens whose total probability reaches p (the best such set of
    size n is the n most probable tokens, so try n = 1, 2, ...)."""
    ordered = sorted(probs.tolist(), reverse=True)
    for n in range(1, len(ordered) + 1):
        if math.fsum(ordered[:n]) >= p - 1e-12:
            return n
    return len(ordered)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), p=st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_set_with_mass_at_least_p(seed, p):
    logits = _logits(B=3, seed=seed).double()
    out = top_p_filter(logits, p)
    probs = torch.softmax(logits, -1)
    for row in range(3):
        kept = torch.isfinite(out[row])
        n = int(kept.sum())
        assert n == _smallest_nucleus_size(probs[row], p)
        assert probs[row][kept].sum() >= p - 1e-6  # mass at least p
        # the kept tokens are the most probable ones
        if n < V:
            assert probs[row][kept].min() >= probs[row][~kept].max()
        assert torch.equal(out[row][kept], logits[row][kept])


def test_top_p_edge_cases():
    logits = torch.tensor([[5.0, 1.0, 0.0, -1.0]])
    assert torch.isfinite(top_p_filter(logits, 1e-9)).sum() == 1  # the top token always stays
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()
    # a token holding more than p alone is the whole nucleus
    assert torch.isfinite(top_p_filter(logits, 0.9)).sum() == 1


def test_zero_and_vanishing_temperature_are_greedy():
    logits = _logits(B=64)
    greedy = logits.argmax(-1)
    assert torch.equal(sample_next(logits, temperature=0), greedy)
    g = torch.Generator().manual_seed(0)
    for t in (1e-3, 1e-4):
        assert torch.equal(sample_next(logits, temperature=t, generator=g), greedy)
    # a moderate temperature does not (with 64 rows of spread logits)
    assert not torch.equal(sample_next(logits, temperature=2.0, generator=g), greedy)


def test_sampled_frequencies_follow_the_filtered_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.1]]))
    rows = logits.expand(20_000, 4)
    g = torch.Generator().manual_seed(0)
    draws = sample_next(rows, temperature=1.0, top_k=3, generator=g)
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    target = torch.tensor([0.5, 0.25, 0.15, 0.0]) / 0.9
    assert torch.allclose(freq, target.double(), atol=0.015)
    # temperature 2 flattens: p_i proportional to sqrt(pi_i)
    draws = sample_next(rows, temperature=2.0, generator=g)
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    flat = torch.tensor([0.5, 0.25, 0.15, 0.1]).sqrt()
    assert torch.allclose(freq, (flat / flat.sum()).double(), atol=0.015)
    # top-p 0.7 keeps {0.5, 0.25}
    draws = sample_next(rows, top_p=0.7, generator=g)
    assert set(draws.tolist()) == {0, 1}


def test_sampling_bad_arguments():
    logits = _logits()
    with pytest.raises(ValueError, match="k"):
        top_k_filter(logits, 0)
    with pytest.raises(ValueError, match="p"):
        top_p_filter(logits, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, temperature=-1)
    with pytest.raises(ValueError, match="logits"):
        sample_next(logits[0])


def _lm(positional="learned") -> DecoderOnly:
    torch.manual_seed(0)
    return DecoderOnly(V, 32, 4, 2, max_len=64, positional=positional).eval()


@pytest.mark.parametrize("positional", ["learned", "rope", "alibi"])
def test_generate_with_and_without_cache_agree(positional):
    model = _lm(positional)
    prompt = torch.randint(0, V, (3, 5), generator=torch.Generator().manual_seed(1))
    cached = generate(model, prompt, 40, temperature=0)
    uncached = generate(model, prompt, 40, temperature=0, use_cache=False)
    assert cached.shape == (3, 45) and torch.equal(cached[:, :5], prompt)
    assert torch.equal(cached, uncached)
    # sampled, with the same generator seed: the same draws, so the same tokens
    a = generate(model, prompt, 30, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(2))
    b = generate(model, prompt, 30, temperature=1.0, top_k=5, use_cache=False,
                 generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


def test_generate_greedy_is_the_argmax_of_the_full_forward():
    model = _lm()
    prompt = torch.randint(0, V, (2, 3), generator=torch.Generator().manual_seed(4))
    out = generate(model, prompt, 10, temperature=0)
    logits = model(out)  # (B, 13, V): the prediction for position t+1 sits at t
    assert torch.equal(out[:, 3:], logits[:, 2:-1].argmax(-1))


def test_generate_window_slides_past_max_len():
    model = _lm()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="max_len"):
        generate(model, prompt, 80, temperature=0)  # learned positions stop at 64
    out = generate(model, prompt, 80, temperature=0, use_cache=False, window=64)
    assert out.shape == (1, 81)
    # within the first 64 positions the window changes nothing
    assert torch.equal(out[:, :64], generate(model, prompt, 63, temperature=0))
    with pytest.raises(ValueError, match="window"):
        generate(model, prompt, 5, window=8)  # window needs use_cache=False


def test_generate_restores_training_mode_and_checks_arguments():
    model = _lm().train()
    generate(model, torch.zeros(1, 2, dtype=torch.long), 3)
    assert model.training
    with pytest.raises(ValueError, match="prompt"):
        generate(model, torch.zeros(2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, torch.zeros(1, 2, dtype=torch.long), -1)
