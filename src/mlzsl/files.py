"""One way to open an input and one way to write an output (docs/design.md, "Errors").

- :func:`check_input` / :func:`open_input`: a user-named input must be a regular file, checked
  with ``stat`` before anything opens it, so a FIFO, socket or device never blocks a command; the
  file is then opened non-blocking and checked again on its descriptor, so a file swapped for a
  FIFO in between is refused too.
- :func:`atomic_path` / :func:`atomic_write`: an output is written under a temporary name in the
  target's own folder, flushed to disk and renamed into place; on any failure the temporary file
  is removed and the target is left as it was, and an ``OSError`` (a full disk, a read-only
  folder) becomes one :class:`~mlzsl.errors.DataError` naming the path and the reason.
- :func:`check_replace`: an output never replaces a file of another kind (a feature store, a
  checkpoint, a folder) unless the command was given ``--force``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, TextIO, overload

from mlzsl.errors import DataError, MlzslError

__all__ = [
    "atomic_path",
    "atomic_write",
    "check_input",
    "check_replace",
    "check_writable",
    "describe",
    "open_input",
    "has_text",
    "os_reason",
    "starts_with",
]

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def os_reason(error: OSError) -> str:
    """The OS's words for ``error`` (``No space left on device``), in one line."""
    code = error.errno
    if code is None:  # h5py and others put the errno inside their message
        found = re.search(r"errno\s*=\s*(\d+)", str(error))
        code = int(found.group(1)) if found else None
    if code:
        return os.strerror(code)
    return " ".join(str(error).split())[:200] or type(error).__name__


def _not_regular(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_input(path: str | Path, what: str = "file") -> Path:
    """``path`` if it names a regular file (by ``stat``, before anything opens it).

    Raises:
        DataError: one line naming ``path``: not found, a folder, not a regular file (a FIFO,
            socket or device, which would block or never end), or not reachable.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the {what} ({os_reason(e)})") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: a folder, not {_article(what)}")
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: not a regular file ({_not_regular(mode)}), not {_article(what)}")
    return path


@overload
def open_input(
    path: str | Path,
    mode: Literal["rb"] = "rb",
    *,
    what: str = "file",
    encoding: None = None,
    errors: None = None,
    newline: None = None,
) -> BinaryIO: ...


@overload
def open_input(
    path: str | Path,
    mode: Literal["r"],
    *,
    what: str = "file",
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
) -> TextIO: ...


def open_input(
    path: str | Path,
    mode: str = "rb",
    *,
    what: str = "file",
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
) -> IO[Any]:
    """Open a user-named input for reading, a regular file only (see :func:`check_input`).

    The file is opened non-blocking and checked again on its descriptor, so even a path swapped
    for a FIFO after the ``stat`` cannot block. ``mode`` is ``"rb"`` or ``"r"`` (text).
    """
    if mode not in ("r", "rb"):
        raise ValueError(f"open_input reads only: mode 'r' or 'rb', got {mode!r}")
    path = check_input(path, what)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise DataError(f"{path}: cannot read the {what} ({os_reason(e)})") from None
    try:
        st_mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(st_mode):
            raise DataError(
                f"{path}: not a regular file ({_not_regular(st_mode)}), not {_article(what)}"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, mode, encoding=encoding, errors=errors, newline=newline)
    except BaseException:
        os.close(fd)
        raise


def _article(what: str) -> str:
    return f"an {what}" if what[:1] in "aeiou" else f"a {what}"


# ----------------------------------------------------------------------------- outputs


def check_writable(folder: str | Path, what: str = "output") -> None:
    """Fail early, in one line, when ``folder`` (or its nearest existing parent) cannot take a
    new file: a read-only filesystem, no permission, a full disk. Creates and removes one
    empty temporary file."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"{folder}: cannot write the {what}: {existing} is a file, not a folder")
    probe = existing / f".mlzsl-probe.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        probe.touch(exist_ok=False)
    except OSError as e:
        raise DataError(f"{folder}: cannot write the {what} ({os_reason(e)})") from None
    with contextlib.suppress(OSError):
        probe.unlink()


@contextlib.contextmanager
def atomic_path(path: str | Path, *, what: str = "file", fsync: bool = True) -> Iterator[Path]:
    """A temporary path in ``path``'s folder to write ``path`` at; renamed into place on success.

    For writers that take a path (h5py, torch's ONNX exporter, ``np.savez``, matplotlib). On
    any exception the temporary file is removed and ``path`` is left untouched; an ``OSError``
    becomes one :class:`DataError` naming ``path`` and the OS's reason.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give a file path for the {what}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{path}: cannot write the {what} ({os_reason(e)})") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        full = None
        if not isinstance(e, (OSError, MlzslError, KeyboardInterrupt, SystemExit, GeneratorExit)):
            full = _no_space(path.parent)  # torch and others hide ENOSPC in errors of their own
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError):
            raise DataError(f"{path}: cannot write the {what} ({os_reason(e)})") from None
        if full:
            raise DataError(f"{path}: cannot write the {what} ({full})") from None
        raise


@contextlib.contextmanager
def atomic_write(
    path: str | Path,
    mode: str = "w",
    *,
    what: str = "file",
    encoding: str | None = "utf-8",
    newline: str | None = None,
    fsync: bool = True,
) -> Iterator[IO[Any]]:
    """A file object writing ``path`` atomically (see :func:`atomic_path`); ``mode`` ``"w"`` or
    ``"wb"``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode 'w' or 'wb', got {mode!r}")
    text = mode == "w"
    with (
        atomic_path(path, what=what, fsync=False) as tmp,
        open(  # noqa: PTH123
            tmp, mode, encoding=encoding if text else None, newline=newline if text else None
        ) as f,
    ):
        yield f
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _no_space(folder: Path) -> str | None:
    """``"No space left on device"`` when ``folder``'s filesystem has no free block left."""
    try:
        fs = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return os.strerror(errno.ENOSPC) if fs.f_bavail * fs.f_frsize < 4096 else None


# ----------------------------------------------------------------------------- not replacing


def describe(path: str | Path) -> str:
    """What ``path`` holds, as a phrase: ``"a feature store"``, ``"an mlzsl checkpoint"``,
    ``"a data folder"``, ``"a run folder"``, ``"a folder"``, ``"an ONNX model"`` or ``"a file"``."""
    path = Path(path)
    if path.is_dir():
        if (path / "labels.csv").exists() or (path / "vocabulary.csv").exists():
            return "a data folder"
        if (path / "history.csv").exists() or (path / "best.pt").exists():
            return "a run folder"
        return "a folder"
    try:
        with open_input(path) as f:
            head = f.read(64)
    except DataError:
        return "a file"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "a feature store" if _is_store(path) else "an HDF5 file"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if path.suffix.lower() == ".onnx" or b"pytorch" in head:
        return "an ONNX model"
    return "a file"


def _is_store(path: Path) -> bool:
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return str(f.attrs.get("format", "")).startswith("mlzsl-store")
    except Exception:  # any unreadable HDF5 file is simply not a store
        return False


def _zip_kind(path: Path) -> str:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            pickles = [n for n in z.namelist() if n.endswith("data.pkl")]
            if not pickles:
                return "a zip file"
            if b"mlzsl-checkpoint" in z.read(pickles[0])[: 1 << 20]:
                return "an mlzsl checkpoint"
            return "a torch checkpoint"
    except (OSError, zipfile.BadZipFile):
        return "a zip file"


def check_replace(
    path: str | Path,
    *,
    what: str,
    own: Callable[[Path], bool],
    force: bool = False,
    option: str = "--out",
) -> None:
    """Refuse, before any work, to replace ``path`` unless it is missing, empty, the command's
    own kind of file (``own(path)``), or ``force`` is set. A folder is never replaced.

    Raises:
        DataError: one line naming ``path``, what it holds and how to go on.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_dir():
        raise DataError(f"{path}: {option} names {describe(path)}; give a file path for the {what}")
    if force or (path.is_file() and path.stat().st_size == 0):
        return
    if path.is_file() and own(path):
        return
    raise DataError(
        f"{path}: holds {describe(path)}, not {_article(what)}; pass --force to replace it "
        f"or choose another {option}"
    )


def starts_with(prefix: bytes) -> Callable[[Path], bool]:
    """An ``own`` test for :func:`check_replace`: the file begins with ``prefix``."""

    def test(path: Path) -> bool:
        try:
            with open_input(path) as f:
                return f.read(len(prefix)) == prefix
        except DataError:
            return False

    return test


def has_text(marker: bytes, within: int = 4096) -> Callable[[Path], bool]:
    """An ``own`` test for :func:`check_replace`: ``marker`` is in the first ``within`` bytes."""

    def test(path: Path) -> bool:
        try:
            with open_input(path) as f:
                return marker in f.read(within)
        except DataError:
            return False

    return test
