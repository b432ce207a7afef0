"""SIGKILL extract and train at random moments; resumed results equal an uninterrupted run.

Runs ``benchmarks/kill_harness.py`` with few trials (the script's default is 10 per command,
figures in benchmarks/README.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_harness.py"


@pytest.mark.slow
def test_killed_extract_and_train_resume_to_identical_results(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--trials", "2", "--images", "48", "--epochs", "4", "--seed", "1"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--work", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("extract: 2/2") and lines[1].startswith("train: 2/2"), lines
