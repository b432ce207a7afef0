"""End to end through ``mlzsl.cli.main``: scenes -> extract -> train -> eval -> tag, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mlzsl
from mlzsl.cli import main
from mlzsl.config import load_config
from mlzsl.demo import DEMO_MODELS, run_demo
from mlzsl.errors import ConfigError
from mlzsl.inference.tagger import Tagger
from mlzsl.models import list_models, model_inputs
from mlzsl.training.engine import build_model, make_optimizer


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small scenes data, its store and a trained fast0tag run, all through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    data, store, run = root / "scenes", root / "s.h5", root / "run"
    assert (
        main(["scenes", "--out", str(data), "--train", "48", "--test", "24", "--size", "64"]) == 0
    )
    assert (
        main(["extract", str(data), "--out", str(store), "--workers", "0", "--threads", "1"]) == 0
    )
    code = main(
        [
            "train",
            "--store",
            str(store),
            "--model",
            "fast0tag",
            "--out",
            str(run),
            "--threads",
            "1",
            "epochs=2",
            "batch_size=16",
        ]
    )
    assert code == 0
    return {"data": data, "store": store, "ckpt": run / "best.pt", "root": root}


def _json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_json_has_percent_metrics(pipeline: dict[str, Path], capsys) -> None:
    capsys.readouterr()
    args = ["eval", "--checkpoint", str(pipeline["ckpt"]), "--store", str(pipeline["store"])]
    assert main([*args, "--json", "--per-label", str(pipeline["root"] / "pl")]) == 0
    out = _json(capsys)
    for split in ("zsl", "gzsl"):
        assert {"mAP", "P@3", "R@3", "F1@3", "P@5", "R@5", "F1@5"} <= set(out[split])
        assert 0 <= out[split]["mAP"] <= 100
    assert (pipeline["root"] / "pl" / "per_label_zsl.csv").is_file()


def test_tag_and_the_python_api_agree(pipeline: dict[str, Path], capsys) -> None:
    images = sorted((pipeline["data"] / "images").glob("test_*.png"))[:3]
    capsys.readouterr()
    labels = "red star, blue heart, green ring"
    code = main(
        [
            "tag",
            *map(str, images),
            "--labels",
            labels,
            "--checkpoint",
            str(pipeline["ckpt"]),
            "--top-k",
            "2",
            "--json",
        ]
    )
    assert code == 0
    out = _json(capsys)["images"]
    tags = Tagger.from_checkpoint(pipeline["ckpt"]).tag(images, labels, top_k=2)
    for image, row in zip(images, tags, strict=True):
        assert [t["label"] for t in out[str(image)]] == [t.label for t in row]
        assert row[0].score >= row[1].score


def test_models_lists_the_registry(capsys) -> None:
    assert main(["models", "--json"]) == 0
    models = _json(capsys)["models"]
    assert {"ml2p", "fast0tag"} <= set(models) and all(n > 0 for n in models.values())


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing-checkpoint", "checkpoint not found"),
        ("vector-size", "label vectors"),
        ("empty-labels", "no labels given"),
        ("not-an-image", "not a readable image"),
        ("unknown-word", "zzzqqq"),
        ("malformed-config", "malformed YAML"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    pipeline: dict[str, Path], tmp_path: Path, capsys, case: str, message: str
) -> None:
    image = str(next((pipeline["data"] / "images").glob("test_*.png")))
    ckpt = ["--checkpoint", str(pipeline["ckpt"])]
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    config = tmp_path / "c.yaml"
    config.write_text("lr: [1\n")
    args = {
        "missing-checkpoint": ["tag", image, "--labels", "red star", "--checkpoint", "nope.pt"],
        "vector-size": ["tag", image, "--labels", "red star", *ckpt, "--embedder", "minilm"],
        "empty-labels": ["tag", image, "--labels", " , ", *ckpt],
        "not-an-image": ["tag", str(text), "--labels", "red star", *ckpt],
        "unknown-word": ["tag", image, "--labels", "zzzqqq star", *ckpt],
        "malformed-config": [
            "train",
            "--store",
            str(pipeline["store"]),
            "--out",
            str(tmp_path / "r"),
            "--config",
            str(config),
        ],
    }[case]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


SHIPPED = sorted((Path(mlzsl.__file__).parent / "configs").glob("*/*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_config_builds(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the benchmark configs name the user's files through environment variables
    for name in ("MLZSL_NUS_VECTORS", "MLZSL_GLOVE_300D"):
        monkeypatch.setenv(name, "/data/vectors")
    monkeypatch.setenv("MLZSL_VGG19_BN_WEIGHTS", "random")
    monkeypatch.setenv("MLZSL_VGG19_WEIGHTS", "random")
    config = load_config(path)
    assert config.model == path.stem
    assert load_config(f"{path.parent.name}/{path.stem}") == config  # by packaged name
    if "/data/vectors" in config.embedder:
        assert config.embedder.endswith(":/data/vectors")
    # feature maps: VGG19 conv5_4 at 224 px, what the benchmark configs read (nus_wide/ml2p and
    # open_images/ml2p pool it 2×2 to the release's 7×7, so it needs even sides)
    shape = (3, 64, 64) if model_inputs(config.model) == "images" else (512, 14, 14)
    model = build_model(config, shape, 50)
    optimizer = make_optimizer(config, model.parameters())
    assert optimizer is not None
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}
    assert type(optimizer) is kinds[config.optimizer]
    (group,) = optimizer.param_groups
    assert group["lr"] == config.lr and group["weight_decay"] == config.weight_decay
    assert config.lr > 0
    # exactly the model's parameters, each once, in order
    assert [id(p) for p in group["params"]] == [id(p) for p in model.parameters()]
    for key, value in config.optimizer_args.items():  # e.g. LESA's RMSProp momentum
        assert group[key] == (tuple(value) if isinstance(value, list) else value), key


def test_benchmark_configs_cover_every_model_and_name_unset_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shipped = {(p.parent.name, p.stem) for p in SHIPPED}
    for group in ("nus_wide", "open_images"):
        assert {(group, m) for m in list_models(trainable=True)} <= shipped
    monkeypatch.delenv("MLZSL_NUS_VECTORS", raising=False)
    with pytest.raises(ConfigError, match=r"MLZSL_NUS_VECTORS.*not set"):
        load_config("nus_wide/lesa")
    assert load_config("nus_wide/lesa", ["embedder=glove50"]).embedder == "glove50"
    with pytest.raises(ConfigError, match="packaged: .*nus_wide/lesa"):
        load_config("nus_wide/no_such_model")


def test_every_model_has_paper_settings_and_the_demo_models_scenes_ones() -> None:
    shipped = {(p.parent.name, p.stem) for p in SHIPPED}
    assert {("default", m) for m in list_models(trainable=True)} <= shipped
    assert {("scenes", m) for m in DEMO_MODELS} <= shipped


def test_demo_end_to_end_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLZSL_CACHE", str(tmp_path / "cache"))
    result = run_demo(
        tmp_path / "demo",
        n_train=64,
        n_test=32,
        overrides=("epochs=1", "batch_size=32"),
        quiet=True,
    )
    assert set(result.results) == set(DEMO_MODELS)
    assert (tmp_path / "demo" / "comparison.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert set(saved["results"]["ml2p"]) == {"zsl", "gzsl"}
    assert result.tags and all(len(t["top3"]) == 3 for t in result.tags)
    # the first model's run gets its HTML report, pictures beside it
    assert result.report == tmp_path / "demo" / "runs" / DEMO_MODELS[0] / "report.html"
    assert result.report.read_text().count("data:image/png;base64,") == 4
    # `mlzsl tag --checkpoint demo` now uses this demo's ml2p checkpoint
    image = tmp_path / "demo" / "scenes" / result.tags[0]["image"]
    assert (
        main(["tag", str(image), "--labels", "red star, blue heart", "--checkpoint", "demo"]) == 0
    )


def test_extract_help_names_every_backbone(capsys: pytest.CaptureFixture[str]) -> None:
    from mlzsl.backbones import list_backbones

    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in list_backbones())
