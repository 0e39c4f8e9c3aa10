"""Attention for images: patches as tokens and a small Vision Transformer (Dosovitskiy et al. 2021).

An image ``(B, C, H, W)`` is cut into ``N = (H / P)(W / P)`` non-overlapping ``P x P`` patches;
each patch, flattened to ``P*P*C`` numbers, is one token. A learned linear map embeds the tokens,
a learned class token is prepended, learned position embeddings are added, and the pre-norm
:class:`attnbook.transformer.EncoderLayer` s of the rest of the book do the rest. The class
token's final state, normalised, is mapped to the logits.
"""

from __future__ import annotations

import torch
from torch import nn

from ._validate import check_bool, check_int, check_ndim, require, shape_of
from .transformer import AttentionWeights, EncoderLayer

__all__ = ["patchify", "PatchEmbedding", "VisionTransformer"]


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``images (B, C, H, W)`` -> patches ``(B, N, P*P*C)``, ``N = (H/P)(W/P)``, in row-major
    order of the patch grid (left to right, then top to bottom).

    Each patch is flattened channel-last: entry ``(i*P + j)*C + c`` of a patch is pixel
    ``(i, j)`` of channel ``c`` within it. Raises ``ValueError`` when ``P`` divides neither
    ``H`` nor ``W``.
    """
    check_int("patch_size", patch_size)
    check_ndim("images", images, 4)
    B, C, H, W = images.shape
    P = patch_size
    require(
        H % P == 0 and W % P == 0,
        lambda: f"patch_size={P} must divide the image's height and width, got images of shape "
        f"{shape_of(images)} (H={H}, W={W})",
    )
    x = images.reshape(B, C, H // P, P, W // P, P)  # (B, C, H/P, P, W/P, P)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, H/P, W/P, P, P, C)
    return x.reshape(B, (H // P) * (W // P), P * P * C)  # (B, N, P*P*C)


class PatchEmbedding(nn.Module):
    """``x_p E + b``: a linear map of each flattened patch, ``(B, C, H, W) -> (B, N, d_model)``.

    It is the same map as a convolution whose kernel and stride are both the patch size, with the
    kernel ``E`` reshaped::

        conv = nn.Conv2d(C, d_model, kernel_size=P, stride=P)
        conv.weight.data = emb.proj.weight.reshape(d_model, P, P, C).permute(0, 3, 1, 2)
        conv.bias.data = emb.proj.bias
        conv(images).flatten(2).transpose(1, 2)  # == emb(images)

    (``tests/test_vision.py`` checks this.)
    """

    def __init__(self, patch_size: int, d_model: int, *, channels: int = 1) -> None:
        super().__init__()
        check_int("patch_size", patch_size)
        check_int("d_model", d_model)
        check_int("channels", channels)
        self.patch_size, self.channels = patch_size, channels
        self.proj = nn.Linear(patch_size * patch_size * channels, d_model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_ndim("images", images, 4)
        require(
            images.shape[1] == self.channels,
            lambda: f"images must have {self.channels} channel(s), got shape {shape_of(images)}",
        )
        return self.proj(patchify(images, self.patch_size))  # (B, N, E)


class VisionTransformer(nn.Module):
    """A Vision Transformer (Dosovitskiy et al. 2021) for square ``image_size`` images.

    ``forward(images (B, C, H, W), *, return_attention=False)`` -> logits ``(B, num_classes)``,
    or ``(logits, AttentionWeights(encoder_self=[(B, H, 1+N, 1+N) per layer]))``; token 0 is the
    class token, tokens ``1..N`` the patches in row-major order.

    ::

        z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos      # (B, 1+N, d)
        z_l = EncoderLayer_l(z_{l-1})                        # pre-norm, l = 1..L
        logits = Linear(LayerNorm(z_L[:, 0]))
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        num_classes: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        *,
        channels: int = 1,
        d_ff: int | None = None,
        dropout: float = 0.0,
        activation: str = "gelu",
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        for name, value in (("image_size", image_size), ("num_classes", num_classes), ("num_layers", num_layers)):
            check_int(name, value)
        check_int("patch_size", patch_size)
        require(
            image_size % patch_size == 0,
            lambda: f"patch_size must divide image_size, got image_size={image_size}, patch_size={patch_size}",
        )
        self.image_size, self.patch_size, self.channels = image_size, patch_size, channels
        self.num_patches = (image_size // patch_size) ** 2
        self.patch_embed = PatchEmbedding(patch_size, d_model, channels=channels)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + self.num_patches, d_model) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, d_ff=d_ff, dropout=dropout, norm_first=True,
                         activation=activation, norm_eps=norm_eps)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model, eps=norm_eps)
        self.head = nn.Linear(d_model, num_classes)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``z_0``: class token then patch embeddings, plus positions ``(B, 1+N, d)``."""
        check_ndim("images", images, 4)
        B, C, H, W = images.shape
        require(
            (C, H, W) == (self.channels, self.image_size, self.image_size),
            lambda: f"images must have shape (B, {self.channels}, {self.image_size}, {self.image_size}), "
            f"got shape {shape_of(images)}",
        )
        patches = self.patch_embed(images)  # (B, N, d)
        cls = self.cls_token.expand(B, -1, -1)  # (B, 1, d)
        return torch.cat([cls, patches], dim=1) + self.pos_embed  # (B, 1+N, d)

    def forward(
        self, images: torch.Tensor, *, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, AttentionWeights]:
        check_bool("return_attention", return_attention)
        x = self.dropout(self.tokens(images))  # (B, 1+N, d)
        weights: list[torch.Tensor] = []
        for layer in self.layers:
            x, w = layer(x, need_weights=return_attention)  # (B, 1+N, d), (B, H, 1+N, 1+N)
            if return_attention:
                weights.append(w)
        logits = self.head(self.norm(x[:, 0]))  # (B, num_classes)
        return (logits, AttentionWeights(encoder_self=weights)) if return_attention else logits
