"""Label matrices in compressed sparse rows (CSR), in memory and in the feature store.

A label matrix [N, L] holds +1 (present), -1 (verified absent) and 0 (not annotated). Most of its
entries share one value, the *fill*: 0 on Open Images (a few verified labels per image out of
7,586), -1 on NUS-WIDE (every unlisted tag is absent). CSR keeps only the entries that differ from
the fill: per row, the ascending columns and their values. Open Images train (1.7 M × 7,586, ~8
positives and a few verified negatives per image) is ~13 GB dense and ~0.1 GB as CSR.

In the store, ``/labels`` is a group (see :mod:`mlzsl.store.feature_store`)::

    /labels/indptr   int64 [N + 1]   row i's entries are indices[indptr[i]:indptr[i + 1]]
    /labels/indices  int32 [nnz]     their columns, ascending within a row
    /labels/values   int8  [nnz]     their values, each ≠ fill
    attrs: fill (int8), n_labels (L)

It is written block by block (:class:`LabelWriter`) and read a batch of rows at a time
(:func:`read_label_rows`); only ``indptr`` (8 bytes per image) is kept in memory by a reader.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import h5py
import numpy as np

from mlzsl.errors import DataError

VALUES = (0, -1, 1)  # the annotation states, in the order ties for the fill are broken
_ROWS_PER_PASS = 4096  # rows of a dense matrix examined at once: bounded temporaries
_ENTRY_CHUNK = 8192  # HDF5 chunk of indices/values: a row read touches ≤ 2 chunks of 32 KB / 8 KB


@dataclass(frozen=True, eq=False)
class SparseLabels:
    """A label matrix [N, L] as CSR of the entries that differ from ``fill``.

    Attributes:
        indptr: int64 [N + 1], non-decreasing, ``indptr[0] == 0``.
        indices: int32 [nnz], columns of the stored entries, ascending within each row.
        values: int8 [nnz], their values (each ≠ ``fill``).
        n_labels: L.
        fill: the value of every entry not stored (+1, -1 or 0).
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    n_labels: int
    fill: int

    @property
    def shape(self) -> tuple[int, int]:
        """(N, L)."""
        return len(self.indptr) - 1, self.n_labels

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return len(self.indices)

    @classmethod
    def from_dense(cls, dense: np.ndarray, fill: int | None = None) -> SparseLabels:
        """CSR of ``dense`` (int [N, L]); ``fill`` defaults to its most common value."""
        dense = np.asarray(dense)
        if dense.ndim != 2:
            raise DataError(f"labels must be a matrix [N, L], got shape {dense.shape}")
        fill = most_common_value(dense) if fill is None else int(fill)
        rows, cols = np.nonzero(dense != fill)  # row-major: columns ascend within a row
        indptr = np.zeros(len(dense) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(dense)), out=indptr[1:])
        values = dense[rows, cols].astype(np.int8)
        return cls(indptr, cols.astype(np.int32), values, dense.shape[1], fill)

    def to_dense(self) -> np.ndarray:
        """The dense matrix, int8 [N, L]."""
        out = np.full(self.shape, self.fill, dtype=np.int8)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))  # [nnz]
        out[rows, self.indices] = self.values
        return out

    def with_fill(self, fill: int) -> SparseLabels:
        """The same matrix encoded with another fill (goes through the dense block)."""
        return self if fill == self.fill else SparseLabels.from_dense(self.to_dense(), fill)

    @classmethod
    def concat(cls, blocks: Iterable[SparseLabels]) -> SparseLabels:
        """Blocks of rows stacked, encoded with the first block's fill."""
        parts = list(blocks)
        if not parts:
            raise DataError("no label blocks to stack")
        first = parts[0]
        parts = [first] + [b.with_fill(first.fill) for b in parts[1:]]
        if any(b.n_labels != first.n_labels for b in parts):
            raise DataError(f"label blocks differ in width: {sorted({b.n_labels for b in parts})}")
        offsets = np.cumsum([0] + [b.nnz for b in parts])
        indptr = np.concatenate(
            [[0]] + [b.indptr[1:] + o for b, o in zip(parts, offsets[:-1], strict=True)]
        )
        return cls(
            indptr.astype(np.int64),
            np.concatenate([b.indices for b in parts]).astype(np.int32),
            np.concatenate([b.values for b in parts]).astype(np.int8),
            first.n_labels,
            first.fill,
        )


def most_common_value(dense: np.ndarray) -> int:
    """The annotation state (0, -1 or +1) most frequent in ``dense``; ties go to 0, then -1."""
    counts = np.zeros(len(VALUES), dtype=np.int64)
    for start in range(0, len(dense), _ROWS_PER_PASS):
        block = dense[start : start + _ROWS_PER_PASS]
        counts += [np.count_nonzero(block == v) for v in VALUES]
    return VALUES[int(np.argmax(counts))]


LabelBlock = np.ndarray | SparseLabels
LabelSource = np.ndarray | SparseLabels | Iterable[LabelBlock]
"""What a store writer takes: a dense int8 [N, L], a :class:`SparseLabels`, or blocks of rows
(each dense or sparse) in row order."""


def label_blocks(labels: LabelSource) -> Iterator[SparseLabels]:
    """``labels`` as CSR blocks of rows, each encoded with the first block's fill.

    A dense matrix is cut into blocks of ``_ROWS_PER_PASS`` rows, so the temporaries of the
    encoding stay small whatever N.
    """
    if isinstance(labels, SparseLabels):
        yield labels
        return
    if isinstance(labels, np.ndarray):
        dense_fill = most_common_value(labels) if labels.ndim == 2 else 0
        for start in range(0, max(1, len(labels)), _ROWS_PER_PASS):
            yield SparseLabels.from_dense(labels[start : start + _ROWS_PER_PASS], dense_fill)
        return
    fill: int | None = None
    for block in labels:
        sparse = block if isinstance(block, SparseLabels) else SparseLabels.from_dense(block, fill)
        fill = sparse.fill if fill is None else fill
        yield sparse.with_fill(fill)


class LabelWriter:
    """Writes ``/labels`` of an open store file as CSR, one block of rows at a time."""

    def __init__(self, f: h5py.File, n_images: int, n_labels: int) -> None:
        self.group = f.create_group("labels")
        self.n_images, self.n_labels = n_images, n_labels
        self.indptr = self.group.create_dataset("indptr", shape=(n_images + 1,), dtype=np.int64)
        self.indptr[0] = 0
        for name, dtype in (("indices", np.int32), ("values", np.int8)):
            self.group.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(_ENTRY_CHUNK,)
            )
        self.rows, self.nnz = 0, 0

    def append(self, block: SparseLabels) -> None:
        """Add the rows of ``block`` after those already written."""
        n, width = block.shape
        if width != self.n_labels or self.rows + n > self.n_images:
            raise DataError(
                f"label rows {self.rows}..{self.rows + n} of width {width} do not fit "
                f"[{self.n_images}, {self.n_labels}]"
            )
        if self.rows == 0:
            self.group.attrs["fill"] = np.int8(block.fill)
            self.group.attrs["n_labels"] = self.n_labels
        for name, data in (("indices", block.indices), ("values", block.values)):
            dset = self.group[name]
            dset.resize((self.nnz + block.nnz,))
            dset[self.nnz :] = data
        self.indptr[self.rows + 1 : self.rows + n + 1] = block.indptr[1:] + self.nnz
        self.rows, self.nnz = self.rows + n, self.nnz + block.nnz

    def close(self) -> None:
        """Check every row was written."""
        if self.rows != self.n_images:
            raise DataError(f"{self.rows} label rows written, {self.n_images} expected")
        if self.n_images == 0:
            self.group.attrs["fill"] = np.int8(0)
            self.group.attrs["n_labels"] = self.n_labels


def read_label_rows(group: h5py.Group, indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Dense rows ``rows`` (int8 [n, L], in the order asked) of a CSR ``/labels`` group.

    ``indptr`` is the group's ``indptr`` already in memory. Each run of consecutive rows is one
    read of ``indices`` and one of ``values``.
    """
    fill, n_labels = int(group.attrs["fill"]), int(group.attrs["n_labels"])
    idx = np.asarray(rows, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(indptr) - 1):
        raise DataError(f"{group.file.filename}: row index out of range 0..{len(indptr) - 2}")
    unique, inverse = np.unique(idx, return_inverse=True)
    out = np.full((len(unique), n_labels), fill, dtype=np.int8)  # [n_unique, L]
    if not len(unique):
        return out
    breaks = np.flatnonzero(np.diff(unique) != 1) + 1  # starts of runs of consecutive rows
    indices, values = group["indices"], group["values"]
    for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(unique)], strict=True):
        first, last = int(unique[start]), int(unique[stop - 1])
        lo, hi = int(indptr[first]), int(indptr[last + 1])
        if hi == lo:
            continue
        local = np.repeat(np.arange(start, stop), np.diff(indptr[first : last + 2]))  # [nnz_run]
        out[local, indices[lo:hi]] = values[lo:hi]
    return out[inverse]


def read_sparse_labels(group: h5py.Group) -> SparseLabels:
    """The whole CSR ``/labels`` group in memory (O(nnz), never the dense matrix)."""
    return SparseLabels(
        group["indptr"][:],
        group["indices"][:],
        group["values"][:],
        int(group.attrs["n_labels"]),
        int(group.attrs["fill"]),
    )
