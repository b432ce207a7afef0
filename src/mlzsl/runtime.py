"""Process-wide torch settings shared by every command that computes with torch."""

from __future__ import annotations

import os
from pathlib import Path

from mlzsl.errors import ConfigError


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
