"""The FastAPI application of ``mlzsl serve``: the page and the JSON API over a :class:`TagService`.

Endpoints:

* ``GET /`` — the page (package data ``static/index.html``: one file, no CDN, no build step);
* ``GET /api/health`` — ``{"status": "ok", ...}``; never waits for the model, never needs a token;
* ``GET /api/model`` — the model card and the request limits;
* ``POST /api/tag`` — multipart: one or more file parts (any field name, ``files`` by convention),
  ``labels`` (comma- or line-separated) and optional ``top_k`` (default 5); answers the JSON of
  ``mlzsl tag --json`` plus ``checkpoint``, ``files`` and ``timing``.

Inference runs on the model's worker threads (a :class:`~concurrent.futures.ThreadPoolExecutor`
of ``service.tagger.workers``, one engine thread each), so the event loop keeps answering health
checks while requests are scored; requests wait their turn in its queue, at most
``Limits.max_queue`` at once (more get 503).
Every refused request gets a JSON 4xx (or 503) ``{"error": "one line"}``.

Safety: a bearer token, when set, is required on ``/api/*`` except ``/api/health`` (the page
itself holds no data and asks for the token); the body size is checked while it streams in; when
the server is bound to a loopback address only loopback host names are accepted (no DNS
rebinding). Uploads are parsed by Starlette into spooled temporary files (in memory up to 1 MB,
beyond that in the system's temporary folder, removed when the request ends), decoded with PIL
from those file objects and never written anywhere else, unpickled or logged.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlzsl.server.service import MB, ApiError, TagService, Upload, clean_name

__all__ = ["LOOPBACK_HOSTS", "create_app", "page_html"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# the page loads nothing from elsewhere: scripts and styles are inline, photos are blob: URLs
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def page_html() -> str:
    """The page, read from the package (``mlzsl/server/static/index.html``)."""
    return (resources.files("mlzsl.server") / "static" / "index.html").read_text(encoding="utf-8")


def _json_safe(obj: Any) -> Any:
    """NaN and infinities (a metric of an empty split) as null, so the JSON is standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


DRAIN_FACTOR = 4
"""A refused request's body is read (and dropped) up to this many times the request limit, so
the client gets its 4xx; a longer one is cut off."""


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop the rest of a request body, at most ``budget`` bytes."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class Guard:
    """ASGI middleware: host check, bearer token, streamed body-size limit, security headers.

    Args:
        app: the application it guards.
        token: the bearer token ``/api/*`` requires (except ``/api/health``); ``None``: none.
        max_request_bytes: the largest request body accepted; larger ones get 413, checked on
            ``Content-Length`` and again on the bytes as they arrive.
        allowed_hosts: host names the ``Host`` header may carry; ``None``: any.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        max_request_bytes: int,
        allowed_hosts: frozenset[str] | None,
    ) -> None:
        self.app, self.token = app, token
        self.max_request_bytes, self.allowed_hosts = max_request_bytes, allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        limit, received = self.max_request_bytes, 0
        refusal = self._refusal(path, headers)
        if refusal is not None:
            # read what the client is sending before answering: a client still writing its body
            # when the connection closes sees a broken pipe instead of the answer
            if "100-continue" not in headers.get("expect", "").lower():
                await _drain(receive, DRAIN_FACTOR * limit)
            await refusal(scope, receive, send)
            return

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await _drain(receive, DRAIN_FACTOR * limit)
                    raise ApiError(413, f"request too big: over {limit / MB:g} MB")
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                if path.startswith("/api/"):
                    extra.append((b"cache-control", b"no-store"))
                else:
                    extra.append((b"content-security-policy", PAGE_POLICY.encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, limited_receive, send_with_headers)

    def _refusal(self, path: str, headers: dict[str, str]) -> JSONResponse | None:
        if self.allowed_hosts is not None:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            name = name.strip("[]").lower()
            if name not in self.allowed_hosts:
                return _error(
                    400, f"host {host[:60]!r} not served: this server answers loopback only"
                )
        if self.token and path.startswith("/api/") and path != "/api/health":
            given = headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), self.token.encode()
            ):
                why = "wrong bearer token" if given else "missing bearer token"
                return _error(
                    401,
                    f"{why}: send the header 'Authorization: Bearer <token>'",
                    {"www-authenticate": "Bearer"},
                )
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_request_bytes:
            return _error(413, f"request too big: over {self.max_request_bytes / MB:g} MB")
        return None


class _Queue:
    """The inference threads and the count of tag requests in the server."""

    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlzsl-infer")
        self.pending = 0  # touched only on the event loop


def create_app(
    service: TagService,
    *,
    token: str | None = None,
    allowed_hosts: frozenset[str] | None = None,
) -> FastAPI:
    """The application serving ``service``.

    Args:
        service: the loaded model with its limits.
        token: the bearer token ``/api/*`` requires (``/api/health`` excepted); ``None``: none.
        allowed_hosts: host names accepted in the ``Host`` header (:data:`LOOPBACK_HOSTS` when
            bound to a loopback address); ``None``: any.
    """
    limits, card = service.limits, service.card
    queue = _Queue(service.tagger.workers)
    page = page_html()
    started = time.monotonic()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        queue.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="mlzsl", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(
        Guard,
        token=token or None,
        max_request_bytes=limits.max_request_bytes,
        allowed_hosts=allowed_hosts,
    )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        if e.status_code == 404:
            return _error(404, f"not found: {request.url.path[:100]}")
        if e.status_code == 405:
            return _error(405, f"method {request.method} not allowed on {request.url.path[:100]}")
        line = (str(e.detail).splitlines() or ["bad request"])[0]
        return _error(e.status_code, line[:300], e.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        return _error(400, f"bad request: {first.get('msg', 'invalid input')}")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        return _error(500, f"internal error ({type(e).__name__}); the server keeps serving")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"cache-control": "no-cache"})

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": card["name"],
            "requests_in_progress": queue.pending,
            "token_required": bool(token),
            "uptime_s": round(time.monotonic() - started, 1),
        }

    @app.get("/api/model")
    async def model() -> JSONResponse:
        return JSONResponse(_json_safe({**card, "limits": limits.to_dict()}))

    @app.post("/api/tag")
    async def tag(request: Request) -> JSONResponse:
        arrived = time.perf_counter()
        if queue.pending >= limits.max_queue:
            raise ApiError(
                503, f"server busy: {queue.pending} requests in progress; retry in a moment"
            )
        queue.pending += 1
        try:
            content_type = request.headers.get("content-type", "")
            if not content_type.startswith("multipart/form-data"):
                raise ApiError(415, "send multipart/form-data: files, labels and optionally top_k")
            # the parser's own cap; the exact count is checked below with a clearer message
            async with request.form(max_files=4 * limits.max_files + 16, max_fields=64) as form:
                uploads: list[Upload] = []
                taken: set[str] = set()
                for _, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        name = clean_name(value.filename, len(uploads) + 1, taken)
                        uploads.append(Upload(name, value.file, int(value.size or 0)))
                service.check_uploads(uploads)
                labels_field, top_k_field = form.get("labels"), form.get("top_k")
                if not isinstance(labels_field, str | None) or not isinstance(
                    top_k_field, str | None
                ):
                    raise ApiError(400, "labels and top_k must be text fields, not files")
                labels = service.parse_labels(labels_field)
                top_k = service.parse_top_k(top_k_field, len(labels))
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(
                    queue.executor, service.tag, uploads, labels, top_k
                )
        finally:
            queue.pending -= 1
        result["timing"]["total_ms"] = round((time.perf_counter() - arrived) * 1e3, 2)
        return JSONResponse(_json_safe(result))

    return app
