"""Score fusion of a trained head with a ready teacher on the same feature maps.

Knowledge transfer from a pretrained image–text model (MKT: S. He, T. Guo, T. Dai, R. Qiao,
B. Ren, S. Xia, "Open-Vocabulary Multi-Label Classification via Multi-Modal Knowledge Transfer",
AAAI 2023) keeps what the pretrained model knows of labels a small training set never shows. Here
the teacher is a ready model (``photo``: CONSE over the backbone's ImageNet classifier) that reads
the same maps and the same label vectors as the trained head, and the checkpoint's score is

    score = (1 − w) · (s − μ_s) / σ_s + w · (t − μ_t) / σ_t,

s the head's and t the teacher's score, each standardised by its mean and spread over the training
images and seen labels (so neither scale dominates), w the fusion weight. The constants are
buffers: the fused module exports to ONNX like any model.

A run may add a *seen-label adapter* (:class:`LabelAdapter`): one logistic classifier per training
label on the pooled maps, its standardised score added with weight β to the labels it was trained
on, ``score + β · a``. Ensembling a zero-shot model's outputs with a probe fitted on a few labelled
examples is how few-shot adaptation of CLIP-like models is done (the linear probe of Radford et
al., ICML 2021; output ensembling as in WiSE-FT, Wortsman et al., CVPR 2022; Tip-Adapter, Zhang
et al., ECCV 2022, adds a few-shot term to the zero-shot logits the same way). A label reaches its
classifier through its vector, so the module stays ``(features, label_vectors) -> scores``: the
adapter's term for label l is Σ_j exp(−κ · max(0, 1 − cos(v_l, v_j))) · a_j, which is a_j for the
training label j itself (cosine 1, to float32 rounding) and vanishes for any other label (κ = 1000:
a cosine of 0.995 weighs e^−5 ≈ 0.007) — labels the run never saw are scored by the head and the
teacher alone. Measured on real photos: ``benchmarks/README.md``, "Training on real photos".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ADAPTER_SHARPNESS", "LabelAdapter", "ScoreFusion"]

ADAPTER_SHARPNESS = 1000.0  # κ: how fast a label's share of a training label's classifier falls
_SAME = 1e-5  # cosines this close to 1 are one label (float32 rounding of a vector with itself)


class LabelAdapter(nn.Module):
    """``(features [B, C, H, W], label_vectors [L, E]) -> [B, L]``: the training labels' own
    classifiers, each reached by its label's vector (see the module docstring).

    Args:
        label_vectors: [S, E], the S training labels' vectors (normalised here).
        weight: [S, C] classifier weights on the standardised pooled features.
        bias: [S].
        feature_stats: [2, C]: the pooled features' mean and spread over the training images.
        score_stats: (mean, spread) of the classifiers' held-out scores on the training images,
            which standardise the output like :class:`ScoreFusion`'s constants.
    """

    vectors: Tensor  # [S, E] buffers, all of them
    weight: Tensor
    bias: Tensor
    feature_stats: Tensor
    score_stats: Tensor

    def __init__(
        self,
        label_vectors: Tensor,
        weight: Tensor,
        bias: Tensor,
        feature_stats: Tensor,
        score_stats: tuple[float, float],
    ) -> None:
        super().__init__()
        self.register_buffer("vectors", nn.functional.normalize(label_vectors.float(), dim=-1))
        self.register_buffer("weight", weight.float())
        self.register_buffer("bias", bias.float())
        self.register_buffer("feature_stats", feature_stats.float())
        self.register_buffer("score_stats", torch.tensor(score_stats, dtype=torch.float32))

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> LabelAdapter:
        """The adapter of the tensors :func:`mlzsl.training.transfer.fit_adapter` returns (and a
        checkpoint's fusion record holds): ``vectors``, ``weight``, ``bias``, ``feature_stats``,
        ``score_stats``."""
        stats = tensors["score_stats"]
        return cls(
            tensors["vectors"],
            tensors["weight"],
            tensors["bias"],
            tensors["feature_stats"],
            (float(stats[0]), float(stats[1])),
        )

    def classify(self, features: Tensor) -> Tensor:
        """The S classifiers' standardised scores [B, S]."""
        pooled = features.float().mean(dim=(2, 3))  # [B, C]
        x = (pooled - self.feature_stats[0]) / self.feature_stats[1]
        scores = x @ self.weight.T + self.bias  # [B, S]
        return (scores - self.score_stats[0]) / self.score_stats[1]

    def forward(self, features: Tensor, label_vectors: Tensor) -> Tensor:
        cosines = nn.functional.normalize(label_vectors.float(), dim=-1) @ self.vectors.T  # [L, S]
        # 1 for the label itself: a cosine within float32 rounding of 1 (1e-5) counts as 1
        gap = (1.0 - _SAME - cosines).clamp(min=0.0)  # [L, S], 0 for the label itself
        reach = torch.exp(-ADAPTER_SHARPNESS * gap)
        return self.classify(features) @ reach.T  # [B, L]


class ScoreFusion(nn.Module):
    """``(features [B, C, H, W], label_vectors [L, E]) -> fused scores [B, L]``.

    Args:
        student: the trained head.
        teacher: the ready model (frozen).
        weight: w in [0, 1], the teacher's share.
        student_stats: (μ_s, σ_s) of the head's scores over training images × seen labels.
        teacher_stats: (μ_t, σ_t) likewise for the teacher.
        adapter: the seen-label adapter, or ``None``.
        adapter_weight: β, its weight.
    """

    student_stats: Tensor  # [2] buffer: mean, spread
    teacher_stats: Tensor  # [2] buffer

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        weight: float,
        student_stats: tuple[float, float],
        teacher_stats: tuple[float, float],
        adapter: LabelAdapter | None = None,
        adapter_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.student, self.teacher, self.weight = student, teacher, float(weight)
        self.adapter, self.adapter_weight = adapter, float(adapter_weight)
        self.register_buffer("student_stats", torch.tensor(student_stats, dtype=torch.float32))
        self.register_buffer("teacher_stats", torch.tensor(teacher_stats, dtype=torch.float32))

    def forward(self, features: Tensor, label_vectors: Tensor) -> Tensor:
        s = self.student(features, label_vectors)  # [B, L]
        t = self.teacher(features, label_vectors)  # [B, L]
        s = (s - self.student_stats[0]) / self.student_stats[1]
        t = (t - self.teacher_stats[0]) / self.teacher_stats[1]
        fused = (1.0 - self.weight) * s + self.weight * t
        if self.adapter is not None:
            fused = fused + self.adapter_weight * self.adapter(features, label_vectors)
        return fused
