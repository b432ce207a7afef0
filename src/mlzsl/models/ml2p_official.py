"""(ML)²P-Encoder as released: VGG19-BN pyramid + encoder head, images in, scores out.

Paper: Z. Liu, S. Guo, X. Lu, J. Guo, J. Zhang, Y. Zeng, F. Huo, "(ML)²P-Encoder: On Exploration of
Channel-Class Correlation for Multi-Label Zero-Shot Learning", CVPR 2023. Official release (test
code only, no weights): github.com/simonzmliu/cvpr23_mlzsl; module and parameter names below were
read from ``models/Channel_MLZSL.py``, ``models/MLP_Channel.py``, ``models/Group_Attention.py`` and
``models/vgg.py`` there. The encoder blocks are the feature-map variant's (:mod:`mlzsl.models.ml2p`
lists their provenance); this file adds the trainable front-end and the released parameter layout.
Details and the parameter count at the released sizes: docs/models.md (ml2p_official).

Shapes with B batch, S image side, G groups, E label-vector size, P = (S/32)² positions (49 at
224)::

    images [B, 3, S, S] (normalised)
      VGG19-BN taps: pool3 [B, 256, S/8, S/8], pool4 [B, 512, S/16, S/16],
                     pool5 [B, 512, S/32, S/32]
      per tap 1×1 conv (no bias) + BN + ReLU, then max-pool:
        pool3 256 -> 512, max-pool 4; pool4 512 -> 512, max-pool 2; pool5 512 -> 1024
      concatenated                                                  [B, 2048, S/32, S/32]
      ``conv_embedding`` 1×1 conv 2048 -> G·E, channel shuffle      [B, G·E, S/32, S/32]
      channel-correlation attention (heads = G)                      [B, G, E, P]
      mixer block, max over P, sigmoid                               [B, G, E]
      group attention (q kᵀ) v                                       [B, G, E]
      G scoring vectors (released stride-G interleave)               [B, G, E]
    score of label c = max over the G vectors of <vector, v_c>        [B, L]

Provenance (release: the official code; ours: fixed by neither)::

    choice                                              source
    tap transforms: conv (no bias), BN (eps 1e-5,       release ``feature_transform_module``
      momentum 0.01), ReLU, max-pool (none on pool5)
    pool5's ``BasicConv`` laid out as ``BasicMaxPooling`` ours (its file is not published)
    ``project_out`` kept as an unused parameter         release (keep_unused_projection=True)
    label_normalization "raw" (ZSL) or "l2" (GZSL)      release test script (one per protocol)
    CIFAR-10 mean/std image normalisation               release (``vgg19_bn_pyramid`` spec)
    interleave_groups: ``out.reshape(E, G).T``          release
    P = (image_size // 32)², hidden max(1, P // 5),     release (hard-codes 49, ratio 5);
      max(1, E // 5)                                      sizes from image_size, ours
    trunk trained end to end (freeze_trunk=False)       release

Parameter names: submodules carry the release's names (``vgg.features.N``, ``ft_module.K``,
``conv_embedding``, ``Channel_MLP.channel_attn.{temperature, qkv, qkv_dwconv, project_out}``,
``Channel_MLP.channel_mlp``, ``Group_Attention``). Only the mixer and group-attention internals
differ, because they reuse the shared encoder blocks; :func:`official_key_map` renames a released
state dict to ours::

    release                                   ours
    Channel_MLP.channel_mlp.layer_norm_1      Channel_MLP.channel_mlp.norm_token
    Channel_MLP.channel_mlp.layer_norm_2      Channel_MLP.channel_mlp.norm_channel
    Channel_MLP.channel_mlp.mlp_*.dense_1     Channel_MLP.channel_mlp.mlp_*.0
    Channel_MLP.channel_mlp.mlp_*.dense_2     Channel_MLP.channel_mlp.mlp_*.2
    Group_Attention.Linear1.dense_{1,2}       Group_Attention.query.{0,2}
    Group_Attention.Linear2.dense_{1,2}       Group_Attention.key.{0,2}
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.backbones import VGG19BNPyramid, create_backbone
from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._base import MLZSLModel
from mlzsl.models._layers import (
    ChannelCorrelationAttention,
    GroupAttention,
    MixerBlock,
    best_vector_scores,
    channel_shuffle,
)

__all__ = ["ML2POfficial", "official_key_map"]

LABEL_NORMALIZATION = ("raw", "l2")
_TAPS = ((256, 512, 4), (512, 512, 2), (512, 1024, 1))  # (in, out, max-pool) per tap, released
_STRIDE = 32  # pool5's stride: the released 2048-channel map is S/32 × S/32

# (released pattern, our replacement), applied in order to every key (see the module docstring).
_KEY_RENAMES = (
    (r"^Channel_MLP\.channel_mlp\.layer_norm_1\.", "Channel_MLP.channel_mlp.norm_token."),
    (r"^Channel_MLP\.channel_mlp\.layer_norm_2\.", "Channel_MLP.channel_mlp.norm_channel."),
    (r"^(Channel_MLP\.channel_mlp\.mlp_(?:token|channel))\.dense_1\.", r"\1.0."),
    (r"^(Channel_MLP\.channel_mlp\.mlp_(?:token|channel))\.dense_2\.", r"\1.2."),
    (r"^Group_Attention\.Linear1\.dense_1\.", "Group_Attention.query.0."),
    (r"^Group_Attention\.Linear1\.dense_2\.", "Group_Attention.query.2."),
    (r"^Group_Attention\.Linear2\.dense_1\.", "Group_Attention.key.0."),
    (r"^Group_Attention\.Linear2\.dense_2\.", "Group_Attention.key.2."),
)


def official_key_map(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a state dict saved from the released ``Channel_MLZSL`` to this model's names.

    A leading ``module.`` (a ``DataParallel`` save) is stripped first. Keys already in our
    naming pass through unchanged, so the map is idempotent.

    Args:
        state_dict: released parameter names -> tensors.

    Returns:
        A new dict that ``ML2POfficial(...).load_state_dict(..., strict=True)`` accepts when the
        model was built with the released sizes and ``keep_unused_projection=True``.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        for pattern, replacement in _KEY_RENAMES:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


class _TapTransform(nn.Module):
    """1×1 conv (no bias), BN, ReLU, max-pool (release ``BasicMaxPooling`` / ``BasicConv``)."""

    def __init__(self, in_channels: int, out_channels: int, pool: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-5, momentum=0.01)  # released momentum
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        """Map [B, C_in, h, w] to [B, C_out, h / pool, w / pool]."""
        x = F.relu(self.bn(self.conv(x)))
        return F.max_pool2d(x, self.pool) if self.pool > 1 else x


class _ReleasedAttention(ChannelCorrelationAttention):
    """The channel-correlation attention plus the release's never-called ``project_out`` conv."""

    def __init__(self, *, groups: int, embed_dim: int, keep_unused_projection: bool) -> None:
        super().__init__(groups=groups, embed_dim=embed_dim, residual=False)
        if keep_unused_projection:  # a parameter only, so released state dicts load strictly
            dim = groups * embed_dim
            self.project_out = nn.Conv2d(dim, dim, kernel_size=1)


class _ChannelMLP(nn.Module):
    """Release ``MLP_Channel``: attention, one shared mixer block, max over P, sigmoid."""

    def __init__(
        self, *, groups: int, embed_dim: int, num_positions: int, keep_unused_projection: bool
    ) -> None:
        super().__init__()
        self.channel_attn = _ReleasedAttention(
            groups=groups, embed_dim=embed_dim, keep_unused_projection=keep_unused_projection
        )
        self.channel_mlp = MixerBlock(
            num_positions=num_positions,
            embed_dim=embed_dim,
            token_hidden=max(1, num_positions // 5),  # released reduction ratio 5
            channel_hidden=max(1, embed_dim // 5),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map [B, G·E, h, w] to group vectors [B, G, E] in (0, 1)."""
        x = self.channel_attn(x)  # [B, G, E, P]
        x = self.channel_mlp(x.transpose(-1, -2))  # [B, G, P, E]
        return torch.sigmoid(x.amax(dim=2))  # [B, G, E]: max over positions, as released


@register_model("ml2p_official", inputs="images")
class ML2POfficial(MLZSLModel):
    """(ML)²P-Encoder as released: VGG19-BN pyramid and encoder head, trained end to end.

    ``forward(images, label_vectors)`` follows the package interface with images as the
    "features": normalised RGB batches [B, 3, S, S] (CIFAR-10 mean/std, see the module docstring).

    Args:
        in_channels: must be 3 (RGB images).
        embed_dim: E, the label-vector size (300 released).
        image_size: S, the input side; P = (S // 32)² sizes the token-mixing MLP (49 at 224).
        groups: G, channel groups (7 released).
        freeze_trunk: keep the VGG19-BN trunk fixed (no gradients, BN in eval mode); the release
            trains it end to end (default ``False``).
        backbone_weights: a torchvision ``vgg19_bn`` file (``vgg19_bn-c79401a0.pth``) or its URL
            for the ImageNet trunk; ``None`` initialises the trunk at random.
        keep_unused_projection: build the release's never-called ``project_out`` conv.
        interleave_groups: read the scoring vectors with the release's ``reshape(E, G).T``.
        label_normalization: ``"raw"`` (released ZSL scoring) or ``"l2"`` (released GZSL scoring).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        embed_dim: int,
        image_size: int = 224,
        groups: int = 7,
        freeze_trunk: bool = False,
        backbone_weights: str | None = None,
        keep_unused_projection: bool = True,
        interleave_groups: bool = True,
        label_normalization: str = "raw",
    ) -> None:
        super().__init__()
        if in_channels != 3:
            raise ConfigError(
                f"ml2p_official takes RGB images: in_channels must be 3, got {in_channels}"
            )
        self.check_positive(groups=groups)
        if image_size < _STRIDE:
            raise ConfigError(
                f"ml2p_official: image_size must be at least {_STRIDE} (pool5 at least 1×1), "
                f"got {image_size}"
            )
        self.check_choice("label_normalization", label_normalization, LABEL_NORMALIZATION)
        self.groups, self.image_size = groups, image_size
        self.side = image_size // _STRIDE  # pool5's side
        self.freeze_trunk, self.interleave_groups = freeze_trunk, interleave_groups
        self.label_normalization = label_normalization
        trunk = create_backbone(
            "vgg19_bn_pyramid", weights=backbone_weights or "random", image_size=image_size
        )
        assert isinstance(trunk, VGG19BNPyramid)
        self.vgg = trunk.requires_grad_(not freeze_trunk)  # create_backbone freezes it
        self.ft_module = nn.Sequential(*(_TapTransform(i, o, p) for i, o, p in _TAPS))
        in_dim = sum(o for _, o, _ in _TAPS)  # 2048
        self.conv_embedding = nn.Conv2d(in_dim, groups * embed_dim, kernel_size=1)
        self.Channel_MLP = _ChannelMLP(
            groups=groups,
            embed_dim=embed_dim,
            num_positions=self.side**2,
            keep_unused_projection=keep_unused_projection,
        )
        self.Group_Attention = GroupAttention(embed_dim=embed_dim)

    def train(self, mode: bool = True) -> ML2POfficial:
        """Set train/eval mode; a frozen trunk stays in eval mode (fixed BN statistics)."""
        super().train(mode)
        if self.freeze_trunk:
            self.vgg.eval()
        return self

    def check_features(self, images: Tensor) -> None:
        """Raise :class:`ConfigError` unless ``images`` is [B, 3, S, S'] with S // 32 fitting."""
        if (
            images.ndim != 4
            or images.shape[1] != 3
            or (images.shape[2] // _STRIDE, images.shape[3] // _STRIDE) != (self.side, self.side)
        ):
            raise ConfigError(
                f"ml2p_official takes RGB images of 3 channels and side image_size="
                f"{self.image_size} (any side with the same side // 32); got input of shape "
                f"{tuple(images.shape)}"
            )

    def forward_embeddings(self, images: Tensor) -> Tensor:
        """Scoring vectors [B, G, E] of images [B, 3, S, S] (S // 32 = image_size // 32)."""
        self.check_features(images)
        taps = self.vgg.forward_taps(images)  # pool3, pool4, pool5
        maps = [t(f) for t, f in zip(self.ft_module, taps, strict=True)]  # each [B, ·, h, w]
        x = torch.cat(maps, dim=1)  # [B, 2048, h, w]
        x = channel_shuffle(self.conv_embedding(x), self.groups)  # [B, G·E, h, w]
        x = self.Group_Attention(self.Channel_MLP(x))  # [B, G, E]
        if self.interleave_groups:  # numpy's out.reshape(E, G).T per image, as released
            x = x.reshape(x.shape[0], self.embed_dim, self.groups).transpose(1, 2)
        return x  # [B, G, E]

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L] from scoring vectors [B, G, E] and label vectors [L, E]."""
        self.check_labels(label_vectors)
        normalize = self.label_normalization == "l2"  # the released GZSL scoring
        return best_vector_scores(embeddings, label_vectors, normalize=normalize)
