"""Open Images: the real class files, and a miniature 2018_04 release end to end through the CLI.

The miniature release has the real file names and column layouts (four class files, the
human-verified label CSVs ``ImageID,Source,LabelName,Confidence``, ``<split>/<ImageID>.jpg``)
with a made-up class list of real English names, so the pipeline runs on real word vectors:
``mlzsl data open-images`` -> ``mlzsl extract`` -> ``mlzsl train`` -> ``mlzsl eval``.
"""

from __future__ import annotations

import csv
import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlzsl.cli import main
from mlzsl.datasets.dataset_info import read_dataset_info
from mlzsl.datasets.open_images import OFFICIAL_TEST_IMAGES, convert_open_images
from mlzsl.datasets.userdata import read_user_dataset
from mlzsl.datasets.vocab import read_open_images_vocabulary
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.inference.evaluation import label_vectors, predict_scores
from mlzsl.protocol import evaluate_open_images
from mlzsl.store.feature_store import FeatureStore
from tests.conftest import SHARED_DATA

REAL_CLASSES = SHARED_DATA / "open_images"
needs_real_classes = pytest.mark.skipif(
    not (REAL_CLASSES / "classes-trainable.txt").is_file(),
    reason=f"the real Open Images class files are not in {REAL_CLASSES}",
)

SEEN = ["Dog", "Cat", "Car", "Tree", "House", "Flower", "Bicycle", "Boat", "Chair", "Table"]
SEEN += ["Bottle", "Cup", "Bat", "Bat"]  # a repeated name, qualified by its id
CANDIDATES = ["Horse", "Bird", "Train", "Apple", "Guitar", "Book"]
EVALUATED = [3, 0, 5, 2]  # Apple, Horse, Book, Train; Bird and Guitar are not evaluated
OUTSIDE = {"/m/0z001": "Airplane", "/m/0z002": "Piano"}  # annotated, in no class list
HEADER = ["ImageID", "Source", "LabelName", "Confidence"]


def _ids(prefix: str, n: int) -> list[str]:
    return [f"/m/0{prefix}{i:03d}" for i in range(n)]


def write_class_files(folder: Path) -> tuple[list[str], list[str]]:
    """The four class files of a made-up vocabulary; returns (seen ids, candidate ids)."""
    folder.mkdir(parents=True, exist_ok=True)
    seen, candidates = _ids("s", len(SEEN)), _ids("u", len(CANDIDATES))
    (folder / "classes-trainable.txt").write_text("\n".join(seen) + "\n", encoding="utf-8")
    with (folder / "unseen_labels.pkl").open("wb") as f:
        pickle.dump(np.array(candidates, dtype=object), f, protocol=2)
    positions = "\r\n".join(str(i) for i in EVALUATED) + "\r\n"
    (folder / "top_400_unseen.csv").write_bytes(b"\xef\xbb\xbf" + positions.encode())
    names = {**dict(zip(seen, SEEN, strict=True)), **dict(zip(candidates, CANDIDATES, strict=True))}
    with (folder / "class-descriptions.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([*names.items(), *OUTSIDE.items()])
    return seen, candidates


def _image_ids(rng: np.random.Generator, n: int) -> list[str]:
    return sorted({"".join(rng.choice(list("0123456789abcdef"), 16)) for _ in range(n)})


def _annotate(rng: np.random.Generator, image_ids: list[str], classes: list[str]) -> list[list]:
    """Rows: each (image, class) verified present, verified absent or left out (1/4, 1/4, 1/2)."""
    rows = []
    for image_id in image_ids:
        for class_id in classes:
            draw = rng.random()
            if draw < 0.5:
                source = "verification" if draw < 0.3 else "crowdsource-verification"
                rows.append([image_id, source, class_id, int(draw < 0.25)])
    return rows


def _write_csv(path: Path, rows: list[list], header: list[str] = HEADER) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _write_jpegs(folder: Path, image_ids: list[str], rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for image_id in image_ids:
        pixels = rng.integers(0, 256, size=(72, 72, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{image_id}.jpg", quality=85)


def make_release(root: Path, seed: int = 0) -> dict:
    """A miniature 2018_04 release under ``root``; returns its parts and the expected values.

    Train CSV in BiAM's layout (``annotations/train/``), test CSV in LESA's (flat). One image
    per split is annotated but has no file; one file in test/ is not annotated.
    """
    rng = np.random.default_rng(seed)
    seen, candidates = write_class_files(root / "classes")
    classes = [*seen, *candidates, *OUTSIDE]
    ids = {"train": _image_ids(rng, 25), "test": _image_ids(rng, 17)}
    rows = {split: _annotate(rng, ids[split], classes) for split in ids}
    # a conflict: a seen class of an image with a file verified absent, then present
    image_id, class_id = ids["train"][1], seen[0]
    rows["train"] = [r for r in rows["train"] if (r[0], r[2]) != (image_id, class_id)]
    rows["train"] += [[image_id, "verification", class_id, c] for c in (0, 1)]
    rows["test"].append(list(rows["test"][0]))  # a plain repeat
    _write_csv(
        root / "annotations" / "train" / "train-annotations-human-imagelabels.csv", rows["train"]
    )
    _write_csv(root / "annotations" / "test-annotations-human-imagelabels.csv", rows["test"])
    for split in ids:
        _write_jpegs(root / "images" / split, ids[split][1:], rng)  # the first has no file
    _write_jpegs(root / "images" / "test", ["ffffffffffffffff"], rng)  # not annotated
    return {"root": root, "ids": ids, "rows": rows, "conflict": (image_id, class_id)}


def expected_targets(release: dict, split: str, class_ids: list[str]) -> dict[str, list[int]]:
    """Image path -> expected targets over ``class_ids``: +1 if any row says present."""
    column = {c: i for i, c in enumerate(class_ids)}
    out = {f"images/{split}/{i}.jpg": [0] * len(class_ids) for i in release["ids"][split][1:]}
    for image_id, _, class_id, confidence in release["rows"][split]:
        path = f"images/{split}/{image_id}.jpg"
        if path in out and class_id in column:
            value = 1 if confidence == 1 else -1
            out[path][column[class_id]] = max(out[path][column[class_id]] or -1, value)
    return out


def _convert_args(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "data",
        "open-images",
        "--classes",
        str(root / "classes"),
        "--annotations",
        str(root / "annotations"),
        "--images",
        str(root / "images"),
        "--out",
        str(out),
        *extra,
    ]


def _last_json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_release(tmp_path_factory.mktemp("oi_release"))


@pytest.fixture(scope="module")
def pipeline(release: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The miniature release converted, extracted and trained (fast0tag, 1 epoch) via the CLI."""
    work = tmp_path_factory.mktemp("oi_pipeline")
    data, store, run = work / "data", work / "oi.h5", work / "run"
    assert main(_convert_args(release["root"], data)) == 0
    extract = ["extract", str(data), "--out", str(store), "--image-size", "64", "--workers", "0"]
    assert main([*extract, "--threads", "1"]) == 0
    train = ["train", "--store", str(store), "--model", "fast0tag", "--out", str(run)]
    assert main([*train, "--threads", "1", "epochs=1", "batch_size=8", "embedder=glove50"]) == 0
    return {"data": data, "store": store, "run": run, "ckpt": run / "best.pt"}


# ----------------------------------------------------------------------------- real class files


@needs_real_classes
def test_real_class_files_give_the_peers_split() -> None:
    vocab = read_open_images_vocabulary(REAL_CLASSES)
    assert len(vocab.seen_ids) == 7186 and len(vocab.unseen_ids) == 2594
    assert len(vocab.evaluated) == 400 and len(set(vocab.evaluated.tolist())) == 400
    assert (REAL_CLASSES / "top_400_unseen.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    first = (REAL_CLASSES / "top_400_unseen.csv").read_text(encoding="utf-8-sig").split()[0]
    assert vocab.evaluated[0] == int(first)  # the byte-order mark did not hide the first row
    label_set = vocab.label_set("evaluated")
    assert len(label_set) == 7586 and len(label_set.unseen_idx) == 400
    assert len(vocab.label_set("all").unseen_idx) == 2594


@needs_real_classes
def test_real_classes_convert_and_outside_classes_are_counted(tmp_path: Path) -> None:
    vocab = read_open_images_vocabulary(REAL_CLASSES)
    seen, evaluated = vocab.seen_ids[0], vocab.unseen("evaluated")[0]
    other = next(c for c in vocab.unseen_ids if c not in set(vocab.unseen("evaluated")))
    rows = [["a" * 16, "verification", seen, 1], ["a" * 16, "verification", evaluated, 0]]
    rows += [["a" * 16, "verification", other, 1], ["a" * 16, "verification", "/m/none", 1]]
    _write_csv(tmp_path / "ann" / "test-annotations-human-imagelabels.csv", rows)
    _write_jpegs(tmp_path / "img" / "test", ["a" * 16], np.random.default_rng(0))
    for unseen, n_outside in (("evaluated", 2), ("all", 1)):
        out = tmp_path / f"out_{unseen}"
        summary = convert_open_images(
            REAL_CLASSES,
            tmp_path / "ann",
            tmp_path / "img",
            out,
            unseen=unseen,
            splits=["test"],
            show_progress=False,
        )
        (counts,) = summary.splits
        assert (counts.rows, counts.rows_outside, counts.classes_outside) == (
            4,
            n_outside,
            n_outside,
        )
        data = read_user_dataset(out)
        columns = {c: i for i, c in enumerate(vocab.class_ids(unseen))}
        assert data.targets[0, columns[seen]] == 1 and data.targets[0, columns[evaluated]] == -1
        assert np.count_nonzero(data.targets) == 4 - n_outside


# ----------------------------------------------------------------------------- conversion


def test_conversion_keeps_plus_minus_and_not_annotated(
    release: dict, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "data"
    assert main([*_convert_args(release["root"], out), "--json"]) == 0
    report = _last_json(capsys)
    vocab = read_open_images_vocabulary(release["root"] / "classes")
    class_ids = vocab.class_ids("evaluated")
    data = read_user_dataset(out)
    assert len(data.label_set) == 14 + 4 and "Bat [/m/0s012]" in data.label_set.names
    got = dict(zip(data.images, data.targets.tolist(), strict=True))
    unseen = data.label_set.unseen_idx
    for split in ("train", "test"):
        for path, targets in expected_targets(release, split, class_ids).items():
            if split == "train":
                targets = [0 if i in unseen else t for i, t in enumerate(targets)]
            assert got.pop(path) == targets, path
    assert not got  # no other image: annotated ones without a file and stray files left out
    assert {-1, 0, 1} <= set(np.unique(data.targets).tolist())
    # the conflicting pair (verified absent, then present) is kept as present
    image_id, class_id = release["conflict"]
    row = data.images.index(f"images/train/{image_id}.jpg")
    assert data.targets[row, class_ids.index(class_id)] == 1
    train, test = report["splits"]
    assert (train["repeated"], train["conflicts"]) == (1, 1)
    assert (test["repeated"], test["conflicts"]) == (1, 0)
    assert (train["images_missing"], test["images_missing"]) == (1, 1)
    assert (train["images"], test["images"]) == (24, 16)
    outside_ids = {*OUTSIDE, *(vocab.unseen_ids[i] for i in (1, 4))}  # Bird, Guitar not evaluated
    for split, counts in (("train", train), ("test", test)):
        n_outside = sum(r[2] in outside_ids for r in release["rows"][split])
        assert counts["rows"] == len(release["rows"][split])
        assert counts["rows_outside"] == n_outside and counts["classes_outside"] == 4
    info = read_dataset_info(out)
    assert info is not None and info.evaluation == "open_images"
    assert info.official_test_images == OFFICIAL_TEST_IMAGES == 125_436
    assert (out / "images").is_symlink()
    assert (out / "images").resolve() == (release["root"] / "images").resolve()


def test_converting_again_into_the_same_folder_works(release: dict, tmp_path: Path) -> None:
    out = tmp_path / "data"
    assert main(_convert_args(release["root"], out, "--splits", "test", "--json")) == 0
    assert main(_convert_args(release["root"], out, "--splits", "test", "--json")) == 0
    assert set(read_user_dataset(out).splits) == {"test"}


def test_an_image_annotated_only_outside_the_vocabulary_is_kept(tmp_path: Path) -> None:
    # as the peers do: every annotated image with a file is a test image, labels or not
    write_class_files(tmp_path / "classes")
    rows = [["b" * 16, "verification", "/m/0z001", 1], ["b" * 16, "verification", "/m/0z002", 0]]
    _write_csv(tmp_path / "ann" / "test-annotations-human-imagelabels.csv", rows)
    _write_jpegs(tmp_path / "img" / "test", ["b" * 16], np.random.default_rng(0))
    summary = convert_open_images(
        tmp_path / "classes", tmp_path / "ann", tmp_path / "img", tmp_path / "out",
        splits=["test"], show_progress=False,
    )  # fmt: skip
    (counts,) = summary.splits
    assert (counts.images, counts.images_without_labels, counts.rows_outside) == (1, 1, 2)
    data = read_user_dataset(tmp_path / "out")
    assert data.images == [f"images/test/{'b' * 16}.jpg"] and not data.targets.any()


# ----------------------------------------------------------------------------- end to end


def test_store_targets_hold_the_annotation(pipeline: dict, release: dict) -> None:
    store = FeatureStore(pipeline["store"])
    class_ids = read_open_images_vocabulary(release["root"] / "classes").class_ids("evaluated")
    expected = expected_targets(release, "test", class_ids)
    rows = store.indices("test")
    for row in rows:
        assert store.labels(int(row)).tolist() == expected[store.image_ids[row]]
    assert store.header.dataset is not None and store.header.dataset.evaluation == "open_images"


def test_train_selects_on_biam_and_logs_both(pipeline: dict) -> None:
    run = pipeline["run"]
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"biam.zsl.mAP", "lesa.zsl.mAP", "biam.gzsl.F1@10", "lesa.gzsl.F1@20"} <= set(header)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selected_by"] == "biam"
    assert metrics["zsl"] == metrics["by_convention"]["biam"]["zsl"]
    for name in ("per_label_lesa_zsl.csv", "per_label_biam_gzsl.csv"):
        assert (run / name).is_file()
    assert load_checkpoint(pipeline["ckpt"]).metrics_by_convention.keys() == {"lesa", "biam"}


def test_eval_prints_both_conventions_named(pipeline: dict, capsys) -> None:
    capsys.readouterr()
    args = ["eval", "--checkpoint", str(pipeline["ckpt"]), "--store", str(pipeline["store"])]
    assert main([*args, "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "fast0tag (LESA convention)" in text and "fast0tag (BiAM convention)" in text
    assert "F1@10" in text and "F1@20" in text and "F1@3" not in text
    assert "Open Images V4 test set: available subset, 16 of the 125,436" in text


def test_eval_json_equals_the_oracle(pipeline: dict, capsys) -> None:
    capsys.readouterr()
    args = ["eval", "--checkpoint", str(pipeline["ckpt"]), "--store", str(pipeline["store"])]
    assert main([*args, "--threads", "1", "--json"]) == 0
    got = _last_json(capsys)
    assert got["selected_by"] == "biam"
    ckpt = load_checkpoint(pipeline["ckpt"])
    store = FeatureStore(pipeline["store"])
    rows = store.indices("test")
    vectors = label_vectors("glove50", store.label_set)
    scores = predict_scores(ckpt.build_model(), store, rows, vectors)
    oracle = evaluate_open_images(scores, store.labels(rows), store.label_set, ks=(10, 20))
    assert set(got) >= {"lesa", "biam", "test_set"}
    for convention, result in oracle.items():
        for split, metrics in result.to_dict().items():
            assert set(got[convention][split]) == set(metrics)
            for key, value in metrics.items():
                if math.isnan(value):
                    assert got[convention][split][key] is None
                else:
                    assert got[convention][split][key] == pytest.approx(value, abs=1e-9), key
    # the two conventions differ on this data (BiAM drops images without a positive)
    assert got["lesa"]["zsl"] != got["biam"]["zsl"]


# ----------------------------------------------------------------------------- bad input


def _copy_release(release: dict, tmp_path: Path) -> Path:
    root = tmp_path / "release"
    shutil.copytree(release["root"] / "classes", root / "classes")
    shutil.copytree(release["root"] / "annotations", root / "annotations")
    (root / "images").symlink_to(release["root"] / "images", target_is_directory=True)
    return root


def _break_missing_column(root: Path) -> str:
    path = root / "annotations" / "test-annotations-human-imagelabels.csv"
    _write_csv(path, [["a" * 16, "verification", "/m/0s000"]], HEADER[:3])
    return "test-annotations-human-imagelabels.csv:1: header lacks column Confidence"


def _break_confidence(root: Path) -> str:
    path = root / "annotations" / "test-annotations-human-imagelabels.csv"
    _write_csv(path, [["a" * 16, "verification", "/m/0s000", 1], ["a" * 16, "x", "/m/0s001", 0.7]])
    return "test-annotations-human-imagelabels.csv:3: Confidence must be 0 or 1"


def _break_class_file(root: Path) -> str:
    (root / "classes" / "top_400_unseen.csv").unlink()
    return "top_400_unseen.csv: missing"


def _break_annotations(root: Path) -> str:
    (root / "annotations" / "test-annotations-human-imagelabels.csv").unlink()
    return "test-annotations-human-imagelabels.csv: missing"


@pytest.mark.parametrize(
    "breaker", [_break_missing_column, _break_confidence, _break_class_file, _break_annotations]
)
def test_bad_input_is_one_line_and_exit_2(
    release: dict, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, breaker
) -> None:
    monkeypatch.setenv("MLZSL_NO_PROGRESS", "1")  # stderr holds the error line alone
    root = _copy_release(release, tmp_path)
    expected = breaker(root)
    capsys.readouterr()
    assert main(_convert_args(root, tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mlzsl data: error:")
    assert expected in err
    assert not (tmp_path / "out" / "labels.csv").exists()
