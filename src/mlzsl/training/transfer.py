"""Knowledge transfer from a ready model into a trained head (issue 20).

MKT (S. He et al., "Open-Vocabulary Multi-Label Classification via Multi-Modal Knowledge
Transfer", AAAI 2023) trains a multi-label model on a small labelled set while transferring what a
pretrained image–text model (CLIP) knows, so labels the set never shows stay within reach: it
distils CLIP's image embedding into the model and initialises from CLIP. We take the idea, with a
teacher that runs offline: a ready real-photo model (``photo``: CONSE over the backbone's own
ImageNet classifier, :mod:`mlzsl.inference.pretrained`), which reads the very feature maps the
head is trained on and the same label vectors. Three options of :class:`mlzsl.config.TrainConfig`:

- ``distill_weight``: the head's scores on the *seen* labels matched to the teacher's
  (:func:`mlzsl.training.losses.distillation_loss`). Only the seen labels' vectors enter
  training; an unseen label or its vector never does.
- ``teacher_init_epochs``: that distillation alone for the first epochs, so the head starts from
  the teacher's view before the labels pull it (initialisation from the teacher).
- ``fusion_weight``: the checkpoint scores with the head *and* the teacher
  (:class:`mlzsl.models._fusion.ScoreFusion`); the weight, the standardising constants and the
  teacher's weights are stored in the checkpoint, so ``tag``, ``serve``, ``export`` and the model
  card carry it.
- ``adapter_weight`` (with ``adapter_c``): the seen-label adapter (:func:`fit_adapter`), one
  logistic classifier per training label on the pooled maps, added to the fused scores of the
  labels it was trained on (:class:`mlzsl.models._fusion.LabelAdapter`). A few photos per label
  cannot teach a label-vector head much (``benchmarks/README.md``, "Training on real photos"),
  but they do sharpen each training label's own ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mlzsl.backbones import same_maps
from mlzsl.config import TrainConfig
from mlzsl.errors import ConfigError
from mlzsl.inference.checkpoint import Checkpoint, Fusion, load_checkpoint
from mlzsl.inference.pretrained import PHOTO_MODELS, real_photo_checkpoint
from mlzsl.store.feature_store import FeatureStore

__all__ = ["Teacher", "adapter_folds", "fit_adapter", "load_teacher", "score_stats"]

_ADAPTER_FOLDS = 5  # held-out folds whose scores give the adapter's standardising constants
_POOL_CHUNK = 1024  # rows read at a time when pooling the training maps
_NEWTON_LABELS = 64  # labels whose Newton systems are solved together
_NEWTON_BYTES = 256 * 2**20  # at most this much in one batch of Newton systems
_NEWTON_STEPS = 50  # at most; from zero, a few hundred photos converge in about ten


@dataclass
class Teacher:
    """A ready model whose knowledge a run transfers."""

    name: str
    checkpoint: Checkpoint
    model: nn.Module
    """Frozen, in eval mode: ``model(features, label_vectors) -> scores``."""

    def fusion(
        self,
        weight: float,
        student_stats: tuple[float, float],
        stats: tuple[float, float],
        *,
        adapter: dict[str, torch.Tensor] | None = None,
        adapter_weight: float = 0.0,
    ) -> Fusion:
        """The checkpoint record of a head fused with this teacher (and a seen-label adapter)."""
        return Fusion(
            weight=weight,
            student_stats=student_stats,
            teacher_stats=stats,
            teacher=self.name,
            teacher_model=self.checkpoint.model,
            teacher_args=self.checkpoint.model_args,
            teacher_state=self.checkpoint.state_dict,
            adapter_weight=adapter_weight if adapter is not None else 0.0,
            adapter=adapter,
        )


def load_teacher(config: TrainConfig, store: FeatureStore) -> Teacher | None:
    """The teacher ``config`` names, checked against the run (``None`` when it names none).

    The teacher must read the store's maps (same backbone and weights) and the run's label
    vectors (same embedder and label prompt); anything else is a one-line :class:`ConfigError`.
    """
    wants = {
        "distill_weight": config.distill_weight,
        "teacher_init_epochs": config.teacher_init_epochs,
        "fusion_weight": config.fusion_weight,
        "adapter_weight": config.adapter_weight,
    }
    if config.teacher is None:
        used = [key for key, value in wants.items() if value]
        if used:
            raise ConfigError(f"{used[0]} needs a teacher: add teacher=photo (or photo-glove)")
        return None
    if config.teacher not in PHOTO_MODELS:
        raise ConfigError(
            f"teacher must be a ready model, one of {', '.join(PHOTO_MODELS)}; "
            f"got {config.teacher!r}"
        )
    ckpt = load_checkpoint(real_photo_checkpoint(config.teacher))
    theirs, ours = store.header.backbone, ckpt.backbone
    if not same_maps(theirs, ours):
        raise ConfigError(
            f"teacher {config.teacher!r} reads {ours.get('name')} maps, but {store.path.name} "
            f"holds {theirs.get('name')} maps: set backbone={ours.get('name')} (train --data) or "
            f"extract the store with --backbone {ours.get('name')}"
        )
    if (config.embedder, config.label_prompt) != (ckpt.embedder, ckpt.label_prompt):
        raise ConfigError(
            f"teacher {config.teacher!r} embeds labels with embedder={ckpt.embedder} and "
            f"label_prompt={ckpt.label_prompt!r}; the run must use the same "
            f"(it has embedder={config.embedder}, label_prompt={config.label_prompt!r})"
        )
    model = ckpt.build_model()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return Teacher(config.teacher, ckpt, model)


def score_stats(scores: np.ndarray) -> tuple[float, float]:
    """(mean, spread) of a score matrix, the constants :class:`ScoreFusion` standardises with."""
    spread = float(np.std(scores))
    return float(np.mean(scores)), spread if spread > 0 else 1.0


def pooled_features(store: FeatureStore, rows: np.ndarray) -> np.ndarray:
    """The maps of ``rows`` averaged over positions: float32 [len(rows), C], read in chunks."""
    chunks = [
        store.features(rows[i : i + _POOL_CHUNK]).mean(axis=(2, 3))
        for i in range(0, len(rows), _POOL_CHUNK)
    ]
    return (
        np.concatenate(chunks)
        if chunks
        else np.zeros((0, store.header.feature_shape[0]), np.float32)
    )


def _logistic(
    x: torch.Tensor, y: torch.Tensor, known: torch.Tensor, c: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One L2-regularised logistic regression per column of ``y``: scikit-learn's objective,
    Σ_i loss_i + ½‖w‖²/C over each column's annotated rows (``known``), the bias free.

    Newton's method, all columns at once, in the span of the rows: with x = U·diag(σ)·Vᵀ (r =
    min(N, C) directions), w = V·v gives x·w = (U·σ)·v and ‖w‖ = ‖v‖, so each Newton system is
    (r + 1)² instead of (C + 1)² — 235² for 234 photos of 1,280 channels. Steps are halved until
    the objective falls enough (Armijo), and stop when a full step would gain nothing float64
    resolves (about ten steps for a few hundred photos). A column with no positive or no negative
    gets w = 0, b = 0 (a constant score, no ranking to learn).

    Args:
        x: [N, C] standardised features (float64). y: [N, S] 0/1. known: [N, S] 0/1.
    Returns: weight [S, C] and bias [S].
    """
    learnable = ((y * known).sum(0) > 0) & (((1 - y) * known).sum(0) > 0)  # [S]
    weight = torch.zeros(y.shape[1], x.shape[1], dtype=x.dtype)
    bias = torch.zeros(y.shape[1], dtype=x.dtype)
    columns = torch.nonzero(learnable).flatten()
    u, sigma, vt = torch.linalg.svd(x, full_matrices=False)  # [N, r], [r], [r, C]
    z = torch.cat([u * sigma, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)  # [N, r + 1]
    ridge = torch.full((z.shape[1],), 1.0 / c, dtype=x.dtype)
    ridge[-1] = 0.0  # the bias is not regularised
    # the Hessians' product holds labels × (r + 1) × N float64 values at once: bound it
    per_chunk = max(1, min(_NEWTON_LABELS, _NEWTON_BYTES // (8 * z.numel())))
    for chunk in columns.split(per_chunk):
        theta = _newton(z, y[:, chunk].T, known[:, chunk].T, ridge)  # [s, r + 1]
        weight[chunk], bias[chunk] = theta[:, :-1] @ vt, theta[:, -1]
    return weight, bias


def _newton(
    z: torch.Tensor, y: torch.Tensor, known: torch.Tensor, ridge: torch.Tensor
) -> torch.Tensor:
    """Minimise Σ_i known·loss(z·θ_s, y) + ½ Σ_k ridge_k θ_sk² for each row s of ``y`` [s, N]."""

    def objective(theta: torch.Tensor) -> torch.Tensor:  # [s]
        logits = theta @ z.T  # [s, N]
        losses = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        return (losses * known).sum(1) + 0.5 * (ridge * theta**2).sum(1)

    theta = torch.zeros(y.shape[0], z.shape[1], dtype=z.dtype)
    value = objective(theta)
    for _ in range(_NEWTON_STEPS):
        p = torch.sigmoid(theta @ z.T)  # [s, N]
        grad = (known * (p - y)) @ z + ridge * theta  # [s, r + 1]
        curvature = known * p * (1 - p)  # [s, N]
        hessian = (z.T * curvature[:, None, :]) @ z + torch.diag(ridge)  # [s, r + 1, r + 1]
        step = torch.linalg.solve(hessian, grad)  # [s, r + 1]
        decrement = (grad * step).sum(1)  # [s]: what a full step would gain, ×2 (Newton)
        if float(decrement.max()) < 1e-12 * max(1.0, float(value.abs().max())):
            break  # converged to float64's resolution
        size = torch.ones(y.shape[0], 1, dtype=z.dtype)
        for _ in range(30):  # Armijo: halve each row's step until its objective falls enough
            trial = objective(theta - size * step)
            enough = trial <= value - 1e-4 * size[:, 0] * decrement
            if bool(enough.all()):
                break
            size[~enough] /= 2
        theta, value = theta - size * step, trial
    return theta


def adapter_folds(n: int, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(held-out, rest) row positions of ``folds`` shuffled folds of ``n`` rows."""
    order = np.random.default_rng(seed).permutation(n)
    return [(fold, np.setdiff1d(order, fold)) for fold in np.array_split(order, folds)]


def fit_adapter(
    store: FeatureStore,
    rows: np.ndarray,
    seen: np.ndarray,
    seen_vectors: torch.Tensor,
    c: float,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Fit the seen-label adapter on the training ``rows``: its tensors for :class:`Fusion`.

    One logistic classifier per seen label (columns ``seen`` of the store's labels) on the pooled
    maps, standardised by the training rows' mean and spread. Its standardising constants come
    from held-out scores (5 folds, shuffled with ``seed``): a classifier scores the images it was
    fitted on more confidently than new ones, and the held-out spread is the one tagging meets.
    Only seen labels' columns and vectors are read.
    """
    features = torch.from_numpy(pooled_features(store, rows)).double()  # [N, C]
    labels = torch.from_numpy(store.labels(rows)[:, seen].astype(np.float64))  # [N, S]
    y, known = (labels > 0).double(), (labels != 0).double()
    mean, spread = features.mean(0), features.std(0, unbiased=False)
    spread = torch.where(spread > 0, spread, torch.ones_like(spread))
    x = (features - mean) / spread
    weight, bias = _logistic(x, y, known, c)
    held_out: list[torch.Tensor] = []
    enough = len(rows) >= 2 * _ADAPTER_FOLDS  # else the fit's own scores
    for fold, rest in adapter_folds(len(rows), _ADAPTER_FOLDS, seed) if enough else []:
        w, b = _logistic(x[rest], y[rest], known[rest], c)
        held_out.append((x[fold] @ w.T + b)[known[fold] > 0])
    scores = torch.cat(held_out) if held_out else (x @ weight.T + bias)[known > 0]
    return {
        "vectors": seen_vectors.detach().float().cpu(),
        "weight": weight.float(),
        "bias": bias.float(),
        "feature_stats": torch.stack([mean, spread]).float(),
        "score_stats": torch.tensor(score_stats(scores.numpy()), dtype=torch.float32),
    }
