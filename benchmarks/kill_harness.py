"""Kill ``mlzsl extract`` and ``mlzsl train`` at random moments; resumed results must be identical.

    python benchmarks/kill_harness.py [--trials 10] [--seed 0] [--images 96] [--epochs 6]

One uninterrupted run of each command is the reference. Each trial starts the same command,
SIGKILLs it after a random delay drawn uniformly over the reference's wall time (process start
included, so some kills land during start-up, some mid-block or mid-epoch, some during the final
write), then reruns the command to completion and compares:

- extract: the store's features, labels, image order, splits and vocabulary, array for array;
- train: the metrics JSON, ``history.csv`` (without its seconds column) and the weights of
  ``best.pt`` and ``last.pt``, tensor for tensor.

A trial whose command finished before the kill still counts (and is reported as such). Exit status
0 when every trial matched, 1 otherwise. ``tests/test_kill_harness.py`` runs it with few trials.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from mlzsl.store.feature_store import IMAGE_DATASETS

ENV = {**os.environ, "MLZSL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
STORE_DATASETS = (*IMAGE_DATASETS, "vocabulary/names", "vocabulary/seen")


@dataclass
class Tally:
    """Trials of one command: how many matched, and how many were killed before finishing."""

    name: str
    trials: int = 0
    matched: int = 0
    killed: int = 0

    def line(self) -> str:
        finished = self.trials - self.killed
        return (
            f"{self.name}: {self.matched}/{self.trials} resumed results identical to the "
            f"uninterrupted run ({self.killed} killed mid-run, {finished} finished before the kill)"
        )


def _mlzsl(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlzsl", *args]


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def _kill_then_resume(cmd: list[str], delay: float) -> bool:
    """Start ``cmd``, SIGKILL it after ``delay`` s, then run it to completion; True if killed."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = True
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"resumed run failed: {done.stderr.strip()[-500:]}")
    return killed


# ----------------------------------------------------------------------------- extract


def _extract_cmd(data: Path, out: Path) -> list[str]:
    return _mlzsl(
        "extract", str(data), "--out", str(out), "--workers", "0", "--batch-size", "8",
        "--image-size", "64", "--threads", "1",
    )  # fmt: skip


def _same_store(a: Path, b: Path) -> bool:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        return all(np.array_equal(fa[k][:], fb[k][:]) for k in STORE_DATASETS)


def run_extract(work: Path, data: Path, trials: int, rng: random.Random) -> Tally:
    reference = work / "reference.h5"
    seconds = _timed(_extract_cmd(data, reference))
    tally = Tally("extract")
    for i in range(trials):
        out = work / f"extract_{i}.h5"
        killed = _kill_then_resume(_extract_cmd(data, out), rng.uniform(0.05, 1.0) * seconds)
        tally.trials += 1
        tally.killed += killed
        tally.matched += _same_store(reference, out)
    return tally


# ----------------------------------------------------------------------------- train


def _train_cmd(store: Path, out: Path, epochs: int) -> list[str]:
    return _mlzsl(
        "train", "--store", str(store), "--out", str(out), "--model", "fast0tag",
        "--threads", "1", "--json", f"epochs={epochs}", "batch_size=8", "lr=0.01",
        "model_args.dropout=0.2",
    )  # fmt: skip


def _history(run: Path) -> list[str]:
    rows = (run / "history.csv").read_text().splitlines()
    return [row.rsplit(",", 1)[0] for row in rows]  # the seconds column differs by design


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _same_run(a: Path, b: Path) -> bool:
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (a, b)]
    if metrics[0] != metrics[1] or _history(a) != _history(b):
        return False
    for name in ("best.pt", "last.pt"):
        wa, wb = _weights(a / name), _weights(b / name)
        if wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa):
            return False
    return True


def run_train(work: Path, store: Path, trials: int, epochs: int, rng: random.Random) -> Tally:
    reference = work / "reference_run"
    seconds = _timed(_train_cmd(store, reference, epochs))
    tally = Tally("train")
    for i in range(trials):
        out = work / f"train_{i}"
        killed = _kill_then_resume(_train_cmd(store, out, epochs), rng.uniform(0.05, 1.0) * seconds)
        tally.trials += 1
        tally.killed += killed
        tally.matched += _same_run(reference, out)
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="kills per command")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--images", type=int, default=96, help="scenes images (2/3 train)")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs")
    parser.add_argument("--work", type=Path, default=None, help="keep the files here")
    args = parser.parse_args(argv)
    from mlzsl.datasets.scenes import generate_scenes

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "scenes"
        n_test = args.images // 3
        generate_scenes(
            data, n_train=args.images - n_test, n_test=n_test, size=64, show_progress=False
        )
        extract = run_extract(work, data, args.trials, rng)
        print(extract.line(), flush=True)
        train = run_train(work, work / "reference.h5", args.trials, args.epochs, rng)
        print(train.line(), flush=True)
    ok = extract.matched == extract.trials and train.matched == train.trials
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
