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
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ScoreFusion"]


class ScoreFusion(nn.Module):
    """``(features [B, C, H, W], label_vectors [L, E]) -> fused scores [B, L]``.

    Args:
        student: the trained head.
        teacher: the ready model (frozen).
        weight: w in [0, 1], the teacher's share.
        student_stats: (μ_s, σ_s) of the head's scores over training images × seen labels.
        teacher_stats: (μ_t, σ_t) likewise for the teacher.
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
    ) -> None:
        super().__init__()
        self.student, self.teacher, self.weight = student, teacher, float(weight)
        self.register_buffer("student_stats", torch.tensor(student_stats, dtype=torch.float32))
        self.register_buffer("teacher_stats", torch.tensor(teacher_stats, dtype=torch.float32))

    def forward(self, features: Tensor, label_vectors: Tensor) -> Tensor:
        s = self.student(features, label_vectors)  # [B, L]
        t = self.teacher(features, label_vectors)  # [B, L]
        s = (s - self.student_stats[0]) / self.student_stats[1]
        t = (t - self.teacher_stats[0]) / self.teacher_stats[1]
        return (1.0 - self.weight) * s + self.weight * t
