"""The user data format: parsing, targets, hidden unseen labels, and errors that name file+line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlzsl.datasets.userdata import read_user_dataset, write_user_dataset
from mlzsl.errors import ConfigError, DataError
from mlzsl.labels import LabelSet

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
