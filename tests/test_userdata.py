"""The user data format: parsing, targets, hidden unseen labels, and errors that name file+line."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from mlzsl.datasets.userdata import read_user_dataset, write_user_dataset
from mlzsl.errors import ConfigError, DataError
from mlzsl.labels import LabelSet

from .conftest import dense_reference, write_tall_folder

VOCABULARY = "label,split\ncat,seen\ndog,seen\nbird,unseen\n"


def write_folder(root: Path, labels: str, vocabulary: str = VOCABULARY) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "vocabulary.csv").write_text(vocabulary, encoding="utf-8")
    (root / "labels.csv").write_text(labels, encoding="utf-8")
    return root


def test_targets_and_hidden_unseen_on_train_rows(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path,
        "image,split,labels\n"
        "a.png,train,cat|bird\n"  # bird is unseen: hidden (0) on a train row
        "sub/dir/b.jpg,train,\n"
        "c.png,test,dog|bird\n"
        "d.png,test,\n",
    )
    data = read_user_dataset(root)
    assert data.label_set.names == ("cat", "dog", "bird")
    assert data.images == ["a.png", "sub/dir/b.jpg", "c.png", "d.png"]
    assert data.splits == ["train", "train", "test", "test"]
    assert data.targets.dtype == np.int8
    expected = [[1, -1, 0], [-1, -1, 0], [-1, 1, 1], [-1, -1, -1]]
    np.testing.assert_array_equal(data.targets, expected)
    assert data.path(1) == root / "sub/dir/b.jpg"
    np.testing.assert_array_equal(data.indices("train"), [0, 1])
    np.testing.assert_array_equal(data.indices("test"), [2, 3])
    assert len(data) == 4


def test_paths_are_normalised_and_labels_stripped(tmp_path: Path) -> None:
    root = write_folder(tmp_path, "image,split,labels\n./x/../a.png, test , cat | dog \n")
    data = read_user_dataset(root)
    assert data.images == ["a.png"]
    np.testing.assert_array_equal(data.targets, [[1, 1, -1]])


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    label_set = LabelSet.from_lists(["red circle", "blue star"], ["red star"])
    rows = [("images/0.png", "train", ["red circle", "red star"]), ("images/1.png", "test", [])]
    write_user_dataset(tmp_path / "out", label_set, rows)
    data = read_user_dataset(tmp_path / "out")
    assert data.label_set == label_set
    assert data.images == ["images/0.png", "images/1.png"]
    np.testing.assert_array_equal(data.targets, [[1, -1, 0], [-1, -1, -1]])


@pytest.mark.parametrize(
    ("labels", "where", "problem"),
    [
        ("image,split,labels\na.png,valid,cat\n", "labels.csv:2", "split"),
        ("image,split,labels\na.png,train,cat\nb.png,test,fish\n", "labels.csv:3", "'fish'"),
        ("image,split,labels\na.png,train,\na.png,test,\n", "labels.csv:3", "line 2"),
        ("image,split,labels\n/etc/a.png,train,\n", "labels.csv:2", "relative"),
        ("image,split,labels\nC:\\x\\a.png,train,\n", "labels.csv:2", "relative"),
        ("image,split,labels\nD:a.png,train,\n", "labels.csv:2", "relative"),
        ("image,split,labels\n../a.png,train,\n", "labels.csv:2", "leaves"),
        ("image,split,labels\nx/../../a.png,train,\n", "labels.csv:2", "leaves"),
        ("image,split,labels\n,train,\n", "labels.csv:2", "empty image"),
        ("image,split,labels\na.png,train\n", "labels.csv:2", "3 fields"),
        ("image,labels\na.png,cat\n", "labels.csv:1", "split"),
        ("", "labels.csv:1", "empty"),
        ("image,split,labels\n", "labels.csv", "no image rows"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, labels: str, where: str, problem: str) -> None:
    root = write_folder(tmp_path, labels)
    with pytest.raises(DataError) as info:
        read_user_dataset(root)
    message = str(info.value)
    assert where in message and problem in message
    assert "\n" not in message


def test_missing_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such data folder"):
        read_user_dataset(tmp_path / "nowhere")
    (tmp_path / "labels.csv").write_text("image,split,labels\na.png,train,\n")
    with pytest.raises(DataError, match=r"vocabulary\.csv: missing"):
        read_user_dataset(tmp_path)
    (tmp_path / "labels.csv").unlink()
    (tmp_path / "vocabulary.csv").write_text(VOCABULARY)
    with pytest.raises(DataError, match=r"labels\.csv: missing"):
        read_user_dataset(tmp_path)


def test_bad_vocabulary_is_a_data_error(tmp_path: Path) -> None:
    root = write_folder(tmp_path, "image,split,labels\na.png,train,\n", "label,split\ncat,maybe\n")
    with pytest.raises(DataError, match=r"vocabulary\.csv:2"):
        read_user_dataset(root)
    write_folder(tmp_path, "image,split,labels\na.png,train,\n", "label,split\na|b,seen\n")
    with pytest.raises(DataError, match=r"contains '\|'"):
        read_user_dataset(root)


def test_images_are_not_opened(tmp_path: Path) -> None:
    # files that do not exist are extraction's business, not the reader's
    data = read_user_dataset(write_folder(tmp_path, "image,split,labels\nmissing.png,test,cat\n"))
    assert not data.path(0).exists()


# ----------------------------------------------------------------------------- partial annotation


def test_negatives_column_gives_plus_minus_and_not_annotated(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path,
        "image,split,labels,negatives\n"
        "a.png,train,cat,dog|bird\n"  # bird unseen: hidden on a train row, negative or not
        "b.png,train,,\n"  # nothing annotated
        "c.png,test,bird,cat\n"  # dog never asked about: 0
        "d.png,test,,dog|bird|cat\n",
    )
    data = read_user_dataset(root)
    expected = [[1, -1, 0], [0, 0, 0], [-1, 0, 1], [-1, -1, -1]]
    np.testing.assert_array_equal(data.targets, expected)
    assert data.targets.dtype == np.int8


def test_a_label_in_both_columns_names_file_and_line(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path, "image,split,labels,negatives\na.png,train,cat,\nb.png,test,cat|dog,dog\n"
    )
    with pytest.raises(DataError, match=r"labels\.csv:3: label 'dog' is in both") as info:
        read_user_dataset(root)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("labels", "where", "problem"),
    [
        ("image,split,labels,negatives\na.png,test,cat\n", "labels.csv:2", "4 fields"),
        ("image,split,labels,negatives\na.png,test,cat,fish\n", "labels.csv:2", "'fish'"),
        ("image,split,negatives\na.png,test,cat\n", "labels.csv:1", "labels"),
    ],
)
def test_negatives_errors(tmp_path: Path, labels: str, where: str, problem: str) -> None:
    with pytest.raises(DataError) as info:
        read_user_dataset(write_folder(tmp_path, labels))
    assert where in str(info.value) and problem in str(info.value)


def test_write_with_negatives_round_trip(tmp_path: Path) -> None:
    label_set = LabelSet.from_lists(["Dog", "Cat, domestic"], ["Bird"])
    rows = [
        ("images/0.jpg", "train", ["Dog"], ["Cat, domestic", "Bird"]),
        ("images/1.jpg", "test", ["Bird"], []),
        ("images/2.jpg", "test", [], ["Dog"]),
    ]
    assert write_user_dataset(tmp_path, label_set, iter(rows), negatives=True) == 3
    header = (tmp_path / "labels.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "image,split,labels,negatives"
    data = read_user_dataset(tmp_path)
    np.testing.assert_array_equal(data.targets, [[1, -1, 0], [0, 0, 1], [-1, 0, 0]])


def test_a_failed_write_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    label_set = LabelSet.from_lists(["cat"], ["dog"])
    write_user_dataset(tmp_path, label_set, [("a.png", "test", ["cat"])])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    bad_rows = [("b.png", "test", ["cat"], []), ("c.png", "test", ["dog"], ["dog"])]
    with pytest.raises(ConfigError, match="both listed and a negative"):
        write_user_dataset(
            tmp_path, LabelSet.from_lists(["x"], ["cat", "dog"]), bad_rows, negatives=True
        )
    with pytest.raises(ConfigError, match="expected 4 fields"):
        write_user_dataset(tmp_path, label_set, [("b.png", "test", ["cat"])], negatives=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_many_rows_parse_into_flat_pairs(tmp_path: Path) -> None:
    # 20k rows: the targets are right row by row (the pairs arrays keep rows aligned)
    rng = np.random.default_rng(0)
    names = ["cat", "dog", "bird"]
    truth = rng.integers(-1, 2, size=(20_000, 3)).astype(np.int8)
    lines = ["image,split,labels,negatives"]
    for i, row in enumerate(truth):
        pos = "|".join(n for n, v in zip(names, row, strict=True) if v == 1)
        neg = "|".join(n for n, v in zip(names, row, strict=True) if v == -1)
        lines.append(f"{i}.png,test,{pos},{neg}")
    data = read_user_dataset(write_folder(tmp_path, "\n".join(lines) + "\n"))
    np.testing.assert_array_equal(data.targets, truth)


# ----------------------------------------------------------------------------- sparse targets


def write_random_folder(root: Path, n_rows: int, *, negatives: bool, seed: int) -> Path:
    """Random rows over 7 labels (3 unseen): names listed in any order, some twice."""
    rng = np.random.default_rng(seed)
    names = ["cat", "dog", "fox", "owl", "bird", "bee", "ant"]
    vocabulary = "label,split\n" + "".join(
        f"{n},{'unseen' if j >= 4 else 'seen'}\n" for j, n in enumerate(names)
    )
    header = "image,split,labels" + (",negatives" if negatives else "")
    lines = [header]
    for i in range(n_rows):
        state = rng.integers(-1, 2, len(names))  # +1 listed, -1 a negative, 0 neither
        listed = [n for n, s in zip(names, state, strict=True) if s == 1]
        listed += listed[:1] if rng.random() < 0.3 else []  # a label listed twice
        rng.shuffle(listed)
        cells = [f"{i}.png", "train" if rng.random() < 0.5 else "test", "|".join(listed)]
        if negatives:
            cells.append(" | ".join(n for n, s in zip(names, state, strict=True) if s == -1))
        lines.append(",".join(cells))
    return write_folder(root, "\n".join(lines) + "\n", vocabulary)


@pytest.mark.parametrize("negatives", [False, True])
def test_sparse_targets_equal_the_dense_matrix(tmp_path: Path, negatives: bool) -> None:
    root = write_random_folder(tmp_path, 300, negatives=negatives, seed=int(negatives))
    data = read_user_dataset(root)
    truth = dense_reference(root)
    assert data.labels.shape == truth.shape and data.labels.fill == (0 if negatives else -1)
    np.testing.assert_array_equal(data.targets, truth)
    rng = np.random.default_rng(2)
    idx = rng.integers(0, len(data), 500)  # any order, repeats
    np.testing.assert_array_equal(data.target_rows(idx), truth[idx])
    assert data.target_rows(idx).dtype == np.int8
    assert data.target_rows([]).shape == (0, 7)
    # canonical entries: ascending and unique per row, values ±1, none hidden on a train row
    labels = data.labels
    for i in range(len(data)):
        columns = labels.indices[labels.indptr[i] : labels.indptr[i + 1]]
        assert (np.diff(columns) > 0).all()
        if data.splits[i] == "train":
            assert not set(columns.tolist()) & set(labels.hidden.tolist())
    assert set(np.unique(labels.values).tolist()) <= {-1, 1}


def test_target_rows_refuses_an_index_out_of_range(tmp_path: Path) -> None:
    data = read_user_dataset(write_folder(tmp_path, "image,split,labels\na.png,test,cat\n"))
    for bad in ([1], [-1]):
        with pytest.raises(IndexError, match="out of range"):
            data.target_rows(bad)


def test_targets_digest_follows_the_content(tmp_path: Path) -> None:
    def digest(labels: str, vocabulary: str = VOCABULARY, name: str = "x") -> str:
        return read_user_dataset(write_folder(tmp_path / name, labels, vocabulary)).labels.digest()

    base = digest("image,split,labels\na.png,train,cat|bird\nb.png,test,dog\n")
    # the same targets written otherwise: order, a repeat, a hidden label left out
    assert digest("image,split,labels\na.png,train,cat|cat\nb.png,test,dog\n") == base
    assert digest("image,split,labels\na.png,train,cat\nb.png,test,dog\n") == base
    # other targets: a label, a split, which label is unseen, partial annotation
    assert digest("image,split,labels\na.png,train,dog\nb.png,test,dog\n") != base
    assert digest("image,split,labels\na.png,test,cat|bird\nb.png,test,dog\n") != base
    swapped = "label,split\ncat,seen\ndog,unseen\nbird,seen\n"
    assert digest("image,split,labels\na.png,train,cat|bird\nb.png,test,dog\n", swapped) != base
    assert digest("image,split,labels,negatives\na.png,train,cat|bird,\nb.png,test,dog,\n") != base


def test_reading_a_tall_folder_never_makes_the_targets_dense(tmp_path: Path) -> None:
    n_rows, n_labels = 40_000, 25_000  # dense: 1 GB
    root = write_tall_folder(tmp_path, n_rows, n_labels)
    tracemalloc.start()
    try:
        data = read_user_dataset(root)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the per-row strings and entries, ~0.2 KB a row, and the vocabulary: ~10 MB
    assert peak < n_rows * n_labels // 20
    assert data.labels.shape == (n_rows, n_labels)
    idx = np.random.default_rng(0).choice(n_rows, 300, replace=False)
    np.testing.assert_array_equal(data.target_rows(idx), dense_reference(root, idx))
