"""LabelEM (ALE): a bilinear compatibility between a pooled image feature and a label vector.

Papers: Z. Akata, F. Perronnin, Z. Harchaoui, C. Schmid, "Label-Embedding for Attribute-Based
Classification", CVPR 2013, and "Label-Embedding for Image Classification", TPAMI 2016 (ALE).
An image x with feature θ(x) and a label c with embedding φ(c) (a word vector here) have the
compatibility F(x, c) = θ(x)ᵀ W φ(c), W ∈ R^{C×E} learned; any label with a vector can be
scored. Reasons: docs/models.md (labelem).

Provenance (paper; ours: fixed by neither)::

    choice                                              source
    bilinear F(x, c) = θ(x)ᵀ W φ(c), no bias or hidden  paper
    θ(x): global average of the conv map                ours (the paper: Fisher vectors)
    W stored as ``compatibility.weight`` (W = weightᵀ)  ours; PyTorch's default init, ours
    L2-normalised φ(c) (normalize_labels)               paper normalises too; ours as a peer rule
    forward_embeddings = θ(x)ᵀW as one vector [B, 1, E] ours (the fast0tag convention)
    ranking loss in place of WSABIE (set by configs)    ours (as in the LESA/BiAM tables)
"""

from __future__ import annotations

from torch import Tensor, nn

from mlzsl.models import register_model
from mlzsl.models._base import MLZSLModel
from mlzsl.models._layers import direction_scores

__all__ = ["LabelEM"]


@register_model("labelem")
class LabelEM(MLZSLModel):
    """Bilinear compatibility θ(x)ᵀ W φ(c) over global-average-pooled features.

    Args:
        normalize_labels: L2-normalise label vectors before scoring.
    """

    def __init__(self, *, in_channels: int, embed_dim: int, normalize_labels: bool = True) -> None:
        super().__init__()
        self.normalize_labels = normalize_labels
        self.compatibility = nn.Linear(in_channels, embed_dim, bias=False)  # W = weight.T, C×E

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """θ(x)ᵀW for each image: [B, C, H, W] -> [B, 1, E]."""
        self.check_features(features)
        theta = features.mean(dim=(2, 3))  # [B, C]
        return self.compatibility(theta).unsqueeze(1)  # [B, 1, E]

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """F(x, c) [B, L] from θ(x)ᵀW [B, 1, E] and label vectors φ(c) [L, E]."""
        self.check_labels(label_vectors)
        return direction_scores(embeddings, label_vectors, normalize=self.normalize_labels)
