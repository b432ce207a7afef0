"""Finding, reading and checking backbone weight files.

``weights`` is one of: ``None`` (the backbone's default), ``"random"``, a local path (also
``file://...``) or an ``http(s)://`` URL (downloaded once into torch's hub cache,
``$TORCH_HOME/hub/checkpoints``). Every failure is one line naming the file: a
:class:`~mlzsl.errors.ConfigError` for a bad argument, a :class:`~mlzsl.errors.DataError` for a
file that is missing, unreadable or does not fit the network.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import torch

from mlzsl.backbones._base import RANDOM_WEIGHTS, WeightsInfo
from mlzsl.errors import ConfigError, DataError

StateDict = dict[str, torch.Tensor]
DefaultWeights = Callable[[], tuple[Path, str]]  # -> (file, source description)

_SHOWN = 3  # keys named per kind of mismatch in an error message


def resolve_weights(
    weights: str | os.PathLike[str] | None,
    *,
    name: str,
    default: DefaultWeights | None,
    url: str | None = None,
) -> tuple[StateDict | None, WeightsInfo]:
    """Read the state dict that ``weights`` names (``None`` for random init) and describe it.

    Args:
        weights: ``None``, ``"random"``, a path or a URL (see the module docstring).
        name: the backbone's name, for messages.
        default: returns the file ``weights=None`` means; ``None`` if there is no default.
        url: the usual download URL, suggested when there is no default.
    """
    if weights is None:
        if default is None:
            example = f", e.g. {url}" if url else ""
            raise ConfigError(
                f"backbone {name!r} has no offline default weights: pass weights=PATH_OR_URL "
                f"(a torchvision-format .pth file or its URL{example}) or weights='random'"
            )
        path, source = default()
        return read_state_dict(path), WeightsInfo(source=source, sha256=sha256_file(path))
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str) or not weights:
        raise ConfigError(f"weights must be a path, a URL or 'random', got {weights!r}")
    if weights == "random":
        return None, RANDOM_WEIGHTS
    if weights.startswith(("http://", "https://")):
        state, path = _download(weights)
        return _as_state_dict(state, weights), WeightsInfo(source=weights, sha256=sha256_file(path))
    path = _local_path(weights)
    return read_state_dict(path), WeightsInfo(source=str(path), sha256=sha256_file(path))


def _local_path(weights: str) -> Path:
    """The absolute file ``weights`` names; raises ``DataError`` if it is not a file."""
    if weights.startswith("file://"):
        weights = url2pathname(urlparse(weights).path)
    path = Path(weights).expanduser().resolve()
    if not path.is_file():
        raise DataError(
            f"{path}: backbone weights file not found "
            "(weights= takes a local path, an http(s):// URL or 'random')"
        )
    return path


def _download(url: str) -> tuple[object, Path]:
    """Fetch ``url`` through torch's hub cache; return what it holds and the cached file."""
    file_name = Path(urlparse(url).path).name
    if not file_name:
        raise ConfigError(f"weights URL {url} does not end in a file name")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name  # where torch.hub keeps it
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True)
    except Exception as e:  # network, HTTP and unpickling errors alike become one line
        raise DataError(f"{url}: cannot fetch backbone weights ({_one_line(e)})") from e
    return state, cached


def read_state_dict(path: Path) -> StateDict:
    """``torch.load`` a weight file safely (``weights_only``) onto the CPU."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt zip, pickle with code in it, truncated file, ...
        raise DataError(f"{path}: cannot read backbone weights ({_one_line(e)})") from e
    return _as_state_dict(state, str(path))


def _as_state_dict(state: object, where: str) -> StateDict:
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise DataError(f"{where}: expected a state dict (names -> tensors), got {type(state)}")
    return dict(state)


def fit_state_dict(
    state: StateDict,
    expected: Mapping[str, torch.Size],
    *,
    where: str,
    name: str,
    ignore_prefixes: tuple[str, ...] = (),
) -> StateDict:
    """Check ``state`` against the network's names and shapes and return what to load.

    Keys starting with one of ``ignore_prefixes`` (a classifier the backbone does not build) are
    dropped, BatchNorm ``num_batches_tracked`` counters may be absent (old torchvision files lack
    them), and floating tensors are cast to float32 and made contiguous.

    Raises:
        DataError: one line naming ``where`` and the first missing, unexpected and misshapen keys.
    """
    kept = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    missing = [k for k in expected if k not in kept and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in kept if k not in expected]
    misshapen = [
        f"{k} {tuple(v.shape)} (expected {tuple(expected[k])})"
        for k, v in kept.items()
        if k in expected and v.shape != expected[k]
    ]
    problems = [
        _listing(label, keys)
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", misshapen))
        if keys
    ]
    if problems:
        raise DataError(f"{where}: weights do not fit backbone {name!r}: " + "; ".join(problems))
    # Contiguous, because the tensors become the parameters (load_state_dict(assign=True)).
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in kept.items()}


def _listing(label: str, keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return f"{label} {', '.join(keys[:_SHOWN])}{more}"


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, cached per (path, size, modification time) in this process."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
