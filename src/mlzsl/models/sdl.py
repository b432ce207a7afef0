"""SDL: several principal embedding vectors per image, each label scored by its best one.

Paper: A. Ben-Cohen, N. Zamir, E. Ben-Baruch, I. Friedman, L. Zelnik-Manor, "Semantic Diversity
Learning for Zero-Shot Multi-label Classification", ICCV 2021 (arXiv 2105.05926); release
github.com/Alibaba-MIIL/ZS_SDL (``infer.py``, ``src/loss_functions/SDL_loss.py``; training code
unreleased), read for facts only. Each image is mapped to K principal embedding vectors
A ∈ R^{K×E}; the score of label c is max_k <A_k, v_c>, so each vector can specialise on one
semantic cluster of the image's labels. Reasons, sizes and what is left out: docs/models.md (sdl).

Provenance (paper; release; ours: fixed by neither)::

    choice                                              source
    K = num_vectors = 7                                 release (``--num_rows``, NUS-WIDE)
    score max_k <A_k, v_c>                              paper, release
    head on the pooled map: one hidden ReLU layer       ours (as fast0tag; SDL trains a TResNet-M)
    hidden = 0: one linear layer                        release (TResNet's own head)
    vector k = outputs[k::K]                            release (``view(B, E, K)``)
    extra_loss: mean over images of sum_e Var_k A[k, e] release (matrix-variance term)
    variance_weight = 0.3, added to the main loss       paper's lambda; the release mixes
                                                          2((1 - lambda) L_rank + lambda L_reg)
    L2-normalised label vectors (normalize_labels)      ours (the ml2p / fast0tag convention)
    ranking loss, not SDL's softplus loss (configs)     ours
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mlzsl.models import register_model
from mlzsl.models._base import MLZSLModel
from mlzsl.models._layers import mlp_head

__all__ = ["SDL"]


@register_model("sdl")
class SDL(MLZSLModel):
    """Global-average-pooled features -> MLP -> K principal embedding vectors A ∈ R^{K×E}.

    Args:
        num_vectors: K, principal embedding vectors per image.
        hidden: width of the single hidden ReLU layer; 0 for a linear head.
        dropout: dropout probability after the hidden activation.
        variance_weight: weight of the matrix-variance regulariser returned by :meth:`extra_loss`.
        normalize_labels: L2-normalise label vectors before scoring.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        embed_dim: int,
        num_vectors: int = 7,
        hidden: int = 1024,
        dropout: float = 0.0,
        variance_weight: float = 0.3,
        normalize_labels: bool = True,
    ) -> None:
        super().__init__()
        self.check_positive(num_vectors=num_vectors)
        self.check_non_negative(hidden=hidden, variance_weight=variance_weight)
        self.check_probability(dropout=dropout)
        self.num_vectors, self.normalize_labels = num_vectors, normalize_labels
        self.variance_weight = float(variance_weight)
        self.head = mlp_head(in_channels, hidden, num_vectors * embed_dim, dropout)
        self._last: Tensor | None = None  # A of the last training forward, for extra_loss

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """The principal embedding vectors: [B, C, H, W] -> A [B, K, E]."""
        self.check_features(features)
        flat = self.head(features.mean(dim=(2, 3)))  # [B, K·E]
        vectors = flat.view(-1, self.embed_dim, self.num_vectors).transpose(1, 2)  # [B, K, E]
        self._last = vectors if self.training else None
        return vectors

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L] = max_k ⟨A_k, v_c⟩ from A [B, K, E] and label vectors [L, E]."""
        self.check_labels(label_vectors)
        if self.normalize_labels:
            label_vectors = F.normalize(label_vectors, dim=-1)  # [L, E]
        return (embeddings @ label_vectors.T).amax(dim=1)  # [B, K, L] -> [B, L]

    def extra_loss(self, targets: Tensor) -> Tensor | None:
        """``variance_weight`` · mean over images of Σ_e Var_k(A[k, e]), from the last forward.

        None in eval mode, with weight 0, with K = 1, or before any training forward. The
        targets are not used.
        """
        if not self.training or self._last is None or self.variance_weight == 0:
            return None
        if self.num_vectors < 2:
            return None
        spread = self._last.var(dim=1).sum(dim=1)  # [B, K, E] -> [B, E] -> [B]
        return self.variance_weight * spread.mean()
