"""Image folder -> feature store: batched, resumable, shardable and tolerant of bad files.

How it survives being killed: the images to extract (``labels.csv`` order, less the excluded ones)
are cut into fixed blocks of ``batch_size`` rows. Each finished block is saved as one file in
``STORE.h5.parts/``: written under a unique temporary name, then renamed, so a block file is whole
or absent; and tagged with the job fingerprint (everything that decides the store's content), so a
block of another job is never used. A rerun with the same settings skips the blocks already there;
because block boundaries never move, every block is computed with the same batch composition as in
an uninterrupted run, and the store comes out identical. When every block is done the parts are
streamed into the store (written under a unique temporary name, then renamed), then the parts
folder is removed.

Shards: ``shard=(I, N)`` (``mlzsl extract --shard I/N``) computes only the blocks b with
b % N == I, into the same parts folder as every other shard, so all shards must see the store at
the same path on one shared filesystem, and the data folder at the same path too (its path is part
of the fingerprint; a shard refuses a parts folder that holds another job's blocks). A shard that
finds every block present assembles the store; otherwise it reports how many blocks the other
shards still owe, and a plain rerun (no shard) computes whatever is missing and assembles. Under
torchrun each rank is a shard, shard=(RANK, WORLD_SIZE): ranks run on cuda:LOCAL_RANK when CUDA is
available, meet at a barrier, and rank 0 assembles. The shard count may change between runs.

The lock: assembling, and (re)initialising the parts folder, happen only under ``STORE.h5.lock``
(:mod:`mlzsl.store.lock`: a stale lock left by a killed process is broken by the next run). Two
assemblers could not corrupt anything anyway: each writes its own temporary file, and the rename
into place is atomic.

Exclusions: images listed in the data folder's ``excluded.tsv`` (written by ``mlzsl data verify``)
are not read; they go to the skip report with the reason prefixed "excluded by mlzsl data verify: ",
and the list is part of the fingerprint, so changing it starts a new job.

Unreadable images (missing, zero-byte, truncated, corrupt, not an image) are skipped, listed with
the reason in ``STORE.h5.skipped.tsv`` and counted; they never stop the job.

Devices: with ``device="auto"`` the backbone runs on the GPU when CUDA is available; features are
copied back and stored as float16 either way. Blocks computed on different devices agree to
float16 rounding, not bit for bit; on one device, reruns and shard counts give identical stores.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from mlzsl.backbones import DEFAULT_BACKBONE, Backbone, create_backbone
from mlzsl.datasets.dataset_info import read_dataset_info
from mlzsl.datasets.userdata import UserDataset, read_user_dataset
from mlzsl.datasets.verify import read_exclusions
from mlzsl.distributed import DistInfo, barrier, setup_distributed, torchrun_world
from mlzsl.errors import ConfigError, DataError
from mlzsl.files import atomic_write, check_writable, open_input
from mlzsl.images import load_rgb, normalise
from mlzsl.progress import progress
from mlzsl.runtime import choose_runtime, cpu_threads, ordered_map
from mlzsl.store.feature_store import read_header, write_store
from mlzsl.store.lock import StoreLock, unique_name
from mlzsl.store.parts import (
    existing_store_matches,
    load_part,
    part_done,
    part_path,
    parts_owner,
    prepare_parts,
    remove,
    save_part,
    set_aside,
)

if TYPE_CHECKING:
    from tqdm import tqdm

EXCLUDED_PREFIX = "excluded by mlzsl data verify: "
# ranks may reach the barrier hours apart (one rank's blocks were done by an earlier run), so the
# default 30-minute collective timeout would kill a healthy job
_BARRIER_TIMEOUT = timedelta(days=7)
_LABEL_ROWS = 4096  # label rows made dense at a time, to be written into the store


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:300]


# ----------------------------------------------------------------------------- the job


@dataclass
class _Job:
    """One extraction: what to compute, where it goes, and the fingerprint that names it."""

    out: Path
    dataset: UserDataset
    model: Backbone
    size: int  # input side S
    block_size: int
    rows: np.ndarray  # int64 [N_kept]: dataset rows to extract, labels.csv order, less exclusions
    excluded: dict[int, str]  # dataset row -> reason given in excluded.tsv
    fingerprint: str

    @property
    def parts(self) -> Path:
        """The folder of finished blocks, shared by every shard."""
        return self.out.with_name(self.out.name + ".parts")

    @property
    def report(self) -> Path:
        """The skip report, ``STORE.h5.skipped.tsv``."""
        return self.out.with_name(self.out.name + ".skipped.tsv")

    @property
    def lock(self) -> Path:
        """The lock file, ``STORE.h5.lock``."""
        return self.out.with_name(self.out.name + ".lock")

    @property
    def n_blocks(self) -> int:
        """Number of blocks (the last one may be short)."""
        return -(-len(self.rows) // self.block_size)

    def block_rows(self, block: int) -> np.ndarray:
        """Dataset rows of ``block`` (int64 [≤ block_size])."""
        return self.rows[block * self.block_size : (block + 1) * self.block_size]


def _make_job(
    data_dir: str | Path,
    out: Path,
    model: Backbone,
    image_size: int | None,
    block_size: int,
) -> _Job:
    """Read the data folder and its exclusions; fix the rows, the blocks and the fingerprint."""
    dataset = read_user_dataset(data_dir)
    listed = read_exclusions(dataset.root)
    excluded = {i: listed[name] for i, name in enumerate(dataset.images) if name in listed}
    rows = np.asarray([i for i in range(len(dataset)) if i not in excluded], dtype=np.int64)
    size = image_size or model.spec.image_size
    fingerprint = _job_fingerprint(dataset, model.identity(), size, block_size, excluded)
    return _Job(out, dataset, model, size, block_size, rows, excluded, fingerprint)


def _job_fingerprint(
    dataset: UserDataset,
    identity: dict[str, Any],
    size: int,
    block: int,
    excluded: dict[int, str],
) -> str:
    """Everything that decides the store's content; a resumed job must match it exactly."""
    facts: dict[str, Any] = {
        "root": str(dataset.root.resolve()),
        "images": dataset.images,
        "splits": dataset.splits,
        # the sparse targets hashed in place, never densified (Open Images train: 13 GB dense)
        "labels_sha": dataset.labels.digest(),
        "vocabulary": list(dataset.label_set.names),
        "backbone": identity,
        "image_size": size,
        "block": block,
        **_dataset_meta(dataset.root),
    }
    if excluded:  # only when present, so a job without exclusions keeps its old fingerprint
        facts["excluded"] = [[dataset.images[r], why] for r, why in sorted(excluded.items())]
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class JobIdentity:
    """What :func:`extract_features` would compute for a folder, named without computing it.

    Attributes:
        fingerprint: the job fingerprint (everything that decides the store's content: the
            folder's path, image list, splits, labels, vocabulary, ``dataset.json`` and
            exclusions, the backbone identity with its weights, the image size, the block size);
            a finished store made by this job carries it as its ``job`` attribute.
        image_size: the input side S the job extracts at.
        backbone: the backbone's identity (:meth:`mlzsl.backbones.Backbone.identity`).
        files: every image path of the folder, ``labels.csv`` order (excluded ones included).
    """

    fingerprint: str
    image_size: int
    backbone: dict[str, Any]
    files: list[Path]


def job_identity(
    data_dir: str | Path,
    *,
    backbone: str = DEFAULT_BACKBONE,
    weights: str | None = None,
    image_size: int | None = None,
    batch_size: int = 32,
) -> JobIdentity:
    """The identity of the job :func:`extract_features` runs with the same arguments.

    Reads the data folder and builds the backbone (to learn its weights' identity); computes
    nothing. Raises what :func:`extract_features` raises for a bad folder, backbone or size.
    """
    _check_settings(batch_size, 0, None)
    model = create_backbone(backbone, weights=weights, image_size=image_size)
    job = _make_job(data_dir, Path("unused.h5"), model, image_size, batch_size)
    files = [job.dataset.path(i) for i in range(len(job.dataset))]
    return JobIdentity(job.fingerprint, job.size, model.identity(), files)


def _missing_blocks(job: _Job) -> list[int]:
    return [b for b in range(job.n_blocks) if not part_done(job.parts, b, job.fingerprint)]


# ----------------------------------------------------------------------------- computing blocks


@dataclass
class _Block:
    """One decoded block: the rows that decoded, their pixels, and the rows that did not."""

    block: int
    rows: np.ndarray  # int64 [n_ok]
    pixels: torch.Tensor  # float32 [n_ok, 3, S, S] on torch; empty on onnxruntime (streamed)
    failed: list[tuple[int, str]]


class _BlockImages(Dataset[_Block]):
    """Decodes whole blocks (one item = one block of rows) in DataLoader workers: normalised
    pixels float32 [n, 3, S, S]. :meth:`decode` is one image, which onnxruntime's threads call
    with ``raw`` (the bytes uint8 [S, S, 3], which its graph normalises itself)."""

    def __init__(self, job: _Job, blocks: list[int]) -> None:
        self.dataset, self.blocks, self.block_rows = job.dataset, blocks, job.block_rows
        self.size = job.size
        self.mean = np.asarray(job.model.spec.mean, dtype=np.float32)
        self.std = np.asarray(job.model.spec.std, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.blocks)

    def decode(self, row: int, *, raw: bool = False) -> np.ndarray:
        """One image of the data folder; raises whatever a bad file raises."""
        with open_input(self.dataset.path(row), what="image") as f:  # a FIFO: an error, no hang
            rgb = load_rgb(f, self.size)  # the path is made here: no list of N paths up front
        return rgb if raw else normalise(rgb, self.mean, self.std)

    def __getitem__(self, i: int) -> _Block:
        block = self.blocks[i]
        rows, images, failed = [], [], []
        for row in self.block_rows(block):
            try:
                images.append(self.decode(int(row)))
                rows.append(int(row))
            except Exception as e:  # any failure to decode one file skips that file only
                failed.append((int(row), _reason(e)))
        pixels = torch.from_numpy(np.stack(images)) if images else torch.empty(0)
        return _Block(block, np.asarray(rows, dtype=np.int64), pixels, failed)


@dataclass(frozen=True)
class _Compute:
    """How this process computes blocks: on torch (``device``; ``workers`` decoding processes)
    or on onnxruntime (a CPU: ``threads`` images at once, each decoded and computed on its own
    thread, so decoding overlaps the forward passes, and no thread waits for another's block)."""

    device: torch.device
    workers: int
    show_progress: bool
    runtime: str = "torch"
    threads: int = 1


def _compute_shard(job: _Job, shard: tuple[int, int] | None, how: _Compute) -> tuple[int, int]:
    """Compute this shard's unfinished blocks; return (blocks already done, images processed)."""
    index, count = shard or (0, 1)
    mine = range(index, job.n_blocks, count)
    todo = [b for b in mine if not part_done(job.parts, b, job.fingerprint)]
    total = sum(len(job.block_rows(b)) for b in mine)
    n_todo = sum(len(job.block_rows(b)) for b in todo)
    desc = "extract" if shard is None else f"extract {index}/{count}"
    show = how.show_progress
    bar = progress(total=total, initial=total - n_todo, desc=desc, unit="img", disable=not show)
    _run_blocks(job, todo, how, bar)
    return len(mine) - len(todo), n_todo


def _run_blocks(job: _Job, todo: list[int], how: _Compute, bar: tqdm) -> None:
    """Decode the ``todo`` blocks, run the backbone, save each block."""
    images = _BlockImages(job, todo)
    blocks = _onnx_blocks if how.runtime == "onnx" else _torch_blocks
    computed = blocks(job, images, how)
    with bar:
        for item, feats in computed:
            if not _save_or_stop(job, item, feats):
                return
            bar.update(len(item.rows) + len(item.failed))


def _onnx_blocks(
    job: _Job, images: _BlockImages, how: _Compute
) -> Iterator[tuple[_Block, np.ndarray]]:
    """Each block with its feature maps float32 [n, C, H, W], in order, on onnxruntime: the
    images of every block in one stream over ``how.threads`` threads, one image a call (faster
    than batches on one thread here), gathered back into blocks."""
    from mlzsl.backbones.onnx import backbone_session

    session = backbone_session(job.model)

    def compute(row: int) -> np.ndarray | str:  # the maps [1, C, H, W], or why it was skipped
        try:
            rgb = images.decode(row, raw=True)
        except Exception as e:  # any failure to decode one file skips that file only
            return _reason(e)
        return session.run(None, {"rgb": rgb[None]})[0].astype(np.float16)  # as stored

    rows = (int(r) for block in images.blocks for r in job.block_rows(block))
    # a block's worth in flight: the threads go on while this one writes a block to disk
    done = ordered_map(compute, rows, how.threads, ahead=max(2, job.block_size // how.threads))
    for block in images.blocks:
        kept, maps, failed = [], [], []
        for row in job.block_rows(block):
            result = next(done)
            if isinstance(result, str):
                failed.append((int(row), result))
            else:
                kept.append(int(row))
                maps.append(result)
        item = _Block(block, np.asarray(kept, np.int64), torch.empty(0), failed)
        yield item, np.concatenate(maps) if maps else np.empty((0,))


def _torch_blocks(
    job: _Job, images: _BlockImages, how: _Compute
) -> Iterator[tuple[_Block, np.ndarray]]:
    """Each block with its feature maps float32 [n, C, H, W], in order, on torch (blocks decoded
    in ``how.workers`` DataLoader processes)."""
    loader = DataLoader(
        images,
        batch_size=None,
        num_workers=how.workers,
        collate_fn=lambda b: b,
        prefetch_factor=2 if how.workers else None,
        persistent_workers=False,
    )
    # channels_last: 1.3-1.6x faster on CPU
    model = job.model.to(how.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    with torch.inference_mode():
        for item in loader:
            feats = _forward(model, item.pixels, how.device) if len(item.rows) else np.empty((0,))
            yield item, feats


def _forward(model: Backbone, pixels: torch.Tensor, device: torch.device) -> np.ndarray:
    """Pixels [n, 3, S, S] -> feature maps float32 [n, C, H, W] on the CPU."""
    x = pixels.to(device).contiguous(memory_format=torch.channels_last)
    return model(x).float().cpu().contiguous().numpy()


def _save_or_stop(job: _Job, item: _Block, feats: np.ndarray) -> bool:
    """Save a block; ``False`` when another process finished the store and removed the parts."""
    try:
        save_part(job.parts, job.fingerprint, item.block, item.rows, item.failed, feats)
    except FileNotFoundError:
        if existing_store_matches(job.out, job.fingerprint):
            return False
        raise DataError(
            f"{job.parts}: the parts folder vanished during extraction; rerun"
        ) from None
    return True


# ----------------------------------------------------------------------------- the summary


@dataclass
class ExtractionSummary:
    """What an extraction did. ``skipped`` lists (image, reason) for every skipped file.

    ``blocks_missing`` counts blocks other shards still owe (then no store was written);
    ``assembling_elsewhere`` says another process (or rank 0) is writing the store;
    ``is_main`` is ``False`` on torchrun ranks other than 0, which print nothing.
    """

    store: Path
    report: Path
    n_images: int
    n_written: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    blocks_reused: int = 0
    seconds: float = 0.0
    up_to_date: bool = False
    n_processed: int = 0
    shard: tuple[int, int] | None = None
    blocks_missing: int = 0
    assembling_elsewhere: bool = False
    is_main: bool = True

    @property
    def images_per_second(self) -> float:
        """Images processed in this run per wall-clock second."""
        return self.n_processed / self.seconds if self.seconds > 0 else float("nan")

    @property
    def complete(self) -> bool:
        """Whether the store is finished (written now, or already up to date)."""
        return not self.blocks_missing and not self.assembling_elsewhere


def _up_to_date(job: _Job) -> ExtractionSummary:
    if parts_owner(job.parts) == job.fingerprint:  # recreated by a shard that started late
        remove(set_aside(job.parts))
    skipped = _read_report(job.report)
    n = len(job.dataset)
    return ExtractionSummary(job.out, job.report, n, n - len(skipped), skipped, up_to_date=True)


def _unfinished(job: _Job, shard: tuple[int, int] | None, **facts: Any) -> ExtractionSummary:
    """A summary for a run that wrote no store (blocks missing, or assembled elsewhere)."""
    return ExtractionSummary(job.out, job.report, len(job.dataset), 0, shard=shard, **facts)


# ----------------------------------------------------------------------------- the entry point


def extract_features(
    data_dir: str | Path,
    out: str | Path,
    *,
    backbone: str = DEFAULT_BACKBONE,
    weights: str | None = None,
    image_size: int | None = None,
    batch_size: int = 32,
    workers: int = 2,
    show_progress: bool = True,
    shard: tuple[int, int] | None = None,
    device: str = "auto",
    force: bool = False,
    runtime: str = "auto",
    threads: int | None = None,
) -> ExtractionSummary:
    """Extract backbone feature maps of every image in a user-format folder into a store.

    Under torchrun (``WORLD_SIZE`` > 1) every rank is a shard; see the module docstring.

    Args:
        data_dir: a folder with ``vocabulary.csv``, ``labels.csv``, the images and optionally
            ``excluded.tsv``.
        out: the store to write (``.h5``).
        backbone: a registered backbone name.
        weights: backbone weights (path, URL or "random"); ``None`` is the backbone's default.
        image_size: input side in pixels; ``None`` is the backbone's default.
        batch_size: images per forward pass, and the unit of resumption (a block).
        workers: on torch, DataLoader worker processes decoding images (0 decodes in this
            process); onnxruntime decodes on its computing threads.
        show_progress: draw the progress bar (one per shard, counting that shard's images).
        shard: ``(I, N)``: compute only the blocks b with b % N == I; ``None``: all of them.
        device: ``"auto"`` (the GPU when CUDA is available), ``"cpu"``, ``"cuda"`` or
            ``"cuda:K"``.
        force: replace a finished store at ``out`` made from another data folder, backbone or
            image size (without it that is refused, saying what differs).
        runtime: ``"auto"`` (onnxruntime on a CPU where installed, the backbone exported on
            first use: :func:`mlzsl.backbones.onnx.backbone_session`; torch on a GPU),
            ``"torch"`` or ``"onnx"`` (CPU only).
        threads: onnxruntime: blocks computed at once, one thread each (default: every core
            this process may use).

    Returns:
        An :class:`ExtractionSummary`.

    Raises:
        ConfigError: a bad batch size, worker count, shard or device.
        DataError: a bad data folder or ``excluded.tsv``, a parts folder of another job (for a
            shard), or ``out`` holding another store (without ``force``) or a file that is no
            store.
    """
    _check_settings(batch_size, workers, shard)
    _check_out(Path(out))  # before any work, so a bad --out leaves nothing behind
    started = time.perf_counter()
    owns_group = not dist.is_initialized()
    info = _join_torchrun(shard)
    try:
        how = _compute(_resolve_device(device, info), runtime, workers, threads, show_progress)
        model = create_backbone(backbone, weights=weights, image_size=image_size).eval()
        job = _make_job(data_dir, Path(out), model, image_size, batch_size)
        if not force:
            _check_replace(job)
        if info is None:
            summary = _extract_local(job, shard, how)
        else:
            summary = _extract_torchrun(job, info, how)
    finally:
        if info is not None and owns_group and dist.is_initialized():
            dist.destroy_process_group()
    summary.seconds = time.perf_counter() - started
    return summary


def _check_out(out: Path) -> None:
    """``out`` must be a file path whose folder is, or can become, a folder."""
    if out.is_dir():
        raise ConfigError(
            f"{out}: is a folder; the store is one file, e.g. --out {out / 'features.h5'}"
        )
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{out}: cannot be written: {existing} is a file, not a folder")
    check_writable(out.parent, "feature store")  # a read-only or full disk: one line, no work


def _check_replace(job: _Job) -> None:
    """Refuse to replace a finished store of other data, backbone or size, or a non-store file."""
    if not job.out.exists() or existing_store_matches(job.out, job.fingerprint):
        return
    try:
        meta = read_header(job.out).meta
    except DataError:
        raise DataError(
            f"{job.out}: exists and is not a finished feature store; pass --force to replace it "
            "or choose another --out"
        ) from None
    old, new = dict(meta.get("backbone") or {}), job.model.identity()
    differs = []
    if meta.get("source") != str(job.dataset.root.resolve()):
        differs.append(f"other data ({meta.get('source') or 'imported'})")
    if old.get("name") != new["name"]:
        differs.append(f"backbone {old.get('name')} (this run: {new['name']})")
    elif (old.get("weights"), old.get("sha256")) != (new["weights"], new["sha256"]):
        differs.append(f"other {new['name']} weights ({old.get('weights')})")
    if meta.get("image_size") != job.size:
        differs.append(f"image size {meta.get('image_size')} (this run: {job.size})")
    if differs:
        raise DataError(
            f"{job.out}: holds a finished store of {', '.join(differs)}; pass --force to "
            "replace it or choose another --out"
        )


def _check_settings(batch_size: int, workers: int, shard: tuple[int, int] | None) -> None:
    if batch_size < 1 or workers < 0:
        raise ConfigError(f"batch size must be ≥ 1 and workers ≥ 0, got {batch_size}, {workers}")
    if shard is not None and not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
        raise ConfigError(f"shard must be (I, N) with 0 ≤ I < N, got {shard}")


def _compute(
    device: torch.device, runtime: str, workers: int, threads: int | None, show_progress: bool
) -> _Compute:
    """The engine for ``device``: onnxruntime on a CPU unless ``runtime`` says torch."""
    if device.type != "cpu":
        if runtime == "onnx":
            raise ConfigError(f"runtime 'onnx' computes on the CPU; drop --device {device}")
        return _Compute(device, workers, show_progress)
    engine = choose_runtime(runtime, gpu=False)
    return _Compute(device, workers, show_progress, engine, threads or cpu_threads())


def _resolve_device(name: str, info: DistInfo | None) -> torch.device:
    """The device the backbone runs on; a torchrun rank's GPU is cuda:LOCAL_RANK."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if name not in ("auto", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:K, got {name!r}")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine")
    if name in ("auto", "cuda"):
        return info.device if info is not None else torch.device("cuda")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:K, got {name!r}") from None


def _join_torchrun(shard: tuple[int, int] | None) -> DistInfo | None:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1; ``None`` when not under torchrun."""
    if torchrun_world() <= 1:
        return None
    if shard is not None:
        raise ConfigError("shard: under torchrun every rank is a shard already; drop --shard")
    return setup_distributed(timeout=_BARRIER_TIMEOUT)


def _extract_local(job: _Job, shard: tuple[int, int] | None, how: _Compute) -> ExtractionSummary:
    """One process: the whole job, or one shard that assembles when it finds every block."""
    if existing_store_matches(job.out, job.fingerprint):
        return _up_to_date(job)
    job.out.parent.mkdir(parents=True, exist_ok=True)
    if not prepare_parts(job, replace=shard is None):
        return _up_to_date(job)
    reused, processed = _compute_shard(job, shard, how)
    summary = _finish(job, shard, wait=shard is None)
    summary.blocks_reused, summary.n_processed = reused, processed
    return summary


def _extract_torchrun(job: _Job, info: DistInfo, how: _Compute) -> ExtractionSummary:
    """One torchrun rank: rank 0 sets up the parts, all compute their shard, rank 0 assembles.

    Every rank reaches both barriers whatever it finds, so none can wait for a missing peer.
    """
    shard = (info.rank, info.world)
    done = existing_store_matches(job.out, job.fingerprint)
    if info.rank == 0 and not done:
        job.out.parent.mkdir(parents=True, exist_ok=True)
        done = not prepare_parts(job, replace=True)
    barrier(info)
    done = done or existing_store_matches(job.out, job.fingerprint)
    reused, processed = (0, 0) if done else _compute_shard(job, shard, how)
    barrier(info)
    if info.rank != 0:
        summary = _unfinished(job, shard, up_to_date=done, assembling_elsewhere=not done)
        summary.is_main = False
    else:
        summary = _up_to_date(job) if done else _finish(job, shard, wait=True)
    summary.blocks_reused, summary.n_processed = reused, processed
    return summary


def _finish(job: _Job, shard: tuple[int, int] | None, *, wait: bool) -> ExtractionSummary:
    """Assemble when every block is there; else say how many the other shards still owe."""
    missing = _missing_blocks(job)
    if missing and existing_store_matches(job.out, job.fingerprint):
        return _up_to_date(job)  # another shard assembled while we computed
    if missing and shard is None:
        raise DataError(
            f"{part_path(job.parts, missing[0])}: missing after extraction "
            "(is another job writing this store?); rerun to redo it"
        )
    if missing:
        return _unfinished(job, shard, blocks_missing=len(missing))
    with StoreLock(job.lock, wait=wait) as lock:
        if not lock.held:
            return _unfinished(job, shard, assembling_elsewhere=True)
        if existing_store_matches(job.out, job.fingerprint):
            return _up_to_date(job)
        summary = _assemble(job, lock)
        summary.shard = shard
        aside = set_aside(job.parts)
    remove(aside)
    return summary


# ----------------------------------------------------------------------------- assembly


def _assemble(job: _Job, lock: StoreLock) -> ExtractionSummary:
    """Stream the saved blocks into the final store and write the skip report."""
    kept, failed = _collect_rows(job, lock)
    skipped = _skip_list(job, failed)
    _write_report(job.report, skipped)  # before the store: a finished store always has its report
    if len(kept) == 0:  # a store of no image is a failure, not a finished job
        image, why = skipped[0] if skipped else ("-", "no image")
        raise DataError(
            f"{job.out}: none of the {len(job.dataset):,} images could be extracted, so no store "
            f"was written (first: {image}: {why}; every reason in {job.report})"
        )
    tmp = job.out.with_name(f"{job.out.name}.{unique_name()}.assembling")
    try:
        _write_features(job, tmp, kept, len(skipped), lock)
        os.replace(tmp, job.out)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".tmp").unlink(missing_ok=True)  # write_store's own temporary
    return ExtractionSummary(job.out, job.report, len(job.dataset), len(kept), skipped)


def _collect_rows(job: _Job, lock: StoreLock) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Rows kept (int64 [n], labels.csv order) and (row, reason) of rows that failed to decode."""
    rows: list[np.ndarray] = []
    failed: list[tuple[int, str]] = []
    for b in range(job.n_blocks):
        part = load_part(job.parts, b, ("rows", "failed_rows", "failed_reasons"))
        rows.append(part["rows"])
        reasons = zip(part["failed_rows"], part["failed_reasons"], strict=True)
        failed += [(int(r), str(why)) for r, why in reasons]
        lock.refresh()
    return (np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)), failed


def _skip_list(job: _Job, failed: list[tuple[int, str]]) -> list[tuple[str, str]]:
    """(image, reason) of every skipped row, in labels.csv order: exclusions and failures."""
    excluded = [(r, EXCLUDED_PREFIX + why) for r, why in job.excluded.items()]
    return [(job.dataset.images[r], why) for r, why in sorted(failed + excluded)]


def _write_features(
    job: _Job, path: Path, kept: np.ndarray, n_skipped: int, lock: StoreLock
) -> None:
    """Write the store at ``path``, streaming one block's features at a time."""

    def blocks() -> Iterator[np.ndarray]:
        for b in range(job.n_blocks):
            features = load_part(job.parts, b, ("features",))["features"]
            lock.refresh()
            if len(features):
                yield features

    spec, dataset = job.model.spec, job.dataset
    write_store(
        path,
        features=blocks(),
        n_images=len(kept),
        feature_shape=job.model.output_shape(job.size),
        labels=_label_blocks(dataset, kept),
        image_ids=[dataset.images[i] for i in kept],
        splits=[dataset.splits[i] for i in kept],
        label_set=dataset.label_set,
        meta={
            "backbone": job.model.identity(),
            "image_size": job.size,
            "mean": list(spec.mean),
            "std": list(spec.std),
            "source": str(dataset.root.resolve()),
            "job": job.fingerprint,
            "n_skipped": n_skipped,
            **_dataset_meta(dataset.root),
        },
    )


def _label_blocks(dataset: UserDataset, kept: np.ndarray) -> Iterator[np.ndarray]:
    """Dense targets of the ``kept`` rows, ``_LABEL_ROWS`` rows at a time (int8 [≤ 4096, L]).

    The store's writer encodes each block as CSR; only one block is ever dense, whatever N.
    """
    for start in range(0, len(kept), _LABEL_ROWS):
        yield dataset.target_rows(kept[start : start + _LABEL_ROWS])


def _dataset_meta(root: Path) -> dict[str, Any]:
    """``{"dataset": ...}`` from the folder's ``dataset.json``; empty for a plain user folder."""
    info = read_dataset_info(root)
    return {} if info is None else {"dataset": info.to_dict()}


def _write_report(path: Path, skipped: list[tuple[str, str]]) -> None:
    with atomic_write(path, what="skip report") as f:
        f.write("image\treason\n")
        for image, why in skipped:
            f.write(f"{image}\t{why}\n")


def _read_report(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()[1:]
    except OSError:
        return []
    return [tuple(line.split("\t", 1)) for line in lines if "\t" in line]  # type: ignore[misc]
