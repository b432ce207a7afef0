"""Labels as CSR: the encoding, the store layout, old dense stores, training on both."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from mlzsl.config import load_config
from mlzsl.errors import DataError
from mlzsl.labels import LabelSet
from mlzsl.store.feature_store import FeatureStore, write_store
from mlzsl.store.sparse_labels import SparseLabels, label_blocks, most_common_value
from mlzsl.training.engine import fit


def _labels(n: int, width: int, *, fill: int, seed: int = 0) -> np.ndarray:
    """int8 [n, width]: mostly ``fill``, a few entries of each other annotation state."""
    rng = np.random.default_rng(seed)
    dense = np.full((n, width), fill, dtype=np.int8)
    mask = rng.random((n, width)) < 0.2
    dense[mask] = rng.choice([v for v in (-1, 0, 1) if v != fill], size=int(mask.sum()))
    return dense


def _write(path: Path, labels: object, n: int, width: int) -> Path:
    rng = np.random.default_rng(1)
    return write_store(
        path,
        features=iter([rng.normal(size=(n, 2, 1, 1))]),
        n_images=n,
        feature_shape=(2, 1, 1),
        labels=labels,  # type: ignore[arg-type]
        image_ids=[f"img{i}.png" for i in range(n)],
        splits=["train" if i % 3 else "test" for i in range(n)],
        label_set=LabelSet.from_lists([f"s{j}" for j in range(width - 2)], ["u0", "u1"]),
        meta={"backbone": {"name": "toy"}},
    )


def _as_dense_v1(src: Path, dst: Path) -> Path:
    """A copy of store ``src`` in the first store format: a dense ``/labels`` int8 dataset."""
    dense = FeatureStore(src).labels()
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        del f["labels"]
        f.create_dataset("labels", data=dense)
        f.attrs["format"] = "mlzsl-store-1"
    return dst


@pytest.mark.parametrize("fill", [0, -1, 1])
def test_csr_round_trip_equals_dense(fill: int) -> None:
    dense = _labels(50, 9, fill=fill)
    sparse = SparseLabels.from_dense(dense)
    assert sparse.fill == fill and sparse.nnz == np.count_nonzero(dense != fill)
    assert sparse.indices.dtype == np.int32 and sparse.values.dtype == np.int8
    np.testing.assert_array_equal(sparse.to_dense(), dense)
    other = sparse.with_fill(-fill if fill else 1)
    np.testing.assert_array_equal(other.to_dense(), dense)
    halves = SparseLabels.concat([sparse, SparseLabels.from_dense(dense[:7], -1)])
    np.testing.assert_array_equal(halves.to_dense(), np.concatenate([dense, dense[:7]]))


def test_most_common_value_and_block_encoding() -> None:
    assert most_common_value(np.array([[1, 1, -1], [0, 1, -1]])) == 1
    assert most_common_value(np.array([[1, -1], [0, 0]])) == 0  # a tie goes to 0
    dense = _labels(9000, 3, fill=-1)  # cut into blocks of 4096 rows, one fill for all
    blocks = list(label_blocks(dense))
    assert len(blocks) == 3 and {b.fill for b in blocks} == {-1}
    np.testing.assert_array_equal(SparseLabels.concat(blocks).to_dense(), dense)


@pytest.mark.parametrize("form", ["dense", "sparse", "blocks"])
def test_store_round_trip_in_every_form(tmp_path: Path, form: str) -> None:
    dense = _labels(23, 6, fill=0)
    labels = {
        "dense": dense,
        "sparse": SparseLabels.from_dense(dense),
        "blocks": [dense[:5], SparseLabels.from_dense(dense[5:11], -1), dense[11:]],
    }[form]
    store = FeatureStore(_write(tmp_path / "s.h5", labels, 23, 6))
    np.testing.assert_array_equal(store.labels(), dense)
    np.testing.assert_array_equal(store.sparse_labels().to_dense(), dense)
    with h5py.File(store.path) as f:
        assert f["labels/values"].shape == (np.count_nonzero(dense),)  # fill 0: only ±1 stored


def test_label_rows_of_a_sparse_store(tmp_path: Path) -> None:
    dense = _labels(40, 7, fill=-1, seed=3)
    store = FeatureStore(_write(tmp_path / "s.h5", dense, 40, 7))
    rows = [9, 3, 4, 5, 9, 39, 0]  # unsorted, repeated, runs of consecutive rows
    np.testing.assert_array_equal(store.labels(rows), dense[rows])
    np.testing.assert_array_equal(store.labels(np.asarray(rows)), dense[rows])
    np.testing.assert_array_equal(store.labels(17), dense[17])
    np.testing.assert_array_equal(store.labels(-1), dense[-1])
    np.testing.assert_array_equal(store.labels(slice(10, 20)), dense[10:20])
    assert store.labels([]).shape == (0, 7)
    with pytest.raises(DataError, match="out of range"):
        store.labels([3, 40])
    with pytest.raises(DataError, match="out of range"):
        store.labels(40)


def test_old_dense_stores_still_read(tmp_path: Path) -> None:
    dense = _labels(12, 5, fill=-1)
    old = _as_dense_v1(_write(tmp_path / "new.h5", dense, 12, 5), tmp_path / "old.h5")
    store = FeatureStore(old)
    np.testing.assert_array_equal(store.labels(), dense)
    np.testing.assert_array_equal(store.labels([4, 1, 4]), dense[[4, 1, 4]])
    np.testing.assert_array_equal(store.labels(2), dense[2])
    np.testing.assert_array_equal(store.sparse_labels().to_dense(), dense)
    assert store.image_ids[3] == "img3.png"


def test_bad_label_blocks_are_refused(tmp_path: Path) -> None:
    dense = _labels(6, 4, fill=0)
    with pytest.raises(DataError, match="do not fit"):
        _write(tmp_path / "wide.h5", [dense[:3], np.zeros((3, 5), np.int8)], 6, 4)
    with pytest.raises(DataError, match="3 label rows written, 6 expected"):
        _write(tmp_path / "short.h5", [dense[:3]], 6, 4)
    with pytest.raises(DataError, match="inconsistent store contents"):
        _write(tmp_path / "shape.h5", dense[:5], 6, 4)
    assert not (tmp_path / "wide.h5").exists() and not (tmp_path / "short.h5").exists()


def test_training_on_sparse_and_dense_stores_gives_the_same_run(
    tiny_store: Path, tmp_path: Path
) -> None:
    with h5py.File(tiny_store) as f:  # extraction writes the sparse layout
        assert isinstance(f["labels"], h5py.Group) and f["labels"].attrs["fill"] == -1
    dense = _as_dense_v1(tiny_store, tmp_path / "dense.h5")
    config = load_config(None, ["model=fast0tag", "epochs=2", "batch_size=8", "lr=0.01"])
    a = fit(config, tiny_store, tmp_path / "sparse_run", quiet=True)
    b = fit(config, dense, tmp_path / "dense_run", quiet=True)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert a.results.primary.to_dict() == b.results.primary.to_dict()
    assert 0 < a.data_seconds < a.train_seconds and 0 < a.data_wait < 1
