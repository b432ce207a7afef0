"""Backbones and other modules as ONNX graphs, and a backbone's session for extraction.

:func:`export_module` traces any module with dynamic axes and metadata (``mlzsl export`` builds
the whole tagging path with it, :mod:`mlzsl.inference.export`); :func:`backbone_session` gives
an onnxruntime session of a backbone alone (:func:`backbone_onnx`: exported on first use, cached by
its weights), which ``mlzsl extract`` runs on a CPU (about 3x torch here, ``benchmarks/README.md``).

Graphs are traced with torch's TorchScript-based exporter (opset :data:`OPSET`); Python control
flow that reads a shape is fixed at the traced shape, so every model is checked against torch on
shapes other than the traced ones (``tests/test_export.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlzsl.backbones._base import RANDOM_WEIGHTS, Backbone
from mlzsl.errors import ConfigError
from mlzsl.files import atomic_path
from mlzsl.progress import say
from mlzsl.runtime import cache_home, cpu_session

__all__ = ["OPSET", "backbone_onnx", "backbone_session", "export_module", "require_onnx"]

OPSET = 17
_GRAPH = "backbone-3"  # changed with the graph (2: dynamic height, width; 3: uint8 input)


def require_onnx() -> Any:
    """The ``onnx`` package, or a one-line error saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ConfigError(
            "mlzsl export needs the onnx package: pip install 'mlzsl[export]' (onnx, onnxruntime)"
        ) from None
    return onnx


def export_module(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: str | Path,
    *,
    names: tuple[str, ...] = ("pixels", "label_vectors"),
    output: str = "scores",
    dynamic: dict[str, dict[int, str]] | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Trace ``module`` on ``inputs`` into an ONNX file with dynamic axes and metadata.

    Args:
        module: takes ``len(inputs)`` tensors, returns one.
        inputs: example inputs; the traced shapes should differ from the ones used later.
        path: the ``.onnx`` file to write (its folder must exist); whole or not at all.
        names: the input names.
        output: the output's name.
        dynamic: input or output name -> {axis: name}; default: a tagging graph's axes (axis 0
            of both inputs, both axes of ``scores``).
        metadata: string key -> string value, stored as ONNX metadata properties.
    """
    onnx = require_onnx()
    path = Path(path)
    axes = dynamic or {
        names[0]: {0: "batch"},
        names[1]: {0: "labels"},
        output: {0: "batch", 1: "labels"},
    }
    traced = io.BytesIO()  # traced in memory: the only file written is the finished model
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape-reading Python code
        torch.onnx.export(
            module.eval(),
            inputs,
            traced,  # type: ignore[arg-type]  # a file object is accepted as well
            input_names=list(names),
            output_names=[output],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    graph = onnx.load_from_string(traced.getvalue())
    del traced
    for key, value in (metadata or {}).items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    # in the target's folder under a temporary name, renamed when whole; removed on any failure
    with atomic_path(path, what="ONNX file") as tmp:
        onnx.save(graph, str(tmp))
    return path


class _FromBytes(nn.Module):
    """A backbone that takes the decoded bytes, ``rgb`` uint8 [B, H, W, 3], and normalises them
    itself with the operations of :func:`mlzsl.images.normalise` (the same values)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(backbone.spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(backbone.spec.std).view(1, 3, 1, 1))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        pixels = rgb.permute(0, 3, 1, 2).float() / 255.0
        return self.backbone((pixels - self.mean) / self.std)


def backbone_onnx(backbone: Backbone) -> Path:
    """The ONNX graph of ``backbone`` from decoded bytes: ``rgb`` uint8 [B, H, W, 3] (as
    :func:`mlzsl.images.load_rgb` gives them) -> ``features`` float32 [B, C, H / stride,
    W / stride], batch, height and width dynamic. Normalising inside the graph spares a float
    pass over every image in Python.

    Exported on first use into ``<cache>/onnx/`` under a fingerprint of the backbone's identity
    (its weight file's sha256; with ``weights="random"``, every weight's bytes, so no draw reuses
    another's graph),
    :data:`OPSET` and torch's version.
    """
    identity = json.dumps(backbone.identity(), sort_keys=True)  # weights named by their sha256
    digest = hashlib.sha256(f"{_GRAPH}|{OPSET}|{torch.__version__}|{identity}".encode())
    if backbone.weights_info == RANDOM_WEIGHTS:  # no file names them: hash the draw itself
        for name, tensor in backbone.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    target = cache_home() / "onnx" / f"{backbone.spec.name}-{digest.hexdigest()[:20]}.onnx"
    if target.is_file():  # written atomically: a file there is whole
        return target
    say(f"exporting {backbone.spec.name} to ONNX for onnxruntime (once; cached in {target.parent})")
    target.parent.mkdir(parents=True, exist_ok=True)
    size = backbone.spec.image_size
    return export_module(
        _FromBytes(backbone),
        (torch.zeros(2, size, size, 3, dtype=torch.uint8),),
        target,
        names=("rgb",),
        output="features",
        dynamic={
            "rgb": {0: "batch", 1: "height", 2: "width"},
            "features": {0: "batch", 2: "rows", 3: "columns"},
        },
    )


def backbone_session(backbone: Backbone) -> Any:
    """An onnxruntime session (:func:`mlzsl.runtime.cpu_session`) of :func:`backbone_onnx`; a
    cached file onnxruntime cannot read is made again."""
    path = backbone_onnx(backbone)
    try:
        return cpu_session(path)
    except Exception:  # onnxruntime's own error types: a damaged cache file, made again
        path.unlink(missing_ok=True)
        return cpu_session(backbone_onnx(backbone))
