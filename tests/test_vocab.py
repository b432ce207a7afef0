"""Benchmark vocabularies (NUS-WIDE, Open Images V4) and dataset descriptions in stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlzsl.datasets.dataset_info import (
    DatasetInfo,
    read_dataset_info,
    store_dataset_info,
    write_dataset_info,
)
from mlzsl.datasets.vocab import display_names, nus_label_set, read_open_images_vocabulary
from mlzsl.errors import DataError
from tests.conftest import SHARED_DATA

NUS = SHARED_DATA / "nus_wide"
OPEN_IMAGES = SHARED_DATA / "open_images"


def test_nus_vocabulary_from_small_files(tmp_path: Path) -> None:
    (tmp_path / "tags.txt").write_text("sky\nwater\nsunset\ncat\n")
    (tmp_path / "concepts.txt").write_text("cat\nairport\n")
    labels = nus_label_set(tmp_path / "tags.txt", tmp_path / "concepts.txt")
    assert labels.names == ("sky", "water", "sunset", "cat", "airport")
    assert labels.seen == (True, True, True, False, False)


@pytest.mark.skipif(not NUS.is_dir(), reason="../shared/data/nus_wide is not beside the repository")
def test_nus_vocabulary_from_the_release_files() -> None:
    labels = nus_label_set(NUS / "TagList1k.txt", NUS / "Concepts81.txt")
    assert (len(labels.seen_idx), len(labels.unseen_idx), len(labels)) == (925, 81, 1006)
    concepts = (NUS / "Concepts81.txt").read_text().split()
    assert labels.unseen_names == concepts  # Concepts81 order
    tags = (NUS / "TagList1k.txt").read_text().split()
    assert labels.seen_names == [t for t in tags if t not in set(concepts)]  # TagList1k order


@pytest.mark.skipif(not OPEN_IMAGES.is_dir(), reason="../shared/data/open_images is absent")
def test_open_images_vocabulary_from_the_release_files() -> None:
    vocab = read_open_images_vocabulary(OPEN_IMAGES)
    assert (len(vocab.seen_ids), len(vocab.unseen_ids), len(vocab.evaluated)) == (7186, 2594, 400)
    first = (OPEN_IMAGES / "top_400_unseen.csv").read_bytes()
    assert first.startswith(b"\xef\xbb\xbf")  # the byte-order mark is there, and handled:
    assert vocab.evaluated[0] == int(first[3:].split()[0])
    labels = vocab.label_set("evaluated")
    assert (len(labels.seen_idx), len(labels.unseen_idx)) == (7186, 400)
    assert len(vocab.label_set("all").unseen_idx) == 2594
    assert len(set(labels.names)) == len(labels)  # repeated names were qualified


def test_repeated_names_get_their_id_as_a_qualifier() -> None:
    names = {"/m/1": "Ball", "/m/2": "Ball", "/m/3": "Cat"}
    assert display_names(["/m/1", "/m/2", "/m/3"], names) == [
        "Ball [/m/1]",
        "Ball [/m/2]",
        "Cat",
    ]
    with pytest.raises(DataError, match="no name for 1 ids"):
        display_names(["/m/9"], names)


def test_open_images_vocabulary_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="classes-trainable.txt: missing"):
        read_open_images_vocabulary(tmp_path)


def test_dataset_description_round_trips_and_names_the_variant(tmp_path: Path) -> None:
    info = DatasetInfo("NUS-WIDE", official_test_images=107859, source="/data/nus")
    write_dataset_info(tmp_path, info)
    assert read_dataset_info(tmp_path) == info
    assert store_dataset_info({"dataset": json.dumps(info.to_dict())}) == info
    assert info.test_set_line(107859) == "NUS-WIDE test set: official, all 107,859 images"
    assert "available subset, 95,000 of the 107,859" in info.test_set_line(95000)
    assert read_dataset_info(tmp_path / "none") is None
    (tmp_path / "dataset.json").write_text("[1]")
    with pytest.raises(DataError, match="expected a JSON object"):
        read_dataset_info(tmp_path)
    with pytest.raises(DataError, match="evaluation must be one of"):
        DatasetInfo("x", evaluation="other")
