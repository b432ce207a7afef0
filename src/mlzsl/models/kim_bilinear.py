"""Kim et al.: one bilinear attention per label over the image regions (LESA's baseline).

Papers: J.-H. Kim, J. Jun, B.-T. Zhang, "Bilinear Attention Networks", NeurIPS 2018 (BAN), the
low-rank bilinear attention; adapted to multi-label zero-shot learning as the "Kim et al."
baseline of D. Huynh, E. Elhamifar, "A Shared Multi-Attention Framework for Multi-Label
Zero-Shot Learning", CVPR 2020. Reasons and published figures: docs/models.md (kim_bilinear).

Pipeline (B batch, C channels, P = H·W regions, L labels, E label size, K rank)::

    features [B, C, H, W] -> regions x_r                                [B, P, C]
    attention logit of region r for label c: p^T(ReLU(U x_r) * ReLU(V u_c))   [B, L, P]
    softmax over the P regions, attended feature f_c = sum_r a_cr x_r    [B, L, C]
    score of label c = <f_c, W u_c>, u_c = v_c / ||v_c||                 [B, L]

Provenance (BAN; LESA: the CVPR 2020 paper's use of it as a baseline; ours)::

    choice                                              source
    one attention distribution over regions per label   LESA (label-specific attention)
    low-rank form: ReLU(U x) * ReLU(V u), then p        BAN (attention logits)
    U C->K and V E->K with bias; softmax over regions   BAN
    no multi-glimpse, no residual joint feature         ours (one attention per label, as LESA)
    score <f_c, W u_c>, W C×E, no bias                  LESA (its scoring for every baseline)
    L2-normalised label vectors                         LESA
    rank K = 256 (BAN: 1,024 for VQA)                   ours
    no 2×2 conv front-end: regions = map positions      ours
    training: ranking loss (set by configs)             LESA

Scoring is label-dependent before pooling, so :meth:`KimBilinear.forward_embeddings` returns the
regions [B, P, C] (the label-independent part) and :meth:`KimBilinear.score` does the attention;
the [B, L, P, K] tensor is never formed: logits are (ReLU(U x) * p) ReLU(V u)^T.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.models import register_model
from mlzsl.models._base import MLZSLModel
from mlzsl.models._layers import label_classifier

__all__ = ["KimBilinear"]


@register_model("kim_bilinear")
class KimBilinear(MLZSLModel):
    """Low-rank bilinear attention per label over regions, scored by ⟨f_c, W v̂_c⟩.

    Args:
        rank: K, the rank of the bilinear attention.
    """

    def __init__(self, *, in_channels: int, embed_dim: int, rank: int = 256) -> None:
        super().__init__()
        self.check_positive(rank=rank)
        self.U = nn.Linear(in_channels, rank)
        self.V = nn.Linear(embed_dim, rank)
        self.p = nn.Parameter(torch.randn(rank) / math.sqrt(rank))
        self.W = label_classifier(embed_dim, in_channels)  # weight [C, E]

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """The regions of each image: [B, C, H, W] -> [B, P, C]."""
        self.check_features(features)
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
        self.check_labels(label_vectors)
        attention = self.attention_maps(embeddings, label_vectors)  # [B, L, P]
        attended = attention @ embeddings  # [B, L, C]
        classifiers = self.W(F.normalize(label_vectors, dim=1))  # [L, C]
        return (attended * classifiers).sum(dim=2)  # [B, L]
