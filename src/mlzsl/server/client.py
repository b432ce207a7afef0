"""A small client of the ``mlzsl serve`` API on the standard library only (tests, benchmark).

``tag(url, [path or (name, bytes)], "dog, car")`` posts ``/api/tag`` and returns ``(status,
json)``; ``get_json(url)`` reads ``/api/health`` or ``/api/model``. Errors come back as their
status and ``{"error": ...}``, never as exceptions.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["encode_multipart", "get_json", "request_json", "tag"]

FileLike = Path | tuple[str, bytes]

# no proxy from the environment: the server is local
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def encode_multipart(
    fields: Mapping[str, str], files: Sequence[tuple[str, str, bytes]]
) -> tuple[bytes, str]:
    """A multipart/form-data body: text ``fields`` and ``(field, filename, content)`` files.

    Returns:
        (body, the Content-Type header value with its boundary).
    """
    boundary = f"mlzsl-{secrets.token_hex(12)}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for field, filename, content in files:
        quoted = filename.replace('"', "%22").replace("\r", "").replace("\n", "")
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{quoted}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def request_json(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, Any]:
    """One request; ``(status, decoded JSON)``, 4xx and 5xx included (the body as text when it
    is not JSON)."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with _OPENER.open(req, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def get_json(url: str, *, token: str | None = None, timeout: float = 30.0) -> tuple[int, Any]:
    """``GET url`` -> ``(status, JSON)``."""
    return request_json("GET", url, headers=_auth(token), timeout=timeout)


def tag(
    base_url: str,
    files: Sequence[FileLike],
    labels: str | Sequence[str],
    *,
    top_k: int | None = None,
    token: str | None = None,
    timeout: float = 120.0,
) -> tuple[int, Any]:
    """``POST {base_url}/api/tag`` with ``files`` (paths or ``(name, bytes)``) and ``labels``.

    Returns:
        ``(status, JSON)``: on 200 the ``mlzsl tag --json`` shape plus ``checkpoint``, ``files``
        and ``timing``; otherwise ``{"error": "..."}``.
    """
    fields = {"labels": labels if isinstance(labels, str) else ", ".join(labels)}
    if top_k is not None:
        fields["top_k"] = str(top_k)
    parts = [
        ("files", f.name, f.read_bytes()) if isinstance(f, Path) else ("files", f[0], f[1])
        for f in files
    ]
    body, content_type = encode_multipart(fields, parts)
    headers = {"Content-Type": content_type, **_auth(token)}
    url = base_url.rstrip("/") + "/api/tag"
    return request_json("POST", url, body=body, headers=headers, timeout=timeout)
