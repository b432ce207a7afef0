"""Attention per Cluster: LESA's ablation with one attention per cluster of label vectors.

Paper: D. Huynh, E. Elhamifar, "A Shared Multi-Attention Framework for Multi-Label Zero-Shot
Learning", CVPR 2020, ablation "Attention per Cluster" (NUS-WIDE ZSL mAP 12.9, F1@3 24.6,
F1@5 22.9; GZSL mAP 2.6, F1@3 6.4, F1@5 7.7, as tabulated by (ML)²P, DESIGN §4). The label
vectors are grouped into K clusters and each cluster owns one attention; a label, seen or unseen,
uses the attention of the cluster it falls in, instead of LESA's free selection among shared
attentions. The release does not include this ablation; the trunk and the scoring follow LESA's
release (see :mod:`mlzsl.models.lesa`).

Pipeline, shapes with B batch, C' conv channels, P = H·W regions, K clusters, L labels::

    features [B, C, H, W]
      LESA trunk (2×2 conv + BN + ReLU, attention MLP) with T = K   [B, K, P] logits
      softmax over P, attended features                             [B, K, C']
    cluster of label c: k(c) = argmax_k cos(v_c, μ_k)                [L]
    score of label c = ⟨f_{k(c)}, W v̂_c⟩                             [B, L]

Choices ("paper", "release" = LESA's, "ours"):

1. K = ``num_clusters`` = 10, the same number as LESA's shared attentions (ours: the paper
   compares the two at one attention budget; the ablation's K is not stated in what we read).
2. The cluster centres μ [K, E] are a *fixed codebook*, a buffer, not computed from the labels of
   each call: a label's cluster, hence its score, depends only on its own vector, so scores never
   depend on which other labels are scored (a subset scores as the slice of the full set, a
   permutation permutes the columns). Clustering the labels given at each call would make a
   label's score change with the label set.
3. The codebook is fitted once by spherical k-means on the L2-normalised label vectors of the
   first training forward (the seen labels, as the ablation clusters them; ours: deterministic,
   initialised from K evenly spaced labels, ``kmeans_iterations`` = 10 Lloyd steps, an empty
   cluster keeps its centre). :meth:`AttentionPerCluster.fit_centres` does the same explicitly.
   The fitted codebook is saved in the state dict (``centres``, ``centres_fitted``). Before
   fitting, or when the first training call has fewer than K labels, the codebook is K random unit
   vectors (seeded by the global RNG at build time). The assignment is a hard argmax, so centres
   are not learned by gradient (a learnable codebook would get no gradient through argmax); fitting
   them from the seen labels is what the ablation describes.
4. Trunk, W, label normalisation: as LESA (``conv_channels``, ``use_conv``, W C'×E, v̂ = v/||v||).
5. Regulariser: LESA's span term on the K attention maps (``lambda_span``, default 0.01 as LESA's
   release) through :meth:`AttentionPerCluster.extra_loss`. LESA's distribution term (spreading
   labels over attentions) has no meaning when the assignment is fixed, and the global term is
   left out (ours: not reported for the ablation).

Training as LESA (configs set it): ranking loss, RMSProp lr 1e-3, batch 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._checks import check_inputs, check_labels
from mlzsl.models.lesa import SharedAttention, check_sizes, he_normal, span_regularizer

__all__ = ["AttentionPerCluster", "attention_per_cluster", "spherical_kmeans"]


def spherical_kmeans(vectors: Tensor, num_clusters: int, iterations: int) -> Tensor:
    """Deterministic spherical k-means of unit vectors [L, E] (L >= K): centres [K, E], unit norm.

    Initialised from K evenly spaced rows; each step assigns every vector to its most similar
    centre (cosine) and moves each non-empty cluster's centre to its normalised mean.
    """
    first = torch.linspace(0, vectors.shape[0] - 1, num_clusters).round().long()  # [K]
    centres = vectors[first].clone()  # [K, E]
    for _ in range(iterations):
        assignment = (vectors @ centres.T).argmax(dim=1)  # [L]
        one_hot = F.one_hot(assignment, num_clusters).to(vectors.dtype)  # [L, K]
        sums = one_hot.T @ vectors  # [K, E]
        filled = one_hot.sum(dim=0) > 0  # [K]
        centres = torch.where(filled.unsqueeze(1), F.normalize(sums, dim=1), centres)  # [K, E]
    return centres


class AttentionPerCluster(nn.Module):
    """One attention per cluster of label vectors; a label uses its cluster's attended feature.

    Args:
        in_channels: C, channels of the feature map.
        embed_dim: E, the label-vector size.
        num_clusters: K, clusters (= attentions).
        conv_channels: C' after the 2×2 conv (``None``: C).
        use_conv: apply LESA's 2×2 conv + BN + ReLU front-end.
        kmeans_iterations: Lloyd steps when fitting the codebook.
        lambda_span: weight of LESA's span regulariser on the K attention maps.
    """

    model_name = "attention_per_cluster"
    centres: Tensor  # [K, E] buffer, unit rows
    centres_fitted: Tensor  # bool buffer: the codebook was fitted on label vectors

    def __init__(
        self,
        *,
        in_channels: int,
        embed_dim: int,
        num_clusters: int = 10,
        conv_channels: int | None = None,
        use_conv: bool = True,
        kmeans_iterations: int = 10,
        lambda_span: float = 0.01,
    ) -> None:
        super().__init__()
        check_sizes(
            "attention_per_cluster",
            in_channels,
            embed_dim,
            num_clusters=num_clusters,
            conv_channels=in_channels if conv_channels is None else conv_channels,
            kmeans_iterations=kmeans_iterations,
        )
        if lambda_span < 0:
            raise ConfigError(f"attention_per_cluster: lambda_span must be >= 0, got {lambda_span}")
        self.config: dict[str, int | float | bool | None] = dict(
            in_channels=in_channels,
            embed_dim=embed_dim,
            num_clusters=num_clusters,
            conv_channels=conv_channels,
            use_conv=use_conv,
            kmeans_iterations=kmeans_iterations,
            lambda_span=float(lambda_span),
        )
        self.in_channels, self.embed_dim, self.num_clusters = in_channels, embed_dim, num_clusters
        self.kmeans_iterations, self.lambda_span = kmeans_iterations, lambda_span
        self.attention = SharedAttention(
            in_channels=in_channels,
            conv_channels=conv_channels,
            num_attentions=num_clusters,
            use_conv=use_conv,
        )
        width = self.attention.out_channels
        self.W = nn.Linear(embed_dim, width, bias=False)  # weight [C', E]
        he_normal(self.W.weight, width)
        self.register_buffer("centres", F.normalize(torch.randn(num_clusters, embed_dim), dim=1))
        self.register_buffer("centres_fitted", torch.tensor(False))
        self._logits: Tensor | None = None

    @torch.no_grad()
    def fit_centres(self, label_vectors: Tensor) -> None:
        """Fit the codebook by spherical k-means on ``label_vectors`` [L, E], L >= K."""
        check_labels("attention_per_cluster", self.embed_dim, label_vectors)
        if label_vectors.shape[0] < self.num_clusters:
            raise ConfigError(
                f"attention_per_cluster: fitting {self.num_clusters} clusters needs at least as "
                f"many label vectors, got {label_vectors.shape[0]}"
            )
        unit = F.normalize(label_vectors.float(), dim=1)  # [L, E]
        centres = spherical_kmeans(unit, self.num_clusters, self.kmeans_iterations)  # [K, E]
        self.centres.copy_(centres)
        self.centres_fitted.fill_(True)

    def clusters(self, label_vectors: Tensor) -> Tensor:
        """The cluster index of each label [L, E] -> [L] (nearest centre by cosine)."""
        unit = F.normalize(label_vectors, dim=1)  # [L, E]
        return (unit @ self.centres.to(unit.dtype).T).argmax(dim=1)  # [L]

    def attention_maps(self, features: Tensor) -> Tensor:
        """Attention weights [B, K, P] of each image (each map sums to 1 over the P regions)."""
        check_inputs("attention_per_cluster", self.in_channels, features)
        return self.attention(features)[1].softmax(dim=2)  # [B, K, P]

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """The K attended features of each image: [B, C, H, W] -> [B, K, C']."""
        check_inputs("attention_per_cluster", self.in_channels, features)
        regions, logits = self.attention(features)  # [B, P, C'], [B, K, P]
        self._logits = logits if self.training else None  # for extra_loss
        return logits.softmax(dim=2) @ regions  # [B, K, C']

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L] = ⟨f_{k(c)}, W v̂_c⟩ from attended features [B, K, C'], vectors [L, E]."""
        check_labels("attention_per_cluster", self.embed_dim, label_vectors)
        first_fit = self.training and not bool(self.centres_fitted)
        if first_fit and label_vectors.shape[0] >= self.num_clusters:
            self.fit_centres(label_vectors)
        classifiers = self.W(F.normalize(label_vectors, dim=1))  # [L, C']
        selected = embeddings[:, self.clusters(label_vectors)]  # [B, L, C']
        return (selected * classifiers).sum(dim=2)  # [B, L]

    def forward(self, features: Tensor, label_vectors: Tensor) -> Tensor:
        """Score every label for every image.

        Args:
            features: [B, C, H, W] feature maps.
            label_vectors: [L, E] label vectors (normalised here).

        Returns:
            [B, L] scores.
        """
        return self.score(self.forward_embeddings(features), label_vectors)

    def extra_loss(self) -> Tensor | None:
        """``lambda_span`` × LESA's span term of the last training forward, else ``None``."""
        if not self.training or self._logits is None or self.lambda_span == 0:
            return None
        return self.lambda_span * span_regularizer(self._logits)


@register_model("attention_per_cluster")
def attention_per_cluster(
    *,
    in_channels: int,
    embed_dim: int,
    num_clusters: int = 10,
    conv_channels: int | None = None,
    use_conv: bool = True,
    kmeans_iterations: int = 10,
    lambda_span: float = 0.01,
) -> AttentionPerCluster:
    """LESA's "Attention per Cluster" ablation (Huynh & Elhamifar, CVPR 2020)."""
    return AttentionPerCluster(
        in_channels=in_channels,
        embed_dim=embed_dim,
        num_clusters=num_clusters,
        conv_channels=conv_channels,
        use_conv=use_conv,
        kmeans_iterations=kmeans_iterations,
        lambda_span=lambda_span,
    )
