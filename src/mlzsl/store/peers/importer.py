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

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlzsl.errors import DataError
from mlzsl.progress import progress
from mlzsl.store.feature_store import write_store
from mlzsl.store.peers.readers import BiamReader, LesaReader, Reader
from mlzsl.store.peers.schemes import (
    BLOCK,
    F16_MAX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LESA_LAYOUT,
    PathArg,
    Paths,
    Scheme,
    biam_scheme,
    lesa_scheme,
)
from mlzsl.store.sparse_labels import SparseLabels

_LABEL_ROWS = 10_000  # label rows encoded to CSR at a time; the first block is checked for 0/1


@dataclass
class _Scan:
    """The first pass: everything but the features."""

    ids: list[str]
    splits: list[str]
    labels: SparseLabels  # int8 [N, L] as CSR: Open Images train is ~13 GB dense
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
    sources: Sequence[tuple[Path, str]], reader: Reader, scheme: Scheme, show: bool
) -> _Scan:
    """Pass 1 over every file: ids, splits, label rows, and one feature shape for all."""
    ids: list[str] = []
    splits: list[str] = []
    rows: list[np.ndarray] = []  # dense label rows not yet encoded, at most _LABEL_ROWS
    blocks: list[SparseLabels] = []
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
                if len(rows) == _LABEL_ROWS:
                    blocks.append(_encode(rows, blocks, sources))
                    rows = []
                bar.update(1)
    if shape is None:
        raise DataError(f"no images in {', '.join(str(p) for p, _ in sources)}")
    if rows:
        blocks.append(_encode(rows, blocks, sources))
    return _Scan(ids, splits, SparseLabels.concat(blocks), shape)


def _encode(
    rows: list[np.ndarray], done: list[SparseLabels], sources: Sequence[tuple[Path, str]]
) -> SparseLabels:
    """Label rows [n, L] as CSR, with the first block's fill; the first block is checked."""
    if not done:
        _check_labels(rows, sources)
        return SparseLabels.from_dense(np.stack(rows))
    return SparseLabels.from_dense(np.stack(rows), done[0].fill)


def _check_labels(rows: list[np.ndarray], sources: Sequence[tuple[Path, str]]) -> None:
    """Refuse files whose labels look 0/1: both peers write -1 for absent labels."""
    labels = np.stack(rows[:_LABEL_ROWS])
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
    sources: Sequence[tuple[Path, str]], reader: Reader, scan: _Scan, show: bool
) -> Iterator[np.ndarray]:
    """Pass 2: feature maps in blocks of float32 [n, C, H, W], checked against pass 1."""
    block: list[np.ndarray] = []
    row = 0
    with progress(total=len(scan.ids), desc="import", unit="img", disable=not show) as bar:
        for path, _ in sources:
            for image, x in reader.features(path):
                if row >= len(scan.ids) or image != scan.ids[row]:
                    raise DataError(f"{path}: image {image!r} differs from the first pass")
                if not np.all(np.abs(x) <= F16_MAX):  # also catches NaN
                    raise DataError(f"{path}: image {image!r} has features beyond float16 range")
                block.append(x)
                row += 1
                bar.update(1)
                if len(block) == BLOCK:
                    yield np.stack(block)
                    block = []
    if block:
        yield np.stack(block)


def _import(
    out: PathArg,
    sources: Sequence[tuple[Path, str]],
    reader: Reader,
    scheme: Scheme,
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
    scheme = biam_scheme(dataset, Path(vocabulary), unseen)
    reader = BiamReader()
    sources = _sources(train, test, reader.suffix)
    # BiAM: torchvision's VGG19 on 224×224 resized (not cropped) ImageNet-normalised images
    weights = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
    backbone = _identity("BiAM", weights, IMAGENET_MEAN, IMAGENET_STD)
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
    scheme = lesa_scheme(dataset, Path(vocabulary), unseen)
    reader = LesaReader(layout, compression)
    sources = _sources(train, test, reader.suffix)
    # LESA: TF-slim vgg_19.ckpt; vgg_preprocessing: shorter side 256, centre crop 224, and only
    # the channel means subtracted on the 0..255 scale, i.e. std 1/255 on our 0..1 scale.
    mean = [123.68 / 255, 116.78 / 255, 103.94 / 255]
    backbone = _identity("LESA", "tf-slim vgg_19.ckpt", mean, [1 / 255] * 3)
    return _import(
        out, sources, reader, scheme, backbone, show_progress=show_progress, overwrite=overwrite
    )
