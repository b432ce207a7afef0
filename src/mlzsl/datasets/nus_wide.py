"""The official NUS-WIDE release -> a data folder in the user format (``mlzsl data nus-wide``).

Release layout read (``ROOT`` is the folder the release's zip files were unpacked into; the
first location found of each file is used)::

    ROOT/ImageList/Imagelist.txt       all 269,648 images, one per line; the row order of the
                                       tag and label files below
    ROOT/ImageList/TrainImagelist.txt  the 161,789 training images (a subset of Imagelist)
    ROOT/ImageList/TestImagelist.txt   the 107,859 test images (a subset of Imagelist)
    ROOT/NUS_WID_Tags/AllTags1k.txt    one row per Imagelist line: 1,000 0/1 values separated
                                       by tabs or spaces, in TagList1k order (the noisy Flickr tags)
    ROOT/NUS_WID_Tags/TagList1k.txt    the 1,000 tags (also ROOT/TagList1k.txt)
    ROOT/ConceptsList/Concepts81.txt   the 81 concepts (also ROOT/Concepts81.txt,
                                       ROOT/NUS_WID_Tags/Concepts81.txt)
    ROOT/Groundtruth/AllLabels/Labels_<concept>.txt
                                       one 0/1 per Imagelist line: the human labels
                                       (also ROOT/AllLabels/, LESA's layout)
    ROOT/Flickr/<concept>/<file>.jpg   the images (or any folder given as ``images``)

The three image lists use Windows paths, with or without the crawling machine's prefix
(``C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg`` or ``actor\\0001_2124494179.jpg``;
copies in the wild differ), so every entry is reduced to its last two components,
``actor/0001_2124494179.jpg``, which is also its path under ``Flickr/``. LESA's preprocessing
matches the lists the same way, by the end of the path.

Output, in ``OUT`` (see :mod:`mlzsl.datasets.userdata`)::

    OUT/images            a symbolic link to the image folder (the user format wants image
                          paths inside OUT; a link avoids copying 269,648 files)
    OUT/vocabulary.csv    925 seen tags (TagList1k order minus the 81 concepts) + 81 unseen
    OUT/labels.csv        images/<concept>/<file>.jpg, train|test, positive labels: seen
                          from the Flickr tags, unseen from the human labels
    OUT/dataset.json      NUS-WIDE, 107,859 official test images (names the test-set variant)

Rows are written in Imagelist order; images on neither list are left out. Images whose file is
missing are listed in the summary but kept: ``mlzsl data verify OUT`` finds them together with
Flickr's "photo unavailable" placeholders and unreadable files, and writes ``excluded.tsv``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlzsl.datasets.dataset_info import DatasetInfo, write_dataset_info
from mlzsl.datasets.userdata import LABELS_FILE, write_user_dataset
from mlzsl.datasets.verify import EXCLUDED_FILE, MANIFEST_FILE, SUMMARY_FILE
from mlzsl.datasets.vocab import nus_label_set
from mlzsl.errors import DataError
from mlzsl.labels import LabelSet, read_vocabulary
from mlzsl.progress import progress

NUS_WIDE = "NUS-WIDE"
NUS_OFFICIAL_TEST_IMAGES = 107_859
IMAGES_LINK = "images"

# candidate locations, relative to the release root, first found wins
IMAGELIST = ("ImageList/Imagelist.txt", "Imagelist.txt")
TRAIN_LIST = ("ImageList/TrainImagelist.txt", "TrainImagelist.txt")
TEST_LIST = ("ImageList/TestImagelist.txt", "TestImagelist.txt")
ALL_TAGS = ("NUS_WID_Tags/AllTags1k.txt", "AllTags1k.txt")
TAGLIST = ("NUS_WID_Tags/TagList1k.txt", "TagList1k.txt", "ConceptsList/TagList1k.txt")
CONCEPTS = (
    "ConceptsList/Concepts81.txt",
    "Concepts81.txt",
    "NUS_WID_Tags/Concepts81.txt",
    "Groundtruth/Concepts81.txt",
)
LABELS_DIRS = ("Groundtruth/AllLabels", "AllLabels")
IMAGE_DIRS = ("Flickr", "images")

# files derived from labels.csv by `mlzsl data verify`; stale once labels.csv is rewritten
_DERIVED_FILES = (MANIFEST_FILE, EXCLUDED_FILE, SUMMARY_FILE)


@dataclass(frozen=True)
class NusWideRelease:
    """Where the files of one unpacked NUS-WIDE release are (see the module docstring)."""

    root: Path
    imagelist: Path
    train_list: Path
    test_list: Path
    all_tags: Path
    taglist: Path
    concepts: Path
    labels_dir: Path
    images: Path


@dataclass
class NusWideSummary:
    """What a conversion wrote.

    Attributes:
        out: the data folder.
        n_train: training images written.
        n_test: test images written.
        n_unlisted: Imagelist images on neither the train nor the test list (left out).
        missing: images written whose file does not exist (``images/...`` paths).
        n_seen: seen labels (925 for the release).
        n_unseen: unseen labels (81).
        seconds: wall-clock time of the conversion.
    """

    out: Path
    n_train: int
    n_test: int
    n_unlisted: int
    missing: list[str] = field(default_factory=list)
    n_seen: int = 0
    n_unseen: int = 0
    seconds: float = 0.0

    @property
    def n_labels(self) -> int:
        """Seen plus unseen labels (1,006 for the release)."""
        return self.n_seen + self.n_unseen

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings, ``n_labels`` included)."""
        return {**asdict(self), "out": str(self.out), "n_labels": self.n_labels}


def locate_release(root: str | Path, images: str | Path | None = None) -> NusWideRelease:
    """Find the release's files under ``root``; ``images`` overrides the image folder.

    Raises:
        DataError: a file or folder is missing; the message lists the locations tried.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected the unpacked NUS-WIDE release)")
    image_dir = Path(images).expanduser() if images is not None else None
    if image_dir is not None and not image_dir.is_dir():
        raise DataError(f"{image_dir}: no such image folder (--images)")
    return NusWideRelease(
        root=root,
        imagelist=_find(root, IMAGELIST, "the list of all images"),
        train_list=_find(root, TRAIN_LIST, "the training image list"),
        test_list=_find(root, TEST_LIST, "the test image list"),
        all_tags=_find(root, ALL_TAGS, "the image x tag matrix"),
        taglist=_find(root, TAGLIST, "the 1,000 tag names"),
        concepts=_find(root, CONCEPTS, "the 81 concept names"),
        labels_dir=_find(root, LABELS_DIRS, "the human labels, Labels_<concept>.txt", dirs=True),
        images=image_dir or _find(root, IMAGE_DIRS, "the image folder (or pass --images)", True),
    )


def _find(root: Path, candidates: Sequence[str], what: str, dirs: bool = False) -> Path:
    """The first of ``candidates`` under ``root`` that exists (a folder when ``dirs``)."""
    for candidate in candidates:
        path = root / candidate
        if path.is_dir() if dirs else path.is_file():
            return path
    tried = ", ".join(candidates)
    raise DataError(f"{root}: cannot find {what} (tried {tried})")


def convert_nus_wide(
    root: str | Path,
    out: str | Path,
    *,
    images: str | Path | None = None,
    show_progress: bool = True,
) -> NusWideSummary:
    """Convert an unpacked NUS-WIDE release into a user-format data folder (module docstring).

    Args:
        root: the release folder.
        out: the data folder to write (created if needed).
        images: the image folder (``<concept>/<file>.jpg`` inside); ``None`` looks for
            ``root/Flickr`` then ``root/images``.
        show_progress: draw progress bars.

    Returns:
        A :class:`NusWideSummary`.

    Raises:
        DataError: a missing file, a malformed row, files whose row counts disagree, a list
            entry not in Imagelist, or an ``out/images`` that is not ours to replace.
    """
    started = time.perf_counter()
    release = locate_release(root, images)
    parsed = read_release(release, show_progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    link_images(out, release.images)
    missing = find_missing(out, [parsed.keys[i] for i in parsed.listed], show_progress)
    _clear_derived(out)
    source = f"NUS-WIDE release {release.root.resolve()}"
    info = DatasetInfo(NUS_WIDE, NUS_OFFICIAL_TEST_IMAGES, "default", source)
    write_dataset_info(out, info)  # before labels.csv, which marks a finished folder
    write_user_dataset(out, parsed.label_set, parsed.rows())
    return NusWideSummary(
        out=out,
        n_train=int(np.sum(parsed.splits == "train")),
        n_test=int(np.sum(parsed.splits == "test")),
        n_unlisted=len(parsed.keys) - len(parsed.listed),
        missing=missing,
        n_seen=len(parsed.label_set.seen_idx),
        n_unseen=len(parsed.label_set.unseen_idx),
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True, eq=False)
class ParsedRelease:
    """The release's lists and labels, read and checked; N = Imagelist rows.

    Attributes:
        label_set: 925 seen tags then 81 unseen concepts.
        keys: N image keys ``concept/file.jpg``.
        splits: N splits, ``"train"``, ``"test"`` or ``""`` (on neither list).
        seen_pos: N int arrays: each row's positive seen labels (positions among the seen).
        human: bool [N, 81], the human concept labels.
    """

    label_set: LabelSet
    keys: list[str]
    splits: np.ndarray
    seen_pos: list[np.ndarray]
    human: np.ndarray

    @property
    def listed(self) -> np.ndarray:
        """Rows on the train or test list, in Imagelist order (int64 [n_listed])."""
        return np.flatnonzero(self.splits != "")

    def rows(self) -> Iterator[tuple[str, str, list[str]]]:
        """``(images/<key>, split, positive labels)`` of every listed row, for labels.csv."""
        seen, unseen = self.label_set.seen_names, self.label_set.unseen_names
        for i in self.listed:
            labels = [seen[j] for j in self.seen_pos[i]]  # seen: the Flickr tags
            labels += [unseen[j] for j in np.flatnonzero(self.human[i])]  # unseen: human labels
            yield f"{IMAGES_LINK}/{self.keys[i]}", str(self.splits[i]), labels


def read_release(release: NusWideRelease, show_progress: bool = True) -> ParsedRelease:
    """Read and cross-check the vocabulary, the image lists, the tags and the human labels."""
    tags = read_vocabulary(release.taglist)
    label_set = nus_label_set(release.taglist, release.concepts)
    concepts = label_set.unseen_names
    keys = read_imagelist(release.imagelist)
    splits = assign_splits(keys, release.train_list, release.test_list, release.imagelist)
    seen_pos = read_tag_matrix(release.all_tags, tags, concepts, len(keys), show_progress)
    human = read_concept_labels(release.labels_dir, concepts, len(keys), show_progress)
    return ParsedRelease(label_set, keys, splits, seen_pos, human)


def image_key(entry: str) -> str | None:
    """``concept/file.jpg`` from a list entry such as ``C:\\ImageData\\Flickr\\actor\\1_2.jpg``.

    Returns ``None`` when the entry has fewer than two path components.
    """
    parts = [p for p in entry.strip().replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:]) if len(parts) >= 2 else None


def read_imagelist(path: Path) -> list[str]:
    """Image keys (``concept/file``) of ``Imagelist.txt``, one per line, in file order.

    Raises:
        DataError: a blank line before the end, an entry without a folder, or a repeated image.
    """
    keys: list[str] = []
    first: dict[str, int] = {}
    for line_no, text in aligned_lines(path):
        key = _entry_key(path, line_no, text.decode("utf-8", "replace"))
        if key in first:
            raise DataError(f"{path}:{line_no}: image {key} repeats line {first[key]}")
        first[key] = line_no
        keys.append(key)
    if not keys:
        raise DataError(f"{path}: no images listed")
    return keys


def assign_splits(
    keys: list[str], train_list: Path, test_list: Path, imagelist: Path
) -> np.ndarray:
    """Split of each Imagelist row: ``"train"``, ``"test"`` or ``""`` (on neither list).

    Raises:
        DataError: a list entry that is not in Imagelist, or an image listed twice (in one
            list, or in both).
    """
    row = {key: i for i, key in enumerate(keys)}
    splits = np.full(len(keys), "", dtype="<U5")  # [N]
    where: dict[str, str] = {}
    for split, path in (("train", train_list), ("test", test_list)):
        for line_no, entry in _list_entries(path):
            key = _entry_key(path, line_no, entry)
            i = row.get(key)
            if i is None:
                raise DataError(f"{path}:{line_no}: image {entry} is not in {imagelist}")
            if splits[i]:
                raise DataError(
                    f"{path}:{line_no}: image {entry} is already listed in {where[key]}"
                )
            splits[i] = split
            where[key] = f"{path.name}:{line_no}"
    return splits


def _list_entries(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines of a train/test image list as (line number, text)."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    yield line_no, line.strip()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def _entry_key(path: Path, line_no: int, entry: str) -> str:
    key = image_key(entry)
    if key is None:
        raise DataError(f"{path}:{line_no}: expected <concept>\\<file>.jpg, got {entry.strip()!r}")
    return key


def aligned_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Lines of a file whose rows follow Imagelist, streamed as (line number, stripped bytes).

    Blank lines at the end are ignored; a blank line followed by more rows is an error, since it
    would shift every later row against Imagelist.
    """
    blank = 0
    try:
        with path.open("rb") as f:
            for line_no, line in enumerate(f, 1):
                text = line.strip()
                if not text:
                    blank = blank or line_no
                    continue
                if blank:
                    raise DataError(f"{path}:{blank}: blank line inside the rows")
                yield line_no, text
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def read_tag_matrix(
    path: Path, tags: list[str], concepts: list[str], n_images: int, show_progress: bool = True
) -> list[np.ndarray]:
    """Seen-tag positives per Imagelist row, streamed from ``AllTags1k.txt``.

    Args:
        path: ``AllTags1k.txt``: one row per image, ``len(tags)`` 0/1 values each.
        tags: the TagList1k names (column order).
        concepts: the 81 concept names; their tag columns are dropped (they are unseen).
        n_images: the number of Imagelist rows the file must have.
        show_progress: draw a progress bar.

    Returns:
        N int arrays of positions into the seen tags (TagList1k order minus the concepts).

    Raises:
        DataError: a row with the wrong number of values or a value other than 0/1, or a row
            count different from ``n_images``.
    """
    concept_set = set(concepts)
    seen_of_tag = np.full(len(tags), -1, dtype=np.int64)  # tag column -> seen position or -1
    is_seen = np.array([t not in concept_set for t in tags])
    seen_of_tag[is_seen] = np.arange(int(is_seen.sum()))
    rows: list[np.ndarray] = []
    bar = progress(total=n_images, desc="tags", unit="img", disable=not show_progress)
    with bar:
        for line_no, text in aligned_lines(path):
            if line_no > n_images:
                raise DataError(f"{path}: more rows than the {n_images:,} images of Imagelist")
            positives = _tag_row(path, line_no, text, len(tags))
            seen = seen_of_tag[positives]
            rows.append(seen[seen >= 0])
            bar.update()
    if len(rows) != n_images:
        raise DataError(f"{path}: {len(rows):,} rows, but Imagelist lists {n_images:,} images")
    return rows


def _tag_row(path: Path, line_no: int, text: bytes, n_tags: int) -> np.ndarray:
    """Columns holding 1 in one stripped ``AllTags1k.txt`` row (int64 [n_positive]).

    Checked on the row's bytes with numpy (the file has 269,648 rows of 1,000 values): the
    values are counted as runs of non-blank bytes, and every value must be the byte 0 or 1.
    """
    raw = np.frombuffer(text, dtype=np.uint8)  # [bytes in the row]
    blank = (raw == ord(" ")) | (raw == ord("\t"))
    n_values = 1 + int(np.count_nonzero(blank[:-1] & ~blank[1:]))  # the row starts with a value
    if n_values != n_tags:
        raise DataError(f"{path}:{line_no}: {n_values} values, expected {n_tags} (one per tag)")
    values = raw[~blank]  # [n_tags] when every value is one byte
    if values.size != n_tags or np.any((values != ord("0")) & (values != ord("1"))):
        bad = next(v for v in text.split() if v not in (b"0", b"1"))
        raise DataError(f"{path}:{line_no}: value {bad.decode(errors='replace')!r} is not 0 or 1")
    return np.flatnonzero(values == ord("1"))


def read_concept_labels(
    labels_dir: Path, concepts: list[str], n_images: int, show_progress: bool = True
) -> np.ndarray:
    """The human labels: bool [N, 81], column c from ``labels_dir/Labels_<concept c>.txt``.

    Raises:
        DataError: a missing file, a line other than 0/1, or a line count different from
            ``n_images``.
    """
    human = np.zeros((n_images, len(concepts)), dtype=bool)  # [N, 81]
    for c, concept in enumerate(
        progress(concepts, desc="labels", unit="file", disable=not show_progress)
    ):
        human[:, c] = _concept_column(labels_dir / f"Labels_{concept}.txt", n_images)
    return human


def _concept_column(path: Path, n_images: int) -> np.ndarray:
    """One ``Labels_<concept>.txt``: bool [N], one 0/1 per Imagelist row.

    The file (3 bytes a row, under 1 MB) is read whole and checked with numpy: a Python loop
    over the 81 x 269,648 lines would take most of the conversion's time.
    """
    if not path.is_file():
        raise DataError(f"{path}: missing (one Labels_<concept>.txt per line of Concepts81.txt)")
    try:
        lines = path.read_bytes().translate(None, b" \t\r").split(b"\n")  # blanks dropped
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    while lines and not lines[-1]:
        lines.pop()  # blank lines at the end
    values = np.array(lines, dtype="S")  # [N] bytes
    ones = values == b"1"  # [N]
    bad = np.flatnonzero(~ones & (values != b"0"))
    if bad.size:
        line_no, text = int(bad[0]) + 1, values[bad[0]].decode(errors="replace")
        what = "blank line inside the rows" if not text else f"expected 0 or 1, got {text!r}"
        raise DataError(f"{path}:{line_no}: {what}")
    if len(values) != n_images:
        raise DataError(f"{path}: {len(values):,} lines, but Imagelist lists {n_images:,} images")
    return ones.reshape(n_images)


def link_images(out: Path, images: Path) -> Path:
    """Make ``out/images`` a symbolic link to ``images`` (replacing an older link).

    Raises:
        DataError: ``out/images`` is a real file or folder other than ``images``, or the system
            refuses to create the link.
    """
    link = out / IMAGES_LINK
    target = images.resolve()
    if link.exists() and not link.is_symlink():
        if link.resolve() == target:
            return link  # the images already live in out/images
        raise DataError(f"{link}: exists and is not a link; move it, or pass --images {link}")
    tmp = out / f".{IMAGES_LINK}.tmp-link"
    try:
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(target, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError as e:
        raise DataError(f"{link}: cannot link to {target} ({e.strerror or e})") from None
    return link


def find_missing(out: Path, keys: list[str], show_progress: bool = True) -> list[str]:
    """``images/<key>`` paths (relative to ``out``) whose file does not exist."""
    base = out / IMAGES_LINK
    missing = []
    for key in progress(keys, desc="images", unit="img", disable=not show_progress):
        if not os.path.isfile(base / key):
            missing.append(f"{IMAGES_LINK}/{key}")
    return missing


def _clear_derived(out: Path) -> None:
    """Remove the ``mlzsl data verify`` outputs of an earlier ``labels.csv`` (other rows)."""
    for name in (*_DERIVED_FILES, LABELS_FILE):
        (out / name).unlink(missing_ok=True)
