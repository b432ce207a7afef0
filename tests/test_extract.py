"""`mlzsl extract`: bad files skipped and reported, SIGKILL + rerun gives the same store."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from mlzsl.backbones import create_backbone
from mlzsl.cli import main
from mlzsl.datasets.userdata import read_user_dataset
from mlzsl.images import load_image
from mlzsl.store import extract
from mlzsl.store.feature_store import FeatureStore
from mlzsl.store.sparse_labels import label_blocks

from .conftest import (
    assert_same_store_content,
    dense_reference,
    make_image_folder,
    write_tall_folder,
)

EXTRACT = ["--backbone", "efficientnet_lite0", "--threads", "1"]


def _add_bad_files(root: Path) -> list[str]:
    """Add four broken files to the folder's labels.csv; return their names."""
    good = (root / "images" / "img_0000.png").read_bytes()
    bad = {
        "images/corrupt.png": good[:60] + bytes(range(256)) * 8,  # valid header, garbage body
        "images/truncated.png": good[: len(good) // 2],
        "images/empty.png": b"",
        "images/notes.jpg": b"these are words, not pixels\n" * 10,
    }
    for name, data in bad.items():
        (root / name).write_bytes(data)
    with (root / "labels.csv").open("a", newline="") as f:
        w = csv.writer(f)
        for i, name in enumerate(bad):  # interleave splits so both lose a row
            w.writerow([name, "train" if i % 2 else "test", "red circle"])
    return sorted(bad)


def test_bad_files_are_skipped_and_reported(tmp_path: Path, capsys) -> None:
    root = make_image_folder(tmp_path / "data", 10)
    bad = _add_bad_files(root)
    out = tmp_path / "store.h5"
    code = main(["extract", str(root), "--out", str(out), "--image-size", "64", *EXTRACT])
    assert code == 0
    assert "4 skipped" in capsys.readouterr().out
    report = (tmp_path / "store.h5.skipped.tsv").read_text().splitlines()
    assert report[0] == "image\treason"
    assert sorted(line.split("\t")[0] for line in report[1:]) == bad
    store = FeatureStore(out)
    assert store.image_ids == [f"images/img_{i:04d}.png" for i in range(10)]
    assert store.header.meta["n_skipped"] == 4
    assert store.header.backbone["name"] == "efficientnet_lite0"
    assert store.header.meta["image_size"] == 64
    # a stored map equals the backbone run directly on that image (float16 storage)
    model = create_backbone("efficientnet_lite0").eval()
    mean, std = np.asarray(model.spec.mean, np.float32), np.asarray(model.spec.std, np.float32)
    pixels = torch.from_numpy(load_image(root / store.image_ids[3], 64, mean, std))
    with torch.inference_mode():
        direct = model(pixels[None])[0].numpy()
    np.testing.assert_allclose(store.features(3), direct, rtol=1e-2, atol=1e-2)
    assert not (tmp_path / "store.h5.parts").exists()
    assert not (tmp_path / "store.h5.lock").exists()


def test_rerun_of_finished_store_is_a_no_op(image_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "s.h5"
    args = ["extract", str(image_folder), "--out", str(out), "--image-size", "32", *EXTRACT]
    assert main(args) == 0
    mtime = out.stat().st_mtime_ns
    assert main(args) == 0
    assert "up to date" in capsys.readouterr().out
    assert out.stat().st_mtime_ns == mtime


def test_missing_folder_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["extract", str(tmp_path / "nope"), "--out", str(tmp_path / "s.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlzsl extract: error:") and "\n" not in err


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_same_store(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", 64, size=96)
    env = {**os.environ, "MLZSL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "mlzsl",
        "extract",
        str(root),
        "--image-size",
        "160",
        "--batch-size",
        "4",
        "--workers",
        "0",
        *EXTRACT,
    ]
    whole = tmp_path / "whole.h5"
    subprocess.run([*cmd, "--out", str(whole)], check=True, env=env, capture_output=True)

    killed = tmp_path / "killed.h5"
    parts = tmp_path / "killed.h5.parts"
    kills = 0
    for wanted_blocks in (3, 9):  # kill twice, at different points
        proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(parts.glob("block-*.npz"))) >= wanted_blocks:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.005)
        proc.wait()
        assert not killed.exists(), "a killed run must not leave a store looking complete"
    assert kills == 2
    done = subprocess.run([*cmd, "--out", str(killed)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "blocks resumed" in done.stdout

    assert_same_store_content(whole, killed)
    ids = FeatureStore(killed).image_ids
    assert len(ids) == 64 and len(set(ids)) == 64


def test_bad_arguments_exit_2(image_folder: Path, tmp_path: Path, capsys) -> None:
    out = ["--out", str(tmp_path / "s.h5")]
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects it before any work
        main(["extract", str(image_folder), *out, "--batch-size", "0"])
    assert exit_info.value.code == 2
    assert main(["extract", str(image_folder), *out, "--backbone", "nonexistent"]) == 2
    assert "nonexistent" in capsys.readouterr().err


def _write_partial_labels(root: Path, rows: list[tuple[str, str, str, str]]) -> None:
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "split", "labels", "negatives"])
        w.writerows(rows)


def test_store_labels_are_the_folders_targets_and_bind_the_job(tmp_path: Path, capsys) -> None:
    root = make_image_folder(tmp_path / "data", 8)
    names = [f"images/img_{i:04d}.png" for i in range(8)]
    # partial annotation; green circle and blue star are unseen: hidden on the train rows
    rows = []
    for i, name in enumerate(names):
        split = "test" if i % 3 == 0 else "train"
        if i % 2:
            rows.append((name, split, "red circle|green circle", "blue star|red square"))
        else:
            rows.append((name, split, "blue square", ""))
    _write_partial_labels(root, rows)
    out = tmp_path / "s.h5"
    args = ["extract", str(root), "--out", str(out), "--backbone", "pixels", "--image-size", "32"]
    args += ["--workers", "0"]
    assert main(args) == 0
    np.testing.assert_array_equal(FeatureStore(out).labels(), dense_reference(root))
    capsys.readouterr()
    # the same targets spelt otherwise (order, a repeat): the same job, the store is up to date
    _write_partial_labels(
        root, [(n, s, "|".join(reversed(p.split("|"))) + f"|{p}", q) for n, s, p, q in rows]
    )
    assert main(args) == 0
    assert "up to date" in capsys.readouterr().out
    # one label changed: another job, whose store has the new label
    _write_partial_labels(root, [rows[0][:2] + ("green star", ""), *rows[1:]])
    assert main(args) == 0
    assert "up to date" not in capsys.readouterr().out
    labels = FeatureStore(out).labels()
    np.testing.assert_array_equal(labels, dense_reference(root))
    assert labels[0, 2] == 1  # green star


def test_label_blocks_of_a_tall_folder_are_dense_one_block_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(extract, "_LABEL_ROWS", 512)
    n_rows, n_labels = 40_000, 5_000  # dense targets: 200 MB; one block of 512 rows: 2.5 MB
    dataset = read_user_dataset(write_tall_folder(tmp_path, n_rows, n_labels))
    kept = np.arange(0, n_rows, 2)  # say every other image decoded
    tracemalloc.start()
    try:
        digest = dataset.labels.digest()  # what the job fingerprint hashes
        blocks = list(label_blocks(extract._label_blocks(dataset, kept)))  # what the store takes
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(digest) == 64
    assert peak < 8 * 512 * n_labels  # a few dense blocks' worth, whatever N; N·L is 78 of them
    assert sum(b.shape[0] for b in blocks) == len(kept)
    for i in (0, len(blocks) - 1):  # the blocks hold the kept rows' targets
        np.testing.assert_array_equal(
            blocks[i].to_dense(), dataset.target_rows(kept[i * 512 : (i + 1) * 512])
        )
