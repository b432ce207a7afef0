"""An on-disk cache of label vectors, keyed by the embedder's identity and the exact label list.

One ``.npy`` file per (``embedder.name``, labels in order): its name is the sha256 of a JSON of
both, so reordering, renaming or adding a label, or changing the embedder's file, gives a new
key. Files are written atomically (a temporary file, then :func:`os.replace`), so a crashed or
concurrent writer never leaves half a file under a real key; a file that still fails to load or
has the wrong shape is recomputed and overwritten. The cache never changes a result: vectors are
cached unnormalised and ``normalize`` is applied afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlzsl.embeddings.base import Embedder, check_labels, l2_normalize
from mlzsl.embeddings.registry import create_embedder
from mlzsl.labels import LabelSet

CACHE_ENV = "MLZSL_CACHE"

_log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$MLZSL_CACHE/embeddings`` if ``MLZSL_CACHE`` is set, else ``~/.cache/mlzsl/embeddings``."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "mlzsl"
    return base / "embeddings"


def cache_key(embedder_name: str, labels: Sequence[str]) -> str:
    """The sha256 (hex) of a JSON of the embedder's name and the label list, in order."""
    payload = json.dumps(
        {"embedder": embedder_name, "labels": list(labels)},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def embed_labels(
    labels: Sequence[str] | LabelSet,
    embedder: Embedder | str,
    *,
    cache_dir: str | Path | None = None,
    normalize: bool = False,
) -> np.ndarray:
    """Label vectors from the cache, or from ``embedder`` (then stored in the cache).

    Args:
        labels: L label names, or a :class:`LabelSet` (its names, in column order).
        embedder: an embedder, or a spec string for :func:`create_embedder`.
        cache_dir: folder of the cache; ``None`` uses :func:`default_cache_dir`.
        normalize: scale each vector to unit L2 norm (after the cache, which holds raw vectors).

    Returns:
        float32 [L, E].

    Raises:
        LabelError: a label has no vector (see :meth:`Embedder.embed`).
    """
    names = list(labels.names) if isinstance(labels, LabelSet) else check_labels(labels)
    if isinstance(embedder, str):
        embedder = create_embedder(embedder)
    directory = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    path = directory / f"{cache_key(embedder.name, names)}.npy"
    vectors = _read_cached(path, (len(names), embedder.dim))
    if vectors is None:
        vectors = np.asarray(embedder.embed(names), dtype=np.float32)  # [L, E]
        _write_atomic(path, vectors)
    return l2_normalize(vectors) if normalize else vectors


def _read_cached(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The cached float32 array of ``shape``, or ``None`` when absent or unusable."""
    if not path.is_file():
        return None
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        _log.warning("recomputing label vectors: cache file %s is unreadable (%s)", path, e)
        return None
    if vectors.dtype != np.float32 or vectors.shape != shape or not np.isfinite(vectors).all():
        _log.warning("recomputing label vectors: cache file %s holds a wrong array", path)
        return None
    return vectors


def _write_atomic(path: Path, vectors: np.ndarray) -> None:
    """Save ``vectors`` to ``path`` via a temporary file; a failure only logs a warning."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, vectors)
        os.replace(tmp, path)
    except OSError as e:
        _log.warning("label vectors not cached: cannot write %s (%s)", path, e.strerror or e)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
