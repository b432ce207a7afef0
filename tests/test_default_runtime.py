"""The default engine of ``mlzsl tag``, ``eval --data``, ``serve``, ``Tagger.from_checkpoint`` and
``mlzsl extract``: onnxruntime on a CPU, the checkpoint (or backbone) exported on first use and
cached by its content.

Checked here: which engine ``auto`` picks; the export cache (made once, reused, made again when the
checkpoint or the embedder changes or the cached file is unreadable); scores of the default engine
equal torch's to 1e-4 for every registered model over a real backbone; the worker pipeline keeps
the order of the files and of the skipped ones; torch's thread count is restored after scoring;
extraction on onnxruntime gives torch's features to float16 rounding, the same at any thread count.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlzsl.backbones import create_backbone
from mlzsl.backbones.onnx import backbone_session
from mlzsl.cli import main
from mlzsl.errors import ConfigError
from mlzsl.images import normalise
from mlzsl.inference import export as export_module
from mlzsl.inference.checkpoint import Preprocess, load_checkpoint, save_checkpoint
from mlzsl.inference.engine import load_tagger
from mlzsl.inference.export import cached_export, cached_onnx_tagger
from mlzsl.inference.onnx_runtime import OnnxTagger
from mlzsl.inference.tagger import Tagger
from mlzsl.models import create_model, list_models, model_inputs
from mlzsl.runtime import choose_runtime
from mlzsl.store.extract import extract_features
from mlzsl.store.feature_store import FeatureStore

from .conftest import make_image_folder, save_tiny_fast0tag

pytest.importorskip("onnxruntime")

RTOL = 1e-4
LABELS = ["red circle", "blue square", "green star", "dog", "car"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLZSL_CACHE", str(tmp_path / "cache"))


def _photos(folder: Path, n: int = 3) -> list[Path]:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + 9 * i, 70, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    scale = float(np.max(np.abs(want))) or 1.0
    assert float(np.max(np.abs(got - want))) <= RTOL * scale


def test_auto_is_onnxruntime_on_a_cpu_and_torch_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_runtime("auto") == choose_runtime(None) == "onnx"
    assert choose_runtime("torch") == "torch" and choose_runtime("onnx") == "onnx"
    monkeypatch.setattr("mlzsl.runtime._cuda_available", lambda: True)
    assert choose_runtime("auto") == "torch" and choose_runtime("onnx") == "onnx"
    assert choose_runtime("auto", gpu=False) == "onnx"  # work on the CPU of a CUDA machine
    with pytest.raises(ConfigError, match="--runtime must be one of auto, torch, onnx"):
        choose_runtime("tensorrt")


def test_the_export_is_made_once_and_again_when_the_checkpoint_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports: list[Path] = []
    real = export_module.export_checkpoint

    def counting(spec: Path, out: Path, **kwargs: object) -> dict[str, object]:
        exports.append(Path(out))
        return real(spec, out, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(export_module, "export_checkpoint", counting)
    ckpt = save_tiny_fast0tag(tmp_path / "t.pt")
    first = cached_export(ckpt)
    assert first.is_file() and first.parent == tmp_path / "cache" / "onnx"
    assert cached_export(ckpt) == first and len(exports) == 1  # reused
    assert Tagger.from_checkpoint(ckpt).runtime == "onnx" and len(exports) == 1
    # retrained (other weights, same path): a new export, never the stale one
    loaded = load_checkpoint(ckpt)
    changed = {k: v + 1 for k, v in loaded.state_dict.items()}
    save_checkpoint(ckpt, dataclasses.replace(loaded, state_dict=changed))
    second = cached_export(ckpt)
    assert second != first and len(exports) == 2
    # another embedder: another export
    assert cached_export(ckpt, embedder="glove50") not in (first, second) and len(exports) == 3
    # an unreadable cached file (a disk fault, a hand edit) is made again once
    second.write_bytes(b"not onnx")
    assert isinstance(cached_onnx_tagger(ckpt), OnnxTagger) and len(exports) == 4


def _checkpoint_of(name: str, path: Path) -> Path:
    """A random ``name`` over EfficientNet-Lite0 at 64 px (its 2 × 2 maps), or over pixels for
    the models that take images; GloVe-50 labels."""
    torch.manual_seed(0)
    if model_inputs(name) == "images":
        backbone = create_backbone("pixels", image_size=64)
        model = create_model(name, in_channels=3, embed_dim=50, image_size=64)
    else:
        backbone = create_backbone("efficientnet_lite0", image_size=64)
        extra = {"num_positions": 4} if name == "ml2p" else {}
        model = create_model(name, in_channels=backbone.spec.channels, embed_dim=50, **extra)
    spec = backbone.spec
    return save_tiny_fast0tag(
        path,
        model=name,
        model_args=dict(model.config),
        state_dict=model.state_dict(),
        backbone=backbone.identity(),
        preprocess=Preprocess(64, "squash", spec.mean, spec.std),
        config={"model": name, "epochs": 1},
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_the_default_engine_scores_every_model_as_torch_does(name: str, tmp_path: Path) -> None:
    ckpt = _checkpoint_of(name, tmp_path / f"{name}.pt")
    photos = _photos(tmp_path / "photos")
    default = Tagger.from_checkpoint(ckpt)
    assert default.runtime == "onnx"
    torch_ = Tagger.from_checkpoint(ckpt, runtime="torch")
    _close(default.scores(photos, LABELS), torch_.scores(photos, LABELS))


def test_workers_keep_the_order_of_images_and_skipped_files(tmp_path: Path) -> None:
    ckpt = save_tiny_fast0tag(tmp_path / "t.pt")
    photos = _photos(tmp_path / "photos", n=7)
    broken = [tmp_path / "photos" / "b1.png", tmp_path / "photos" / "b2.png"]
    for path in broken:
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    order = [photos[0], broken[0], *photos[1:4], broken[1], *photos[4:]]
    runs = [
        Tagger.from_checkpoint(ckpt, threads=threads).tag_files(order, LABELS, batch_size=batch)
        for threads, batch in ((1, 1), (2, 1), (3, 2))
    ]
    for run in runs:
        assert list(run.tags) == photos and [p for p, _ in run.skipped] == broken
        for image in photos:
            assert [t.label for t in run.tags[image]] == [t.label for t in runs[0].tags[image]]


def test_torch_threads_are_restored_after_scoring(tmp_path: Path) -> None:
    ckpt = save_tiny_fast0tag(tmp_path / "t.pt")
    tagger = Tagger.from_checkpoint(ckpt, runtime="torch", threads=2)
    torch.set_num_threads(2)
    try:
        with tagger.worker_scope(), tagger.worker_scope():  # nested, as concurrent requests are
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        tagger.tag_files(_photos(tmp_path / "photos"), LABELS)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_tag_and_eval_take_the_runtime_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = save_tiny_fast0tag(tmp_path / "t.pt")
    photo = _photos(tmp_path / "photos", n=1)[0]
    folder = make_image_folder(tmp_path / "data", 9)
    tags, metrics = {}, {}
    for runtime in ("auto", "onnx", "torch"):
        args = ["tag", str(photo), "--labels", ",".join(LABELS), "--checkpoint", str(ckpt)]
        assert main([*args, "--runtime", runtime, "--threads", "2", "--json"]) == 0
        tags[runtime] = json.loads(capsys.readouterr().out)["images"][str(photo)]
        args = ["eval", "--data", str(folder), "--checkpoint", str(ckpt), "--json"]
        assert main([*args, "--runtime", runtime]) == 0
        metrics[runtime] = json.loads(capsys.readouterr().out)
    for runtime in ("auto", "onnx"):
        assert [t["label"] for t in tags[runtime]] == [t["label"] for t in tags["torch"]]
        _close(
            np.array([t["score"] for t in tags[runtime]]),
            np.array([t["score"] for t in tags["torch"]]),
        )
        assert metrics[runtime]["zsl"] == pytest.approx(metrics["torch"]["zsl"], abs=1e-6)
        assert metrics[runtime]["gzsl"] == pytest.approx(metrics["torch"]["gzsl"], abs=1e-6)
    with pytest.raises(SystemExit) as exit_:
        main(["tag", str(photo), "--labels", "dog", "--runtime", "tpu"])
    assert exit_.value.code == 2 and "--runtime" in capsys.readouterr().err


def test_extract_on_onnxruntime_matches_torch_and_any_thread_count(tmp_path: Path) -> None:
    folder = make_image_folder(tmp_path / "data", 10)
    (folder / "images" / "img_0004.png").write_bytes(b"broken")  # skipped the same way
    features = {}
    for runtime, threads in (("torch", 1), ("onnx", 1), ("onnx", 3)):
        out = tmp_path / f"{runtime}-{threads}.h5"
        summary = extract_features(
            folder,
            out,
            image_size=64,
            batch_size=3,
            workers=0,
            runtime=runtime,
            threads=threads,
            show_progress=False,
        )
        assert len(summary.skipped) == 1
        store = FeatureStore(out)
        features[runtime, threads] = store.features(np.arange(len(store))).astype(np.float32)
    assert np.array_equal(features["onnx", 1], features["onnx", 3])  # deterministic
    torch_ = features["torch", 1]
    # both stored as float16: equal to one step of float16 at the largest value
    assert np.abs(features["onnx", 1] - torch_).max() <= np.abs(torch_).max() * 2**-10


def test_a_backbone_export_is_keyed_by_its_weights(tmp_path: Path) -> None:
    sessions = []
    for seed in (0, 1, 0):
        torch.manual_seed(seed)
        backbone = create_backbone("efficientnet_lite0", weights="random", image_size=32)
        sessions.append(backbone_session(backbone))
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 2  # two draws, two files
    rgb = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    first, second, again = (s.run(None, {"rgb": rgb})[0] for s in sessions)
    assert np.array_equal(first, again) and not np.array_equal(first, second)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalise_gives_the_formula_bit_for_bit(dtype: type) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406], dtype), np.array([0.229, 0.224, 0.225], dtype)
    formula = ((np.asarray(rgb, np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)
    got = normalise(rgb, mean, std)
    assert got.dtype == formula.dtype and got.flags.c_contiguous
    assert np.array_equal(got, formula)


def test_the_extraction_graph_normalises_as_the_decoder_does(tmp_path: Path) -> None:
    """Bytes into the graph = pixels normalised in numpy into torch's backbone (float32 noise)."""
    torch.manual_seed(0)
    backbone = create_backbone("efficientnet_lite0", image_size=64).eval()
    rgb = np.random.default_rng(2).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    spec = backbone.spec
    pixels = np.stack(
        [normalise(image, np.float32(spec.mean), np.float32(spec.std)) for image in rgb]
    )
    with torch.no_grad():
        want = backbone(torch.from_numpy(pixels)).numpy()
    got = backbone_session(backbone).run(None, {"rgb": rgb})[0]
    _close(got, want)


def test_a_cached_export_tags_without_importing_torch(tmp_path: Path) -> None:
    """The second `mlzsl tag` of a checkpoint starts as `mlzsl tag --onnx` does: no torch."""
    ckpt = save_tiny_fast0tag(tmp_path / "t.pt")
    photo = _photos(tmp_path / "photos", n=1)[0]
    code = (
        "import sys\n"
        "from mlzsl.cli import main\n"
        f"code = main(['tag', {str(photo)!r}, '--labels', 'dog, car', '--checkpoint', "
        f"{str(ckpt)!r}, '--json'])\n"
        "print('torch' in sys.modules, code, file=sys.stderr)\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        for _ in range(2)
    ]
    assert [r.stderr.strip().splitlines()[-1] for r in runs] == ["True 0", "False 0"], runs[
        1
    ].stderr
    first, second = (json.loads(r.stdout)["images"] for r in runs)
    assert first == second  # the same export, the same scores


def test_the_memo_is_not_trusted_once_the_checkpoint_changes(tmp_path: Path) -> None:
    ckpt = save_tiny_fast0tag(tmp_path / "t.pt")
    tagger, path = load_tagger(ckpt)
    assert isinstance(tagger, OnnxTagger) and path == ckpt
    again, _ = load_tagger(ckpt)  # from the memo
    assert isinstance(again, OnnxTagger) and again.path == tagger.path
    loaded = load_checkpoint(ckpt)  # retrained in place: a new export, never the stale one
    changed = {k: v + 1 for k, v in loaded.state_dict.items()}
    save_checkpoint(ckpt, dataclasses.replace(loaded, state_dict=changed))
    retrained, _ = load_tagger(ckpt)
    assert isinstance(retrained, OnnxTagger) and retrained.path != tagger.path
    retrained.path.write_bytes(b"damaged")  # a damaged cached export is made again
    repaired, _ = load_tagger(ckpt)
    assert isinstance(repaired, OnnxTagger) and repaired.path == retrained.path
    assert repaired.card["model"] == "fast0tag"
    assert load_tagger(ckpt, runtime="torch")[0].runtime == "torch"
