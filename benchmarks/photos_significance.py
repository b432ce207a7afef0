"""How sure is a difference of mAP on a small test split? A bootstrap over the test photos.

Usage (from the repository root)::

    .venv/bin/python benchmarks/photos_significance.py RUN [DATA_DIR] [--resamples 1000]

RUN is the run folder of ``mlzsl train --data DATA_DIR`` (default DATA_DIR:
``../shared/data/coco_zsl_dev``); its ``scores.npz`` holds the best checkpoint's scores of the
test photos, those its metrics come from. The ready ``photo`` model tags the same test photos from
their files, as ``mlzsl eval --data`` does, and once more mirrored left to right (a change that
should not matter). The script prints the ZSL and GZSL mAP of each, then draws the test photos
with replacement ``--resamples`` times and prints the run − ``photo`` difference: its mean, 95 %
interval, and the share of draws that meet issue 20's targets (ZSL ≥ 0, GZSL ≥ 6).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mlzsl.config import load_config, packaged_config
from mlzsl.inference.tagger import Tagger
from mlzsl.metrics import mean_average_precision
from mlzsl.store.cache import folder_store
from mlzsl.store.feature_store import FeatureStore


def mirrored(files: list[Path], folder: Path) -> list[Path]:
    """Left–right mirrored copies of ``files`` in ``folder`` (upright first, as tagging reads)."""
    out = []
    for file in files:
        with Image.open(file) as img:
            flipped = ImageOps.mirror(ImageOps.exif_transpose(img).convert("RGB"))
        flipped.save(folder / file.name, quality=95)
        out.append(folder / file.name)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_zsl_dev"
    parser.add_argument("run", type=Path)
    parser.add_argument("data", type=Path, nargs="?", default=default)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("MLZSL_NO_PROGRESS", "1")
    config = load_config(packaged_config("photos", "ml2p"), [])
    store = FeatureStore(
        folder_store(args.data, backbone=str(config.backbone), image_size=config.image_size).path
    )
    saved = np.load(args.run / "scores.npz")
    truth, run = saved["targets"], saved["scores"]
    rows = store.indices("test")
    files = [args.data / store.image_ids[r] for r in rows]  # ids are paths in the folder
    names, unseen = list(store.label_set.names), store.label_set.unseen_idx
    tagger = Tagger.from_checkpoint("photo")
    photo = tagger.scores(files, names)
    with tempfile.TemporaryDirectory() as tmp:
        photo_mirrored = tagger.scores(mirrored(files, Path(tmp)), names)

    def maps(scores: np.ndarray, pick: np.ndarray) -> tuple[float, float]:
        y = truth[pick]
        zsl = mean_average_precision(y[:, unseen], scores[pick][:, unseen])
        return 100 * zsl, 100 * mean_average_precision(y, scores[pick])

    every = np.arange(len(rows))
    print(f"{len(rows)} test photos, {len(names)} labels ({len(unseen)} unseen)\n")
    print("| scores | ZSL mAP | GZSL mAP |\n|---|---|---|")
    for name, scores in (
        (f"the run ({args.run.name})", run),
        ("photo", photo),
        ("photo, photos mirrored", photo_mirrored),
    ):
        zsl, gzsl = maps(scores, every)
        print(f"| {name} | {zsl:.1f} | {gzsl:.1f} |")

    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(args.resamples):
        pick = rng.integers(0, len(rows), len(rows))
        (rz, rg), (pz, pg) = maps(run, pick), maps(photo, pick)
        diffs.append((rz - pz, rg - pg))
    d = np.array(diffs)
    print(f"\nrun − photo over {args.resamples} draws of the test photos (with replacement):\n")
    print("| | mean | 95 % interval | draws meeting the target |\n|---|---|---|---|")
    for k, (name, target) in enumerate((("ZSL mAP", 0.0), ("GZSL mAP", 6.0))):
        low, high = np.percentile(d[:, k], [2.5, 97.5])
        share = f"{float(np.mean(d[:, k] >= target)):.0%} (≥ {target:g})"
        print(f"| {name} | {d[:, k].mean():+.1f} | [{low:+.1f}, {high:+.1f}] | {share} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
