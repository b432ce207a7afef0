"""Server test helpers: a free port, ``mlzsl serve`` in a subprocess, uvicorn in a thread."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mlzsl.server.client import get_json


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, *, timeout: float, process: subprocess.Popen[Any] | None = None) -> None:
    """Poll ``url/api/health`` until it answers 200; fail early if ``process`` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        with contextlib.suppress(OSError):
            status, _ = get_json(f"{url}/api/health", timeout=2)
            if status == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer /api/health within {timeout:.0f} s")


@contextlib.contextmanager
def serve_subprocess(args: Sequence[str], log: Path, *, timeout: float = 90) -> Iterator[str]:
    """``python -m mlzsl serve ARGS --port P`` (real CLI, real uvicorn); yields its base URL."""
    port = free_port()
    env = {**os.environ, "MLZSL_NO_PROGRESS": "1"}
    env.pop("MLZSL_TOKEN", None)
    command = [sys.executable, "-m", "mlzsl", "serve", *args, "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_healthy(url, timeout=timeout, process=process)
            except (RuntimeError, TimeoutError) as e:
                raise RuntimeError(f"{e}; its log:\n{log.read_text(errors='replace')}") from None
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


@contextlib.contextmanager
def serve_thread(app: Any) -> Iterator[str]:
    """``app`` on real uvicorn in a thread of this process; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout=30)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
