import pytest
import torch

from attnbook.interpret import attention_rollout


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
