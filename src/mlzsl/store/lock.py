"""``STORE.h5.lock``: one process at a time sets up a store's parts folder or assembles the store.

The lock is a file created with O_CREAT|O_EXCL that names its holder (machine, pid namespace and
pid, a random token); an assembling holder refreshes its modification time as it goes. A lock is
stale when its holder ran on this machine and has exited (e.g. was killed), or when it has not
been refreshed for :data:`LOCK_STALE_SECONDS` (a holder on another machine that died); the next
taker removes a stale lock by itself, and deleting the file by hand clears it at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from pathlib import Path

from mlzsl.errors import DataError
from mlzsl.files import os_reason

LOCK_STALE_SECONDS = 600.0
_LOCK_POLL_SECONDS = 0.2
_LOCK_REFRESH_SECONDS = 5.0


def unique_name() -> str:
    """A name fragment no other process (on any machine) picks: for temporary files and locks."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _host_id() -> str:
    """This machine and pid namespace: a pid means something only within both."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()} {namespace}".strip()


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    if os.name != "posix":
        return True  # no harmless liveness probe there: such a lock goes stale by age only
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _lock_is_stale(path: Path) -> bool:
    """Whether the lock's holder is gone: exited on this machine, or silent too long anywhere."""
    try:
        age = time.time() - path.stat().st_mtime
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False  # released meanwhile: the caller simply tries again
    except (OSError, ValueError):
        info = {}  # just created and not yet written, or damaged: judged by age alone
    if age > LOCK_STALE_SECONDS:
        return True
    same_host = isinstance(info, dict) and info.get("host") == _host_id()
    return same_host and not _pid_alive(info.get("pid"))


def _break_lock(path: Path) -> None:
    """Remove a stale lock, moving it aside first so a lock another process took meanwhile stays."""
    aside = path.with_name(f"{path.name}.{unique_name()}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if not _lock_is_stale(aside):  # someone broke it before us and took it: put theirs back
        with contextlib.suppress(OSError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)


class StoreLock:
    """``STORE.h5.lock``, held while the parts folder is set up or the store assembled.

    Use as a context manager; ``held`` says whether it was obtained. With ``wait`` it polls until
    the lock is free (breaking stale ones), else it gives up at once when a live holder has it.
    """

    def __init__(self, path: Path, *, wait: bool) -> None:
        self.path, self.wait = path, wait
        self.token = unique_name()
        self.held = False
        self._refreshed = 0.0

    def __enter__(self) -> StoreLock:
        while not self._try_create():
            if _lock_is_stale(self.path):
                _break_lock(self.path)
            elif not self.wait:
                break
            else:
                time.sleep(_LOCK_POLL_SECONDS)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.held and self._owner_token() == self.token:
            self.path.unlink(missing_ok=True)
        self.held = False

    def refresh(self) -> None:
        """Show waiting processes the holder is alive (touches the file every few seconds)."""
        now = time.monotonic()
        if self.held and now - self._refreshed > _LOCK_REFRESH_SECONDS:
            with contextlib.suppress(OSError):
                os.utime(self.path)
            self._refreshed = now

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"host": _host_id(), "pid": os.getpid(), "token": self.token}, f)
        except OSError as e:  # a full disk: no empty lock left behind, one line
            self.path.unlink(missing_ok=True)
            raise DataError(f"{self.path}: cannot write the lock ({os_reason(e)})") from None
        self.held, self._refreshed = True, time.monotonic()
        return True

    def _owner_token(self) -> str | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8")).get("token")
        except (OSError, ValueError, AttributeError):
            return None
