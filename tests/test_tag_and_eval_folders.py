"""``mlzsl tag`` on files and folders (CSV, JSON, skipped files) and ``mlzsl eval --data``.

A small scenes checkpoint stands in for any model: what is tested here is the path from files on
disk to ranked tags and to the protocol's metrics, which is the same for every checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlzsl.cli import main
from mlzsl.datasets.userdata import read_user_dataset
from mlzsl.inference.tagger import Tagger
from mlzsl.inference.tags import collect_images, read_labels_file
from mlzsl.protocol import evaluate_default

from .conftest import train_tiny_run

LABELS = "red star, blue heart, green ring"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Scenes data (64 px) and a fast0tag checkpoint trained on its features for 2 epochs."""
    return train_tiny_run(tmp_path_factory.mktemp("tagfolders"), epochs=2)


def _photos(trained: dict[str, Path], tmp_path: Path) -> Path:
    """A folder of 5 test images (2 in a sub-folder), a text file and a broken PNG."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    images = sorted((trained["data"] / "images").glob("test_*.png"))[:5]
    for i, image in enumerate(images):
        shutil.copy(image, folder / ("sub" if i >= 3 else "") / image.name)
    (folder / "notes.txt").write_text("not an image, and not an image suffix")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return folder


def test_folders_are_searched_recursively_for_images(trained, tmp_path: Path) -> None:
    folder = _photos(trained, tmp_path)
    found = collect_images([folder])
    assert len(found) == 6 and found == sorted(found)  # 5 images + broken.png, no .txt
    assert sum(p.parent.name == "sub" for p in found) == 2
    assert collect_images([folder, found[0]]) == found  # a file listed twice is tagged once


def test_tag_writes_a_csv_and_lists_bad_files(trained, tmp_path: Path, capsys) -> None:
    folder = _photos(trained, tmp_path)
    out = tmp_path / "tags.csv"
    args = ["tag", str(folder), str(tmp_path / "absent.jpg"), "--labels", LABELS]
    assert (
        main([*args, "--checkpoint", str(trained["ckpt"]), "--top-k", "2", "--out", str(out)]) == 0
    )
    text = capsys.readouterr().out
    assert "skipped" in text and "broken.png" in text and "absent.jpg" in text
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert {r["image"] for r in rows} == {str(p) for p in collect_images([folder])} - {
        str(folder / "broken.png")
    }
    tagger = Tagger.from_checkpoint(trained["ckpt"])
    by_image: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_image.setdefault(row["image"], []).append(row)
    for image, got in by_image.items():
        expected = tagger.tag([image], LABELS, top_k=2)[0]
        assert [r["label"] for r in got] == [t.label for t in expected]
        assert [int(r["rank"]) for r in got] == [1, 2]
        assert [float(r["score"]) for r in got] == pytest.approx(
            [t.score for t in expected], abs=1e-6
        )
    assert not list(tmp_path.glob(".tags.csv.*"))  # no temporary file left behind


def test_tag_json_threshold_and_labels_file(trained, tmp_path: Path, capsys) -> None:
    folder = _photos(trained, tmp_path)
    labels = tmp_path / "labels.txt"
    labels.write_text("# my labels\nred star\n\nblue heart\ngreen ring\n")
    assert read_labels_file(labels) == ["red star", "blue heart", "green ring"]
    capsys.readouterr()
    args = ["tag", str(folder), "--labels-file", str(labels), "--checkpoint", str(trained["ckpt"])]
    assert main([*args, "--json", "--top-k", "3"]) == 0
    full = json.loads(capsys.readouterr().out)
    scores = [t["score"] for tags in full["images"].values() for t in tags]
    cut = float(np.median(scores))
    assert main([*args, "--json", "--top-k", "3", "--threshold", str(cut)]) == 0
    kept = json.loads(capsys.readouterr().out)
    for image, tags in full["images"].items():
        assert kept["images"][image] == [t for t in tags if t["score"] >= cut]
    assert [s["image"] for s in full["skipped"]] == [str(folder / "broken.png")]


def test_tag_with_no_readable_image_is_one_line_exit_2(trained, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_text("text")
    capsys.readouterr()
    assert main(["tag", str(bad), "--labels", LABELS, "--checkpoint", str(trained["ckpt"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "x.jpg" in err and "no readable image" in err


def test_tag_names_an_unknown_checkpoint_name(tmp_path: Path, capsys) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    assert main(["tag", str(image), "--labels", "dog", "--checkpoint", "nosuchmodel"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nosuchmodel" in err and "photo" in err and len(err.splitlines()) == 1


def _all_unseen_folder(trained: dict[str, Path], tmp_path: Path) -> Path:
    """The scenes test images as a folder with nothing to train on: every label unseen."""
    source = read_user_dataset(trained["data"])
    folder = tmp_path / "unseen"
    shutil.copytree(trained["data"] / "images", folder / "images")
    with (folder / "vocabulary.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "split"])
        w.writerows([name, "unseen"] for name in source.label_set.names)
    rows = source.indices("test")
    with (folder / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "split", "labels"])
        for r in rows:
            present = [
                n for n, y in zip(source.label_set.names, source.targets[r], strict=True) if y > 0
            ]
            w.writerow([source.images[r], "test", "|".join(present)])
    return folder


def test_eval_on_an_all_unseen_folder_matches_the_protocol(trained, tmp_path, capsys) -> None:
    folder = _all_unseen_folder(trained, tmp_path)
    capsys.readouterr()
    args = ["eval", "--data", str(folder), "--checkpoint", str(trained["ckpt"]), "--json"]
    assert main([*args, "--per-label", str(tmp_path / "pl")]) == 0
    got = json.loads(capsys.readouterr().out)
    dataset = read_user_dataset(folder)
    tagger = Tagger.from_checkpoint(trained["ckpt"])
    paths = [dataset.path(i) for i in range(len(dataset))]
    scores = tagger.scores(paths, list(dataset.label_set.names))  # independent of evaluate_folder
    expected = evaluate_default(scores, dataset.targets, dataset.label_set).to_dict()
    assert got["zsl"] == pytest.approx(expected["zsl"]) and got["images"] == len(dataset)
    assert (tmp_path / "pl" / "per_label_zsl.csv").is_file()


def test_eval_data_leaves_out_images_that_do_not_decode(trained, tmp_path, capsys) -> None:
    folder = _all_unseen_folder(trained, tmp_path)
    victim = read_user_dataset(folder).images[0]
    (folder / victim).write_bytes(b"broken")
    capsys.readouterr()
    args = ["eval", "--data", str(folder), "--checkpoint", str(trained["ckpt"]), "--json"]
    assert main(args) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["images"] == len(read_user_dataset(folder)) - 1
    assert [Path(image).name for image, _ in got["skipped"]] == [Path(victim).name]


def test_the_checkpoint_names_its_training_store(trained) -> None:
    from mlzsl.inference.checkpoint import StoreRecord, load_checkpoint

    store = load_checkpoint(trained["ckpt"]).store
    assert store is not None and store.job  # the extraction's fingerprint of the store's content
    assert dataclasses.replace(store, job=None) == StoreRecord(
        file="s.h5",
        dataset=None,
        train_images=48,
        test_images=24,
        test_set=None,  # a store of no known benchmark names no variant
    )


def test_eval_store_without_checkpoint_is_one_line(trained, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", "--store", str(trained["root"] / "s.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--checkpoint" in err and len(err.splitlines()) == 1
