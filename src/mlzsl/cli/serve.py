"""``mlzsl serve``: a web page and an HTTP API for tagging photos with any labels.

Loads the model once (default: the ready real-photo model), then serves ``GET /`` (the page),
``GET /api/health``, ``GET /api/model`` and ``POST /api/tag`` with uvicorn
(:mod:`mlzsl.server.app`). Binds 127.0.0.1 unless ``--host`` says otherwise; ``--token`` (or the
environment variable ``MLZSL_TOKEN``) makes ``/api/*`` (but ``/api/health``) require
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import argparse
import os

from mlzsl.cli import add_runtime_argument, positive_int

NAME = "serve"
HELP = "serve a web page and an HTTP API that tag photos with any labels"
TOKEN_VARIABLE = "MLZSL_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl serve``."""
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="a checkpoint (.pt) or a name: photo (default, the real-photo model), photo-fast, "
        "photo-glove or demo",
    )
    parser.add_argument("--embedder", default=None, help="override the checkpoint's embedder")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--token",
        default=None,
        help=f"require 'Authorization: Bearer TOKEN' on /api/* (default: ${TOKEN_VARIABLE} if set)",
    )
    parser.add_argument(
        "--max-file-mb", type=positive_int, default=20, help="largest file accepted (MB)"
    )
    parser.add_argument(
        "--max-request-mb", type=positive_int, default=64, help="largest request accepted (MB)"
    )
    parser.add_argument("--max-files", type=positive_int, default=16, help="files per request")
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=40_000_000,
        help="largest image accepted, width × height (decompression-bomb guard)",
    )
    parser.add_argument("--max-labels", type=positive_int, default=2000, help="labels per request")
    parser.add_argument(
        "--max-label-chars", type=positive_int, default=100, help="characters per label"
    )
    parser.add_argument(
        "--max-queue",
        type=positive_int,
        default=32,
        help="tag requests in the server at once; more get 503",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (requests are logged as method, path and status only)",
    )
    add_runtime_argument(parser)


def resolve_token(flag: str | None) -> str | None:
    """The API token: ``--token``, else ``$MLZSL_TOKEN``, else none (blank counts as none)."""
    return (flag or os.environ.get(TOKEN_VARIABLE) or "").strip() or None


def run(args: argparse.Namespace) -> int:
    """Load the model, then serve until interrupted."""
    import sys
    import time

    import uvicorn

    from mlzsl.errors import ConfigError
    from mlzsl.server.app import LOOPBACK_HOSTS, create_app
    from mlzsl.server.service import MB, Limits, TagService

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    token = resolve_token(args.token)
    limits = Limits(
        max_file_bytes=args.max_file_mb * MB,
        max_files=args.max_files,
        max_request_bytes=args.max_request_mb * MB,
        max_pixels=args.max_pixels,
        max_labels=args.max_labels,
        max_label_chars=args.max_label_chars,
        max_queue=args.max_queue,
    )
    started = time.perf_counter()
    service = TagService.from_checkpoint(
        args.checkpoint,
        embedder=args.embedder,
        limits=limits,
        runtime=args.runtime,
        threads=args.threads,
    )
    service.warm_up()
    card = service.card
    print(
        f"mlzsl serve: model {card['name']} ({card['model']}, {card['backbone']['name']} at "
        f"{card['backbone']['image_size']} px, {card['embedder']} labels, on {card['runtime']}) "
        f"loaded in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    loopback = args.host in LOOPBACK_HOSTS
    if not loopback and not token:
        print(
            f"mlzsl serve: warning: listening on {args.host} without a token: anyone who can "
            f"reach this machine can use the API (set --token or ${TOKEN_VARIABLE})",
            file=sys.stderr,
        )
    app = create_app(service, token=token, allowed_hosts=LOOPBACK_HOSTS if loopback else None)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"mlzsl serve: open http://{shown}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return 0
