"""How each peer's label fields map onto the benchmark vocabulary (seen, then unseen columns)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlzsl.datasets.dataset_info import DatasetInfo
from mlzsl.datasets.vocab import nus_label_set, read_open_images_vocabulary
from mlzsl.errors import DataError
from mlzsl.labels import LabelSet, read_vocabulary

PathArg = str | os.PathLike[str]
Paths = PathArg | Sequence[PathArg]

DATASETS = ("nus-wide", "open-images")
UNSEEN_CHOICES = ("evaluated", "all")
LESA_LAYOUT = (196, 512)  # LESA's dim_feature: positions × channels

F16_MAX = float(np.finfo(np.float16).max)
BLOCK = 32  # images per block handed to write_store
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

# Raw dtypes of LESA's bytes fields (np.float32(...).tostring() / np.int32 labels).
LESA_DTYPES = {
    "feature": "<f4",
    "label_1k": "<f4",
    "label_81": "<f4",
    "label": "<i4",
    "seen_label": "<i4",
    "unseen_label": "<i4",
}


@dataclass(frozen=True)
class Field:
    """One label field of a peer's file and the columns we keep from it.

    Attributes:
        names: the field's names in the files (alternatives; the first present is read).
        columns: accepted row length -> positions kept, in our column order.
    """

    names: tuple[str, ...]
    columns: dict[int, np.ndarray]

    def take(self, values: np.ndarray, where: str) -> np.ndarray:
        """Our int8 {+1, -1, 0} labels from the field's raw row."""
        values = np.asarray(values).ravel()
        keep = self.columns.get(len(values))
        if keep is None:
            expected = " or ".join(f"{n:,}" for n in self.columns)
            raise DataError(
                f"{where}: field {self.names[0]!r} holds {len(values):,} labels, "
                f"expected {expected}"
            )
        picked = values[keep]
        if picked.dtype.kind == "f" and not np.all(np.isfinite(picked)):
            raise DataError(f"{where}: field {self.names[0]!r} holds non-finite labels")
        return np.sign(picked).astype(np.int8)  # ±2 (a twice-listed image) keeps its sign


@dataclass(frozen=True)
class Scheme:
    """How one peer's label fields for one benchmark become our label rows."""

    label_set: LabelSet
    seen: Field
    unseen: Field
    info: DatasetInfo

    def fields(self, split: str) -> tuple[Field, ...]:
        """The fields read for a row of ``split`` (train rows never read unseen labels)."""
        return (self.seen, self.unseen) if split == "test" else (self.seen,)

    def row(self, values: Sequence[np.ndarray], split: str, where: str) -> np.ndarray:
        """int8 [L] from the raw values of :meth:`fields` (in that order)."""
        row = np.zeros(len(self.label_set), dtype=np.int8)
        n_seen = len(self.label_set.seen_idx)
        row[:n_seen] = self.seen.take(values[0], where)
        if split == "test":
            row[n_seen:] = self.unseen.take(values[1], where)
        return row  # train rows: unseen columns stay 0, hidden from training


def _everything(n: int) -> np.ndarray:
    return np.arange(n)


def _find(folder: Path, name: str) -> Path:
    """``folder/name``, or the one file of that name below ``folder`` (BiAM's tree)."""
    if (folder / name).is_file():
        return folder / name
    found = sorted(folder.rglob(name)) if folder.is_dir() else []
    if len(found) != 1:
        where = "found twice" if found else "not found"
        raise DataError(f"{folder}: vocabulary file {name} {where}")
    return found[0]


def _nus_vocabulary(folder: Path) -> tuple[LabelSet, np.ndarray, int]:
    """The NUS-WIDE label set, the positions of its seen tags in TagList1k, the number of tags."""
    taglist, concepts = _find(folder, "TagList1k.txt"), _find(folder, "Concepts81.txt")
    label_set = nus_label_set(taglist, concepts)
    position = {tag: i for i, tag in enumerate(read_vocabulary(taglist))}
    return label_set, np.asarray([position[t] for t in label_set.seen_names]), len(position)


def _open_images_scheme(
    folder: Path, unseen: str, fields: tuple[tuple[str, ...], ...], peer: str
) -> Scheme:
    """Open Images: seen columns as they are, unseen the evaluated (or all) candidates."""
    if unseen not in UNSEEN_CHOICES:
        raise DataError(f"unseen must be one of {', '.join(UNSEEN_CHOICES)}, got {unseen!r}")
    vocab = read_open_images_vocabulary(folder)
    n_seen, n_candidates = len(vocab.seen_ids), len(vocab.unseen_ids)
    keep = vocab.evaluated if unseen == "evaluated" else _everything(n_candidates)
    return Scheme(
        vocab.label_set(unseen),
        Field(fields[0], {n_seen: _everything(n_seen)}),
        Field(fields[1], {n_candidates: np.asarray(keep)}),
        _dataset_info("open-images", peer),
    )


def _dataset_info(dataset: str, peer: str) -> DatasetInfo:
    if dataset == "nus-wide":
        return DatasetInfo("NUS-WIDE", 107_859, "default", f"{peer} feature files")
    # 125,436 test images: BiAM's paper_logs/openimages.log ("total TEST samples")
    return DatasetInfo("Open Images V4", 125_436, "open_images", f"{peer} feature files")


def check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r} (expected {' or '.join(DATASETS)})")


def biam_scheme(dataset: str, vocabulary: Path, unseen: str) -> Scheme:
    """BiAM's label fields for ``dataset`` (see the module doc)."""
    check_dataset(dataset)
    if dataset == "open-images":
        return _open_images_scheme(vocabulary, unseen, (("seenlabels",), ("unseenlabels",)), "BiAM")
    label_set, _, _ = _nus_vocabulary(vocabulary)
    s, u = len(label_set.seen_idx), len(label_set.unseen_idx)
    seen = Field(("labels",), {s: _everything(s), s + u: _everything(s)})  # train, test file
    unseen_field = Field(("labels_81",), {u: _everything(u)})
    return Scheme(label_set, seen, unseen_field, _dataset_info(dataset, "BiAM"))


def lesa_scheme(dataset: str, vocabulary: Path, unseen: str) -> Scheme:
    """LESA's label fields for ``dataset`` (see the module doc)."""
    check_dataset(dataset)
    if dataset == "open-images":
        fields = (("seen_label", "label"), ("unseen_label",))  # test file, train file
        return _open_images_scheme(vocabulary, unseen, fields, "LESA")
    label_set, seen_in_1k, n_tags = _nus_vocabulary(vocabulary)
    s, u = len(label_set.seen_idx), len(label_set.unseen_idx)
    seen = Field(("label_1k",), {n_tags: seen_in_1k, s: _everything(s)})  # 1000, or 925
    unseen_field = Field(("label_81",), {u: _everything(u)})
    return Scheme(label_set, seen, unseen_field, _dataset_info(dataset, "LESA"))
