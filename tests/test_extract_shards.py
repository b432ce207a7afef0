"""`mlzsl extract` at scale: shards, torchrun ranks, the assembly lock, the exclusions of
`mlzsl data verify`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import pytest
import torch

from mlzsl.cli import main
from mlzsl.errors import DataError
from mlzsl.store.extract import (
    EXCLUDED_PREFIX,
    ExtractionSummary,
    extract_features,
)
from mlzsl.store.lock import LOCK_STALE_SECONDS

from .conftest import assert_same_store_content, make_image_folder

N_IMAGES, BLOCK = 10, 4  # three blocks: 4 + 4 + 2 rows
FAST = {"image_size": 64, "batch_size": BLOCK, "workers": 0, "show_progress": False}
CLI_FAST = ["--image-size", "64", "--batch-size", str(BLOCK), "--workers", "0", "--threads", "1"]
ENV = {**os.environ, "MLZSL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def _extract(root: Path, out: Path, **kwargs: Any) -> ExtractionSummary:
    return extract_features(root, out, **{**FAST, **kwargs})


def _assert_clean(out: Path) -> None:
    """A finished store leaves neither parts nor lock nor temporary files beside it."""
    leftovers = sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name + "."))
    assert leftovers == [out.name + ".skipped.tsv"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A data folder and its store from one unsharded run."""
    torch.set_num_threads(1)
    root = make_image_folder(tmp_path_factory.mktemp("shards") / "data", N_IMAGES, size=64)
    whole = root.parent / "whole.h5"
    summary = _extract(root, whole)
    assert summary.complete and summary.n_written == N_IMAGES and summary.shard is None
    return root, whole


def test_two_shards_in_turn_equal_an_unsharded_run(reference: tuple[Path, Path]) -> None:
    root, whole = reference
    out = root.parent / "in_turn.h5"
    first = _extract(root, out, shard=(0, 2))  # blocks 0 and 2
    assert first.blocks_missing == 1 and not first.complete and not out.exists()
    second = _extract(root, out, shard=(1, 2))  # block 1, then every block is there: assemble
    assert second.complete and second.n_written == N_IMAGES and second.shard == (1, 2)
    assert second.n_processed == BLOCK
    assert_same_store_content(whole, out)
    _assert_clean(out)


def test_lone_shard_reports_missing_blocks_then_plain_rerun_assembles(
    reference: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, whole = reference
    out = root.parent / "lone.h5"
    assert main(["extract", str(root), "--out", str(out), *CLI_FAST, "--shard", "0/2"]) == 0
    said = capsys.readouterr().out
    assert "shard 0/2 done: 1 blocks still missing; rerun `mlzsl extract` (without --shard)" in said
    assert not out.exists() and (root.parent / "lone.h5.parts").is_dir()
    assert main(["extract", str(root), "--out", str(out), *CLI_FAST]) == 0
    assert "10 images written, 0 skipped, 2 blocks resumed" in capsys.readouterr().out
    assert_same_store_content(whole, out)
    _assert_clean(out)


@pytest.mark.slow
def test_torchrun_two_processes_match_one(reference: tuple[Path, Path]) -> None:
    root, whole = reference
    out = root.parent / "torchrun.h5"
    # block 0 done beforehand (and by another shard count): rank 0 then owes block 2 (2 images),
    # rank 1 block 1 (4 images), so rank 0 assembles too early unless the barrier holds it
    assert _extract(root, out, shard=(0, 3)).blocks_missing == 2
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    done = subprocess.run(
        [*torchrun, "--nproc_per_node", "2", "-m", "mlzsl", "extract", str(root)]
        + ["--out", str(out), *CLI_FAST],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("images written") == 1, done.stdout  # rank 0 alone prints
    assert_same_store_content(whole, out)
    _assert_clean(out)


@pytest.mark.slow
def test_two_shards_started_together_give_one_good_store(reference: tuple[Path, Path]) -> None:
    root, whole = reference
    out = root.parent / "together.h5"
    cmd = [sys.executable, "-m", "mlzsl", "extract", str(root), "--out", str(out), *CLI_FAST]
    procs = [
        subprocess.Popen([*cmd, "--shard", f"{i}/2"], env=ENV, stdout=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    said = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], said
    assert "".join(said).count("images written") == 1, said  # exactly one assembled
    assert_same_store_content(whole, out)
    _assert_clean(out)


def _write_exclusions(root: Path, *lines: str) -> None:
    (root / "excluded.tsv").write_text("\n".join(["image\treason", *lines]) + "\n")


def test_verify_data_exclusions_are_skipped_and_part_of_the_job(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", 6, size=64)
    _write_exclusions(
        root,
        "images/img_0004.png\tunder 4000 bytes",
        "images/img_0001.png\tplaceholder (same bytes as 812 other files)",
        "images/not_in_labels.png\tmissing",  # not in labels.csv: ignored
    )
    out = tmp_path / "s.h5"
    summary = _extract(root, out)
    expected = [
        ("images/img_0001.png", EXCLUDED_PREFIX + "placeholder (same bytes as 812 other files)"),
        ("images/img_0004.png", EXCLUDED_PREFIX + "under 4000 bytes"),
    ]
    assert summary.skipped == expected and summary.n_written == 4
    report = (tmp_path / "s.h5.skipped.tsv").read_text().splitlines()
    assert report[1:] == [f"{image}\t{why}" for image, why in expected]
    with h5py.File(out) as f:
        ids = [s.decode() for s in f["image_ids"][()]]
    assert ids == [f"images/img_{i:04d}.png" for i in (0, 2, 3, 5)]
    assert _extract(root, out).up_to_date

    _write_exclusions(root, "images/img_0001.png\tplaceholder (same bytes as 812 other files)")
    again = _extract(root, out)
    assert not again.up_to_date and again.n_written == 5  # a changed list is another job
    assert [image for image, _ in again.skipped] == ["images/img_0001.png"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("image,reason\nimages/img_0000.png,missing\n", 1),
        ("image\treason\nimages/img_0000.png\tmissing\nimages/img_0001.png missing\n", 3),
        ("image\treason\n\timages/img_0000.png\n", 2),
    ],
)
def test_malformed_exclusions_name_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int
) -> None:
    root = make_image_folder(tmp_path / "data", 2, size=64)
    (root / "excluded.tsv").write_text(text)
    with pytest.raises(DataError, match=rf"excluded\.tsv:{line}:"):
        _extract(root, tmp_path / "s.h5")
    assert main(["extract", str(root), "--out", str(tmp_path / "s.h5"), *CLI_FAST]) == 2
    assert f"excluded.tsv:{line}:" in capsys.readouterr().err


def _kill_while_holding_lock(lock: Path) -> None:
    """Run a process that takes the store lock and is SIGKILLed while holding it."""
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from mlzsl.store.lock import StoreLock\n"
        "assert StoreLock(Path(sys.argv[1]), wait=False).__enter__().held\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(lock)], env=ENV, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert lock.exists()


def test_lock_of_a_killed_process_does_not_block_a_rerun(reference: tuple[Path, Path]) -> None:
    root, whole = reference
    out = root.parent / "killed_lock.h5"
    _kill_while_holding_lock(root.parent / "killed_lock.h5.lock")
    # in a subprocess with a timeout: a lock judged live would make the plain run wait for it
    cmd = [sys.executable, "-m", "mlzsl", "extract", str(root), "--out", str(out), *CLI_FAST]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "10 images written" in done.stdout, done.stderr[-2000:]
    assert_same_store_content(whole, out)
    _assert_clean(out)


def test_live_lock_is_respected_and_an_old_one_is_broken(reference: tuple[Path, Path]) -> None:
    root, whole = reference
    out = root.parent / "held.h5"
    lock = root.parent / "held.h5.lock"
    _extract(root, out, shard=(0, 2))
    lock.write_text('{"host": "another-machine", "pid": 1, "token": "theirs"}')
    busy = _extract(root, out, shard=(1, 2))  # every block there, but someone is assembling
    assert busy.assembling_elsewhere and not busy.complete and not out.exists()
    assert lock.read_text().endswith('"theirs"}')  # left alone
    old = time.time() - LOCK_STALE_SECONDS - 60  # its holder stopped refreshing it: died
    os.utime(lock, (old, old))
    summary = _extract(root, out)
    assert summary.complete and summary.blocks_reused == 3 and summary.n_processed == 0
    assert_same_store_content(whole, out)
    _assert_clean(out)


def test_shard_refuses_parts_of_another_job_a_plain_run_replaces_them(
    reference: tuple[Path, Path],
) -> None:
    root, _ = reference
    out = root.parent / "other_job.h5"
    _extract(root, out, shard=(0, 2))
    with pytest.raises(DataError, match="other_job.h5.parts: holds blocks of another extraction"):
        _extract(root, out, shard=(1, 2), image_size=32)  # different settings: another job
    summary = _extract(root, out, image_size=32)
    assert summary.complete and summary.blocks_reused == 0
    with h5py.File(out) as f:
        assert f.attrs["image_size"] == 32
    _assert_clean(out)


@pytest.mark.parametrize("shard", ["2/2", "1", "a/b", "-1/2"])
def test_bad_shard_is_refused_by_argparse(reference: tuple[Path, Path], shard: str) -> None:
    root, _ = reference
    with pytest.raises(SystemExit) as exit_info:
        main(["extract", str(root), "--out", str(root.parent / "x.h5"), "--shard", shard])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("device", ["tpu", "cuda"])
def test_unusable_device_is_one_line_exit_2(
    reference: tuple[Path, Path], capsys: pytest.CaptureFixture[str], device: str
) -> None:
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    root, _ = reference
    out = root.parent / "device.h5"
    assert main(["extract", str(root), "--out", str(out), *CLI_FAST, "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlzsl extract: error: device") and device in err
    assert not out.exists()
