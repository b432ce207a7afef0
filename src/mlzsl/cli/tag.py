"""``mlzsl tag PATH... --labels "dog, bicycle, person"``: score photos against any labels.

Paths are image files or folders (searched recursively). With no ``--checkpoint`` the ready
real-photo model is used (built on first use, no training, no network); ``--checkpoint demo`` is
the latest ``mlzsl demo``'s. Files that are not readable images are listed at the end, never a
crash; only when no path is a readable image is it an error.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import TYPE_CHECKING

from mlzsl.cli import add_batch_size_argument, add_runtime_argument, positive_int

if TYPE_CHECKING:
    from mlzsl.inference.tags import ImageScorer, TagRun

NAME = "tag"
TAGS_HEADER = b"image,label,score,rank"  # what a file --out may replace without --force begins with
HELP = "tag photos (files or folders) with any labels you type (default: the real-photo model)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl tag``."""
    parser.add_argument("paths", nargs="+", type=Path, help="image files and/or folders")
    labels = parser.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", help="comma-separated label names, e.g. 'dog, red car'")
    labels.add_argument("--labels-file", type=Path, help="a file of label names, one per line")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="a checkpoint (.pt) or a name: photo (default, the real-photo model), photo-fast, "
        "photo-glove or demo",
    )
    parser.add_argument(
        "--onnx",
        type=Path,
        default=None,
        metavar="MODEL.onnx",
        help="tag with a model written by mlzsl export, on onnxruntime (no torch)",
    )
    parser.add_argument("--embedder", default=None, help="override the checkpoint's embedder")
    parser.add_argument("--top-k", type=positive_int, default=5, help="labels kept per image")
    parser.add_argument(
        "--threshold", type=float, default=None, help="drop labels scoring below this"
    )
    add_batch_size_argument(parser)
    parser.add_argument("--out", type=Path, default=None, help="write image,label,score,rank CSV")
    parser.add_argument(
        "--force", action="store_true", help="let --out replace a file that is not a tags CSV"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_runtime_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Tag, then print (or write) each image's ranked labels and the skipped files."""
    from mlzsl.cli._common import print_json
    from mlzsl.errors import ConfigError, DataError
    from mlzsl.files import check_replace, check_writable, starts_with
    from mlzsl.inference.tags import read_labels_file

    labels = read_labels_file(args.labels_file) if args.labels_file else args.labels
    if args.out is not None:  # before any work: never a store, a checkpoint or a folder
        check_replace(args.out, what="tags CSV", own=starts_with(TAGS_HEADER), force=args.force)
        check_writable(args.out.parent, "tags CSV")
    if args.onnx is not None:  # onnxruntime, no torch imported
        from mlzsl.inference.onnx_runtime import OnnxTagger

        if args.checkpoint is not None or args.embedder is not None or args.runtime == "torch":
            raise ConfigError(
                "--onnx takes no --checkpoint, --embedder or --runtime torch: the file holds both"
            )
        checkpoint = args.onnx
        tagger: ImageScorer = OnnxTagger(args.onnx, threads=args.threads)
    else:  # onnxruntime by default: no torch import once the export is cached
        from mlzsl.inference.engine import load_tagger

        tagger, checkpoint = load_tagger(
            args.checkpoint, embedder=args.embedder, runtime=args.runtime, threads=args.threads
        )
    result = tagger.tag_files(
        args.paths,
        labels,
        top_k=args.top_k,
        threshold=args.threshold,
        batch_size=args.batch_size,
        show_progress=not args.json,
    )
    if not result.tags:
        first, why = result.skipped[0]
        raise DataError(f"no readable image among {len(result.skipped)} path(s); {first}: {why}")
    if args.out is not None:
        write_tags_csv(args.out, result)
    if args.json:
        print_json({"checkpoint": str(checkpoint), **result.to_dict()})
        return 0
    for image, tags in result.tags.items():
        print(f"{image}: " + (", ".join(f"{t.label} {t.score:.3f}" for t in tags) or "—"))
    for image, why in result.skipped:
        print(f"skipped {image}: {why}")
    rate = len(result.tags) / max(result.seconds, 1e-9)
    print(
        f"{len(result.tags)} image(s) tagged, {len(result.skipped)} skipped, "
        f"{result.seconds:.1f} s ({rate:.1f} img/s)" + (f"; wrote {args.out}" if args.out else "")
    )
    return 0


def write_tags_csv(path: Path, result: TagRun) -> None:
    """``image,label,score,rank`` rows (rank 1 = best), written whole or not at all."""
    from mlzsl.files import atomic_write

    with atomic_write(path, newline="", what="tags CSV") as f:
        writer = csv.writer(f)
        writer.writerow(TAGS_HEADER.decode().split(","))
        for image, tags in result.tags.items():
            for rank, tag in enumerate(tags, start=1):
                writer.writerow([str(image), tag.label, f"{tag.score:.6f}", rank])
