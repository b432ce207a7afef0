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

Memory: the targets are kept sparse (:class:`UserTargets`), never as the dense [N, L] matrix.
Parsing appends each row's annotated entries (the +1 and -1 it states, less the hidden ones,
columns ascending) to flat typed arrays: 5 bytes per listed label (int32 column, int8 value) and
9 bytes per row (int64 row offset, the train flag). The value of every unlisted label (-1, or 0
with a ``negatives`` column) and the hidden unseen columns of train rows are rules, not entries.
Dense rows are made for the rows asked for (:meth:`UserDataset.target_rows`: len(idx)·L bytes),
as evaluation and the feature store's writer need them, a block at a time. The rest grows with N
only: per row the image path (a Python string, ~80 bytes for a typical path), a pointer to one
of two shared split strings, and while parsing an entry of the duplicate-path check. Open Images
train (1.74 M rows × 7,586 labels, ~8 annotated per row) thus needs ~0.1 GB of targets, where the
dense matrix was 13 GB; ``benchmarks/README.md`` ("Open Images from a folder in bounded memory")
has the measured peaks of ``mlzsl data verify`` and ``mlzsl extract``.

Images are not opened here: whether a file exists and decodes is checked where it is read
(feature extraction skips unreadable images and reports them).
"""

from __future__ import annotations

import csv
import hashlib
import os
import posixpath
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
class UserTargets:
    """The targets of a data folder, int8 [N, L], kept sparse: the annotated entries and two rules.

    Row i's entries are columns ``indices[indptr[i]:indptr[i + 1]]`` (ascending, each once) with
    ``values`` (+1 listed in ``labels``, -1 listed in ``negatives``). Every other entry of the row
    is ``fill``, except the ``hidden`` columns (the unseen labels) of a row flagged in ``train``,
    which are 0; no entry is stored there. See the module docstring for the rules and the memory.

    Attributes:
        indptr: int64 [N + 1], non-decreasing, ``indptr[0] == 0``.
        indices: int32 [nnz], the columns of the stored entries.
        values: int8 [nnz], their values, +1 or -1.
        n_labels: L.
        fill: the value of an entry not stored: -1 (no ``negatives`` column) or 0 (there is one).
        train: bool [N], the rows whose ``hidden`` columns are 0 (the train rows).
        hidden: int64 [U], the columns hidden on ``train`` rows (the unseen labels), ascending.
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    n_labels: int
    fill: int
    train: np.ndarray
    hidden: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """(N, L)."""
        return len(self.indptr) - 1, self.n_labels

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return len(self.indices)

    def rows(self, idx: np.ndarray | Sequence[int]) -> np.ndarray:
        """Dense rows ``idx`` (int8 [len(idx), L], in the order asked; repeats allowed).

        Costs len(idx)·L bytes (plus a few bytes per stored entry of those rows), whatever N.

        Raises:
            IndexError: an index outside 0..N-1 (negative indices are not wrapped).
        """
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)  # [n]
        n_rows = self.shape[0]
        if idx.size and (idx.min() < 0 or idx.max() >= n_rows):
            raise IndexError(f"target row out of range 0..{n_rows - 1}")
        out = np.full((len(idx), self.n_labels), self.fill, dtype=np.int8)  # [n, L]
        starts, stops = self.indptr[idx], self.indptr[idx + 1]  # [n]
        counts = stops - starts
        total = int(counts.sum())
        if total:
            local = np.repeat(np.arange(len(idx)), counts)  # [m]: output row of each entry
            # position in indices/values: the row's start plus the entry's rank within the row
            first = np.cumsum(counts) - counts  # [n]: where each row's entries begin among the m
            at = np.repeat(starts - first, counts) + np.arange(total)  # [m]
            out[local, self.indices[at]] = self.values[at]
        if self.hidden.size:
            out[np.ix_(np.flatnonzero(self.train[idx]), self.hidden)] = 0
        return out

    def digest(self) -> str:
        """SHA-256 (hex) of the targets' content, hashed in place, never densified.

        Equal digests mean equal targets. The entries are canonical (sorted and unique within a
        row, none on a hidden column of a train row), so the same annotation written otherwise
        (label order, a label listed twice, a hidden label listed or not) has the same digest.
        """
        n_rows, n_labels = self.shape
        h = hashlib.sha256(f"user-targets 1 {n_rows} {n_labels} {self.fill}\n".encode())
        for array_ in (self.hidden, self.train, self.indptr, self.indices, self.values):
            h.update(f"{array_.dtype.str} {array_.size}\n".encode())
            h.update(np.ascontiguousarray(array_).data)  # already contiguous: no copy
        return h.hexdigest()


@dataclass(frozen=True, eq=False)
class UserDataset:
    """A parsed user data folder: N images, their split and their targets over L labels.

    Attributes:
        root: the folder; image paths are relative to it.
        label_set: the L labels (from ``vocabulary.csv``), in target column order.
        images: N image paths relative to ``root``, POSIX-style, in ``labels.csv`` order.
        splits: N split names, each ``"train"`` or ``"test"``.
        labels: the targets [N, L], sparse (:class:`UserTargets`): +1 listed; -1 not listed (or,
            with a ``negatives`` column, listed there); 0 not annotated (unseen labels on train
            rows; with a ``negatives`` column, every label in neither column). Dense rows come
            from :meth:`target_rows`.
    """

    root: Path
    label_set: LabelSet
    images: list[str]
    splits: list[str]
    labels: UserTargets

    def __len__(self) -> int:
        return len(self.images)

    def path(self, i: int) -> Path:
        """Path of image ``i``: ``root`` joined with its relative path."""
        return self.root / self.images[i]

    def indices(self, split: str) -> np.ndarray:
        """Row indices of ``split`` ("train" or "test"), ascending (int64 [N_split])."""
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        train = self.labels.train
        return np.flatnonzero(train if split == "train" else ~train)

    def target_rows(self, idx: np.ndarray | Sequence[int]) -> np.ndarray:
        """Dense targets of rows ``idx``: int8 [len(idx), L], len(idx)·L bytes (see ``labels``)."""
        return self.labels.rows(idx)

    @property
    def targets(self) -> np.ndarray:
        """All the targets, dense: int8 [N, L], built anew on each access.

        N·L bytes (Open Images train: ~13 GB), so only for small folders; code that may meet a
        large one takes rows a block at a time with :meth:`target_rows`.
        """
        return self.labels.rows(np.arange(len(self)))


def read_user_dataset(root: str | Path) -> UserDataset:
    """Read a user data folder (``vocabulary.csv`` + ``labels.csv``); see the module docstring.

    The targets are kept sparse (see the module docstring for their memory).

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
    return UserDataset(root, label_set, parsed.images, parsed.splits, parsed.targets(label_set))


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


class _Parsed:
    """``labels.csv`` parsed a row at a time: image paths, splits and the targets' entries.

    The entries go straight into flat typed arrays in CSR order (:class:`UserTargets`), so a
    million-row file costs 5 bytes per annotated label and 9 per row, never a list per row nor
    the dense matrix.
    """

    def __init__(self, label_set: LabelSet) -> None:
        self.images: list[str] = []
        self.splits: list[str] = []
        self.negatives = False  # whether the file has a ``negatives`` column
        self._unseen = frozenset(int(c) for c in label_set.unseen_idx)
        self._indptr = array("q", [0])
        self._indices = array("i")
        self._values = array("b")
        self._train = array("b")

    def add(self, image: str, split: str, listed: list[int], absent: list[int]) -> None:
        """Append one image row: its listed (+1) and negative (-1) columns, disjoint.

        Columns are deduplicated and sorted; on a train row the unseen ones are dropped (hidden).
        """
        is_train = split == "train"
        self.images.append(image)
        self.splits.append("train" if is_train else "test")  # constants: one string per split
        self._train.append(is_train)
        entries = dict.fromkeys(listed, 1)
        entries.update(dict.fromkeys(absent, -1))
        columns = sorted(entries)
        if is_train and self._unseen:
            columns = [c for c in columns if c not in self._unseen]
        self._indices.extend(columns)
        self._values.extend([entries[c] for c in columns])
        self._indptr.append(len(self._indices))

    def targets(self, label_set: LabelSet) -> UserTargets:
        """The parsed entries as :class:`UserTargets` (the arrays are shared, not copied)."""

        def frozen(buffer: array | np.ndarray, dtype: type) -> np.ndarray:
            out: np.ndarray = np.frombuffer(buffer, dtype=dtype)
            out.flags.writeable = False  # the dataset is immutable
            return out

        return UserTargets(
            indptr=frozen(self._indptr, np.int64),
            indices=frozen(self._indices, np.int32),
            values=frozen(self._values, np.int8),
            n_labels=len(label_set),
            fill=0 if self.negatives else -1,
            train=frozen(self._train, np.bool_),
            hidden=frozen(label_set.unseen_idx, np.int64),
        )


def _read_labels(path: Path, label_set: LabelSet) -> _Parsed:
    """Rows of ``labels.csv``: image paths, splits and the listed (and negative) label columns."""
    if not os.path.lexists(path):
        raise DataError(f"{path}: missing (a data folder needs {LABELS_FILE}: image,split,labels)")
    parsed = _Parsed(label_set)
    first_line: dict[str, int] = {}
    try:
        with open_input(path, "r", what=LABELS_FILE, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            parsed.negatives = _check_header(path, reader.fieldnames)
            columns = _expected_columns(parsed.negatives)
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
