import pytest
import torch

from attnbook import AdditiveAttention, LuongAttention
from attnbook.interpret import (
    attention_rollout,
    counterfactual_weights,
    gradient_importance,
    kendall_tau,
    leave_one_out,
    override_attention,
    total_variation,
)


def test_rollout_hand_computed_two_layers():
    # layer 1: one head, T=2; layer 2: two heads whose mean is computed by hand
    a1 = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])  # (1, 1, 2, 2)
    a2 = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    # mean of layer 2 = [[0, 1], [0.5, 0.5]]
    # residual: 0.5 A + 0.5 I (rows already sum to 1)
    r1 = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    r2 = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    expected = r2 @ r1  # [[0.625, 0.375], [0.4375, 0.5625]]
    torch.testing.assert_close(expected, torch.tensor([[0.625, 0.375], [0.4375, 0.5625]]))
    torch.testing.assert_close(attention_rollout([a1, a2])[0], expected)
    # without the residual: plain product of head means, last layer on the left
    plain = torch.tensor([[0.0, 1.0], [0.5, 0.5]]) @ torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    torch.testing.assert_close(attention_rollout([a1, a2], residual=False)[0], plain)


def _loop(weights, residual):
    B, _, T, _ = weights[0].shape
    out = torch.zeros(B, T, T, dtype=torch.float64)
    for b in range(B):
        R = torch.eye(T, dtype=torch.float64)
        for w in weights:
            A = torch.zeros(T, T, dtype=torch.float64)
            for h in range(w.shape[1]):
                A += w[b, h].double() / w.shape[1]
            if residual:
                A = 0.5 * A + 0.5 * torch.eye(T, dtype=torch.float64)
                for i in range(T):
                    A[i] = A[i] / A[i].sum()
            R = A @ R
        out[b] = R
    return out


@pytest.mark.parametrize("residual", [True, False])
def test_rollout_matches_float64_loop(residual):
    torch.manual_seed(0)
    weights = [torch.softmax(torch.randn(2, h, 5, 5, dtype=torch.float64), -1) for h in (3, 1, 2)]
    got = attention_rollout(weights, residual=residual)
    assert got.shape == (2, 5, 5)
    torch.testing.assert_close(got, _loop(weights, residual))
    torch.testing.assert_close(got.sum(-1), torch.ones(2, 5, dtype=torch.float64))


def test_rollout_errors():
    with pytest.raises(ValueError, match="non-empty"):
        attention_rollout([])
    with pytest.raises(ValueError, match=r"weights\[0\].*\(2, 5, 5\)"):
        attention_rollout([torch.rand(2, 5, 5)])
    with pytest.raises(ValueError, match=r"weights\[1\].*\(2, 1, 4, 4\)"):
        attention_rollout([torch.rand(2, 1, 5, 5), torch.rand(2, 1, 4, 4)])
    with pytest.raises(ValueError, match=r"weights\[0\].*\(2, 1, 5, 4\)"):
        attention_rollout([torch.rand(2, 1, 5, 4)])
    with pytest.raises(ValueError, match="residual"):
        attention_rollout([torch.rand(1, 1, 2, 2)], residual=1)


# --- counterfactual attention, importance scores (Jain & Wallace 2019) ---------------------------

MASK = torch.tensor([[True, True, True, False], [True, True, True, True], [True, False, False, False]])


def _weights(mask, dtype=torch.float64):
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(mask.shape, generator=g, dtype=dtype).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, -1)


def test_uniform_counterfactual_matches_loop():
    got = counterfactual_weights(_weights(MASK), MASK, "uniform")
    for b in range(MASK.shape[0]):
        n = int(MASK[b].sum())
        want = torch.tensor([1.0 / n if MASK[b, s] else 0.0 for s in range(4)], dtype=torch.float64)
        torch.testing.assert_close(got[b], want)
    empty = torch.tensor([[False, False]])
    assert torch.equal(counterfactual_weights(torch.zeros(1, 2), empty, "uniform"), torch.zeros(1, 2))


def test_permute_counterfactual_shuffles_real_keys_only():
    w = _weights(MASK)
    g = torch.Generator().manual_seed(0)
    seen_change = False
    for _ in range(20):
        got = counterfactual_weights(w, MASK, "permute", generator=g)
        for b in range(MASK.shape[0]):
            n = int(MASK[b].sum())
            assert torch.equal(got[b, n:], torch.zeros(4 - n, dtype=torch.float64))
            assert sorted(got[b, :n].tolist()) == sorted(w[b, :n].tolist())
            seen_change |= not torch.equal(got[b], w[b])
    assert seen_change
    again = counterfactual_weights(w, MASK, "permute", generator=torch.Generator().manual_seed(5))
    same = counterfactual_weights(w, MASK, "permute", generator=torch.Generator().manual_seed(5))
    assert torch.equal(again, same)


def test_random_counterfactual_is_a_distribution_on_real_keys():
    w = _weights(MASK, torch.float32)
    got = counterfactual_weights(w, MASK, "random", generator=torch.Generator().manual_seed(1))
    assert got.dtype == torch.float32 and got.shape == w.shape
    torch.testing.assert_close(got.sum(-1), torch.ones(3))
    assert torch.all(got[~MASK] == 0) and torch.all(got[MASK] > 0)
    # (B, T, S) weights with a (B, S) key-padding mask
    w3 = torch.softmax(torch.randn(3, 2, 4), -1) * MASK[:, None]
    got3 = counterfactual_weights(w3, MASK, "uniform")
    assert got3.shape == (3, 2, 4) and torch.all(got3[:, 0] == got3[:, 1])


def test_counterfactual_errors():
    w = _weights(MASK)
    with pytest.raises(ValueError, match="kind"):
        counterfactual_weights(w, MASK, "adversarial")
    with pytest.raises(ValueError, match=r"mask.*\(3, 4\).*\(3, 5\)"):
        counterfactual_weights(w, torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be a boolean"):
        counterfactual_weights(w, MASK.float())
    with pytest.raises(ValueError, match="weights must be floating"):
        counterfactual_weights(MASK.long(), MASK)


@pytest.mark.parametrize("make", [lambda: AdditiveAttention(3, 5, 4),
                                  lambda: LuongAttention(3, 5, score="general")])
def test_override_attention_uniform_context_equals_mean_of_values(make):
    torch.manual_seed(0)
    att = make().double()
    B, T, S = 3, 2, 4
    q, k = torch.randn(B, T, 3, dtype=torch.float64), torch.randn(B, S, 5, dtype=torch.float64)
    before, w_before = att(q, k, k, MASK)
    with override_attention(att, lambda a, m: counterfactual_weights(a, m, "uniform")):
        ctx, w = att(q, k, k, MASK)
        ctx1, w1 = att(q[:, 0], k, k, MASK)  # the single-query form (B, Dq)
    for b in range(B):
        n = int(MASK[b].sum())
        mean = k[b, :n].mean(0)
        for t in range(T):
            torch.testing.assert_close(ctx[b, t], mean)
        torch.testing.assert_close(ctx1[b], mean)
    assert w.shape == (B, T, S) and w1.shape == (B, S)
    after, w_after = att(q, k, k, MASK)  # the hook is gone
    torch.testing.assert_close(after, before)
    torch.testing.assert_close(w_after, w_before)


def test_override_attention_identity_changes_nothing_and_errors():
    torch.manual_seed(0)
    att = AdditiveAttention(3, 5, 4)
    q, k = torch.randn(3, 3), torch.randn(3, 4, 5)
    plain = att(q, k, k, MASK)
    with override_attention(att, lambda a, m: a):
        same = att(q, k, k, mask=MASK)
    torch.testing.assert_close(same[0], plain[0])
    with pytest.raises(ValueError, match="module must be"):
        with override_attention(torch.nn.Linear(2, 2), lambda a, m: a):
            pass
    with pytest.raises(ValueError, match=r"fn must return weights.*\(3, 4\)"):
        with override_attention(att, lambda a, m: a[:, :2]):
            att(q, k, k, MASK)
    assert not att._forward_hooks  # removed after the error


def test_gradient_importance_matches_jacobian_loop():
    torch.manual_seed(0)
    W = torch.randn(5, 5, dtype=torch.float64)

    def f(x):  # (B, S, E) -> (B,), each row from its own tokens, tokens interacting
        h = torch.tanh(x @ W)  # (B, S, E)
        return (h.sum(1) ** 2).sum(-1)

    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    got = gradient_importance(f(x), x)
    assert got.shape == (2, 3)
    for b in range(2):
        jac = torch.autograd.functional.jacobian(lambda row: f(row[None])[0], x[b].detach())  # (S, E)
        for s in range(3):
            torch.testing.assert_close(got[b, s], (jac[s] * x[b, s]).norm())


def test_gradient_importance_errors():
    x = torch.randn(2, 3, 4, requires_grad=True)
    with pytest.raises(ValueError, match=r"inputs must have 3 dimensions.*\(2, 3\)"):
        gradient_importance(x.sum((1, 2)), x[:, :, 0])
    with pytest.raises(ValueError, match=r"output must be \(B,\) with B=2.*\(3,\)"):
        gradient_importance(x.sum((0, 2)), x)
    with pytest.raises(ValueError, match="with gradients on"):
        gradient_importance(x.detach().sum((1, 2)), x.detach())


def test_leave_one_out_matches_list_deletion():
    tokens = torch.tensor([[5, 6, 7, 0], [1, 2, 3, 4]])
    mask = tokens != 0

    def fn(t, m):  # an order-sensitive summary of each row: sum of id * position over real tokens
        pos = torch.arange(1, t.shape[1] + 1)
        return torch.stack([(t * pos * m).sum(-1), m.sum(-1)], -1).double()  # (B, 2)

    got = leave_one_out(fn, tokens, mask)
    assert got.shape == (2, 4, 2)
    for b in range(2):
        row = [int(v) for v, m in zip(tokens[b], mask[b]) if m]
        for s in range(4):
            kept = row[:s] + row[s + 1:] if s < len(row) else row
            want = [sum(v * (i + 1) for i, v in enumerate(kept)), len(kept)]
            assert got[b, s].tolist() == want


def test_leave_one_out_errors():
    tokens = torch.tensor([[5, 6, 7, 0]])
    with pytest.raises(ValueError, match=r"mask must be a boolean.*\(1, 4\)"):
        leave_one_out(lambda t, m: t, tokens, torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least two real tokens"):
        leave_one_out(lambda t, m: t, tokens, torch.tensor([[True, False, False, False]]))
    with pytest.raises(ValueError, match="tokens must hold integer"):
        leave_one_out(lambda t, m: t, tokens.float(), tokens != 0)


def test_total_variation_matches_loop_and_errors():
    p = torch.softmax(torch.randn(2, 3, 5, dtype=torch.float64), -1)
    q = torch.softmax(torch.randn(2, 3, 5, dtype=torch.float64), -1)
    got = total_variation(p, q)
    for b in range(2):
        for t in range(3):
            want = sum(abs(float(p[b, t, v] - q[b, t, v])) for v in range(5)) / 2
            assert abs(float(got[b, t]) - want) < 1e-12
    assert 0 <= float(got.min()) and float(got.max()) <= 1
    with pytest.raises(ValueError, match=r"\(2, 1, 5\).*\(2, 3, 5\)"):
        total_variation(p[:, :1], q)


def test_kendall_tau_matches_scipy_with_ties_and_masks():
    from scipy.stats import kendalltau

    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 9, generator=g, dtype=torch.float64)
    b = a + torch.randn(6, 9, generator=g, dtype=torch.float64)
    b[:3, :4] = 0.0  # ties in b
    a[4, :5] = 1.0  # ties in a
    mask = torch.arange(9) < torch.tensor([9, 9, 5, 3, 9, 7])[:, None]
    got = kendall_tau(a, b, mask)
    assert got.shape == (6,)
    for r in range(6):
        n = int(mask[r].sum())
        want = kendalltau(a[r, :n].numpy(), b[r, :n].numpy())[0]
        assert abs(float(got[r]) - want) < 1e-12
    flat = kendall_tau(torch.ones(1, 4), torch.arange(4.0)[None])
    assert torch.isnan(flat).all()
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        kendall_tau(torch.rand(2, 3), torch.rand(2, 4))
    with pytest.raises(ValueError, match="mask must"):
        kendall_tau(torch.rand(2, 3), torch.rand(2, 3), torch.ones(2, 4, dtype=torch.bool))
