"""Tests of attnbook.train against manual computations: the loss by log-softmax and gather, the
schedule by its closed form, decoding against brute-force enumeration of every sequence, the
metrics by hand, and checkpoints by a ``weights_only`` reload."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attnbook import train
from attnbook.train import (
    History,
    beam_search,
    evaluate_loss,
    exact_match,
    fit,
    greedy_decode,
    load_checkpoint,
    model_device,
    move_to,
    save_checkpoint,
    sequence_cross_entropy,
    token_accuracy,
    warmup_cosine,
    warmup_cosine_lambda,
)

# ---------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------


def _manual_ce(logits: torch.Tensor, targets: torch.Tensor, pad: int, eps: float = 0.0) -> torch.Tensor:
    """Mean over non-pad positions of -(1-eps) log p_y - eps * mean_v log p_v, by loops."""
    logp = logits.double().log_softmax(-1)
    total, n = 0.0, 0
    for b in range(targets.shape[0]):
        for t in range(targets.shape[1]):
            y = int(targets[b, t])
            if y == pad:
                continue
            total += -(1 - eps) * logp[b, t, y] - eps * logp[b, t].mean()
            n += 1
    return total / n


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_sequence_cross_entropy_ignores_pad(device, eps):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=g)
    targets = torch.randint(1, 7, (3, 5), generator=g)
    targets[0, 3:] = 0
    targets[2, 1:] = 0
    loss = sequence_cross_entropy(logits.to(device), targets.to(device), pad_idx=0, label_smoothing=eps)
    assert loss.dim() == 0
    torch.testing.assert_close(loss.cpu().double(), _manual_ce(logits, targets, 0, eps), rtol=1e-5, atol=1e-6)
    # changing the logits at padded positions changes nothing
    logits2 = logits.clone()
    logits2[2, 1:] += 100 * torch.randn(4, 7, generator=g)
    torch.testing.assert_close(
        sequence_cross_entropy(logits2, targets, label_smoothing=eps),
        sequence_cross_entropy(logits, targets, label_smoothing=eps),
    )


def test_sequence_cross_entropy_other_pad_index():
    logits = torch.randn(2, 4, 5)
    targets = torch.tensor([[1, 2, 4, 4], [0, 4, 3, 4]])
    loss = sequence_cross_entropy(logits, targets, pad_idx=4)
    torch.testing.assert_close(loss.double(), _manual_ce(logits, targets, 4), rtol=1e-5, atol=1e-6)


def test_sequence_cross_entropy_bad_shapes():
    with pytest.raises(ValueError, match="logits"):
        sequence_cross_entropy(torch.randn(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        sequence_cross_entropy(torch.randn(2, 3, 5), torch.zeros(3, 2, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# fit / evaluate_loss / History
# ---------------------------------------------------------------------------------------------


def _regression_problem(n_batches: int = 4):
    g = torch.Generator().manual_seed(0)
    w_true = torch.randn(3, 1, generator=g)
    batches = []
    for _ in range(n_batches):
        x = torch.randn(16, 3, generator=g)
        batches.append((x, x @ w_true))
    return batches


def _mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def test_fit_reduces_the_loss_and_records_history():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    batches = _regression_problem()
    before = evaluate_loss(model, batches, _mse)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    hist = fit(model, batches, _mse, opt, steps=60, progress=False, clip_grad_norm=10.0)
    after = evaluate_loss(model, batches, _mse)
    assert isinstance(hist, History)
    assert len(hist.losses) == len(hist.lrs) == len(hist.grad_norms) == 60
    assert after < 0.01 * before
    assert hist.losses[-1] < 0.01 * hist.losses[0]
    assert all(lr == 0.1 for lr in hist.lrs)
    assert hist.seconds > 0 and hist.steps_per_second == pytest.approx(60 / hist.seconds)
    assert model.training


def test_fit_records_the_loss_before_each_update():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    batches = _regression_problem(1)
    with torch.no_grad():
        expected = float(_mse(model, batches[0]))
    hist = fit(model, batches, _mse, torch.optim.SGD(model.parameters(), lr=0.05), steps=1, progress=False)
    assert hist.losses == [pytest.approx(expected)]
    assert hist.grad_norms == []                             # no clipping asked


def test_fit_clips_the_gradient_norm():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    x, y = _regression_problem(1)[0]
    batches = [(x, 1000 * y)]                                # a huge gradient
    w0 = [p.detach().clone() for p in model.parameters()]
    hist = fit(model, batches, _mse, torch.optim.SGD(model.parameters(), lr=1.0), steps=1,
               clip_grad_norm=0.5, progress=False)
    step = torch.cat([(p.detach() - q).flatten() for p, q in zip(model.parameters(), w0)])
    assert hist.grad_norms[0] > 0.5                          # the norm before clipping
    assert float(step.norm()) == pytest.approx(0.5, rel=1e-4)  # lr 1 x clipped norm


def test_fit_continues_a_history_and_follows_the_scheduler():
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = warmup_cosine(opt, warmup_steps=2, total_steps=6)
    batches = _regression_problem()
    hist = fit(model, batches, _mse, opt, steps=3, scheduler=sched, progress=False)
    hist = fit(model, batches, _mse, opt, steps=3, scheduler=sched, progress=False, history=hist)
    f = warmup_cosine_lambda(2, 6)
    assert hist.lrs == pytest.approx([f(s) for s in range(6)])
    assert len(hist.losses) == 6


def test_history_smoothed_is_a_running_mean():
    h = History(losses=[4.0, 2.0, 6.0, 0.0, 8.0])
    assert h.smoothed(window=2) == pytest.approx([4.0, 3.0, 4.0, 3.0, 4.0])
    assert h.smoothed(window=10) == pytest.approx([4.0, 3.0, 4.0, 3.0, 4.0])
    assert math.isnan(History().steps_per_second)


def test_evaluate_loss_is_the_batch_mean_and_restores_the_mode():
    model = nn.Sequential(nn.Linear(3, 1), nn.Dropout(0.5))
    batches = _regression_problem()
    model.train()
    value = evaluate_loss(model, batches, _mse)
    model.eval()
    with torch.no_grad():
        manual = sum(float(_mse(model, b)) for b in batches) / len(batches)
    assert value == pytest.approx(manual)
    model.train()
    evaluate_loss(model, batches, _mse)
    assert model.training


def test_fit_bad_inputs():
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = _regression_problem()
    with pytest.raises(ValueError, match="steps"):
        fit(model, batches, _mse, opt, steps=-1, progress=False)
    with pytest.raises(ValueError, match="clip_grad_norm"):
        fit(model, batches, _mse, opt, steps=1, clip_grad_norm=0.0, progress=False)
    with pytest.raises(ValueError, match="scalar"):
        fit(model, batches, lambda m, b: (m(b[0]) - b[1]) ** 2, opt, steps=1, progress=False)
    with pytest.raises(ValueError, match="ran out"):
        fit(model, iter(batches), _mse, opt, steps=10, progress=False)   # a one-shot iterator
    with pytest.raises(ValueError, match="no batch"):
        fit(model, [], _mse, opt, steps=1, progress=False)
    with pytest.raises(ValueError, match="no batch"):
        evaluate_loss(model, [], _mse)


def test_move_to_and_model_device():
    x = {"a": (torch.ones(2), [torch.zeros(1)]), "b": 3}
    y = move_to(x, "cpu")
    assert torch.equal(y["a"][0], torch.ones(2)) and y["b"] == 3
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# Warm-up + cosine schedule
# ---------------------------------------------------------------------------------------------


def _closed_form(s: int, warmup: int, total: int, min_ratio: float) -> float:
    if s < warmup:
        return (s + 1) / warmup
    p = min(1.0, (s - warmup) / (total - warmup))
    return min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * p)) / 2


@pytest.mark.parametrize("warmup, total, min_ratio", [(10, 50, 0.0), (0, 20, 0.1), (5, 6, 0.5)])
def test_warmup_cosine_matches_the_closed_form(warmup, total, min_ratio):
    base = 3e-3
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base)
    sched = warmup_cosine(opt, warmup, total, min_ratio)
    seen = []
    for _ in range(total + 5):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([base * _closed_form(s, warmup, total, min_ratio) for s in range(total + 5)])


def test_warmup_cosine_landmarks():
    f = warmup_cosine_lambda(4, 104, min_ratio=0.2)
    assert f(0) == pytest.approx(0.25)                      # first warm-up step: 1/4 of the peak
    assert f(3) == pytest.approx(1.0) and f(4) == pytest.approx(1.0)  # the peak
    assert f(54) == pytest.approx(0.6)                      # half-way down: (1 + 0.2) / 2
    assert f(104) == pytest.approx(0.2) and f(10_000) == pytest.approx(0.2)
    values = [f(s) for s in range(4, 105)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay


@pytest.mark.parametrize(
    "args, name",
    [((-1, 10), "warmup_steps"), ((10, 10), "total_steps"), ((2, 10, 1.5), "min_ratio")],
)
def test_warmup_cosine_bad_inputs(args, name):
    with pytest.raises(ValueError, match=name):
        warmup_cosine_lambda(*args)


# ---------------------------------------------------------------------------------------------
# Decoding: a hand-built model whose best sequence is known
# ---------------------------------------------------------------------------------------------

PAD_, BOS_, EOS_, A, B_ = 0, 1, 2, 3, 4
V = 5


def _trap_step(prefix: torch.Tensor, state):
    """A 'garden path' model. From <bos>: a 0.6, b 0.4. After a: eos/a/b 0.4/0.3/0.3.
    After b: eos 0.9. Anything longer: eos 1. Greedy takes a -> a<eos> (p = 0.24); the best
    sequence is b<eos> (p = 0.36)."""
    rows = []
    for row in prefix.tolist():
        p = torch.zeros(V, dtype=torch.float64)
        if len(row) == 1:
            p[A], p[B_] = 0.6, 0.4
        elif len(row) == 2 and row[1] == A:
            p[EOS_], p[A], p[B_] = 0.4, 0.3, 0.3
        elif len(row) == 2 and row[1] == B_:
            p[EOS_], p[A], p[B_] = 0.9, 0.05, 0.05
        else:
            p[EOS_] = 1.0
        rows.append(p.log())
    return torch.stack(rows).float(), state


def test_greedy_takes_the_garden_path():
    out = greedy_decode(_trap_step, None, bos=BOS_, eos=EOS_, max_len=5, batch_size=2)
    assert out.tokens.tolist() == [[A, EOS_], [A, EOS_]]
    assert out.lengths.tolist() == [2, 2]
    assert out.scores.tolist() == pytest.approx([math.log(0.24)] * 2, rel=1e-5)
    assert out.extras is None


def test_beam_search_finds_the_sequence_greedy_misses():
    out = beam_search(_trap_step, None, bos=BOS_, eos=EOS_, max_len=5, batch_size=2, beam_size=2)
    assert out.tokens[:, :2].tolist() == [[B_, EOS_], [B_, EOS_]]
    assert out.lengths.tolist() == [2, 2]
    assert out.scores.tolist() == pytest.approx([math.log(0.36)] * 2, rel=1e-5)
    narrow = beam_search(_trap_step, None, bos=BOS_, eos=EOS_, max_len=5, batch_size=1, beam_size=1)
    assert narrow.tokens[0, :2].tolist() == [A, EOS_]


class _RandomModel:
    """Log-probabilities that depend on (row, step, last token) through a fixed random table;
    ``<pad>`` and ``<bos>`` are impossible. The state is the row id (B,), so beam search must
    repeat and reorder it; the extra is (prefix length, last token) so its bookkeeping can be
    checked."""

    def __init__(self, rows: int, max_len: int, seed: int, sharp: float = 2.0):
        g = torch.Generator().manual_seed(seed)
        table = sharp * torch.randn(rows, max_len, V, V, generator=g, dtype=torch.float64)
        table[..., [PAD_, BOS_]] = -math.inf
        self.logp = table.log_softmax(-1)                                # (R, L, V_last, V)

    def __call__(self, prefix, state):
        t = prefix.shape[1] - 1
        logp = self.logp[state, t, prefix[:, -1]]                       # (B, V)
        extra = torch.stack([torch.full_like(state, t + 1), prefix[:, -1]], -1).float()
        return logp, state, extra

    def score(self, row: int, seq: list[int]) -> float:
        prev, total = BOS_, 0.0
        for t, y in enumerate(seq):
            total += float(self.logp[row, t, prev, y])
            prev = y
        return total


def _brute_force(model: _RandomModel, row: int, max_len: int, alpha: float):
    """The best normalised score over every sequence that ends at <eos> or at max_len."""
    best, best_seq = -math.inf, None
    for n in range(1, max_len + 1):
        for body in itertools.product([EOS_, A, B_], repeat=n):
            if EOS_ in body[:-1] or (n < max_len and body[-1] != EOS_):
                continue
            s = model.score(row, list(body)) / n**alpha
            if s > best:
                best, best_seq = s, list(body)
    return best, best_seq


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_equals_exhaustive_search(alpha, seed):
    rows, L = 3, 4
    model = _RandomModel(rows, L, seed)
    state = torch.arange(rows)
    out = beam_search(model, state, bos=BOS_, eos=EOS_, max_len=L, batch_size=rows,
                      beam_size=3**L, alpha=alpha)
    for r in range(rows):
        best, seq = _brute_force(model, r, L, alpha)
        n = int(out.lengths[r])
        assert out.tokens[r, :n].tolist() == seq
        assert out.tokens[r, n:].eq(PAD_).all()
        assert float(out.scores[r]) == pytest.approx(best, rel=1e-5, abs=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6))
def test_beam_width_one_is_greedy(seed, max_len):
    rows = 3
    model = _RandomModel(rows, max_len, seed)
    greedy = greedy_decode(model, torch.arange(rows), bos=BOS_, eos=EOS_, max_len=max_len, batch_size=rows)
    beam = beam_search(model, torch.arange(rows), bos=BOS_, eos=EOS_, max_len=max_len,
                       batch_size=rows, beam_size=1)
    width = greedy.tokens.shape[1]
    assert torch.equal(beam.tokens[:, :width], greedy.tokens)
    assert beam.tokens[:, width:].eq(PAD_).all()
    assert torch.equal(beam.lengths, greedy.lengths)
    torch.testing.assert_close(beam.scores, greedy.scores.to(beam.scores.dtype))


def test_greedy_scores_lengths_and_extras_by_hand():
    rows, L = 4, 5
    model = _RandomModel(rows, L, seed=3, sharp=0.3)
    out = greedy_decode(model, torch.arange(rows), bos=BOS_, eos=EOS_, max_len=L, batch_size=rows)
    for r in range(rows):
        seq, prev = [], BOS_
        for t in range(L):                               # greedy by hand
            y = int(model.logp[r, t, prev].argmax())
            seq.append(y)
            prev = y
            if y == EOS_:
                break
        n = len(seq)
        assert int(out.lengths[r]) == n
        assert out.tokens[r, :n].tolist() == seq and out.tokens[r, n:].eq(PAD_).all()
        assert float(out.scores[r]) == pytest.approx(model.score(r, seq), rel=1e-5)
        # extras: step t saw a prefix of length t + 1 ending in the previous token
        assert out.extras[r, :n, 0].tolist() == [float(t + 1) for t in range(n)]
        assert out.extras[r, :n, 1].tolist() == [float(x) for x in [BOS_] + seq[:-1]]
        assert out.extras[r, n:].eq(0).all()


def test_beam_extras_follow_the_chosen_hypothesis():
    rows, L = 2, 4
    model = _RandomModel(rows, L, seed=5)
    out = beam_search(model, torch.arange(rows), bos=BOS_, eos=EOS_, max_len=L, batch_size=rows,
                      beam_size=4)
    for r in range(rows):
        n = int(out.lengths[r])
        seq = out.tokens[r, :n].tolist()
        assert out.extras[r, :n, 1].tolist() == [float(x) for x in [BOS_] + seq[:-1]]
        assert float(out.scores[r]) == pytest.approx(model.score(r, seq), rel=1e-5)


def test_decoding_bad_inputs():
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(_trap_step, None, bos=1, eos=2, max_len=0, batch_size=1)
    with pytest.raises(ValueError, match="batch_size"):
        beam_search(_trap_step, None, bos=1, eos=2, max_len=3, batch_size=0)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(_trap_step, None, bos=1, eos=2, max_len=3, batch_size=1, beam_size=0)
    with pytest.raises(ValueError, match="alpha"):
        beam_search(_trap_step, None, bos=1, eos=2, max_len=3, batch_size=1, alpha=-1.0)
    with pytest.raises(ValueError, match="log_probs"):
        greedy_decode(lambda p, s: (torch.zeros(5), s), None, bos=1, eos=2, max_len=3, batch_size=2)
    with pytest.raises(ValueError, match="step_fn"):
        greedy_decode(lambda p, s: torch.zeros(2, 5), None, bos=1, eos=2, max_len=3, batch_size=2)
    with pytest.raises(ValueError, match="state"):
        beam_search(_trap_step, object(), bos=1, eos=2, max_len=3, batch_size=1)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def test_exact_match_by_hand():
    assert exact_match(["abc", "de", "f"], ["abc", "dx", "f"]) == pytest.approx(2 / 3)
    pred = torch.tensor([[5, 6, 2, 7], [5, 0, 0, 0], [5, 6, 0, 0]])
    tgt = torch.tensor([[5, 6, 2], [5, 6, 2], [5, 6, 0]])
    # without eos cutting: row 0 differs (7 after eos; tgt has 2 but pred has 2,7), row 1 differs
    assert exact_match(pred, tgt) == pytest.approx(1 / 3)
    # cutting at eos=2: rows 0 and 2 equal [5, 6], row 1 is [5]
    assert exact_match(pred, tgt, eos_idx=2) == pytest.approx(2 / 3)


def test_token_accuracy_by_hand():
    tgt = torch.tensor([[4, 5, 6, 0], [7, 8, 0, 0]])                   # 5 real tokens
    pred = torch.tensor([[4, 9, 6, 4], [7, 7, 1, 1]])                  # 4, 6, 7 right
    assert token_accuracy(pred, tgt) == pytest.approx(3 / 5)
    logits = torch.nn.functional.one_hot(pred, 10).float()             # (B, L, V)
    assert token_accuracy(logits, tgt) == pytest.approx(3 / 5)
    short = pred[:, :2]                                                # position 2 is missing
    assert token_accuracy(short, tgt) == pytest.approx(2 / 5)
    longer = torch.cat([pred, torch.ones(2, 3, dtype=torch.long)], 1)  # extra columns ignored
    assert token_accuracy(longer, tgt) == pytest.approx(3 / 5)


def test_metrics_bad_inputs():
    with pytest.raises(ValueError, match="same number of rows"):
        exact_match(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="targets"):
        exact_match([], [])
    with pytest.raises(ValueError, match="predictions"):
        exact_match(torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="no non-padding"):
        token_accuracy(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="batch size"):
        token_accuracy(torch.zeros(3, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        token_accuracy(torch.zeros(3, 3, dtype=torch.long), torch.ones(3, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    fit(model, _regression_problem(), _mse, opt, steps=3, progress=False)
    path = save_checkpoint(model, tmp_path / "sub" / "ckpt.pt", opt, step=3, task="regression", ok=True)
    assert path.is_file()

    blob = torch.load(path, weights_only=True)                          # plain tensors and dicts
    assert set(blob) == {"model", "meta", "optimizer"}
    assert blob["meta"] == {"step": 3, "task": "regression", "ok": True}

    torch.manual_seed(1)
    fresh = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    assert not torch.equal(fresh[0].weight, model[0].weight)
    meta = load_checkpoint(fresh, path, fresh_opt)
    assert meta == {"step": 3, "task": "regression", "ok": True}
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), k
    # the optimiser state came back too: one more identical step keeps the models identical
    batches = _regression_problem(1)
    fit(model, batches, _mse, opt, steps=1, progress=False)
    fit(fresh, batches, _mse, fresh_opt, steps=1, progress=False)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_errors(tmp_path):
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="path"):
        load_checkpoint(model, tmp_path / "absent.pt")
    path = save_checkpoint(model, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="optimizer"):
        load_checkpoint(model, path, torch.optim.SGD(model.parameters(), lr=0.1))
    assert load_checkpoint(model, path) == {}


# ---------------------------------------------------------------------------------------------
# Issue 9: no host sync per step, non-finite losses, bad data, bad state, garbage checkpoints
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def host_reads(monkeypatch):
    """Count every read of a tensor's value back to the host (item, tolist, float, int, bool)."""
    calls: list[str] = []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


@pytest.mark.parametrize("clip", [None, 10.0])
def test_fit_reads_the_loss_back_once_per_log_every_steps(host_reads, clip):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    batches = _regression_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    host_reads.clear()
    hist = fit(model, batches, _mse, opt, steps=20, progress=False, log_every=5, clip_grad_norm=clip)
    # one tolist of the stacked losses per window (+ one of the norms when clipping): 4 windows
    assert len(host_reads) == 4 * (1 if clip is None else 2), host_reads
    assert len(hist.losses) == len(hist.lrs) == 20
    assert len(hist.grad_norms) == (0 if clip is None else 20)
    host_reads.clear()
    fit(model, batches, _mse, opt, steps=7, progress=False, log_every=5)  # 5 + a final read of 2
    assert len(host_reads) == 2


def _poisoned(batches, at: int, value: float):
    """The same batches, with the targets of batch ``at`` multiplied by ``value`` (nan, inf)."""
    out = list(batches)
    x, y = out[at]
    out[at] = (x, y * value)
    return out


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_fit_stops_at_a_non_finite_loss_without_applying_it(value, opt_name):
    def make(model):
        if opt_name == "sgd":
            return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return torch.optim.Adam(model.parameters(), lr=0.05)

    batches = _regression_problem(8)
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    torch.manual_seed(0)
    reference = nn.Linear(3, 1)
    fit(reference, batches[:3], _mse, make(reference), steps=3, progress=False)  # steps 0, 1, 2

    with pytest.raises(ValueError, match=r"step 3\b") as info:
        fit(model, _poisoned(batches, 3, value), _mse, make(model), steps=8, progress=False,
            log_every=5)
    assert "loss" in str(info.value) and "not applied" in str(info.value)
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # exactly the weights after step 2


def test_fit_names_the_global_step_of_a_continued_history():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    batches = _regression_problem(4)
    hist = fit(model, batches, _mse, opt, steps=6, progress=False)
    with pytest.raises(ValueError, match=r"step 8\b"):
        fit(model, _poisoned(batches, 2, float("nan")), _mse, opt, steps=4, progress=False,
            history=hist, log_every=3)
    assert len(hist.losses) == len(hist.lrs) == 8  # the steps before the bad one
    assert all(math.isfinite(v) for v in hist.losses)


def test_fit_stops_at_a_non_finite_gradient_norm():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    w0 = [p.detach().clone() for p in model.parameters()]

    def loss_fn(m, batch):  # finite loss, infinite gradient: d/dw sqrt(w^2) at w = 0
        return _mse(m, batch) + torch.sqrt((m.weight[0, 0] - m.weight[0, 0].detach()) ** 2)

    with pytest.raises(ValueError, match=r"gradient norm is nan .*step 0\b"):
        fit(model, _regression_problem(1), loss_fn, torch.optim.SGD(model.parameters(), lr=0.1),
            steps=2, clip_grad_norm=1.0, progress=False)
    for p, q in zip(model.parameters(), w0):
        assert torch.equal(p, q)


def test_fit_rejects_a_bad_log_every():
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="log_every"):
            fit(model, _regression_problem(), _mse, opt, steps=1, progress=False, log_every=bad)


def test_sequence_cross_entropy_of_an_all_padding_batch_is_zero():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss = sequence_cross_entropy(logits, torch.zeros(2, 3, dtype=torch.long), pad_idx=0,
                                  label_smoothing=0.1)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_sequence_cross_entropy_rejects_targets_outside_the_vocabulary():
    logits = torch.randn(2, 3, 5)
    for bad in (5, -1, 99):
        targets = torch.tensor([[1, 2, 0], [4, bad, 0]])
        with pytest.raises(ValueError, match=r"targets .*\[0, 5\).*shape \(2, 3\)"):
            sequence_cross_entropy(logits, targets)
    # a pad index outside the vocabulary is fine: it is never looked up
    targets = torch.tensor([[1, 2, -100], [4, 3, -100]])
    assert torch.isfinite(sequence_cross_entropy(logits, targets, pad_idx=-100))
    with pytest.raises(ValueError, match="targets must hold integer"):
        sequence_cross_entropy(logits, torch.zeros(2, 3))


def test_sequence_cross_entropy_data_check_follows_the_switch():
    from attnbook.utils import set_data_checks

    logits = torch.randn(1, 2, 5)
    with set_data_checks(False), pytest.raises(IndexError):  # unchecked: PyTorch's own error
        sequence_cross_entropy(logits, torch.tensor([[1, 7]]))


def test_beam_search_rejects_a_state_of_another_batch():
    state = {"memory": torch.zeros(3, 4, 2), "h": (torch.zeros(2, 5), None)}
    with pytest.raises(ValueError, match=r"state\['memory'\].*batch_size=2.*\(3, 4, 2\)"):
        beam_search(_trap_step, state, bos=BOS_, eos=EOS_, max_len=3, batch_size=2)
    state = [torch.zeros(2, 4), torch.zeros(1, 4)]
    with pytest.raises(ValueError, match=r"state\[1\].*\(1, 4\)"):
        beam_search(_trap_step, state, bos=BOS_, eos=EOS_, max_len=3, batch_size=2)
    with pytest.raises(ValueError, match=r"state .*0-d"):
        beam_search(_trap_step, torch.tensor(1.0), bos=BOS_, eos=EOS_, max_len=3, batch_size=2)
    ok = beam_search(_trap_step, {"memory": torch.zeros(2, 4, 2)}, bos=BOS_, eos=EOS_,
                     max_len=3, batch_size=2)
    assert ok.tokens.shape[0] == 2


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", None])
def test_load_checkpoint_rejects_a_garbage_or_truncated_file(tmp_path, content):
    model = nn.Linear(2, 2)
    path = tmp_path / "bad.pt"
    if content is None:  # a real checkpoint cut in half
        save_checkpoint(model, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.pt"):
        load_checkpoint(model, path)


def test_load_checkpoint_rejects_a_checkpoint_of_another_model(tmp_path):
    path = save_checkpoint(nn.Linear(2, 3), tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt.*does not fit"):
        load_checkpoint(nn.Linear(2, 2), path)
    torch.save({"weights": 1}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"plain\.pt"):
        load_checkpoint(nn.Linear(2, 2), tmp_path / "plain.pt")


def test_fit_keeps_the_measured_steps_when_interrupted():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    calls = []

    def loss_fn(m, batch):
        calls.append(None)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return _mse(m, batch)

    hist = History()
    with pytest.raises(KeyboardInterrupt):
        fit(model, _regression_problem(), loss_fn, torch.optim.SGD(model.parameters(), lr=0.1),
            steps=20, progress=False, history=hist, log_every=5)
    assert len(hist.losses) == len(hist.lrs) == 6  # steps 0-5: the open window was read back


def test_over_seeds_mean_and_spread():
    import statistics

    import pytest

    from attnbook.train import over_seeds

    runs = over_seeds(lambda seed: float(seed * 2), [1, 2, 3])
    assert runs.values == (2.0, 4.0, 6.0) and runs.seeds == (1, 2, 3)
    assert runs.mean == 4.0 and runs.min == 2.0 and runs.max == 6.0
    assert runs.std == pytest.approx(statistics.stdev([2.0, 4.0, 6.0]))
    assert over_seeds(lambda s: 1.0, [0]).std == 0.0
    # each call is seeded
    a = over_seeds(lambda s: torch.rand(()).item(), [5, 5])
    assert a.values[0] == a.values[1] and "2 seeds" in str(a)
    with pytest.raises(ValueError, match="seeds"):
        over_seeds(lambda s: 1.0, [])
    with pytest.raises(ValueError, match="finite"):
        over_seeds(lambda s: float("nan"), [0])


def test_noam_schedule_follows_the_papers_formula_step_by_step():
    d_model, warmup = 512, 4000
    rate = train.noam_lambda(d_model, warmup)
    for step in (0, 1, 999, 3998, 3999, 4000, 10_000, 99_999):
        n = float(step + 1)  # the paper counts updates from 1
        assert math.isclose(rate(step), d_model ** -0.5 * min(n ** -0.5, n * warmup ** -1.5))
    peak = max(range(20_000), key=rate)
    assert peak == warmup - 1 and math.isclose(rate(peak), (d_model * warmup) ** -0.5)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    sched = train.noam(opt, d_model, warmup)
    seen = []
    for _ in range(5):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(math.isclose(a, rate(s)) for s, a in enumerate(seen))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_noam_schedule_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="d_model must be a positive int"):
        train.noam_lambda(bad, 10)
    with pytest.raises(ValueError, match="warmup_steps must be a positive int"):
        train.noam_lambda(16, bad)
