"""Layers and scoring rules that several models share.

LESA's trunk (``SharedAttention``, ``span_regularizer``, label classifiers with the release's or
He-normal initialisers) serves ``lesa``, ``attention_per_cluster`` and ``kim_bilinear``, and
``SharedAttentionModel`` wires it (attention, then W) once for ``lesa`` and
``attention_per_cluster``; the
(ML)²P encoder blocks serve ``ml2p`` and ``ml2p_official``; the pooled MLP head and the
one-direction score serve ``fast0tag``, ``sdl`` and ``labelem``. Each block's source is stated
in the model files' provenance tables.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.models._base import MLZSLModel

__all__ = [
    "ChannelCorrelationAttention",
    "GroupAttention",
    "Mlp",
    "MixerBlock",
    "SharedAttention",
    "SharedAttentionModel",
    "best_vector_scores",
    "channel_shuffle",
    "channel_shuffle_index",
    "direction_scores",
    "INITS",
    "he_normal",
    "label_classifier",
    "mlp_head",
    "span_regularizer",
    "tf_variance_scaling",
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


INITS = ("release", "he")  # LESA trunk initialisers: the TF release's, or ours (He-normal)


def he_normal(weight: Tensor, fan_in: int) -> None:
    """He-normal init, std = sqrt(2 / fan_in), untruncated (ours; see ``tf_variance_scaling``)."""
    nn.init.normal_(weight, std=math.sqrt(2.0 / fan_in))


def tf_variance_scaling(weight: Tensor, fan_in: int) -> None:
    """TF 1 ``contrib.layers.variance_scaling_initializer()`` with its defaults.

    factor 2, mode FAN_IN, not uniform: a normal truncated at ±2 std, std = sqrt(1.3·2 / fan_in)
    (the 1.3 undoes the truncation's shrinkage), fan_in = the variable's second-last dimension.
    """
    std = math.sqrt(1.3 * 2.0 / fan_in)
    nn.init.trunc_normal_(weight, std=std, a=-2.0 * std, b=2.0 * std)


def label_classifier(embed_dim: int, width: int, init: str = "he") -> nn.Linear:
    """W: label vector [E] -> classifier [width], no bias, weight [width, E].

    ``init="he"``: He-normal (ours); ``"release"``: LESA's ``prediction_frac/W`` [width, E],
    TF variance scaling with fan_in = width.
    """
    layer = nn.Linear(embed_dim, width, bias=False)
    (tf_variance_scaling if init == "release" else he_normal)(layer.weight, width)
    return layer


class SharedAttention(nn.Module):
    """LESA's trunk: optional 2×2 conv + BN + ReLU, then T label-agnostic attentions over regions.

    Args:
        in_channels: C, channels of the feature map.
        conv_channels: C', channels after the conv (``None``: C). Ignored without the conv.
        num_attentions: T, number of attention maps.
        use_conv: apply the 2×2 conv + BN + ReLU front-end.
        init: ``"he"`` (ours): He-normal conv and attention weights, zero attention biases;
            ``"release"`` (LESA's TF code): Glorot-uniform conv (slim's default), attention
            weight and bias drawn together from TF variance scaling with fan_in = C' + 1 (the
            release's ``w_att_*`` [C'+1, ·] hold the bias as their last row).
        bn_eps, bn_momentum: the conv's BatchNorm (PyTorch momentum; the release's TF
            ``batch_normalization`` has epsilon 1e-3, decay 0.99, i.e. momentum 0.01).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        conv_channels: int | None,
        num_attentions: int,
        use_conv: bool,
        init: str = "he",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        width = (conv_channels or in_channels) if use_conv else in_channels
        self.out_channels = width
        self.conv: nn.Module = nn.Identity()
        release = init == "release"
        if use_conv:
            conv = nn.Conv2d(in_channels, width, kernel_size=2, bias=False)  # BN supplies the bias
            if release:
                nn.init.xavier_uniform_(conv.weight)  # fans 4·C and 4·C', as TF's
            else:
                he_normal(conv.weight, in_channels * 4)
            norm = nn.BatchNorm2d(width, eps=bn_eps, momentum=bn_momentum)
            self.conv = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), conv, norm, nn.ReLU())
        self.hidden = nn.Linear(width, width)
        self.logits = nn.Linear(width, num_attentions)
        for layer in (self.hidden, self.logits):
            if release:
                for parameter in (layer.weight, layer.bias):
                    tf_variance_scaling(parameter, width + 1)
            else:
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


class SharedAttentionModel(MLZSLModel):
    """A model on LESA's trunk (``lesa``, ``attention_per_cluster``): ``attention``, the T
    attentions over the regions (:class:`SharedAttention`), and ``W``, the label classifier
    [C', E]; a subclass builds both with :meth:`build_trunk` in its ``__init__``.
    """

    attention: SharedAttention
    W: nn.Linear

    def build_trunk(self, count: str) -> None:
        """Check the trunk's arguments, then build ``attention`` and ``W`` (in that order: the
        seeded initial weights depend on it).

        The arguments are the model's of the same names in ``self.config`` (see
        :class:`SharedAttention`); ``count`` names the model's argument for T
        (``num_attentions``, ``num_clusters``), so that an error names it.
        """
        config = self.config
        self.check_choice("init", config["init"], INITS)
        conv_channels = config["conv_channels"]
        self.check_positive(
            **{count: config[count]},
            conv_channels=config["in_channels"] if conv_channels is None else conv_channels,
        )
        self.attention = SharedAttention(
            in_channels=config["in_channels"],
            conv_channels=conv_channels,
            num_attentions=config[count],
            use_conv=config["use_conv"],
            init=config["init"],
            bn_eps=config["bn_eps"],
            bn_momentum=config["bn_momentum"],
        )
        self.W = label_classifier(
            config["embed_dim"], self.attention.out_channels, config["init"]
        )  # [C', E]

    def attention_maps(self, features: Tensor) -> Tensor:
        """Attention weights [B, T, P] of each image (each map sums to 1 over the P regions)."""
        self.check_features(features)
        return self.attention(features)[1].softmax(dim=2)  # [B, T, P]

    def attend(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The T attended features of each image [B, C, H, W] -> [B, T, C'], with the regions
        [B, P, C'] and attention logits [B, T, P] they come from."""
        self.check_features(features)
        regions, logits = self.attention(features)  # [B, P, C'], [B, T, P]
        return logits.softmax(dim=2) @ regions, regions, logits  # [B, T, C'], ...


# -- the (ML)²P-Encoder blocks (ml2p, ml2p_official)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet channel shuffle: channel g·n + e moves to e·groups + g.

    Args:
        x: [B, groups·n, H, W].
    """
    b, c, h, w = x.shape
    x = x.reshape(b, groups, c // groups, h, w)  # [B, G, n, H, W]
    return x.transpose(1, 2).reshape(b, c, h, w)  # [B, n·G, H, W]


def channel_shuffle_index(channels: int, groups: int) -> Tensor:
    """The gather of :func:`channel_shuffle`: ``channel_shuffle(x, G) == x[:, index]``.

    Indexing a 1×1 conv's output rows (weight and bias) with it shuffles for free.
    """
    return torch.arange(channels).reshape(groups, channels // groups).T.reshape(-1)  # [C]


class Mlp(nn.Sequential):
    """Linear dim -> hidden, GELU, Linear hidden -> dim (the (ML)²P release's ``MlpBlock``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


_NORM_EPS = 1e-12  # F.normalize's default


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
        # channels-last: the 1×1 conv is one GEMM over [B·P, G·E] and the depth-wise 3×3 conv
        # runs about 3× faster than on NCHW (oneDNN; benchmarks/README.md, "The heads at
        # NUS-WIDE sizes")
        x = x.contiguous(memory_format=torch.channels_last)
        qkv = self.qkv_dwconv(self.qkv(x))  # [B, 3·G·E, H, W], stored [B, H, W, 3·G·E]
        qkv = qkv.permute(0, 2, 3, 1).reshape(b, h * w, 3, self.groups, self.embed_dim)
        q, k, v = qkv.permute(2, 0, 3, 4, 1).unbind(0)  # each [B, G, E, P] (views)
        # L2-normalise along positions, as released, so τ alone sets the sharpness; τ scales q
        # here, one pass over [B, G, E, P] rather than over the larger [B, G, E, E] logits
        scale = self.temperature / torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min(
            _NORM_EPS
        )  # [B, G, E, 1]
        logits = (q * scale) @ F.normalize(k, dim=-1, eps=_NORM_EPS).transpose(-2, -1)
        return logits.softmax(dim=-1), v  # [B, G, E, E], [B, G, E, P]

    def forward_positions(self, x: Tensor) -> Tensor:
        """Map [B, G·E, H, W] (channels-last is fastest) to [B, G, P, E], positions first."""
        b, _, h, w = x.shape
        attn, v = self.attention_map(x)  # [B, G, E, E], [B, G, E, P]
        out = v.transpose(-2, -1) @ attn.transpose(-2, -1)  # (R v)ᵀ: [B, G, P, E]
        if self.residual:  # same head split as v
            x = x.permute(0, 2, 3, 1).reshape(b, h * w, self.groups, self.embed_dim)
            out = out + x.transpose(1, 2)  # [B, G, P, E]
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Map [B, G·E, H, W] to [B, G, E, P]."""
        return self.forward_positions(x).transpose(-2, -1)


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
    """Group-wise attention out = (q kᵀ) v over the G group vectors; no softmax.

    Args:
        embed_dim: E.
        scale: multiply the affinity q kᵀ by 1/√E (ours, off as released: without it one Adam
            step moves q kᵀ by ∝ E, see docs/models.md, ml2p, "Large E").
    """

    def __init__(self, *, embed_dim: int, scale: bool = False) -> None:
        super().__init__()
        self.query = Mlp(embed_dim, embed_dim)
        self.key = Mlp(embed_dim, embed_dim)
        self.scale = embed_dim**-0.5 if scale else None

    def forward(self, x: Tensor) -> Tensor:
        """Map [B, G, E] to [B, G, E]."""
        affinity = self.query(x) @ self.key(x).transpose(-2, -1)  # [B, G, G]
        if self.scale is not None:
            affinity = affinity * self.scale
        return affinity @ x  # [B, G, E]
