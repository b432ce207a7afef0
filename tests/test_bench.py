"""`mlzsl bench quality|speed` on small inputs, through main()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlzsl.cli import main


def test_bench_quality_trains_each_model_per_seed(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    small = ["--train", "48", "--test", "24", "--out", str(out), "--threads", "1", "--json"]
    # overrides come right after the word quality (argparse reads positionals together)
    models = ["fast0tag", "ml2p_official"]  # a feature-map model and the image-input one
    args = ["bench", "quality", "epochs=1", "--models", *models, "--seeds", "2", *small]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for name in models:
        row = result["models"][name]
        assert row["seeds"] == 2 and row["parameters"] > 0
        assert set(row["zsl.mAP"]) == {"mean", "std"} and 0 <= row["zsl.mAP"]["mean"] <= 100
        assert (out / "runs" / name / "seed1" / "best.pt").is_file()
    assert result["models"]["ml2p_official"]["parameters"] > 20_000_000  # the VGG19-BN trunk
    assert (out / "quality.png").stat().st_size > 1000


def test_bench_speed_reports_ratios_to_ml2p(capsys) -> None:
    assert main(["bench", "speed", "--models", "ml2p", "fast0tag", "--threads", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["matmul_peak_gflop_per_s"] > 0
    ml2p, fast = result["models"]["ml2p"], result["models"]["fast0tag"]
    assert ml2p["infer_img_per_s_vs_ml2p"] == pytest.approx(1.0)
    assert fast["infer_mflop_per_img"] < ml2p["infer_mflop_per_img"]
    assert fast["infer_mflop_per_img_vs_ml2p"] == pytest.approx(
        fast["infer_mflop_per_img"] / ml2p["infer_mflop_per_img"]
    )
