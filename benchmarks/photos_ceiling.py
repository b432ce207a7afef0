"""How far can training on a few hundred photos lift the seen labels above the ready model?

Usage (from the repository root)::

    .venv/bin/python benchmarks/photos_ceiling.py [DATA_DIR]

DATA_DIR (default ``../shared/data/coco_zsl_dev``) is extracted as ``mlzsl train --data`` does
with the ``photos/`` recipe (EfficientNet-Lite2, 384 px; the cached store is reused). On its test
photos the script prints, per label group, the mAP of

- the ready ``photo`` model (the teacher) on the store's maps,
- a per-label logistic-regression probe on the pooled maps, trained on the training photos' seen
  labels (scikit-learn, C = 1: the plainest supervised head, free to fit each label on its own),
- the probe fused with the teacher at several weights, as ``ScoreFusion`` fuses a head,

and the GZSL mAP each would give with the teacher's unseen labels. The best fused seen mAP bounds
what a head trained on these photos adds through fusion; mAP is per label (AP over the test
photos, 0 for a label with no positive, as ``mlzsl eval`` counts it), so GZSL mAP is the
label-weighted mean of the seen and unseen groups.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from mlzsl.config import load_config, packaged_config
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.inference.evaluation import label_vectors, predict_scores
from mlzsl.inference.pretrained import real_photo_checkpoint
from mlzsl.store.cache import folder_store
from mlzsl.store.feature_store import FeatureStore


def label_map(truth: np.ndarray, scores: np.ndarray) -> float:
    """Mean over columns of AP (0 for a column with no positive), percent."""
    aps = [
        average_precision_score(truth[:, j], scores[:, j]) if truth[:, j].any() else 0.0
        for j in range(truth.shape[1])
    ]
    return 100 * float(np.mean(aps))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_zsl_dev"
    parser.add_argument("data", type=Path, nargs="?", default=default)
    args = parser.parse_args()
    os.environ.setdefault("MLZSL_NO_PROGRESS", "1")
    config = load_config(packaged_config("photos", "ml2p"), [])
    store = FeatureStore(
        folder_store(args.data, backbone=str(config.backbone), image_size=config.image_size).path
    )
    names = store.label_set
    seen, unseen = names.seen_idx, names.unseen_idx
    train, test = store.indices("train"), store.indices("test")
    truth_train, truth = store.labels(train) > 0, store.labels(test) > 0

    photo = load_checkpoint(real_photo_checkpoint("photo"))
    vectors = label_vectors(photo.embedder, names, prompt=photo.label_prompt)
    teacher = photo.build_model()
    t_train = predict_scores(teacher, store, train, vectors)[:, seen]
    t_test = predict_scores(teacher, store, test, vectors)

    pooled_train = store.features(train).mean(axis=(2, 3))  # [N, C]
    pooled_test = store.features(test).mean(axis=(2, 3))
    probe = np.zeros((len(test), len(seen)), np.float32)
    for k, j in enumerate(seen):
        clf = LogisticRegression(C=1.0, max_iter=2000).fit(pooled_train, truth_train[:, j])
        probe[:, k] = clf.decision_function(pooled_test)

    unseen_map = label_map(truth[:, unseen], t_test[:, unseen])
    rows = [("photo (teacher)", label_map(truth[:, seen], t_test[:, seen]))]
    rows.append(("logistic probe (seen labels)", label_map(truth[:, seen], probe)))
    z_teacher = (t_test[:, seen] - t_train.mean()) / t_train.std()
    z_probe = (probe - probe.mean()) / probe.std()
    for w in (0.3, 0.5, 0.7, 0.8):
        fused = (1 - w) * z_probe + w * z_teacher
        rows.append((f"probe fused with photo, w = {w}", label_map(truth[:, seen], fused)))
    n_seen, n_unseen = len(seen), len(unseen)
    print(f"unseen labels ({n_unseen}): photo on the store's maps {unseen_map:.1f} mAP\n")
    print(f"| seen-label scores ({n_seen} labels) | seen mAP | GZSL mAP with photo's unseen |")
    print("|---|---|---|")
    for name, value in rows:
        gzsl = (n_seen * value + n_unseen * unseen_map) / (n_seen + n_unseen)
        print(f"| {name} | {value:.1f} | {gzsl:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
