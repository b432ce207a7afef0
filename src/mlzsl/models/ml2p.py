"""(ML)²P-Encoder over a backbone feature map.

Paper: Z. Liu, S. Guo, X. Lu, J. Guo, J. Zhang, Y. Zeng, F. Huo, "(ML)²P-Encoder: On Exploration of
Channel-Class Correlation for Multi-Label Zero-Shot Learning", CVPR 2023. Official release (test
code only, no weights): github.com/simonzmliu/cvpr23_mlzsl, files ``models/Channel_MLZSL.py``,
``models/MLP_Channel.py``, ``models/Group_Attention.py``, ``test_nuswide.py``.

Pipeline, shapes with B batch, C channels, P = H·W positions, G groups, E label-vector size::

    features [B, C, H, W]
      1×1 conv C -> G·E (plain conv with bias, no BN/ReLU)          [B, G·E, H, W]   release
      channel shuffle (G, E) -> (E, G)                               [B, G·E, H, W]   release
      channel-correlation attention, heads = groups                  [B, G, E, P]     release
      mixer block(s), shared by all groups                           [B, G, P, E]     release
      max over the P positions, then sigmoid                         [B, G, E]        release
      group-wise attention (q kᵀ) v, G×G affinity                    [B, G, E]        release
      G scoring vectors (released stride-G interleave)               [B, G, E]        release
    score of label c = max over the G vectors of ⟨vector, v_c⟩        [B, L]           release

Every choice and its source ("release" = read from the official code, "paper" = the CVPR text,
"ours" = not fixed by either):

1. Projection: one 1×1 conv C -> G·E with bias, no normalisation or activation
   (release: ``conv_embedding``).
2. Channel shuffle: view (B, G, E, H, W), swap to (B, E, G, H, W), flatten (release). Because the
   next qkv conv is dense, the shuffle is a fixed permutation of its input channels and changes
   nothing by itself; it matters only for the optional residual below. Kept for fidelity.
3. Channel-correlation attention (release ``Attention``, Restormer-style transposed attention):
   1×1 conv G·E -> 3·G·E, then a depth-wise 3×3 conv (padding 1), both with bias; split into
   q, k, v, each viewed (B, G, E, P) with the head index outermost; q and k L2-normalised along the
   P positions, so q kᵀ is a cosine similarity in [-1, 1] and the per-group temperature τ_g
   (learnable, init 1) alone sets the sharpness; R = softmax over the last axis of q kᵀ·τ_g (E×E);
   output R v. The release also builds a ``project_out`` 1×1 conv it never calls; it is omitted
   here. ``attention_residual`` adds the shuffled input back (F + Att, the poster's equation);
   off by default, as released.
4. Mixer block (release ``MixerBlock``), applied to (B, G, P, E), weights shared by the G groups:
   token mixing x + T(LN(x)), T = Linear P -> P//r_t, GELU, Linear back, applied along P;
   channel mixing x + M(LN(x)), M = Linear E -> E//r_c, GELU, Linear back. Both LayerNorms are
   over E (release: ``nn.LayerNorm(hidden_dim)`` with hidden_dim = 300 for both). The release uses
   one reduction ratio 5 for both (49//5 = 9, 300//5 = 60); here ``token_reduction`` and
   ``channel_reduction`` (defaults 5, hidden size ``max(1, n // r)``). The release passes
   ``num_block=3`` but builds a single block; ``num_blocks`` (default 1) stacks blocks with
   separate weights.
5. Pooling: max over positions (release ``AdaptiveMaxPool2d((300, 1))`` with ``pool_types=['max']``)
   then sigmoid (release). The sigmoid keeps each group vector in (0, 1)^E, which bounds the
   cubic group attention that follows.
6. Group-wise attention (release ``Group_Attention``): q = MLP_q(x), k = MLP_k(x) with
   MLP = Linear E -> E, GELU, Linear E -> E; v = x; out = (q kᵀ) v. The G×G affinity has no
   softmax, no scaling and no residual (release; DESIGN §5).
7. Scoring vectors: the released test code reads its G vectors as ``out.reshape(300, G).T``, i.e.
   vector j holds entries j, j+G, j+2G, ... of the flattened (G, E) output, mixing all groups.
   ``interleave_groups=True`` (default) reproduces this; ``False`` scores the G group outputs
   themselves, as the paper's text describes.
8. Score: max over the G vectors of the dot product with the label vector; no learned projection
   of label vectors (release). ``normalize_labels`` (default ``True``, ours) L2-normalises the label
   vectors first. The release scores raw GloVe for ZSL and normalised GloVe for GZSL; our engine
   passes one set of vectors for both, and we pick normalised: a label's norm then cannot buy it a
   place in an image's top K. Per-label AP (mAP) is unchanged by this choice whenever a label's
   scores are positive: scaling a label's vector by a positive number commutes with the max.

9. ``position_pooling`` (ours; default ``"features"``, the release): ``"scores"`` moves the max
   over positions from the features to the scores: sigmoid and group attention run on every
   position's (G, E) block, and a label's score is the max over positions *and* groups. On the
   compositional scenes data (labels are colour + shape pairs) this keeps colour and shape of the
   same object together, which the release's per-channel max over positions pulls apart; see the
   README's demo section for the measured difference.

Numerics at initialisation (PyTorch default inits, kept as released): with τ_g = 1 the logits
q kᵀ·τ are cosines in [-1, 1], so each row of R is close to uniform over E and R v starts near the
channel mean of v; the mixer's LayerNorm then rescales the small differences that remain, and
the sigmoid keeps the group vectors in (0, 1). Scores at init are therefore finite and differ across
images and labels, but mostly across labels (at C=1280, E=50, P=25 with ReLU'd Gaussian features,
score std ≈ 0.3 across labels and ≈ 0.02 across images); training sharpens τ and the projections.
``attention_residual=True`` bypasses the initial averaging and trained faster in a synthetic check.

Feature-map variant versus the released image model:

* no VGG19-BN pyramid front-end (pool3/pool4/pool5 taps, each 1×1 conv + BN + ReLU, concatenated
  to 2048×7×7); the model reads any stored C×H×W map (VGG19 conv5_4 512×14×14 as in LESA/BiAM,
  EfficientNet-Lite0 1280×7×7 for the offline demo) and the 1×1 projection starts from C;
* P = the store's H·W (``num_positions``) instead of 49; the token-mixing MLP is sized from it;
* the backbone is frozen (features are read from the store), where the release trains end-to-end.

Parameter count at the released sizes (C = 2048, E = 300, G = 7, P = 49)::

    1×1 projection        2048·2100 + 2100         =  4,302,900
    qkv 1×1 conv          2100·6300 + 6300         = 13,236,300
    depth-wise 3×3 conv   6300·9 + 6300            =     63,000
    temperatures          7                        =          7
    mixer: 2 LayerNorms   2·2·300                  =      1,200
           token MLP      49·9 + 9 + 9·49 + 49     =        940
           channel MLP    300·60 + 60 + 60·300 + 300 =   36,360
    group attention       2·2·(300·300 + 300)      =    361,200
    total                                           = 18,001,907

The paper's "about 18.9 M" head also holds the pyramid transforms, 921,600 parameters (1×1 convs
without bias plus BN: 256·512 + 2·512, 512·512 + 2·512, 512·1024 + 2·1024), which gives
18,923,507 ≈ 18.9 M; the unused ``project_out`` (4,412,100) is evidently not counted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._checks import check_labels

__all__ = ["ML2PEncoder", "ml2p"]

POSITION_POOLING = ("features", "scores")


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise ConfigError(f"ml2p: {key} must be a positive integer, got {value}")


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet channel shuffle: channel g·n + e moves to e·groups + g.

    Args:
        x: [B, groups·n, H, W].
    """
    b, c, h, w = x.shape
    x = x.reshape(b, groups, c // groups, h, w)  # [B, G, n, H, W]
    return x.transpose(1, 2).reshape(b, c, h, w)  # [B, n·G, H, W]


class _Mlp(nn.Sequential):
    """Linear dim -> hidden, GELU, Linear hidden -> dim (the release's ``MlpBlock``)."""

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
        self.mlp_token = _Mlp(num_positions, token_hidden)
        self.norm_channel = nn.LayerNorm(embed_dim)
        self.mlp_channel = _Mlp(embed_dim, channel_hidden)

    def forward(self, x: Tensor) -> Tensor:
        """Map [B, G, P, E] to [B, G, P, E]."""
        y = self.norm_token(x).transpose(-1, -2)  # [B, G, E, P]
        x = x + self.mlp_token(y).transpose(-1, -2)  # [B, G, P, E]
        return x + self.mlp_channel(self.norm_channel(x))  # [B, G, P, E]


class GroupAttention(nn.Module):
    """Group-wise attention out = (q kᵀ) v over the G group vectors; no softmax, no scaling."""

    def __init__(self, *, embed_dim: int) -> None:
        super().__init__()
        self.query = _Mlp(embed_dim, embed_dim)
        self.key = _Mlp(embed_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Map [B, G, E] to [B, G, E]."""
        affinity = self.query(x) @ self.key(x).transpose(-2, -1)  # [B, G, G]
        return affinity @ x  # [B, G, E]


class ML2PEncoder(nn.Module):
    """(ML)²P-Encoder head over a C×H×W feature map; scores any set of label vectors.

    Args:
        in_channels: C, channels of the feature map.
        embed_dim: E, the label-vector size.
        num_positions: P = H·W of the feature map (49 for the released 7×7).
        groups: G, channel groups (7 released).
        num_blocks: mixer blocks, each shared by all groups (1 released).
        token_reduction: token-MLP hidden size is ``max(1, P // token_reduction)`` (5 released).
        channel_reduction: channel-MLP hidden size is ``max(1, E // channel_reduction)``
            (5 released).
        attention_residual: add the input to the channel attention output (poster; off released).
        interleave_groups: read the G scoring vectors with the released stride-G interleave.
        normalize_labels: L2-normalise label vectors before scoring (ours; see module docstring).
        position_pooling: ``"features"`` (released) max-pools the mixer output over positions
            before the sigmoid and group attention, giving G scoring vectors; ``"scores"`` (ours)
            keeps every position, runs sigmoid and group attention per position and lets the
            score's max run over positions and groups (P·G scoring vectors).
    """

    model_name = "ml2p"

    def __init__(
        self,
        *,
        in_channels: int,
        embed_dim: int,
        num_positions: int = 49,
        groups: int = 7,
        num_blocks: int = 1,
        token_reduction: int = 5,
        channel_reduction: int = 5,
        attention_residual: bool = False,
        interleave_groups: bool = True,
        normalize_labels: bool = True,
        position_pooling: str = "features",
    ) -> None:
        super().__init__()
        if position_pooling not in POSITION_POOLING:
            raise ConfigError(
                f"ml2p: position_pooling must be one of {POSITION_POOLING}, "
                f"got {position_pooling!r}"
            )
        _check_positive(
            in_channels=in_channels,
            embed_dim=embed_dim,
            num_positions=num_positions,
            groups=groups,
            num_blocks=num_blocks,
            token_reduction=token_reduction,
            channel_reduction=channel_reduction,
        )
        self.config: dict[str, int | bool | str] = dict(
            in_channels=in_channels,
            embed_dim=embed_dim,
            num_positions=num_positions,
            groups=groups,
            num_blocks=num_blocks,
            token_reduction=token_reduction,
            channel_reduction=channel_reduction,
            attention_residual=attention_residual,
            interleave_groups=interleave_groups,
            normalize_labels=normalize_labels,
            position_pooling=position_pooling,
        )
        self.position_pooling = position_pooling
        self.in_channels, self.embed_dim, self.num_positions = in_channels, embed_dim, num_positions
        self.groups = groups
        self.interleave_groups, self.normalize_labels = interleave_groups, normalize_labels
        self.embed = nn.Conv2d(in_channels, groups * embed_dim, kernel_size=1)
        self.channel_attention = ChannelCorrelationAttention(
            groups=groups, embed_dim=embed_dim, residual=attention_residual
        )
        self.mixer = nn.Sequential(
            *(
                MixerBlock(
                    num_positions=num_positions,
                    embed_dim=embed_dim,
                    token_hidden=max(1, num_positions // token_reduction),
                    channel_hidden=max(1, embed_dim // channel_reduction),
                )
                for _ in range(num_blocks)
            )
        )
        self.group_attention = GroupAttention(embed_dim=embed_dim)

    def _check_features(self, features: Tensor) -> None:
        if (
            features.ndim != 4
            or features.shape[1] != self.in_channels
            or features.shape[2] * features.shape[3] != self.num_positions
        ):
            raise ConfigError(
                f"ml2p was built for feature maps of {self.in_channels} channels and "
                f"num_positions={self.num_positions} (H·W); got features of shape "
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
        self._check_features(features)
        b = features.shape[0]
        x = self.embed(features)  # [B, G·E, H, W]
        x = channel_shuffle(x, self.groups)  # [B, G·E, H, W]
        x = self.channel_attention(x)  # [B, G, E, P]
        x = self.mixer(x.transpose(-1, -2))  # [B, G, P, E]
        if self.position_pooling == "features":
            x = torch.sigmoid(x.amax(dim=2))[:, None]  # [B, 1, G, E], as released
        else:
            x = torch.sigmoid(x).transpose(1, 2)  # [B, P, G, E]: every position kept
        x = self.group_attention(x)  # [B, K', G, E]: G×G attention per pooled map or position
        if self.interleave_groups:  # numpy's out.reshape(E, G).T on each (G, E) block, as released
            x = x.reshape(b, -1, self.embed_dim, self.groups).transpose(-1, -2)  # [B, K', G, E]
        return x.reshape(b, -1, self.embed_dim)  # [B, K'·G, E]

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L] from scoring vectors [B, G, E] and label vectors [L, E]."""
        check_labels("ml2p", self.embed_dim, label_vectors)
        if self.normalize_labels:
            label_vectors = F.normalize(label_vectors, dim=-1)  # [L, E]
        dots = torch.einsum("bge,le->bgl", embeddings, label_vectors)  # [B, G, L]
        return dots.amax(dim=1)  # [B, L]

    def forward(self, features: Tensor, label_vectors: Tensor) -> Tensor:
        """Score every label for every image.

        Args:
            features: [B, C, H, W] feature maps.
            label_vectors: [L, E] label vectors (GloVe or a text encoder).

        Returns:
            [B, L] scores; higher ranks a label higher.
        """
        return self.score(self.forward_embeddings(features), label_vectors)


@register_model("ml2p")
def ml2p(
    *,
    in_channels: int,
    embed_dim: int,
    num_positions: int = 49,
    groups: int = 7,
    num_blocks: int = 1,
    token_reduction: int = 5,
    channel_reduction: int = 5,
    attention_residual: bool = False,
    interleave_groups: bool = True,
    normalize_labels: bool = True,
    position_pooling: str = "features",
) -> ML2PEncoder:
    """(ML)²P-Encoder (Liu et al., CVPR 2023) over a feature map; defaults are the release's."""
    return ML2PEncoder(
        in_channels=in_channels,
        embed_dim=embed_dim,
        num_positions=num_positions,
        groups=groups,
        num_blocks=num_blocks,
        token_reduction=token_reduction,
        channel_reduction=channel_reduction,
        attention_residual=attention_residual,
        interleave_groups=interleave_groups,
        normalize_labels=normalize_labels,
        position_pooling=position_pooling,
    )
