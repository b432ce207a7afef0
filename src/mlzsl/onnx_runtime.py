"""Tagging with an exported model (``mlzsl export``) on onnxruntime, numpy and Pillow: no torch.

:class:`OnnxTagger` reads the preprocessing and the embedder from the ONNX file's metadata
(:mod:`mlzsl.export`), decodes images with the same code as :class:`mlzsl.tagger.Tagger`
(``mlzsl/backbones/images.py``, loaded on its own so that the torch-importing
``mlzsl.backbones`` package is never imported), embeds labels with the checkpoint's embedder and
scores them with onnxruntime: ``mlzsl tag --onnx model.onnx`` ranks the labels
``mlzsl tag --checkpoint`` ranks, with scores equal to 1e-4.

This module imports no torch (``tests/test_export.py`` checks it). The embedder may: ``glove50``
and ``glove:PATH`` are numpy only, while ``minilm`` (the ``photo`` models) runs
sentence-transformers, which brings torch along.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mlzsl.embeddings import create_embedder, embed_labels
from mlzsl.errors import ConfigError, DataError
from mlzsl.tags import TagRun, same_size_runs, tag_paths

__all__ = ["OnnxTagger", "require_onnxruntime"]


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` package, or a one-line error saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "tagging with --onnx needs onnxruntime: pip install 'mlzsl[export]'"
        ) from None
    return onnxruntime


def _images_module() -> ModuleType:
    """``mlzsl/backbones/images.py`` without ``mlzsl/backbones/__init__.py`` (which imports
    torch): the one image-decoding code of the package, loaded as a module of its own."""
    name = "mlzsl._onnx_images"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parent / "backbones" / "images.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - the file ships with the package
        raise DataError(f"{path}: cannot load the image decoder")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class OnnxTagger:
    """An exported model and its preprocessing, ready to score images against any labels.

    Args:
        path: an ``.onnx`` file written by ``mlzsl export``.
        threads: onnxruntime's intra-op threads (``None``: its default).
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        ort = require_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: ONNX model not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own types for a bad file
            raise DataError(
                f"{self.path}: not a readable ONNX model ({type(e).__name__})"
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [k for k in ("image_size", "mean", "std", "embedder") if k not in meta]
        if missing:
            raise DataError(
                f"{self.path}: not an mlzsl export (metadata lacks {', '.join(missing)})"
            )
        self.card: dict[str, Any] = json.loads(meta.get("mlzsl_card", "{}"))
        self.image_size = int(meta["image_size"])
        self.resize = meta.get("resize", "squash")
        self.mean = np.asarray(json.loads(meta["mean"]), np.float32)
        self.std = np.asarray(json.loads(meta["std"]), np.float32)
        self.embedder_spec = meta["embedder"]
        self.label_prompt = meta.get("label_prompt") or None
        self._embedder: Any = None
        self._images = _images_module()

    @property
    def embedder(self) -> Any:
        """The embedder of the exported checkpoint, built on first use."""
        if self._embedder is None:
            self._embedder = create_embedder(self.embedder_spec)
        return self._embedder

    def label_vectors(self, labels: Sequence[str]) -> np.ndarray:
        """Vectors of ``labels`` (prompt applied, as the tagger does): float32 [L, E]."""
        prompt = self.label_prompt
        texts = [prompt.format(n) for n in labels] if prompt else list(labels)
        return np.ascontiguousarray(embed_labels(texts, self.embedder), dtype=np.float32)

    def load_image(self, image: str | Path) -> np.ndarray:
        """One decoded, normalised image: float32 [3, H, W]; a bad file is an error naming it."""
        try:
            return self._images.load_image(
                Path(image), self.image_size, self.mean, self.std, resize=self.resize
            )
        except FileNotFoundError:
            raise DataError(f"{image}: image not found") from None
        except IsADirectoryError:
            raise DataError(f"{image}: a folder, not an image") from None
        except Exception as e:  # PIL raises several types for non-images
            raise DataError(f"{image}: not a readable image ({type(e).__name__})") from None

    def score_pixels(self, pixels: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Scores of images [n, 3, H, W] against label vectors [L, E]: float32 [n, L]."""
        feeds = {
            "pixels": np.ascontiguousarray(pixels, np.float32),
            "label_vectors": np.ascontiguousarray(vectors, np.float32),
        }
        return np.asarray(self.session.run(["scores"], feeds)[0], np.float32)

    def score_images(self, images: Sequence[np.ndarray], vectors: np.ndarray) -> np.ndarray:
        """Scores of decoded images (sizes may differ; equal sizes in a row go together)."""
        parts = [self.score_pixels(run, vectors) for run in same_size_runs(images)]
        return np.concatenate(parts) if parts else np.zeros((0, len(vectors)), np.float32)

    def scores(self, images: Sequence[str | Path], labels: Sequence[str]) -> np.ndarray:
        """Scores of every image file against every label: float32 [n, L]."""
        vectors = self.label_vectors(list(labels))
        return self.score_images([self.load_image(i) for i in images], vectors)

    def tag_files(
        self,
        paths: Iterable[str | Path],
        labels: str | Sequence[str],
        *,
        top_k: int = 5,
        threshold: float | None = None,
        batch_size: int = 1,
    ) -> TagRun:
        """Tag files and folders as :meth:`mlzsl.tagger.Tagger.tag_files` does (unreadable files
        skipped and listed; ranking by :func:`mlzsl.tags.rank_row`)."""
        return tag_paths(
            self,
            paths,
            labels,
            top_k=top_k,
            threshold=threshold,
            batch_size=batch_size,
        )
