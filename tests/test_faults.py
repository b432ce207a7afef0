"""Issue 21's second audit, causes 5 to 12: each fault answers in one line (exit 2) or gives the
right result, and leaves nothing behind (causes 1 to 4, inputs and outputs: tests/test_corpus.py).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlzsl.cli import main
from mlzsl.config import load_config
from mlzsl.errors import ConfigError
from mlzsl.images import load_image
from mlzsl.inference.tagger import Tagger
from mlzsl.store.feature_store import FeatureStore
from mlzsl.store.lock import StoreLock
from mlzsl.training.engine import Trainer
from tests.conftest import make_image_folder, save_tiny_fast0tag


def _one_line(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# ----------------------------------------------------------------------------- 6: one run folder


def test_a_second_training_on_one_run_folder_is_refused(tiny_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = load_config(None, ["model=fast0tag", "epochs=1"])
    lock = tmp_path / ".run.train.lock"
    with StoreLock(lock, wait=False) as held:  # a live training (this process) holds the folder
        assert held.held
        with pytest.raises(ConfigError, match="another training is writing this run folder"):
            Trainer(config, tiny_store, out, quiet=True).fit()
    assert not out.exists()  # nothing written by the refused one
    Trainer(config, tiny_store, out, quiet=True).fit()  # free again: it trains
    assert (out / "best.pt").is_file() and not lock.exists()


# ----------------------------------------------------------------------------- 7, 12: numbers


@pytest.mark.parametrize(
    "override, needle",
    [
        ("weight_decay=-1", "weight_decay must be ≥ 0"),
        ("grad_clip=.nan", "grad_clip must be a finite number"),
        ("lr=.inf", "lr must be a finite number"),
        ("model_args.x=" + "[" * 5000 + "]" * 5000, "not valid YAML"),
        ("model_args.x={a: {b: 1}}", "nested dict"),
    ],
)
def test_config_values_are_checked_before_torch_sees_them(
    tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, needle: str
) -> None:
    argv = ["train", "--store", str(tiny_store), "--model", "fast0tag", "--out", str(tmp_path)]
    err = _one_line(capsys, [*argv, override], needle)
    assert len(err) < 300


def test_a_nan_threshold_is_one_line(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = save_tiny_fast0tag(tmp_path / "t.pt")
    image = next((image_folder / "images").glob("*.png"))
    argv = ["tag", str(image), "--checkpoint", str(ckpt), "--labels", "red circle"]
    _one_line(capsys, [*argv, "--threshold", "nan"], "threshold must be a finite number")


# ----------------------------------------------------------------------------- 8: ONNX metadata


def test_malformed_onnx_metadata_is_one_line(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from mlzsl.inference.export import export_checkpoint

    path = tmp_path / "m.onnx"
    export_checkpoint(save_tiny_fast0tag(tmp_path / "t.pt"), path)
    graph = onnx.load(str(path))
    for entry in graph.metadata_props:
        if entry.key == "mean":
            entry.value = "not json"
    onnx.save(graph, str(path))
    image = next((image_folder / "images").glob("*.png"))
    argv = ["tag", str(image), "--onnx", str(path), "--labels", "red circle"]
    _one_line(capsys, argv, "malformed mlzsl metadata", str(path))


# ----------------------------------------------------------------------------- 9: no warning leaks


def test_a_refused_raw_pickle_is_one_line_without_torchs_warning(tmp_path: Path) -> None:
    path = tmp_path / "raw.pt"
    with path.open("wb") as f:  # protocol 5: torch warns of it before refusing the global
        pickle.dump({"format": "mlzsl-checkpoint-1", "x": Path("x")}, f, protocol=5)
    done = subprocess.run(
        [sys.executable, "-m", "mlzsl", "models", "--checkpoint", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "raw.pt" in lines[0] and "Warning" not in done.stderr, done.stderr


# ----------------------------------------------------------------------------- 10: EXIF orientation


def _upright_and_sideways(folder: Path) -> tuple[Path, Path]:
    """The same random picture twice: upright, and stored turned with EXIF Orientation 6."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, size=(48, 72, 3), dtype=np.uint8)
    upright = Image.fromarray(pixels)
    upright.save(folder / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    upright.transpose(Image.Transpose.ROTATE_90).save(folder / "sideways.png", exif=exif)
    return folder / "upright.png", folder / "sideways.png"


def test_a_sideways_phone_photo_is_read_upright(tmp_path: Path) -> None:
    upright, sideways = _upright_and_sideways(tmp_path)
    mean, std = np.zeros(3, np.float32), np.ones(3, np.float32)
    for resize in ("squash", "shorter"):
        a = load_image(upright, 32, mean, std, resize=resize)
        b = load_image(sideways, 32, mean, std, resize=resize)
        assert a.shape == b.shape and np.array_equal(a, b)
    raw = np.asarray(Image.open(sideways).convert("RGB"))
    assert raw.shape[:2] == (72, 48)  # the file's pixels do lie on their side


def test_tag_serve_and_extract_score_the_sideways_photo_as_the_upright_one(
    tmp_path: Path,
) -> None:
    upright, sideways = _upright_and_sideways(tmp_path / "photos")
    tagger = Tagger.from_checkpoint(save_tiny_fast0tag(tmp_path / "t.pt"))
    labels = ["red circle", "blue square", "green star"]
    scores = tagger.scores([upright, sideways], labels)
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-6)
    with sideways.open("rb") as f:  # the server decodes uploads with the same call
        np.testing.assert_array_equal(tagger.decode(f), tagger.load_image(upright))
    # extraction: a data folder holding both photos gives one feature map twice
    from mlzsl.store.extract import extract_features

    root = make_image_folder(tmp_path / "data", 3, size=48)
    for i, photo in enumerate((upright, sideways)):
        (root / "images" / f"img_{i:04d}.png").write_bytes(photo.read_bytes())
    extract_features(root, tmp_path / "s.h5", image_size=64, workers=0, show_progress=False)
    features = FeatureStore(tmp_path / "s.h5").features(np.arange(2))
    np.testing.assert_allclose(features[0], features[1], rtol=1e-3, atol=1e-3)


# ----------------------------------------------------------------------------- 11: total failure


def test_an_extraction_where_no_image_decodes_fails_and_writes_no_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_image_folder(tmp_path / "data", 4, size=32)
    for image in (root / "images").glob("*.png"):
        image.write_bytes(b"not an image at all")
    out = tmp_path / "s.h5"
    argv = ["extract", str(root), "--out", str(out), "--workers", "0", "--image-size", "32"]
    _one_line(capsys, argv, "none of the 4 images could be extracted")
    assert not out.exists() and not list(tmp_path.glob("s.h5.*.assembling*"))
