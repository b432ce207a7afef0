"""The computing side of ``mlzsl serve``, without HTTP: one model, cached label vectors, limits.

:class:`TagService` is built once per server from a checkpoint. :meth:`TagService.tag` decodes
uploaded files from their file objects (never from a path the client names, never unpickled),
scores them against the label vectors of the request's label list (kept in a small LRU cache, so a
page that sends the same labels again skips the embedder) and returns the JSON shape of
``mlzsl tag --json`` (:meth:`mlzsl.inference.tags.TagRun.to_dict`) plus ``checkpoint``, ``files``
and ``timing``. Up to ``tagger.workers`` requests score at once, each on one engine thread (on a
CPU, requests side by side scale better than threads inside one request); the label-vector cache
and the embedder take one request at a time.

A request the service refuses raises :class:`ApiError` (an HTTP status and one line); the web
layer (:mod:`mlzsl.server.app`) turns it into ``{"error": "..."}``.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from mlzsl.errors import ConfigError, MlzslError
from mlzsl.images import ImageTooLarge
from mlzsl.inference.card import model_card as shared_model_card
from mlzsl.inference.checkpoint import Checkpoint, load_checkpoint
from mlzsl.inference.tagger import NAMED_CHECKPOINTS, Tagger, resolve_checkpoint
from mlzsl.inference.tags import ImageScorer, TagRun, rank_row

__all__ = ["ApiError", "Limits", "TagService", "Upload", "model_card"]

MB = 1024 * 1024
CACHED_LABEL_ROWS = 20_000  # label vectors kept in memory, all cached lists together


@dataclass(frozen=True)
class Limits:
    """What one request may hold; anything over a limit is refused with a 4xx, never served.

    Attributes:
        max_file_bytes: bytes of one uploaded file (413 over it).
        max_files: files in one request (413 over it).
        max_request_bytes: bytes of a whole request body, checked while it streams in (413).
        max_pixels: width × height of one image, read from its header before decoding: a guard
            against decompression bombs (413).
        max_labels: labels in one request (400 over it).
        max_label_chars: characters of one label (400 over it).
        max_queue: tag requests received or waiting for the model at once; more get 503.
    """

    max_file_bytes: int = 20 * MB
    max_files: int = 16
    max_request_bytes: int = 64 * MB
    max_pixels: int = 40_000_000
    max_labels: int = 2000
    max_label_chars: int = 100
    max_queue: int = 32

    def __post_init__(self) -> None:
        bad = [f"{k}={v}" for k, v in asdict(self).items() if not isinstance(v, int) or v < 1]
        if bad:
            raise ConfigError(f"server limits must be positive integers: {', '.join(bad)}")

    def to_dict(self) -> dict[str, int]:
        """The limits as JSON (``GET /api/model`` shows them, so the page can tell the user)."""
        return asdict(self)


class ApiError(Exception):
    """A request the server refuses: an HTTP status and one line saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    """One uploaded file: the name the client gave (cleaned) and its content as a file object."""

    name: str
    file: BinaryIO
    size: int


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_name(name: str | None, index: int, taken: set[str]) -> str:
    """A display name for an uploaded file: its last path part, no control characters, at most
    100 characters, ``image-N`` when empty, made unique with `` (2)``, `` (3)``, ..."""
    base = _CONTROL.sub("", re.split(r"[\\/]", name or "")[-1]).strip()[:100] or f"image-{index}"
    unique, n = base, 1
    while unique in taken:
        n += 1
        unique = f"{base} ({n})"
    taken.add(unique)
    return unique


def model_card(ckpt: Checkpoint, path: Path, tagger: ImageScorer, name: str) -> dict[str, Any]:
    """What ``GET /api/model`` shows: the shared card (:func:`mlzsl.inference.card.model_card`) with
    the loaded tagger's embedder (``--embedder`` may override the checkpoint's), its engine and
    its parameter count, backbone included."""
    card = shared_model_card(ckpt, path=path, name=name)
    card["backbone"]["image_size"] = tagger.image_size
    card["embedder"] = tagger.embedder.spec
    card["runtime"] = tagger.runtime
    card["parameters"] = tagger.parameters
    return card


class TagService:
    """One loaded model behind the checks of :class:`Limits`; thread-safe.

    Args:
        tagger: the loaded model.
        checkpoint: the file it was loaded from (reported with every answer).
        card: its model card (:func:`model_card`).
        limits: what one request may hold.
        label_cache: how many label lists keep their vectors (least recently used dropped).
    """

    def __init__(
        self,
        tagger: ImageScorer,
        *,
        checkpoint: Path,
        card: dict[str, Any],
        limits: Limits | None = None,
        label_cache: int = 32,
    ) -> None:
        self.tagger, self.checkpoint, self.card = tagger, checkpoint, card
        self.limits = limits or Limits()
        self._vectors: OrderedDict[tuple[str, ...], np.ndarray] = OrderedDict()
        self._label_cache = label_cache
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(
        cls,
        spec: str | Path | None = None,
        *,
        embedder: str | None = None,
        limits: Limits | None,
        runtime: str | None = "auto",
        threads: int | None = None,
    ) -> TagService:
        """Load the checkpoint a ``--checkpoint`` value names (``None``: the real-photo model) on
        ``runtime`` (:meth:`mlzsl.inference.tagger.Tagger.from_checkpoint`)."""
        path = resolve_checkpoint(spec)
        ckpt = load_checkpoint(path)
        tagger = Tagger.from_checkpoint(path, embedder=embedder, runtime=runtime, threads=threads)
        named = spec is None or str(spec) in NAMED_CHECKPOINTS
        name = str(spec or "photo") if named else path.name
        card = model_card(ckpt, path, tagger, name)
        return cls(tagger, checkpoint=path, card=card, limits=limits)

    # -- checks of a request's fields (cheap; the web layer calls them before queueing)
    def parse_labels(self, text: str | None) -> list[str]:
        """Comma- or line-separated label names -> unique names in order, within the limits."""
        items = re.split(r"[,\n]", text or "")
        names = list(dict.fromkeys(" ".join(item.split()) for item in items if item.strip()))
        if not names:
            raise ApiError(400, "no labels given: send labels=, comma-separated, e.g. 'dog, car'")
        if len(names) > self.limits.max_labels:
            raise ApiError(400, f"too many labels: {len(names)} (at most {self.limits.max_labels})")
        for name in names:
            if len(name) > self.limits.max_label_chars:
                raise ApiError(
                    400,
                    f"label too long: {name[:40]!r}... has {len(name)} characters "
                    f"(at most {self.limits.max_label_chars})",
                )
            if _CONTROL.search(name):
                raise ApiError(400, f"label {name[:40]!r} holds control characters")
        return names

    def parse_top_k(self, text: str | None, n_labels: int) -> int:
        """``top_k`` (default 5) as an integer of at least 1, capped at the number of labels."""
        if text is None or not text.strip():
            return min(5, n_labels)
        try:
            top_k = int(text)
        except ValueError:
            raise ApiError(400, f"top_k must be a whole number, got {text[:20]!r}") from None
        if top_k < 1:
            raise ApiError(400, f"top_k must be at least 1, got {top_k}")
        return min(top_k, n_labels)

    def check_uploads(self, uploads: Sequence[Upload]) -> None:
        """Refuse a request with no file, too many files or a file over the size limit."""
        if not uploads:
            raise ApiError(
                400, "no image file: send one or more files in the multipart field files"
            )
        if len(uploads) > self.limits.max_files:
            raise ApiError(
                413, f"too many files: {len(uploads)} (at most {self.limits.max_files} a request)"
            )
        for upload in uploads:
            if upload.size > self.limits.max_file_bytes:
                raise ApiError(
                    413,
                    f"{upload.name}: file too big: {upload.size / MB:.1f} MB "
                    f"(at most {self.limits.max_file_bytes / MB:g} MB a file)",
                )

    # -- the work (slow: run it off the event loop)
    def label_vectors(self, labels: Sequence[str]) -> np.ndarray:
        """The vectors [L, E] of ``labels``, from the cache or the embedder; an unknown word is a
        400.

        Kept in memory only (at most ``label_cache`` lists and :data:`CACHED_LABEL_ROWS` rows):
        unlike :meth:`Tagger.label_vectors`, whose cache on disk grows by a file per new label
        list, what clients send never reaches the disk. A checkpoint's ``label_prompt``
        (:mod:`mlzsl.inference.pretrained`) is applied to each name first, as for its class names.
        """
        key = tuple(labels)
        if key in self._vectors:
            self._vectors.move_to_end(key)
            return self._vectors[key]
        try:
            vectors = self.tagger.label_vectors(labels, disk_cache=False)  # [L, E]
        except MlzslError as e:
            raise ApiError(400, str(e)) from None
        self._vectors[key] = vectors
        while len(self._vectors) > self._label_cache or (
            len(self._vectors) > 1 and sum(len(k) for k in self._vectors) > CACHED_LABEL_ROWS
        ):
            self._vectors.popitem(last=False)
        return vectors

    def decode(self, upload: Upload) -> np.ndarray:
        """One upload -> normalised pixels [3, S, S]; over the pixel limit is a 413; a file that
        is not an image raises :class:`ValueError` with the reason."""
        upload.file.seek(0)
        try:
            return self.tagger.decode(upload.file, max_pixels=self.limits.max_pixels)
        except (ImageTooLarge, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            detail = str(e) if isinstance(e, ImageTooLarge) else "image too large"
            raise ApiError(413, f"{upload.name}: {detail} (decompression-bomb guard)") from None
        except Exception as e:  # PIL raises several types for non-images
            raise ValueError(f"not a readable image ({type(e).__name__})") from None

    def tag(self, uploads: Sequence[Upload], labels: Sequence[str], top_k: int) -> dict[str, Any]:
        """Tag the uploads with ``labels``: the ``mlzsl tag --json`` shape plus ``checkpoint``
        (its name, never its path on this machine), ``files`` (the names, in upload order) and
        ``timing`` (milliseconds).

        Files that are not images are skipped and listed, as ``mlzsl tag`` does; when none is
        readable the request is a 400.
        """
        self.check_uploads(uploads)
        waited = time.perf_counter()
        with self._lock:  # the label-vector cache and the embedder: one request at a time
            started = time.perf_counter()
            run = TagRun(labels=list(labels))
            vectors = self.label_vectors(run.labels)
        embedded = time.perf_counter()
        names, pixels = [], []
        for upload in uploads:
            try:
                pixels.append(self.decode(upload))
                names.append(upload.name)
            except ValueError as e:
                run.skipped.append((Path(upload.name), str(e)))
        if not pixels:
            first, why = run.skipped[0]
            raise ApiError(400, f"no readable image among {len(uploads)} file(s); {first}: {why}")
        decoded = time.perf_counter()
        with self.tagger.worker_scope():
            scores = self.tagger.score_images(pixels, vectors)  # [n, L]
        for name, row in zip(names, scores, strict=True):
            run.tags[Path(name)] = rank_row(row, run.labels, top_k)
        scored = time.perf_counter()
        run.seconds = scored - started
        timing = {
            "queue_ms": (started - waited) * 1e3,
            "labels_ms": (embedded - started) * 1e3,
            "decode_ms": (decoded - embedded) * 1e3,
            "score_ms": (scored - decoded) * 1e3,
        }
        return {
            "checkpoint": self.card["name"],
            **run.to_dict(),
            "files": [upload.name for upload in uploads],
            "timing": {key: round(value, 2) for key, value in timing.items()},
        }

    def warm_up(self) -> None:
        """Load the embedder and run the backbone once, so the first request does not pay."""
        side, dim = self.tagger.image_size, self.tagger.embedder.dim
        with self._lock:
            pixels = np.zeros((1, 3, side, side), np.float32)
            self.tagger.score_pixels(pixels, np.ones((1, dim), np.float32))
            try:
                self.tagger.embedder.embed(["photo"])  # a sentence encoder loads its model now
            except MlzslError:  # an embedder without that word: it loads on first use then
                pass
