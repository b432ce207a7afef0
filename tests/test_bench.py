"""`mlzsl bench quality|speed` on small inputs, through main()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlzsl.bench import QUALITY_METRICS, bench_config, published_figures
from mlzsl.cli import main
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.models import count_parameters
from mlzsl.store.extract import extract_features
from mlzsl.store.feature_store import FeatureStore
from mlzsl.training.engine import fit
from tests.conftest import make_image_folder


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
    assert json.loads((out / "quality.json").read_text()) == result
    assert result["source"].startswith("scenes") and result["photo"] is None
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


# -- on a photo folder or a store, with a config group --------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache home for the stores, sharing the user's ready photo models (built once there,
    as every other test that tags with ``photo`` does: building one takes ~20 s)."""
    from mlzsl.runtime import cache_home

    pretrained = cache_home() / "pretrained"
    pretrained.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "cache"
    home.mkdir()
    (home / "pretrained").symlink_to(pretrained, target_is_directory=True)
    monkeypatch.setenv("MLZSL_CACHE", str(home))
    return home


# the tiny folder's features: EfficientNet-Lite0 at 64 px, one epoch
TINY = ["epochs=1", "image_size=64", "backbone=efficientnet_lite0"]


def test_bench_quality_on_a_photo_folder_adds_the_photo_row(
    tmp_path: Path, cache: Path, capsys
) -> None:
    root = make_image_folder(tmp_path / "data", 24, size=64)  # 8 test images
    out = tmp_path / "bench"
    args = ["bench", "quality", *TINY, "--data", str(root), "--group", "scenes"]
    args += ["--models", "fast0tag", "ml2p", "conse", "--seeds", "1", "--out", str(out)]
    assert main([*args, "--threads", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["models"]) == ["fast0tag", "ml2p"] and result["group"] == "scenes"
    assert result["skipped"] == [{"model": "conse", "reason": "no config in group 'scenes'"}]
    for row in result["models"].values():
        assert row["seeds"] == 1 and 0 <= row["zsl.mAP"]["mean"] <= 100
    (store,) = (cache / "stores").glob("*.h5")  # both models on one cached extraction
    assert result["stores"] == {str(store): result["stores"][str(store)]}
    assert FeatureStore(store).header.meta["image_size"] == 64
    photo = result["photo"]
    assert photo["images"] == 8 and set(photo["metrics"]) == set(result["models"]["ml2p"]) - {
        "parameters",
        "seeds",
        "train_seconds",
    }
    # the photo row is what `mlzsl eval --data` reports for the ready model on the same folder
    assert main(["eval", "--data", str(root), "--json"]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert photo["metrics"]["zsl.mAP"] == pytest.approx(direct["zsl"]["mAP"])
    assert photo["metrics"]["gzsl.F1@3"] == pytest.approx(direct["gzsl"]["F1@3"])
    assert result["published"] is None and result["photo_note"] is None
    assert json.loads((out / "quality.json").read_text()) == result
    assert (out / "quality.png").stat().st_size > 1000

    # the table: both models, the photo row; a rerun reuses the store and the finished runs
    assert main([*args, "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "photo (no training)" in text and f"features: {store} (cached)" in text
    assert "skipped (no config in group 'scenes'): conse" in text
    lines = {line.split()[0] for line in text.splitlines() if line.strip()}
    assert {"fast0tag", "ml2p", "photo"} <= lines


def _benchmark_store(tmp_path: Path, name: str) -> Path:
    """A tiny store whose dataset.json names the benchmark ``name`` (Lite0, 64 px)."""
    root = make_image_folder(tmp_path / "data", 24, size=64)
    info = {"name": name, "official_test_images": 107_859, "evaluation": "default"}
    (root / "dataset.json").write_text(json.dumps(info))
    store = tmp_path / "bench.h5"
    extract_features(root, store, image_size=64, workers=0, show_progress=False)
    return store


def test_bench_quality_on_a_store_of_another_backbone_omits_the_photo_row(
    tmp_path: Path, cache: Path, capsys
) -> None:
    store = _benchmark_store(tmp_path, "NUS-WIDE")
    out = tmp_path / "bench"
    args = ["bench", "quality", "epochs=1", "--store", str(store), "--group", "scenes"]
    args += ["--models", "fast0tag", "ml2p_official", "--seeds", "1", "--out", str(out)]
    assert main([*args, "--threads", "1"]) == 0
    text = capsys.readouterr().out
    # Lite0 features, the photo model reads Lite2: no photo row, and the reason printed
    assert "photo row omitted: the store's features come from efficientnet_lite0" in text
    assert "the photo model reads efficientnet_lite2" in text and "photo (no training)" not in text
    # a NUS-WIDE store: the published figures under our row
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("fast0tag "))
    assert lines[at + 1].split()[:3] == ["published", "15.1", "27.8"]
    assert any(line.startswith("published: Liu et al., CVPR 2023") for line in lines)
    assert "skipped (takes images, the store holds feature maps): ml2p_official" in text
    assert "NUS-WIDE test set" in text

    assert main([*args, "--threads", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["photo"] is None and "efficientnet_lite2" in result["photo_note"]
    assert result["dataset"] == "NUS-WIDE" and result["published"]["benchmark"] == "nus-wide"
    assert result["published"]["models"]["fast0tag"]["gzsl.mAP"] == 3.7
    assert list(result["models"]) == ["fast0tag"]


def test_bench_quality_on_a_store_of_the_photo_backbone_scores_the_photo_row(
    tmp_path: Path, cache: Path, capsys
) -> None:
    root = make_image_folder(tmp_path / "data", 24, size=64)
    store = tmp_path / "lite2.h5"  # the photo model's backbone and weights, at a small size
    kwargs = {"image_size": 64, "workers": 0, "show_progress": False}
    extract_features(root, store, backbone="efficientnet_lite2", **kwargs)
    args = ["bench", "quality", "epochs=1", "--store", str(store), "--group", "scenes"]
    args += ["--models", "fast0tag", "--seeds", "1", "--out", str(tmp_path / "b"), "--json"]
    assert main([*args, "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    photo = result["photo"]
    assert result["photo_note"] is None and photo["images"] == 8
    assert "from the store's efficientnet_lite2 features" in photo["how"]
    assert set(photo["metrics"]) == {f"{s}.{m}" for s, m in QUALITY_METRICS}
    assert all(0 <= v <= 100 for v in photo["metrics"].values())
    assert result["published"] is None  # a plain folder: no benchmark


def test_published_figures_are_found_by_benchmark_name() -> None:
    for name in ("NUS-WIDE", "nus-wide", "nus_wide"):
        table = published_figures(name)
        assert table is not None and table["benchmark"] == "nus-wide"
        assert table["models"]["ml2p"] == {
            "zsl.mAP": 29.4,
            "zsl.F1@3": 32.8,
            "zsl.F1@5": 32.3,
            "gzsl.mAP": 10.2,
            "gzsl.F1@3": 15.8,
            "gzsl.F1@5": 19.2,
        }
        assert table["models"]["ml2p_official"] == table["models"]["ml2p"]
        assert set(table["models"]) >= {"biam", "lesa", "conse", "labelem", "kim_bilinear"}
    for name in ("Open Images V4", "open-images"):
        table = published_figures(name)
        assert table is not None and table["benchmark"] == "open-images"
        assert table["models"]["ml2p"]["zsl.mAP"] == 65.7
        assert table["models"]["conse"]["gzsl.F1@20"] == 2.4
    assert published_figures("my photos") is None and published_figures(None) is None


def test_bench_quality_rejects_a_group_without_data_and_an_unknown_group(
    tmp_path: Path, cache: Path, capsys
) -> None:
    out = ["--out", str(tmp_path / "bench")]
    assert main(["bench", "quality", "--group", "scenes", *out]) == 2
    err = capsys.readouterr().err
    assert "--group picks the configs for --data or --store" in err
    assert len(err.strip().splitlines()) == 1
    store = tmp_path / "none.h5"
    assert main(["bench", "quality", "--store", str(store), "--group", "nosuch", *out]) == 2
    err = capsys.readouterr().err
    assert "config group 'nosuch'" in err and len(err.strip().splitlines()) == 1
    assert main(["bench", "speed", "--store", str(store)]) == 2
    assert "options of `bench quality`" in capsys.readouterr().err
    assert not (tmp_path / "bench").exists()
