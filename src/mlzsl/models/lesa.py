"""LESA: a shared multi-attention model whose attentions every label, seen or unseen, selects from.

Paper: D. Huynh, E. Elhamifar, "A Shared Multi-Attention Framework for Multi-Label Zero-Shot
Learning", CVPR 2020. Release (TensorFlow 1): github.com/hbdat/cvpr20_LESA, files
``core/model_share_attention.py`` and
``zeroshot_experiments/NUS_WIDE_zs_rank_Visual_Word_Attention.py`` (the NUS-WIDE settings).
Reasons for each choice and the published figures: docs/models.md (lesa).

Pipeline (B batch, C' conv channels, P = H·W regions, T attentions, L labels, E label size)::

    features [B, C, H, W]
      2×2 conv (stride 1, TF 'SAME' padding) + BN + ReLU           [B, C', H, W]
      attention MLP: Linear C'->C', tanh, Linear C'->T             [B, T, P] logits
      softmax over the P regions, attended features                [B, T, C']
    attention scores <f_t, W u_c>, u_c = v_c / ||v_c||             [B, T, L]
    score of label c = max over the T attentions                   [B, L]

Provenance (release: the official code; paper: the CVPR text; ours: fixed by neither)::

    choice                                          source
    2×2 conv, no bias, + BN + ReLU, pad (0,1,0,1)   release ``_conv`` (TF 'SAME')
    BN eps 1e-3, momentum 0.01 (TF decay 0.99)      release ``tf.layers.batch_normalization``
    conv weight Glorot-uniform (init="release")     release (slim ``conv2d`` default)
    C' = C by default                               release (512); ``conv_channels`` ours
    conv's L2 penalty (built, never added): none    release ``is_regularizer=False``
    attention Linear C'->C', tanh, Linear C'->T     release ``_attention_layer_MLP``
    T = 10                                          release ``T=10``
    attention and W weights: truncated normal,      release ``variance_scaling_initializer``
      std sqrt(2.6 / fan_in), cut at ±2 std           (TF contrib defaults)
    attention biases drawn with the weights         release (bias = last row of ``w_att_*``)
    init="he": He-normal conv, attention and W,     ours (the default before issue 14)
      zero attention biases
    score = max over T of <f_t, W u_c>              release ``_predict_frac``; paper
    W C'×E, no bias (init as the attention above)   release ``prediction_frac/W``
    label vectors fixed and L2-normalised           release ``normalize(vecs)``
    span term, lambda_span = 0.01                   release ``_attention_ortho_span_regularizer``
    distribution term, lambda_dist = 0.1            release ``..._distribution_soft_cardinality``
    global term, margin 0, lambda_global = 0.001    release ``_attention_global_regularizer``
    training (ranking loss, RMSProp; configs)       release NUS-WIDE script

The distribution and global terms need the targets y (+1 / −1 / 0), which the trainer passes:
``extra_loss(targets)`` computes all three.

Released variables -> ours (:func:`release_key_map`; D = C', TF kernels are HWIO, ours OIHW)::

    release                                       ours
    conv/conv/weights [2, 2, C, D]                attention.conv.1.weight (transposed)
    conv/conv/batch_normalization/gamma, beta     attention.conv.2.weight, .bias
    conv/conv/batch_normalization/moving_mean,    attention.conv.2.running_mean, .running_var
      moving_variance
    attention_layer/w_att_1 [D+1, D]              attention.hidden.weight (rows :D, transposed),
                                                    .bias (row D)
    attention_layer/w_att_2 [D+1, T]              attention.logits.weight, .bias (likewise)
    prediction_frac/W [D, E]                      W.weight
    vecs (the label vectors)                      not a parameter: label vectors are an input

The release appends a constant 1 to every region (``_augment_1``) and a 0 to every classifier
(``_augment_0``): the 1 is the attention MLP's bias input and meets a 0 in every score, so the
attended features here are the release's without that last entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._layers import SharedAttentionModel, span_regularizer

__all__ = [
    "LESA",
    "distribution_regularizer",
    "global_regularizer",
    "release_key_map",
    "span_regularizer",
]


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


@register_model("lesa")
class LESA(SharedAttentionModel):
    """LESA: T shared attentions; each label scores them all with W v̂_c and keeps the best.

    Args:
        num_attentions: T, shared attention maps.
        conv_channels: C' after the 2×2 conv (``None``: C, as released).
        use_conv: apply the 2×2 conv + BN + ReLU front-end.
        lambda_span: weight of the span (diversity) regulariser.
        lambda_dist: weight of the distribution regulariser (needs targets).
        lambda_global: weight of the global (relevance) regulariser (needs targets).
        init: ``"release"`` (TF release's initialisers) or ``"he"`` (ours, before issue 14).
        bn_eps, bn_momentum: the conv's BatchNorm (release: 1e-3 and 0.01).
    """

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
        init: str = "release",
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        self.build_trunk("num_attentions")
        self.check_non_negative(
            lambda_span=lambda_span, lambda_dist=lambda_dist, lambda_global=lambda_global
        )
        self.lambda_span, self.lambda_dist = lambda_span, lambda_dist
        self.lambda_global = lambda_global
        self._cache: dict[str, Tensor] = {}

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """The T attended features of each image: [B, C, H, W] -> [B, T, C']."""
        attended, regions, logits = self.attend(features)  # [B, T, C'], [B, P, C'], [B, T, P]
        if self.training:  # for extra_loss
            self._cache = {"logits": logits, "global": regions.mean(dim=1)}  # [B,T,P], [B,C']
        else:
            self._cache = {}
        return attended

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Scores [B, L] = max_t ⟨f_t, W v̂_c⟩ from attended features [B, T, C'], vectors [L, E]."""
        self.check_labels(label_vectors)
        classifiers = self.W(F.normalize(label_vectors, dim=1))  # [L, C']
        attention_scores = embeddings @ classifiers.T  # [B, T, L]
        scores = attention_scores.amax(dim=1)  # [B, L]
        if self.training and "global" in self._cache:
            self._cache["attention_scores"] = attention_scores  # [B, T, L]
            self._cache["scores"] = scores  # [B, L]
            self._cache["global_scores"] = self._cache["global"] @ classifiers.T  # [B, L]
        return scores

    def extra_loss(self, targets: Tensor) -> Tensor | None:
        """The weighted attention regularisers of the last training forward.

        Args:
            targets: [B, L] in {+1, -1, 0} for the labels of the last forward.

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


def release_key_map(variables: Mapping[str, Any]) -> dict[str, Tensor]:
    """Map the release's TF variables (name -> array) to a state dict of :class:`LESA`.

    Names may carry TF's ``:0`` suffix; ``vecs`` and optimiser slots (names with ``RMSProp`` or
    ``Momentum``) are skipped. The result loads with ``strict=True`` into a model built with the
    same C, C', T, E and ``use_conv``.

    Args:
        variables: e.g. ``{v.name: sess.run(v) for v in tf.global_variables()}`` or a checkpoint
            reader's ``get_tensor`` for each name.

    Returns:
        Our parameter and buffer names -> float tensors (``num_batches_tracked`` set to 0).
    """
    names = {k.removesuffix(":0"): np.asarray(v) for k, v in variables.items()}
    out: dict[str, Tensor] = {}

    def put(key: str, value: np.ndarray) -> None:
        out[key] = torch.from_numpy(np.ascontiguousarray(value))

    bn = "conv/conv/batch_normalization/"
    if "conv/conv/weights" in names:
        put("attention.conv.1.weight", names["conv/conv/weights"].transpose(3, 2, 0, 1))
        put("attention.conv.2.weight", names[bn + "gamma"])
        put("attention.conv.2.bias", names[bn + "beta"])
        put("attention.conv.2.running_mean", names[bn + "moving_mean"])
        put("attention.conv.2.running_var", names[bn + "moving_variance"])
        out["attention.conv.2.num_batches_tracked"] = torch.tensor(0)
    for ours, theirs in (("hidden", "w_att_1"), ("logits", "w_att_2")):
        matrix = names[f"attention_layer/{theirs}"]  # [D+1, out]
        put(f"attention.{ours}.weight", matrix[:-1].T)
        put(f"attention.{ours}.bias", matrix[-1])
    put("W.weight", names["prediction_frac/W"])
    return out
