"""``mlzsl tag IMAGE... --labels "red circle, blue star"``: score images against any labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlzsl.cli import add_threads_argument, positive_int

NAME = "tag"
HELP = "tag images with any labels you type (default checkpoint: the latest demo's)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl tag``."""
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--labels", required=True, help="comma-separated label names")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (.pt)")
    parser.add_argument("--embedder", default=None, help="override the checkpoint's embedder")
    parser.add_argument("--top-k", type=positive_int, default=3, help="labels shown per image")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Tag and print each image's best labels."""
    from mlzsl.cli._common import print_json
    from mlzsl.runtime import set_threads
    from mlzsl.tagger import Tagger, latest_demo_checkpoint

    set_threads(args.threads)
    checkpoint = args.checkpoint or latest_demo_checkpoint()
    tagger = Tagger.from_checkpoint(checkpoint, embedder=args.embedder)
    tags = tagger.tag(args.images, args.labels, top_k=args.top_k)
    if args.json:
        print_json(
            {
                "checkpoint": str(checkpoint),
                "images": {
                    str(img): [{"label": t.label, "score": t.score} for t in row]
                    for img, row in zip(args.images, tags, strict=True)
                },
            }
        )
        return 0
    for image, row in zip(args.images, tags, strict=True):
        print(f"{image}: " + ", ".join(f"{t.label} ({t.score:.3f})" for t in row))
    return 0
