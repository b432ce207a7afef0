"""Peak RSS of ``mlzsl data verify`` and ``mlzsl extract`` on Open-Images-shaped folders (issue 23).

    python benchmarks/openimages_memory.py [--sizes 50000 200000 800000] [--files 2000]

For each N, builds in a temporary folder a data folder shaped like Open Images: a vocabulary of
7,586 labels (7,186 seen + 400 unseen), a ``labels.csv`` with the ``negatives`` column, ~7 % test
rows, and per row Poisson(5) positives and Poisson(3) verified negatives drawn from a skewed
label popularity. Every row names its own image (``labels.csv`` refuses a path listed twice), but
only the first ``--files`` rows have a file (distinct small noise JPEGs of ~5 KB); the other rows'
files are missing. So both commands go through all N rows (parsing, targets, fingerprint,
per-row checks, manifest, skip report) at the cost of N stats or failed opens rather than N
decodes, and each label row is parsed and kept in memory; extraction then writes the label rows
of the ``--files`` rows that decode into the store (its label writer densifies 4,096 rows at a
time whatever N, see ``mlzsl.store.extract._label_blocks``).

Each command runs in a fresh process under ``/usr/bin/time -f %M`` (the peak RSS of that process
alone), in this order:

- ``mlzsl extract DIR --out S.h5 --backbone pixels --image-size 32 --batch-size 4096
  --workers 0``: the identity backbone at its smallest size, so the forward costs nothing;
  ``--workers 0`` decodes in the measured process (DataLoader workers would be other processes);
- ``mlzsl data verify DIR --workers 2``: hashes and decodes the existing files, stats the rest.

The table compares each peak with the dense targets matrix N × 7,586 bytes that the reader used
to allocate before either command did any work.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SEEN, UNSEEN = 7186, 400  # Open Images v6 as the ZSL papers split it
POSITIVES, NEGATIVES = 5.0, 3.0  # mean listed and verified-absent labels per image
TEST_EVERY = 14  # one row in 14 is a test row (~7 %, as 125,436 of 1.74 M)
BLOCK = 50_000  # rows generated and written at a time
IMAGE_SIDE = 48  # noise JPEGs of this side are ~5 KB: above verify's 4,000-byte cut-off


def label_names() -> list[str]:
    """The 7,586 label names, seen first."""
    return [f"Label {j:04d}" for j in range(SEEN + UNSEEN)]


def noise_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """``n`` distinct small JPEGs of random noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pixels = rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _row_labels(rng: np.random.Generator, n: int, mean: float, exclude: list[set[int]]) -> list:
    """Per row a set of distinct columns, Poisson(``mean``) many, skewed towards low columns,
    none in ``exclude[row]``."""
    width = SEEN + UNSEEN
    counts = rng.poisson(mean, n)
    columns = (width * rng.random(int(counts.sum())) ** 2).astype(np.int64)  # popular labels
    out, at = [], 0
    for row, k in enumerate(counts):
        out.append(set(columns[at : at + k].tolist()) - exclude[row])
        at += k
    return out


def build_folder(root: Path, n_rows: int, jpegs: list[bytes], seed: int = 0) -> None:
    """An Open-Images-shaped data folder of ``n_rows`` rows (see the module docstring)."""
    names = label_names()
    root.mkdir(parents=True)
    with (root / "vocabulary.csv").open("w", encoding="utf-8") as f:
        f.write("label,split\n")
        f.writelines(f"{name},{'seen' if j < SEEN else 'unseen'}\n" for j, name in enumerate(names))
    rng = np.random.default_rng(seed)
    with (root / "labels.csv").open("w", encoding="utf-8") as f:
        f.write("image,split,labels,negatives\n")
        for start in range(0, n_rows, BLOCK):
            n = min(BLOCK, n_rows - start)
            positives = _row_labels(rng, n, POSITIVES, [set()] * n)
            negatives = _row_labels(rng, n, NEGATIVES, positives)
            lines = []
            for i, pos, neg in zip(range(start, start + n), positives, negatives, strict=True):
                split = "test" if i % TEST_EVERY == 0 else "train"
                listed = "|".join(names[c] for c in sorted(pos))
                absent = "|".join(names[c] for c in sorted(neg))
                lines.append(f"images/{split}/{i:016x}.jpg,{split},{listed},{absent}\n")
            f.writelines(lines)
    for split in ("train", "test"):
        (root / "images" / split).mkdir(parents=True)
    for i, data in enumerate(jpegs[:n_rows]):
        split = "test" if i % TEST_EVERY == 0 else "train"
        (root / "images" / split / f"{i:016x}.jpg").write_bytes(data)


def peak_rss_mb(args: list[str], log: Path) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of ``python -m mlzsl ARGS`` in a fresh process."""
    report = log.with_suffix(".time")
    command = ["/usr/bin/time", "-f", "%M", "-o", str(report), sys.executable, "-m", "mlzsl"]
    env = {**os.environ, "MLZSL_NO_PROGRESS": "1"}
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(
            command + args, stdout=out, stderr=subprocess.STDOUT, env=env, check=False
        )
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"mlzsl {' '.join(args)} failed ({done.returncode}):\n{log.read_text()}")
    return int(report.read_text().split()[-1]) / 1024, seconds  # kB


def main() -> None:
    """Build each folder, measure both commands, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000, 800_000])
    parser.add_argument("--files", type=int, default=2000, help="rows whose image file exists")
    parser.add_argument("--work", type=Path, default=None, help="where folders are built")
    args = parser.parse_args()
    jpegs = noise_jpegs(args.files)
    work = Path(tempfile.mkdtemp(prefix="oi_memory_", dir=args.work))
    header = (
        f"{'N':>9}  {'dense N×L':>10}  {'verify peak':>11}  {'verify s':>8}  "
        f"{'extract peak':>12}  {'extract s':>9}  {'build s':>7}"
    )
    print(header, flush=True)
    try:
        for n in args.sizes:
            root, store = work / f"oi_{n}", work / f"oi_{n}.h5"
            started = time.perf_counter()
            build_folder(root, n, jpegs)
            built = time.perf_counter() - started
            extract = [str(root), "--out", str(store), "--backbone", "pixels"]
            extract += ["--image-size", "32", "--batch-size", "4096", "--workers", "0"]
            extract_mb, extract_s = peak_rss_mb(["extract", *extract], work / "extract.log")
            verify = ["data", "verify", str(root), "--workers", "2"]
            verify_mb, verify_s = peak_rss_mb(verify, work / "verify.log")
            dense_mb = n * (SEEN + UNSEEN) / 2**20
            print(
                f"{n:>9,}  {dense_mb:>7,.0f} MB  {verify_mb:>8,.0f} MB  {verify_s:>8.1f}  "
                f"{extract_mb:>9,.0f} MB  {extract_s:>9.1f}  {built:>7.1f}",
                flush=True,
            )
            shutil.rmtree(root)
            for leftover in work.glob(f"oi_{n}.h5*"):
                leftover.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
