"""Peak RSS and throughput of training on feature stores of growing size (issue 13, part 4).

Builds synthetic stores with :func:`mlzsl.store.feature_store.write_store`, features and labels
streamed in blocks, and trains on each in a child process that reports its own peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``) and the engine's measured share of loop time spent waiting
for the next batch (:attr:`mlzsl.training.engine.FitResult.data_wait`):

- NUS-WIDE-shaped stores: N images of 512×14×14 float16 maps (VGG19 conv5_4), 925 seen + 81
  unseen labels, ~2.4 positives per image, every other tag -1 (fill -1), unseen columns of train
  rows 0. Trained with ``mlzsl train``'s code (:func:`mlzsl.training.engine.fit`): one epoch of
  fast0tag (a fast head, so the data path is what is measured), then evaluation of 1,000 test
  images.
- an Open-Images-shaped store: 1.7 M images × 7,586 labels (7,186 seen + 400 unseen), ~8
  positives and ~4 verified negatives per image (fill 0), with tiny 16×1×1 maps (1.7 M full maps
  would be 340 GB). Trained for a fixed number of steps (an epoch is 26,000 steps), then
  evaluated on 2,000 test images.

Usage::

    python benchmarks/bench_memory.py                      # 10k, 20k, 40k and Open Images
    python benchmarks/bench_memory.py --sizes 2000 --oi-images 100000 --oi-steps 50   # quick

Stores are written under ``--work`` (default: a temporary folder in /tmp) one at a time and
deleted after their run; the largest NUS-shaped one is 8 GB at 40k images.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mlzsl.labels import LabelSet
from mlzsl.store.feature_store import write_store
from mlzsl.store.sparse_labels import SparseLabels

BLOCK = 4096  # images generated and written at a time
NUS = {"seen": 925, "unseen": 81, "positives": 2.4, "negatives": 0.0, "fill": -1, "test": 1000}
OPEN_IMAGES = {"seen": 7186, "unseen": 400, "positives": 8.0, "negatives": 4.0, "fill": 0}
OI_TEST = 2000
EMBED_DIM = 300  # the NUS-WIDE and Open Images configs use 300-d GloVe


# ----------------------------------------------------------------------------- synthetic stores


def _labels(rng: np.random.Generator, train: np.ndarray, shape: dict[str, Any]) -> SparseLabels:
    """CSR labels of one block (never dense): Poisson positives and verified negatives per row,
    unseen columns hidden (0) on train rows."""
    n, n_seen = len(train), shape["seen"]
    width = n_seen + shape["unseen"]

    def codes(mean: float) -> np.ndarray:  # row * width + column, sorted and distinct
        k = rng.poisson(mean, n) if mean else np.zeros(n, dtype=np.int64)
        return np.unique(np.repeat(np.arange(n), k) * width + rng.integers(0, width, k.sum()))

    pos = codes(shape["positives"])
    neg = np.setdiff1d(codes(shape["negatives"]), pos)
    code = np.concatenate([pos, neg])
    value = np.concatenate([np.ones(len(pos), np.int8), -np.ones(len(neg), np.int8)])
    keep = ~(train[code // width] & (code % width >= n_seen))  # unseen labels hidden on train
    code, value = code[keep], value[keep]
    if shape["fill"] != 0:  # the hidden entries differ from the fill: store them as 0
        rows = np.flatnonzero(train)
        hidden = (rows[:, None] * width + np.arange(n_seen, width)).ravel()
        code = np.concatenate([code, hidden])
        value = np.concatenate([value, np.zeros(len(hidden), np.int8)])
    order = np.argsort(code, kind="stable")
    code, value = code[order], value[order]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(code // width, minlength=n), out=indptr[1:])
    return SparseLabels(indptr, (code % width).astype(np.int32), value, width, shape["fill"])


def build_store(
    path: Path, n_images: int, n_test: int, feature_shape: tuple[int, int, int], shape: dict
) -> float:
    """Write a synthetic store (the last ``n_test`` images are test images); return seconds."""
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    base = rng.standard_normal((256, *feature_shape), np.float32).astype(np.float16)  # reused

    train = np.arange(n_images) < n_images - n_test
    names = [f"l{j}" for j in range(shape["seen"] + shape["unseen"])]

    def features() -> Iterator[np.ndarray]:
        for start in range(0, n_images, len(base)):
            yield base[: min(len(base), n_images - start)]

    def labels() -> Iterator[SparseLabels]:
        for start in range(0, n_images, BLOCK):
            yield _labels(rng, train[start : start + BLOCK], shape)

    write_store(
        path,
        features=features(),
        n_images=n_images,
        feature_shape=feature_shape,
        labels=labels(),
        image_ids=[f"images/{i:07d}.jpg" for i in range(n_images)],
        splits=np.where(train, "train", "test").tolist(),
        label_set=LabelSet.from_lists(names[: shape["seen"]], names[shape["seen"] :]),
        meta={"backbone": {"name": "synthetic"}},
    )
    return time.perf_counter() - started


def write_vectors(path: Path, n_labels: int) -> Path:
    """A GloVe-format text file of random vectors for the labels ``l0 .. l{n-1}``."""
    rng = np.random.default_rng(1)
    with path.open("w") as f:
        for j, row in enumerate(rng.normal(size=(n_labels, EMBED_DIM))):
            f.write(f"l{j} " + " ".join(f"{v:.4f}" for v in row) + "\n")
    return path


# ----------------------------------------------------------------------------- the child run


class _First:
    """The first ``steps`` batches of a loader (an epoch of Open Images is 26,000 steps)."""

    def __init__(self, loader: Any, steps: int) -> None:
        self.loader, self.steps = loader, steps

    def __len__(self) -> int:
        return min(self.steps, len(self.loader))

    def __iter__(self) -> Iterator[Any]:
        return islice(iter(self.loader), self.steps)


def _peak_rss_mb() -> float:
    """This process's peak RSS, from /proc (``VmHWM``). Not ``getrusage``'s ``ru_maxrss``: Linux
    carries it over ``execve``, so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise SystemExit("no VmHWM in /proc/self/status (Linux only)")


def child(store: Path, vectors: Path, out: Path, opts: dict) -> dict:
    """Train on ``store`` (one epoch, or ``opts["steps"]`` steps) and evaluate, in this process.

    ``opts``: model (a registered model with the weighted BCE, or ``config:NAME`` for a shipped
    config as it is), batch, steps (``None``: the whole of ``mlzsl train``: one epoch, evaluation,
    checkpoints), workers (DataLoader processes), threads.
    """
    import os

    import torch

    from mlzsl.config import load_config
    from mlzsl.training.engine import Trainer

    torch.set_num_threads(opts["threads"])
    base = _peak_rss_mb()
    overrides = [f"embedder=glove:{vectors}", "epochs=1", "warmup_epochs=0"]
    overrides += [f"batch_size={opts['batch']}", f"workers={opts['workers']}"]
    config = None
    if opts["model"].startswith("config:"):
        config = opts["model"].removeprefix("config:")
        os.environ.setdefault("MLZSL_NUS_VECTORS", "unused")  # the embedder is overridden
    else:  # weighted BCE: the ranking loss holds [B, L, L] pair tensors (13 GB at Open Images'
        # 7,186 seen labels and batch 64), which would measure the loss, not the data path
        overrides += [f"model={opts['model']}", "loss=bce"]
    trainer = Trainer(load_config(config, overrides), store, out, quiet=True)
    if opts["steps"] is None:
        result = trainer.fit(resume=False)  # `mlzsl train`: epoch, evaluation, checkpoints
        images, seconds, waited = len(trainer.train_rows), result.train_seconds, result.data_wait
    else:
        trainer.loader = _First(trainer.loader, opts["steps"])  # type: ignore[assignment]
        trainer.train_epoch(1)
        trainer.evaluate()
        images, seconds = opts["steps"] * opts["batch"], trainer.loop_seconds
        waited = trainer.data_seconds / seconds
    return {
        "images_per_s": images / seconds,
        "data_wait": waited,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_after_imports_mb": base,
    }


def run_child(store: Path, vectors: Path, work: Path, **opts: Any) -> dict:
    """:func:`child` in a fresh Python process; its result back."""
    args = [sys.executable, __file__, "--child", str(store), str(vectors), str(work / "run")]
    done = subprocess.run([*args, json.dumps(opts)], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    shutil.rmtree(work / "run", ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def _row(store: str, head: str, n: int, disk_gb: float, stats: dict) -> str:
    return (
        f"{store:<20} {head:<30} {n:>9,} {disk_gb:>8.2f} {stats['rss_after_imports_mb']:>8.0f} "
        f"{stats['peak_rss_mb']:>8.0f} {stats['images_per_s']:>8.1f} "
        f"{100 * stats['data_wait']:>7.1f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 20_000, 40_000])
    parser.add_argument("--oi-images", type=int, default=1_700_000, help="0 skips it")
    parser.add_argument("--oi-steps", type=int, default=300)
    parser.add_argument("--ml2p-steps", type=int, default=3, help="ml2p steps on the first size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        store, vectors, out, opts = args.child
        print(json.dumps(child(Path(store), Path(vectors), Path(out), json.loads(opts))))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="mlzsl_bench_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work).free / 2**30
    print(f"work folder {work}: {free:.0f} GB free; {args.threads} torch thread(s)")
    print(
        f"{'store':<20} {'head':<30} {'images':>9} {'disk GB':>8} {'base MB':>8} {'peak MB':>8} "
        f"{'img/s':>8} {'wait %':>7}"
    )
    run = {"threads": args.threads, "workers": 0}
    try:
        vectors = write_vectors(work / "nus.txt", NUS["seen"] + NUS["unseen"])
        for i, n in enumerate(args.sizes):
            path = work / f"nus_{n}.h5"
            build_store(path, n, NUS["test"], (512, 14, 14), NUS)
            gb = path.stat().st_size / 1e9
            heads = [("fast0tag", 64, None, 0), ("fast0tag", 64, None, 1)]
            if i == 0 and args.ml2p_steps:
                heads.append(("ml2p", 32, args.ml2p_steps, 0))  # P = 196
                heads.append(("config:nus_wide/ml2p", 96, args.ml2p_steps, 0))  # P = 49, ranking
            for model, batch, steps, workers in heads:
                opts = {**run, "model": model, "batch": batch, "steps": steps, "workers": workers}
                stats = run_child(path, vectors, work, **opts)
                what = f"{model.removeprefix('config:')} b{batch} "
                what += f"{steps} steps" if steps else "1 epoch"
                what += f" w{workers}" if workers else ""
                print(_row("512x14x14 fp16, NUS", what, n, gb, stats), flush=True)
            path.unlink()
        if args.oi_images:
            vectors = write_vectors(work / "oi.txt", OPEN_IMAGES["seen"] + OPEN_IMAGES["unseen"])
            path = work / "open_images.h5"
            built = build_store(path, args.oi_images, OI_TEST, (16, 1, 1), OPEN_IMAGES)
            opts = {**run, "model": "fast0tag", "batch": 64, "steps": args.oi_steps}
            stats = run_child(path, vectors, work, **opts)
            what = f"fast0tag b64 {args.oi_steps} steps"
            print(
                _row("16x1x1, Open Images", what, args.oi_images, path.stat().st_size / 1e9, stats)
            )
            with h5py.File(path) as f:
                nnz = len(f["labels/values"])
            print(
                f"  Open Images store written in {built:.0f} s; labels: {nnz:,} stored entries "
                f"({nnz / args.oi_images:.1f} per image), {5 * nnz / 1e9:.2f} GB vs "
                f"{args.oi_images * 7586 / 1e9:.1f} GB dense int8"
            )
            path.unlink()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
