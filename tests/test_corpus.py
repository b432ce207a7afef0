"""The bad-input corpus: every command, fed what people really feed it, answers in one line.

docs/design.md, "Errors": a bad input prints one line on stderr naming the problem, exits with
status 2, shows no traceback, and leaves nothing behind that looks complete. :data:`CASES` is one
table of such inputs — missing paths, every ``labels.csv`` / ``vocabulary.csv`` fault, broken and
hostile images, corrupt / empty / wrong-kind stores and checkpoints, malformed configs, unknown
names, mismatched sizes — run through the real command line (``mlzsl.cli.main``). Each case
builds its files in a fresh folder, and after the run no new file may appear there.

Inputs that are odd but valid (a 1×1, CMYK, 16-bit or animated image) must work instead, and
``extract`` skips and lists unreadable images rather than failing (:func:`test_extract_skips_
and_lists_bad_images`). The hypothesis tests at the end feed arbitrary bytes to the
``labels.csv`` / ``vocabulary.csv`` readers and the config loader: each either parses or raises
:class:`~mlzsl.errors.MlzslError`.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mlzsl.cli import main
from mlzsl.config import load_config
from mlzsl.datasets.userdata import read_user_dataset
from mlzsl.errors import MlzslError
from mlzsl.store.extract import extract_features
from mlzsl.training.engine import fit

# ----------------------------------------------------------------------------- the shared world


@dataclass
class World:
    """Good inputs the cases break one thing of: data folder, store, run, image, other store."""

    data: Path
    store: Path
    best: Path
    last: Path
    image: Path
    pixels_store: Path  # the same images under another backbone


@pytest.fixture(scope="module")
def world(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("corpus")
    data = tiny_store.parent / "data"
    run = root / "run"
    fit(
        load_config(None, ["model=fast0tag", "epochs=1", "batch_size=8"]),
        tiny_store,
        run,
        quiet=True,
    )
    pixels = root / "pixels.h5"
    extract_features(data, pixels, backbone="pixels", image_size=32, workers=0, show_progress=False)
    image = next((data / "images").glob("*.png"))
    return World(data, tiny_store, run / "best.pt", run / "last.pt", image, pixels)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLZSL_NO_PROGRESS", "1")  # stderr holds the error line alone


# ----------------------------------------------------------------------------- file makers


def _data(
    w: World,
    tmp: Path,
    *,
    labels: str | bytes | None = None,
    vocab: str | bytes | None = None,
    drop: str | None = None,
) -> Path:
    """A copy of the good data folder (images linked) with labels.csv / vocabulary.csv replaced."""
    folder = tmp / "d"
    folder.mkdir()
    (folder / "images").symlink_to(w.data / "images")
    for name, text in (("labels.csv", labels), ("vocabulary.csv", vocab)):
        if name == drop:
            continue
        content = (w.data / name).read_bytes() if text is None else text
        (folder / name).write_bytes(content.encode() if isinstance(content, str) else content)
    return folder


def _labels_with(w: World, row: str) -> str:
    return (w.data / "labels.csv").read_text() + row + "\n"


def _vocab_with(w: World, row: str) -> str:
    return (w.data / "vocabulary.csv").read_text() + row + "\n"


def _file(tmp: Path, name: str, content: bytes | str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _png(pixels: np.ndarray | None = None, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(pixels) if pixels is not None else Image.new(mode, (16, 16))
    img.save(buf, format="PNG")
    return buf.getvalue()


def _bomb() -> bytes:
    """A tiny PNG whose header declares 40,000 × 40,000 pixels (PIL's bomb limit is ~179 M)."""
    data = bytearray(_png())
    ihdr = 8 + 8  # signature, then length and type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", 40_000, 40_000)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def _symlink_loop(tmp: Path) -> Path:
    path = tmp / "loop.png"
    path.symlink_to(path)
    return path


def _h5(tmp: Path, **attrs: object) -> Path:
    path = tmp / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
        f.attrs.update(attrs)
    return path


def _incomplete_store(w: World, tmp: Path) -> Path:
    path = tmp / "half.h5"
    shutil.copy(w.store, path)
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    return path


def _ckpt(w: World, tmp: Path, edit: Callable[[dict], object]) -> Path:
    payload = torch.load(w.best, map_location="cpu", weights_only=True)
    edit(payload)
    path = tmp / "edited.pt"
    torch.save(payload, path)
    return path


def _config(tmp: Path, text: str | bytes) -> Path:
    return _file(tmp, "c.yaml", text)


def _glove(tmp: Path, dim: int) -> Path:
    words = ["red", "blue", "green", "circle", "square", "star"]
    lines = [
        " ".join([word, *(f"{0.1 * (i + j):.2f}" for j in range(dim))])
        for i, word in enumerate(words)
    ]
    return _file(tmp, "tiny.txt", "\n".join(lines) + "\n")


def _per_label(tmp: Path, name: str, header: str = "label,ap") -> Path:
    return _file(tmp, name, f"{header}\nred star,0.5\nblue ring,0.25\n")


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    """One bad input: the command line it makes, and a word the error line must contain."""

    id: str
    argv: Callable[[World, Path], list[str]]
    needle: str


def _train(w: World, tmp: Path, *extra: str, store: Path | str | None = None) -> list[str]:
    out = ["train", "--store", str(store or w.store), "--out", str(tmp / "run"), "--threads", "1"]
    return [*out, *extra]


def _eval(w: World, ckpt: Path | str | None = None, store: Path | str | None = None) -> list[str]:
    return ["eval", "--checkpoint", str(ckpt or w.best), "--store", str(store or w.store)]


def _tag(
    w: World,
    *paths: Path | str,
    ckpt: Path | str | None = None,
    labels: str = "red star",
    extra: tuple[str, ...] = (),
) -> list[str]:
    targets = [str(p) for p in paths] or [str(w.image)]
    return ["tag", *targets, "--labels", labels, "--checkpoint", str(ckpt or w.best), *extra]


def _verify(folder: Path) -> list[str]:
    return ["data", "verify", str(folder)]


def _extract(folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        "extract",
        str(folder),
        "--out",
        str(out),
        "--workers",
        "0",
        "--image-size",
        "64",
        "--threads",
        "1",
        *extra,
    ]


LABELS_HEADER = "image,split,labels\n"
VOCAB_HEADER = "label,split\n"

CASES: list[Case] = [
    # --- missing paths, every command
    Case("extract-missing-folder", lambda w, t: _extract(t / "nope", t / "o.h5"), "nope"),
    Case("train-missing-store", lambda w, t: _train(w, t, store=t / "nope.h5"), "not found"),
    Case("eval-missing-checkpoint", lambda w, t: _eval(w, ckpt=t / "nope.pt"), "not found"),
    Case("eval-missing-store", lambda w, t: _eval(w, store=t / "nope.h5"), "not found"),
    Case("eval-missing-data", lambda w, t: ["eval", "--data", str(t / "nope")], "nope"),
    Case("tag-missing-image", lambda w, t: _tag(w, t / "nope.jpg"), "nope.jpg"),
    Case("tag-missing-checkpoint", lambda w, t: _tag(w, ckpt=t / "nope.pt"), "not found"),
    Case(
        "tag-missing-labels-file",
        lambda w, t: [
            "tag",
            str(w.image),
            "--labels-file",
            str(t / "nope.txt"),
            "--checkpoint",
            str(w.best),
        ],
        "nope.txt",
    ),
    Case(
        "compare-missing-table",
        lambda w, t: ["compare", str(t / "a.csv"), str(_per_label(t, "b.csv"))],
        "a.csv",
    ),
    Case("verify-missing-folder", lambda w, t: _verify(t / "nope"), "nope"),
    Case(
        "open-images-missing-classes",
        lambda w, t: [
            "data",
            "open-images",
            "--classes",
            str(t / "nope"),
            "--annotations",
            str(t),
            "--images",
            str(t),
            "--out",
            str(t / "out"),
        ],
        "nope",
    ),
    Case(
        "nus-wide-missing-root",
        lambda w, t: ["data", "nus-wide", "--root", str(t / "nope"), "--out", str(t / "out")],
        "nope",
    ),
    Case(
        "import-biam-missing-file",
        lambda w, t: [
            "data",
            "import-biam",
            "--dataset",
            "nus-wide",
            "--vocabulary",
            str(t),
            "--train",
            str(t / "nope.h5"),
            "--test",
            str(t / "nope2.h5"),
            "--out",
            str(t / "o.h5"),
        ],
        "TagList1k.txt",
    ),
    # --- labels.csv faults
    Case("labels-missing", lambda w, t: _verify(_data(w, t, drop="labels.csv")), "labels.csv"),
    Case("labels-empty", lambda w, t: _verify(_data(w, t, labels="")), "labels.csv"),
    Case(
        "labels-header-only", lambda w, t: _verify(_data(w, t, labels=LABELS_HEADER)), "labels.csv"
    ),
    Case(
        "labels-wrong-header",
        lambda w, t: _verify(_data(w, t, labels="file,set,tags\n")),
        "labels.csv",
    ),
    Case(
        "labels-unknown-label",
        lambda w, t: _verify(
            _data(w, t, labels=_labels_with(w, "images/img_0000.png,train,purple moon"))
        ),
        "purple moon",
    ),
    Case(
        "labels-bad-split",
        lambda w, t: _verify(
            _data(w, t, labels=_labels_with(w, "images/img_0000.png,validation,red star"))
        ),
        "validation",
    ),
    Case(
        "labels-absolute-path",
        lambda w, t: _verify(_data(w, t, labels=_labels_with(w, "/etc/passwd,train,red star"))),
        "/etc/passwd",
    ),
    Case(
        "labels-leaves-folder",
        lambda w, t: _verify(_data(w, t, labels=_labels_with(w, "../x.png,train,red star"))),
        "../x.png",
    ),
    Case(
        "labels-duplicate-image",
        lambda w, t: _verify(
            _data(w, t, labels=_labels_with(w, "images/img_0000.png,train,red circle"))
        ),
        "img_0000",
    ),
    Case(
        "labels-not-utf8",
        lambda w, t: _verify(
            _data(w, t, labels=LABELS_HEADER.encode() + b"images/\xff\xfe.png,train,red star\n")
        ),
        "labels.csv",
    ),
    Case(
        "labels-short-row",
        lambda w, t: _verify(_data(w, t, labels=_labels_with(w, "images/img_0000.png"))),
        "labels.csv",
    ),
    Case("labels-binary", lambda w, t: _verify(_data(w, t, labels=os.urandom(300))), "labels.csv"),
    # --- vocabulary.csv faults
    Case(
        "vocab-missing", lambda w, t: _verify(_data(w, t, drop="vocabulary.csv")), "vocabulary.csv"
    ),
    Case("vocab-empty", lambda w, t: _verify(_data(w, t, vocab="")), "vocabulary.csv"),
    Case(
        "vocab-header-only", lambda w, t: _verify(_data(w, t, vocab=VOCAB_HEADER)), "vocabulary.csv"
    ),
    Case(
        "vocab-wrong-header",
        lambda w, t: _verify(_data(w, t, vocab="name,kind\nx,seen\n")),
        "vocabulary.csv",
    ),
    Case(
        "vocab-duplicate",
        lambda w, t: _verify(_data(w, t, vocab=_vocab_with(w, "red circle,seen"))),
        "red circle",
    ),
    Case(
        "vocab-bad-split",
        lambda w, t: _verify(_data(w, t, vocab=_vocab_with(w, "x,maybe"))),
        "maybe",
    ),
    Case(
        "vocab-empty-name",
        lambda w, t: _verify(_data(w, t, vocab=_vocab_with(w, ",seen"))),
        "vocabulary.csv",
    ),
    Case(
        "vocab-not-utf8",
        lambda w, t: _verify(_data(w, t, vocab=VOCAB_HEADER.encode() + b"\xff\xfe,seen\n")),
        "vocabulary.csv",
    ),
    # --- images given to tag
    Case("image-zero-bytes", lambda w, t: _tag(w, _file(t, "z.png", b"")), "z.png"),
    Case("image-truncated", lambda w, t: _tag(w, _file(t, "half.png", _png()[:40])), "half.png"),
    Case("image-random-bytes", lambda w, t: _tag(w, _file(t, "r.jpg", os.urandom(2000))), "r.jpg"),
    Case(
        "image-mislabelled-text", lambda w, t: _tag(w, _file(t, "notes.jpg", "hello")), "notes.jpg"
    ),
    Case(
        "image-decompression-bomb", lambda w, t: _tag(w, _file(t, "bomb.png", _bomb())), "bomb.png"
    ),
    Case("image-symlink-loop", lambda w, t: _tag(w, _symlink_loop(t)), "loop.png"),
    Case("tag-empty-folder", lambda w, t: _tag(w, _file(t, "e/readme.txt", "x").parent), "e"),
    # --- stores: corrupt, empty, wrong kind, incomplete
    Case(
        "store-random-bytes", lambda w, t: _eval(w, store=_file(t, "s.h5", os.urandom(500))), "s.h5"
    ),
    Case("store-empty", lambda w, t: _eval(w, store=_file(t, "s.h5", b"")), "s.h5"),
    Case("store-other-hdf5", lambda w, t: _eval(w, store=_h5(t)), "not an mlzsl feature store"),
    Case("store-incomplete", lambda w, t: _eval(w, store=_incomplete_store(w, t)), "incomplete"),
    Case("store-is-a-checkpoint", lambda w, t: _train(w, t, store=w.best), "best.pt"),
    Case("store-is-a-folder", lambda w, t: _train(w, t, store=t), "feature store not found"),
    Case("store-other-backbone", lambda w, t: _eval(w, store=w.pixels_store), "backbone"),
    # --- checkpoints: corrupt, empty, truncated, wrong kind, crafted
    Case(
        "ckpt-random-bytes", lambda w, t: _eval(w, ckpt=_file(t, "c.pt", os.urandom(900))), "c.pt"
    ),
    Case("ckpt-empty", lambda w, t: _eval(w, ckpt=_file(t, "c.pt", b"")), "c.pt"),
    Case(
        "ckpt-truncated",
        lambda w, t: _eval(
            w, ckpt=_file(t, "c.pt", w.best.read_bytes()[: w.best.stat().st_size // 2])
        ),
        "c.pt",
    ),
    Case(
        "ckpt-a-tensor",
        lambda w, t: _eval(w, ckpt=_torch_save(t, torch.zeros(3))),
        "not an mlzsl checkpoint",
    ),
    Case(
        "ckpt-lacks-weights",
        lambda w, t: _eval(w, ckpt=_ckpt(w, t, lambda p: p.pop("state_dict"))),
        "state_dict",
    ),
    Case(
        "ckpt-unknown-model",
        lambda w, t: _eval(w, ckpt=_ckpt(w, t, lambda p: p.update(model="nope"))),
        "nope",
    ),
    Case(
        "ckpt-model-args-not-mapping",
        lambda w, t: _eval(w, ckpt=_ckpt(w, t, lambda p: p.update(model_args=[1, 2]))),
        "model_args",
    ),
    Case(
        "ckpt-wrong-weights",
        lambda w, t: _eval(
            w, ckpt=_ckpt(w, t, lambda p: p.update(state_dict={"x": torch.zeros(1)}))
        ),
        "weights do not fit",
    ),
    Case("ckpt-is-a-store", lambda w, t: _tag(w, ckpt=w.store), "tiny.h5"),
    Case("ckpt-runs-code", lambda w, t: _eval(w, ckpt=_crafted(w, t)), "refused"),
    Case(
        "serve-ckpt-runs-code",
        lambda w, t: ["serve", "--checkpoint", str(_crafted(w, t)), "--port", "1"],
        "refused",
    ),
    Case(
        "serve-missing-checkpoint", lambda w, t: ["serve", "--checkpoint", str(t / "n.pt")], "n.pt"
    ),
    # --- configs
    Case(
        "config-malformed",
        lambda w, t: _train(w, t, "--config", str(_config(t, "lr: [1\n"))),
        "malformed YAML",
    ),
    Case(
        "config-mistyped",
        lambda w, t: _train(w, t, "--config", str(_config(t, "epochs: ten\n"))),
        "epochs must be int",
    ),
    Case(
        "config-unknown-key",
        lambda w, t: _train(w, t, "--config", str(_config(t, "epoch: 3\n"))),
        "'epoch'",
    ),
    Case(
        "config-duplicated-key",
        lambda w, t: _train(w, t, "--config", str(_config(t, "epochs: 1\nlr: 0.1\nepochs: 50\n"))),
        "c.yaml:3",
    ),
    Case(
        "config-not-utf8",
        lambda w, t: _train(w, t, "--config", str(_config(t, b"lr: \xff\xfe\n"))),
        "UTF-8",
    ),
    Case(
        "config-a-list",
        lambda w, t: _train(w, t, "--config", str(_config(t, "- 1\n- 2\n"))),
        "mapping",
    ),
    Case(
        "config-missing", lambda w, t: _train(w, t, "--config", str(t / "nope.yaml")), "nope.yaml"
    ),
    Case(
        "config-unknown-packaged",
        lambda w, t: _train(w, t, "--config", "scenes/nope"),
        "scenes/nope",
    ),
    Case(
        "config-python-tag",
        lambda w, t: _train(
            w, t, "--config", str(_config(t, "lr: !!python/object/apply:os.system ['true']\n"))
        ),
        "c.yaml",
    ),
    Case("override-no-equals", lambda w, t: _train(w, t, "epochs"), "key=value"),
    Case("override-deep-nesting", lambda w, t: _train(w, t, "model_args.a.b=1"), "nested"),
    Case(
        "override-mistyped",
        lambda w, t: _train(w, t, "--model", "lesa", "epochs=abc"),
        "override 'epochs=abc'",
    ),
    Case("override-zero-batch", lambda w, t: _train(w, t, "batch_size=0"), "batch_size"),
    # --- unknown names, label words, sizes
    Case("unknown-model", lambda w, t: _train(w, t, "--model", "nope"), "nope"),
    Case("unknown-embedder", lambda w, t: _train(w, t, "--embedder", "nope"), "nope"),
    Case(
        "glove-file-missing",
        lambda w, t: _train(w, t, "--embedder", f"glove:{t / 'g.txt'}"),
        "g.txt",
    ),
    Case("unknown-label-word", lambda w, t: _tag(w, labels="zzzqqq star"), "zzzqqq"),
    Case("no-labels", lambda w, t: _tag(w, labels=" , "), "no labels"),
    Case(
        "embedder-size-mismatch",
        lambda w, t: _tag(w, extra=("--embedder", f"glove:{_glove(t, 3)}")),
        "label vectors",
    ),
    Case(
        "extract-unknown-backbone",
        lambda w, t: _extract(w.data, t / "o.h5", "--backbone", "nope"),
        "nope",
    ),
    Case(
        "extract-missing-weights",
        lambda w, t: _extract(w.data, t / "o.h5", "--weights", str(t / "w.pt")),
        "w.pt",
    ),
    Case("extract-bad-device", lambda w, t: _extract(w.data, t / "o.h5", "--device", "tpu"), "tpu"),
    # --- the audit's failures
    Case(
        "train-out-is-a-file",
        lambda w, t: _train(w, t, store=t / "unread.h5")[:4] + [str(_file(t, "run.txt", "x"))],
        "is a file",
    ),
    Case("extract-out-is-a-folder", lambda w, t: _extract(w.data, t), "is a folder"),
    Case(
        "extract-out-other-store",
        lambda w, t: _extract(w.data, _copy(w.pixels_store, t)),
        "--force",
    ),
    Case(
        "extract-out-not-a-store",
        lambda w, t: _extract(w.data, _file(t, "notes.h5", "x")),
        "--force",
    ),
    Case(
        "compare-plot-folder",
        lambda w, t: [
            "compare",
            str(_per_label(t, "a.csv")),
            str(_per_label(t, "b.csv")),
            "--plot",
            str(t),
        ],
        "is a folder",
    ),
    Case(
        "compare-no-ap-column",
        lambda w, t: [
            "compare",
            str(_per_label(t, "a.csv")),
            str(_per_label(t, "b.csv", "label,score")),
        ],
        "AP column",
    ),
    Case(
        "eval-per-label-a-file",
        lambda w, t: [*_eval(w), "--per-label", str(_file(t, "pl.txt", "x"))],
        "pl.txt",
    ),
    Case(
        "bench-unknown-key",
        lambda w, t: ["bench", "quality", "foo=1", "--out", str(t / "b")],
        "'foo'",
    ),
    Case(
        "bench-unknown-model",
        lambda w, t: ["bench", "quality", "--models", "nope", "--out", str(t / "b")],
        "nope",
    ),
    # --- argparse rejections: one line too
    Case("argparse-unknown-option", lambda w, t: [*_eval(w), "--nope"], "--nope"),
    Case("argparse-missing-required", lambda w, t: ["train"], "required"),
    Case("argparse-bad-int", lambda w, t: _tag(w, extra=("--top-k", "0")), "positive integer"),
    Case("argparse-bad-choice", lambda w, t: [*_eval(w), "--split", "val"], "val"),
    Case("argparse-no-command", lambda w, t: [], "COMMAND"),
    Case("argparse-bad-shard", lambda w, t: _extract(w.data, t / "o.h5", "--shard", "3/2"), "3/2"),
    # --- issue 21, cause 1: a FIFO named as an input is refused by stat, never opened (a hang)
    Case("tag-fifo-image", lambda w, t: _tag(w, _fifo(t / "f.jpg")), "not a regular file"),
    Case(
        "tag-fifo-labels-file",
        lambda w, t: [
            "tag",
            str(w.image),
            "--labels-file",
            str(_fifo(t / "labels.txt")),
            "--checkpoint",
            str(w.best),
        ],
        "not a regular file",
    ),
    Case(
        "verify-fifo-labels-csv",
        lambda w, t: _verify(_fifo_in(_data(w, t), "labels.csv")),
        "not a regular file",
    ),
    # --- issue 21, cause 2: an output that is a folder
    Case(
        "report-out-existing-folder",
        lambda w, t: ["report", str(w.best.parent), "--out", str(t)],
        "names a folder",
    ),
    # --- issue 21, cause 4: --out never replaces a file of another kind without --force
    Case(
        "tag-out-a-store",
        lambda w, t: _tag(w, extra=("--out", str(_copy(w.store, t)))),
        "holds a feature store",
    ),
    Case(
        "tag-out-a-checkpoint",
        lambda w, t: _tag(w, extra=("--out", str(_copy_as(w.best, t, "best.pt")))),
        "holds an mlzsl checkpoint",
    ),
    Case(
        "report-out-a-checkpoint",
        lambda w, t: ["report", str(w.best.parent), "--out", str(_copy_as(w.best, t, "b.pt"))],
        "holds an mlzsl checkpoint",
    ),
    Case(
        "export-out-a-checkpoint",
        lambda w, t: [
            "export",
            "--checkpoint",
            str(w.best),
            "--out",
            str(_copy_as(w.last, t, "last.pt")),
        ],
        "holds an mlzsl checkpoint",
    ),
    Case(
        "scenes-out-other-scenes",
        lambda w, t: [*_scenes(_small_scenes(t / "sc"), seed=1)],
        "holds other scenes",
    ),
]


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _fifo_in(folder: Path, name: str) -> Path:
    (folder / name).unlink()
    _fifo(folder / name)
    return folder


def _copy_as(src: Path, tmp: Path, name: str) -> Path:
    return Path(shutil.copy(src, tmp / name))


def _scenes(out: Path, seed: int = 0) -> list[str]:
    args = ["--train", "2", "--test", "2", "--size", "32", "--workers", "1"]
    return ["data", "scenes", "--out", str(out), "--seed", str(seed), *args]


def _small_scenes(out: Path) -> Path:
    assert main(_scenes(out)) == 0
    return out


def _torch_save(tmp: Path, obj: object) -> Path:
    path = tmp / "c.pt"
    torch.save(obj, path)
    return path


def _copy(src: Path, tmp: Path) -> Path:
    return Path(shutil.copy(src, tmp / "store.h5"))


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def _crafted(w: World, tmp: Path) -> Path:
    return _ckpt(w, tmp, lambda p: p.update(notes=_Payload(tmp / "marker")))


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's rejections exit from parse_args
        return int(e.code or 0)


def test_the_corpus_is_large_and_named_uniquely() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(
    case: Case,
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # anything written to the working folder is caught as well
    argv = case.argv(world, work)
    before = _tree(work)
    capsys.readouterr()
    code = _run(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, err, captured.out[-500:])
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("mlzsl") and "error" in err, err
    assert case.needle in err, err
    assert _tree(work) == before, f"left behind: {sorted(_tree(work) - before)}"


# ----------------------------------------------------------------------------- odd but valid


@pytest.mark.parametrize(
    "name, content",
    [
        ("one-pixel.png", lambda: _png(np.zeros((1, 1, 3), np.uint8))),
        ("cmyk.jpg", lambda: _encode(Image.new("CMYK", (20, 20), (10, 20, 30, 0)), "JPEG")),
        (
            "sixteen-bit.png",
            lambda: _encode(
                Image.fromarray(np.arange(400, dtype=np.uint16).reshape(20, 20) * 100), "PNG"
            ),
        ),
        ("animated.gif", lambda: _animated()),
        ("grey-alpha.png", lambda: _encode(Image.new("LA", (20, 20)), "PNG")),
        ("palette.png", lambda: _encode(Image.new("P", (20, 20)), "PNG")),
        ("png-named-as.jpg", lambda: _png()),  # mislabelled but decodable: PIL reads content
    ],
)
def test_odd_but_valid_images_are_tagged(
    name: str,
    content: Callable[[], bytes],
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _file(tmp_path, name, content())
    capsys.readouterr()
    assert main(_tag(world, path, extra=("--json",))) == 0
    assert "Traceback" not in capsys.readouterr().err


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _animated() -> bytes:
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    return buf.getvalue()


def test_extract_skips_and_lists_bad_images(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The documented exception: extract keeps going and lists what it could not read."""
    folder = tmp_path / "d"
    shutil.copytree(world.data, folder)
    images = sorted((folder / "images").glob("*.png"))[:5]
    images[0].write_bytes(b"")
    images[1].write_bytes(_png()[:40])
    images[2].write_bytes(os.urandom(2000))
    images[3].write_bytes(_bomb())
    images[4].unlink()
    images[4].symlink_to(images[4])
    out = tmp_path / "s.h5"
    capsys.readouterr()
    assert main(_extract(folder, out)) == 0
    report = out.with_name(out.name + ".skipped.tsv").read_text().splitlines()
    assert {line.split("\t")[0] for line in report[1:]} == {
        str(p.relative_to(folder)) for p in images
    }
    assert "Traceback" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- the audit, in depth


def test_extract_out_other_store_is_replaced_with_force_and_says_what_differs(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(world.pixels_store, tmp_path)
    capsys.readouterr()
    assert main(_extract(world.data, out)) == 2
    err = capsys.readouterr().err
    assert "backbone pixels (this run: efficientnet_lite0)" in err and "image size 32" in err
    assert main(_extract(world.data, out, "--force")) == 0
    assert main(_extract(world.data, out)) == 0  # now the same job: up to date, no --force


def test_train_failing_in_its_first_epoch_leaves_no_run_folder(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlzsl.errors import DataError
    from mlzsl.training.engine import Trainer

    def fail(self: Trainer, epoch: int) -> float:
        raise DataError("the disk went away")

    monkeypatch.setattr(Trainer, "train_epoch", fail)
    assert main([*_train(world, tmp_path), "--model", "fast0tag"]) == 2
    assert not (tmp_path / "run").exists()


def test_compare_prints_the_path_it_really_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _per_label(tmp_path, "a.csv"), _per_label(tmp_path, "b.csv")
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--plot", str(tmp_path / "chart")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "chart.png").is_file() and f"plot written to {tmp_path / 'chart.png'}" in out


# ----------------------------------------------------------------------------- fuzzing

FUZZ = settings(
    max_examples=80,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
GOOD_VOCAB = b"label,split\nred star,seen\nblue ring,unseen\nx,seen\n"

_CSV_TEXT = st.one_of(
    st.binary(max_size=400),
    st.lists(
        st.lists(
            st.sampled_from(
                [
                    "",
                    "x",
                    "images/a.png",
                    "train",
                    "test",
                    "seen",
                    "unseen",
                    "red star",
                    "a|b",
                    "../a",
                    "/a",
                    "label",
                    "split",
                    "image",
                    "labels",
                    "negatives",
                    '"',
                    "é",
                    "\x00",
                ]
            ),
            max_size=5,
        ),
        max_size=6,
    ).map(lambda rows: "\n".join(",".join(r) for r in rows).encode()),
)


@FUZZ
@given(labels=_CSV_TEXT, vocab=st.one_of(st.just(GOOD_VOCAB), _CSV_TEXT))
def test_fuzzed_labels_and_vocabulary_parse_or_raise_our_error(
    tmp_path_factory: pytest.TempPathFactory, labels: bytes, vocab: bytes
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "labels.csv").write_bytes(labels)
    (folder / "vocabulary.csv").write_bytes(vocab)
    try:
        read_user_dataset(folder)
    except MlzslError as e:
        assert "\n" not in str(e).strip()


_YAML_TEXT = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "epochs",
                    "lr",
                    "model",
                    "model_args",
                    "ks",
                    "loss",
                    "x",
                    "",
                    "- a",
                    "? b",
                    "&a c",
                    "*a",
                ]
            ),
            st.sampled_from(
                [
                    "1",
                    "0",
                    "-1",
                    "3e-4",
                    "ten",
                    "[1, 2",
                    "{a: 1}",
                    "[3, 5]",
                    "null",
                    "!!python/name:os.system",
                    "'${HOME}'",
                    "'${NOPE_X}'",
                    ".nan",
                    "~",
                    "|",
                    "\t",
                    '"x',
                ]
            ),
        ),
        max_size=6,
    ).map(lambda kv: "\n".join(f"{k}: {v}" for k, v in kv).encode()),
)


@FUZZ
@given(text=_YAML_TEXT)
def test_fuzzed_configs_parse_or_raise_our_error(
    tmp_path_factory: pytest.TempPathFactory, text: bytes
) -> None:
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_bytes(text)
    try:
        load_config(path)
    except MlzslError as e:
        assert "\n" not in str(e).strip()


# ----------------------------------------------------------------------------- issue 21: faults


@pytest.fixture
def fifo_watch() -> Callable[[Path], Path]:
    """Make a FIFO and fail the test if anything opens it for reading (which would hang): a
    watchdog opens its write end the moment a reader waits, so the test ends either way."""
    import threading

    made: list[Path] = []
    opened: list[Path] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            for path in made:
                try:  # succeeds only while a reader has the FIFO open
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    continue
                opened.append(path)
                os.close(fd)  # the reader sees end of file and goes on

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()

    def make(path: Path) -> Path:
        made.append(_fifo(path))
        return path

    yield make  # type: ignore[misc]
    stop.set()
    thread.join()
    assert not opened, f"opened (would hang forever): {opened}"


def _data_with_fifo(w: World, tmp: Path, make: Callable[[Path], Path]) -> Path:
    """A copy of the data folder whose first image is a FIFO."""
    folder = tmp / "d"
    shutil.copytree(w.data, folder)
    first = sorted((folder / "images").glob("*.png"))[0]
    first.unlink()
    make(first)
    return folder


def test_a_fifo_in_a_data_folder_is_a_per_image_skip_for_every_command(
    world: World,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fifo_watch: Callable[[Path], Path],
) -> None:
    folder = _data_with_fifo(world, tmp_path, fifo_watch)
    capsys.readouterr()
    out = tmp_path / "s.h5"
    assert main(_extract(folder, out)) == 0
    report = out.with_name(out.name + ".skipped.tsv").read_text()
    assert "not a regular file (a FIFO)" in report
    assert main(_verify(folder)) == 0
    assert "not a regular file (a FIFO)" in (folder / "excluded.tsv").read_text()
    (folder / "excluded.tsv").unlink()  # so eval meets the FIFO itself
    argv = ["eval", "--data", str(folder), "--checkpoint", str(world.best), "--threads", "1"]
    assert main(argv) == 0
    assert "not a regular file (a FIFO)" in capsys.readouterr().out
    assert main(_tag(world, folder)) == 0  # a folder walk leaves the FIFO out


@pytest.fixture
def small_fs(tmp_path: Path) -> Callable[..., Path]:
    """Mount a tmpfs of ``size`` (read-only with ``ro=True``) under ``tmp_path``; root only."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a full or read-only filesystem)")
    mounted: list[Path] = []

    def mount(name: str, size: str = "1m", *, ro: bool = False, fill: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)])
        if done.returncode:
            pytest.skip("mount -t tmpfs is not permitted here")
        mounted.append(point)
        return point

    yield mount  # type: ignore[misc]
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(point: Path) -> None:
    """Use every free block of the filesystem at ``point``."""
    fd = os.open(point / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)


def _files(folder: Path) -> set[str]:
    """Every file under ``folder`` (a folder a failed command created holds nothing)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir()}


def _readonly(point: Path) -> None:
    import subprocess

    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)


def _fault_argv(kind: str, w: World, out_dir: Path) -> tuple[list[str], Path | None]:
    """(the command writing into ``out_dir``, a file of its own already there or None)."""
    if kind == "tag":
        old = _file(out_dir, "t.csv", "image,label,score,rank\nx,y,0.5,1\n")
        return _tag(w, extra=("--out", str(old))), old
    if kind == "extract":
        return _extract(w.data, out_dir / "s.h5"), None
    if kind == "scenes":
        return _scenes(out_dir / "sc"), None
    if kind == "eval-per-label":
        return [*_eval(w), "--per-label", str(out_dir / "pl")], None
    if kind == "report":
        return ["report", str(w.best.parent), "--out", str(out_dir / "r.html")], None
    if kind == "export":
        pytest.importorskip("onnx")
        return ["export", "--checkpoint", str(w.best), "--out", str(out_dir / "m.onnx")], None
    raise AssertionError(kind)


FAULT_COMMANDS = ["tag", "extract", "scenes", "eval-per-label", "report", "export"]


@pytest.mark.parametrize("fault", ["full", "read-only"])
@pytest.mark.parametrize("kind", FAULT_COMMANDS)
def test_a_full_or_read_only_disk_is_one_line_and_leaves_nothing(
    kind: str,
    fault: str,
    world: World,
    small_fs: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    point = small_fs("fs", "256k")
    argv, old = _fault_argv(kind, world, point)
    before = old.read_bytes() if old else None
    if fault == "full":
        _fill(point)
    else:
        _readonly(point)
    listing = _files(point)
    capsys.readouterr()
    code = _run(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    reason = "No space left on device" if fault == "full" else "Read-only file system"
    assert reason in err, err
    assert _files(point) == listing, f"left behind: {sorted(_files(point) - listing)}"
    if old is not None:
        assert old.read_bytes() == before


def test_a_checkpoint_on_a_full_disk_is_one_line_and_leaves_nothing(
    world: World, small_fs: Callable[..., Path]
) -> None:
    from mlzsl.errors import DataError
    from mlzsl.inference.checkpoint import load_checkpoint, save_checkpoint

    point = small_fs("fs", "256k")
    old = _copy_as(world.best, point, "best.pt") if world.best.stat().st_size < 200_000 else None
    before = old.read_bytes() if old else None
    _fill(point)
    listing = _files(point)
    with pytest.raises(DataError, match="No space left on device"):
        save_checkpoint(point / "best.pt", load_checkpoint(world.last))
    assert _files(point) == listing
    if old is not None:
        assert old.read_bytes() == before
