"""SDL: several principal embedding vectors per image, each label scored by its best one.

Paper: A. Ben-Cohen, N. Zamir, E. Ben-Baruch, I. Friedman, L. Zelnik-Manor, "Semantic Diversity
Learning for Zero-Shot Multi-label Classification", ICCV 2021 (arXiv 2105.05926); code
github.com/Alibaba-MIIL/ZS_SDL (``infer.py``, ``src/loss_functions/SDL_loss.py``; its training code
is unreleased), read for facts only.

SDL argues that one embedding vector per image (Fast0Tag's principal direction) cannot rank the
labels of a semantically diverse image, and maps each image to a matrix A ∈ R^{K×E} of K principal
embedding vectors. The score of label c is max_k ⟨A_k, v_c⟩, so each vector can specialise on
one semantic cluster of the image's labels.

Choices and their sources:

* K = ``num_vectors=7`` (the release's ``--num_rows`` default for its NUS-WIDE model).
* Head: SDL trains a TResNet-M end to end whose classifier outputs K·E values. Our stores hold a
  frozen conv map, so the image feature is the global average of the map, [B, C], followed by an
  MLP with one hidden ReLU layer (``hidden=1024``, the same head as ``fast0tag`` so the two peers
  differ only in K) and a linear layer to K·E; ``hidden=0`` gives a single linear layer, the form
  of TResNet's own head on its pooled features.
* Layout: the K·E outputs are read as an [E, K] matrix, vector k = outputs[k::K] (the release's
  ``view(B, E, K)`` and ``reshape(E, K)``), so a head exported from the release maps one to one.
* **Regulariser** (``extra_loss``): the release's matrix-variance term, for each image the L1
  norm over the E dimensions of the variance across the K vectors, Σ_e Var_k(A[k, e]) (unbiased
  variance, as ``torch.var``), averaged over the batch. It *penalises* spread: the paper uses it to
  keep the principal vectors' diversity under control so the model generalises to unseen labels.
  The release mixes it as 2·((1 − λ)·L_rank + λ·L_reg) with λ = 0.3; our trainer adds
  ``extra_loss`` to its main loss unweighted, so ``variance_weight`` (default 0.3, the paper's λ)
  multiplies L_reg alone; λ/(1 − λ) ≈ 0.43 reproduces the release's ratio of the two terms.
  ``variance_weight=0`` turns it off; with K = 1 there is no variance and no term.
* Not here: SDL's main loss (a softplus pairwise loss, log(1 + exp(s_n − s_p)) / #positives, with
  unannotated labels counted as negatives) and its *semantic diversity weight*, which up-weights
  each image's loss by 1 + Σ_e Var(word vectors of its positive labels). Both need the targets and
  label vectors, so they belong in :mod:`mlzsl.losses`, not in the model; the trainer's ranking
  loss (:func:`mlzsl.losses.ranking_loss`) is used as for the other peers.
* Size with the defaults: 2.68 M parameters at C=512, E=300; 1.67 M at C=1280, E=50.
* ``normalize_labels`` (default ``True``) L2-normalises label vectors before scoring, as ``ml2p``
  and ``fast0tag`` do, so the peers are compared on identical inputs.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._checks import check_inputs, check_labels

__all__ = ["SDL", "sdl"]


class SDL(nn.Module):
    """Global-average-pooled features -> MLP -> K principal embedding vectors A ∈ R^{K×E}.

    Args:
        in_channels: C, channels of the feature map.
        embed_dim: E, the label-vector size.
        num_vectors: K, principal embedding vectors per image.
        hidden: width of the single hidden ReLU layer; 0 for a linear head.
        dropout: dropout probability after the hidden activation.
        variance_weight: weight of the matrix-variance regulariser returned by :meth:`extra_loss`.
        normalize_labels: L2-normalise label vectors before scoring.
    """

    model_name = "sdl"

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
        if min(in_channels, embed_dim, num_vectors) < 1 or hidden < 0:
            raise ConfigError(
                "sdl: in_channels, embed_dim and num_vectors must be positive and hidden "
                f"non-negative, got in_channels={in_channels}, embed_dim={embed_dim}, "
                f"num_vectors={num_vectors}, hidden={hidden}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"sdl: dropout must be in [0, 1), got {dropout}")
        if variance_weight < 0:
            raise ConfigError(f"sdl: variance_weight must be non-negative, got {variance_weight}")
        self.config: dict[str, int | float | bool] = dict(
            in_channels=in_channels,
            embed_dim=embed_dim,
            num_vectors=num_vectors,
            hidden=hidden,
            dropout=float(dropout),
            variance_weight=float(variance_weight),
            normalize_labels=normalize_labels,
        )
        self.in_channels, self.embed_dim, self.num_vectors = in_channels, embed_dim, num_vectors
        self.variance_weight, self.normalize_labels = float(variance_weight), normalize_labels
        out = num_vectors * embed_dim
        if hidden == 0:
            self.head: nn.Module = nn.Linear(in_channels, out)
        else:
            self.head = nn.Sequential(
                nn.Linear(in_channels, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, out),
            )
        self._last: Tensor | None = None  # A of the last training forward, for extra_loss

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """The principal embedding vectors: [B, C, H, W] -> A [B, K, E]."""
        check_inputs("sdl", self.in_channels, features)
        flat = self.head(features.mean(dim=(2, 3)))  # [B, K·E]
        vectors = flat.view(-1, self.embed_dim, self.num_vectors).transpose(1, 2)  # [B, K, E]
        self._last = vectors if self.training else None
        return vectors

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L] = max_k ⟨A_k, v_c⟩ from A [B, K, E] and label vectors [L, E]."""
        check_labels("sdl", self.embed_dim, label_vectors)
        if self.normalize_labels:
            label_vectors = F.normalize(label_vectors, dim=-1)  # [L, E]
        return (embeddings @ label_vectors.T).amax(dim=1)  # [B, K, L] -> [B, L]

    def forward(self, features: Tensor, label_vectors: Tensor) -> Tensor:
        """Score every label for every image.

        Args:
            features: [B, C, H, W] feature maps.
            label_vectors: [L, E] label vectors.

        Returns:
            [B, L] scores max_k ⟨A_k, v_c⟩.
        """
        return self.score(self.forward_embeddings(features), label_vectors)

    def extra_loss(self) -> Tensor | None:
        """``variance_weight`` · mean over images of Σ_e Var_k(A[k, e]), from the last forward.

        None in eval mode, with weight 0, with K = 1, or before any training forward.
        """
        if not self.training or self._last is None or self.variance_weight == 0:
            return None
        if self.num_vectors < 2:
            return None
        spread = self._last.var(dim=1).sum(dim=1)  # [B, K, E] -> [B, E] -> [B]
        return self.variance_weight * spread.mean()


@register_model("sdl")
def sdl(
    *,
    in_channels: int,
    embed_dim: int,
    num_vectors: int = 7,
    hidden: int = 1024,
    dropout: float = 0.0,
    variance_weight: float = 0.3,
    normalize_labels: bool = True,
) -> SDL:
    """SDL (Ben-Cohen et al., ICCV 2021) over a pooled feature map."""
    return SDL(
        in_channels=in_channels,
        embed_dim=embed_dim,
        num_vectors=num_vectors,
        hidden=hidden,
        dropout=dropout,
        variance_weight=variance_weight,
        normalize_labels=normalize_labels,
    )
