"""LESA: a shared multi-attention model whose attentions every label, seen or unseen, selects from.

Paper: D. Huynh, E. Elhamifar, "A Shared Multi-Attention Framework for Multi-Label Zero-Shot
Learning", CVPR 2020. Official release (TensorFlow 1): github.com/hbdat/cvpr20_LESA, files
``core/model_share_attention.py`` (``AttentionClassifier``) and
``zeroshot_experiments/NUS_WIDE_zs_rank_Visual_Word_Attention.py`` (the NUS-WIDE settings).

Pipeline, shapes with B batch, C channels, C' conv channels, P = H·W regions, T attentions,
L labels, E label-vector size::

    features [B, C, H, W]
      2×2 conv (stride 1, TF 'SAME' padding) + BN + ReLU           [B, C', H, W]    release
      flatten to regions                                           [B, P, C']
      attention MLP: Linear C'->C', tanh, Linear C'->T             [B, T, P] logits release
      softmax over the P regions, attended features Σ_r α_tr x_r   [B, T, C']       release
    label classifiers W v̂_c, v̂_c = v_c / ||v_c||                   [L, C']          release
    attention scores ⟨f_t, W v̂_c⟩                                  [B, T, L]        release
    score of label c = max over the T attentions                   [B, L]           release

Every choice and its source ("release" = read from the official code, "paper" = the CVPR text,
"ours" = fixed by neither):

1. Front-end conv (release ``_conv``, enabled by ``is_conv=True`` in the NUS-WIDE script):
   ``slim.conv2d(features, 512, [2, 2], padding='SAME')`` with batch norm, i.e. a stride-1 2×2 conv
   without bias, BN, then slim's default ReLU. TF's 'SAME' for an even kernel pads 0 before and 1
   after, so H and W are unchanged; we pad (0, 1, 0, 1) explicitly, which works for any H×W and
   needs no ``num_positions``. The release keeps 512 = C output channels; ``conv_channels``
   (default ``None`` = C) sets C'. The release builds an L2 weight penalty (5e-4) on this conv but
   does not add it to the loss (``is_regularizer=False``); not reproduced. ``use_conv=False``
   attends directly over the input map (release ``is_conv=False``).
2. Shared attention (release ``_attention_layer_MLP``): both layers act on bias-augmented inputs,
   i.e. ordinary affine layers: Linear C'->C', tanh, Linear C'->T; T = 10 (release ``T=10``,
   DESIGN §6). The attention is label-agnostic: all labels share the same T attended features.
   Initialisation: He-normal weights (release: ``variance_scaling_initializer``, fan-in, factor 2);
   biases zero (ours; the release draws its augmented bias rows from the same distribution).
3. Label-driven selection (release ``_predict_frac``, paper "select among a set of shared
   attentions"): each label scores every attended feature with its classifier W v̂_c and keeps the
   best, ``max`` over T. W is C'×E (512×300 in the release, He-normal), no bias.
4. Label vectors are L2-normalised and fixed (release ``normalize(vecs)``, ``trainable_vecs=False``
   in the NUS-WIDE script; the unseen vectors are ``l2_normalize``-d too).
5. Regularisers (release ``build_model_rank``; the paper's loss "guiding the attention to focus on
   diverse and relevant image regions while utilizing all attention features"), added by
   :meth:`LESA.extra_loss` with the NUS-WIDE weights of the release script:

   * span / diversity, ``lambda_span = 0.01`` (``_attention_ortho_span_regularizer``): the
     attention *logits* L2-normalised over regions, their T×T Gram matrix per image with the
     diagonal zeroed, Frobenius norm over the whole batch (not a mean: as released).
   * distribution / "utilise all attentions", ``lambda_dist = 0.1``
     (``_attention_distribution_soft_cardinality``): softmax over T of the attention scores
     [B, T, L], summed over each image's positive labels, squared, mean over T and B.
     Spreading the positive labels over the attentions lowers it.
   * global / relevance, ``lambda_global = 0.001`` (``_attention_global_regularizer``): the
     score from the mean region feature (the "global" feature) against the attended score;
     Σ max(0, −(s_att − s_global)·y) over the batch and labels (margin 0, as released): positives
     must score higher from their attention than from the global feature, negatives lower.

   The distribution and global terms need the targets y (+1 / −1 / 0). ``extra_loss(targets)``
   computes all three (the trainer passes the batch's targets, through
   :func:`mlzsl.losses.model_extra_loss`); ``extra_loss()`` without targets computes the
   label-free span term only.

Training (release NUS-WIDE script, not set here: configs do): ranking loss
(:func:`mlzsl.losses.ranking_loss`), RMSProp lr 1e-3 (decay 0.9, momentum 0.9, epsilon 1.0),
batch 32, lr adapted on validation F1. Published NUS-WIDE figures: ZSL mAP 19.4, F1@3 31.6,
F1@5 28.7; GZSL mAP 5.6, F1@3 14.4, F1@5 16.8 (DESIGN §4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._checks import check_inputs, check_labels

__all__ = [
    "LESA",
    "SharedAttention",
    "check_inputs",
    "he_normal",
    "check_labels",
    "check_sizes",
    "distribution_regularizer",
    "global_regularizer",
    "lesa",
    "span_regularizer",
]


def he_normal(weight: Tensor, fan_in: int) -> None:
    """He-normal init, std = sqrt(2 / fan_in) (TF ``variance_scaling_initializer`` defaults)."""
    nn.init.normal_(weight, std=math.sqrt(2.0 / fan_in))


def check_sizes(model: str, in_channels: int, embed_dim: int, **positive: int) -> None:
    """Raise :class:`ConfigError` unless every size is a positive integer."""
    sizes = {"in_channels": in_channels, "embed_dim": embed_dim, **positive}
    bad = {k: v for k, v in sizes.items() if v < 1}
    if bad:
        raise ConfigError(f"{model}: sizes must be positive, got {bad}")


class SharedAttention(nn.Module):
    """LESA's trunk: optional 2×2 conv + BN + ReLU, then T label-agnostic attentions over regions.

    Args:
        in_channels: C, channels of the feature map.
        conv_channels: C', channels after the conv (``None``: C). Ignored without the conv.
        num_attentions: T, number of attention maps.
        use_conv: apply the 2×2 conv + BN + ReLU front-end.
    """

    def __init__(
        self, *, in_channels: int, conv_channels: int | None, num_attentions: int, use_conv: bool
    ) -> None:
        super().__init__()
        width = (conv_channels or in_channels) if use_conv else in_channels
        self.out_channels = width
        self.conv: nn.Module = nn.Identity()
        if use_conv:
            conv = nn.Conv2d(in_channels, width, kernel_size=2, bias=False)  # BN supplies the bias
            he_normal(conv.weight, in_channels * 4)
            self.conv = nn.Sequential(
                nn.ZeroPad2d((0, 1, 0, 1)), conv, nn.BatchNorm2d(width), nn.ReLU()
            )
        self.hidden = nn.Linear(width, width)
        self.logits = nn.Linear(width, num_attentions)
        for layer in (self.hidden, self.logits):
            he_normal(layer.weight, width)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Regions and attention logits: [B, C, H, W] -> ([B, P, C'], [B, T, P])."""
        regions = self.conv(features).flatten(2).transpose(1, 2)  # [B, P, C']
        logits = self.logits(torch.tanh(self.hidden(regions)))  # [B, P, T]
        return regions, logits.transpose(1, 2)  # [B, P, C'], [B, T, P]


def span_regularizer(attention_logits: Tensor) -> Tensor:
    """LESA's span (diversity) term from attention logits [B, T, P]: a scalar.

    Off-diagonal cosine similarities between the T logit maps of each image; Frobenius norm of the
    whole [B, T, T] stack (release ``_attention_ortho_span_regularizer``).
    """
    unit = F.normalize(attention_logits, dim=2)  # [B, T, P]
    gram = unit @ unit.transpose(1, 2)  # [B, T, T]
    off_diagonal = gram - torch.diag_embed(torch.diagonal(gram, dim1=1, dim2=2))  # [B, T, T]
    return off_diagonal.square().sum().sqrt()


def distribution_regularizer(attention_scores: Tensor, targets: Tensor) -> Tensor:
    """LESA's distribution term from attention scores [B, T, L] and targets [B, L]: a scalar.

    softmax over T, summed over each image's positive labels, squared, mean over T then B
    (release ``_attention_distribution_soft_cardinality``).
    """
    share = attention_scores.softmax(dim=1)  # [B, T, L]
    positive = (targets > 0).to(share.dtype).unsqueeze(1)  # [B, 1, L]
    load = (share * positive).sum(dim=2)  # [B, T]
    return load.square().mean()


def global_regularizer(scores: Tensor, global_scores: Tensor, targets: Tensor) -> Tensor:
    """LESA's global (relevance) term: Σ max(0, −(s − s_global)·y) over [B, L], a scalar.

    Targets 0 contribute nothing (release ``_attention_global_regularizer``, margin 0).
    """
    sign = targets.sign().to(scores.dtype)  # [B, L]
    return F.relu(-(scores - global_scores) * sign).sum()


class LESA(nn.Module):
    """LESA: T shared attentions; each label scores them all with W v̂_c and keeps the best.

    Args:
        in_channels: C, channels of the feature map.
        embed_dim: E, the label-vector size.
        num_attentions: T, shared attention maps.
        conv_channels: C' after the 2×2 conv (``None``: C, as released).
        use_conv: apply the 2×2 conv + BN + ReLU front-end.
        lambda_span: weight of the span (diversity) regulariser.
        lambda_dist: weight of the distribution regulariser (needs targets).
        lambda_global: weight of the global (relevance) regulariser (needs targets).
    """

    model_name = "lesa"

    def __init__(
        self,
        *,
        in_channels: int,
        embed_dim: int,
        num_attentions: int = 10,
        conv_channels: int | None = None,
        use_conv: bool = True,
        lambda_span: float = 0.01,
        lambda_dist: float = 0.1,
        lambda_global: float = 0.001,
    ) -> None:
        super().__init__()
        check_sizes(
            "lesa",
            in_channels,
            embed_dim,
            num_attentions=num_attentions,
            conv_channels=in_channels if conv_channels is None else conv_channels,
        )
        if min(lambda_span, lambda_dist, lambda_global) < 0:
            raise ConfigError("lesa: lambda_span, lambda_dist and lambda_global must be >= 0")
        self.config: dict[str, int | float | bool | None] = dict(
            in_channels=in_channels,
            embed_dim=embed_dim,
            num_attentions=num_attentions,
            conv_channels=conv_channels,
            use_conv=use_conv,
            lambda_span=float(lambda_span),
            lambda_dist=float(lambda_dist),
            lambda_global=float(lambda_global),
        )
        self.in_channels, self.embed_dim = in_channels, embed_dim
        self.lambda_span, self.lambda_dist, self.lambda_global = (
            lambda_span,
            lambda_dist,
            lambda_global,
        )
        self.attention = SharedAttention(
            in_channels=in_channels,
            conv_channels=conv_channels,
            num_attentions=num_attentions,
            use_conv=use_conv,
        )
        width = self.attention.out_channels
        self.W = nn.Linear(embed_dim, width, bias=False)  # weight [C', E]: the release's W
        he_normal(self.W.weight, width)
        self._cache: dict[str, Tensor] = {}

    def attention_maps(self, features: Tensor) -> Tensor:
        """Attention weights [B, T, P] of each image (each map sums to 1 over the P regions)."""
        check_inputs("lesa", self.in_channels, features)
        return self.attention(features)[1].softmax(dim=2)  # [B, T, P]

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """The T attended features of each image: [B, C, H, W] -> [B, T, C']."""
        check_inputs("lesa", self.in_channels, features)
        regions, logits = self.attention(features)  # [B, P, C'], [B, T, P]
        attended = logits.softmax(dim=2) @ regions  # [B, T, C']
        if self.training:  # for extra_loss
            self._cache = {"logits": logits, "global": regions.mean(dim=1)}  # [B,T,P], [B,C']
        else:
            self._cache = {}
        return attended

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L] = max_t ⟨f_t, W v̂_c⟩ from attended features [B, T, C'], vectors [L, E]."""
        check_labels("lesa", self.embed_dim, label_vectors)
        classifiers = self.W(F.normalize(label_vectors, dim=1))  # [L, C']
        attention_scores = embeddings @ classifiers.T  # [B, T, L]
        scores = attention_scores.amax(dim=1)  # [B, L]
        if self.training and "global" in self._cache:
            self._cache["attention_scores"] = attention_scores  # [B, T, L]
            self._cache["scores"] = scores  # [B, L]
            self._cache["global_scores"] = self._cache["global"] @ classifiers.T  # [B, L]
        return scores

    def forward(self, features: Tensor, label_vectors: Tensor) -> Tensor:
        """Score every label for every image.

        Args:
            features: [B, C, H, W] feature maps.
            label_vectors: [L, E] label vectors (normalised here).

        Returns:
            [B, L] scores.
        """
        return self.score(self.forward_embeddings(features), label_vectors)

    def extra_loss(self, targets: Tensor | None = None) -> Tensor | None:
        """The weighted attention regularisers of the last training forward.

        Args:
            targets: [B, L] in {+1, -1, 0} for the labels of the last forward. Without them only
                the label-free span term is computed.

        Returns:
            A scalar, or ``None`` in eval mode, before any training forward, or when every
            applicable weight is 0.
        """
        cache = self._cache
        if not self.training or "scores" not in cache:
            return None
        terms: list[Tensor] = []
        if self.lambda_span > 0:
            terms.append(self.lambda_span * span_regularizer(cache["logits"]))
        if targets is not None:
            if targets.shape != cache["scores"].shape:
                raise ConfigError(
                    f"lesa.extra_loss: targets of shape {tuple(targets.shape)} do not match the "
                    f"last scores {tuple(cache['scores'].shape)}"
                )
            targets = targets.to(cache["scores"].device)
            if self.lambda_dist > 0:
                terms.append(
                    self.lambda_dist * distribution_regularizer(cache["attention_scores"], targets)
                )
            if self.lambda_global > 0:
                terms.append(
                    self.lambda_global
                    * global_regularizer(cache["scores"], cache["global_scores"], targets)
                )
        return torch.stack(terms).sum() if terms else None


@register_model("lesa")
def lesa(
    *,
    in_channels: int,
    embed_dim: int,
    num_attentions: int = 10,
    conv_channels: int | None = None,
    use_conv: bool = True,
    lambda_span: float = 0.01,
    lambda_dist: float = 0.1,
    lambda_global: float = 0.001,
) -> LESA:
    """LESA (Huynh & Elhamifar, CVPR 2020): shared multi-attention, label-driven selection."""
    return LESA(
        in_channels=in_channels,
        embed_dim=embed_dim,
        num_attentions=num_attentions,
        conv_channels=conv_channels,
        use_conv=use_conv,
        lambda_span=lambda_span,
        lambda_dist=lambda_dist,
        lambda_global=lambda_global,
    )
