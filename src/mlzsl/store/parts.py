"""The parts journal of an extraction: finished blocks on disk, each whole or absent.

``STORE.h5.parts/`` holds ``job.json`` (the fingerprint of the job that owns the folder) and one
``block-NNNNNNNN.npz`` per finished block, tagged with that fingerprint, so a block of another job
is never used. Every file is written under a unique temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Protocol

import numpy as np

from mlzsl.datasets.verify import EXCLUDED_FILE
from mlzsl.errors import DataError
from mlzsl.files import atomic_write, os_reason
from mlzsl.store.feature_store import FeatureStore
from mlzsl.store.lock import StoreLock, unique_name

PARTS_FORMAT = "mlzsl-parts-2"  # 2: every block file carries its job fingerprint
_PART_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


class Journal(Protocol):
    """What the journal needs to know of a job: its files and its fingerprint."""

    @property
    def out(self) -> Path: ...

    @property
    def parts(self) -> Path: ...

    @property
    def lock(self) -> Path: ...

    @property
    def fingerprint(self) -> str: ...


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:300]


def parts_owner(parts: Path) -> str | None:
    """The job named by ``parts/job.json``; ``None`` without one, ``"?"`` for an unusable one."""
    try:
        marker = json.loads((parts / "job.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "?"
    if not isinstance(marker, dict) or marker.get("format") != PARTS_FORMAT:
        return "?"  # an older layout: its blocks carry no fingerprint
    return str(marker.get("job"))


def prepare_parts(job: Journal, *, replace: bool) -> bool:
    """Make ``job.parts`` this job's folder; ``False`` when the store turned out to be finished.

    The common case (the folder is already ours) takes no lock, so shards starting together
    don't queue. Otherwise, under the lock: a folder of another job is set aside and deleted when
    ``replace`` (a plain run), or refused (a shard: its owner may be a running shard started with
    other settings or paths); then ``job.json`` is written, once.
    """
    if parts_owner(job.parts) == job.fingerprint:
        return True
    with StoreLock(job.lock, wait=True):
        if existing_store_matches(job.out, job.fingerprint):
            return False
        owner = parts_owner(job.parts)
        if owner == job.fingerprint:  # another shard set it up while we waited
            return True
        if owner is not None and not replace:
            raise DataError(
                f"{job.parts}: holds blocks of another extraction job (other settings, data path "
                f"or {EXCLUDED_FILE}); every shard must run the same command on the same paths; "
                "delete the folder, or run without --shard, to start this job"
            )
        aside = set_aside(job.parts) if owner is not None else None
        job.parts.mkdir(parents=True, exist_ok=True)
        _write_marker(job.parts, job.fingerprint)
    remove(aside)
    return True


def _write_marker(parts: Path, job: str) -> None:
    with atomic_write(parts / "job.json", what="parts journal") as f:
        f.write(json.dumps({"format": PARTS_FORMAT, "job": job}))


def set_aside(parts: Path) -> Path | None:
    """Rename the parts folder to a unique name, so a late writer fails instead of refilling it.

    Returns the new name (for the caller to delete, outside the lock), or ``None`` if it was gone.
    """
    aside = parts.with_name(f"{parts.name}.{unique_name()}.old")
    try:
        os.rename(parts, aside)
    except FileNotFoundError:
        return None
    return aside


def remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def part_path(parts: Path, block: int) -> Path:
    return parts / f"block-{block:08d}.npz"


def save_part(
    parts: Path,
    job: str,
    block: int,
    rows: np.ndarray,
    failed: list[tuple[int, str]],
    feats: np.ndarray,
) -> None:
    """Write one block atomically; a unique temporary name lets two processes write it at once."""
    final = part_path(parts, block)
    tmp = final.with_name(f"{final.name}.{unique_name()}.tmp")
    try:
        with tmp.open("wb") as f:  # not mlzsl.files.atomic_write: a vanished folder stays gone
            np.savez(
                f,
                job=np.asarray(job),
                rows=rows,
                features=feats.astype(np.float16, copy=False),
                failed_rows=np.asarray([r for r, _ in failed], dtype=np.int64),
                failed_reasons=np.asarray([m for _, m in failed], dtype=str),
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):  # full, read-only
            raise DataError(f"{final}: cannot write the block ({os_reason(e)})") from None
        raise


def part_done(parts: Path, block: int, job: str) -> bool:
    """Whether ``block`` is saved for this job (reads only the fingerprint, not the features)."""
    try:
        with np.load(part_path(parts, block)) as z:
            return str(z["job"]) == job
    except _PART_ERRORS:
        return False


def load_part(parts: Path, block: int, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``keys`` of a finished block; an unreadable block is deleted and reported, to be redone."""
    path = part_path(parts, block)
    try:
        with np.load(path) as z:
            return {k: z[k] for k in keys}
    except _PART_ERRORS as e:
        path.unlink(missing_ok=True)
        raise DataError(
            f"{path}: unreadable ({_reason(e)}); removed it, rerun to redo it"
        ) from None


def existing_store_matches(out: Path, job: str) -> bool:
    try:
        return FeatureStore(out).header.meta.get("job") == job
    except DataError:
        return False
