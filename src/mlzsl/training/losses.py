"""Training losses on scores [B, L] and targets [B, L] in {+1, -1, 0} (0 = not annotated).

Every loss is a function ``loss(scores, targets) -> scalar Tensor``; :data:`LOSSES` names them
and :func:`get_loss` looks one up (``TrainConfig.loss``). Entries whose target is 0 never
contribute to any loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from mlzsl.errors import ConfigError

__all__ = ["LOSSES", "LossFn", "get_loss", "ranking_loss", "weighted_bce_loss"]

LossFn = Callable[[Tensor, Tensor], Tensor]

_EPS = 1e-8  # LESA's eps in the ranking loss denominator


def _as_float(scores: Tensor) -> Tensor:
    """Half-precision scores are promoted so that sums and pair counts stay exact."""
    return scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores


def ranking_loss(scores: Tensor, targets: Tensor) -> Tensor:
    """Pairwise ranking loss of LESA (Huynh & Elhamifar, CVPR 2020), used by BiAM and (ML)²P peers.

    For image i, over every pair (p, n) with y[i, p] = +1 and y[i, n] = -1 (0-targets are in
    neither set), d = max(0, 1 + s[i, n] - s[i, p]);
    L_i = Σ d / (number of pairs with d > 0 + 1e-8); the loss is the mean of L_i over all B images.
    An image with no violating pair (no pairs at all, or every positive ahead of every negative by
    at least 1) has L_i = 0 and still counts in the mean. This follows LESA's TensorFlow
    ``_ranking_loss`` (hbdat/cvpr20_LESA, ``core/model_share_attention.py``): ``violation`` =
    Σ sign(d), ``loss = reduce_mean(Σ d / (violation + eps))`` over the batch axis. LESA first keeps
    only the label columns annotated somewhere in the batch; columns with no annotation have no
    pairs, so that selection changes nothing and is skipped here.

    Memory: each image's positives and negatives are packed first, so the pairwise tensor is
    [B, N, P] with N, P the most negatives and positives of one image in the batch, not [B, L, L]:
    Open Images (7,186 seen labels, a handful of positives and verified negatives per image) then
    costs kilobytes a batch instead of 19.8 GB at batch 96; NUS-WIDE (every label annotated) at
    most a quarter of [B, L, L].

    Args:
        scores: [B, L] real scores.
        targets: [B, L] with +1 (positive), -1 (negative), 0 (not annotated); any dtype.

    Returns:
        A scalar tensor.
    """
    scores = _as_float(scores)
    s_pos, has_pos = _packed(scores, targets > 0)  # [B, P], [B, P]
    s_neg, has_neg = _packed(scores, targets < 0)  # [B, N], [B, N]
    pairs = has_neg.unsqueeze(2) & has_pos.unsqueeze(1)  # [B, N, P]
    margin = 1 + s_neg.unsqueeze(2) - s_pos.unsqueeze(1)  # [B, N, P]: 1 + s_n - s_p
    hinge = torch.where(pairs, margin.clamp_min(0), margin.new_zeros(()))  # [B, N, P]
    violations = (hinge > 0).sum(dim=(1, 2)).to(hinge.dtype)  # [B]
    per_image = hinge.sum(dim=(1, 2)) / (violations + _EPS)  # [B]
    return per_image.mean()


def _packed(scores: Tensor, chosen: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's chosen scores moved to the front: ([B, K], valid mask [B, K]), K = most chosen
    in one row."""
    counts = chosen.sum(dim=1)  # [B]
    width = int(counts.max()) if counts.numel() else 0
    order = torch.sort(chosen.to(torch.int8), dim=1, descending=True, stable=True).indices
    index = order[:, :width]  # [B, K]: the chosen columns first
    valid = torch.arange(width, device=scores.device) < counts.unsqueeze(1)  # [B, K]
    return scores.gather(1, index), valid


def weighted_bce_loss(scores: Tensor, targets: Tensor, pos_weight: float | None = None) -> Tensor:
    """Binary cross-entropy with logits on the annotated entries only, positives weighted.

    The scores are taken as logits. Each annotated entry (target ±1) contributes
    BCE(sigmoid(s), y) with y = 1 for +1 and 0 for -1, the positive term multiplied by
    ``pos_weight``; the loss is the mean over annotated entries (0 when there are none).

    Args:
        scores: [B, L] logits.
        targets: [B, L] in {+1, -1, 0}.
        pos_weight: weight of positive entries. ``None`` (default) uses the batch's ratio
            (annotated negatives) / (positives), computed without gradient, which balances the
            two classes' total weight in each batch; 1.0 when the batch has no positive or no
            negative entry.

    Returns:
        A scalar tensor.
    """
    scores = _as_float(scores)
    annotated = targets != 0  # [B, L]
    positive = (targets > 0).to(scores.dtype)  # [B, L]
    if pos_weight is None:
        n_pos = int((targets > 0).sum())
        n_neg = int((targets < 0).sum())
        pos_weight = n_neg / n_pos if n_pos and n_neg else 1.0
    weight = scores.new_tensor(float(pos_weight))
    per_entry = F.binary_cross_entropy_with_logits(
        scores, positive, pos_weight=weight, reduction="none"
    )  # [B, L]
    per_entry = torch.where(annotated, per_entry, per_entry.new_zeros(()))  # [B, L]
    return per_entry.sum() / annotated.sum().clamp_min(1)


LOSSES: dict[str, LossFn] = {
    "ranking": ranking_loss,
    "bce": weighted_bce_loss,
}


def get_loss(name: str) -> LossFn:
    """The loss ``name`` from :data:`LOSSES`: ``"ranking"`` or ``"bce"`` (``TrainConfig.loss``).

    Raises:
        ConfigError: unknown loss name.
    """
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]


def distillation_loss(student: Tensor, teacher: Tensor, eps: float = 1e-6) -> Tensor:
    """The student's score rows matched to the teacher's: mean squared difference after each row
    is standardised over its labels (scale-free: the two models' scores live on other scales).

    Args:
        student: [B, L] scores of the trained head (L ≥ 2: the seen labels, in training).
        teacher: [B, L] scores of the ready teacher on the same images and labels (no gradient).
    """
    if student.shape != teacher.shape or student.ndim != 2 or student.shape[1] < 2:
        raise ConfigError(
            f"distillation needs two [B, L ≥ 2] score matrices, got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}"
        )

    def standardised(scores: Tensor) -> Tensor:
        scores = _as_float(scores)
        centred = scores - scores.mean(dim=1, keepdim=True)
        return centred / (centred.std(dim=1, keepdim=True) + eps)

    return (standardised(student) - standardised(teacher.detach())).pow(2).mean()
