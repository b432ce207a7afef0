"""Open Images V4 (2018_04 release) -> a data folder with partial annotation.

What the peers use (read from their released code):

- **Labels**: the human-verified image-level labels, one CSV per split, named
  ``<split>-annotations-human-imagelabels.csv`` with the header ``ImageID,Source,LabelName,
  Confidence``. ``Confidence`` 1 = verified present, 0 = verified absent; a class not listed for
  an image was never asked about (not annotated). LESA keeps the CSVs flat in one folder
  (``extract_data/extract_test_seen_unseen_images_VGG_feature_2_TFRecord.py``), BiAM in
  ``<split>/`` subfolders (``feature_extraction/extract_openimages_test.py``); both are found.
- **Images**: ``<images>/<split>/<ImageID>.jpg`` (LESA ``./image_data/<split>/``, BiAM
  ``datasets/OpenImages/<split>/``). An annotated image without a file is left out, as both
  peers do (``os.path.isfile``): many Flickr originals are gone.
- **Test set**: the ``test`` split alone, with seen labels (7,186) and unseen candidates (2,594,
  of which 400 are evaluated). The ``validation`` split is extracted with seen labels only and
  serves no zero-shot result; it is not converted. BiAM's log evaluates 125,436 test images
  (``paper_logs/openimages.log``), the whole official V4 test split.
- **Vocabulary**: :mod:`mlzsl.datasets.vocab` (seen = ``classes-trainable.txt``, unseen = the 400
  evaluated or all 2,594 candidates). Annotations of any other class are ignored and counted.

Where a (image, class) pair is verified more than once, a positive wins over a negative (it was
seen at least once) and the conflict is counted. The peers instead keep whichever row comes last.

Output folder ``out``::

    out/vocabulary.csv   seen then unseen, display names (repeats qualified, see vocab.py)
    out/labels.csv       image,split,labels,negatives   (see mlzsl.datasets.userdata)
    out/dataset.json     Open Images V4, evaluation "open_images", 125,436 official test images
    out/images           a symlink to the --images folder; rows say images/<split>/<ImageID>.jpg

Memory: the annotation rows are held as three flat arrays (7 bytes a row: ~200 MB for the
~28 M human-verified train rows) plus one dict entry per image id; a CSV is never loaded whole.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlzsl.datasets.dataset_info import DatasetInfo, write_dataset_info
from mlzsl.datasets.userdata import write_user_dataset
from mlzsl.datasets.vocab import read_open_images_vocabulary
from mlzsl.errors import ConfigError, DataError
from mlzsl.labels import LabelSet
from mlzsl.progress import progress

DATASET_NAME = "Open Images V4"
OFFICIAL_TEST_IMAGES = 125_436
"""Images in the V4 test split (Open Images V4 facts and figures; BiAM's openimages.log)."""

SPLITS = ("train", "test")
"""Release splits converted; each becomes the split of the same name in ``labels.csv``."""

ANNOTATIONS_FILE = "{split}-annotations-human-imagelabels.csv"
REQUIRED_COLUMNS = ("ImageID", "LabelName", "Confidence")
"""Columns read; the release's header is ``ImageID,Source,LabelName,Confidence``."""

IMAGES_LINK = "images"
_PROGRESS_ROWS = 200_000  # annotation rows between progress-bar updates


@dataclass
class SplitCounts:
    """What converting one release split found.

    Attributes:
        split: ``"train"`` or ``"test"``.
        annotations: the CSV read.
        rows: annotation rows read.
        rows_outside: rows of a class outside the vocabulary (ignored).
        classes_outside: distinct classes outside the vocabulary.
        images_annotated: distinct images in the CSV.
        images_missing: annotated images without ``<ImageID>.jpg`` (left out).
        images: images written to ``labels.csv``.
        positives: (image, label) pairs verified present, among the images written.
        negatives: (image, label) pairs verified absent, among the images written.
        repeated: (image, label) pairs verified more than once (kept once).
        conflicts: of those, pairs verified both present and absent (kept as present).
        images_without_labels: written images with no annotated label of the vocabulary.
    """

    split: str
    annotations: str
    rows: int = 0
    rows_outside: int = 0
    classes_outside: int = 0
    images_annotated: int = 0
    images_missing: int = 0
    images: int = 0
    positives: int = 0
    negatives: int = 0
    repeated: int = 0
    conflicts: int = 0
    images_without_labels: int = 0


@dataclass
class ConversionSummary:
    """The outcome of :func:`convert_open_images`.

    Attributes:
        out: the data folder written.
        n_seen: seen labels (7,186).
        n_unseen: unseen labels (400 evaluated, or 2,594).
        unseen: ``"evaluated"`` or ``"all"``.
        splits: one :class:`SplitCounts` per converted split.
        seconds: wall time.
    """

    out: Path
    n_seen: int
    n_unseen: int
    unseen: str
    splits: list[SplitCounts] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "out": str(self.out),
            "n_seen": self.n_seen,
            "n_unseen": self.n_unseen,
            "unseen": self.unseen,
            "splits": [asdict(s) for s in self.splits],
            "seconds": self.seconds,
        }


@dataclass
class _Annotations:
    """One CSV's rows of vocabulary classes, as flat arrays, and the image ids in CSV order.

    ``image``: int32 index into ``ids``; ``column``: int16 label column; ``value``: int8 ±1.
    """

    ids: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    image: array = field(default_factory=lambda: array("i"))
    column: array = field(default_factory=lambda: array("h"))
    value: array = field(default_factory=lambda: array("b"))

    def add(self, image_id: str, column: int, value: int) -> None:
        """Record one annotation of a vocabulary class."""
        self.image.append(self.image_index(image_id))
        self.column.append(column)
        self.value.append(value)

    def image_index(self, image_id: str) -> int:
        """The index of ``image_id``, registering it on first sight."""
        i = self.index.get(image_id)
        if i is None:
            i = self.index[image_id] = len(self.ids)
            self.ids.append(image_id)
        return i


def convert_open_images(
    classes: str | Path,
    annotations: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    unseen: str = "evaluated",
    splits: Sequence[str] = SPLITS,
    show_progress: bool = True,
) -> ConversionSummary:
    """Write the data folder ``out`` from an Open Images V4 download (see the module docstring).

    Args:
        classes: folder with the four class files of :data:`mlzsl.datasets.vocab.OPEN_IMAGES_FILES`.
        annotations: folder with ``<split>-annotations-human-imagelabels.csv``, flat or in
            ``<split>/`` subfolders.
        images: folder with ``<split>/<ImageID>.jpg``.
        out: the data folder to write (created if needed).
        unseen: ``"evaluated"`` (the 400 of ``top_400_unseen.csv``) or ``"all"`` (2,594).
        splits: release splits to convert, a subset of :data:`SPLITS`.
        show_progress: show progress bars on stderr.

    Returns:
        The counts per split.

    Raises:
        DataError: a missing class file, CSV or image folder; a CSV without a required column or
            with a Confidence other than 0 or 1 (message names the file and line); an ``images``
            entry in ``out`` that is not a link to ``images``.
        ConfigError: an unknown split or ``unseen`` value.
    """
    started = time.perf_counter()
    splits = _check_splits(splits)
    if unseen not in ("evaluated", "all"):
        raise ConfigError(f"unseen must be 'evaluated' or 'all', got {unseen!r}")
    vocabulary = read_open_images_vocabulary(classes)
    label_set = vocabulary.label_set(unseen)
    columns = {class_id: i for i, class_id in enumerate(vocabulary.class_ids(unseen))}
    images = Path(images)
    csv_paths = {s: find_annotations(annotations, s) for s in splits}
    for path in csv_paths.values():  # fail before hours of reading, not after
        check_header(path)
    image_dirs = {s: _image_folder(images, s) for s in splits}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _link_images(out / IMAGES_LINK, images)
    write_dataset_info(out, _dataset_info(annotations))
    counts: list[SplitCounts] = []
    rows = _all_rows(csv_paths, image_dirs, columns, label_set, counts, show_progress)
    write_user_dataset(out, label_set, rows, negatives=True)
    return ConversionSummary(
        out=out,
        n_seen=len(label_set.seen_idx),
        n_unseen=len(label_set.unseen_idx),
        unseen=unseen,
        splits=counts,
        seconds=time.perf_counter() - started,
    )


def find_annotations(folder: str | Path, split: str) -> Path:
    """The human-verified label CSV of ``split``: ``folder/NAME`` or ``folder/split/NAME``."""
    name = ANNOTATIONS_FILE.format(split=split)
    candidates = [Path(folder) / name, Path(folder) / split / name]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(
        f"{candidates[0]}: missing (nor in {candidates[1].parent}/); download "
        f"{name} of the 2018_04 release"
    )


def _check_splits(splits: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(s.strip() for s in splits if s.strip()))
    bad = [s for s in chosen if s not in SPLITS]
    if bad or not chosen:
        raise ConfigError(
            f"splits must be a non-empty subset of {', '.join(SPLITS)}, got {','.join(splits)!r}"
        )
    return chosen


def _image_folder(images: Path, split: str) -> Path:
    folder = images / split
    if not folder.is_dir():
        raise DataError(f"{folder}: missing (expected the {split} images as <ImageID>.jpg)")
    return folder


def _dataset_info(annotations: str | Path) -> DatasetInfo:
    return DatasetInfo(
        name=DATASET_NAME,
        official_test_images=OFFICIAL_TEST_IMAGES,
        evaluation="open_images",
        source=str(Path(annotations).resolve()),
    )


def _link_images(link: Path, images: Path) -> None:
    """Make ``link`` a symlink to ``images`` (absolute); keep one that already points there."""
    target = images.resolve()
    if link.is_symlink() and link.resolve() == target:
        return
    if link.exists() or link.is_symlink():
        raise DataError(f"{link}: exists and is not a link to {target}; remove it or pick --out")
    try:
        os.symlink(target, link, target_is_directory=True)
    except OSError as e:
        raise DataError(f"{link}: cannot link to {target} ({e.strerror or e})") from None


# ----------------------------------------------------------------------------- reading


def _read_annotations(
    path: Path, columns: Mapping[str, int], counts: SplitCounts, *, show_progress: bool = True
) -> _Annotations:
    """Stream one human-verified label CSV; keep the rows of vocabulary classes.

    Args:
        path: the CSV (``ImageID,Source,LabelName,Confidence``).
        columns: class id -> label column, for the vocabulary's classes.
        counts: updated with rows read, rows and classes outside the vocabulary, images.
        show_progress: a progress bar in MB read.
    """
    found = _Annotations()
    outside: set[str] = set()
    size_mb = math.ceil(path.stat().st_size / 1e6)
    bar = progress(total=size_mb, desc=path.name, unit="MB", disable=not show_progress)
    done = 0
    with path.open("rb") as raw, bar:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""))
        try:
            i_image, i_label, i_confidence = _header_positions(path, next(reader, None))
            for row in reader:
                if len(row) <= max(i_image, i_label, i_confidence):
                    raise DataError(f"{path}:{reader.line_num}: too few fields in {row!r}")
                column = columns.get(row[i_label])
                if column is None:
                    outside.add(row[i_label])
                    found.image_index(row[i_image])  # the image is annotated all the same
                    counts.rows_outside += 1
                else:
                    found.add(row[i_image], column, _sign(row[i_confidence], path, reader.line_num))
                if reader.line_num % _PROGRESS_ROWS == 0:
                    done = _advance(bar, raw.tell() // 1_000_000, done)
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{path}:{reader.line_num}: cannot read ({e})") from None
        _advance(bar, size_mb, done)
    counts.rows = len(found.image) + counts.rows_outside
    counts.classes_outside = len(outside)
    counts.images_annotated = len(found.ids)
    return found


def check_header(path: Path) -> None:
    """Check that the CSV's first line names the required columns."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            _header_positions(path, next(csv.reader(f), None))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}:1: cannot read the header ({e})") from None


def _advance(bar: Any, position: int, done: int) -> int:
    """Move ``bar`` from ``done`` to ``position`` (whole MB); returns the new position."""
    bar.update(max(0, position - done))
    return max(position, done)


def _header_positions(path: Path, header: list[str] | None) -> tuple[int, int, int]:
    """Positions of ImageID, LabelName and Confidence in the header row."""
    if not header:
        raise DataError(
            f"{path}:1: empty file, expected the header ImageID,Source,LabelName,Confidence"
        )
    names = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise DataError(
            f"{path}:1: header lacks column {missing[0]}; expected "
            f"ImageID,Source,LabelName,Confidence, got {','.join(header)!r}"
        )
    i_image, i_label, i_confidence = (names.index(c) for c in REQUIRED_COLUMNS)
    return i_image, i_label, i_confidence


def _sign(confidence: str, path: Path, line: int) -> int:
    """+1 for Confidence 1 (present), -1 for 0 (verified absent); anything else is an error."""
    text = confidence.strip()
    if text in ("1", "1.0"):
        return 1
    if text in ("0", "0.0"):
        return -1
    raise DataError(
        f"{path}:{line}: Confidence must be 0 or 1 (human-verified labels), got {confidence!r}"
    )


def _existing_images(folder: Path, *, show_progress: bool = True) -> set[str]:
    """Image ids with a ``<ImageID>.jpg`` file in ``folder`` (one directory scan, no stat)."""
    ids: set[str] = set()
    bar = progress(desc=f"scan {folder.name}/", unit="file", disable=not show_progress)
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(".jpg"):
                ids.add(entry.name[:-4])
            bar.update(1)
    bar.close()
    return ids


# ----------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class _Pairs:
    """Distinct (image, column) pairs sorted by image, with the kept value (+1 wins over -1)."""

    image: np.ndarray  # int64 [M], ascending
    column: np.ndarray  # int64 [M]
    value: np.ndarray  # int8 [M] in {+1, -1}

    def of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(columns, values) of image ``i``."""
        start, stop = np.searchsorted(self.image, [i, i + 1])
        return self.column[start:stop], self.value[start:stop]


def _distinct_pairs(found: _Annotations, n_labels: int, counts: SplitCounts) -> _Pairs:
    """Merge repeated (image, class) rows: one pair each, positive if any row says present.

    One int64 key per row, ``(image · L + column) · 2 + present``, sorted in place: a pair's
    rows become adjacent, verified-absent before verified-present, so the last row of a pair
    holds the kept value and the first tells whether it was ever verified absent.
    """
    key = np.frombuffer(found.image, dtype=np.int32).astype(np.int64)  # [R]
    key *= n_labels
    key += np.frombuffer(found.column, dtype=np.int16)
    key *= 2
    key += np.frombuffer(found.value, dtype=np.int8) > 0
    key.sort()
    if key.size == 0:  # no row of a vocabulary class
        return _Pairs(key, key, np.zeros(0, dtype=np.int8))
    pair = key >> 1  # [R] image · L + column
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])  # [M] first row of each pair
    ends = np.r_[starts[1:], len(key)] - 1  # [M] last row of each pair
    present = (key[ends] & 1).astype(bool)  # +1 wins: verified present at least once
    counts.repeated = int(len(key) - len(starts))
    counts.conflicts = int(np.count_nonzero(present & ((key[starts] & 1) == 0)))
    unique = pair[starts]
    value = np.where(present, 1, -1).astype(np.int8)
    return _Pairs(unique // n_labels, unique % n_labels, value)


def _all_rows(
    csv_paths: Mapping[str, Path],
    image_dirs: Mapping[str, Path],
    columns: Mapping[str, int],
    label_set: LabelSet,
    counts: list[SplitCounts],
    show_progress: bool,
) -> Iterator[tuple[str, str, list[str], list[str]]]:
    """``labels.csv`` rows of every split in turn; appends each split's counts to ``counts``."""
    for split, path in csv_paths.items():
        split_counts = SplitCounts(split=split, annotations=str(path))
        counts.append(split_counts)
        found = _read_annotations(path, columns, split_counts, show_progress=show_progress)
        on_disk = _existing_images(image_dirs[split], show_progress=show_progress)
        pairs = _distinct_pairs(found, len(label_set), split_counts)
        found.image, found.column, found.value = array("i"), array("h"), array("b")  # freed
        yield from _split_rows(split, found, on_disk, pairs, label_set, split_counts, show_progress)


def _split_rows(
    split: str,
    found: _Annotations,
    on_disk: set[str],
    pairs: _Pairs,
    label_set: LabelSet,
    counts: SplitCounts,
    show_progress: bool,
) -> Iterator[tuple[str, str, list[str], list[str]]]:
    """Rows of one split, images sorted by id; images without a file are left out."""
    kept = sorted(i for i in found.ids if i in on_disk)
    counts.images_missing = len(found.ids) - len(kept)
    names = label_set.names
    for image_id in progress(kept, desc=f"write {split}", unit="img", disable=not show_progress):
        cols, values = pairs.of(found.index[image_id])
        listed = [names[c] for c in cols[values > 0]]
        absent = [names[c] for c in cols[values < 0]]
        counts.images += 1
        counts.positives += len(listed)
        counts.negatives += len(absent)
        counts.images_without_labels += not (listed or absent)
        yield f"{IMAGES_LINK}/{split}/{image_id}.jpg", split, listed, absent
