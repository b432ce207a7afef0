"""The one progress-bar helper: every long loop in mlzsl goes through :func:`progress`.

It shows count, rate and ETA on stderr, and stays quiet when ``MLZSL_NO_PROGRESS=1`` is set
(for logs) or when ``disable`` is passed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """Whether progress bars are shown (``MLZSL_NO_PROGRESS=1`` turns them off)."""
    return os.environ.get("MLZSL_NO_PROGRESS", "") not in ("1", "true", "yes")


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    disable: bool = False,
) -> tqdm:
    """Wrap ``iterable`` (or a manual counter when ``None``) in a bar with rate and ETA.

    Args:
        iterable: what to iterate; ``None`` gives a bar advanced with ``.update(n)``.
        total: the number of units when ``iterable`` has no ``len``.
        desc: a short label shown before the bar.
        unit: the name of one unit ("img", "batch", ...).
        initial: units already done (a resumed job starts its bar there).
        disable: hide the bar.
    """
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=disable or not progress_enabled(),
        dynamic_ncols=True,
        smoothing=0.1,
    )


def iterate(iterable: Iterable[T], **kwargs: object) -> Iterator[T]:
    """Iterate ``iterable`` with a progress bar; same keyword arguments as :func:`progress`."""
    yield from progress(iterable, **kwargs)  # type: ignore[arg-type]


def say(line: str) -> None:
    """One line of news about long work on stderr (a model built or exported on first use);
    quiet when progress bars are (``MLZSL_NO_PROGRESS=1``)."""
    if progress_enabled():
        print(line, file=sys.stderr, flush=True)
