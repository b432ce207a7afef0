"""Shared fixtures: small image folders in the user data format, the shared data folder."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlzsl.labels import LabelSet

# ../shared/data beside the repository (present on developer machines and in CI)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # 2 shared cores: one thread is faster and steadier


def make_image_folder(root: Path, n_images: int, *, size: int = 48, seed: int = 0) -> Path:
    """Write ``n_images`` random PNGs and a 6-label vocabulary (2 unseen) in the user format."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    labels = ["red circle", "blue square", "green star", "red square", "blue star", "green circle"]
    with (root / "vocabulary.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "split"])
        for i, name in enumerate(labels):
            w.writerow([name, "unseen" if i >= 4 else "seen"])
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "split", "labels"])
        for i in range(n_images):
            name = f"images/img_{i:04d}.png"
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name)
            chosen = rng.choice(len(labels), size=rng.integers(1, 3), replace=False)
            split = "test" if i % 3 == 0 else "train"
            w.writerow([name, split, "|".join(labels[j] for j in sorted(chosen))])
    return root


def dense_reference(root: Path, rows: np.ndarray | None = None) -> np.ndarray:
    """Targets of ``rows`` (default: all) as the reader built them when they were dense (int8
    [n, L]), from the CSVs: fill, then negatives -1, then listed +1, then every unseen column of
    a train row 0."""
    label_set = LabelSet.from_csv(root / "vocabulary.csv")
    with (root / "labels.csv").open(newline="", encoding="utf-8") as f:
        lines = list(csv.DictReader(f))
    chosen = [lines[i] for i in (range(len(lines)) if rows is None else rows)]
    negatives = "negatives" in lines[0]
    targets = np.full((len(chosen), len(label_set)), 0 if negatives else -1, dtype=np.int8)
    for i, row in enumerate(chosen):
        for column, value in (("negatives", -1), ("labels", 1)):
            for name in (row.get(column) or "").split("|"):
                if name.strip():
                    targets[i, label_set.index(name.strip())] = value
    train = np.asarray([row["split"].strip().lower() == "train" for row in chosen])
    targets[np.ix_(train, label_set.unseen_idx)] = 0
    return targets


def write_tall_folder(root: Path, n_rows: int, n_labels: int, *, seed: int = 0) -> Path:
    """A folder of ``n_rows`` rows over ``n_labels`` labels (the last tenth unseen), with no image.

    Shaped like Open Images: a ``negatives`` column, one row in 14 a test row, per row 0-9 listed
    labels and 0-5 verified negatives (disjoint). For tests that the targets of a tall folder are
    never dense: N·L bytes would be far more than anything else the folder costs.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    n_seen = n_labels - n_labels // 10
    with (root / "vocabulary.csv").open("w") as f:
        f.write("label,split\n")
        f.writelines(f"l{j},{'seen' if j < n_seen else 'unseen'}\n" for j in range(n_labels))
    picks = rng.integers(0, n_labels, size=(n_rows, 14))  # [N, 14] columns, first 9 listed
    n_listed, n_absent = rng.integers(0, 10, n_rows), rng.integers(0, 6, n_rows)
    lines = ["image,split,labels,negatives\n"]
    for i, (row, k, m) in enumerate(zip(picks.tolist(), n_listed, n_absent, strict=True)):
        listed = set(row[:k])
        absent = [c for c in row[9 : 9 + m] if c not in listed]
        split = "test" if i % 14 == 0 else "train"
        lines.append(
            f"i/{i}.jpg,{split},{'|'.join(f'l{c}' for c in listed)},"
            f"{'|'.join(f'l{c}' for c in absent)}\n"
        )
    (root / "labels.csv").write_text("".join(lines))
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A folder of 24 small random images in the user data format."""
    return make_image_folder(tmp_path / "data", 24)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feature store of 36 random images (EfficientNet-Lite0 at 64 px: 1280×2×2 maps)."""
    from mlzsl.store.extract import extract_features

    root = make_image_folder(tmp_path_factory.mktemp("tiny") / "data", 36, size=64)
    torch.set_num_threads(1)
    out = root.parent / "tiny.h5"
    extract_features(root, out, image_size=64, workers=0, show_progress=False)
    return out


def train_tiny_run(root: Path, *, epochs: int) -> dict[str, Path]:
    """Scenes data (48 train / 24 test at 64 px), its store and a fast0tag run, all through the
    CLI: ``{"root", "data", "store", "run", "ckpt"}``."""
    from mlzsl.cli import main

    data, store, run = root / "scenes", root / "s.h5", root / "run"
    assert main(["data", "scenes", "--out", str(data), "--train", "48", "--test", "24"]) == 0
    assert main(["extract", str(data), "--out", str(store), "--workers", "0"]) == 0
    args = ["train", "--store", str(store), "--model", "fast0tag", "--out", str(run)]
    assert main([*args, f"epochs={epochs}", "batch_size=16", "--json"]) == 0
    return {"root": root, "data": data, "store": store, "run": run, "ckpt": run / "best.pt"}


def assert_same_store_content(a: Path, b: Path) -> None:
    """Two stores hold identical per-image arrays (features, CSR labels, ids, splits)."""
    import h5py

    from mlzsl.store.feature_store import IMAGE_DATASETS

    with h5py.File(a) as fa, h5py.File(b) as fb:
        for key in IMAGE_DATASETS:
            np.testing.assert_array_equal(fa[key][()], fb[key][()], err_msg=key)


TINY_VOCABULARY = [
    "red circle",
    "blue square",
    "green star",
    "red square",
    "blue star",
    "green ring",
]


def save_tiny_fast0tag(path: Path, **fields: object) -> Path:
    """An untrained fast0tag checkpoint over EfficientNet-Lite0 at 64 px, GloVe-50 labels
    (:data:`TINY_VOCABULARY`, 4 seen); ``fields`` replace :class:`Checkpoint` fields."""
    from mlzsl.backbones import create_backbone
    from mlzsl.inference.checkpoint import Checkpoint, Preprocess, Vocabulary, save_checkpoint
    from mlzsl.models import create_model

    torch.manual_seed(0)
    backbone = create_backbone("efficientnet_lite0", image_size=64)
    model = create_model("fast0tag", in_channels=backbone.spec.channels, embed_dim=50)
    spec = backbone.spec
    ckpt = Checkpoint(
        model="fast0tag",
        model_args=dict(model.config),
        embedder="glove50",
        vocabulary=Vocabulary(tuple(TINY_VOCABULARY), (True,) * 4 + (False,) * 2),
        backbone=backbone.identity(),
        preprocess=Preprocess(64, "squash", spec.mean, spec.std),
        state_dict=model.state_dict(),
        config={"model": "fast0tag", "epochs": 1},
        epoch=1,
    )
    return save_checkpoint(path, dataclasses.replace(ckpt, **fields))  # type: ignore[arg-type]


def write_raw_checkpoint(path: Path, payload: dict[str, object]) -> Path:
    """``payload`` as a checkpoint file of format ``mlzsl-checkpoint-1``, as it stands: what an
    older mlzsl (or a damaged writer) left, for the reader's upgrade and error paths."""
    from mlzsl.inference.checkpoint import FORMAT

    torch.save({"format": FORMAT, **payload}, path)
    return path
