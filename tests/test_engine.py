"""The training engine: fit, checkpoints, resume after SIGKILL, torchrun, configs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mlzsl.cli import main
from mlzsl.config import TrainConfig, load_config
from mlzsl.errors import ConfigError, DataError
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.inference.evaluation import evaluate_checkpoint
from mlzsl.training.engine import fit, make_optimizer
from tests.conftest import make_image_folder, save_tiny_fast0tag, write_raw_checkpoint

FAST = ["epochs=3", "batch_size=8", "lr=0.01", "warmup_epochs=0.5"]
ENV = {**os.environ, "MLZSL_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def test_fit_writes_a_complete_run_folder(tiny_store: Path, tmp_path: Path) -> None:
    config = load_config(None, ["model=fast0tag", *FAST])
    result = fit(config, tiny_store, tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    for name in ("best.pt", "last.pt", "config.yaml", "history.csv", "metrics.json"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").iterdir())
    assert len(result.history) == 3 and 1 <= result.best_epoch <= 3
    assert yaml.safe_load((run / "config.yaml").read_text())["model"] == "fast0tag"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["zsl"]) >= {"mAP", "P@3", "R@3", "F1@3", "F1@5"}
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt.model_args["in_channels"] == 1280 and ckpt.embedder == "glove50"
    assert ckpt.backbone["name"] == "efficientnet_lite0"
    assert len(ckpt.vocabulary) == 6 and ckpt.store is not None and ckpt.store.train_images > 0
    # evaluating the best checkpoint reproduces the run's reported metrics
    _, again = evaluate_checkpoint(run / "best.pt", tiny_store)
    assert again.primary.to_dict()["zsl"]["mAP"] == pytest.approx(metrics["zsl"]["mAP"], abs=1e-9)


def test_ml2p_gets_its_positions_from_the_store(tiny_store: Path, tmp_path: Path) -> None:
    config = load_config(None, ["model=ml2p", "epochs=1", "batch_size=8"])
    fit(config, tiny_store, tmp_path / "run", quiet=True)
    assert load_checkpoint(tmp_path / "run" / "best.pt").model_args["num_positions"] == 4


def _train_cmd(store: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlzsl",
        "train",
        "--store",
        str(store),
        "--out",
        str(out),
        "--model",
        "fast0tag",
        "--threads",
        "1",
        "--json",
        *extra,
    ]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_store: Path, tmp_path: Path) -> None:
    settings = ["epochs=8", "batch_size=4", "lr=0.01", "model_args.dropout=0.2"]
    whole = subprocess.run(
        _train_cmd(tiny_store, tmp_path / "a", *settings),
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    proc = subprocess.Popen(
        _train_cmd(tiny_store, tmp_path / "b", *settings),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    last = tmp_path / "b" / "last.pt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if last.is_file() and load_checkpoint(last).epoch >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = subprocess.run(
        _train_cmd(tiny_store, tmp_path / "b", *settings),
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    a, b = json.loads(whole.stdout), json.loads(resumed.stdout)
    assert a["zsl"] == b["zsl"] and a["gzsl"] == b["gzsl"] and a["best_epoch"] == b["best_epoch"]
    history_a = (tmp_path / "a" / "history.csv").read_text().splitlines()
    history_b = (tmp_path / "b" / "history.csv").read_text().splitlines()
    strip = [lambda rows: [r.rsplit(",", 1)[0] for r in rows]][0]  # drop the seconds column
    assert strip(history_a) == strip(history_b)


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tiny_store: Path, tmp_path: Path) -> None:
    settings = ["epochs=3", "batch_size=8", "lr=0.01"]  # 24 train rows: 3 global batches of 8
    single = subprocess.run(
        _train_cmd(tiny_store, tmp_path / "one", *settings),
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "mlzsl",
    ]
    two = subprocess.run(
        [*torchrun, *_train_cmd(tiny_store, tmp_path / "two", *settings)[3:]],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    a = json.loads(single.stdout)
    b = json.loads(two.stdout.strip().splitlines()[-1])  # rank 0's line
    for split in ("zsl", "gzsl"):
        for key, value in a[split].items():
            assert b[split][key] == pytest.approx(value, abs=1e-4), (split, key)
    wa = load_checkpoint(tmp_path / "one" / "last.pt").state_dict
    wb = load_checkpoint(tmp_path / "two" / "last.pt").state_dict
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-5, rtol=1e-4)


def test_config_rejects_unknown_keys_wrong_types_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        load_config(None, ["learning_rate=0.1"])
    with pytest.raises(ConfigError, match="epochs must be int"):
        load_config(None, ["epochs=ten"])
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        load_config(None, ["optimizer=sgd"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: ml2p\n  lr: [0.1\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("model: fast0tag\nmodel_args: {hidden: 64}\nlr: 1\n")
    config = load_config(good, ["model_args.dropout=0.1", "ks=[10, 20]"])
    assert config.lr == 1.0 and config.model_args == {"hidden": 64, "dropout": 0.1}
    assert config.ks == [10, 20]
    assert config == TrainConfig(**config.to_dict())


def test_resuming_with_another_config_is_refused(tiny_store: Path, tmp_path: Path) -> None:
    fit(load_config(None, ["model=fast0tag", "epochs=1"]), tiny_store, tmp_path, quiet=True)
    with pytest.raises(ConfigError, match="another config"):
        fit(load_config(None, ["model=fast0tag", "epochs=2", "lr=0.5"]), tiny_store, tmp_path)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["epochs"] == 1  # untouched


def test_resuming_on_another_store_is_refused(tiny_store: Path, tmp_path: Path) -> None:
    import shutil

    from mlzsl.store.extract import extract_features

    config = load_config(None, ["model=fast0tag", "epochs=1"])
    fit(config, tiny_store, tmp_path / "run", quiet=True)
    history = (tmp_path / "run" / "history.csv").read_text()
    copy = shutil.copy(tiny_store, tmp_path / "copy.h5")  # the same content: the same store
    fit(config, copy, tmp_path / "run", quiet=True)
    root = make_image_folder(tmp_path / "other", 36, size=64, seed=1)  # other photos, same shape
    other = tmp_path / "other.h5"
    extract_features(root, other, image_size=64, workers=0, show_progress=False)
    with pytest.raises(ConfigError, match="a run on another store"):
        fit(config, other, tmp_path / "run")
    assert (tmp_path / "run" / "history.csv").read_text() == history  # untouched


def test_checkpoint_write_is_atomic_and_damage_is_reported(tmp_path: Path) -> None:
    path = save_tiny_fast0tag(tmp_path / "c.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    path.write_bytes(path.read_bytes()[:100])  # a truncated file
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_checkpoint(path)
    with pytest.raises(DataError, match="lacks"):
        load_checkpoint(write_raw_checkpoint(tmp_path / "d.pt", {"model": "x"}))


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "--checkpoint", "missing.pt"], "checkpoint not found"),
        (["train", "--model", "fast0tag", "learning_rate=1"], "unknown key"),
        (["train", "--model", "nope"], "unknown model"),
    ],
)
def test_cli_errors_are_one_line_exit_2(
    tiny_store: Path, tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    extra = ["--store", str(tiny_store)]
    if args[0] == "train":
        extra += ["--out", str(tmp_path / "run")]
    assert main([*args[:1], *extra, *args[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_optimizer_args_reach_the_optimizer_and_bad_ones_are_named() -> None:
    config = load_config(None, ["optimizer=rmsprop", "optimizer_args.momentum=0.9"])
    model = torch.nn.Linear(2, 2)
    assert make_optimizer(config, model.parameters()).defaults["momentum"] == 0.9
    bad = load_config(None, ["optimizer=adam", "optimizer_args.momentum=0.9"])
    with pytest.raises(ConfigError, match="optimizer_args for adam"):
        make_optimizer(bad, model.parameters())


def test_unset_ks_takes_the_benchmarks_k_and_a_set_one_is_kept() -> None:
    from mlzsl.protocol import resolve_ks

    assert load_config(None).ks is None
    assert resolve_ks(None, "open_images") == (10, 20)
    assert resolve_ks(None, "default") == (3, 5)
    assert resolve_ks([3, 5], "open_images") == (3, 5)  # asked for: honoured
