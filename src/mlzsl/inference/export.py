"""``mlzsl export``: a checkpoint's whole tagging path as one ONNX graph.

The graph takes ``pixels`` float32 [B, 3, H, W] (decoded and normalised as
:meth:`mlzsl.inference.tagger.Tagger.decode` does) and ``label_vectors`` float32 [L, E] and returns
``scores`` float32 [B, L]: backbone, then head, exactly ``Tagger.score_pixels``. The label set
stays an input, so the exported model is as open-vocabulary as the checkpoint. B, L, H and W are
dynamic axes (the ready ``photo`` models keep the aspect ratio, so H and W vary per image).

The model card (:func:`mlzsl.inference.card.model_card`) is stored in the ONNX metadata as JSON
under ``mlzsl_card``, with the preprocessing the runtime needs as keys of their own: ``image_size``,
``resize``, ``mean``, ``std`` (JSON lists), ``embedder``, ``label_prompt``, ``embed_dim``.
:mod:`mlzsl.inference.onnx_runtime` reads them and needs no torch.

The graph is traced with torch's TorchScript-based exporter (opset :data:`OPSET`); Python control
flow that reads a shape is fixed at the traced shape, so every model is checked against torch
on shapes other than the traced ones (``tests/test_export.py``).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlzsl.backbones._weights import sha256_file
from mlzsl.backbones.onnx import OPSET, export_module, require_onnx
from mlzsl.errors import DataError
from mlzsl.files import check_input, open_input
from mlzsl.inference.card import model_card
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.inference.onnx_runtime import OnnxTagger
from mlzsl.inference.tagger import NAMED_CHECKPOINTS, Tagger, resolve_checkpoint
from mlzsl.progress import say
from mlzsl.runtime import cache_home

__all__ = [
    "OPSET",
    "TaggingGraph",
    "cached_export",
    "cached_onnx_tagger",
    "export_checkpoint",
    "export_module",
    "is_mlzsl_export",
    "require_onnx",
]

EXPORT_FORMAT = 2
"""Bumped when what :func:`export_checkpoint` writes changes: cached exports are made again."""


class TaggingGraph(nn.Module):
    """Backbone then head: ``(pixels [B, 3, H, W], label_vectors [L, E]) -> scores [B, L]``."""

    def __init__(self, backbone: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.backbone, self.model = backbone, model

    def forward(self, pixels: torch.Tensor, label_vectors: torch.Tensor) -> torch.Tensor:
        return self.model(self.backbone(pixels), label_vectors)


def export_checkpoint(
    spec: str | Path, out: str | Path, *, embedder: str | None = None
) -> dict[str, Any]:
    """Export the checkpoint (file or ready-model name) ``spec`` to ``out``; returns its card."""
    path = resolve_checkpoint(spec)
    ckpt = load_checkpoint(path)
    tagger = Tagger.from_checkpoint(path, embedder=embedder, runtime="torch")
    assert isinstance(tagger, Tagger)
    name = str(spec) if str(spec) in NAMED_CHECKPOINTS else path.name
    card = model_card(ckpt, path=path, name=name)
    card["embedder"] = tagger.embedder.spec
    card["parameters"] = tagger.parameters
    size = tagger.image_size
    # traced at a shape no real input is likely to have, with H != W, B = 2 and L = 3
    height, width = (size, size) if tagger.resize == "squash" else (size, size + 64)
    pixels = torch.randn(2, 3, height, width)
    vectors = torch.randn(3, int(card["embed_dim"]))
    preprocessing = {
        "image_size": str(size),
        "resize": tagger.resize,
        "mean": json.dumps([float(v) for v in tagger.mean]),
        "std": json.dumps([float(v) for v in tagger.std]),
        "embedder": tagger.embedder.spec,
        "label_prompt": tagger.label_prompt or "",
        "embed_dim": str(card["embed_dim"]),
    }
    export_module(
        TaggingGraph(tagger.backbone, tagger.model),
        (pixels, vectors),
        out,
        dynamic={
            "pixels": {0: "batch", 2: "height", 3: "width"},
            "label_vectors": {0: "labels"},
            "scores": {0: "batch", 1: "labels"},
        },
        metadata={"mlzsl_card": json.dumps(card, default=str), **preprocessing},
    )
    return card


def cached_export(path: str | Path, *, embedder: str | None = None) -> Path:
    """The ONNX export of the checkpoint file ``path``, written on first use under
    ``<cache>/onnx/`` and reused while the checkpoint's content is the same.

    The file name carries a fingerprint of the checkpoint's bytes (which name the backbone
    weights by their sha256), the embedder override, :data:`OPSET`, :data:`EXPORT_FORMAT` and
    torch's version: a retrained or replaced checkpoint gets a new export, never a stale one.
    """
    path = check_input(path, "checkpoint")  # a FIFO would block the hash forever
    key = f"{EXPORT_FORMAT}|{OPSET}|{torch.__version__}|{embedder or ''}|{sha256_file(path)}"
    digest = hashlib.sha256(key.encode())
    target = cache_home() / "onnx" / f"{path.stem[:60]}-{digest.hexdigest()[:20]}.onnx"
    if not target.is_file():  # written atomically: a file there is whole
        started = time.perf_counter()
        say(f"exporting {path.name} to ONNX for onnxruntime (once; cached in {target.parent})")
        target.parent.mkdir(parents=True, exist_ok=True)
        export_checkpoint(path, target, embedder=embedder)
        say(f"exported in {time.perf_counter() - started:.1f} s")
    return target


def cached_onnx_tagger(
    path: str | Path, *, embedder: str | None = None, threads: int | None = None
) -> OnnxTagger:
    """An :class:`~mlzsl.inference.onnx_runtime.OnnxTagger` of the checkpoint file ``path``
    (:func:`cached_export`); a cached export onnxruntime cannot read is made again, once."""
    onnx_file = cached_export(path, embedder=embedder)
    try:
        return OnnxTagger(onnx_file, threads=threads)
    except DataError:
        onnx_file.unlink(missing_ok=True)
        return OnnxTagger(cached_export(path, embedder=embedder), threads=threads)


def is_mlzsl_export(path: Path) -> bool:
    """Whether ``path`` is an ONNX model written by :func:`export_checkpoint` (it has the
    ``mlzsl_card`` metadata), which ``mlzsl export --out`` may replace without ``--force``."""
    onnx = require_onnx()
    try:
        with open_input(path, what="ONNX model") as f:
            model = onnx.load_model(f, load_external_data=False)
    except Exception:  # not an ONNX file at all
        return False
    return any(p.key == "mlzsl_card" for p in model.metadata_props)
