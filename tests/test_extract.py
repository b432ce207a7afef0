"""`mlzsl extract`: bad files skipped and reported, SIGKILL + rerun gives the same store."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mlzsl.backbones import create_backbone
from mlzsl.cli import main
from mlzsl.images import load_image
from mlzsl.store.feature_store import FeatureStore

from .conftest import assert_same_store_content, make_image_folder

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
