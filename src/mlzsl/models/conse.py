"""CONSE: an image's semantic embedding is a convex combination of its top-T label vectors.

Paper: M. Norouzi, T. Mikolov, S. Bengio, Y. Singer, J. Shlens, A. Frome, G. S. Corrado, J. Dean,
"Zero-Shot Learning by Convex Combination of Semantic Embeddings", ICLR 2014 (arXiv 1312.5650).
A classifier over the seen labels gives p(y | x); the image is placed in the word-vector space at

    f(x) = (1 / Z) Σ_{t=1..T} p(y_t | x) s(y_t),      Z = Σ_{t=1..T} p(y_t | x),

y_1..y_T the T most probable seen labels, s(y) a label's vector; any label, seen or not, is then
scored by the cosine similarity cos(f(x), s(c)). CONSE is a baseline row in the LESA, BiAM and
(ML)²P tables (DESIGN §6).

How this differs from the paper, and why:

1. Classifier. The paper uses a fixed, separately trained ImageNet-1k softmax classifier. Our
   interface has no fixed output layer (the label set is an input), so the classifier is a
   *compatibility* layer: logit_c = q(x) · v̂_c with q(x) = W θ(x) + b, θ(x) the global average of
   the feature map [B, C], W: C -> E learned, v̂_c the (L2-normalised) label vector;
   p = softmax over the labels it is applied to (softmax as in the paper).
2. Training. The paper trains the classifier with its own cross-entropy and never trains the
   combination. Here the classifier gets that loss too, as :meth:`Conse.extra_loss` (the trainer
   adds it): a softmax cross-entropy of the seen-label logits against the image's positive seen
   labels, spread evenly over them (the multi-label form of the paper's softmax loss), weighted
   by ``classifier_weight`` (default 1). The cosine scores also go into the trainer's loss, and
   that gradient reaches W through the probabilities that weight the top-T vectors. Without the
   classifier loss the second path alone collapses: the softmax saturates, the top-T weights go
   one-hot, the gradient through them vanishes and every image gets the same seen vector (the
   scenes benchmark sat at chance, ZSL mAP 3.2, that way).
3. Which labels are combined (``combine_over``):

   * ``"seen"`` (default, the paper's rule): in train mode ``forward`` copies the label vectors it
     is given (the trainer gives the seen labels) into the buffer ``seen_vectors`` and combines
     over them; in eval mode the classifier and the top-T run over that stored seen set, whatever
     labels are scored. A label's score then depends only on the image, its own vector and the
     stored seen vectors, so every zero-shot invariant of the conformance suite holds (permuting
     labels permutes scores, scoring a subset equals slicing, batch independence). The buffer is
     part of the state dict (checkpoints carry it; loading resizes it). Caveats: the buffer holds
     the label set of the *last* train-mode ``forward``, so scoring other labels in train mode
     overwrites it; and before any train-mode ``forward`` it is empty, and an eval-mode model
     falls back to the compatibility score cos(q(x), v_c) (ours: the classifier's own
     direction, the only label-independent estimate of f(x) without a seen set), which keeps the
     interface's invariants for an untrained model.
   * ``"given"``: classifier, top-T and combination all run over the labels passed to ``forward``
     (in training the seen ones, in ZSL evaluation the unseen ones, in GZSL all). This makes a
     label's score depend on the other labels passed with it, so the conformance suite's
     "scoring a subset equals slicing" property fails by design (a subset has a different top-T
     and a different softmax), and with T >= L it still fails, the combination then being a
     softmax-weighted mean over the whole given set.

Other choices:

* T = ``top_t``, default 10: the paper's best T on ImageNet (it reports T = 1, 10, 1000;
  CONSE(10) is its headline model). T larger than the combined set uses all of it.
* ``normalize_labels`` (default ``True``) L2-normalises label vectors before the classifier and
  the combination, the convention of ``fast0tag`` and ``ml2p``; the final score is a cosine, as in
  the paper, so it normalises both sides regardless.
* ``forward_embeddings`` returns the classifier query q(x) [B, 1, E] (label independent); ``score``
  runs the classifier, the top-T combination and the cosine.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._checks import check_inputs, check_labels

__all__ = ["Conse", "conse"]

_COMBINE_OVER = ("seen", "given")


class Conse(nn.Module):
    """Compatibility classifier over labels -> top-T convex combination -> cosine scores.

    Args:
        in_channels: C, channels of the feature map.
        embed_dim: E, the label-vector size.
        top_t: T, the number of most probable labels combined.
        combine_over: ``"seen"`` (labels stored in train mode) or ``"given"`` (labels passed in).
        normalize_labels: L2-normalise label vectors before the classifier and the combination.
        classifier_weight: weight of the classifier's cross-entropy (:meth:`extra_loss`).
    """

    model_name = "conse"
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
        if in_channels < 1 or embed_dim < 1 or top_t < 1:
            raise ConfigError(
                "conse: in_channels, embed_dim and top_t must be positive, got "
                f"in_channels={in_channels}, embed_dim={embed_dim}, top_t={top_t}"
            )
        if classifier_weight < 0:
            raise ConfigError(f"conse: classifier_weight must be ≥ 0, got {classifier_weight}")
        if combine_over not in _COMBINE_OVER:
            raise ConfigError(
                f"conse: combine_over must be 'seen' or 'given', got {combine_over!r}"
            )
        self.config: dict[str, int | float | str | bool] = dict(
            in_channels=in_channels,
            embed_dim=embed_dim,
            top_t=top_t,
            combine_over=combine_over,
            normalize_labels=normalize_labels,
            classifier_weight=float(classifier_weight),
        )
        self.classifier_weight = float(classifier_weight)
        self._last_logits: Tensor | None = None  # classifier logits of the last training forward
        self.in_channels, self.embed_dim, self.top_t = in_channels, embed_dim, top_t
        self.combine_over, self.normalize_labels = combine_over, normalize_labels
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
        check_inputs("conse", self.in_channels, features)
        pooled = features.mean(dim=(2, 3))  # [B, C]
        return self.classifier(pooled).unsqueeze(1)  # [B, 1, E]

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Cosine scores [B, L] of the labels [L, E] against each image's combination f(x).

        The combined set is the given labels (``combine_over="given"`` or train mode) or the
        stored seen set (eval mode); with no stored set yet, f(x) is the query q(x) itself.
        """
        check_labels("conse", self.embed_dim, label_vectors)
        if self.combine_over == "given" or self.training:
            image = self.convex_combination(embeddings, self._labels(label_vectors))  # [B, E]
        elif self.seen_vectors.shape[0] > 0:
            image = self.convex_combination(embeddings, self._labels(self.seen_vectors))
        else:  # untrained, eval mode: no seen set to combine
            image = embeddings.squeeze(1)  # [B, E]
        return F.normalize(image, dim=-1) @ F.normalize(label_vectors, dim=-1).T  # [B, L]

    def extra_loss(self, targets: Tensor | None = None) -> Tensor | None:
        """The classifier's cross-entropy on the last training forward (paper: its own loss).

        Args:
            targets: [B, S] in {+1, -1, 0} for the labels of the last forward (the seen ones).

        Returns:
            ``classifier_weight`` × mean over images with a positive label of
            −Σ_c y_c log softmax(logits)_c, y the positives spread evenly (rows sum to 1); ``None``
            in eval mode, without targets, before a training forward, or at weight 0.
        """
        logits = self._last_logits
        if not self.training or targets is None or logits is None or self.classifier_weight == 0:
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
        embeddings = self.forward_embeddings(features)  # [B, 1, E]; checks the channels
        scores = self.score(embeddings, label_vectors)  # [B, L]; checks the label vectors
        if self.training and self.combine_over == "seen":
            with torch.no_grad():  # in place, so wrappers holding the buffer (DDP) see it
                self.seen_vectors.resize_(label_vectors.shape).copy_(label_vectors)
        return scores


@register_model("conse")
def conse(
    *,
    in_channels: int,
    embed_dim: int,
    top_t: int = 10,
    combine_over: str = "seen",
    normalize_labels: bool = True,
    classifier_weight: float = 1.0,
) -> Conse:
    """CONSE (Norouzi et al., ICLR 2014) with a compatibility classifier over pooled features."""
    return Conse(
        in_channels=in_channels,
        embed_dim=embed_dim,
        top_t=top_t,
        combine_over=combine_over,
        normalize_labels=normalize_labels,
        classifier_weight=classifier_weight,
    )
