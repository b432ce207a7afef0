"""The user data format: a folder of images with two CSV files. The built-in scenes take it too.

Layout of a folder ``root``::

    root/vocabulary.csv   label,split          split: seen | unseen   (see LabelSet.from_csv)
    root/labels.csv       image,split,labels[,negatives]
                          split: train | test; labels (and negatives) joined by "|"
    root/<images>         paths as written in labels.csv, relative to root (subfolders allowed)

Example ``labels.csv``::

    image,split,labels
    images/beach_01.jpg,train,sea|sand
    images/night.jpg,test,
    street/corner.png,test,car|person

Targets are an int8 matrix [N, L] in column order of the vocabulary: +1 where the row lists the
label, -1 where it does not. **Unseen labels are hidden on train rows**: every unseen column of a
train row is 0 (not annotated), whether the row lists the label or not, so that no training loop
can see an unseen label by mistake. Test rows keep their annotation for every label.

**Partial annotation** (Open Images: a label is verified present, verified absent, or was never
asked about): when the header has a fourth column ``negatives``, a row's ``labels`` are +1, its
``negatives`` (labels verified absent) are -1 and every other label is 0, not annotated. Without
that column every unlisted label is -1, as above. A label may not be in both columns of a row::

    image,split,labels,negatives
    images/train/0001.jpg,train,Dog|Grass,Cat
    images/test/0002.jpg,test,Car,Bicycle|Person

Memory: the targets are dense, N·L bytes. Parsing keeps only the listed (row, label) pairs in
flat integer arrays (8 bytes per listed label, no Python list per row), but the matrix itself is
whole in memory: Open Images train (~1.7 M images × 7,586 labels) needs ~13 GB, its test split
(125,436 × 7,586) ~1 GB.

Images are not opened here: whether a file exists and decodes is checked where it is read
(feature extraction skips unreadable images and reports them).
"""

from __future__ import annotations

import csv
import os
import posixpath
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

import numpy as np

from mlzsl.errors import ConfigError, DataError, LabelError
from mlzsl.files import atomic_path, atomic_write, open_input
from mlzsl.labels import LabelSet

SPLITS = ("train", "test")
VOCABULARY_FILE = "vocabulary.csv"
LABELS_FILE = "labels.csv"
LABEL_SEPARATOR = "|"
_COLUMNS = ("image", "split", "labels")
NEGATIVES_COLUMN = "negatives"

UserRow = tuple[str, str, Sequence[str]] | tuple[str, str, Sequence[str], Sequence[str]]
"""A row for :func:`write_user_dataset`: (image, split, labels[, negatives])."""


@dataclass(frozen=True, eq=False)
class UserDataset:
    """A parsed user data folder: N images, their split and their targets over L labels.

    Attributes:
        root: the folder; image paths are relative to it.
        label_set: the L labels (from ``vocabulary.csv``), in target column order.
        images: N image paths relative to ``root``, POSIX-style, in ``labels.csv`` order.
        splits: N split names, each ``"train"`` or ``"test"``.
        targets: int8 [N, L]: +1 listed; -1 not listed (or, with a ``negatives`` column, listed
            there); 0 not annotated (unseen labels on train rows; with a ``negatives`` column,
            every label in neither column).
    """

    root: Path
    label_set: LabelSet
    images: list[str]
    splits: list[str]
    targets: np.ndarray  # int8 [N, L]

    def __len__(self) -> int:
        return len(self.images)

    def path(self, i: int) -> Path:
        """Path of image ``i``: ``root`` joined with its relative path."""
        return self.root / self.images[i]

    def indices(self, split: str) -> np.ndarray:
        """Row indices of ``split`` ("train" or "test"), ascending (int64 [N_split])."""
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return np.flatnonzero(np.asarray(self.splits) == split)


def read_user_dataset(root: str | Path) -> UserDataset:
    """Read a user data folder (``vocabulary.csv`` + ``labels.csv``); see the module docstring.

    The targets matrix is dense int8 [N, L] (see the module docstring for its memory).

    Raises:
        DataError: a missing folder or file, a missing column, an unknown split or label, a
            label both listed and a negative, an image path that is absolute or leaves the
            folder, a duplicate image row, or a ``labels.csv`` with no image rows. The message
            names the file and line.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root}: no such data folder (expected {VOCABULARY_FILE} and {LABELS_FILE})"
        )
    label_set = _read_vocabulary(root / VOCABULARY_FILE)
    parsed = _read_labels(root / LABELS_FILE, label_set)
    targets = _targets(label_set, parsed)
    return UserDataset(root, label_set, parsed.images, parsed.splits, targets)


def write_user_dataset(
    root: str | Path,
    label_set: LabelSet,
    rows: Iterable[UserRow],
    *,
    negatives: bool = False,
) -> int:
    """Write ``vocabulary.csv`` and ``labels.csv`` into ``root`` (created if needed).

    ``rows`` is streamed to disk, never held whole. Both CSVs are written under temporary names
    and renamed only once every row is written and valid, ``labels.csv`` last, so a folder that
    has it is complete and a failed write leaves an earlier folder as it was.

    Args:
        root: the data folder.
        label_set: the vocabulary.
        rows: ``(image, split, labels)`` per image: a path relative to ``root``, "train" or
            "test", and label names from ``label_set``; with ``negatives``,
            ``(image, split, labels, negatives)``, the last the names verified absent.
        negatives: write the ``negatives`` column (partial annotation, see the module
            docstring): unlisted labels then read back as 0, not annotated.

    Returns:
        The number of image rows written.

    Raises:
        ConfigError: a bad split, a row of the wrong length, or a label in both columns.
        LabelError: a label name that is not in ``label_set``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _check_separator(label_set, root / VOCABULARY_FILE)
    header = list(_expected_columns(negatives))
    # entered labels first, so it is renamed into place last: a folder with it is complete
    with (
        atomic_write(root / LABELS_FILE, newline="", what=LABELS_FILE) as f,
        atomic_path(root / VOCABULARY_FILE, what=VOCABULARY_FILE) as vocabulary_tmp,
    ):
        label_set.to_csv(vocabulary_tmp)
        writer = csv.writer(f)
        writer.writerow(header)
        n_rows = 0
        for row in rows:
            writer.writerow(_row_cells(row, label_set, negatives))
            n_rows += 1
    return n_rows


def _row_cells(row: UserRow, label_set: LabelSet, negatives: bool) -> list[str]:
    """The CSV cells of one row for :func:`write_user_dataset`, checked."""
    width = 4 if negatives else 3
    if len(row) != width:
        names = ",".join(_expected_columns(negatives))
        raise ConfigError(f"row {row!r}: expected {width} fields ({names})")
    image, split, labels = row[0], row[1], row[2]
    if split not in SPLITS:
        raise ConfigError(f"image {image!r}: split must be 'train' or 'test', got {split!r}")
    for name in labels:
        label_set.index(name)  # raises LabelError for a name not in the vocabulary
    cells = [image, split, LABEL_SEPARATOR.join(labels)]
    if negatives:
        absent: Sequence[str] = row[3]  # type: ignore[misc]  # width checked above
        for name in absent:
            label_set.index(name)
        both = set(labels) & set(absent)
        if both:
            raise ConfigError(f"image {image!r}: label {min(both)!r} is both listed and a negative")
        cells.append(LABEL_SEPARATOR.join(absent))
    return cells


def _read_vocabulary(path: Path) -> LabelSet:
    if not os.path.lexists(path):
        raise DataError(f"{path}: missing (a data folder needs {VOCABULARY_FILE}: label,split)")
    label_set = LabelSet.from_csv(path)
    _check_separator(label_set, path)
    return label_set


def _check_separator(label_set: LabelSet, path: Path) -> None:
    for name in label_set.names:
        if LABEL_SEPARATOR in name:
            raise DataError(
                f"{path}: label {name!r} contains {LABEL_SEPARATOR!r}, "
                f"which {LABELS_FILE} uses to separate labels"
            )


@dataclass
class _Parsed:
    """``labels.csv`` parsed: per-row image and split, and the (row, column) pairs listed.

    ``negatives`` is ``None`` when the file has no ``negatives`` column. Pairs are flat int32
    arrays, so a million-row file costs 8 bytes per listed label rather than a list per row.
    """

    images: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    positives: tuple[array, array] = field(default_factory=lambda: (array("i"), array("i")))
    negatives: tuple[array, array] | None = None

    def add(self, image: str, split: str, listed: list[int], absent: list[int]) -> None:
        """Append one image row with its listed and (if the file has them) negative columns."""
        row = len(self.images)
        self.images.append(image)
        self.splits.append(split)
        _extend(self.positives, row, listed)
        if self.negatives is not None:
            _extend(self.negatives, row, absent)


def _extend(pairs: tuple[array, array], row: int, columns: list[int]) -> None:
    pairs[0].extend([row] * len(columns))
    pairs[1].extend(columns)


def _read_labels(path: Path, label_set: LabelSet) -> _Parsed:
    """Rows of ``labels.csv``: image paths, splits and the listed (and negative) label columns."""
    if not os.path.lexists(path):
        raise DataError(f"{path}: missing (a data folder needs {LABELS_FILE}: image,split,labels)")
    parsed = _Parsed()
    first_line: dict[str, int] = {}
    try:
        with open_input(path, "r", what=LABELS_FILE, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if _check_header(path, reader.fieldnames):
                parsed.negatives = (array("i"), array("i"))
            columns = _expected_columns(parsed.negatives is not None)
            for row in reader:
                line = reader.line_num
                image, split, listed, absent = _parse_row(path, line, row, label_set, columns)
                if image in first_line:
                    raise DataError(
                        f"{path}:{line}: image {image!r} is listed twice "
                        f"(first on line {first_line[image]})"
                    )
                first_line[image] = line
                parsed.add(image, split, listed, absent)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if not parsed.images:
        raise DataError(f"{path}: no image rows (expected one row per image after the header)")
    return parsed


def _expected_columns(negatives: bool) -> tuple[str, ...]:
    return (*_COLUMNS, NEGATIVES_COLUMN) if negatives else _COLUMNS


def _check_header(path: Path, fieldnames: Sequence[str] | None) -> bool:
    """Check the required columns; return whether the optional ``negatives`` column is there."""
    if not fieldnames:
        raise DataError(f"{path}:1: empty file, expected a header 'image,split,labels'")
    names = [n.strip() for n in fieldnames]
    missing = [c for c in _COLUMNS if c not in names]
    if missing:
        raise DataError(
            f"{path}:1: header lacks column(s) {', '.join(missing)}; "
            f"expected 'image,split,labels[,negatives]', got {','.join(fieldnames)!r}"
        )
    return NEGATIVES_COLUMN in names


def _parse_row(
    path: Path,
    line: int,
    row: dict[str | None, str | None],
    label_set: LabelSet,
    columns: tuple[str, ...] = _COLUMNS,
) -> tuple[str, str, list[int], list[int]]:
    """One ``labels.csv`` row as (normalised image path, split, listed, negative columns)."""
    row = {(k.strip() if k else k): v for k, v in row.items()}
    if any(row.get(c) is None for c in columns):
        raise DataError(f"{path}:{line}: expected {len(columns)} fields ({','.join(columns)})")
    image = _normalise_image((row["image"] or "").strip(), path, line)
    split = (row["split"] or "").strip().lower()
    if split not in SPLITS:
        raise DataError(f"{path}:{line}: split must be 'train' or 'test', got {row['split']!r}")
    listed = _label_columns(path, line, row["labels"], label_set)
    absent: list[int] = []
    if NEGATIVES_COLUMN in columns:
        absent = _label_columns(path, line, row[NEGATIVES_COLUMN], label_set)
        both = set(listed) & set(absent)
        if both:
            name = label_set.names[min(both)]
            raise DataError(
                f"{path}:{line}: label {name!r} is in both '{_COLUMNS[2]}' and '{NEGATIVES_COLUMN}'"
            )
    return image, split, listed, absent


def _label_columns(path: Path, line: int, text: str | None, label_set: LabelSet) -> list[int]:
    """Columns of the "|"-joined label names in ``text``; empty names are skipped."""
    columns = []
    for name in (text or "").split(LABEL_SEPARATOR):
        name = name.strip()
        if not name:
            continue  # an empty field is an image with no label
        try:
            columns.append(label_set.index(name))
        except LabelError:
            raise DataError(f"{path}:{line}: label {name!r} is not in {VOCABULARY_FILE}") from None
    return columns


def _normalise_image(image: str, path: Path, line: int) -> str:
    """``image`` as a clean POSIX path inside the folder; absolute or escaping paths rejected."""
    if not image:
        raise DataError(f"{path}:{line}: empty image path")
    posix = image.replace("\\", "/")
    # PureWindowsPath only where a drive ("C:") can be: it costs more than the rest of a row
    if posix.startswith("/") or (":" in image[:2] and PureWindowsPath(image).drive):
        raise DataError(f"{path}:{line}: image path {image!r} must be relative to the folder")
    clean = posixpath.normpath(posix)
    if clean == ".." or clean.startswith("../") or clean == ".":
        raise DataError(f"{path}:{line}: image path {image!r} leaves the data folder")
    return clean


def _targets(label_set: LabelSet, parsed: _Parsed) -> np.ndarray:
    """int8 [N, L]: +1 listed; -1 not listed, or negative where the file has negatives (then 0
    elsewhere); then 0 on every unseen column of a train row."""
    shape = (len(parsed.splits), len(label_set))
    if parsed.negatives is None:
        targets = np.full(shape, -1, dtype=np.int8)  # [N, L]
    else:
        targets = np.zeros(shape, dtype=np.int8)  # [N, L]; lazily zeroed pages: no fill pass
    if parsed.negatives is not None:
        rows, cols = (np.frombuffer(a, dtype=np.int32) for a in parsed.negatives)
        targets[rows, cols] = -1
    rows, cols = (np.frombuffer(a, dtype=np.int32) for a in parsed.positives)
    targets[rows, cols] = 1
    train = np.asarray(parsed.splits) == "train"  # [N]
    targets[np.ix_(train, label_set.unseen_idx)] = 0  # hidden from training
    return targets
