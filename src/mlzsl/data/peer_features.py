"""Import the peers' released feature files (BiAM's HDF5, LESA's TFRecords) into a feature store.

Both peers ship VGG19 conv5_4 maps of 224×224 images: C = 512 channels on H×W = 14×14 = P = 196
positions. Files are read one image at a time in two streaming passes (labels and image ids
first, to size the store; then the features), so a file of tens of GB never sits in memory.

Labels become our convention, +1 present / -1 absent / 0 not annotated, in the column order of
the benchmark vocabulary (seen labels, then unseen). Unseen columns of train rows stay 0: unseen
labels are hidden from training whatever the file holds.

What the files hold (read in the peers' code; BiAM = akshitac8/BiAM, LESA = hbdat/cvpr20_LESA):

BiAM, HDF5 with one gzip dataset per image and field, named ``<image>-<field>``
(``feature_extraction/extract_nus_wide.py``, ``extract_openimages_{train,test}.py``):
    - ``features`` float32 [C, P] = [512, 196].
    - NUS-WIDE: ``labels`` int8 [925] in the train file, [1006] (925 seen, 81 unseen) in the
      test file; ``labels_81`` int8 [81]. Values ±1: the ranking loss (``model.py``) takes
      clamp(y, 0, 1) as positives and clamp(-y, 0, 1) as negatives, and ``compute_AP``
      (``util_nus.py``) keeps |y| = 1. Unseen columns come from ``labels_81``.
    - Open Images: ``seenlabels`` int8 [7186]; ``unseenlabels`` int8 [2594] in the test file
      only. 2·confidence - 1 for human-verified classes, 0 for classes not annotated
      (``compute_AP`` in ``util_openimages.py`` drops zeros). An image listed twice in the
      annotations has its two rows summed, so |y| can reach 2; the sign is what is kept here.
    - image names: NUS-WIDE's ``<concept>/<file>.jpg`` with "/" made "_"
      (``actor_0002_174174086.jpg``), Open Images ``<ImageID>.jpg``. BiAM lists NUS-WIDE images
      from a pickled ``{'img_names': [...]}`` and Open Images images from the file's keys
      (``np.unique(key.split('-')[0])``); we list the file's keys (HDF5 iterates them by name).
    - split: one file per split (``nus_wide_train.h5`` / ``nus_wide_test.h5``; Open Images a
      folder of train ``CHUNK_*.h5`` files and one test file). BiAM's validation set is the last
      20% of the train names, not a separate file.

LESA, ZLIB TFRecords of ``tf.train.Example``, every field one bytes value holding a raw
little-endian array (``extract_data/*.py``; read with ``decode_raw`` in
``zeroshot_experiments/*.py``):
    - ``feature`` float32 [P × C] = [196, 512] (the NHWC conv5_4 map reshaped).
    - ``img_id``: NUS-WIDE the image path ``./data/NUS_WIDE/Flickr/<concept>/<file>.jpg`` (kept
      from ``<concept>/``), Open Images the ImageID.
    - NUS-WIDE: ``label_1k`` float32 [1000] in TagList1k order (2x - 1, the tags named like one
      of the 81 concepts set to 0; we keep the 925 others), ``label_81`` float32 [81].
    - Open Images: train ``label`` int32 [7186]; test ``seen_label`` int32 [7186] and
      ``unseen_label`` int32 [2594]; 2·confidence - 1, 0 = not annotated.
    - split: one file per split (``NUS_WIDE_{Train,Test}_full_feature_ZLIB.tfrecords``); LESA's
      validation set is the first 5,000 train records.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from mlzsl.data.dataset_info import DatasetInfo
from mlzsl.data.store import write_store
from mlzsl.data.tfrecord import FeatureValue, read_examples
from mlzsl.data.vocab import nus_label_set, read_open_images_vocabulary
from mlzsl.embeddings.nus import read_vocabulary
from mlzsl.errors import DataError
from mlzsl.labels import LabelSet
from mlzsl.progress import progress

PathArg = str | os.PathLike[str]
Paths = PathArg | Sequence[PathArg]

DATASETS = ("nus-wide", "open-images")
UNSEEN_CHOICES = ("evaluated", "all")
LESA_LAYOUT = (196, 512)  # LESA's dim_feature: positions × channels

_F16_MAX = float(np.finfo(np.float16).max)
_BLOCK = 32  # images per block handed to write_store
_IMAGENET_MEAN, _IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

# Raw dtypes of LESA's bytes fields (np.float32(...).tostring() / np.int32 labels).
_LESA_DTYPES = {
    "feature": "<f4",
    "label_1k": "<f4",
    "label_81": "<f4",
    "label": "<i4",
    "seen_label": "<i4",
    "unseen_label": "<i4",
}


# ----------------------------------------------------------------------------- label schemes


@dataclass(frozen=True)
class _Field:
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
class _Scheme:
    """How one peer's label fields for one benchmark become our label rows."""

    label_set: LabelSet
    seen: _Field
    unseen: _Field
    info: DatasetInfo

    def fields(self, split: str) -> tuple[_Field, ...]:
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
) -> _Scheme:
    """Open Images: seen columns as they are, unseen the evaluated (or all) candidates."""
    if unseen not in UNSEEN_CHOICES:
        raise DataError(f"unseen must be one of {', '.join(UNSEEN_CHOICES)}, got {unseen!r}")
    vocab = read_open_images_vocabulary(folder)
    n_seen, n_candidates = len(vocab.seen_ids), len(vocab.unseen_ids)
    keep = vocab.evaluated if unseen == "evaluated" else _everything(n_candidates)
    return _Scheme(
        vocab.label_set(unseen),
        _Field(fields[0], {n_seen: _everything(n_seen)}),
        _Field(fields[1], {n_candidates: np.asarray(keep)}),
        _dataset_info("open-images", peer),
    )


def _dataset_info(dataset: str, peer: str) -> DatasetInfo:
    if dataset == "nus-wide":
        return DatasetInfo("NUS-WIDE", 107_859, "default", f"{peer} feature files")
    # 125,436 test images: BiAM's paper_logs/openimages.log ("total TEST samples")
    return DatasetInfo("Open Images V4", 125_436, "open_images", f"{peer} feature files")


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r} (expected {' or '.join(DATASETS)})")


def _biam_scheme(dataset: str, vocabulary: Path, unseen: str) -> _Scheme:
    """BiAM's label fields for ``dataset`` (see the module doc)."""
    _check_dataset(dataset)
    if dataset == "open-images":
        return _open_images_scheme(vocabulary, unseen, (("seenlabels",), ("unseenlabels",)), "BiAM")
    label_set, _, _ = _nus_vocabulary(vocabulary)
    s, u = len(label_set.seen_idx), len(label_set.unseen_idx)
    seen = _Field(("labels",), {s: _everything(s), s + u: _everything(s)})  # train, test file
    unseen_field = _Field(("labels_81",), {u: _everything(u)})
    return _Scheme(label_set, seen, unseen_field, _dataset_info(dataset, "BiAM"))


def _lesa_scheme(dataset: str, vocabulary: Path, unseen: str) -> _Scheme:
    """LESA's label fields for ``dataset`` (see the module doc)."""
    _check_dataset(dataset)
    if dataset == "open-images":
        fields = (("seen_label", "label"), ("unseen_label",))  # test file, train file
        return _open_images_scheme(vocabulary, unseen, fields, "LESA")
    label_set, seen_in_1k, n_tags = _nus_vocabulary(vocabulary)
    s, u = len(label_set.seen_idx), len(label_set.unseen_idx)
    seen = _Field(("label_1k",), {n_tags: seen_in_1k, s: _everything(s)})  # 1000, or 925
    unseen_field = _Field(("label_81",), {u: _everything(u)})
    return _Scheme(label_set, seen, unseen_field, _dataset_info(dataset, "LESA"))


# ----------------------------------------------------------------------------- readers


class _Reader(Protocol):
    """One peer's file format."""

    suffix: str  # files picked from a folder: ``*{suffix}``

    def scan(
        self, path: Path, split: str, scheme: _Scheme
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


class _BiamReader:
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
        self, path: Path, split: str, scheme: _Scheme
    ) -> Iterator[tuple[str, np.ndarray, tuple[int, int, int]]]:
        """See :class:`_Reader`."""
        with self._open(path) as f:
            for image in self._images(f):
                values = [
                    self._dataset(f, path, image, fd.names)[()] for fd in scheme.fields(split)
                ]
                row = scheme.row(values, split, f"{path}: image {image!r}")
                yield image, row, self._shape(f, path, image)

    def features(self, path: Path) -> Iterator[tuple[str, np.ndarray]]:
        """See :class:`_Reader`."""
        with self._open(path) as f:
            for image in self._images(f):
                c, h, w = self._shape(f, path, image)
                x = f[f"{image}-features"][()]  # [C, P]
                yield image, np.asarray(x, dtype=np.float32).reshape(c, h, w)


class _LesaReader:
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
        dtype = np.dtype(_LESA_DTYPES.get(name, "<f4"))
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
        self, path: Path, split: str, scheme: _Scheme
    ) -> Iterator[tuple[str, np.ndarray, tuple[int, int, int]]]:
        """See :class:`_Reader`. Data checksums are checked in :meth:`features`."""
        shape = (self.channels, self.side, self.side)
        for where, example in self._records(path, verify=False):
            values = [self._array(example, fd.names, where) for fd in scheme.fields(split)]
            self._raw_feature(example, where)
            yield self._image_id(example, where), scheme.row(values, split, where), shape

    def features(self, path: Path) -> Iterator[tuple[str, np.ndarray]]:
        """See :class:`_Reader`."""
        for where, example in self._records(path, verify=True):
            yield self._image_id(example, where), self._feature(example, where)


# ----------------------------------------------------------------------------- import


@dataclass
class _Scan:
    """The first pass: everything but the features."""

    ids: list[str]
    splits: list[str]
    labels: np.ndarray  # int8 [N, L]
    shape: tuple[int, int, int]


def _expand(paths: Paths, suffix: str) -> list[Path]:
    """Files named by ``paths``; a folder stands for its ``*{suffix}*`` files, sorted."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and suffix in p.name)
            if not found:
                raise DataError(f"{item}: folder holds no *{suffix} files")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"{item}: feature file not found")
    return files


def _sources(train: Paths, test: Paths, suffix: str) -> list[tuple[Path, str]]:
    sources = [(p, "train") for p in _expand(train, suffix)]
    sources += [(p, "test") for p in _expand(test, suffix)]
    if not sources:
        raise DataError("no feature files given: name train and/or test files")
    return sources


def _scan_all(
    sources: Sequence[tuple[Path, str]], reader: _Reader, scheme: _Scheme, show: bool
) -> _Scan:
    """Pass 1 over every file: ids, splits, label rows, and one feature shape for all."""
    ids: list[str] = []
    splits: list[str] = []
    rows: list[np.ndarray] = []
    shape: tuple[int, int, int] | None = None
    for path, split in sources:
        with progress(desc=f"scan {path.name}", unit="img", disable=not show) as bar:
            for image, row, image_shape in reader.scan(path, split, scheme):
                shape = shape or image_shape
                if image_shape != shape:
                    raise DataError(
                        f"{path}: image {image!r} has features {image_shape}, "
                        f"earlier images {shape}"
                    )
                ids.append(image)
                splits.append(split)
                rows.append(row)
                bar.update(1)
    if shape is None:
        raise DataError(f"no images in {', '.join(str(p) for p, _ in sources)}")
    _check_labels(rows, sources)
    return _Scan(ids, splits, np.stack(rows), shape)


def _check_labels(rows: list[np.ndarray], sources: Sequence[tuple[Path, str]]) -> None:
    """Refuse files whose labels look 0/1: both peers write -1 for absent labels."""
    labels = np.stack(rows[:10_000])
    if (labels > 0).any() and not (labels < 0).any():
        raise DataError(
            f"{sources[0][0]}: labels hold no -1 in {len(labels):,} images; both peers write "
            "+1 present / -1 absent (0 = not annotated), so these look like 0/1 labels"
        )


def _check_splits(scan: _Scan) -> None:
    """An image may not be both a train and a test image."""
    train = {i for i, s in zip(scan.ids, scan.splits, strict=True) if s == "train"}
    both = [i for i, s in zip(scan.ids, scan.splits, strict=True) if s == "test" and i in train]
    if both:
        raise DataError(
            f"{len(both):,} images are in both the train and the test files, e.g. {both[0]!r}"
        )


def _feature_blocks(
    sources: Sequence[tuple[Path, str]], reader: _Reader, scan: _Scan, show: bool
) -> Iterator[np.ndarray]:
    """Pass 2: feature maps in blocks of float32 [n, C, H, W], checked against pass 1."""
    block: list[np.ndarray] = []
    row = 0
    with progress(total=len(scan.ids), desc="import", unit="img", disable=not show) as bar:
        for path, _ in sources:
            for image, x in reader.features(path):
                if row >= len(scan.ids) or image != scan.ids[row]:
                    raise DataError(f"{path}: image {image!r} differs from the first pass")
                if not np.all(np.abs(x) <= _F16_MAX):  # also catches NaN
                    raise DataError(f"{path}: image {image!r} has features beyond float16 range")
                block.append(x)
                row += 1
                bar.update(1)
                if len(block) == _BLOCK:
                    yield np.stack(block)
                    block = []
    if block:
        yield np.stack(block)


def _import(
    out: PathArg,
    sources: Sequence[tuple[Path, str]],
    reader: _Reader,
    scheme: _Scheme,
    backbone: dict[str, Any],
    *,
    show_progress: bool,
    overwrite: bool,
) -> Path:
    """Both passes and the store; on any failure the partial ``out.tmp`` is removed."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out}: already exists (pass overwrite / --force to replace it)")
    scan = _scan_all(sources, reader, scheme, show_progress)
    _check_splits(scan)
    meta = {
        "backbone": {**backbone, "channels": scan.shape[0]},
        "image_size": backbone["image_size"],
        "mean": backbone["mean"],
        "std": backbone["std"],
        "source": "; ".join(str(p.resolve()) for p, _ in sources),
        "n_skipped": 0,
        "dataset": scheme.info.to_dict(),
    }
    try:
        return write_store(
            out,
            features=_feature_blocks(sources, reader, scan, show_progress),
            n_images=len(scan.ids),
            feature_shape=scan.shape,
            labels=scan.labels,
            image_ids=scan.ids,
            splits=scan.splits,
            label_set=scheme.label_set,
            meta=meta,
        )
    except BaseException:
        out.with_name(out.name + ".tmp").unlink(missing_ok=True)  # write_store's partial file
        raise


def _identity(peer: str, weights: str, mean: list[float], std: list[float]) -> dict[str, Any]:
    """A backbone identity as :meth:`Backbone.identity` gives, marked as the peer's features.

    ``sha256`` is ``"<peer>-features"``, never a weights hash: a model trained on an imported
    store is not taken for one trained on features of our own ``vgg19`` extraction.
    """
    return {
        "name": "vgg19",
        "weights": weights,
        "sha256": f"{peer.lower()}-features",
        "source": f"{peer} feature file",
        "channels": 512,  # set from the files by _import
        "image_size": 224,
        "mean": mean,
        "std": std,
        "stride": 16,
    }


def import_biam(
    out: PathArg,
    *,
    train: Paths = (),
    test: Paths = (),
    dataset: str = "nus-wide",
    vocabulary: PathArg,
    unseen: str = "evaluated",
    show_progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Import BiAM's HDF5 feature files into a feature store.

    Features [C, P] = [512, 196] become [C, H, W] = [512, 14, 14] (float16 in the store).

    Args:
        out: the store to write (atomically: a failed import leaves no file at ``out``).
        train: train-split files, or folders of ``*.h5`` files (Open Images ``CHUNK_*.h5``).
        test: test-split files or folders.
        dataset: ``"nus-wide"`` or ``"open-images"``.
        vocabulary: NUS-WIDE: a folder holding ``TagList1k.txt`` and ``Concepts81.txt`` (also
            below it, as in BiAM's tree); Open Images: the folder of the four class files.
        unseen: Open Images: the 400 ``"evaluated"`` unseen classes or ``"all"`` 2,594.
        show_progress: show progress bars.
        overwrite: replace an existing ``out``.

    Returns:
        ``out``.
    """
    scheme = _biam_scheme(dataset, Path(vocabulary), unseen)
    reader = _BiamReader()
    sources = _sources(train, test, reader.suffix)
    # BiAM: torchvision's VGG19 on 224×224 resized (not cropped) ImageNet-normalised images
    weights = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
    backbone = _identity("BiAM", weights, _IMAGENET_MEAN, _IMAGENET_STD)
    return _import(
        out, sources, reader, scheme, backbone, show_progress=show_progress, overwrite=overwrite
    )


def import_lesa(
    out: PathArg,
    *,
    train: Paths = (),
    test: Paths = (),
    dataset: str = "nus-wide",
    vocabulary: PathArg,
    unseen: str = "evaluated",
    layout: tuple[int, int] = LESA_LAYOUT,
    compression: str = "auto",
    show_progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Import LESA's TFRecord feature files into a feature store.

    Features [P × C] = [196, 512] (raw float32 bytes) are transposed to [C, H, W] =
    [512, 14, 14] (float16 in the store). Records are streamed: a file is read twice (labels,
    then features) and never held whole.

    Args:
        out: the store to write (atomically: a failed import leaves no file at ``out``).
        train: train-split TFRecord files, or folders of ``*.tfrecords`` files.
        test: test-split files or folders.
        dataset: ``"nus-wide"`` or ``"open-images"``.
        vocabulary: as for :func:`import_biam`.
        unseen: Open Images: the 400 ``"evaluated"`` unseen classes or ``"all"`` 2,594.
        layout: (positions, channels) of ``feature``; LESA's ``dim_feature`` is (196, 512).
        compression: ``"auto"``, ``"zlib"`` (LESA's), ``"gzip"`` or ``"none"``.
        show_progress: show progress bars.
        overwrite: replace an existing ``out``.

    Returns:
        ``out``.
    """
    scheme = _lesa_scheme(dataset, Path(vocabulary), unseen)
    reader = _LesaReader(layout, compression)
    sources = _sources(train, test, reader.suffix)
    # LESA: TF-slim vgg_19.ckpt; vgg_preprocessing: shorter side 256, centre crop 224, and only
    # the channel means subtracted on the 0..255 scale, i.e. std 1/255 on our 0..1 scale.
    mean = [123.68 / 255, 116.78 / 255, 103.94 / 255]
    backbone = _identity("LESA", "tf-slim vgg_19.ckpt", mean, [1 / 255] * 3)
    return _import(
        out, sources, reader, scheme, backbone, show_progress=show_progress, overwrite=overwrite
    )
