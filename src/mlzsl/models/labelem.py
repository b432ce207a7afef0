"""LabelEM (ALE): a bilinear compatibility between a pooled image feature and a label vector.

Papers: Z. Akata, F. Perronnin, Z. Harchaoui, C. Schmid, "Label-Embedding for Attribute-Based
Classification", CVPR 2013, and "Label-Embedding for Image Classification", TPAMI 2016 (ALE,
Attribute Label Embedding). Each label c has an embedding φ(c) (attributes there, a word vector
here) and an image x a feature θ(x); their compatibility is the bilinear form

    F(x, c) = θ(x)ᵀ W φ(c),        W ∈ R^{C×E} learned,

and an image's labels are ranked by F. Any label with a vector can be scored (zero-shot). ALE
learns W with a WSABIE-style ranking objective; here the trainer's default
:func:`mlzsl.losses.ranking_loss` plays that role, as in the LESA/BiAM/(ML)²P comparisons where
LabelEM is a baseline row.

Choices:

* θ(x): the paper uses Fisher vectors of the whole image. Our stores hold conv maps, so θ(x) is the
  global average of the map over its H·W positions, [B, C] (ours; the same as ``fast0tag``).
* W: one C×E matrix, no bias, no hidden layer (paper: the model is bilinear). Stored as
  ``compatibility.weight`` of an ``nn.Linear(C, E, bias=False)``, i.e. W = ``weight.T``, with
  PyTorch's default initialisation (ours; the paper does not fix one that carries over).
* ``normalize_labels`` (default ``True``) L2-normalises φ(c) before scoring. ALE normalises its
  class embeddings too; here it is chiefly the convention of ``fast0tag`` and ``ml2p``, so the
  peers are compared on identical inputs.
* ``forward_embeddings`` returns θ(x)ᵀW as one scoring vector [B, 1, E] (the ``fast0tag``
  convention), so a tagger embeds images once and scores F(x, c) = ⟨θ(x)ᵀW, φ(c)⟩ for any labels.
"""

from __future__ import annotations

from torch import Tensor, nn

from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._checks import check_inputs, check_labels, direction_scores

__all__ = ["LabelEM", "labelem"]


class LabelEM(nn.Module):
    """Bilinear compatibility θ(x)ᵀ W φ(c) over global-average-pooled features.

    Args:
        in_channels: C, channels of the feature map.
        embed_dim: E, the label-vector size.
        normalize_labels: L2-normalise label vectors before scoring.
    """

    model_name = "labelem"

    def __init__(self, *, in_channels: int, embed_dim: int, normalize_labels: bool = True) -> None:
        super().__init__()
        if in_channels < 1 or embed_dim < 1:
            raise ConfigError(
                "labelem: in_channels and embed_dim must be positive, "
                f"got in_channels={in_channels}, embed_dim={embed_dim}"
            )
        self.config: dict[str, int | bool] = dict(
            in_channels=in_channels, embed_dim=embed_dim, normalize_labels=normalize_labels
        )
        self.in_channels, self.embed_dim = in_channels, embed_dim
        self.normalize_labels = normalize_labels
        self.compatibility = nn.Linear(in_channels, embed_dim, bias=False)  # W = weight.T, C×E

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """θ(x)ᵀW for each image: [B, C, H, W] -> [B, 1, E]."""
        check_inputs("labelem", self.in_channels, features)
        theta = features.mean(dim=(2, 3))  # [B, C]
        return self.compatibility(theta).unsqueeze(1)  # [B, 1, E]

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """F(x, c) [B, L] from θ(x)ᵀW [B, 1, E] and label vectors φ(c) [L, E]."""
        check_labels("labelem", self.embed_dim, label_vectors)
        return direction_scores(embeddings, label_vectors, normalize=self.normalize_labels)

    def forward(self, features: Tensor, label_vectors: Tensor) -> Tensor:
        """Score every label for every image.

        Args:
            features: [B, C, H, W] feature maps.
            label_vectors: [L, E] label vectors.

        Returns:
            [B, L] compatibilities θ(x)ᵀ W φ(c).
        """
        return self.score(self.forward_embeddings(features), label_vectors)


@register_model("labelem")
def labelem(*, in_channels: int, embed_dim: int, normalize_labels: bool = True) -> LabelEM:
    """LabelEM / ALE (Akata et al., CVPR 2013, TPAMI 2016) over a pooled feature map."""
    return LabelEM(in_channels=in_channels, embed_dim=embed_dim, normalize_labels=normalize_labels)
