"""Label lists, image lists and tag results: the parts of tagging that need no torch.

:mod:`mlzsl.tagger` (torch) and :mod:`mlzsl.onnx_runtime` (onnxruntime) both use them, so a label
list is parsed, a folder searched and a score row ranked the same way on either path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mlzsl.errors import ConfigError, DataError, LabelError
from mlzsl.labels import read_vocabulary
from mlzsl.progress import progress

__all__ = [
    "IMAGE_SUFFIXES",
    "Tag",
    "TagRun",
    "collect_images",
    "parse_labels",
    "rank_row",
    "read_labels_file",
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
    return parse_labels([n for n in read_vocabulary(Path(path)) if not n.startswith("#")])


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


class ImageScorer(Protocol):
    """What :func:`tag_paths` needs of a tagger (the torch :class:`mlzsl.tagger.Tagger` and the
    torch-free :class:`mlzsl.onnx_runtime.OnnxTagger` both are one)."""

    def load_image(self, image: str | Path) -> np.ndarray: ...

    def label_vectors(self, labels: Sequence[str]) -> Any: ...

    def score_images(self, images: Sequence[np.ndarray], vectors: Any) -> np.ndarray: ...


def tag_paths(
    scorer: ImageScorer,
    paths: Iterable[str | Path],
    labels: str | Sequence[str],
    *,
    top_k: int = 5,
    threshold: float | None = None,
    batch_size: int = 1,
    show_progress: bool = False,
) -> TagRun:
    """Tag files and folders (see :func:`collect_images`), ``batch_size`` images per scoring call.

    A path that is not a readable image (``scorer.load_image`` raises :class:`DataError`) is
    skipped and listed in ``TagRun.skipped``, never an error; ``threshold`` drops tags scoring
    below it.
    """
    if top_k < 1 or batch_size < 1:
        raise ConfigError(f"top_k and batch_size must be at least 1, got {top_k}, {batch_size}")
    started = time.perf_counter()
    files = collect_images(paths)
    run = TagRun(labels=parse_labels(labels))
    vectors = scorer.label_vectors(run.labels)  # [L, E], once for every batch
    long_run = show_progress and len(files) > max(batch_size, 8)  # a few need no bar
    bar = progress(total=len(files), desc="tag", unit="img", disable=not long_run)
    for start in range(0, len(files), batch_size):
        batch, pixels = [], []
        for path in files[start : start + batch_size]:
            try:
                pixels.append(scorer.load_image(path))
                batch.append(path)
            except DataError as e:
                run.skipped.append((path, str(e).removeprefix(f"{path}: ")))
        if batch:
            scores = scorer.score_images(pixels, vectors)
            for path, row in zip(batch, scores, strict=True):
                run.tags[path] = rank_row(row, run.labels, top_k, threshold)
        bar.update(len(files[start : start + batch_size]))
    bar.close()
    run.seconds = time.perf_counter() - started
    return run
