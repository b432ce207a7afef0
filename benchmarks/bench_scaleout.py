"""Scale-out on one machine: 2 processes × 1 thread against 1 process × 2 threads.

    python benchmarks/bench_scaleout.py [--extract 512] [--workers 1] [--train 2048] [--rounds 2]

In one run, on data the package makes itself:

* extraction (``mlzsl extract``, EfficientNet-Lite0) of a generated scenes folder: one process
  with ``--threads 2`` against two ``--shard I/2`` processes started together with
  ``--threads 1`` each, and against ``torchrun --nproc_per_node 2`` (each rank one shard,
  ``--threads 1``). Throughput is images over the wall time of the whole command(s), process
  start and store assembly included; the three stores must hold identical features.
* training (``mlzsl train --model ml2p``, the same global batch) on a store written with
  ``write_store``: random 1280×5×5 maps (EfficientNet-Lite0's at 160 px), the scenes
  vocabulary, 2,048 train rows by default. One process with ``--threads 2`` against
  ``torchrun --nproc_per_node 2`` (gloo, DistributedDataParallel) with ``--threads 1`` per rank,
  and one process with ``--threads 1`` as the single-core reference. Throughput is train images
  per second of the epochs after the first (``history.csv``; the only evaluation is after the
  last epoch, which is left out).

On a 2-core machine 2 × 1 thread against 1 × 2 threads is the fair comparison: the same cores,
split between processes or between threads. Every figure is measured in the same run.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from mlzsl.datasets.scenes import generate_scenes
from mlzsl.datasets.userdata import read_user_dataset
from mlzsl.store.feature_store import FeatureStore, write_store

MLZSL = [sys.executable, "-m", "mlzsl"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "MLZSL_NO_PROGRESS": "1", "OMP_NUM_THREADS": str(threads)}


def _timed(commands: list[list[str]], threads: int) -> float:
    """Start ``commands`` together; wall seconds until the last one exits (each must succeed)."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, env=_env(threads), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for cmd in commands
    ]
    outputs = [proc.communicate() for proc in procs]
    seconds = time.perf_counter() - start
    for cmd, proc, (_, err) in zip(commands, procs, outputs, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err.decode()[-2000:]}")
    return seconds


# ----------------------------------------------------------------------------- extraction


def extraction(data: Path, out: Path, args: argparse.Namespace, tag: str) -> dict[str, float]:
    """Images/s of the three ways to extract ``data``; checks that their stores agree."""
    n = len(read_user_dataset(data))
    common = ["--image-size", str(args.size), "--workers", str(args.workers)]

    def cmd(store: str, threads: int, *extra: str) -> list[str]:
        store_path = str(out / f"{store}{tag}.h5")
        return [
            "extract",
            str(data),
            "--out",
            store_path,
            *common,
            "--threads",
            str(threads),
            *extra,
        ]

    speeds = {
        "1 process × 2 threads": n / _timed([MLZSL + cmd("one", 2)], 2),
        "2 shards × 1 thread": n
        / _timed([MLZSL + cmd("shards", 1, "--shard", f"{i}/2") for i in range(2)], 1),
        "torchrun 2 ranks × 1 thread": n
        / _timed([TORCHRUN + ["2", "-m", "mlzsl", *cmd("ddp", 1)]], 1),
    }
    reference = FeatureStore(out / f"one{tag}.h5").features(np.arange(n))
    for name in ("shards", "ddp"):
        if not np.array_equal(
            reference, FeatureStore(out / f"{name}{tag}.h5").features(np.arange(n))
        ):
            raise SystemExit(f"{name}{tag}.h5: features differ from the one-process store")
    return speeds


# ----------------------------------------------------------------------------- training


def synthetic_store(path: Path, data: Path, args: argparse.Namespace) -> None:
    """``args.train`` + 64 test rows of random post-ReLU maps, labels ±1, ``data``'s vocabulary."""
    label_set = read_user_dataset(data).label_set
    shape = args.shape
    n, rng = args.train + 64, np.random.default_rng(0)

    def blocks() -> Iterator[np.ndarray]:
        for start in range(0, n, 256):
            yield np.maximum(rng.standard_normal((min(256, n - start), *shape)), 0)

    write_store(
        path,
        features=blocks(),
        n_images=n,
        feature_shape=shape,
        labels=rng.choice(np.asarray([-1, 1], np.int8), size=(n, len(label_set)), p=[0.8, 0.2]),
        image_ids=[f"{i}.png" for i in range(n)],
        splits=["train"] * args.train + ["test"] * 64,
        label_set=label_set,
        meta={"backbone": {"name": "synthetic"}},
    )


def _train_speed(run: Path, n_train: int) -> float:
    """Train images/s over epochs 2..E-1 of a run (epoch 1 warms up, epoch E evaluates)."""
    with (run / "history.csv").open() as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)][1:-1]
    return n_train * len(seconds) / sum(seconds)


def training(store: Path, out: Path, args: argparse.Namespace, tag: str) -> dict[str, float]:
    """Train images/s on ``store``: one process (2 threads), two ranks, one process (1 thread)."""
    settings = [
        f"epochs={args.epochs}",
        f"eval_every={args.epochs}",
        f"batch_size={args.batch_size}",
    ]

    def speed(name: str, launcher: list[str], threads: int) -> float:
        run = out / f"{name}{tag}"
        train = ["train", "--store", str(store), "--model", args.model, "--out", str(run)]
        _timed([[*launcher, *train, "--threads", str(threads), "--json", *settings]], threads)
        return _train_speed(run, args.train)

    return {
        "1 process × 2 threads": speed("one_2t", MLZSL, 2),
        "torchrun 2 ranks × 1 thread": speed("ddp", TORCHRUN + ["2", "-m", "mlzsl"], 1),
        "1 process × 1 thread": speed("one_1t", MLZSL, 1),
    }


# ----------------------------------------------------------------------------- report


def _rounds(measure: Callable[[str], dict[str, float]], rounds: int) -> dict[str, list[float]]:
    """Every configuration measured once per round, in turn, so slow spells hit all of them."""
    runs = [measure(f"_{r}") for r in range(rounds)]
    return {name: [run[name] for run in runs] for name in runs[0]}


def _table(title: str, speeds: dict[str, list[float]]) -> None:
    """Best of the rounds (a shared machine only ever slows a run down), ratio to the first."""
    print(title)
    base = max(next(iter(speeds.values())))
    for name, values in speeds.items():
        rounds = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {name:28s} {max(values):8.1f} img/s  ×{max(values) / base:.2f}   ({rounds})")


def _shape(text: str) -> tuple[int, int, int]:
    c, h, w = (int(v) for v in text.lower().split("x"))
    return c, h, w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extract", type=int, default=512, help="images to extract")
    parser.add_argument("--size", type=int, default=160, help="image side in px")
    parser.add_argument("--workers", type=int, default=1, help="decode workers per process")
    parser.add_argument("--train", type=int, default=2048, help="train rows of the store")
    parser.add_argument("--shape", type=_shape, default=(1280, 5, 5), help="feature map CxHxW")
    parser.add_argument("--model", default="ml2p")
    parser.add_argument("--epochs", type=int, default=4, help="≥ 3: the first and last not timed")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch")
    parser.add_argument("--rounds", type=int, default=2, help="each configuration this often")
    args = parser.parse_args()
    if args.epochs < 3:
        parser.error("--epochs must be at least 3")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "scenes"
        half = args.extract // 2
        generate_scenes(
            data, n_train=half, n_test=args.extract - half, size=args.size, show_progress=False
        )
        load = os.getloadavg()[0]
        print(
            f"{os.cpu_count()} CPUs, load average {load:.1f}; best of {args.rounds} rounds (each)"
        )
        _table(
            f"mlzsl extract: {args.extract} scenes images at {args.size} px, EfficientNet-Lite0, "
            f"batch 32, {args.workers} decode worker(s) per process",
            _rounds(lambda tag: extraction(data, root, args, tag), args.rounds),
        )
        synthetic_store(root / "train.h5", data, args)
        c, h, w = args.shape
        _table(
            f"mlzsl train: {args.model}, {args.train} train rows of {c}×{h}×{w}, global batch "
            f"{args.batch_size}, epochs 2..{args.epochs - 1} timed",
            _rounds(lambda tag: training(root / "train.h5", root, args, tag), args.rounds),
        )
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
