"""Attention per Cluster: LESA's ablation with one attention per cluster of label vectors.

Paper: D. Huynh, E. Elhamifar, "A Shared Multi-Attention Framework for Multi-Label Zero-Shot
Learning", CVPR 2020, ablation "Attention per Cluster". The release does not include the ablation;
trunk and scoring follow LESA's release (:mod:`mlzsl.models.lesa`). The label vectors are grouped
into K clusters, each owning one attention; a label, seen or unseen, uses its cluster's attention
instead of LESA's free selection. Reasons and published figures: docs/models.md
(attention_per_cluster).

Pipeline (B batch, C' conv channels, P = H·W regions, K clusters, L labels)::

    features [B, C, H, W]
      LESA trunk (2×2 conv + BN + ReLU, attention MLP) with T = K   [B, K, P] logits
      softmax over P, attended features                             [B, K, C']
    cluster of label c: k(c) = argmax_k cos(v_c, mu_k)               [L]
    score of label c = <f_k(c), W u_c>, u_c = v_c / ||v_c||          [B, L]

Provenance (paper: the ablation; release: LESA's code; ours: fixed by neither)::

    choice                                              source
    K = num_clusters = 10 (LESA's attention budget)     ours
    centres: a fixed codebook buffer, not per call      ours (scores never depend on other labels)
    codebook: spherical k-means on the first training   paper (clusters of the seen labels);
      call's labels, evenly spaced init, 10 steps         init and steps ours
    random unit centres before fitting                  ours
    hard argmax assignment, no gradient to centres      paper (fixed clusters)
    trunk, W C'×E, label normalisation                  release (LESA's)
    BN eps 1e-3, momentum 0.01; Glorot-uniform conv,    release (LESA's, issue 14); init="he",
      truncated-normal attention and W, biases drawn      bn_eps=1e-5, bn_momentum=0.1: ours
    span term on the K maps, lambda_span = 0.01         release (LESA's); other terms left out, ours
    training (ranking loss, RMSProp lr 1e-3, batch 32)  release (LESA's; set by configs)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._layers import SharedAttentionModel, span_regularizer

__all__ = ["AttentionPerCluster", "spherical_kmeans"]


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


@register_model("attention_per_cluster")
class AttentionPerCluster(SharedAttentionModel):
    """One attention per cluster of label vectors; a label uses its cluster's attended feature.

    Args:
        num_clusters: K, clusters (= attentions).
        conv_channels: C' after the 2×2 conv (``None``: C).
        use_conv: apply LESA's 2×2 conv + BN + ReLU front-end.
        kmeans_iterations: Lloyd steps when fitting the codebook.
        lambda_span: weight of LESA's span regulariser on the K attention maps.
        init: ``"release"`` (LESA's TF initialisers) or ``"he"`` (ours, before issue 14).
        bn_eps, bn_momentum: the conv's BatchNorm (LESA's release: 1e-3 and 0.01).
    """

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
        init: str = "release",
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        self.build_trunk("num_clusters")
        self.check_positive(kmeans_iterations=kmeans_iterations)
        self.check_non_negative(lambda_span=lambda_span)
        self.num_clusters, self.kmeans_iterations = num_clusters, kmeans_iterations
        self.lambda_span = lambda_span
        self.register_buffer("centres", F.normalize(torch.randn(num_clusters, embed_dim), dim=1))
        self.register_buffer("centres_fitted", torch.tensor(False))
        self._logits: Tensor | None = None

    @torch.no_grad()
    def fit_centres(self, label_vectors: Tensor) -> None:
        """Fit the codebook by spherical k-means on ``label_vectors`` [L, E], L >= K."""
        self.check_labels(label_vectors)
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

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """The K attended features of each image: [B, C, H, W] -> [B, K, C']."""
        attended, _, logits = self.attend(features)  # [B, K, C'], [B, P, C'], [B, K, P]
        self._logits = logits if self.training else None  # for extra_loss
        return attended

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L] = ⟨f_{k(c)}, W v̂_c⟩ from attended features [B, K, C'], vectors [L, E]."""
        self.check_labels(label_vectors)
        first_fit = self.training and not bool(self.centres_fitted)
        if first_fit and label_vectors.shape[0] >= self.num_clusters:
            self.fit_centres(label_vectors)
        classifiers = self.W(F.normalize(label_vectors, dim=1))  # [L, C']
        selected = embeddings[:, self.clusters(label_vectors)]  # [B, L, C']
        return (selected * classifiers).sum(dim=2)  # [B, L]

    def extra_loss(self, targets: Tensor) -> Tensor | None:
        """``lambda_span`` × LESA's span term of the last training forward, else ``None``.

        The targets are not used.
        """
        if not self.training or self._logits is None or self.lambda_span == 0:
            return None
        return self.lambda_span * span_regularizer(self._logits)
