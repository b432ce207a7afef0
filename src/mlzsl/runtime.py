"""Process-wide torch settings shared by every command that computes with torch."""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from mlzsl.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


def set_threads(threads: int | None) -> int:
    """Set the number of intra-op CPU threads torch uses and return the number in force.

    ``None`` keeps torch's default. On a busy 2-core machine one thread is often faster than two,
    which is why every computing command takes ``--threads``.
    """
    import torch

    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # for worker processes started later
    return torch.get_num_threads()


def cache_home() -> Path:
    """mlzsl's own folder: ``$MLZSL_CACHE`` if set, else ``~/.cache/mlzsl``."""
    root = os.environ.get("MLZSL_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "mlzsl"


RUNTIMES = ("auto", "torch", "onnx")
"""Engines a checkpoint's tagging path runs on (``--runtime``): ``auto`` picks one per machine
(:func:`choose_runtime`)."""


def cpu_threads() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. under ``taskset`` or a
    container's cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def onnxruntime_installed() -> bool:
    """Whether ``onnxruntime`` and ``onnx`` (which exporting needs) can be imported."""
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None and find_spec("onnx") is not None


def choose_runtime(name: str | None = "auto", *, gpu: bool | None = None) -> str:
    """``"torch"`` or ``"onnx"``: the engine ``--runtime name`` means here.

    ``auto`` (and ``None``) is onnxruntime for work on a CPU where it is installed (about 2x
    torch's speed: ``benchmarks/README.md``), torch for work on a GPU or without onnxruntime.
    ``gpu`` says where the work runs; ``None``: on the GPU when CUDA is available.
    """
    name = name or "auto"
    if name not in RUNTIMES:
        raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {name!r}")
    if name == "torch":
        return name
    if name == "onnx" or not (_cuda_available() if gpu is None else gpu):
        if onnxruntime_installed():
            return "onnx"
        if name == "onnx":
            raise ConfigError(
                "--runtime onnx needs onnxruntime and onnx: pip install 'mlzsl[export]'"
            )
    return "torch"


def cpu_session(path: str | Path) -> Any:
    """An onnxruntime session of the ONNX file ``path`` on the CPU, made to be called from
    several threads at once, each call computing on its caller's thread alone: one intra-op
    thread, spinning off. On a CPU, images side by side on one thread each beat threads inside
    one image, and a pool that spins while it waits collapses when another job takes a core
    (``benchmarks/README.md``). Raises what onnxruntime raises on a bad file."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, *, ahead: int = 2
) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, results in the order of ``items``.

    At most ``ahead`` items a worker are started before their result is taken, so memory stays
    bounded on long inputs; a consumer that stops early cancels what has not started. With one
    worker ``fn`` runs on the caller's thread.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(workers) as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= ahead * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


_GPU_DEVICES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd")


def _cuda_available() -> bool:
    """Whether torch sees a GPU; without torch's import (a second) where no GPU driver is
    present (NVIDIA's device files, or ROCm's ``/dev/kfd``)."""
    if "torch" not in sys.modules and not any(os.path.exists(p) for p in _GPU_DEVICES):
        return False
    import torch

    return bool(torch.cuda.is_available())
