import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnbook
from attnbook.vision import PatchEmbedding, VisionTransformer, patchify


def _patchify_loop(images, P):
    B, C, H, W = images.shape
    out = torch.empty(B, (H // P) * (W // P), P * P * C, dtype=images.dtype)
    for b in range(B):
        n = 0
        for r in range(H // P):
            for s in range(W // P):
                for i in range(P):
                    for j in range(P):
                        for c in range(C):
                            out[b, n, (i * P + j) * C + c] = images[b, c, r * P + i, s * P + j]
                n += 1
    return out


@pytest.mark.parametrize("shape,P", [((2, 1, 8, 8), 4), ((1, 3, 6, 4), 2), ((2, 2, 4, 4), 1)])
def test_patchify_matches_loop(shape, P):
    images = torch.randn(*shape, dtype=torch.float64)
    assert torch.equal(patchify(images, P), _patchify_loop(images, P))


def test_patchify_matches_unfold():
    images = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    P = 4
    cols = F.unfold(images, kernel_size=P, stride=P)  # (B, C*P*P, N), channel-first within a patch
    ref = cols.reshape(2, 3, P, P, -1).permute(0, 4, 2, 3, 1).reshape(2, -1, P * P * 3)
    assert torch.equal(patchify(images, P), ref)
    assert patchify(images, P).shape == (2, 6, 48)


def test_patchify_errors_name_shapes():
    with pytest.raises(ValueError, match=r"patch_size=3.*\(2, 1, 8, 8\)"):
        patchify(torch.zeros(2, 1, 8, 8), 3)
    with pytest.raises(ValueError, match="images"):
        patchify(torch.zeros(8, 8), 4)


def test_patch_embedding_equals_strided_conv():
    torch.manual_seed(0)
    P, C, d = 2, 3, 5
    emb = PatchEmbedding(P, d, channels=C).double()
    conv = nn.Conv2d(C, d, kernel_size=P, stride=P).double()
    with torch.no_grad():
        conv.weight.copy_(emb.proj.weight.reshape(d, P, P, C).permute(0, 3, 1, 2))
        conv.bias.copy_(emb.proj.bias)
    images = torch.randn(2, C, 6, 4, dtype=torch.float64)
    ref = conv(images).flatten(2).transpose(1, 2)
    torch.testing.assert_close(emb(images), ref)


def _vit(**kw):
    torch.manual_seed(0)
    return VisionTransformer(8, 4, 10, 16, 2, 2, **kw).eval()


def test_vit_shapes_and_attention():
    model = _vit()
    assert attnbook.VisionTransformer is VisionTransformer
    x = torch.randn(3, 1, 8, 8)
    logits = model(x)
    assert logits.shape == (3, 10)
    logits2, weights = model(x, return_attention=True)
    torch.testing.assert_close(logits, logits2)
    assert isinstance(weights, attnbook.AttentionWeights)
    assert weights.keys() == ["encoder_self"]
    assert [tuple(w.shape) for w in weights.encoder_self] == [(3, 2, 5, 5)] * 2
    torch.testing.assert_close(weights.encoder_self[0].sum(-1), torch.ones(3, 2, 5))


def test_vit_reads_class_token():
    model = _vit()
    x = torch.randn(2, 1, 8, 8)
    z = model.tokens(x)
    assert z.shape == (2, 5, 16)
    torch.testing.assert_close(z[:, 0], (model.cls_token + model.pos_embed[:, :1]).expand(2, 1, 16)[:, 0])
    for layer in model.layers:
        z, _ = layer(z)
    torch.testing.assert_close(model(x), model.head(model.norm(z[:, 0])))


def test_vit_channels_and_errors():
    model = _vit(channels=3)
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 10)
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 8\)"):
        model(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="patch_size"):
        VisionTransformer(8, 3, 10, 16, 2, 2)
    with pytest.raises(ValueError, match="divisible"):
        VisionTransformer(8, 4, 10, 15, 2, 2)


def test_vit_trains_a_step():
    model = _vit().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    before = F.cross_entropy(model(x), y).item()
    for _ in range(20):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert F.cross_entropy(model(x), y).item() < before
