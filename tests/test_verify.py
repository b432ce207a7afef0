"""``mlzsl data verify``: each fault found and named, outputs written whole, the test-set line;
the old spelling ``mlzsl verify-data`` still works after a one-line notice."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlzsl.datasets.dataset_info import DatasetInfo, write_dataset_info
from mlzsl.datasets.userdata import write_user_dataset
from mlzsl.datasets.verify import (
    EXCLUDED_FILE,
    MANIFEST_FILE,
    SUMMARY_FILE,
    check_file,
    classify,
    read_exclusions,
    verify_data,
)
from mlzsl.errors import ConfigError, DataError
from mlzsl.labels import LabelSet

from .conftest import write_tall_folder

LABELS = LabelSet.from_lists(["sky", "water"], ["beach"])


def _jpeg(seed: int, side: int = 96) -> bytes:
    """A random-noise JPEG, about 9 KB at 96 px."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _gif() -> bytes:
    """A flat grey GIF standing in for Flickr's "photo unavailable" image."""
    buf = io.BytesIO()
    Image.new("RGB", (500, 375), (180, 180, 180)).save(buf, "GIF")
    return buf.getvalue()


def make_folder(root: Path, files: dict[str, bytes | None], test: set[str] = frozenset()) -> Path:
    """A data folder listing ``files`` (``None``: listed but absent); names in ``test`` are test."""
    for name, content in files.items():
        if content is not None:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)
    rows = [(name, "test" if name in test else "train", ["sky"]) for name in files]
    write_user_dataset(root, LABELS, rows)
    return root


@pytest.fixture
def faulty(tmp_path: Path) -> Path:
    """Two good images and one of each fault, spread over both splits."""
    truncated = _jpeg(9, side=160)
    files = {
        "img/good1.jpg": _jpeg(1),
        "img/good2.jpg": _jpeg(2),
        "img/gone.jpg": None,
        "img/p1.gif": _gif(),
        "img/p2.gif": _gif(),
        "img/p3.gif": _gif(),
        "img/tiny.jpg": _jpeg(3, side=8),
        "img/broken.jpg": truncated[: len(truncated) // 2],
        "img/text.jpg": b"not an image at all " * 300,
    }
    test = {"img/good1.jpg", "img/gone.jpg", "img/p1.gif", "img/broken.jpg"}
    return make_folder(tmp_path / "data", files, test)


EXPECTED = {
    "img/gone.jpg": "missing",
    "img/p1.gif": "placeholder",
    "img/p2.gif": "placeholder",
    "img/p3.gif": "placeholder",
    "img/tiny.jpg": "tiny",
    "img/broken.jpg": "unreadable",
    "img/text.jpg": "unreadable",
}


def _manifest(root: Path) -> dict[str, dict[str, str]]:
    with (root / MANIFEST_FILE).open(newline="") as f:
        return {row["image"]: row for row in csv.DictReader(f)}


def test_every_fault_is_found_and_named(faulty: Path) -> None:
    summary = verify_data(faulty, workers=2, show_progress=False)
    excluded = read_exclusions(faulty)
    assert _statuses(faulty) == EXPECTED
    assert "truncated" in excluded["img/broken.jpg"]
    assert "cannot identify image file" in excluded["img/text.jpg"]
    assert "same bytes in 3 files" in excluded["img/p2.gif"]
    assert excluded["img/tiny.jpg"].startswith("tiny: ") and "< 4,000" in excluded["img/tiny.jpg"]
    assert summary.faults == {"missing": 1, "placeholder": 3, "tiny": 1, "unreadable": 2}
    assert summary.counts["test"] == {
        "ok": 1, "missing": 1, "placeholder": 1, "tiny": 0, "unreadable": 1,
    }  # fmt: skip
    assert summary.n_good_test == 1 and summary.n_images == 9
    assert list(summary.placeholders.values()) == [3]


def test_manifest_lists_every_image_with_size_digest_and_status(faulty: Path) -> None:
    verify_data(faulty, show_progress=False)
    manifest = _manifest(faulty)
    assert list(manifest) == list(_manifest_order(faulty))
    good = manifest["img/good1.jpg"]
    content = (faulty / "img/good1.jpg").read_bytes()
    assert good["split"] == "test" and good["status"] == "ok"
    assert int(good["bytes"]) == len(content)
    assert good["sha256"] == hashlib.sha256(content).hexdigest()
    assert manifest["img/gone.jpg"]["bytes"] == "" and manifest["img/gone.jpg"]["sha256"] == ""
    assert {n: r["status"] for n, r in manifest.items() if r["status"] != "ok"} == EXPECTED


def _manifest_order(root: Path) -> list[str]:
    with (root / "labels.csv").open(newline="") as f:
        return [row["image"] for row in csv.DictReader(f)]


def test_excluded_tsv_format_is_exact(faulty: Path) -> None:
    verify_data(faulty, show_progress=False)
    lines = (faulty / EXCLUDED_FILE).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "image\treason"
    assert all(line.count("\t") == 1 for line in lines)
    assert [line.split("\t")[0] for line in lines[1:]] == [
        n for n in _manifest_order(faulty) if n in EXPECTED
    ]
    assert not list(faulty.glob("*.tmp"))


def test_placeholder_threshold(tmp_path: Path) -> None:
    twice = {"a.gif": _gif(), "b.gif": _gif(), "c.jpg": _jpeg(0)}
    root = make_folder(tmp_path / "d", twice)
    verify_data(root, show_progress=False)
    assert _statuses(root) == {"a.gif": "tiny", "b.gif": "tiny"}  # 2 copies, fewer than 3
    verify_data(root, placeholder_min=2, show_progress=False)
    assert _statuses(root) == {"a.gif": "placeholder", "b.gif": "placeholder"}


def _statuses(root: Path) -> dict[str, str]:
    return {image: reason.split(":")[0] for image, reason in read_exclusions(root).items()}


def test_large_identical_copies_are_placeholders_too(tmp_path: Path) -> None:
    same = _jpeg(5)
    root = make_folder(tmp_path / "d", {f"{i}.jpg": same for i in range(3)} | {"x.jpg": _jpeg(6)})
    summary = verify_data(root, show_progress=False)
    assert summary.faults["placeholder"] == 3 and summary.counts["train"]["ok"] == 1


def test_size_cut_off_is_exact(tmp_path: Path) -> None:
    small = _jpeg(7, side=8)  # a valid JPEG, padded after its end marker (decoders ignore that)
    files = {f"{n}.jpg": small + b"\0" * (n - len(small)) for n in (3999, 4000)}
    root = make_folder(tmp_path / "d", files)
    verify_data(root, show_progress=False)
    assert _statuses(root) == {"3999.jpg": "tiny"}  # 4,000 bytes and up are kept
    verify_data(root, min_bytes=4001, show_progress=False)
    assert _statuses(root) == {"3999.jpg": "tiny", "4000.jpg": "tiny"}


def test_min_bytes_and_no_decode(faulty: Path) -> None:
    summary = verify_data(faulty, min_bytes=0, decode=False, show_progress=False)
    excluded = read_exclusions(faulty)
    assert summary.faults == {"missing": 1, "placeholder": 3, "tiny": 0, "unreadable": 0}
    assert "img/tiny.jpg" not in excluded and "img/broken.jpg" not in excluded


def test_threads_and_one_thread_agree(faulty: Path) -> None:
    verify_data(faulty, workers=1, show_progress=False)
    one = (faulty / MANIFEST_FILE).read_text(), (faulty / EXCLUDED_FILE).read_text()
    verify_data(faulty, workers=4, show_progress=False)
    assert ((faulty / MANIFEST_FILE).read_text(), (faulty / EXCLUDED_FILE).read_text()) == one


@pytest.mark.parametrize(
    "official, expected",
    [
        (1, "NUS-WIDE test set: official, all 1 images"),
        (107_859, "NUS-WIDE test set: available subset, 1 of the 107,859 official images"),
        (None, "test set: 1 usable images (no dataset.json"),
    ],
)
def test_test_set_line_counts_usable_test_images(
    faulty: Path, official: int | None, expected: str
) -> None:
    if official is not None:
        write_dataset_info(faulty, DatasetInfo("NUS-WIDE", official_test_images=official))
    summary = verify_data(faulty, show_progress=False)
    assert summary.test_set.startswith(expected)
    saved = json.loads((faulty / SUMMARY_FILE).read_text())
    assert saved["test_set"] == summary.test_set and saved["n_good_test"] == 1
    assert saved["faults"]["placeholder"] == 3 and saved["counts"]["train"]["tiny"] == 1


def test_check_file_reads_in_chunks_and_reports(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x01" * (3 << 20))  # three hashing chunks
    check = check_file(big, decode=False)
    assert check.size == 3 << 20 and check.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    assert check_file(tmp_path / "none.jpg").size is None
    assert "cannot identify" in check_file(big).error


def test_classify_order_of_precedence() -> None:
    from mlzsl.datasets.verify import FileCheck

    checks = [
        FileCheck(None, error="no such file"),
        FileCheck(10, "d", "broken"),  # tiny, unreadable and repeated: a placeholder first
        FileCheck(10, "d", ""),
        FileCheck(10, "e", "broken"),  # tiny before unreadable
        FileCheck(5000, "f", "broken"),
        FileCheck(5000, "g", ""),
    ]
    verdicts, placeholders = classify(checks, min_bytes=4000, placeholder_min=2)
    statuses = [status for status, _ in verdicts]
    assert statuses == ["missing", "placeholder", "placeholder", "tiny", "unreadable", "ok"]
    assert placeholders == {"d": 2}


def test_bad_arguments_and_folders(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        verify_data(tmp_path, placeholder_min=1)
    with pytest.raises(DataError, match="no such data folder"):
        verify_data(tmp_path / "absent")
    (tmp_path / EXCLUDED_FILE).write_text("path,why\n")
    with pytest.raises(DataError, match="excluded.tsv:1: expected the header"):
        read_exclusions(tmp_path)


def test_cli_prints_counts_faults_and_test_set_line(faulty: Path, capsys) -> None:
    from mlzsl.cli import main

    write_dataset_info(faulty, DatasetInfo("NUS-WIDE", official_test_images=107_859))
    assert main(["data", "verify", str(faulty), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    for image, status in EXPECTED.items():
        assert any(image in line and status in line for line in out.splitlines()), image
    assert "available subset, 1 of the 107,859" in out
    assert "7 images excluded" in out
    assert main(["data", "verify", str(faulty), "--json", "--min-bytes", "0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["faults"] == {"missing": 1, "placeholder": 3, "tiny": 0, "unreadable": 2}


def test_cli_error_is_one_line(tmp_path: Path, capsys) -> None:
    from mlzsl.cli import main

    assert main(["data", "verify", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlzsl data: error:") and len(err.splitlines()) == 1


def test_the_old_spelling_still_works_after_a_one_line_notice(faulty: Path, capsys) -> None:
    from mlzsl.cli import main

    assert main(["verify-data", str(faulty), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["faults"]["missing"] == 1
    assert (
        captured.err.strip() == "mlzsl verify-data: note: this command is now `mlzsl data verify`"
    )
    assert main(["verify-data", str(faulty / "absent")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[1].startswith("mlzsl verify-data: error:")


def test_verifying_a_tall_folder_never_makes_the_targets_dense(tmp_path: Path) -> None:
    # 30k rows × 30k labels (dense targets: 900 MB), no image on disk: every row is checked
    n_rows, n_labels = 30_000, 30_000
    root = write_tall_folder(tmp_path, n_rows, n_labels)
    tracemalloc.start()
    try:
        summary = verify_data(root, workers=1, show_progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # per row its path, entries, check and verdict (~0.5 KB), plus the vocabulary: ~20 MB
    assert peak < n_rows * n_labels // 20
    assert summary.faults["missing"] == n_rows
    with (root / MANIFEST_FILE).open() as f:
        assert sum(1 for _ in f) == n_rows + 1
