"""Fast0Tag: one principal direction per image, scored against label vectors.

Paper: Y. Zhang, B. Gong, M. Shah, "Fast Zero-Shot Image Tagging", CVPR 2016 (arXiv 1605.09759).
The paper observes that, for an image, the word vectors of its relevant tags rank ahead of the
irrelevant ones along some direction of the word-vector space, its *principal direction*, and
learns a map f from the image to that direction; a tag's score is the inner product
⟨f(x), v_c⟩, so any tag with a word vector can be scored (zero-shot). It is trained with a
pairwise ranking loss (here :func:`mlzsl.losses.ranking_loss`, as in the LESA/BiAM/(ML)²P
comparisons, where Fast0Tag is a baseline row: NUS-WIDE ZSL mAP 15.1, GZSL 3.7).

Choices:

* Image feature: the paper feeds the 4,096-d VGG-19 fc7 vector. Our stores hold conv maps, so the
  image feature is the global average of the map over its H·W positions, [B, C].
* f: the paper studies a linear map ("Fast0Tag (lin.)") and a fully connected ReLU network
  ("Fast0Tag (net.)") on those fc7 features; its layer widths are not reproduced here, and public
  re-implementations differ (one uses C -> 8096 -> 2048 -> E with dropout 0.3). We use one hidden
  ReLU layer, ``hidden=1024`` by default (ours: wide enough for a 512- or 1280-channel map, small
  enough to train on a CPU); ``hidden=0`` gives the linear variant. Optional dropout on the hidden
  layer (``dropout``, default 0).
* ``normalize_labels`` (default ``True``) L2-normalises label vectors before scoring, the same
  convention as ``ml2p``, so the two are compared on identical inputs.
"""

from __future__ import annotations

from torch import Tensor, nn

from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._checks import check_inputs, check_labels, direction_scores

__all__ = ["Fast0Tag", "fast0tag"]


class Fast0Tag(nn.Module):
    """Global-average-pooled features -> MLP -> one principal direction f(x) ∈ R^E.

    Args:
        in_channels: C, channels of the feature map.
        embed_dim: E, the label-vector size.
        hidden: width of the single hidden ReLU layer; 0 for a linear map.
        dropout: dropout probability after the hidden activation.
        normalize_labels: L2-normalise label vectors before scoring.
    """

    model_name = "fast0tag"

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
        if in_channels < 1 or embed_dim < 1 or hidden < 0:
            raise ConfigError(
                "fast0tag: in_channels and embed_dim must be positive and hidden non-negative, "
                f"got in_channels={in_channels}, embed_dim={embed_dim}, hidden={hidden}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"fast0tag: dropout must be in [0, 1), got {dropout}")
        self.config: dict[str, int | float | bool] = dict(
            in_channels=in_channels,
            embed_dim=embed_dim,
            hidden=hidden,
            dropout=float(dropout),
            normalize_labels=normalize_labels,
        )
        self.in_channels, self.embed_dim, self.normalize_labels = (
            in_channels,
            embed_dim,
            normalize_labels,
        )
        if hidden == 0:
            self.mapping: nn.Module = nn.Linear(in_channels, embed_dim)
        else:
            self.mapping = nn.Sequential(
                nn.Linear(in_channels, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, embed_dim),
            )

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """The principal direction of each image: [B, C, H, W] -> [B, 1, E]."""
        check_inputs("fast0tag", self.in_channels, features)
        pooled = features.mean(dim=(2, 3))  # [B, C]
        return self.mapping(pooled).unsqueeze(1)  # [B, 1, E]

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L] = ⟨f(x), v_c⟩ from directions [B, 1, E] and label vectors [L, E]."""
        check_labels("fast0tag", self.embed_dim, label_vectors)
        return direction_scores(embeddings, label_vectors, normalize=self.normalize_labels)

    def forward(self, features: Tensor, label_vectors: Tensor) -> Tensor:
        """Score every label for every image.

        Args:
            features: [B, C, H, W] feature maps.
            label_vectors: [L, E] label vectors.

        Returns:
            [B, L] scores ⟨f(x), v_c⟩.
        """
        return self.score(self.forward_embeddings(features), label_vectors)


@register_model("fast0tag")
def fast0tag(
    *,
    in_channels: int,
    embed_dim: int,
    hidden: int = 1024,
    dropout: float = 0.0,
    normalize_labels: bool = True,
) -> Fast0Tag:
    """Fast0Tag (Zhang, Gong, Shah, CVPR 2016) over a pooled feature map."""
    return Fast0Tag(
        in_channels=in_channels,
        embed_dim=embed_dim,
        hidden=hidden,
        dropout=dropout,
        normalize_labels=normalize_labels,
    )
