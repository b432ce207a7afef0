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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from mlzsl.backbones import same_maps
from mlzsl.config import TrainConfig
from mlzsl.errors import ConfigError
from mlzsl.inference.checkpoint import Checkpoint, Fusion, load_checkpoint
from mlzsl.inference.pretrained import PHOTO_MODELS, real_photo_checkpoint
from mlzsl.store.feature_store import FeatureStore

__all__ = ["Teacher", "load_teacher", "score_stats"]


@dataclass
class Teacher:
    """A ready model whose knowledge a run transfers."""

    name: str
    checkpoint: Checkpoint
    model: nn.Module
    """Frozen, in eval mode: ``model(features, label_vectors) -> scores``."""

    def fusion(
        self, weight: float, student_stats: tuple[float, float], stats: tuple[float, float]
    ) -> Fusion:
        """The checkpoint record of a head fused with this teacher."""
        return Fusion(
            weight=weight,
            student_stats=student_stats,
            teacher_stats=stats,
            teacher=self.name,
            teacher_model=self.checkpoint.model,
            teacher_args=self.checkpoint.model_args,
            teacher_state=self.checkpoint.state_dict,
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
