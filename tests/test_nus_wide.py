"""NUS-WIDE: the release converter, and data -> verify -> extract -> train -> eval end to end.

A miniature of the official release layout is built in a temporary folder: Windows-style image
lists (Imagelist with the ``C:\\ImageData\\Flickr\\`` prefix, train/test lists without), CRLF
line ends, ``AllTags1k.txt`` rows, ``Labels_<concept>.txt`` files and a ``Flickr/`` folder of
generated JPEGs. One variant uses the real TagList1k/Concepts81 from ../shared (skipped without
it), the other a small made-up vocabulary of English words that runs anywhere.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlzsl.datasets.dataset_info import read_dataset_info
from mlzsl.datasets.nus_wide import NUS_OFFICIAL_TEST_IMAGES, convert_nus_wide, image_key
from mlzsl.datasets.userdata import read_user_dataset
from mlzsl.embeddings import create_embedder
from mlzsl.errors import DataError
from mlzsl.labels import read_vocabulary
from mlzsl.store.feature_store import FeatureStore
from tests.conftest import SHARED_DATA

NUS_DIR = SHARED_DATA / "nus_wide"
NUS_PICKLE = NUS_DIR / "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300"
NEEDS_SHARED = pytest.mark.skipif(
    not (NUS_DIR / "TagList1k.txt").is_file() or not NUS_PICKLE.is_file(),
    reason=f"the real NUS-WIDE vocabulary and label vectors are not in {NUS_DIR}",
)

# a made-up vocabulary: 4 of the 6 concepts are also tags, as 75 of the 81 are in TagList1k
MADE_UP_TAGS = [
    "sky", "water", "beach", "tree", "car", "clouds", "dog", "house",
    "flowers", "street", "snow", "sunset", "night", "bridge", "cat",
]  # fmt: skip
MADE_UP_CONCEPTS = ["animal", "beach", "clouds", "flowers", "sunset", "vehicle"]
FOLDERS = ["actor", "airport", "beach", "sunset"]  # query folders of the Flickr crawl


@dataclass
class MiniRelease:
    """A generated release: Imagelist rows, their split, and the labels the converter must write.

    Attributes:
        root: the release folder.
        keys: ``concept/file.jpg`` per Imagelist row.
        splits: "train", "test" or "" (on neither list) per row.
        expected: ``images/<key>`` -> the positive label names (seen tags + human concepts).
    """

    root: Path
    tags: list[str]
    concepts: list[str]
    keys: list[str]
    splits: list[str]
    expected: dict[str, set[str]]

    def rows(self, split: str) -> list[int]:
        """Imagelist rows of ``split``."""
        return [i for i, s in enumerate(self.splits) if s == split]

    def image(self, row: int) -> Path:
        """The image file of Imagelist row ``row``."""
        return self.root / "Flickr" / self.keys[row]


def _jpeg(rng: np.random.Generator, side: int = 96) -> bytes:
    """A random-noise JPEG of realistic size (96 px: about 9 KB, above the 4,000-byte cut)."""
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)).save(
        buf, "JPEG", quality=90
    )
    return buf.getvalue()


def _write_lines(path: Path, lines: list[str], end: str = "\r\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + end for line in lines).encode())


def make_release(
    root: Path,
    tags: list[str],
    concepts: list[str],
    *,
    n_images: int = 38,
    unlisted: tuple[int, ...] = (5, 20),
    sep: str = "\t",
    seed: int = 0,
) -> MiniRelease:
    """Write a miniature NUS-WIDE release (layout in the module docstring) under ``root``.

    Row i is a test image when i % 3 == 0, on neither list when in ``unlisted``, else train.
    Row 0 has the tag bit of a concept that is also a tag set while its human label is 0: the
    converter must take unseen labels from the human labels only.
    """
    rng = np.random.default_rng(seed)
    concept_tags = [j for j, t in enumerate(tags) if t in set(concepts)]
    keys, splits, expected = [], [], {}
    tag_rows, human = [], np.zeros((n_images, len(concepts)), dtype=int)
    for i in range(n_images):
        key = f"{FOLDERS[i % len(FOLDERS)]}/{i:04d}_{rng.integers(10**6, 10**9)}.jpg"
        bits = np.zeros(len(tags), dtype=int)
        bits[rng.choice(len(tags), size=rng.integers(1, 5), replace=False)] = 1
        human[i, rng.choice(len(concepts), size=rng.integers(0, 3), replace=False)] = 1
        if i == 0:
            bits[concept_tags[0]] = 1
            human[i, concepts.index(tags[concept_tags[0]])] = 0
        keys.append(key)
        splits.append("" if i in unlisted else "test" if i % 3 == 0 else "train")
        tag_rows.append(sep.join(map(str, bits)) + (sep if sep == "\t" else ""))
        seen = {t for t, b in zip(tags, bits, strict=True) if b and t not in concepts}
        expected[f"images/{key}"] = seen | {c for c, h in zip(concepts, human[i], strict=True) if h}
        (root / "Flickr" / key).parent.mkdir(parents=True, exist_ok=True)
        (root / "Flickr" / key).write_bytes(_jpeg(rng))
    windows = [k.replace("/", "\\") for k in keys]
    _write_lines(root / "ImageList/Imagelist.txt", [f"C:\\ImageData\\Flickr\\{w}" for w in windows])
    for split, name in (("train", "TrainImagelist.txt"), ("test", "TestImagelist.txt")):
        entries = [w for w, s in zip(windows, splits, strict=True) if s == split]
        _write_lines(root / "ImageList" / name, entries[::-1])  # order must not matter
    _write_lines(root / "NUS_WID_Tags/AllTags1k.txt", tag_rows)
    _write_lines(root / "NUS_WID_Tags/TagList1k.txt", tags)
    _write_lines(root / "ConceptsList/Concepts81.txt", concepts)
    for c, concept in enumerate(concepts):
        _write_lines(
            root / f"Groundtruth/AllLabels/Labels_{concept}.txt", list(map(str, human[:, c]))
        )
    return MiniRelease(root, tags, concepts, keys, splits, expected)


def inject_faults(release: MiniRelease) -> dict[str, str]:
    """Break some images the way a crawl does; returns ``images/<key>`` -> expected status."""
    test, train = release.rows("test"), release.rows("train")
    placeholder = io.BytesIO()
    Image.new("RGB", (500, 375), (180, 180, 180)).save(placeholder, "GIF")  # "photo unavailable"
    tiny = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tiny, "JPEG")
    faults = {test[1]: "missing", test[2]: "placeholder", test[3]: "placeholder"}
    faults |= {train[0]: "placeholder", train[1]: "tiny", test[4]: "unreadable"}
    release.image(test[1]).unlink()
    for row in (test[2], test[3], train[0]):
        release.image(row).write_bytes(placeholder.getvalue())
    release.image(train[1]).write_bytes(tiny.getvalue())
    whole = _jpeg(np.random.default_rng(1), side=160)
    release.image(test[4]).write_bytes(whole[: len(whole) // 2])  # truncated, still > 4,000 B
    assert len(whole) // 2 > 4000
    return {f"images/{release.keys[row]}": status for row, status in faults.items()}


def _cli(*argv: str) -> str:
    """Run ``mlzsl argv``, assert exit status 0, return its stdout."""
    from mlzsl.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    assert code == 0, out.getvalue()
    return out.getvalue()


@dataclass
class Pipeline:
    """A release run through data -> data verify -> extract -> train -> eval, with outputs."""

    release: MiniRelease
    faults: dict[str, str]
    data: Path
    store: Path
    stdout: dict[str, str]


def _run_pipeline(root: Path, tags: list[str], concepts: list[str], embedder: str) -> Pipeline:
    release = make_release(root / "release", tags, concepts)
    faults = inject_faults(release)
    data, store, run = root / "data", root / "nus.h5", root / "run"
    stdout = {"data": _cli("data", "nus-wide", "--root", str(release.root), "--out", str(data))}
    stdout["verify"] = _cli("data", "verify", str(data), "--workers", "2")
    stdout["extract"] = _cli(
        "extract", str(data), "--out", str(store), "--image-size", "64", "--workers", "0",
        "--threads", "1",
    )  # fmt: skip
    stdout["train"] = _cli(
        "train", "--store", str(store), "--model", "fast0tag", "--embedder", embedder,
        "--out", str(run), "--threads", "1", "epochs=1", "batch_size=8",
    )  # fmt: skip
    stdout["eval"] = _cli(
        "eval", "--checkpoint", str(run / "best.pt"), "--store", str(store), "--threads", "1"
    )
    return Pipeline(release, faults, data, store, stdout)


@pytest.fixture(scope="module", params=["real", "made-up"])
def pipeline(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Pipeline]:
    """The end-to-end run on the real vocabulary (needs ../shared) and on a made-up one."""
    root = tmp_path_factory.mktemp(f"nus-{request.param}")
    if request.param == "real":
        if not (NUS_DIR / "TagList1k.txt").is_file() or not NUS_PICKLE.is_file():
            pytest.skip(f"the real NUS-WIDE vocabulary and label vectors are not in {NUS_DIR}")
        tags = read_vocabulary(NUS_DIR / "TagList1k.txt")
        concepts = read_vocabulary(NUS_DIR / "Concepts81.txt")
        yield _run_pipeline(root, tags, concepts, f"nus:{NUS_PICKLE}")
    else:
        yield _run_pipeline(root, MADE_UP_TAGS, MADE_UP_CONCEPTS, "glove50")


def test_counts_and_vocabulary(pipeline: Pipeline) -> None:
    release, data = pipeline.release, read_user_dataset(pipeline.data)
    n_seen = len([t for t in release.tags if t not in release.concepts])
    n_unseen = len(release.concepts)
    if len(release.tags) == 1000:
        assert (n_seen, n_unseen) == (925, 81)
    assert f"{n_seen} seen + {n_unseen} unseen = {n_seen + n_unseen:,}" in pipeline.stdout["data"]
    assert list(data.label_set.names) == [
        *[t for t in release.tags if t not in release.concepts],
        *release.concepts,
    ]
    assert len(data.label_set.seen_idx) == n_seen and len(data.label_set.unseen_idx) == n_unseen
    n_train, n_test = len(release.rows("train")), len(release.rows("test"))
    assert f"{n_train} train + {n_test} test images" in pipeline.stdout["data"]
    assert "2 images of Imagelist are on neither list" in pipeline.stdout["data"]
    missing = [image for image, status in pipeline.faults.items() if status == "missing"]
    assert (
        "listed images with no file: 1" in pipeline.stdout["data"]
        and missing[0] in pipeline.stdout["data"]
    )
    info = read_dataset_info(pipeline.data)
    assert info is not None and info.name == "NUS-WIDE"
    assert info.official_test_images == NUS_OFFICIAL_TEST_IMAGES


def test_labels_come_from_tags_and_human_labels(pipeline: Pipeline) -> None:
    release = pipeline.release
    with (pipeline.data / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    listed = [i for i, s in enumerate(release.splits) if s]
    assert [r["image"] for r in rows] == [f"images/{release.keys[i]}" for i in listed]
    assert [r["split"] for r in rows] == [release.splits[i] for i in listed]
    for r in rows:
        assert set(filter(None, r["labels"].split("|"))) == release.expected[r["image"]]
    data = read_user_dataset(pipeline.data)
    assert (pipeline.data / "images").is_symlink()
    present = [i for i in range(len(data)) if data.path(i).is_file()]
    assert len(present) == len(data) - 1  # only the missing image has no file
    train = data.indices("train")
    assert np.all(data.targets[np.ix_(train, data.label_set.unseen_idx)] == 0)  # hidden


def test_verify_names_every_injected_fault(pipeline: Pipeline) -> None:
    with (pipeline.data / "excluded.tsv").open(newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["image", "reason"]
    found = {image: reason.split(":")[0] for image, reason in rows[1:]}
    assert found == pipeline.faults
    for image in pipeline.faults:
        assert image in pipeline.stdout["verify"]
    summary = json.loads((pipeline.data / "verify.json").read_text())
    assert summary["faults"] == {"missing": 1, "placeholder": 3, "tiny": 1, "unreadable": 1}
    assert summary["counts"]["train"]["placeholder"] == 1
    assert summary["counts"]["train"]["tiny"] == 1


def test_test_set_line_names_the_available_subset(pipeline: Pipeline) -> None:
    n_bad_test = 4  # missing, two placeholders, unreadable
    n_good = len(pipeline.release.rows("test")) - n_bad_test
    line = f"available subset, {n_good} of the 107,859 official images"
    for step in ("verify", "train", "eval"):
        assert line in pipeline.stdout[step], step
    assert json.loads((pipeline.data / "verify.json").read_text())["n_good_test"] == n_good


def test_extract_leaves_out_every_excluded_image(pipeline: Pipeline) -> None:
    store = FeatureStore(pipeline.store)
    kept = set(store.image_ids)
    assert not kept & set(pipeline.faults)
    assert len(kept) == len(read_user_dataset(pipeline.data)) - len(pipeline.faults)


def test_train_and_eval_report_metrics(pipeline: Pipeline) -> None:
    for step in ("train", "eval"):
        assert "ZSL mAP" in pipeline.stdout[step] and "fast0tag" in pipeline.stdout[step]


@NEEDS_SHARED
def test_nus_pickle_embeds_the_converted_vocabulary_row_for_row(tmp_path: Path) -> None:
    tags = read_vocabulary(NUS_DIR / "TagList1k.txt")
    concepts = read_vocabulary(NUS_DIR / "Concepts81.txt")
    release = make_release(tmp_path / "release", tags, concepts, n_images=4, unlisted=())
    convert_nus_wide(release.root, tmp_path / "data", show_progress=False)
    names = read_user_dataset(tmp_path / "data").label_set.names
    assert len(names) == 1006
    with NUS_PICKLE.open("rb") as f:
        tag_vectors, concept_vectors = (np.asarray(a) for a in pickle.load(f, encoding="latin1"))
    expected = np.concatenate(
        [
            tag_vectors[[tags.index(n) for n in names[:925]]],  # seen: their TagList1k rows
            concept_vectors,  # unseen: the 81 concept rows, in Concepts81 order
        ]
    )
    assert list(names[925:]) == concepts
    vectors = create_embedder(f"nus:{NUS_PICKLE}").embed(list(names))  # [1006, 300]
    assert vectors.shape == (1006, 300)
    np.testing.assert_array_equal(vectors, expected.astype(np.float32))


# ---- the converter on its own: layouts and the errors it names ---------------------------------


@pytest.fixture
def small(tmp_path: Path) -> MiniRelease:
    """Seven images, made-up vocabulary, spaces between values: 3 train, 3 test, 1 on neither."""
    return make_release(tmp_path / "release", MADE_UP_TAGS, MADE_UP_CONCEPTS, n_images=7, sep=" ")


def test_image_key_accepts_every_list_style() -> None:
    assert image_key("C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg") == (
        "actor/0001_2124494179.jpg"
    )
    assert image_key("actor\\0001_2124494179.jpg\r\n") == "actor/0001_2124494179.jpg"
    assert image_key("actor/0001_2124494179.jpg") == "actor/0001_2124494179.jpg"
    assert image_key("0001_2124494179.jpg") is None


def test_other_layout_and_images_override(small: MiniRelease, tmp_path: Path) -> None:
    root = small.root
    (root / "Groundtruth/AllLabels").rename(root / "AllLabels")  # LESA's layout
    (root / "NUS_WID_Tags/TagList1k.txt").rename(root / "TagList1k.txt")
    (root / "ConceptsList/Concepts81.txt").rename(root / "Concepts81.txt")
    (root / "Flickr").rename(tmp_path / "photos")
    summary = convert_nus_wide(
        root, tmp_path / "data", images=tmp_path / "photos", show_progress=False
    )
    assert (summary.n_train, summary.n_test, summary.n_unlisted) == (3, 3, 1)
    assert summary.missing == []
    assert (tmp_path / "data/images").resolve() == (tmp_path / "photos").resolve()
    data = read_user_dataset(tmp_path / "data")
    assert all(data.path(i).is_file() for i in range(len(data)))


def test_rerun_replaces_the_link_and_drops_stale_verify_outputs(
    small: MiniRelease, tmp_path: Path
) -> None:
    out = tmp_path / "data"
    convert_nus_wide(small.root, out, show_progress=False)
    (out / "excluded.tsv").write_text("image\treason\nimages/x.jpg\tmissing: old\n")
    convert_nus_wide(small.root, out, show_progress=False)
    assert not (out / "excluded.tsv").exists()
    assert (out / "images").is_symlink() and (out / "labels.csv").is_file()


TAGS_FILE = "NUS_WID_Tags/AllTags1k.txt"
ANIMAL = "Groundtruth/AllLabels/Labels_animal.txt"
IMAGELIST = "ImageList/Imagelist.txt"
FIRST_IMAGE = "<first image>"
# case: (file under the release, line to replace (0: remove the file), new text or None to
# delete the line), then the text the one-line error must contain
BREAKAGES = {
    "no tag matrix": (TAGS_FILE, 0, None, "cannot find the image x tag matrix"),
    "no labels file": ("Groundtruth/AllLabels/Labels_vehicle.txt", 0, None, "vehicle.txt: missing"),
    "no image folder": ("Flickr", 0, None, "cannot find the image folder"),
    "short tag row": (TAGS_FILE, 3, "0 1 0", "AllTags1k.txt:3: 3 values, expected 15"),
    "tag value 2": (TAGS_FILE, 2, " ".join("2" * 15), "AllTags1k.txt:2: value '2' is not 0 or 1"),
    "tag row lost": (TAGS_FILE, 7, None, "AllTags1k.txt: 6 rows, but Imagelist lists 7"),
    "label line lost": (ANIMAL, 7, None, "Labels_animal.txt: 6 lines, but Imagelist lists 7"),
    "label not 0/1": (ANIMAL, 4, "yes", "Labels_animal.txt:4: expected 0 or 1, got 'yes'"),
    "blank label line": (ANIMAL, 2, "", "Labels_animal.txt:2: blank line inside the rows"),
    "unknown test image": (
        "ImageList/TestImagelist.txt", 1, "actor\\9999_1.jpg",
        "TestImagelist.txt:1: image actor\\9999_1.jpg is not in",
    ),
    "repeated image": (IMAGELIST, 2, FIRST_IMAGE, "Imagelist.txt:2: image actor/0000_"),
    "no folder in entry": (IMAGELIST, 2, "orphan.jpg", "Imagelist.txt:2: expected <concept>"),
}  # fmt: skip


def _break(root: Path, name: str, line_no: int, text: str | None) -> None:
    """Remove ``root/name`` (``line_no`` 0) or replace / delete one of its lines."""
    path = root / name
    if line_no == 0:
        path.rename(path.with_name(path.name + ".gone"))
        return
    lines = path.read_text().splitlines()
    if text is None:
        del lines[line_no - 1]
    else:
        lines[line_no - 1] = lines[0] if text == FIRST_IMAGE else text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_bad_release_is_one_line_error(
    small: MiniRelease,
    tmp_path: Path,
    case: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlzsl.cli import main

    monkeypatch.setenv("MLZSL_NO_PROGRESS", "1")  # stderr holds the error line alone
    *breakage, message = BREAKAGES[case]
    _break(small.root, *breakage)
    with pytest.raises(DataError) as info:
        convert_nus_wide(small.root, tmp_path / "data", show_progress=False)
    assert message in str(info.value) and "\n" not in str(info.value)
    code = main(["data", "nus-wide", "--root", str(small.root), "--out", str(tmp_path / "cli")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("mlzsl data: error:") and message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "cli/labels.csv").exists()


def test_image_in_both_lists_is_an_error(small: MiniRelease, tmp_path: Path) -> None:
    test_entry = (small.root / "ImageList/TestImagelist.txt").read_text().splitlines()[0]
    with (small.root / "ImageList/TrainImagelist.txt").open("a") as f:
        f.write(test_entry + "\r\n")
    # the train list is read first, so the test list's entry is the second listing
    with pytest.raises(
        DataError, match=r"TestImagelist.txt:1: .* already listed in TrainImagelist"
    ):
        convert_nus_wide(small.root, tmp_path / "data", show_progress=False)


def test_a_real_folder_in_place_of_the_link_is_kept_safe(
    small: MiniRelease, tmp_path: Path
) -> None:
    out = tmp_path / "data"
    (out / "images").mkdir(parents=True)
    (out / "images/mine.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="exists and is not a link"):
        convert_nus_wide(small.root, out, show_progress=False)
    assert (out / "images/mine.jpg").is_file()


def test_cli_json_and_images_option(
    small: MiniRelease, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlzsl.cli import main

    (small.root / "Flickr").rename(tmp_path / "photos")
    small.image(1).parent.mkdir(parents=True, exist_ok=True)  # recreate only the empty folder
    argv = ["data", "nus-wide", "--root", str(small.root), "--out", str(tmp_path / "data")]
    assert main([*argv, "--images", str(tmp_path / "photos"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["n_train"], summary["n_test"], summary["n_unlisted"]) == (3, 3, 1)
    assert summary["n_labels"] == len(MADE_UP_TAGS) - 4 + len(MADE_UP_CONCEPTS)
    assert summary["missing"] == []
