"""`mlzsl train --data DIR`: a photo folder's features in a cached store, then training.

The cache (:mod:`mlzsl.store.cache`) is exercised on real extractions of tiny folders
(EfficientNet-Lite0 at 64 px): reuse, invalidation by the folder's files and the extraction
settings, a resumed half-done extraction and a foreign file at the store's path.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlzsl.cli import main
from mlzsl.errors import DataError
from mlzsl.store.cache import cached_store_path, folder_store, stores_home
from mlzsl.store.extract import extract_features
from mlzsl.store.feature_store import FeatureStore
from tests.conftest import make_image_folder

SMALL = {"backbone": "efficientnet_lite0", "image_size": 64, "workers": 0, "show_progress": False}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLZSL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _relabel_first_row(root: Path) -> None:
    """Change the labels of the first image in labels.csv (the images stay as they are)."""
    with (root / "labels.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    rows[1][2] = "red circle" if rows[1][2] != "red circle" else "blue square"
    with (root / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_cached_store_is_reused_then_invalidated(tmp_path: Path, cache: Path) -> None:
    root = make_image_folder(tmp_path / "data", 12, size=64)
    first = folder_store(root, **SMALL)
    assert not first.reused and first.path.parent == stores_home() == cache / "stores"
    assert FeatureStore(first.path).header.feature_shape == (1280, 2, 2)
    stamp = first.path.stat().st_mtime_ns
    again = folder_store(root, **SMALL)
    # nothing extracted: the same finished file, untouched, and no image processed
    assert again.reused and again.path == first.path and again.summary.n_processed == 0
    assert first.path.stat().st_mtime_ns == stamp

    other_size = folder_store(root, **{**SMALL, "image_size": 96})
    assert not other_size.reused and other_size.path != first.path
    assert FeatureStore(other_size.path).header.meta["image_size"] == 96

    _relabel_first_row(root)
    relabelled = folder_store(root, **SMALL)
    assert not relabelled.reused and relabelled.path not in (first.path, other_size.path)
    assert relabelled.summary.n_processed == 12
    assert folder_store(root, **SMALL).reused  # and the new one is reused in turn

    # an image replaced under the same name: the fingerprint names images, the key sees the file
    pixels = np.random.default_rng(5).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "images" / "img_0000.png")
    repainted = folder_store(root, **SMALL)
    assert not repainted.reused and repainted.path != relabelled.path

    (root / "dataset.json").write_text(json.dumps({"name": "my photos"}))
    described = folder_store(root, **SMALL)
    assert not described.reused and described.path != repainted.path
    assert FeatureStore(described.path).header.dataset.name == "my photos"  # type: ignore[union-attr]
    assert first.path.exists()  # older stores stay until the cache is cleaned by hand


def test_half_done_extraction_resumes_and_a_foreign_file_is_replaced(
    tmp_path: Path, cache: Path
) -> None:
    root = make_image_folder(tmp_path / "data", 12, size=64)
    path, identity = cached_store_path(
        root, backbone="efficientnet_lite0", image_size=64, batch_size=4
    )
    # half of the blocks, as a killed run leaves them: the parts journal, no store
    half = extract_features(
        root, path, image_size=64, workers=0, show_progress=False, batch_size=4, shard=(0, 2)
    )
    assert half.blocks_missing == 1 and not path.exists()
    resumed = folder_store(root, **SMALL, batch_size=4)
    assert resumed.path == path and not resumed.reused
    assert resumed.summary.blocks_reused == 2 and resumed.summary.n_processed == 4
    assert FeatureStore(path).header.meta["job"] == identity.fingerprint
    assert len(FeatureStore(path)) == 12

    # a file at the store's path that is not this job's finished store is never taken
    path.write_bytes(b"not a store")
    rebuilt = folder_store(root, **SMALL, batch_size=4)
    assert not rebuilt.reused and len(FeatureStore(rebuilt.path)) == 12


def test_train_data_end_to_end_then_resumes(tmp_path: Path, cache: Path, capsys) -> None:
    root = make_image_folder(tmp_path / "data", 24, size=64)
    run = tmp_path / "run"
    args = ["train", "--data", str(root), "--config", "scenes/fast0tag", "--out", str(run)]
    args += ["backbone=efficientnet_lite0", "image_size=64", "epochs=1", "--threads", "1"]
    assert main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert set(result) == {"zsl", "gzsl", "best_epoch", "seconds", "out", "test_set"}
    assert 0 <= result["zsl"]["mAP"] <= 100 and result["best_epoch"] == 1
    assert (run / "best.pt").is_file() and (run / "metrics.json").is_file()
    (store,) = (cache / "stores").glob("*.h5")
    assert f"features: {store} (extracted" in captured.err
    stamp = store.stat().st_mtime_ns

    # the same command again: the store is reused and the finished run resumed, not redone
    assert main(args) == 0
    captured = capsys.readouterr()
    assert f"features: {store} (cached)" in captured.err
    assert "fast0tag" in captured.out and "best epoch 1" in captured.out
    assert store.stat().st_mtime_ns == stamp and len(list((cache / "stores").glob("*.h5"))) == 1


def test_bad_data_is_one_line_exit_2(tmp_path: Path, cache: Path, capsys) -> None:
    run = ["--model", "fast0tag", "--out", str(tmp_path / "run")]
    assert main(["train", "--data", str(tmp_path / "nowhere"), *run]) == 2
    err = capsys.readouterr().err
    assert "no such data folder" in err and len(err.strip().splitlines()) == 1

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "vocabulary.csv").write_text("label,split\ndog,seen\ncat,sideways\n")
    (broken / "labels.csv").write_text("image,split,labels\n")
    assert main(["train", "--data", str(broken), *run]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlzsl train: error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists() and not (cache / "stores").exists()

    with pytest.raises(SystemExit) as exit_info:  # one source, not both
        main(["train", "--data", str(broken), "--store", "x.h5", *run])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *run])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--store --data is required" in err


def test_folder_store_errors_name_the_folder(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(DataError, match="no such data folder"):
        folder_store(tmp_path / "missing", **SMALL)
