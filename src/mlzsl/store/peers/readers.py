"""Streaming readers of the peers' feature files: BiAM's HDF5 and LESA's TFRecords."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np

from mlzsl.errors import DataError
from mlzsl.store.peers.schemes import LESA_DTYPES, LESA_LAYOUT, Scheme
from mlzsl.store.peers.tfrecord import FeatureValue, read_examples


class Reader(Protocol):
    """One peer's file format."""

    suffix: str  # files picked from a folder: ``*{suffix}``

    def scan(
        self, path: Path, split: str, scheme: Scheme
    ) -> Iterator[tuple[str, np.ndarray, tuple[int, int, int]]]:
        """(image id, label row int8 [L], feature shape (C, H, W)) of each image of ``path``."""
        ...

    def features(self, path: Path) -> Iterator[tuple[str, np.ndarray]]:
        """(image id, float32 [C, H, W]) of each image of ``path``, in :meth:`scan` order."""
        ...


def _square(positions: int, where: str, field: str) -> int:
    side = math.isqrt(positions)
    if side * side != positions:
        raise DataError(f"{where}: field {field!r} has {positions} positions, not a square H×W")
    return side


class BiamReader:
    """BiAM's HDF5 files: datasets ``<image>-features`` [C, P], ``<image>-<label field>``."""

    suffix = ".h5"

    @staticmethod
    def _open(path: Path) -> h5py.File:
        try:
            return h5py.File(path, "r")
        except OSError as e:
            raise DataError(f"{path}: cannot read HDF5 file ({e})") from None

    @staticmethod
    def _images(f: h5py.File) -> list[str]:
        """Image names: the keys ``<image>-features``, in the file's (name) order."""
        return [key[: -len("-features")] for key in f.keys() if key.endswith("-features")]

    @staticmethod
    def _dataset(f: h5py.File, path: Path, image: str, names: Sequence[str]) -> h5py.Dataset:
        for name in names:
            if f"{image}-{name}" in f:
                return f[f"{image}-{name}"]
        raise DataError(f"{path}: image {image!r} has no field '{image}-{names[0]}'")

    def _shape(self, f: h5py.File, path: Path, image: str) -> tuple[int, int, int]:
        shape = self._dataset(f, path, image, ("features",)).shape
        if len(shape) != 2:
            raise DataError(
                f"{path}: field '{image}-features' has shape {shape}, expected [C, P] "
                "(channels × positions, e.g. (512, 196))"
            )
        side = _square(shape[1], f"{path}: image {image!r}", "features")
        return (int(shape[0]), side, side)

    def scan(
        self, path: Path, split: str, scheme: Scheme
    ) -> Iterator[tuple[str, np.ndarray, tuple[int, int, int]]]:
        """See :class:`Reader`."""
        with self._open(path) as f:
            for image in self._images(f):
                values = [
                    self._dataset(f, path, image, fd.names)[()] for fd in scheme.fields(split)
                ]
                row = scheme.row(values, split, f"{path}: image {image!r}")
                yield image, row, self._shape(f, path, image)

    def features(self, path: Path) -> Iterator[tuple[str, np.ndarray]]:
        """See :class:`Reader`."""
        with self._open(path) as f:
            for image in self._images(f):
                c, h, w = self._shape(f, path, image)
                x = f[f"{image}-features"][()]  # [C, P]
                yield image, np.asarray(x, dtype=np.float32).reshape(c, h, w)


class LesaReader:
    """LESA's TFRecords: ``feature`` raw float32 [P × C], ``img_id``, raw label arrays."""

    suffix = ".tfrecords"

    def __init__(self, layout: tuple[int, int] = LESA_LAYOUT, compression: str = "auto") -> None:
        self.positions, self.channels = layout
        self.side = _square(self.positions, "LESA layout", "feature")
        self.compression = compression

    def _records(self, path: Path, verify: bool) -> Iterator[tuple[str, dict[str, FeatureValue]]]:
        examples = read_examples(path, compression=self.compression, verify=verify)
        for number, example in enumerate(examples, 1):
            yield f"{path}: record {number}", example

    def _array(
        self, example: dict[str, FeatureValue], names: Sequence[str], where: str
    ) -> np.ndarray:
        name = next((n for n in names if n in example), None)
        if name is None:
            raise DataError(f"{where}: no field {names[0]!r} (has {', '.join(sorted(example))})")
        value = example[name]
        if isinstance(value, np.ndarray):  # a float_list / int64_list
            return value
        if len(value) != 1:
            raise DataError(f"{where}: field {name!r} holds {len(value)} byte strings, expected 1")
        raw = value[0]
        dtype = np.dtype(LESA_DTYPES.get(name, "<f4"))
        if len(raw) % dtype.itemsize:
            raise DataError(
                f"{where}: field {name!r} is {len(raw)} bytes, not whole {dtype} values"
            )
        return np.frombuffer(raw, dtype=dtype)

    def _image_id(self, example: dict[str, FeatureValue], where: str) -> str:
        value = example.get("img_id")
        if not isinstance(value, list) or len(value) != 1:
            raise DataError(f"{where}: field 'img_id' missing or not one byte string")
        text = value[0].decode("utf-8", errors="replace")
        return text.split("/Flickr/", 1)[-1]  # NUS-WIDE: from <concept>/ on

    def _raw_feature(self, example: dict[str, FeatureValue], where: str) -> np.ndarray:
        """The ``feature`` values, checked to be P × C of them."""
        x = self._array(example, ("feature",), where)
        p, c = self.positions, self.channels
        if x.size != p * c:
            raise DataError(
                f"{where}: field 'feature' holds {x.size:,} values, expected {p} × {c} = "
                f"{p * c:,} (positions × channels)"
            )
        return x

    def _feature(self, example: dict[str, FeatureValue], where: str) -> np.ndarray:
        """float32 [C, H, W] from the [P × C] row-major values."""
        x = self._raw_feature(example, where).reshape(self.positions, self.channels)  # [P, C]
        x = np.ascontiguousarray(x.T, dtype=np.float32)  # [C, P]
        return x.reshape(self.channels, self.side, self.side)  # [C, H, W]

    def scan(
        self, path: Path, split: str, scheme: Scheme
    ) -> Iterator[tuple[str, np.ndarray, tuple[int, int, int]]]:
        """See :class:`Reader`. Data checksums are checked in :meth:`features`."""
        shape = (self.channels, self.side, self.side)
        for where, example in self._records(path, verify=False):
            values = [self._array(example, fd.names, where) for fd in scheme.fields(split)]
            self._raw_feature(example, where)
            yield self._image_id(example, where), scheme.row(values, split, where), shape

    def features(self, path: Path) -> Iterator[tuple[str, np.ndarray]]:
        """See :class:`Reader`."""
        for where, example in self._records(path, verify=True):
            yield self._image_id(example, where), self._feature(example, where)
