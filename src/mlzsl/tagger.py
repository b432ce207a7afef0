"""Tag any image with any labels: ``Tagger.from_checkpoint(path).tag(images, labels, top_k)``.

A checkpoint names its backbone (and weights), its embedder and its model, so the tagger runs the
whole path: image -> backbone feature map -> model scores against the vectors of whatever label
names the caller types. Labels never seen in training are scored the same way as seen ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlzsl.backbones import Backbone, create_backbone
from mlzsl.checkpoint import load_checkpoint
from mlzsl.data.extract import load_image
from mlzsl.embeddings import create_embedder, embed_labels
from mlzsl.engine import model_from_checkpoint
from mlzsl.errors import ConfigError, DataError, LabelError
from mlzsl.runtime import cache_home


def parse_labels(text: str | Sequence[str]) -> list[str]:
    """``"red circle, blue star"`` or a list -> unique stripped names, in order; never empty."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = list(dict.fromkeys(item.strip() for item in items if item.strip()))
    if not names:
        raise LabelError("no labels given: pass at least one label name, e.g. 'red circle'")
    return names


def backbone_from_identity(identity: dict[str, Any], image_size: int | None) -> Backbone:
    """Rebuild the backbone a store or checkpoint names (packaged weights, file or URL)."""
    source = str(identity.get("weights", ""))
    weights = None if source.startswith("package:") or source == "none" else source
    return create_backbone(str(identity["name"]), weights=weights, image_size=image_size).eval()


@dataclass(frozen=True)
class Tag:
    """One label's score for one image."""

    label: str
    score: float


class Tagger:
    """Backbone + model + embedder, ready to score images against label names.

    Args:
        model: a model following ``model(features, label_vectors) -> scores``.
        backbone: the backbone whose feature maps the model was trained on.
        embedder_spec: the embedder the model was trained with.
        image_size: the input side the features were extracted at.
        embed_dim: the label-vector size the model expects (checked against the embedder).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        backbone: Backbone,
        embedder_spec: str,
        image_size: int,
        embed_dim: int,
    ) -> None:
        self.model, self.backbone = model.eval(), backbone.eval()
        self.embedder = create_embedder(embedder_spec)
        if self.embedder.dim != embed_dim:
            raise ConfigError(
                f"the model expects {embed_dim}-d label vectors but embedder "
                f"{self.embedder.name!r} gives {self.embedder.dim}-d vectors"
            )
        self.image_size = image_size

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, embedder: str | None = None) -> Tagger:
        """Load a checkpoint written by ``mlzsl train`` (``embedder`` overrides its embedder)."""
        ckpt = load_checkpoint(path)
        model = model_from_checkpoint(ckpt)
        image_size = int(ckpt.get("image_size") or ckpt["backbone"].get("image_size"))
        try:
            return cls(
                model=model,
                backbone=backbone_from_identity(ckpt["backbone"], image_size),
                embedder_spec=embedder or ckpt["embedder"],
                image_size=image_size,
                embed_dim=int(ckpt["model_args"]["embed_dim"]),
            )
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def load_images(self, images: Sequence[str | Path]) -> torch.Tensor:
        """Decode and normalise image files: [n, 3, S, S]; a bad file is an error naming it."""
        spec = self.backbone.spec
        mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
        arrays = []
        for image in images:
            try:
                arrays.append(load_image(Path(image), self.image_size, mean, std))
            except FileNotFoundError:
                raise DataError(f"{image}: image not found") from None
            except Exception as e:  # PIL raises several types for non-images
                raise DataError(f"{image}: not a readable image ({type(e).__name__})") from None
        return torch.from_numpy(np.stack(arrays))

    @torch.no_grad()
    def scores(self, images: Sequence[str | Path], labels: Sequence[str]) -> np.ndarray:
        """Scores of every image against every label: float32 [n, L]."""
        names = parse_labels(labels)
        vectors = torch.from_numpy(embed_labels(names, self.embedder))  # [L, E]
        feats = self.backbone(self.load_images(images))  # [n, C, H, W]
        return self.model(feats, vectors).numpy()  # [n, L]

    def tag(
        self, images: Sequence[str | Path], labels: str | Sequence[str], top_k: int = 5
    ) -> list[list[Tag]]:
        """The ``top_k`` best labels per image, best first (ties: the earlier label first)."""
        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        names = parse_labels(labels)
        scores = self.scores(images, names)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        return [
            [Tag(names[j], float(row[j])) for j in idx]
            for row, idx in zip(scores, order, strict=True)
        ]


def _latest_demo_file() -> Path:
    return cache_home() / "latest_demo.txt"


def remember_demo_checkpoint(path: str | Path) -> None:
    """Record ``path`` as the checkpoint ``mlzsl tag`` uses without ``--checkpoint``."""
    marker = _latest_demo_file()
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(str(Path(path).resolve()))
    tmp.replace(marker)


def latest_demo_checkpoint() -> Path:
    """The checkpoint of the latest ``mlzsl demo``; a clear error when there is none."""
    try:
        return Path(_latest_demo_file().read_text().strip())
    except OSError:
        raise DataError("no --checkpoint given and no demo has run yet: run `mlzsl demo`") from None
