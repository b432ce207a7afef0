"""The feature store: one HDF5 file holding backbone feature maps, labels and vocabulary.

Layout (N images, L labels, feature map C×H×W)::

    /features      float16 [N, C, H, W]   chunked one image per chunk, so a read by index
                                          touches only that image
    /labels        CSR of int8 [N, L]     +1 present, -1 absent, 0 not annotated: a group of
                                          indptr [N+1], indices, values and attrs fill,
                                          n_labels (:mod:`mlzsl.store.sparse_labels`)
    /image_ids     str     [N]            image path relative to the data folder
    /split         str     [N]            "train" or "test"
    /vocabulary/names  str [L]
    /vocabulary/seen   bool [L]
    attrs: format, complete, backbone (JSON identity), image_size, mean, std,
           mlzsl_version, created, source, n_skipped, dataset (JSON DatasetInfo, optional)

A store is written whole by :func:`write_store` under a temporary name and renamed into place,
and ``attrs["complete"]`` is set last: a file at the final path is always a finished store.
Readers stream by index and never load the feature array whole, nor the dense label matrix:
``labels(rows)`` densifies the rows asked for.

Versions: ``mlzsl-store-2`` writes the labels as CSR (always: one layout to write; it is ~100×
smaller on Open Images, ~2.4× on NUS-WIDE, and its 5 bytes per stored entry only lose to dense on
matrices with no dominant value, which no benchmark has). ``mlzsl-store-1`` stores, with a dense
``/labels`` int8 [N, L] dataset, still read.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from mlzsl import __version__
from mlzsl.datasets.dataset_info import DatasetInfo, EvaluationKind, store_dataset_info
from mlzsl.errors import DataError
from mlzsl.files import atomic_path
from mlzsl.labels import LabelSet
from mlzsl.store.sparse_labels import (
    LabelSource,
    LabelWriter,
    SparseLabels,
    label_blocks,
    read_label_rows,
    read_sparse_labels,
)

FORMAT = "mlzsl-store-2"
READABLE_FORMATS = ("mlzsl-store-1", FORMAT)  # 1: dense /labels dataset
# the per-image content of a mlzsl-store-2 file, as laid out on disk (to compare two stores)
IMAGE_DATASETS = (
    "features",
    "labels/indptr",
    "labels/indices",
    "labels/values",
    "image_ids",
    "split",
)
_STR = h5py.string_dtype("utf-8")
_JSON_ATTRS = ("backbone", "dataset")


@dataclass(frozen=True)
class StoreHeader:
    """Everything about a store except its per-image arrays.

    Attributes:
        path: the store file.
        n_images: N.
        feature_shape: (C, H, W).
        label_set: the vocabulary, in label-column order.
        meta: the file's attributes (backbone identity decoded from JSON).
    """

    path: Path
    n_images: int
    feature_shape: tuple[int, int, int]
    label_set: LabelSet
    meta: dict[str, Any]

    @property
    def backbone(self) -> dict[str, Any]:
        """The identity of the backbone that made the features."""
        return dict(self.meta.get("backbone", {}))

    @property
    def dataset(self) -> DatasetInfo | None:
        """What benchmark the store is a copy of (``None`` for a plain user folder)."""
        return store_dataset_info(self.meta)


def _decode(values: Iterable[Any]) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


class FeatureStore:
    """Read access to a finished store; open it with ``FeatureStore(path)``.

    The HDF5 file is opened lazily in each process (safe with DataLoader workers, which fork
    after construction) and reads go by index.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._pid = -1
        self.header = read_header(self.path)
        with h5py.File(self.path, "r") as f:
            self.splits: np.ndarray = _read_splits(f["split"])  # str [N], 20 bytes per image
            sparse = isinstance(f["labels"], h5py.Group)
            # row i's label entries are [indptr[i], indptr[i+1]): 8 bytes per image, kept here
            self._indptr: np.ndarray | None = f["labels/indptr"][:] if sparse else None

    def __len__(self) -> int:
        return self.header.n_images

    @functools.cached_property
    def image_ids(self) -> list[str]:
        """N image paths relative to the data folder (read on first use: training needs none)."""
        return _decode(self._h5()["image_ids"][:])

    @property
    def label_set(self) -> LabelSet:
        """The store's vocabulary."""
        return self.header.label_set

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def indices(self, split: str) -> np.ndarray:
        """Row indices of ``split`` ("train" or "test"), ascending."""
        if split not in ("train", "test"):
            raise DataError(f"{self.path}: unknown split {split!r} (expected train or test)")
        return np.flatnonzero(self.splits == split)

    def test_set_line(self) -> str | None:
        """The line naming the test-set variant, for stores of a known benchmark."""
        info = self.header.dataset
        return None if info is None else info.test_set_line(int(np.sum(self.splits == "test")))

    @property
    def evaluation(self) -> EvaluationKind:
        """How the store is evaluated: its dataset.json ``evaluation`` (``"default"`` without
        one): :func:`mlzsl.protocol.evaluate` reports that kind's conventions."""
        info = self.header.dataset
        return "default" if info is None else info.evaluation

    def features(
        self, index: int | Sequence[int] | np.ndarray, *, dtype: npt.DTypeLike = np.float32
    ) -> np.ndarray:
        """Feature maps: [C, H, W] for one index, [n, C, H, W] for several.

        ``dtype=np.float16`` returns them as stored, without the conversion (60 % of a batch
        read's time on CPU: 12 of 20 ms for 64 maps of 512×14×14), to convert on the device.
        """
        dset = self._h5()["features"]
        if np.isscalar(index):
            return np.asarray(dset[int(index)], dtype=dtype)  # type: ignore[arg-type]
        return _take_rows(dset, index).astype(dtype, copy=False)  # type: ignore[arg-type]

    def labels(self, index: int | Sequence[int] | np.ndarray | slice = slice(None)) -> np.ndarray:
        """Dense label rows, int8 {+1, -1, 0}: [L] for one index, [n, L] for several or a slice.

        Only the rows asked for are densified; the default (every row) is for small stores and
        for the metrics of a split, not for a whole Open Images store (13 GB dense).
        """
        if self._indptr is None:  # a mlzsl-store-1 store: dense /labels
            dset = self._h5()["labels"]
            if isinstance(index, slice) or np.isscalar(index):
                return np.asarray(dset[index])
            return _take_rows(dset, index)  # type: ignore[arg-type]
        group = self._h5()["labels"]
        if isinstance(index, slice):
            return read_label_rows(group, self._indptr, np.arange(len(self))[index])
        if np.isscalar(index):
            row = int(index)  # type: ignore[arg-type]
            if not -len(self) <= row < len(self):
                raise DataError(f"{self.path}: row index out of range 0..{len(self) - 1}")
            return read_label_rows(group, self._indptr, np.asarray([row % len(self)]))[0]
        return read_label_rows(group, self._indptr, np.asarray(index))

    def sparse_labels(self) -> SparseLabels:
        """Every label row as CSR (memory O(stored entries); a dense old store is encoded)."""
        group = self._h5()["labels"]
        if self._indptr is None:
            return SparseLabels.concat(label_blocks(np.asarray(group[:])))
        return read_sparse_labels(group)

    def close(self) -> None:
        """Close the underlying file (reopened on the next read)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # an open h5py handle does not cross process boundaries
        return state


def _read_splits(dset: h5py.Dataset, rows: int = 65_536) -> np.ndarray:
    """The split column as a numpy str array, decoded a block of rows at a time (a million
    Python strings at once would cost more than the array itself)."""
    parts = [np.asarray(_decode(dset[i : i + rows]), dtype=str) for i in range(0, len(dset), rows)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=str)


def _take_rows(dset: h5py.Dataset, index: Sequence[int] | np.ndarray) -> np.ndarray:
    """Rows ``index`` of ``dset`` in the order asked.

    Reads each run of consecutive rows with one ``read_direct``: h5py's fancy indexing with a list
    is ~25x slower on per-image chunks (186 ms vs 7 ms for 64 random rows of a demo store).
    """
    idx = np.asarray(index, dtype=np.int64)
    if idx.size == 0:
        return np.empty((0, *dset.shape[1:]), dtype=dset.dtype)
    if idx.min() < 0 or idx.max() >= len(dset):
        raise DataError(f"{dset.file.filename}: row index out of range 0..{len(dset) - 1}")
    unique, inverse = np.unique(idx, return_inverse=True)
    out = np.empty((len(unique), *dset.shape[1:]), dtype=dset.dtype)
    breaks = np.flatnonzero(np.diff(unique) != 1) + 1  # starts of runs of consecutive rows
    for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(unique)], strict=True):
        first = int(unique[start])
        dset.read_direct(out, np.s_[first : first + stop - start], np.s_[start:stop])
    return out[inverse]


def read_header(path: str | Path) -> StoreHeader:
    """Open ``path`` and check it is a complete mlzsl store; return its header."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: feature store not found")
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            if attrs.get("format") not in READABLE_FORMATS:
                raise DataError(f"{path}: not an mlzsl feature store (format {FORMAT} expected)")
            if not bool(attrs.get("complete", False)):
                raise DataError(f"{path}: store is incomplete; rerun `mlzsl extract` to finish it")
            names = _decode(f["vocabulary/names"][:])
            seen = [bool(s) for s in f["vocabulary/seen"][:]]
            shape = tuple(int(s) for s in f["features"].shape)
    except OSError as e:
        raise DataError(f"{path}: cannot read HDF5 file ({e})") from None
    meta = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}
    meta["backbone"] = json.loads(str(meta.get("backbone", "{}")))
    if "dataset" in meta:
        meta["dataset"] = json.loads(str(meta["dataset"]))
    for key in ("mean", "std"):
        if key in meta:
            meta[key] = [float(x) for x in np.asarray(meta[key]).ravel()]
    return StoreHeader(
        path=path,
        n_images=shape[0],
        feature_shape=(shape[1], shape[2], shape[3]),
        label_set=LabelSet(tuple(names), tuple(seen)),
        meta=meta,
    )


def write_store(
    path: str | Path,
    *,
    features: Iterable[np.ndarray],
    n_images: int,
    feature_shape: tuple[int, int, int],
    labels: LabelSource,
    image_ids: Sequence[str],
    splits: Sequence[str],
    label_set: LabelSet,
    meta: dict[str, Any],
) -> Path:
    """Write a complete store atomically.

    Args:
        path: the final file; written under a temporary name in its folder, then renamed
            (:func:`mlzsl.files.atomic_path`: on a failure, a full disk included, nothing is
            left and an ``OSError`` is a one-line :class:`DataError`).
        features: yields float arrays [n_i, C, H, W] in row order, n_i summing to ``n_images``
            (streamed: only one block is in memory at a time).
        n_images: N.
        feature_shape: (C, H, W).
        labels: int8 [N, L] {+1, -1, 0}: dense, :class:`SparseLabels`, or blocks of rows in
            row order (each dense or sparse; streamed like ``features``). Stored as CSR.
        image_ids: N image paths.
        splits: N of "train"/"test".
        label_set: the vocabulary (L labels).
        meta: attributes; ``backbone`` and ``dataset`` (dicts) are stored as JSON.

    Returns:
        The final path.
    """
    path = Path(path)
    n_labels = len(label_set)
    shape = labels.shape if isinstance(labels, (np.ndarray, SparseLabels)) else (n_images, n_labels)
    if shape != (n_images, n_labels) or not len(image_ids) == len(splits) == n_images:
        raise DataError(
            f"{path}: inconsistent store contents: labels {shape}, "
            f"{len(image_ids)} ids, {len(splits)} splits, {n_images} images, {n_labels} labels"
        )
    with atomic_path(path, what="feature store") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["complete"] = False
        dset = f.create_dataset(
            "features",
            shape=(n_images, *feature_shape),
            dtype=np.float16,
            chunks=(1, *feature_shape) if n_images else None,
        )
        row = 0
        for block in features:
            dset[row : row + len(block)] = block.astype(np.float16)
            row += len(block)
        if row != n_images:
            raise DataError(f"{path}: {row} feature rows written, {n_images} expected")
        _write_labels(f, labels, n_images, n_labels, path)
        f.create_dataset("image_ids", data=list(image_ids), dtype=_STR)
        f.create_dataset("split", data=list(splits), dtype=_STR)
        f.create_dataset("vocabulary/names", data=list(label_set.names), dtype=_STR)
        f.create_dataset("vocabulary/seen", data=np.asarray(label_set.seen, dtype=bool))
        for key, value in meta.items():
            f.attrs[key] = json.dumps(value) if key in _JSON_ATTRS else value
        f.attrs["mlzsl_version"] = __version__
        f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        f.attrs["complete"] = True  # last: a crash before here leaves complete=False
    return path


def _write_labels(
    f: h5py.File, labels: LabelSource, n_images: int, n_labels: int, path: Path
) -> None:
    """``/labels`` as CSR, one block of rows at a time."""
    writer = LabelWriter(f, n_images, n_labels)
    try:
        for block in label_blocks(labels):
            writer.append(block)
        writer.close()
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
