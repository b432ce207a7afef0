"""Tag any image with any labels: ``Tagger.from_checkpoint(path).tag(images, labels, top_k)``.

A checkpoint names its backbone (and weights), its embedder and its model, so the tagger runs the
whole path: image -> backbone feature map -> model scores against the vectors of whatever label
names the caller types. Labels never seen in training are scored the same way as seen ones.
Decoding, label vectors and the tagging loop are :class:`mlzsl.inference.tags.ImageScorer`'s, shared
with the ONNX runtime (:mod:`mlzsl.inference.onnx_runtime`). :meth:`Tagger.from_checkpoint` picks
the engine: on a CPU with onnxruntime installed it returns an ``OnnxTagger`` of the checkpoint's
export, made on first use and cached (:func:`mlzsl.inference.export.cached_export`); with
``runtime="torch"``, or on a machine with CUDA, this module's torch :class:`Tagger`.

Checkpoints are named by path or by a short name (:data:`NAMED_CHECKPOINTS`): ``photo``, the
ready real-photo model built on first use (:mod:`mlzsl.inference.pretrained`), is the default;
``demo`` is the latest ``mlzsl demo``'s. :meth:`Tagger.tag_files` takes files and folders, decodes
in batches and skips (and lists) files that are not readable images
(:class:`mlzsl.inference.tags.TagRun`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlzsl.backbones import Backbone, create_backbone
from mlzsl.embeddings import create_embedder
from mlzsl.embeddings.base import Embedder
from mlzsl.errors import ConfigError, DataError
from mlzsl.images import RESIZE_MODES
from mlzsl.inference.checkpoint import Checkpoint, Preprocess, load_checkpoint
from mlzsl.inference.pretrained import DEFAULT_PHOTO_MODEL, PHOTO_MODELS, real_photo_checkpoint
from mlzsl.inference.tags import ImageScorer
from mlzsl.runtime import cache_home, choose_runtime, cpu_threads

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


class _Scopes:
    """The open :meth:`Tagger.worker_scope` blocks of this process, and torch's thread count
    before the first."""

    lock = threading.Lock()
    open = 0
    threads_before = 1


_SCOPES = _Scopes()


class Tagger(ImageScorer):
    """Backbone + model + embedder, ready to score images against label names (torch).

    Decoding, label vectors and the tagging loop are :class:`mlzsl.inference.tags.ImageScorer`'s.

    Args:
        model: a model following ``model(features, label_vectors) -> scores``.
        backbone: the backbone whose feature maps the model was trained on.
        embedder_spec: the embedder the model was trained with.
        preprocess: how images were decoded for that backbone.
        embed_dim: the label-vector size the model expects (checked against the embedder).
        label_prompt: a template with one ``{}`` that every label name is put in before it is
            embedded (a ready model's class names were embedded the same way), or ``None``.
        threads: CPU threads to score with, one image each (default: the cores this process may
            use, :func:`mlzsl.runtime.cpu_threads`); on a GPU one.
        device: ``"cpu"``, ``"cuda"``... (default: CUDA when available).
    """

    runtime = "torch"

    def __init__(
        self,
        *,
        model: nn.Module,
        backbone: Backbone,
        embedder_spec: str,
        preprocess: Preprocess,
        embed_dim: int,
        label_prompt: str | None = None,
        threads: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if preprocess.resize not in RESIZE_MODES:
            raise ConfigError(
                f"resize must be one of {', '.join(RESIZE_MODES)}, got {preprocess.resize!r}"
            )
        self.preprocess, self.label_prompt = preprocess, label_prompt
        self.image_size, self.resize = preprocess.image_size, preprocess.resize
        self.mean = np.asarray(preprocess.mean, np.float32)
        self.std = np.asarray(preprocess.std, np.float32)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.backbone = model.eval().to(self.device), backbone.eval().to(self.device)
        self.workers = 1 if self.device.type != "cpu" else threads or cpu_threads()
        self._embedder = create_embedder(embedder_spec)
        if self._embedder.dim != embed_dim:
            raise ConfigError(
                f"the model expects {embed_dim}-d label vectors but embedder "
                f"{self._embedder.name!r} gives {self._embedder.dim}-d vectors"
            )

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    @classmethod
    def from_checkpoint(
        cls,
        source: str | Path | Checkpoint,
        *,
        embedder: str | None = None,
        runtime: str | None = "auto",
        threads: int | None = None,
    ) -> ImageScorer:
        """A checkpoint's tagger on the fastest engine: a :class:`Tagger` (torch) or an
        :class:`~mlzsl.inference.onnx_runtime.OnnxTagger` (onnxruntime), both
        :class:`~mlzsl.inference.tags.ImageScorer`.

        Args:
            source: a file (``mlzsl train``'s ``best.pt``), a name of :data:`NAMED_CHECKPOINTS`
                (``"photo"``) or a loaded :class:`Checkpoint` (torch only: no file to key an
                export by).
            embedder: overrides the checkpoint's embedder.
            runtime: ``"auto"`` (:func:`mlzsl.runtime.choose_runtime`: onnxruntime on a CPU
                where it is installed, exported on first use and cached,
                :func:`mlzsl.inference.export.cached_export`), ``"torch"`` or ``"onnx"``.
            threads: CPU threads to score with (default: every core this process may use).
        """
        if isinstance(source, Checkpoint):
            if runtime == "onnx":
                raise ConfigError(
                    "runtime 'onnx' needs a checkpoint file or name, not a Checkpoint"
                )
            ckpt, path = source, Path(f"checkpoint of {source.model!r}")
        else:
            path = resolve_checkpoint(source)
            if choose_runtime(runtime) == "onnx":
                from mlzsl.inference.export import cached_onnx_tagger

                return cached_onnx_tagger(path, embedder=embedder, threads=threads)
            ckpt = load_checkpoint(path)
        try:
            return cls(
                model=ckpt.build_model(),
                backbone=backbone_from_identity(ckpt.backbone, ckpt.preprocess.image_size),
                embedder_spec=embedder or ckpt.embedder,
                preprocess=ckpt.preprocess,
                embed_dim=ckpt.embed_dim,
                label_prompt=ckpt.label_prompt,
                threads=threads,
            )
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    @property
    def parameters(self) -> int:
        return sum(p.numel() for m in (self.backbone, self.model) for p in m.parameters())

    @contextmanager
    def worker_scope(self) -> Iterator[object]:
        """On a CPU, one torch thread per worker while they score. Torch's thread count is
        process-wide: the first scope to open sets it, the last to close restores it."""
        if self.device.type != "cpu":
            yield None
            return
        with _SCOPES.lock:
            if _SCOPES.open == 0:
                _SCOPES.threads_before = torch.get_num_threads()
                torch.set_num_threads(1)
            _SCOPES.open += 1
        try:
            yield None
        finally:
            with _SCOPES.lock:
                _SCOPES.open -= 1
                if _SCOPES.open == 0:
                    torch.set_num_threads(_SCOPES.threads_before)

    @torch.no_grad()
    def score_pixels(self, pixels: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Scores of decoded images [n, 3, H, W] against label vectors [L, E]: float32 [n, L]."""
        features = self.backbone(torch.from_numpy(pixels).to(self.device))
        return self.model(features, torch.from_numpy(vectors).to(self.device)).cpu().numpy()


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
