"""Cached feature stores of image folders: ``folder_store(DIR, backbone=..., image_size=...)``.

``mlzsl train --data DIR`` and ``mlzsl bench quality --data DIR`` train on a labelled image folder
without an ``mlzsl extract`` step: the folder is extracted once into a store under
``<cache_home>/stores/`` (:func:`mlzsl.runtime.cache_home`) and later runs reuse it.

The key. A store's file name ends in a key made of the extraction's own job fingerprint
(:func:`mlzsl.store.extract.job_identity`: the folder's path, image list, splits, labels,
vocabulary, ``dataset.json`` and ``excluded.tsv``, the backbone identity with its weights' sha256,
the image size and the block size) plus the size and modification time of every image file (the
fingerprint names images, it does not read them, so an image replaced under the same name would
otherwise go unnoticed). Any change to one of them names another store; the old one stays until
the cache folder is cleaned by hand.

Safety comes from :func:`mlzsl.store.extract.extract_features`, which does the work: a store
appears at its final path only when finished (written under a temporary name, ``complete`` set
last, renamed), and is taken only when its ``job`` attribute equals the fingerprint, so a
half-written store is never used; a killed extraction resumes from its parts journal
(``STORE.h5.parts/``) on the next run; concurrent runs meet at the store's lock. Under torchrun
every rank extracts its share and rank 0 assembles; the other ranks wait here until the store is
there.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from mlzsl.backbones import DEFAULT_BACKBONE
from mlzsl.runtime import cache_home
from mlzsl.store.extract import ExtractionSummary, JobIdentity, extract_features, job_identity
from mlzsl.store.parts import existing_store_matches

__all__ = ["FolderStore", "cached_store_path", "data_backbone", "folder_store", "stores_home"]

_WAIT_SECONDS = 1.0  # torchrun ranks other than 0 poll this often for the assembled store


def stores_home() -> Path:
    """The folder of cached stores: ``<cache_home>/stores``."""
    return cache_home() / "stores"


def data_backbone(model: str, backbone: str | None) -> str:
    """The backbone a folder is extracted with for ``model``: ``backbone`` (a config's) if set,
    else ``pixels`` for a model that takes images (``ml2p_official``), else the default."""
    from mlzsl.models import model_inputs

    if backbone:
        return backbone
    return "pixels" if model_inputs(model) == "images" else DEFAULT_BACKBONE


@dataclass(frozen=True)
class FolderStore:
    """The store of a folder, and what :func:`folder_store` did to get it.

    Attributes:
        path: the finished store.
        reused: ``True`` when the store was already there (nothing extracted).
        summary: the extraction's summary (``summary.skipped`` lists unreadable images).
    """

    path: Path
    reused: bool
    summary: ExtractionSummary


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")[:limit] or "data"


def _files_digest(files: list[Path]) -> str:
    """sha256 of every image's size and modification time (``-`` for a missing file)."""
    digest = hashlib.sha256()
    for path in files:
        try:
            stat = path.stat()
            digest.update(f"{stat.st_size} {stat.st_mtime_ns}\n".encode())
        except OSError:  # extraction skips and lists it; a file that appears later changes the key
            digest.update(b"-\n")
    return digest.hexdigest()


def _key(identity: JobIdentity) -> str:
    facts = {"job": identity.fingerprint, "files": _files_digest(identity.files)}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def cached_store_path(
    data_dir: str | Path,
    *,
    backbone: str | None = None,
    image_size: int | None = None,
    weights: str | None = None,
    batch_size: int = 32,
) -> tuple[Path, JobIdentity]:
    """Where the cached store of ``data_dir`` lives for these settings, and the job's identity.

    The file need not exist. Raises what :func:`mlzsl.store.extract.extract_features` raises for a
    bad folder, backbone or image size.
    """
    name = backbone or DEFAULT_BACKBONE
    identity = job_identity(
        data_dir, backbone=name, weights=weights, image_size=image_size, batch_size=batch_size
    )
    folder = _slug(Path(data_dir).resolve().name)
    file = f"{folder}-{_slug(name)}-{identity.image_size}px-{_key(identity)[:16]}.h5"
    return stores_home() / file, identity


def folder_store(
    data_dir: str | Path,
    *,
    backbone: str | None = None,
    image_size: int | None = None,
    weights: str | None = None,
    batch_size: int = 32,
    workers: int = 2,
    device: str = "auto",
    show_progress: bool = True,
) -> FolderStore:
    """The feature store of the image folder ``data_dir``: reused from the cache, else extracted.

    Args:
        data_dir: a folder in the user data format (``vocabulary.csv``, ``labels.csv``, images).
        backbone: a registered backbone name (``None``: ``efficientnet_lite0``, as ``mlzsl
            extract``).
        image_size: input side in pixels (``None``: the backbone's default).
        weights: backbone weights (path, URL or "random"; ``None``: the packaged ones).
        batch_size: images per forward pass and the unit of resumption (part of the key).
        workers: image-decoding worker processes (0: decode in this process); not in the key.
        device: where the backbone runs (``"auto"``: the GPU when CUDA is available).
        show_progress: draw the extraction's progress bar.

    Raises:
        DataError: a missing or malformed folder.
        ConfigError: an unknown backbone, bad weights or settings.
    """
    path, identity = cached_store_path(
        data_dir, backbone=backbone, image_size=image_size, weights=weights, batch_size=batch_size
    )
    summary = extract_features(
        data_dir,
        path,
        backbone=backbone or DEFAULT_BACKBONE,
        weights=weights,
        image_size=image_size,
        batch_size=batch_size,
        workers=workers,
        show_progress=show_progress,
        device=device,
        force=True,  # the cache owns the path: a file there that is not this job's is replaced
    )
    if not summary.complete:  # a torchrun rank other than 0: rank 0 is assembling the store
        while not existing_store_matches(path, identity.fingerprint):
            time.sleep(_WAIT_SECONDS)
    return FolderStore(path, summary.up_to_date, summary)
