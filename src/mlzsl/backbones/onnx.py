"""Backbones and other modules as ONNX graphs, and a backbone's session for extraction.

:func:`export_module` traces any module with dynamic axes and metadata (``mlzsl export`` builds
the whole tagging path with it, :mod:`mlzsl.inference.export`); :func:`backbone_session` gives
an onnxruntime session of a backbone alone, exported on first use and cached by its weights, which
``mlzsl extract`` runs on a CPU (2-3x torch's speed here: ``benchmarks/README.md``).

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

from mlzsl.backbones._base import Backbone
from mlzsl.errors import ConfigError
from mlzsl.files import atomic_path
from mlzsl.progress import say
from mlzsl.runtime import cache_home, cpu_session

__all__ = ["OPSET", "backbone_session", "export_module", "require_onnx"]

OPSET = 17


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


def backbone_session(backbone: Backbone) -> Any:
    """An onnxruntime session (:func:`mlzsl.runtime.cpu_session`) computing ``backbone``:
    ``pixels`` float32 [B, 3, S, S] -> ``features`` float32 [B, C, H, W].

    The graph is exported on first use into ``<cache>/onnx/`` under a fingerprint of the
    backbone's identity and of every weight's bytes (so ``weights="random"`` never reuses another
    draw), :data:`OPSET` and torch's version; a cached file onnxruntime cannot read is made again.
    """
    digest = hashlib.sha256(
        f"{OPSET}|{torch.__version__}|{json.dumps(backbone.identity(), sort_keys=True)}".encode()
    )
    for name, tensor in backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    target = cache_home() / "onnx" / f"{backbone.spec.name}-{digest.hexdigest()[:20]}.onnx"
    if target.is_file():
        try:
            return cpu_session(target)
        except Exception:  # onnxruntime's own error types: a damaged cache file, made again
            target.unlink(missing_ok=True)
    say(f"exporting {backbone.spec.name} to ONNX for onnxruntime (once; cached in {target.parent})")
    target.parent.mkdir(parents=True, exist_ok=True)
    size = backbone.spec.image_size
    export_module(
        backbone,
        (torch.zeros(2, 3, size, size),),
        target,
        names=("pixels",),
        output="features",
        dynamic={"pixels": {0: "batch"}, "features": {0: "batch"}},
    )
    return cpu_session(target)
