"""CONSE: an image's semantic embedding is a convex combination of its top-T label vectors.

Paper: M. Norouzi, T. Mikolov, S. Bengio, Y. Singer, J. Shlens, A. Frome, G. S. Corrado, J. Dean,
"Zero-Shot Learning by Convex Combination of Semantic Embeddings", ICLR 2014 (arXiv 1312.5650).
A classifier over the seen labels gives p(y | x); the image is placed in word-vector space at

    f(x) = (1 / Z) Σ_{t=1..T} p(y_t | x) s(y_t),      Z = Σ_{t=1..T} p(y_t | x),

y_1..y_T the T most probable seen labels, s(y) a label's vector; any label is then scored by
cos(f(x), s(c)). Why each difference, the collapse without the classifier loss and the caveats of
each ``combine_over`` mode: docs/models.md (conse).

Provenance (paper; ours: fixed by neither)::

    choice                                              source
    f(x) = top-T convex combination; cosine score       paper
    classifier: compatibility q(x) · v̂_c, q = Wθ + b,   ours (the paper: a fixed ImageNet
      θ(x) the pooled map, softmax over given labels      softmax classifier; ours has no
                                                          fixed output layer)
    classifier's own cross-entropy (extra_loss), the    paper (its classifier loss), in its
      positives spread evenly, classifier_weight = 1      multi-label form: ours
    cosine scores also train W through the top-T        ours
    combine_over="seen": combine over the labels of     paper (combine seen labels); the
      the last train-mode forward (buffer)                buffer, ours
    combine_over="given": combine over those passed     ours (breaks "subset equals slicing")
    untrained, eval mode: cos(q(x), v_c)                ours
    T = top_t = 10                                      paper (CONSE(10))
    L2-normalised label vectors (normalize_labels)      ours (the fast0tag / ml2p convention)
    forward_embeddings = q(x) [B, 1, E]                 ours
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._base import MLZSLModel

__all__ = ["Conse"]

_COMBINE_OVER = ("seen", "given")


@register_model("conse")
class Conse(MLZSLModel):
    """Compatibility classifier over labels -> top-T convex combination -> cosine scores.

    Args:
        top_t: T, the number of most probable labels combined.
        combine_over: ``"seen"`` (labels stored in train mode) or ``"given"`` (labels passed in).
        normalize_labels: L2-normalise label vectors before the classifier and the combination.
        classifier_weight: weight of the classifier's cross-entropy (:meth:`extra_loss`).
    """

    seen_vectors: Tensor

    def __init__(
        self,
        *,
        in_channels: int,
        embed_dim: int,
        top_t: int = 10,
        combine_over: str = "seen",
        normalize_labels: bool = True,
        classifier_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.check_positive(top_t=top_t)
        self.check_non_negative(classifier_weight=classifier_weight)
        self.check_choice("combine_over", combine_over, _COMBINE_OVER)
        self.classifier_weight = float(classifier_weight)
        self._last_logits: Tensor | None = None  # classifier logits of the last training forward
        self.top_t, self.combine_over, self.normalize_labels = top_t, combine_over, normalize_labels
        self.classifier = nn.Linear(in_channels, embed_dim)  # q(x) = W θ(x) + b
        # seen label set, filled by train-mode forward (combine_over="seen"): [S, E], S = 0 first
        self.register_buffer("seen_vectors", torch.zeros(0, embed_dim))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # the stored seen set has the trained S rows; a fresh model's buffer has 0
        stored = state_dict.get(prefix + "seen_vectors")
        if isinstance(stored, Tensor) and stored.shape != self.seen_vectors.shape:
            with torch.no_grad():
                self.seen_vectors.resize_(stored.shape)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _labels(self, label_vectors: Tensor) -> Tensor:
        """Label vectors as the classifier and the combination use them: [L, E] -> [L, E]."""
        return F.normalize(label_vectors, dim=-1) if self.normalize_labels else label_vectors

    def convex_combination(self, queries: Tensor, label_vectors: Tensor) -> Tensor:
        """f(x) = Σ_t p_t v_t / Σ_t p_t over the top-T labels of the classifier.

        Args:
            queries: [B, 1, E] classifier queries q(x) (from :meth:`forward_embeddings`).
            label_vectors: [S, E] the labels to classify and combine (used as given).

        Returns:
            [B, E] the semantic embedding of each image.
        """
        logits = queries.squeeze(1) @ label_vectors.T  # [B, S]
        if self.training:
            self._last_logits = logits  # for extra_loss: the classifier's own cross-entropy
        probs = logits.softmax(dim=-1)  # [B, S]
        top_p, top_i = probs.topk(min(self.top_t, label_vectors.shape[0]), dim=-1)  # [B, T]
        weighted = top_p.unsqueeze(-1) * label_vectors[top_i]  # [B, T, E]
        return weighted.sum(dim=1) / top_p.sum(dim=-1, keepdim=True)  # [B, E]

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """The classifier query of each image: [B, C, H, W] -> q(x) [B, 1, E]."""
        self.check_features(features)
        pooled = features.mean(dim=(2, 3))  # [B, C]
        return self.classifier(pooled).unsqueeze(1)  # [B, 1, E]

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Cosine scores [B, L] of the labels [L, E] against each image's combination f(x).

        The combined set is the given labels (``combine_over="given"`` or train mode) or the
        stored seen set (eval mode); with no stored set yet, f(x) is the query q(x) itself.
        """
        self.check_labels(label_vectors)
        if self.combine_over == "given" or self.training:
            image = self.convex_combination(embeddings, self._labels(label_vectors))  # [B, E]
        elif self.seen_vectors.shape[0] > 0:
            image = self.convex_combination(embeddings, self._labels(self.seen_vectors))
        else:  # untrained, eval mode: no seen set to combine
            image = embeddings.squeeze(1)  # [B, E]
        return F.normalize(image, dim=-1) @ F.normalize(label_vectors, dim=-1).T  # [B, L]

    def extra_loss(self, targets: Tensor) -> Tensor | None:
        """The classifier's cross-entropy on the last training forward (paper: its own loss).

        Args:
            targets: [B, S] in {+1, -1, 0} for the labels of the last forward (the seen ones).

        Returns:
            ``classifier_weight`` × mean over images with a positive label of
            −Σ_c y_c log softmax(logits)_c, y the positives spread evenly (rows sum to 1); ``None``
            in eval mode, before a training forward, or at weight 0.
        """
        logits = self._last_logits
        if not self.training or logits is None or self.classifier_weight == 0:
            return None
        if targets.shape != logits.shape:
            raise ConfigError(
                f"conse.extra_loss: targets of shape {tuple(targets.shape)} do not match the "
                f"classifier logits {tuple(logits.shape)}"
            )
        positive = (targets.to(logits.device) > 0).float()  # [B, S]
        count = positive.sum(dim=1)  # [B]
        rows = count > 0
        if not rows.any():
            return logits.sum() * 0.0  # keeps the graph; nothing to learn from this batch
        share = positive[rows] / count[rows, None]  # [B', S], each row sums to 1
        loss = -(share * logits[rows].log_softmax(dim=-1)).sum(dim=1).mean()
        return self.classifier_weight * loss

    def forward(self, features: Tensor, label_vectors: Tensor) -> Tensor:
        """Score every label for every image; in train mode, remember the labels as the seen set.

        Args:
            features: [B, C, H, W] feature maps.
            label_vectors: [L, E] label vectors (the seen labels, when training).

        Returns:
            [B, L] cosine similarities cos(f(x), v_c).
        """
        scores = super().forward(features, label_vectors)  # [B, L]; checks both inputs
        if self.training and self.combine_over == "seen":
            with torch.no_grad():  # in place, so wrappers holding the buffer (DDP) see it
                self.seen_vectors.resize_(label_vectors.shape).copy_(label_vectors)
        return scores
