"""The feature store: round trip, streaming reads by index, completeness marker."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from mlzsl.errors import DataError
from mlzsl.labels import LabelSet
from mlzsl.store.feature_store import FeatureStore, read_header, write_store


def _write(path: Path, n: int = 7, blocks: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(n, 4, 2, 3)).astype(np.float16)
    labels = rng.choice([-1, 0, 1], size=(n, 3)).astype(np.int8)
    write_store(
        path,
        features=iter(np.array_split(feats, blocks)),
        n_images=n,
        feature_shape=(4, 2, 3),
        labels=labels,
        image_ids=[f"img{i}.png" for i in range(n)],
        splits=["train" if i % 2 else "test" for i in range(n)],
        label_set=LabelSet.from_lists(["a", "b"], ["c"]),
        meta={"backbone": {"name": "toy", "weights": "random"}, "image_size": 32},
    )
    return feats, labels


def test_round_trip_and_reads_by_index(tmp_path: Path) -> None:
    feats, labels = _write(tmp_path / "s.h5")
    store = FeatureStore(tmp_path / "s.h5")
    assert len(store) == 7
    assert store.header.feature_shape == (4, 2, 3)
    assert store.label_set.unseen_names == ["c"]
    assert store.header.backbone == {"name": "toy", "weights": "random"}
    assert store.header.meta["image_size"] == 32
    assert "created" in store.header.meta and "mlzsl_version" in store.header.meta
    np.testing.assert_array_equal(store.features(3), feats[3].astype(np.float32))
    unsorted = [5, 0, 5, 2]  # unsorted and repeated indices come back in the order asked
    np.testing.assert_array_equal(store.features(unsorted), feats[unsorted].astype(np.float32))
    np.testing.assert_array_equal(store.labels(unsorted), labels[unsorted])
    np.testing.assert_array_equal(store.labels(), labels)
    np.testing.assert_array_equal(store.indices("test"), [0, 2, 4, 6])
    assert store.image_ids[1] == "img1.png"
    with pytest.raises(DataError, match="unknown split"):
        store.indices("val")


def test_features_chunked_one_image_per_chunk(tmp_path: Path) -> None:
    _write(tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["features"].chunks == (1, 4, 2, 3)
        assert f["features"].dtype == np.float16
        assert f["labels/values"].dtype == np.int8 and f["labels/indices"].dtype == np.int32
        assert f["labels/indptr"].shape == (8,) and f.attrs["format"] == "mlzsl-store-2"


def test_no_temporary_file_left_and_incomplete_store_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    _write(path)
    assert not (tmp_path / "s.h5.tmp").exists()
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(DataError, match="incomplete"):
        read_header(path)


def test_missing_and_foreign_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        FeatureStore(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="cannot read HDF5"):
        FeatureStore(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(DataError, match="not an mlzsl feature store"):
        FeatureStore(tmp_path / "other.h5")


def test_wrong_row_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="feature rows"):
        write_store(
            tmp_path / "s.h5",
            features=iter([np.zeros((2, 1, 1, 1))]),
            n_images=3,
            feature_shape=(1, 1, 1),
            labels=np.zeros((3, 1), np.int8),
            image_ids=["a", "b", "c"],
            splits=["train"] * 3,
            label_set=LabelSet.from_lists(["a"], []),
            meta={},
        )
    assert not (tmp_path / "s.h5").exists()
