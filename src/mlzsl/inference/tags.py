"""Tagging without torch: label lists, image lists, tag results and :class:`ImageScorer`.

:mod:`mlzsl.inference.tagger` (torch) and :mod:`mlzsl.inference.onnx_runtime` (onnxruntime) are both
an :class:`ImageScorer`, which holds the decoding, the label vectors and the tagging loop
(:func:`score_files`) once, so a label list is parsed, a folder searched, a bad file skipped and a
score row ranked the same way on either path; :func:`mlzsl.inference.evaluation.evaluate_folder`
runs the same loop.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from mlzsl.embeddings import embed_labels
from mlzsl.embeddings.base import check_labels
from mlzsl.errors import ConfigError, DataError, LabelError
from mlzsl.files import check_input, open_input
from mlzsl.images import load_image
from mlzsl.labels import label_texts, read_vocabulary
from mlzsl.progress import progress
from mlzsl.runtime import ordered_map

if TYPE_CHECKING:
    from mlzsl.embeddings.base import Embedder

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageScorer",
    "Tag",
    "TagRun",
    "collect_images",
    "parse_labels",
    "rank_row",
    "read_labels_file",
    "score_files",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
"""The file endings a folder given to :meth:`Tagger.tag_files` is searched for (any case)."""


def parse_labels(text: str | Sequence[str]) -> list[str]:
    """``"red circle, blue star"`` or a list -> unique stripped names, in order; never empty."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = list(dict.fromkeys(item.strip() for item in items if item.strip()))
    if not names:
        raise LabelError("no labels given: pass at least one label name, e.g. 'red circle'")
    return names


def read_labels_file(path: str | Path) -> list[str]:
    """Label names from a file, one per line; blank lines and lines starting with ``#`` skipped."""
    path = check_input(path, "labels file")  # a FIFO would block the read forever
    return parse_labels([n for n in read_vocabulary(path) if not n.startswith("#")])


def collect_images(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders as their image files (recursive, sorted); missing paths too.

    A missing path is kept, so the caller reports it with the unreadable files; a folder with no
    image file is an error.
    """
    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            images = sorted(
                p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not images:
                raise DataError(f"{item}: folder holds no image file ({', '.join(IMAGE_SUFFIXES)})")
            found += images
        else:
            found.append(item)
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Tag:
    """One label's score for one image."""

    label: str
    score: float


@dataclass
class TagRun:
    """What :meth:`Tagger.tag_files` found: ranked tags per readable image, and the skipped files.

    Attributes:
        labels: the label names scored, in the order given.
        tags: image -> its tags, best first (``top_k`` of them, at least ``threshold``).
        skipped: (file, reason) of every path that is not a readable image.
        seconds: wall time of decoding and scoring.
    """

    labels: list[str]
    tags: dict[Path, list[Tag]] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``mlzsl tag --json``: labels, tags per image, skipped, seconds."""
        return {
            "labels": self.labels,
            "images": {
                str(image): [{"label": t.label, "score": t.score} for t in tags]
                for image, tags in self.tags.items()
            },
            "skipped": [{"image": str(image), "reason": why} for image, why in self.skipped],
            "seconds": self.seconds,
        }


def rank_row(
    row: np.ndarray, names: Sequence[str], top_k: int, threshold: float | None = None
) -> list[Tag]:
    """The ``top_k`` best labels of one score row [L], best first (ties: the earlier label first);
    with ``threshold``, only those scoring at least that."""
    order = np.argsort(-row, kind="stable")[:top_k]
    return [Tag(names[j], float(row[j])) for j in order if threshold is None or row[j] >= threshold]


def same_size_runs(images: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    """Consecutive images of one size stacked together: [n, 3, H, W] per run, in order."""
    start = 0
    while start < len(images):
        end = start + 1
        while end < len(images) and images[end].shape == images[start].shape:
            end += 1
        yield np.stack(images[start:end])
        start = end


class ImageScorer(ABC):
    """Decode images, embed labels, score them: what the torch
    :class:`mlzsl.inference.tagger.Tagger` and the torch-free
    :class:`mlzsl.inference.onnx_runtime.OnnxTagger` share.

    A subclass sets the preprocessing attributes and implements :meth:`score_pixels`; decoding,
    label vectors, batching by size and the tagging loop (:func:`score_files`) are written here
    once, so both runtimes read, skip and rank images the same way.

    Attributes:
        image_size: the side S in pixels (the shorter side with ``resize="shorter"``).
        resize: one of :data:`mlzsl.images.RESIZE_MODES`.
        mean: per-channel mean, float32 [3].
        std: per-channel divisor, float32 [3].
        label_prompt: a template with one ``{}`` every label name is put in before it is
            embedded, or ``None``.
        runtime: the engine that scores: ``"torch"`` or ``"onnx"``.
        workers: batches decoded and scored at once by :func:`score_files`, each on its own
            thread (one engine thread each: on a CPU, images side by side scale better than
            threads inside one image, and do not collapse when another job takes a core).
    """

    image_size: int
    resize: str
    mean: np.ndarray
    std: np.ndarray
    label_prompt: str | None
    runtime: str
    workers: int = 1

    def worker_scope(self) -> AbstractContextManager[object]:
        """What :func:`score_files` holds while its workers run (torch: one thread each)."""
        return nullcontext()

    @property
    @abstractmethod
    def parameters(self) -> int | None:
        """Parameters of the whole tagging path, backbone included (``None``: not known)."""

    @property
    @abstractmethod
    def embedder(self) -> Embedder:
        """The label embedder the model was trained with."""

    @abstractmethod
    def score_pixels(self, pixels: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Scores of decoded images float32 [n, 3, H, W] against label vectors [L, E]:
        float32 [n, L]."""

    def decode(self, source: Path | BinaryIO, *, max_pixels: int | None = None) -> np.ndarray:
        """Pixels of an image file or file object as the model takes them: float32 [3, H, W].

        Raises what :func:`mlzsl.images.load_image` raises (PIL's errors on a bad file,
        ``ImageTooLarge`` over ``max_pixels``).
        """
        return load_image(
            source, self.image_size, self.mean, self.std, max_pixels=max_pixels, resize=self.resize
        )

    def load_image(self, image: str | Path) -> np.ndarray:
        """One decoded, normalised image: float32 [3, H, W]; a bad file is an error naming it."""
        try:
            with open_input(image, what="image") as f:  # a FIFO or device is refused, not opened
                return self.decode(f)
        except DataError:
            raise
        except Exception as e:  # PIL raises several types for non-images
            raise DataError(f"{image}: not a readable image ({type(e).__name__})") from None

    def label_texts(self, labels: Sequence[str]) -> list[str]:
        """What is embedded for each label name: the name put in :attr:`label_prompt`, if any."""
        return label_texts(labels, self.label_prompt)

    def label_vectors(self, labels: Sequence[str], *, disk_cache: bool = True) -> np.ndarray:
        """The embedder's vectors of ``labels`` (prompt applied): float32 [L, E].

        ``disk_cache`` keeps them in the embedding cache on disk (a server answering anyone
        passes ``False``, so what clients send never reaches the disk).
        """
        texts = self.label_texts(labels)
        if disk_cache:
            vectors = embed_labels(texts, self.embedder)
        else:
            vectors = self.embedder.embed(check_labels(texts))
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def score_images(self, images: Sequence[np.ndarray], vectors: np.ndarray) -> np.ndarray:
        """Scores of decoded images (each [3, H, W], sizes may differ): float32 [n, L].

        Images of one size in a row go through the model together.
        """
        parts = [self.score_pixels(run, vectors) for run in same_size_runs(images)]
        return np.concatenate(parts) if parts else np.zeros((0, len(vectors)), np.float32)

    def scores(self, images: Sequence[str | Path], labels: Sequence[str]) -> np.ndarray:
        """Scores of every image file against every label: float32 [n, L]; a bad file is an
        error naming it."""
        vectors = self.label_vectors(parse_labels(labels))  # [L, E]
        files = [Path(image) for image in images]
        skipped: list[tuple[Path, str]] = []
        parts = [scores for _, scores in score_files(self, files, vectors, skipped)]
        if skipped:
            raise DataError(f"{skipped[0][0]}: {skipped[0][1]}")
        return np.concatenate(parts) if parts else np.zeros((0, len(vectors)), np.float32)

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
        """Tag files and folders (see :func:`collect_images`), ``batch_size`` images per model
        call (1 is fastest on a CPU).

        A path that is not a readable image is skipped and listed in ``TagRun.skipped``, never an
        error; ``threshold`` drops tags scoring below it.
        """
        if top_k < 1 or batch_size < 1:
            raise ConfigError(f"top_k and batch_size must be at least 1, got {top_k}, {batch_size}")
        if threshold is not None and not math.isfinite(threshold):
            raise ConfigError(f"threshold must be a finite number, got {threshold}")
        started = time.perf_counter()
        files = collect_images(paths)
        run = TagRun(labels=parse_labels(labels))
        vectors = self.label_vectors(run.labels)  # [L, E], once for every batch
        long_run = show_progress and len(files) > max(batch_size, 8)  # a few need no bar
        for done, scores in score_files(
            self, files, vectors, run.skipped, batch_size=batch_size, desc="tag", bar=long_run
        ):
            for i, row in zip(done, scores, strict=True):
                run.tags[files[i]] = rank_row(row, run.labels, top_k, threshold)
        run.seconds = time.perf_counter() - started
        return run


def score_files(
    scorer: ImageScorer,
    files: Sequence[Path],
    vectors: np.ndarray,
    skipped: list[tuple[Path, str]],
    *,
    batch_size: int = 1,
    desc: str = "score",
    bar: bool = False,
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Decode and score ``files``, ``batch_size`` at a time: yields (positions in ``files`` of
    the images that decoded, their scores float32 [n, L]), in the order of ``files``.

    ``scorer.workers`` batches are decoded and scored at once, each on its own thread (the
    engines release the GIL), so decoding overlaps scoring and no batch waits for another.
    A file that is not a readable image is appended to ``skipped`` as (path, reason) and left
    out, never an error. ``bar`` shows a progress bar (rate and ETA) named ``desc``.
    """

    def work(batch: range) -> tuple[list[int], list[tuple[Path, str]], np.ndarray | None]:
        done, bad, pixels = [], [], []
        for i in batch:
            try:
                pixels.append(scorer.load_image(files[i]))
                done.append(i)
            except DataError as e:
                bad.append((files[i], str(e).removeprefix(f"{files[i]}: ")))
        return done, bad, scorer.score_images(pixels, vectors) if done else None

    batches = (range(s, min(s + batch_size, len(files))) for s in range(0, len(files), batch_size))
    with progress(total=len(files), desc=desc, unit="img", disable=not bar) as shown:
        with scorer.worker_scope():
            for done, bad, scores in ordered_map(work, batches, scorer.workers):
                skipped.extend(bad)
                if scores is not None:
                    yield done, scores
                shown.update(len(done) + len(bad))
