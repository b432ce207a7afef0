"""(ML)²P-Encoder over a backbone feature map.

Paper: Z. Liu, S. Guo, X. Lu, J. Guo, J. Zhang, Y. Zeng, F. Huo, "(ML)²P-Encoder: On Exploration of
Channel-Class Correlation for Multi-Label Zero-Shot Learning", CVPR 2023. Official release (test
code only, no weights): github.com/simonzmliu/cvpr23_mlzsl, files ``models/Channel_MLZSL.py``,
``models/MLP_Channel.py``, ``models/Group_Attention.py``, ``test_nuswide.py``. Reasons for each
choice, numerics at initialisation, the differences from the released image model and the
parameter count at the released sizes: docs/models.md (ml2p).

Pipeline (B batch, C channels, P = H·W positions, G groups, E label-vector size)::

    features [B, C, H, W]
      optional k×k max-pool, stride k (input_pool; 2: VGG19 pool5)   [B, C, H/k, W/k]
      1×1 conv C -> G·E (plain conv with bias, no BN/ReLU)          [B, G·E, H, W]
      channel shuffle (G, E) -> (E, G)                               [B, G·E, H, W]
      channel-correlation attention, heads = groups                  [B, G, E, P]
      mixer block(s), shared by all groups                           [B, G, P, E]
      max over the P positions, then sigmoid                         [B, G, E]
      group-wise attention (q kᵀ) v, G×G affinity                    [B, G, E]
      G scoring vectors (released stride-G interleave)               [B, G, E]
    score of label c = max over the G vectors of <vector, v_c>        [B, L]

Provenance (release: the official code; paper: the CVPR text; ours: fixed by neither)::

    choice                                              source
    1×1 projection C -> G·E with bias, no norm/act      release ``conv_embedding``
    channel shuffle (G, E) -> (E, G)                    release
    channel attention: 1×1 qkv + depth-wise 3×3, q, k   release ``Attention`` (Restormer-style)
      L2-normalised over P, learnable τ_g (init 1)
    ``project_out`` (built, never called): omitted      release
    attention_residual (F + Att), off by default        paper (the poster); off as released
    mixer block over (B, G, P, E), shared by groups     release ``MixerBlock``
    both LayerNorms over E                              release
    token/channel_reduction = 5, hidden max(1, n // r)  release (one ratio 5); two options ours
    num_blocks = 1 (the release passes 3, builds 1)     release
    max over positions, then sigmoid                    release (``AdaptiveMaxPool2d``)
    group attention (q kᵀ) v, MLP q/k, no softmax       release ``Group_Attention``
    group_attention_scale (1/√E on q kᵀ), off           ours (for E ≥ 300, docs/models.md)
    interleave_groups: ``out.reshape(E, G).T``          release test code; False: paper's text
    score: max over G of the dot product, no label map  release
    normalize_labels = True                             ours (release: raw for ZSL, L2 for GZSL)
    position_pooling="features" / "scores"              release / ours (README demo section)
    PyTorch default initialisation                      release
    any stored C×H×W map, P = num_positions, frozen     ours (the release: VGG19-BN pyramid,
      backbone                                            49 positions, trained end to end)
    input_pool = 2 on conv5_4 14×14 maps: P = 49        release (its pyramid ends at pool5,
                                                          7×7 at 224 px); configs nus_wide,
                                                          open_images
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._base import MLZSLModel
from mlzsl.models._layers import (
    ChannelCorrelationAttention,
    GroupAttention,
    MixerBlock,
    best_vector_scores,
    channel_shuffle_index,
)

__all__ = ["ML2PEncoder"]

POSITION_POOLING = ("features", "scores")


@register_model("ml2p")
class ML2PEncoder(MLZSLModel):
    """(ML)²P-Encoder head over a C×H×W feature map; scores any set of label vectors.

    Args:
        num_positions: H·W of the stored feature map; the encoder runs on the
            P = num_positions / input_pool² positions after the input pooling.
        input_pool: max-pool the stored map k×k, stride k, before the encoder (1: off). 2 on
            VGG19 conv5_4 (14×14) is exactly VGG19's pool5, the released tap: P = 49. H and W
            must be multiples of k.
        groups: G, channel groups (7 released).
        num_blocks: mixer blocks, each shared by all groups (1 released).
        token_reduction: token-MLP hidden size is ``max(1, P // token_reduction)`` (5 released).
        channel_reduction: channel-MLP hidden size is ``max(1, E // channel_reduction)``
            (5 released).
        attention_residual: add the input to the channel attention output (poster; off released).
        interleave_groups: read the G scoring vectors with the released stride-G interleave.
        normalize_labels: L2-normalise label vectors before scoring (ours; see docs/models.md).
        position_pooling: ``"features"`` (released) max-pools the mixer output over positions
            before the sigmoid and group attention, giving G scoring vectors; ``"scores"`` (ours)
            keeps every position, runs sigmoid and group attention per position and lets the
            score's max run over positions and groups (P·G scoring vectors).
        group_attention_scale: multiply the group attention's affinity q kᵀ by 1/√E (ours; off
            as released). Unscaled, one Adam step moves q kᵀ by an amount ∝ E, so at E = 300 or
            384 the first steps blow it up and the head stops learning (docs/models.md, ml2p,
            "Large E"); use it with a smaller learning rate (configs/scenes_e300/ml2p.yaml).
    """

    shuffle: Tensor  # [G·E] buffer: the channel shuffle as a gather of the projection's rows

    def __init__(
        self,
        *,
        in_channels: int,
        embed_dim: int,
        num_positions: int = 49,
        input_pool: int = 1,
        groups: int = 7,
        num_blocks: int = 1,
        token_reduction: int = 5,
        channel_reduction: int = 5,
        attention_residual: bool = False,
        interleave_groups: bool = True,
        normalize_labels: bool = True,
        position_pooling: str = "features",
        group_attention_scale: bool = False,
    ) -> None:
        super().__init__()
        self.check_choice("position_pooling", position_pooling, POSITION_POOLING)
        self.check_positive(
            num_positions=num_positions,
            input_pool=input_pool,
            groups=groups,
            num_blocks=num_blocks,
            token_reduction=token_reduction,
            channel_reduction=channel_reduction,
        )
        if num_positions % input_pool**2:
            raise ConfigError(
                f"ml2p: num_positions={num_positions} (H·W) is not a multiple of "
                f"input_pool²={input_pool**2}; H and W must be multiples of input_pool"
            )
        self.num_positions, self.input_pool, self.groups = num_positions, input_pool, groups
        positions = num_positions // input_pool**2  # P, what the encoder sees
        self.position_pooling = position_pooling
        self.interleave_groups, self.normalize_labels = interleave_groups, normalize_labels
        self.embed = nn.Conv2d(in_channels, groups * embed_dim, kernel_size=1)
        # the channel shuffle as a gather of the embedding's output rows (not in state dicts)
        shuffle = channel_shuffle_index(groups * embed_dim, groups)
        self.register_buffer("shuffle", shuffle, persistent=False)
        self.channel_attention = ChannelCorrelationAttention(
            groups=groups, embed_dim=embed_dim, residual=attention_residual
        )
        self.mixer = nn.Sequential(
            *(
                MixerBlock(
                    num_positions=positions,
                    embed_dim=embed_dim,
                    token_hidden=max(1, positions // token_reduction),
                    channel_hidden=max(1, embed_dim // channel_reduction),
                )
                for _ in range(num_blocks)
            )
        )
        self.group_attention = GroupAttention(embed_dim=embed_dim, scale=group_attention_scale)

    def check_features(self, features: Tensor) -> None:
        """Raise :class:`ConfigError` unless ``features`` is [B, C, H, W] with H·W = P_stored.

        P_stored is ``num_positions``; H and W must also be multiples of ``input_pool``.
        """
        k = self.input_pool
        if (
            features.ndim != 4
            or features.shape[1] != self.in_channels
            or features.shape[2] * features.shape[3] != self.num_positions
            or features.shape[2] % k
            or features.shape[3] % k
        ):
            pooled = f", H and W multiples of input_pool={k}" if k > 1 else ""
            raise ConfigError(
                f"ml2p was built for feature maps of {self.in_channels} channels and "
                f"num_positions={self.num_positions} (H·W{pooled}); got features of shape "
                f"{tuple(features.shape)}"
            )

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """The G scoring vectors of each image.

        Args:
            features: [B, C, H, W] with H·W = ``num_positions``.

        Returns:
            [B, K, E] scoring vectors, K = G (``position_pooling="features"``) or P·G
            (``"scores"``); a label's score is the max over K of the dot product with its vector.
        """
        self.check_features(features)
        b = features.shape[0]
        # channels-last, so the 1×1 convs are GEMMs over [B·P, C] (see attention_map); it also
        # makes the max-pool ~4× faster than on NCHW
        x = features.contiguous(memory_format=torch.channels_last)  # [B, C, H, W]
        if self.input_pool > 1:  # VGG19's pool5 on conv5_4 at k = 2
            x = F.max_pool2d(x, self.input_pool)  # [B, C, H/k, W/k]
        bias = None if self.embed.bias is None else self.embed.bias[self.shuffle]
        x = F.conv2d(x, self.embed.weight[self.shuffle], bias)  # embed + shuffle: [B, G·E, H, W]
        x = self.channel_attention.forward_positions(x)  # [B, G, P, E]
        x = self.mixer(x)  # [B, G, P, E]
        if self.position_pooling == "features":
            x = torch.sigmoid(x.amax(dim=2))[:, None]  # [B, 1, G, E], as released
        else:
            x = torch.sigmoid(x).transpose(1, 2)  # [B, P, G, E]: every position kept
        x = self.group_attention(x)  # [B, K', G, E]: G×G attention per pooled map or position
        if self.interleave_groups:  # numpy's out.reshape(E, G).T on each (G, E) block, as released
            x = x.reshape(b, -1, self.embed_dim, self.groups).transpose(-1, -2)  # [B, K', G, E]
        return x.reshape(b, -1, self.embed_dim)  # [B, K'·G, E]

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L] from scoring vectors [B, K, E] and label vectors [L, E]."""
        self.check_labels(label_vectors)
        return best_vector_scores(embeddings, label_vectors, normalize=self.normalize_labels)
