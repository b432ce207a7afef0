"""The user data format: a folder of images with two CSV files. The built-in scenes take it too.

Layout of a folder ``root``::

    root/vocabulary.csv   label,split          split: seen | unseen   (see LabelSet.from_csv)
    root/labels.csv       image,split,labels   split: train | test; labels joined by "|"
    root/<images>         paths as written in labels.csv, relative to root (subfolders allowed)

Example ``labels.csv``::

    image,split,labels
    images/beach_01.jpg,train,sea|sand
    images/night.jpg,test,
    street/corner.png,test,car|person

Targets are an int8 matrix [N, L] in column order of the vocabulary: +1 where the row lists the
label, -1 where it does not. **Unseen labels are hidden on train rows**: every unseen column of a
train row is 0 (not annotated), whether the row lists the label or not, so that no training loop
can see an unseen label by mistake. Test rows keep +1/-1 for every label.

Images are not opened here: whether a file exists and decodes is checked where it is read
(feature extraction skips unreadable images and reports them).
"""

from __future__ import annotations

import csv
import os
import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np

from mlzsl.errors import ConfigError, DataError, LabelError
from mlzsl.labels import LabelSet

SPLITS = ("train", "test")
VOCABULARY_FILE = "vocabulary.csv"
LABELS_FILE = "labels.csv"
LABEL_SEPARATOR = "|"
_COLUMNS = ("image", "split", "labels")


@dataclass(frozen=True, eq=False)
class UserDataset:
    """A parsed user data folder: N images, their split and their targets over L labels.

    Attributes:
        root: the folder; image paths are relative to it.
        label_set: the L labels (from ``vocabulary.csv``), in target column order.
        images: N image paths relative to ``root``, POSIX-style, in ``labels.csv`` order.
        splits: N split names, each ``"train"`` or ``"test"``.
        targets: int8 [N, L]: +1 listed, -1 not listed, 0 not annotated (unseen on train rows).
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

    Raises:
        DataError: a missing folder or file, a missing column, an unknown split or label,
            an image path that is absolute or leaves the folder, a duplicate image row, or a
            ``labels.csv`` with no image rows. The message names the file and line.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root}: no such data folder (expected {VOCABULARY_FILE} and {LABELS_FILE})"
        )
    label_set = _read_vocabulary(root / VOCABULARY_FILE)
    images, splits, listed = _read_labels(root / LABELS_FILE, label_set)
    targets = _targets(label_set, splits, listed)
    return UserDataset(root, label_set, images, splits, targets)


def write_user_dataset(
    root: str | Path, label_set: LabelSet, rows: Iterable[tuple[str, str, Sequence[str]]]
) -> None:
    """Write ``vocabulary.csv`` and then ``labels.csv`` into ``root`` (created if needed).

    Each CSV is written under a temporary name and renamed, and ``labels.csv`` comes last, so a
    folder that has it is complete.

    Args:
        root: the data folder.
        label_set: the vocabulary.
        rows: ``(image, split, labels)`` per image: a path relative to ``root``, "train" or
            "test", and label names from ``label_set``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _check_separator(label_set, root / VOCABULARY_FILE)
    lines = [list(_COLUMNS)]
    for image, split, labels in rows:
        if split not in SPLITS:
            raise ConfigError(f"image {image!r}: split must be 'train' or 'test', got {split!r}")
        for name in labels:
            label_set.index(name)  # raises LabelError for a name not in the vocabulary
        lines.append([image, split, LABEL_SEPARATOR.join(labels)])
    _replace(root / VOCABULARY_FILE, lambda tmp: label_set.to_csv(tmp))
    _replace(root / LABELS_FILE, lambda tmp: _write_rows(tmp, lines))


def _read_vocabulary(path: Path) -> LabelSet:
    if not path.is_file():
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


def _read_labels(path: Path, label_set: LabelSet) -> tuple[list[str], list[str], list[list[int]]]:
    """Rows of ``labels.csv``: image paths, splits and listed label columns per row."""
    if not path.is_file():
        raise DataError(f"{path}: missing (a data folder needs {LABELS_FILE}: image,split,labels)")
    images: list[str] = []
    splits: list[str] = []
    listed: list[list[int]] = []
    first_line: dict[str, int] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            _check_header(path, reader.fieldnames)
            for row in reader:
                line = reader.line_num
                image, split, labels = _parse_row(path, line, row, label_set)
                if image in first_line:
                    raise DataError(
                        f"{path}:{line}: image {image!r} is listed twice "
                        f"(first on line {first_line[image]})"
                    )
                first_line[image] = line
                images.append(image)
                splits.append(split)
                listed.append(labels)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if not images:
        raise DataError(f"{path}: no image rows (expected one row per image after the header)")
    return images, splits, listed


def _check_header(path: Path, fieldnames: Sequence[str] | None) -> None:
    if not fieldnames:
        raise DataError(f"{path}:1: empty file, expected a header 'image,split,labels'")
    missing = [c for c in _COLUMNS if c not in [n.strip() for n in fieldnames]]
    if missing:
        raise DataError(
            f"{path}:1: header lacks column(s) {', '.join(missing)}; "
            f"expected 'image,split,labels', got {','.join(fieldnames)!r}"
        )


def _parse_row(
    path: Path, line: int, row: dict[str | None, str | None], label_set: LabelSet
) -> tuple[str, str, list[int]]:
    """One ``labels.csv`` row as (normalised image path, split, listed label columns)."""
    row = {(k.strip() if k else k): v for k, v in row.items()}
    if any(row.get(c) is None for c in _COLUMNS):
        raise DataError(f"{path}:{line}: expected 3 fields (image,split,labels)")
    image = _normalise_image((row["image"] or "").strip(), path, line)
    split = (row["split"] or "").strip().lower()
    if split not in SPLITS:
        raise DataError(f"{path}:{line}: split must be 'train' or 'test', got {row['split']!r}")
    columns = []
    for name in (row["labels"] or "").split(LABEL_SEPARATOR):
        name = name.strip()
        if not name:
            continue  # an empty field is an image with no label
        try:
            columns.append(label_set.index(name))
        except LabelError:
            raise DataError(f"{path}:{line}: label {name!r} is not in {VOCABULARY_FILE}") from None
    return image, split, columns


def _normalise_image(image: str, path: Path, line: int) -> str:
    """``image`` as a clean POSIX path inside the folder; absolute or escaping paths rejected."""
    if not image:
        raise DataError(f"{path}:{line}: empty image path")
    posix = image.replace("\\", "/")
    if posix.startswith("/") or PureWindowsPath(image).drive:
        raise DataError(f"{path}:{line}: image path {image!r} must be relative to the folder")
    clean = posixpath.normpath(posix)
    if clean == ".." or clean.startswith("../") or clean == ".":
        raise DataError(f"{path}:{line}: image path {image!r} leaves the data folder")
    return clean


def _targets(label_set: LabelSet, splits: list[str], listed: list[list[int]]) -> np.ndarray:
    """int8 [N, L]: +1 listed, -1 not, then 0 on every unseen column of a train row."""
    targets = np.full((len(splits), len(label_set)), -1, dtype=np.int8)  # [N, L]
    for i, columns in enumerate(listed):
        targets[i, columns] = 1
    train = np.asarray(splits) == "train"  # [N]
    targets[np.ix_(train, label_set.unseen_idx)] = 0  # hidden from training
    return targets


def _write_rows(path: Path, lines: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(lines)


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(tmp_path)`` and rename the result into place."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
