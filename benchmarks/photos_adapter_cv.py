"""Choose the seen-label adapter's C and weight by cross-validation on the training photos only.

Usage (from the repository root)::

    .venv/bin/python benchmarks/photos_adapter_cv.py [DATA_DIR] [--folds 5]
        [--cs 0.01 0.03 0.05 0.1 0.3 1] [--ratios 0.5 0.75 1 1.5]

DATA_DIR (default ``../shared/data/coco_zsl_dev``) is extracted as ``mlzsl train --data`` does
with the ``photos/`` recipe (the cached store is reused). Only its *training* photos are read:
they are cut into folds; for each fold the adapter (``mlzsl.training.transfer.fit_adapter``, the
code a run uses) is fitted on the other folds and scores the fold's photos. Each (C, r) is then
scored by the seen-label mAP over the training photos of

    z(teacher) + r · adapter,

z the ready ``photo`` model's scores standardised over the training photos, as the checkpoint
fuses them. A recipe's ``adapter_weight`` is r times its teacher's weight (``fusion_weight``
0.8). The test photos play no part in the choice.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from mlzsl.config import load_config, packaged_config
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.inference.evaluation import label_vectors, predict_scores
from mlzsl.inference.pretrained import real_photo_checkpoint
from mlzsl.metrics import mean_average_precision
from mlzsl.models._fusion import LabelAdapter
from mlzsl.store.cache import folder_store
from mlzsl.store.feature_store import FeatureStore
from mlzsl.training.transfer import adapter_folds, fit_adapter


def held_out_adapter(
    store: FeatureStore,
    rows: np.ndarray,
    seen: np.ndarray,
    vectors: torch.Tensor,
    c: float,
    folds: int,
) -> np.ndarray:
    """Standardised adapter scores [len(rows), S], each row from a fit that did not see it."""
    out = np.zeros((len(rows), len(seen)), np.float32)
    for fold, rest in adapter_folds(len(rows), folds, seed=0):
        adapter = LabelAdapter.from_tensors(fit_adapter(store, rows[rest], seen, vectors, c))
        with torch.no_grad():
            out[fold] = adapter.classify(torch.from_numpy(store.features(rows[fold]))).numpy()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_zsl_dev"
    parser.add_argument("data", type=Path, nargs="?", default=default)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cs", type=float, nargs="+", default=[0.01, 0.03, 0.05, 0.1, 0.3, 1.0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5])
    args = parser.parse_args()
    os.environ.setdefault("MLZSL_NO_PROGRESS", "1")
    config = load_config(packaged_config("photos", "ml2p"), [])
    store = FeatureStore(
        folder_store(args.data, backbone=str(config.backbone), image_size=config.image_size).path
    )
    seen, rows = store.label_set.seen_idx, store.indices("train")
    truth = store.labels(rows)[:, seen]
    photo = load_checkpoint(real_photo_checkpoint("photo"))
    vectors = label_vectors(photo.embedder, store.label_set, prompt=photo.label_prompt)
    teacher = predict_scores(photo.build_model(), store, rows, vectors[seen])
    teacher = (teacher - teacher.mean()) / teacher.std()

    print(f"{len(rows)} training photos, {len(seen)} seen labels, {args.folds} folds")
    print(f"teacher alone: seen mAP {100 * mean_average_precision(truth, teacher):.1f}\n")
    print("| C | adapter alone | " + " | ".join(f"r = {r:g}" for r in args.ratios) + " |")
    print("|---|---|" + "---|" * len(args.ratios))
    for c in args.cs:
        adapter = held_out_adapter(store, rows, seen, vectors[seen], c, args.folds)
        cells = [100 * mean_average_precision(truth, teacher + r * adapter) for r in args.ratios]
        alone = 100 * mean_average_precision(truth, adapter)
        print(f"| {c:g} | {alone:.1f} | " + " | ".join(f"{v:.1f}" for v in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
