"""The one checkpoint format: a self-describing ``torch.save`` dict, written atomically.

:func:`model_from_checkpoint` rebuilds the model a checkpoint names.

Keys: ``format``, ``mlzsl_version``, ``model`` (registered name), ``model_args`` (builder
keyword arguments, in_channels and embed_dim included), ``embedder`` (spec) and
``embedder_identity``, ``vocabulary`` (names + seen flags of the training store), ``backbone``
(identity dict of the store's backbone), ``store`` (file name, dataset, image counts and
test-set variant line of the training store), ``image_size``, ``resize``, ``label_prompt``
(ready models), ``mean``, ``std``, ``config`` (the resolved training config), ``epoch``,
``metrics``, ``state_dict``; a resumable checkpoint adds ``train_state`` (optimizer, scheduler,
RNG states, history). :func:`mlzsl.card.model_card` reads these fields into a model card.

A write goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target, so a killed write never leaves a checkpoint that looks whole.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlzsl import __version__
from mlzsl.errors import DataError
from mlzsl.models import create_model

FORMAT = "mlzsl-checkpoint-1"
REQUIRED = ("model", "model_args", "embedder", "vocabulary", "backbone", "state_dict")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (plus format and version) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        torch.save({"format": FORMAT, "mlzsl_version": __version__, **payload}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _numpy_globals() -> list[Any]:
    """numpy's array and scalar rebuilders, which run no code: a ``last.pt`` written before the
    RNG state became a tensor (it held numpy's state tuple) still loads and resumes."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    dtypes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdFDUS"}
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtypes]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:  # weights_only: tensors and plain types only, so loading never runs code
        with torch.serialization.safe_globals(_numpy_globals()):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):  # a global torch's safe unpickler does not admit
            raise DataError(
                f"{path}: refused: it holds objects that would run code when loaded; "
                "load only checkpoints you trust or made (mlzsl writes tensors and plain types)"
            ) from None
        raise DataError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    except Exception as e:  # torch raises many types for a damaged or foreign file
        raise DataError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{path}: not an mlzsl checkpoint (format {FORMAT} expected)")
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise DataError(f"{path}: checkpoint lacks {', '.join(missing)}")
    kinds = {"model": str, "model_args": dict, "embedder": str, "vocabulary": dict}
    kinds.update(backbone=dict, state_dict=dict)
    for key, kind in kinds.items():
        if not isinstance(payload[key], kind):
            raise DataError(
                f"{path}: checkpoint field {key} must be a {kind.__name__}, "
                f"got {type(payload[key]).__name__}"
            )
    return payload


# Arguments added after checkpoints were already being written, with the value those checkpoints
# were built with (a checkpoint without the key rebuilds the model it was saved from, not the new
# default): LESA's BatchNorm and initialisers became the release's (docs/models.md, lesa).
_OLD_LESA_TRUNK = {"init": "he", "bn_eps": 1e-5, "bn_momentum": 0.1}
_SAVED_BEFORE: dict[str, dict[str, Any]] = {
    "lesa": _OLD_LESA_TRUNK,
    "attention_per_cluster": _OLD_LESA_TRUNK,
}


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the model a loaded checkpoint describes and load its weights."""
    args = {**_SAVED_BEFORE.get(ckpt["model"], {}), **dict(ckpt["model_args"])}
    if args.get("backbone_weights"):  # the state dict holds the trunk: no need for the file
        args["backbone_weights"] = None
    try:
        model = create_model(ckpt["model"], **args)
    except TypeError as e:  # model_args the builder does not take
        raise DataError(f"checkpoint of {ckpt['model']!r}: bad model_args ({e})") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:  # missing, unexpected or mis-shaped weights
        first = str(e).strip().splitlines()[-1].strip()[:200]
        raise DataError(
            f"checkpoint of {ckpt['model']!r}: its weights do not fit the model ({first})"
        ) from None
    return model.eval()
