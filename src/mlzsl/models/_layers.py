"""Layers and scoring rules that several models share.

LESA's trunk (``SharedAttention``, ``span_regularizer``, He-normal label classifiers) serves
``lesa``, ``attention_per_cluster`` and ``kim_bilinear``; the (ML)²P encoder blocks serve ``ml2p``
and ``ml2p_official``; the pooled MLP head and the one-direction score serve ``fast0tag``,
``sdl`` and ``labelem``. Each block's source is stated in the model files' provenance tables.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ChannelCorrelationAttention",
    "GroupAttention",
    "Mlp",
    "MixerBlock",
    "SharedAttention",
    "best_vector_scores",
    "channel_shuffle",
    "direction_scores",
    "he_normal",
    "label_classifier",
    "mlp_head",
    "span_regularizer",
]


# -- scoring


def direction_scores(directions: Tensor, label_vectors: Tensor, *, normalize: bool) -> Tensor:
    """Scores [B, L] = ⟨d(x), v_c⟩ from one direction per image [B, 1, E] and vectors [L, E]."""
    if normalize:
        label_vectors = F.normalize(label_vectors, dim=-1)  # [L, E]
    return directions.squeeze(1) @ label_vectors.T  # [B, L]


def best_vector_scores(vectors: Tensor, label_vectors: Tensor, *, normalize: bool) -> Tensor:
    """Scores [B, L] = max over K of ⟨vector_k, v_c⟩ from vectors [B, K, E] and [L, E]."""
    if normalize:
        label_vectors = F.normalize(label_vectors, dim=-1)  # [L, E]
    dots = torch.einsum("bge,le->bgl", vectors, label_vectors)  # [B, K, L]
    return dots.amax(dim=1)  # [B, L]


# -- pooled-feature heads (fast0tag, sdl)


def mlp_head(in_features: int, hidden: int, out_features: int, dropout: float) -> nn.Module:
    """Linear in -> hidden, ReLU, Dropout, Linear hidden -> out; ``hidden=0``: one Linear."""
    if hidden == 0:
        return nn.Linear(in_features, out_features)
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_features),
    )


# -- LESA's trunk (lesa, attention_per_cluster, kim_bilinear)


def he_normal(weight: Tensor, fan_in: int) -> None:
    """He-normal init, std = sqrt(2 / fan_in) (TF ``variance_scaling_initializer`` defaults)."""
    nn.init.normal_(weight, std=math.sqrt(2.0 / fan_in))


def label_classifier(embed_dim: int, width: int) -> nn.Linear:
    """W: label vector [E] -> classifier [width], no bias, He-normal weight [width, E]."""
    layer = nn.Linear(embed_dim, width, bias=False)
    he_normal(layer.weight, width)
    return layer


class SharedAttention(nn.Module):
    """LESA's trunk: optional 2×2 conv + BN + ReLU, then T label-agnostic attentions over regions.

    Args:
        in_channels: C, channels of the feature map.
        conv_channels: C', channels after the conv (``None``: C). Ignored without the conv.
        num_attentions: T, number of attention maps.
        use_conv: apply the 2×2 conv + BN + ReLU front-end.
    """

    def __init__(
        self, *, in_channels: int, conv_channels: int | None, num_attentions: int, use_conv: bool
    ) -> None:
        super().__init__()
        width = (conv_channels or in_channels) if use_conv else in_channels
        self.out_channels = width
        self.conv: nn.Module = nn.Identity()
        if use_conv:
            conv = nn.Conv2d(in_channels, width, kernel_size=2, bias=False)  # BN supplies the bias
            he_normal(conv.weight, in_channels * 4)
            self.conv = nn.Sequential(
                nn.ZeroPad2d((0, 1, 0, 1)), conv, nn.BatchNorm2d(width), nn.ReLU()
            )
        self.hidden = nn.Linear(width, width)
        self.logits = nn.Linear(width, num_attentions)
        for layer in (self.hidden, self.logits):
            he_normal(layer.weight, width)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Regions and attention logits: [B, C, H, W] -> ([B, P, C'], [B, T, P])."""
        regions = self.conv(features).flatten(2).transpose(1, 2)  # [B, P, C']
        logits = self.logits(torch.tanh(self.hidden(regions)))  # [B, P, T]
        return regions, logits.transpose(1, 2)  # [B, P, C'], [B, T, P]


def span_regularizer(attention_logits: Tensor) -> Tensor:
    """LESA's span (diversity) term from attention logits [B, T, P]: a scalar.

    Off-diagonal cosine similarities between the T logit maps of each image; Frobenius norm of the
    whole [B, T, T] stack (release ``_attention_ortho_span_regularizer``).
    """
    unit = F.normalize(attention_logits, dim=2)  # [B, T, P]
    gram = unit @ unit.transpose(1, 2)  # [B, T, T]
    off_diagonal = gram - torch.diag_embed(torch.diagonal(gram, dim1=1, dim2=2))  # [B, T, T]
    return off_diagonal.square().sum().sqrt()


# -- the (ML)²P-Encoder blocks (ml2p, ml2p_official)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet channel shuffle: channel g·n + e moves to e·groups + g.

    Args:
        x: [B, groups·n, H, W].
    """
    b, c, h, w = x.shape
    x = x.reshape(b, groups, c // groups, h, w)  # [B, G, n, H, W]
    return x.transpose(1, 2).reshape(b, c, h, w)  # [B, n·G, H, W]


class Mlp(nn.Sequential):
    """Linear dim -> hidden, GELU, Linear hidden -> dim (the (ML)²P release's ``MlpBlock``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class ChannelCorrelationAttention(nn.Module):
    """Per-group E×E channel-correlation attention (heads = groups).

    Args:
        groups: G, the number of heads.
        embed_dim: E, channels per head.
        residual: add the input back (F + Att, the poster) instead of returning Att alone.
    """

    def __init__(self, *, groups: int, embed_dim: int, residual: bool) -> None:
        super().__init__()
        dim = groups * embed_dim
        self.groups, self.embed_dim, self.residual = groups, embed_dim, residual
        self.temperature = nn.Parameter(torch.ones(groups, 1, 1))  # τ_g, one per group
        self.qkv = nn.Conv2d(dim, 3 * dim, kernel_size=1)
        self.qkv_dwconv = nn.Conv2d(3 * dim, 3 * dim, kernel_size=3, padding=1, groups=3 * dim)

    def attention_map(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Channel correlation R [B, G, E, E] (rows sum to 1) and values v [B, G, E, P]."""
        b, _, h, w = x.shape
        qkv = self.qkv_dwconv(self.qkv(x))  # [B, 3·G·E, H, W]
        q, k, v = (t.reshape(b, self.groups, self.embed_dim, h * w) for t in qkv.chunk(3, dim=1))
        # L2-normalise along positions, as released, so τ alone sets the sharpness
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)  # [B, G, E, P]
        logits = q @ k.transpose(-2, -1) * self.temperature  # [B, G, E, E]
        return logits.softmax(dim=-1), v

    def forward(self, x: Tensor) -> Tensor:
        """Map [B, G·E, H, W] to [B, G, E, P]."""
        attn, v = self.attention_map(x)  # [B, G, E, E], [B, G, E, P]
        out = attn @ v  # [B, G, E, P]
        if self.residual:
            out = out + x.reshape(out.shape)  # same head split as v
        return out


class MixerBlock(nn.Module):
    """MLP-Mixer block over [B, G, P, E]: token mixing along P, then channel mixing along E.

    Both LayerNorms normalise over E, as released.
    """

    def __init__(
        self, *, num_positions: int, embed_dim: int, token_hidden: int, channel_hidden: int
    ) -> None:
        super().__init__()
        self.norm_token = nn.LayerNorm(embed_dim)
        self.mlp_token = Mlp(num_positions, token_hidden)
        self.norm_channel = nn.LayerNorm(embed_dim)
        self.mlp_channel = Mlp(embed_dim, channel_hidden)

    def forward(self, x: Tensor) -> Tensor:
        """Map [B, G, P, E] to [B, G, P, E]."""
        y = self.norm_token(x).transpose(-1, -2)  # [B, G, E, P]
        x = x + self.mlp_token(y).transpose(-1, -2)  # [B, G, P, E]
        return x + self.mlp_channel(self.norm_channel(x))  # [B, G, P, E]


class GroupAttention(nn.Module):
    """Group-wise attention out = (q kᵀ) v over the G group vectors; no softmax, no scaling."""

    def __init__(self, *, embed_dim: int) -> None:
        super().__init__()
        self.query = Mlp(embed_dim, embed_dim)
        self.key = Mlp(embed_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Map [B, G, E] to [B, G, E]."""
        affinity = self.query(x) @ self.key(x).transpose(-2, -1)  # [B, G, G]
        return affinity @ x  # [B, G, E]
