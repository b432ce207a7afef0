"""Tagging with an exported model (``mlzsl export``) on onnxruntime, numpy and Pillow: no torch.

:class:`OnnxTagger` reads the preprocessing and the embedder from the ONNX file's metadata
(:mod:`mlzsl.inference.export`); decoding, label vectors and the tagging loop are
:class:`mlzsl.inference.tags.ImageScorer`'s, as for :class:`mlzsl.inference.tagger.Tagger`, and
onnxruntime scores: ``mlzsl tag --onnx model.onnx`` ranks the labels ``mlzsl tag --checkpoint``
ranks, with scores equal to 1e-4.

This module imports no torch (``tests/test_export.py`` checks it). The embedder may: ``glove50``
and ``glove:PATH`` are numpy only, while ``minilm`` (the ``photo`` models) runs
sentence-transformers, which brings torch along.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlzsl.embeddings import create_embedder
from mlzsl.embeddings.base import Embedder
from mlzsl.errors import ConfigError, DataError
from mlzsl.files import check_input
from mlzsl.images import RESIZE_MODES
from mlzsl.inference.tags import ImageScorer
from mlzsl.runtime import cpu_session, cpu_threads

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


class OnnxTagger(ImageScorer):
    """An exported model and its preprocessing, ready to score images against any labels.

    Args:
        path: an ``.onnx`` file written by ``mlzsl export``.
        threads: CPU threads to score with, one image each (default: the cores this process may
            use), each on its own thread (:func:`mlzsl.runtime.cpu_session`).
    """

    runtime = "onnx"

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        require_onnxruntime()  # a one-line error when it is missing
        self.path = Path(path)
        check_input(self.path, "ONNX model")  # a FIFO or a folder is one line
        self.workers = threads or cpu_threads()
        try:
            self.session = cpu_session(self.path)
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
        try:
            card = json.loads(meta.get("mlzsl_card", "{}"))
            self.image_size = int(meta["image_size"])
            self.mean = np.asarray(json.loads(meta["mean"]), np.float32).reshape(3)
            self.std = np.asarray(json.loads(meta["std"]), np.float32).reshape(3)
        except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise DataError(
                f"{self.path}: malformed mlzsl metadata ({type(e).__name__}: {str(e)[:80]})"
            ) from None
        resize = meta.get("resize", "squash")
        if not isinstance(card, dict) or self.image_size < 1 or resize not in RESIZE_MODES:
            raise DataError(f"{self.path}: malformed mlzsl metadata (card, image_size or resize)")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and self.std.all()):
            raise DataError(f"{self.path}: malformed mlzsl metadata (mean or std)")
        self.card: dict[str, Any] = card
        self.resize = resize
        self.embedder_spec = meta["embedder"]
        self.label_prompt = meta.get("label_prompt") or None
        self._embedder: Embedder | None = None

    @property
    def parameters(self) -> int | None:
        """The parameter count ``mlzsl export`` wrote in the card (``None`` in older exports)."""
        count = self.card.get("parameters")
        return count if isinstance(count, int) else None

    @property
    def embedder(self) -> Embedder:
        """The embedder of the exported checkpoint, built on first use."""
        if self._embedder is None:
            self._embedder = create_embedder(self.embedder_spec)
        return self._embedder

    def score_pixels(self, pixels: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Scores of images [n, 3, H, W] against label vectors [L, E]: float32 [n, L]."""
        feeds = {
            "pixels": np.ascontiguousarray(pixels, np.float32),
            "label_vectors": np.ascontiguousarray(vectors, np.float32),
        }
        return np.asarray(self.session.run(["scores"], feeds)[0], np.float32)
