"""Tag any image with any labels: ``Tagger.from_checkpoint(path).tag(images, labels, top_k)``.

A checkpoint names its backbone (and weights), its embedder and its model, so the tagger runs the
whole path: image -> backbone feature map -> model scores against the vectors of whatever label
names the caller types. Labels never seen in training are scored the same way as seen ones.

Checkpoints are named by path or by a short name (:data:`NAMED_CHECKPOINTS`): ``photo``, the
ready real-photo model built on first use (:mod:`mlzsl.pretrained`), is the default; ``demo`` is
the latest ``mlzsl demo``'s. :meth:`Tagger.tag_files` takes files and folders, decodes in
batches and skips (and lists) files that are not readable images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from mlzsl.backbones import Backbone, create_backbone
from mlzsl.backbones.images import RESIZE_MODES, load_image
from mlzsl.checkpoint import load_checkpoint, model_from_checkpoint
from mlzsl.embeddings import create_embedder, embed_labels
from mlzsl.embeddings.base import check_labels
from mlzsl.errors import ConfigError, DataError
from mlzsl.pretrained import DEFAULT_PHOTO_MODEL, PHOTO_MODELS, real_photo_checkpoint
from mlzsl.runtime import cache_home
from mlzsl.tags import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from mlzsl.tags import Tag as Tag
from mlzsl.tags import TagRun, parse_labels, rank_row, same_size_runs, tag_paths
from mlzsl.tags import collect_images as collect_images
from mlzsl.tags import read_labels_file as read_labels_file

DEFAULT_CHECKPOINT = DEFAULT_PHOTO_MODEL
NAMED_CHECKPOINTS = {
    **{name: recipe.description for name, recipe in PHOTO_MODELS.items()},
    "demo": "the checkpoint of the latest `mlzsl demo` (scenes: coloured shapes)",
}
"""Checkpoints known by name: the ready real-photo models (built on first use) and the demo's."""


def resolve_checkpoint(spec: str | Path | None) -> Path:
    """The checkpoint file a ``--checkpoint`` value names: a path or a name of
    :data:`NAMED_CHECKPOINTS` (``None``: :data:`DEFAULT_CHECKPOINT`)."""
    name = DEFAULT_CHECKPOINT if spec is None else str(spec)
    if name in PHOTO_MODELS:
        return real_photo_checkpoint(name)
    if name == "demo":
        return latest_demo_checkpoint()
    path = Path(name).expanduser()
    if not path.is_file():
        known = ", ".join(NAMED_CHECKPOINTS)
        raise DataError(f"{path}: checkpoint not found (give a .pt file or one of: {known})")
    return path


def backbone_from_identity(identity: dict[str, Any], image_size: int | None) -> Backbone:
    """Rebuild the backbone a store or checkpoint names (packaged weights, file or URL)."""
    source = str(identity.get("weights", ""))
    weights = None if source.startswith("package:") or source == "none" else source
    return create_backbone(str(identity["name"]), weights=weights, image_size=image_size).eval()


class Tagger:
    """Backbone + model + embedder, ready to score images against label names.

    Args:
        model: a model following ``model(features, label_vectors) -> scores``.
        backbone: the backbone whose feature maps the model was trained on.
        embedder_spec: the embedder the model was trained with.
        image_size: the input side the features were extracted at.
        embed_dim: the label-vector size the model expects (checked against the embedder).
        resize: how images are resized (:data:`mlzsl.backbones.images.RESIZE_MODES`).
        label_prompt: a template with one ``{}`` that every label name is put in before it is
            embedded (a ready model's class names were embedded the same way), or ``None``.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        backbone: Backbone,
        embedder_spec: str,
        image_size: int,
        embed_dim: int,
        resize: str = "squash",
        label_prompt: str | None = None,
    ) -> None:
        if resize not in RESIZE_MODES:
            raise ConfigError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        self.resize, self.label_prompt = resize, label_prompt
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
        """Load a checkpoint: a file (``mlzsl train``'s ``best.pt``) or a name of
        :data:`NAMED_CHECKPOINTS` (``"photo"``); ``embedder`` overrides its embedder."""
        path = resolve_checkpoint(path)
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
                resize=str(ckpt.get("resize") or "squash"),
                label_prompt=ckpt.get("label_prompt"),
            )
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def decode(self, source: Path | BinaryIO, *, max_pixels: int | None = None) -> np.ndarray:
        """Pixels of an image file or file object as this model takes them: float32 [3, H, W].

        Raises what :func:`mlzsl.backbones.images.load_image` raises (PIL's errors on a bad file,
        ``ImageTooLarge`` over ``max_pixels``).
        """
        spec = self.backbone.spec
        mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
        return load_image(
            source, self.image_size, mean, std, max_pixels=max_pixels, resize=self.resize
        )

    def load_image(self, image: str | Path) -> np.ndarray:
        """One decoded, normalised image: float32 [3, H, W]; a bad file is an error naming it."""
        try:
            return self.decode(Path(image))
        except FileNotFoundError:
            raise DataError(f"{image}: image not found") from None
        except IsADirectoryError:
            raise DataError(f"{image}: a folder, not an image") from None
        except Exception as e:  # PIL raises several types for non-images
            raise DataError(f"{image}: not a readable image ({type(e).__name__})") from None

    def load_images(self, images: Sequence[str | Path]) -> list[np.ndarray]:
        """Decode and normalise image files, each [3, H, W]; a bad file is an error naming it."""
        return [self.load_image(image) for image in images]

    def label_texts(self, labels: Sequence[str]) -> list[str]:
        """What is embedded for each label name: the name put in :attr:`label_prompt`, if any."""
        prompt = self.label_prompt
        return [prompt.format(name) for name in labels] if prompt else list(labels)

    def label_vectors(self, labels: Sequence[str], *, disk_cache: bool = True) -> torch.Tensor:
        """The embedder's vectors of ``labels`` (prompt applied): float32 [L, E].

        ``disk_cache`` keeps them in the embedding cache on disk (a server answering anyone
        passes ``False``, so what clients send never reaches the disk).
        """
        texts = self.label_texts(labels)
        if disk_cache:
            return torch.from_numpy(embed_labels(texts, self.embedder))
        return torch.from_numpy(np.asarray(self.embedder.embed(check_labels(texts)), np.float32))

    @torch.no_grad()
    def score_pixels(self, pixels: torch.Tensor, vectors: torch.Tensor) -> np.ndarray:
        """Scores of decoded images [n, 3, H, W] against label vectors [L, E]: float32 [n, L]."""
        return self.model(self.backbone(pixels), vectors).numpy()

    def score_images(self, images: Sequence[np.ndarray], vectors: torch.Tensor) -> np.ndarray:
        """Scores of decoded images (each [3, H, W], sizes may differ): float32 [n, L].

        Images of one size in a row go through the backbone together.
        """
        parts = [
            self.score_pixels(torch.from_numpy(run), vectors) for run in same_size_runs(images)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(vectors)), np.float32)

    @torch.no_grad()
    def scores(self, images: Sequence[str | Path], labels: Sequence[str]) -> np.ndarray:
        """Scores of every image against every label: float32 [n, L]."""
        vectors = self.label_vectors(parse_labels(labels))  # [L, E]
        return self.score_images(self.load_images(images), vectors)  # [n, L]

    def tag(
        self, images: Sequence[str | Path], labels: str | Sequence[str], top_k: int = 5
    ) -> list[list[Tag]]:
        """The ``top_k`` best labels per image, best first (ties: the earlier label first)."""
        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        names = parse_labels(labels)
        return [rank_row(row, names, top_k, None) for row in self.scores(images, names)]

    def tag_files(
        self,
        paths: Iterable[str | Path],
        labels: str | Sequence[str],
        *,
        top_k: int = 5,
        threshold: float | None = None,
        batch_size: int = 1,
        show_progress: bool = False,
    ) -> TagRun:
        """Tag files and folders (see :func:`collect_images`), ``batch_size`` images per backbone
        call (1 is fastest on a CPU).

        A path that is not a readable image is skipped and listed in ``TagRun.skipped``, never an
        error; ``threshold`` drops tags scoring below it.
        """
        return tag_paths(
            self,
            paths,
            labels,
            top_k=top_k,
            threshold=threshold,
            batch_size=batch_size,
            show_progress=show_progress,
        )


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
