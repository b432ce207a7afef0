"""`mlzsl bench quality|speed` on small inputs, through main()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlzsl.bench import QUALITY_METRICS, bench_config
from mlzsl.cli import main
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.models import count_parameters
from mlzsl.training.engine import fit


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
    assert json.loads((out / "quality.json").read_text()) == result["models"]
    for name in models:
        # the summary is the mean and std of what each seed's run reported
        runs = [
            json.loads((out / "runs" / name / f"seed{s}" / "metrics.json").read_text())
            for s in (0, 1)
        ]
        for split, metric in QUALITY_METRICS:
            values = [run[split][metric] for run in runs]
            summary = result["models"][name][f"{split}.{metric}"]
            where = (name, split, metric)
            assert summary["mean"] == pytest.approx(np.mean(values), abs=1e-9), where
            assert summary["std"] == pytest.approx(np.std(values), abs=1e-9), where
        # the seeds really differ: another initialisation and data order, another result
        assert runs[0]["zsl"]["mAP"] != runs[1]["zsl"]["mAP"], name
        best = load_checkpoint(out / "runs" / name / "seed1" / "best.pt")
        assert best.config is not None and best.config["seed"] == 1 and best.config["epochs"] == 1
        assert result["models"][name]["parameters"] == count_parameters(best.build_model())
    # a repeated seed reproduces its run exactly, on the same store, outside the benchmark
    again = fit(
        bench_config("fast0tag", ["epochs=1", "seed=0"]),
        out / "features.h5",
        tmp_path / "again",
        quiet=True,
    )
    seed0 = json.loads((out / "runs" / "fast0tag" / "seed0" / "metrics.json").read_text())
    assert again.best.to_dict() == {"zsl": seed0["zsl"], "gzsl": seed0["gzsl"]}


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


def test_bench_speed_label_scaling_on_tiny_sizes(tmp_path: Path, capsys) -> None:
    chart = tmp_path / "scaling.png"
    args = ["bench", "speed", "--labels", "3", "40", "--features", "8x4x4", "--embed-dim", "6"]
    args += ["--batch", "2", "--repeat", "1", "--threads", "1", "--chart", str(chart), "--json"]
    assert main([*args, "--models", "ml2p", "ml2p:input_pool=2", "biam"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["labels"] == [3, 40] and result["matmul_peak_gflop_per_s"] > 0
    assert list(result["heads"]) == ["ml2p", "ml2p:input_pool=2", "biam"]
    full, pooled = result["heads"]["ml2p"]["rows"], result["heads"]["ml2p:input_pool=2"]["rows"]
    assert [r["labels"] for r in full] == [3, 40]
    assert all(r["ms_per_img"] > 0 and r["peak_share"] > 0 for r in full + pooled)
    # the 2×2 pool leaves P = 4 of 16 positions: fewer FLOPs, the same parameters but the mixer's
    assert pooled[0]["gflop_per_img"] < full[0]["gflop_per_img"]
    biam = result["heads"]["biam"]["rows"]
    assert biam[1]["gflop_per_img"] > biam[0]["gflop_per_img"]  # per-region scores grow with L
    assert chart.stat().st_size > 1000


def test_bench_speed_rejects_bad_sizes_and_specs(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "speed", "--labels", "3", "--features", "8x4"])
    assert exit_info.value.code == 2
    assert "CxHxW" in capsys.readouterr().err
    args = ["bench", "speed", "--labels", "3", "--features", "8x4x4", "--embed-dim", "6"]
    assert main([*args, "--models", "ml2p:input_pool"]) == 2  # key without a value
    assert "expected NAME[:key=value,...]" in capsys.readouterr().err
