"""Fast0Tag: one principal direction per image, scored against label vectors.

Paper: Y. Zhang, B. Gong, M. Shah, "Fast Zero-Shot Image Tagging", CVPR 2016 (arXiv 1605.09759).
An image is mapped to its *principal direction* f(x) in word-vector space, along which its
relevant tags rank ahead of the others; a tag's score is <f(x), v_c>, so any tag with a vector can
be scored. Reasons and published figures: docs/models.md (fast0tag).

Provenance (paper; ours: fixed by neither)::

    choice                                              source
    score <f(x), v_c>                                   paper
    image feature: global average of the conv map       ours (the paper feeds VGG-19 fc7)
    f: one hidden ReLU layer, hidden = 1024             ours ("Fast0Tag (net.)"; widths not given)
    hidden = 0: a linear map                            paper ("Fast0Tag (lin.)")
    dropout on the hidden layer (default 0)             ours
    L2-normalised label vectors (normalize_labels)      ours (the ml2p convention)
    pairwise ranking loss (set by configs)              paper
"""

from __future__ import annotations

from torch import Tensor

from mlzsl.models import register_model
from mlzsl.models._base import MLZSLModel
from mlzsl.models._layers import direction_scores, mlp_head

__all__ = ["Fast0Tag"]


@register_model("fast0tag")
class Fast0Tag(MLZSLModel):
    """Global-average-pooled features -> MLP -> one principal direction f(x) ∈ R^E.

    Args:
        hidden: width of the single hidden ReLU layer; 0 for a linear map.
        dropout: dropout probability after the hidden activation.
        normalize_labels: L2-normalise label vectors before scoring.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        embed_dim: int,
        hidden: int = 1024,
        dropout: float = 0.0,
        normalize_labels: bool = True,
    ) -> None:
        super().__init__()
        self.check_non_negative(hidden=hidden)
        self.check_probability(dropout=dropout)
        self.normalize_labels = normalize_labels
        self.mapping = mlp_head(in_channels, hidden, embed_dim, dropout)

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """The principal direction of each image: [B, C, H, W] -> [B, 1, E]."""
        self.check_features(features)
        pooled = features.mean(dim=(2, 3))  # [B, C]
        return self.mapping(pooled).unsqueeze(1)  # [B, 1, E]

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L] = ⟨f(x), v_c⟩ from directions [B, 1, E] and label vectors [L, E]."""
        self.check_labels(label_vectors)
        return direction_scores(embeddings, label_vectors, normalize=self.normalize_labels)
