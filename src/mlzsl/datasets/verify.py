"""Check every image of a data folder before extraction (``mlzsl data verify DIR``).

Crawled benchmarks such as NUS-WIDE are full of files that are not the photo they claim to be.
Each image listed in ``labels.csv`` gets one status, the first that applies:

- ``missing``: no file at its path;
- ``placeholder``: Flickr's "photo unavailable" image, recognised as the same bytes recurring:
  a SHA-256 digest shared by at least ``placeholder_min`` files (the placeholders are small GIFs
  or JPEGs, identical across thousands of dead links);
- ``tiny``: fewer than ``min_bytes`` bytes (default 4,000, LESA's cut-off for "probably an
  unavailable image"; LESA drops files of at most 4,000 bytes, we keep exactly 4,000);
- ``unreadable``: PIL cannot open and fully decode it (truncated, corrupt, not an image), or it
  has more pixels than PIL's decompression-bomb limit (extraction would refuse it too);
- ``ok``: none of these.

Outputs, each written under a temporary name and renamed into place:

- ``DIR/manifest.csv``: ``image,split,bytes,sha256,status`` for every image;
- ``DIR/excluded.tsv``: header ``image<TAB>reason``, one line per image whose status is not
  ``ok``; ``mlzsl extract`` leaves these images out;
- ``DIR/verify.json`` (last): counts per split and status, and the test-set variant line
  (:meth:`mlzsl.datasets.dataset_info.DatasetInfo.test_set_line` of the usable test images).

Files are hashed in 1 MiB chunks by a pool of threads (hashing and PIL decoding release the GIL).

Memory grows with the number of images N, never with N × L: the folder's targets are read sparse
(:mod:`mlzsl.datasets.userdata`), paths are made a batch at a time, and per image only its
:class:`FileCheck` (~200 bytes with its digest) and verdict are held until the outputs are
streamed to disk.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from mlzsl.datasets.dataset_info import DATASET_FILE, read_dataset_info
from mlzsl.datasets.userdata import SPLITS, read_user_dataset
from mlzsl.errors import ConfigError, DataError
from mlzsl.files import atomic_write, open_input
from mlzsl.progress import progress

MANIFEST_FILE = "manifest.csv"
EXCLUDED_FILE = "excluded.tsv"
SUMMARY_FILE = "verify.json"
STATUSES = ("ok", "missing", "placeholder", "tiny", "unreadable")
FAULTS = STATUSES[1:]
DEFAULT_MIN_BYTES = 4000
DEFAULT_PLACEHOLDER_MIN = 3
_CHUNK = 1 << 20  # bytes read per hashing step
_BATCH = 256  # files handed to the thread pool at a time (bounds the futures in flight)
_OK = ("ok", "")  # the verdict of a good file, one tuple shared by all


@dataclass(frozen=True, slots=True)
class FileCheck:
    """What reading one file found.

    Attributes:
        size: bytes in the file; ``None`` when it does not exist.
        sha256: hex digest of its bytes ("" when missing or unreadable).
        error: why it cannot be read or decoded ("" when it decodes).
    """

    size: int | None
    sha256: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class ImageStatus:
    """The verdict on one image of ``labels.csv``: one manifest row, one excluded line if bad."""

    image: str
    split: str
    size: int | None
    sha256: str
    status: str
    reason: str = ""


@dataclass
class VerifySummary:
    """Counts of a verification (what ``verify.json`` holds).

    Attributes:
        root: the data folder.
        counts: split -> status -> number of images.
        n_good_test: test images with status ``ok``.
        test_set: the line naming the test-set variant of the usable test images.
        placeholders: digest -> number of files, for every digest judged a placeholder.
        min_bytes: the size cut-off used.
        placeholder_min: the repeat count that made a digest a placeholder.
        seconds: wall-clock time.
        excluded: (image, reason) of every image with a fault, in ``labels.csv`` order.
    """

    root: Path
    counts: dict[str, dict[str, int]]
    n_good_test: int
    test_set: str
    placeholders: dict[str, int]
    min_bytes: int
    placeholder_min: int
    seconds: float = 0.0
    excluded: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        """Images checked."""
        return sum(sum(c.values()) for c in self.counts.values())

    @property
    def faults(self) -> dict[str, int]:
        """Images per fault status, over both splits."""
        return {s: sum(c[s] for c in self.counts.values()) for s in FAULTS}

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary (without the per-image list, which ``excluded.tsv`` holds)."""
        return {
            "root": str(self.root),
            "n_images": self.n_images,
            "counts": self.counts,
            "faults": self.faults,
            "n_excluded": len(self.excluded),
            "n_good_test": self.n_good_test,
            "test_set": self.test_set,
            "placeholders": self.placeholders,
            "min_bytes": self.min_bytes,
            "placeholder_min": self.placeholder_min,
            "seconds": round(self.seconds, 3),
        }


def check_file(path: Path, *, decode: bool = True) -> FileCheck:
    """Size, SHA-256 (read in chunks) and, when ``decode``, whether PIL decodes ``path``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return FileCheck(None, error="no such file")
    except OSError as e:
        return FileCheck(None, error=_one_line(e))
    try:
        digest = hashlib.sha256()
        with open_input(path, what="image") as f:  # a FIFO or device is refused, never read
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
            error = _decode_error(f) if decode else ""
    except DataError as e:
        return FileCheck(size, error=str(e).removeprefix(f"{path}: "))
    except OSError as e:
        return FileCheck(size, error=_one_line(e))
    return FileCheck(size, digest.hexdigest(), error)


def _decode_error(f: BinaryIO) -> str:
    """ "" when PIL opens and fully decodes the open file ``f``, else why not."""
    try:
        f.seek(0)
        with Image.open(f) as img:
            if img.width * img.height > (Image.MAX_IMAGE_PIXELS or float("inf")):
                return f"{img.width}x{img.height} pixels exceed PIL's decompression-bomb limit"
            img.load()  # decode every pixel: truncated files fail here
    except Exception as e:  # PIL raises many types on bad files
        return _one_line(e)
    return ""


_FILE_OBJECT = re.compile(r"\s*<_io\.\w+ name=[^>]*>")


def _one_line(error: BaseException) -> str:
    # PIL names the open file object ("<_io.BufferedReader name=24>"): its descriptor number
    # differs from run to run, and the report's line must not
    text = _FILE_OBJECT.sub("", " ".join(str(error).split())).strip() or "no detail"
    return f"{type(error).__name__}: {text}"[:300]


def classify(
    checks: Sequence[FileCheck], *, min_bytes: int, placeholder_min: int
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """(status, reason) per file, and the placeholder digests with their counts.

    The order of precedence is that of the module docstring: missing, placeholder, tiny,
    unreadable, ok.
    """
    digests = Counter(c.sha256 for c in checks if c.sha256)
    placeholders = {d: n for d, n in digests.items() if n >= placeholder_min}
    verdicts = [_verdict(c, placeholders, min_bytes) for c in checks]
    return verdicts, dict(sorted(placeholders.items(), key=lambda kv: -kv[1]))


def _verdict(check: FileCheck, placeholders: dict[str, int], min_bytes: int) -> tuple[str, str]:
    if check.size is None:
        return "missing", f"missing: {check.error}"
    if check.error and not check.sha256:  # not read at all: a FIFO, a device, no permission
        return "unreadable", f"unreadable: {check.error}"
    if check.sha256 in placeholders:
        n = placeholders[check.sha256]
        return "placeholder", f"placeholder: same bytes in {n} files (sha256 {check.sha256[:16]})"
    if check.size < min_bytes:
        return "tiny", f"tiny: {check.size:,} bytes < {min_bytes:,}"
    if check.error:
        return "unreadable", f"unreadable: {check.error}"
    return _OK


def verify_data(
    root: str | Path,
    *,
    min_bytes: int = DEFAULT_MIN_BYTES,
    placeholder_min: int = DEFAULT_PLACEHOLDER_MIN,
    workers: int = 4,
    decode: bool = True,
    show_progress: bool = True,
) -> VerifySummary:
    """Check every image of the data folder ``root`` and write the three outputs (module doc).

    Args:
        root: a folder in the user format (``vocabulary.csv``, ``labels.csv``).
        min_bytes: files smaller than this are ``tiny``.
        placeholder_min: a digest shared by at least this many files is a placeholder (≥ 2).
        workers: threads reading files (1 reads in this thread).
        decode: decode every file with PIL (``False`` checks sizes and digests only).
        show_progress: draw a progress bar.

    Returns:
        A :class:`VerifySummary`.

    Raises:
        ConfigError: a bad threshold or worker count.
        DataError: the folder is not a readable data folder.
    """
    if min_bytes < 0 or placeholder_min < 2 or workers < 1:
        raise ConfigError(
            "need min_bytes ≥ 0, placeholder_min ≥ 2 and workers ≥ 1, got "
            f"{min_bytes}, {placeholder_min}, {workers}"
        )
    started = time.perf_counter()
    dataset = read_user_dataset(root)
    paths = (dataset.path(i) for i in range(len(dataset)))  # made a batch at a time
    bar = progress(total=len(dataset), desc="verify", unit="img", disable=not show_progress)
    with bar:
        checks = list(
            _check_all(paths, lambda p: check_file(p, decode=decode), workers, bar.update)
        )
    verdicts, placeholders = classify(checks, min_bytes=min_bytes, placeholder_min=placeholder_min)

    def statuses() -> Iterator[ImageStatus]:  # one pass per use: never a list of N statuses
        for image, split, check, (status, reason) in zip(
            dataset.images, dataset.splits, checks, verdicts, strict=True
        ):
            yield ImageStatus(image, split, check.size, check.sha256, status, reason)

    summary = _summarise(dataset.root, statuses(), placeholders, min_bytes, placeholder_min)
    summary.seconds = time.perf_counter() - started
    write_outputs(dataset.root, statuses(), summary)
    return summary


def _check_all(
    paths: Iterable[Path],
    check: Callable[[Path], FileCheck],
    workers: int,
    advance: Callable[[int], object],
) -> Iterator[FileCheck]:
    """``check`` of every path, in order, on ``workers`` threads, a batch at a time."""
    if workers == 1:
        for path in paths:
            yield check(path)
            advance(1)
        return
    remaining = iter(paths)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while batch := list(islice(remaining, _BATCH)):
            yield from pool.map(check, batch)
            advance(len(batch))


def _summarise(
    root: Path,
    statuses: Iterable[ImageStatus],
    placeholders: dict[str, int],
    min_bytes: int,
    placeholder_min: int,
) -> VerifySummary:
    counts = {split: dict.fromkeys(STATUSES, 0) for split in SPLITS}
    excluded: list[tuple[str, str]] = []
    for s in statuses:
        counts[s.split][s.status] += 1
        if s.status != "ok":
            excluded.append((s.image, s.reason))
    n_good_test = counts["test"]["ok"]
    return VerifySummary(
        root=root,
        counts=counts,
        n_good_test=n_good_test,
        test_set=test_set_line(root, n_good_test),
        placeholders=placeholders,
        min_bytes=min_bytes,
        placeholder_min=placeholder_min,
        excluded=excluded,
    )


def test_set_line(root: Path, n_good_test: int) -> str:
    """The test-set line from ``root/dataset.json``, or a plain count for a user folder."""
    info = read_dataset_info(root)
    if info is None:
        return f"test set: {n_good_test:,} usable images (no {DATASET_FILE}: not a known benchmark)"
    return info.test_set_line(n_good_test)


def write_outputs(root: Path, statuses: Iterable[ImageStatus], summary: VerifySummary) -> None:
    """Write ``manifest.csv``, ``excluded.tsv`` and then ``verify.json`` into ``root``."""
    _replace(root / MANIFEST_FILE, lambda f: _write_manifest(f, statuses))
    _replace(root / EXCLUDED_FILE, lambda f: _write_excluded(f, summary.excluded))
    text = json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n"
    _replace(root / SUMMARY_FILE, lambda f: f.write(text))


def _write_manifest(f: Any, statuses: Iterable[ImageStatus]) -> None:
    writer = csv.writer(f)
    writer.writerow(["image", "split", "bytes", "sha256", "status"])
    for s in statuses:
        writer.writerow([s.image, s.split, "" if s.size is None else s.size, s.sha256, s.status])


def _write_excluded(f: Any, excluded: list[tuple[str, str]]) -> None:
    f.write("image\treason\n")
    for image, reason in excluded:
        f.write(f"{image}\t{' '.join(reason.split())}\n")  # no tab or newline inside a field


def _replace(path: Path, write: Callable[[Any], object]) -> None:
    """Write text to ``path`` through ``write(file)`` under a temporary name, then rename."""
    with atomic_write(path, newline="", what=path.name) as f:
        write(f)


def read_exclusions(data_dir: str | Path) -> dict[str, str]:
    """The images ``mlzsl data verify`` excluded: ``{image: reason}`` from ``DIR/excluded.tsv``.

    The file has the header line ``image<TAB>reason`` (further header columns are ignored), then
    one line per image: its path as written in ``labels.csv``, a tab, the reason. Blank lines are
    ignored; for an image listed twice the first reason wins. A folder without the file excludes
    nothing. ``mlzsl extract`` skips the images listed here.

    Raises:
        DataError: the file cannot be read, or its header or a line is malformed (the message
            names the file and the line).
    """
    path = Path(data_dir) / EXCLUDED_FILE
    if not os.path.lexists(path):
        return {}
    try:
        with open_input(path, "r", what=EXCLUDED_FILE, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it ({e})") from None
    header = lines[0] if lines else ""
    if header.split("\t")[:2] != ["image", "reason"]:
        raise DataError(f"{path}:1: expected the header 'image<TAB>reason', got {header!r}")
    excluded: dict[str, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        if line.strip():
            image, reason = _exclusion_line(path, number, line)
            excluded.setdefault(image, reason)
    return excluded


def _exclusion_line(path: Path, number: int, line: str) -> tuple[str, str]:
    image, tab, reason = line.partition("\t")
    if not tab or not image.strip() or not reason.strip():
        raise DataError(f"{path}:{number}: expected 'image<TAB>reason', got {line[:120]!r}")
    return image, reason.strip()
