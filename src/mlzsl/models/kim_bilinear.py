"""Kim et al.: one bilinear attention per label over the image regions (LESA's baseline).

Papers: J.-H. Kim, J. Jun, B.-T. Zhang, "Bilinear Attention Networks", NeurIPS 2018 (BAN), the
low-rank bilinear attention; adapted to multi-label zero-shot learning as the "Kim et al."
baseline of D. Huynh, E. Elhamifar, "A Shared Multi-Attention Framework for Multi-Label
Zero-Shot Learning", CVPR 2020 (NUS-WIDE ZSL mAP 10.4, F1@3 25.8, F1@5 23.6; GZSL mAP 3.7,
F1@3 10.9, F1@5 13.2, as tabulated by (ML)²P, DESIGN §4).

Pipeline, shapes with B batch, C channels, P = H·W regions, L labels, E label-vector size,
K the rank of the bilinear attention::

    features [B, C, H, W] -> regions x_r                                [B, P, C]
    attention logit of region r for label c: pᵀ(ReLU(U x_r) ∘ ReLU(V v̂_c))  [B, L, P]
    softmax over the P regions, attended feature f_c = Σ_r α_cr x_r      [B, L, C]
    score of label c = ⟨f_c, W v̂_c⟩                                     [B, L]

What is adapted, and the source of each choice ("BAN", "LESA" = the CVPR 2020 paper's use of it
as a baseline, "ours"):

1. BAN attends between two sets (question words × image regions) and pools a joint feature for a
   VQA classifier. Here the "question" is a single label vector, so the bilinear attention map
   reduces to one attention distribution over regions per label (LESA: a label-specific
   attention, the opposite of its shared attentions). BAN's low-rank form is kept:
   ReLU projections U (C -> K) and V (E -> K) with bias, Hadamard product, then the vector p
   (BAN eq. for the attention logits); softmax over the regions (BAN).
2. BAN's multi-glimpse attention and residual learning of the joint feature are not used (ours:
   one attention per label is what LESA describes for this baseline).
3. Scoring: the attended feature of each label is compared with the label through the same
   compatibility as LESA, ⟨f_c, W v̂_c⟩ with W C×E, no bias (LESA's scoring for every baseline on
   the same features, so the rows of its table differ in the attention only).
4. Label vectors are L2-normalised (LESA's convention), for both the attention and the score.
5. Rank K = ``rank`` = 256 (ours: BAN uses 1,024 joint dimensions for VQA; a label's attention
   over 196 regions needs far fewer, and the [B, L, P, K] tensor this would otherwise imply is
   never formed: the logits are computed as (ReLU(U x) ∘ p) ReLU(V v̂)ᵀ).
6. No 2×2 conv front-end (ours: LESA's conv is part of LESA, not of this baseline); regions are
   the input map's positions.

Scoring is label-dependent before pooling, so :meth:`KimBilinear.forward_embeddings` returns the
regions [B, P, C] (the label-independent part) and :meth:`KimBilinear.score` does the attention.
Training (configs set it): ranking loss, as the other peers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.models import register_model
from mlzsl.models._checks import check_inputs, check_labels
from mlzsl.models.lesa import check_sizes, he_normal

__all__ = ["KimBilinear", "kim_bilinear"]


class KimBilinear(nn.Module):
    """Low-rank bilinear attention per label over regions, scored by ⟨f_c, W v̂_c⟩.

    Args:
        in_channels: C, channels of the feature map.
        embed_dim: E, the label-vector size.
        rank: K, the rank of the bilinear attention.
    """

    model_name = "kim_bilinear"

    def __init__(self, *, in_channels: int, embed_dim: int, rank: int = 256) -> None:
        super().__init__()
        check_sizes("kim_bilinear", in_channels, embed_dim, rank=rank)
        self.config: dict[str, int] = dict(in_channels=in_channels, embed_dim=embed_dim, rank=rank)
        self.in_channels, self.embed_dim = in_channels, embed_dim
        self.U = nn.Linear(in_channels, rank)
        self.V = nn.Linear(embed_dim, rank)
        self.p = nn.Parameter(torch.randn(rank) / math.sqrt(rank))
        self.W = nn.Linear(embed_dim, in_channels, bias=False)  # weight [C, E]
        he_normal(self.W.weight, in_channels)

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """The regions of each image: [B, C, H, W] -> [B, P, C]."""
        check_inputs("kim_bilinear", self.in_channels, features)
        return features.flatten(2).transpose(1, 2)  # [B, P, C]

    def attention_maps(self, regions: Tensor, label_vectors: Tensor) -> Tensor:
        """Attention weights [B, L, P] of each label over the regions [B, P, C] (sum 1 over P)."""
        unit = F.normalize(label_vectors, dim=1)  # [L, E]
        image = F.relu(self.U(regions)) * self.p  # [B, P, K]
        label = F.relu(self.V(unit))  # [L, K]
        logits = label @ image.transpose(1, 2)  # [B, L, P]
        return logits.softmax(dim=2)  # [B, L, P]

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L] from regions [B, P, C] and label vectors [L, E]."""
        check_labels("kim_bilinear", self.embed_dim, label_vectors)
        attention = self.attention_maps(embeddings, label_vectors)  # [B, L, P]
        attended = attention @ embeddings  # [B, L, C]
        classifiers = self.W(F.normalize(label_vectors, dim=1))  # [L, C]
        return (attended * classifiers).sum(dim=2)  # [B, L]

    def forward(self, features: Tensor, label_vectors: Tensor) -> Tensor:
        """Score every label for every image.

        Args:
            features: [B, C, H, W] feature maps.
            label_vectors: [L, E] label vectors (normalised here).

        Returns:
            [B, L] scores.
        """
        return self.score(self.forward_embeddings(features), label_vectors)


@register_model("kim_bilinear")
def kim_bilinear(*, in_channels: int, embed_dim: int, rank: int = 256) -> KimBilinear:
    """Kim et al. bilinear attention (NeurIPS 2018) as LESA's per-label attention baseline."""
    return KimBilinear(in_channels=in_channels, embed_dim=embed_dim, rank=rank)
