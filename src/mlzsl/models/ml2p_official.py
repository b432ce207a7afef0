"""(ML)²P-Encoder as released: VGG19-BN pyramid + encoder head, images in, scores out.

Paper: Z. Liu, S. Guo, X. Lu, J. Guo, J. Zhang, Y. Zeng, F. Huo, "(ML)²P-Encoder: On Exploration of
Channel-Class Correlation for Multi-Label Zero-Shot Learning", CVPR 2023. Official release (test
code only, no weights): github.com/simonzmliu/cvpr23_mlzsl; module and parameter names below were
read from ``models/Channel_MLZSL.py``, ``models/MLP_Channel.py``, ``models/Group_Attention.py`` and
``models/vgg.py`` there. The encoder pieces are those of the feature-map variant
(:mod:`mlzsl.models.ml2p`, whose docstring lists every released choice); this file adds the
trainable front-end and the released parameter layout.

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
    score of label c = max over the G vectors of ⟨vector, v_c⟩        [B, L]

Released details kept here:

* Tap transforms (release ``feature_transform_module('vgg19')``: two ``BasicMaxPooling`` and one
  ``BasicConv``): conv without bias, ``BatchNorm2d(eps=1e-5, momentum=0.01)``, ReLU, then the
  max-pool (none on pool5). ``BasicConv`` lives in the release's ``models/resnet.py``, which is
  not published; ``BasicMaxPooling`` is written as a copy of it plus a pool, so we take its layout
  (``conv``, ``bn``, momentum 0.01, no conv bias) to be the same.
* ``project_out``: the release's ``Attention`` builds a 1×1 conv G·E -> G·E it never calls.
  ``keep_unused_projection=True`` (default) keeps it as a parameter so released state dicts load
  strictly; it gets no gradient and does not change any output.
* Label vectors: the released test script scores raw GloVe for ZSL and L2-normalised GloVe for
  GZSL. One forward call cannot know which protocol it serves, so ``label_normalization`` picks:
  ``"raw"`` (default, the ZSL setting) or ``"l2"`` (the GZSL setting).
* Image normalisation: the release normalises with CIFAR-10's mean/std
  (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010), which is already the
  ``vgg19_bn_pyramid`` backbone spec's; the model expects images normalised that way.
* ``interleave_groups=True`` (default) reads the G scoring vectors as the release's
  ``out.reshape(300, G).T``.
* Mixer sizes: the release hard-codes 49 positions (224 input); here P = (image_size // 32)² and
  the token MLP's hidden size is ``max(1, P // 5)`` (9 at P = 49), the channel MLP's
  ``max(1, E // 5)`` (60 at E = 300).

Parameter names: submodules carry the release's names (``vgg.features.N``, ``ft_module.K``,
``conv_embedding``, ``Channel_MLP.channel_attn.{temperature, qkv, qkv_dwconv, project_out}``,
``Channel_MLP.channel_mlp``, ``Group_Attention``). Only the mixer and group-attention internals
differ, because they reuse :mod:`mlzsl.models.ml2p`'s modules; :func:`official_key_map` renames a
released state dict to ours::

    release                                   ours
    Channel_MLP.channel_mlp.layer_norm_1      Channel_MLP.channel_mlp.norm_token
    Channel_MLP.channel_mlp.layer_norm_2      Channel_MLP.channel_mlp.norm_channel
    Channel_MLP.channel_mlp.mlp_*.dense_1     Channel_MLP.channel_mlp.mlp_*.0
    Channel_MLP.channel_mlp.mlp_*.dense_2     Channel_MLP.channel_mlp.mlp_*.2
    Group_Attention.Linear1.dense_{1,2}       Group_Attention.query.{0,2}
    Group_Attention.Linear2.dense_{1,2}       Group_Attention.key.{0,2}

Parameter count at the released sizes (S = 224, E = 300, G = 7, P = 49)::

    tap transforms (convs + BN)    256·512 + 512·512 + 512·1024 + 2·2·(512 + 512 + 1024) = 921,600
    encoder (as in ml2p.py)                                                          18,001,907
    head                                                                             18,923,507
    unused project_out             2100·2100 + 2100                                   4,412,100
    head with project_out                                                            23,335,607
    VGG19-BN trunk (features)                                                        20,035,392

The paper's "about 18.9 M" is the head without ``project_out``.
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
from mlzsl.models._checks import check_labels
from mlzsl.models.ml2p import (
    ChannelCorrelationAttention,
    GroupAttention,
    MixerBlock,
    channel_shuffle,
)

__all__ = ["ML2POfficial", "ml2p_official", "official_key_map"]

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


class ML2POfficial(nn.Module):
    """(ML)²P-Encoder as released: VGG19-BN pyramid and encoder head, trained end to end.

    ``forward(images, label_vectors)`` follows the package interface with images as the
    "features": normalised RGB batches [B, 3, S, S] (CIFAR-10 mean/std, see the module docstring).

    Args:
        embed_dim: E, the label-vector size (300 released).
        image_size: S, the input side; P = (S // 32)² sizes the token-mixing MLP (49 at 224).
        groups: G, channel groups (7 released).
        freeze_trunk: keep the VGG19-BN trunk fixed (no gradients, BN in eval mode); the release
            trains it end to end (default ``False``).
        backbone_weights: a torchvision ``vgg19_bn`` file (``vgg19_bn-c79401a0.pth``) or its URL;
            ``None`` initialises the trunk at random.
        keep_unused_projection: build the release's never-called ``project_out`` conv.
        interleave_groups: read the scoring vectors with the release's ``reshape(E, G).T``.
        label_normalization: ``"raw"`` (released ZSL scoring) or ``"l2"`` (released GZSL scoring).
    """

    model_name = "ml2p_official"

    def __init__(
        self,
        *,
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
        _check_arguments(embed_dim, image_size, groups, label_normalization)
        self.config: dict[str, int | bool | str | None] = dict(
            in_channels=3,
            embed_dim=embed_dim,
            image_size=image_size,
            groups=groups,
            freeze_trunk=freeze_trunk,
            backbone_weights=backbone_weights,
            keep_unused_projection=keep_unused_projection,
            interleave_groups=interleave_groups,
            label_normalization=label_normalization,
        )
        self.embed_dim, self.groups, self.image_size = embed_dim, groups, image_size
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

    def _check_images(self, images: Tensor) -> None:
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
        """The G scoring vectors of each image.

        Args:
            images: [B, 3, S, S] normalised images, S // 32 == ``image_size // 32``.

        Returns:
            [B, G, E] scoring vectors.
        """
        self._check_images(images)
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
        check_labels("ml2p_official", self.embed_dim, label_vectors)
        if self.label_normalization == "l2":  # the released GZSL scoring
            label_vectors = F.normalize(label_vectors, dim=-1)
        dots = torch.einsum("bge,le->bgl", embeddings, label_vectors)  # [B, G, L]
        return dots.amax(dim=1)  # [B, L]

    def forward(self, features: Tensor, label_vectors: Tensor) -> Tensor:
        """Score every label for every image.

        Args:
            features: [B, 3, S, S] normalised images.
            label_vectors: [L, E] label vectors (GloVe in the release).

        Returns:
            [B, L] scores; higher ranks a label higher.
        """
        return self.score(self.forward_embeddings(features), label_vectors)


def _check_arguments(embed_dim: int, image_size: int, groups: int, normalization: str) -> None:
    for key, value in (("embed_dim", embed_dim), ("groups", groups)):
        if value < 1:
            raise ConfigError(f"ml2p_official: {key} must be a positive integer, got {value}")
    if image_size < _STRIDE:
        raise ConfigError(
            f"ml2p_official: image_size must be at least {_STRIDE} (pool5 at least 1×1), "
            f"got {image_size}"
        )
    if normalization not in LABEL_NORMALIZATION:
        raise ConfigError(
            f"ml2p_official: label_normalization must be one of {LABEL_NORMALIZATION}, "
            f"got {normalization!r}"
        )


@register_model("ml2p_official", inputs="images")
def ml2p_official(
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
) -> ML2POfficial:
    """(ML)²P-Encoder as released (Liu et al., CVPR 2023): images in; defaults are the release's.

    ``in_channels`` must be 3 (RGB images). ``backbone_weights``: pass torchvision's
    ``vgg19_bn-c79401a0.pth`` (path or URL) for the ImageNet trunk; ``None`` is a random trunk.
    """
    if in_channels != 3:
        raise ConfigError(
            f"ml2p_official takes RGB images: in_channels must be 3, got {in_channels}"
        )
    return ML2POfficial(
        embed_dim=embed_dim,
        image_size=image_size,
        groups=groups,
        freeze_trunk=freeze_trunk,
        backbone_weights=backbone_weights,
        keep_unused_projection=keep_unused_projection,
        interleave_groups=interleave_groups,
        label_normalization=label_normalization,
    )
