"""CONSE over a backbone's own ImageNet classifier: real-photo tagging with no training.

Paper: M. Norouzi, T. Mikolov, S. Bengio, Y. Singer, J. Shlens, A. Frome, G. S. Corrado, J. Dean,
"Zero-Shot Learning by Convex Combination of Semantic Embeddings", ICLR 2014 (arXiv 1312.5650).
A fixed ImageNet-1k softmax classifier gives p(y | x) over its K = 1000 classes; the image is
placed in the label-vector space at the convex combination of its T most probable classes'
vectors, and any label c, ImageNet class or not, is scored by a cosine:

    f(x) = Σ_{t=1..T} p(y_t | x) ŝ(y_t) / Σ_{t=1..T} p(y_t | x),      score_c = cos(f(x), v_c),

ŝ(y) the L2-normalised vector of class y's name. The paper's choice, kept as the default:
T = 10 (its headline CONSE(10); it reports T = 1, 10, 1000), p the plain softmax
(``temperature`` 1), the weights of the top T renormalised by their sum.

Unlike :mod:`mlzsl.models.conse` (a classifier trained on the seen labels of a feature store),
this classifier is the backbone's own ImageNet layer (``_fc``: [K, C] weights and [K] bias),
stored with the K class-name vectors as buffers, so a checkpoint is self-describing and nothing is
trained. :mod:`mlzsl.inference.pretrained` fills the buffers and writes the checkpoint.

Spatial scoring (``spatial="max"``). A photo holds several objects, many small, while a pooled
classifier sees the mix and names the biggest. The classifier is linear, so it applies at every
position of the feature map as a 1×1 convolution (pooled logits = mean of position logits); each
position gets its own top-T combination f_p(x), and a label's score is

    score_c = cos(f(x), v_c) + spatial_weight · max_p cos(f_p(x), v_c),

the pooled view (the whole scene) plus the best single position (the best view of one object).
``spatial="none"`` is the paper's pooled-only CONSE.

``forward_embeddings`` returns [B, 1 + P, E]: the pooled combination first, then the P = H·W
position combinations (none when ``spatial="none"``); ``score`` takes the cosines and combines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._base import MLZSLModel

__all__ = ["SPATIAL_MODES", "ImagenetConse"]

SPATIAL_MODES = ("none", "max")


@register_model("imagenet_conse", trainable=False)
class ImagenetConse(MLZSLModel):
    """A fixed K-way classifier on feature maps -> top-T convex combinations -> cosine scores.

    Args:
        num_classes: K, the classifier's classes (1000 for ImageNet-1k).
        top_t: T, the number of most probable classes combined (paper: 10).
        temperature: τ in softmax(logits / τ) (paper: 1).
        spatial: ``"none"`` (pooled vector only) or ``"max"`` (pooled + best position).
        spatial_weight: weight of the best-position cosine when ``spatial="max"``.

    Parameters (filled by :mod:`mlzsl.inference.pretrained`; drawn from torch's RNG when built, so a
    fresh model is not degenerate): classifier_weight [K, C], classifier_bias [K], class_vectors
    [K, E] (unit rows). They are parameters, not buffers, only so that the model stays an
    ordinary differentiable module; nothing trains them (the model is registered as a ready,
    not trainable, model).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        embed_dim: int,
        num_classes: int = 1000,
        top_t: int = 10,
        temperature: float = 1.0,
        spatial: str = "max",
        spatial_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.check_positive(num_classes=num_classes, top_t=top_t)
        if not temperature > 0:
            raise ConfigError(f"imagenet_conse: temperature must be > 0, got {temperature}")
        self.check_choice("spatial", spatial, SPATIAL_MODES)
        self.check_non_negative(spatial_weight=spatial_weight)
        self.num_classes, self.top_t = num_classes, min(top_t, num_classes)
        self.temperature, self.spatial = float(temperature), spatial
        self.spatial_weight = float(spatial_weight)
        self.classifier_weight = nn.Parameter(
            torch.randn(num_classes, in_channels) / in_channels**0.5
        )
        self.classifier_bias = nn.Parameter(torch.zeros(num_classes))
        self.class_vectors = nn.Parameter(F.normalize(torch.randn(num_classes, embed_dim), dim=-1))

    @torch.no_grad()
    def set_classifier(self, weight: Tensor, bias: Tensor, class_vectors: Tensor) -> None:
        """Set the classifier [K, C] and [K] and the class-name vectors [K, E] (normalised here).

        Raises:
            ConfigError: a shape does not fit the model's ``num_classes``, ``in_channels`` or
                ``embed_dim``.
        """
        for name, given, expected in (
            ("classifier weight", weight, self.classifier_weight),
            ("classifier bias", bias, self.classifier_bias),
            ("class vectors", class_vectors, self.class_vectors),
        ):
            if tuple(given.shape) != tuple(expected.shape):
                raise ConfigError(
                    f"imagenet_conse: {name} of shape {tuple(given.shape)}, "
                    f"expected {tuple(expected.shape)}"
                )
        self.classifier_weight.copy_(weight)
        self.classifier_bias.copy_(bias)
        self.class_vectors.copy_(F.normalize(class_vectors.float(), dim=-1))

    def class_logits(self, features: Tensor) -> Tensor:
        """Classifier logits [B, 1 + P, K]: the pooled vector first, then each position.

        P = H·W with ``spatial="max"``, 0 with ``"none"``.
        """
        self.check_features(features)
        pooled = features.mean(dim=(2, 3)).unsqueeze(1)  # [B, 1, C]
        if self.spatial != "none":
            positions = features.flatten(2).transpose(1, 2)  # [B, P, C]
            pooled = torch.cat([pooled, positions], dim=1)  # [B, 1 + P, C]
        return pooled @ self.classifier_weight.T + self.classifier_bias  # [B, 1 + P, K]

    def convex_combination(self, logits: Tensor) -> Tensor:
        """f = Σ_t p_t ŝ_t / Σ_t p_t over the top-T classes of each row: [..., K] -> [..., E].

        ``class_vectors`` are used as stored (:meth:`set_classifier` stores unit rows).
        """
        probs = (logits / self.temperature).softmax(dim=-1)  # [..., K]
        top_p, top_i = probs.topk(self.top_t, dim=-1)  # [..., T]
        weights = top_p / top_p.sum(dim=-1, keepdim=True)  # [..., T], sums to 1
        return (weights.unsqueeze(-1) * self.class_vectors[top_i]).sum(dim=-2)  # [..., E]

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """Feature maps [B, C, H, W] -> combinations [B, 1 + P, E] (pooled first)."""
        return self.convex_combination(self.class_logits(features))

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L]: pooled cosine, plus ``spatial_weight`` × the best position's cosine.

        Args:
            embeddings: [B, 1 + P, E] from :meth:`forward_embeddings`.
            label_vectors: [L, E] (normalised here).
        """
        self.check_labels(label_vectors)
        labels = F.normalize(label_vectors, dim=-1)  # [L, E]
        cosines = F.normalize(embeddings, dim=-1) @ labels.T  # [B, 1 + P, L]
        scores = cosines[:, 0]  # [B, L]
        if self.spatial == "max" and cosines.shape[1] > 1:
            scores = scores + self.spatial_weight * cosines[:, 1:].amax(dim=1)  # [B, L]
        return scores
