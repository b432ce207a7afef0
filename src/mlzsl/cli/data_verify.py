"""``mlzsl data verify DIR``: find missing, placeholder, tiny and unreadable images."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mlzsl.cli import positive_int

NAME = "verify"
HELP = (
    "check every image of a data folder (missing, Flickr placeholders, tiny, unreadable); "
    "write manifest.csv, excluded.tsv and verify.json"
)

_LISTED = 20  # faulty images named on the terminal; excluded.tsv lists them all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl data verify``."""
    from mlzsl.datasets.verify import DEFAULT_MIN_BYTES, DEFAULT_PLACEHOLDER_MIN

    parser.add_argument("data_dir", type=Path, help="folder with vocabulary.csv, labels.csv")
    parser.add_argument(
        "--min-bytes",
        type=int,
        default=DEFAULT_MIN_BYTES,
        help=f"files smaller than this are 'tiny' (default {DEFAULT_MIN_BYTES})",
    )
    parser.add_argument(
        "--placeholder-min",
        type=positive_int,
        default=DEFAULT_PLACEHOLDER_MIN,
        help="identical files at least this many times are placeholders "
        f"(default {DEFAULT_PLACEHOLDER_MIN}, at least 2)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=min(8, os.cpu_count() or 1),
        help="threads reading files (default: CPU count, at most 8)",
    )
    parser.add_argument(
        "--no-decode", action="store_true", help="skip the PIL decode check (sizes and hashes only)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    """Verify, print counts per split and fault, the faulty images and the test-set variant."""
    from mlzsl.cli._common import format_table, print_json
    from mlzsl.datasets.verify import EXCLUDED_FILE, MANIFEST_FILE, STATUSES, verify_data

    summary = verify_data(
        args.data_dir,
        min_bytes=args.min_bytes,
        placeholder_min=args.placeholder_min,
        workers=args.workers,
        decode=not args.no_decode,
        show_progress=not args.json,
    )
    if args.json:
        print_json(summary.to_dict())
        return 0
    rows = [[split, *(c[s] for s in STATUSES)] for split, c in summary.counts.items()]
    print(f"{summary.root}: {summary.n_images:,} images checked in {summary.seconds:.1f} s")
    print(format_table(["split", *STATUSES], rows))
    for image, reason in summary.excluded[:_LISTED]:
        print(f"  {image}  {reason}")
    more = len(summary.excluded) - _LISTED
    if more > 0:
        print(f"  ... and {more:,} more")
    print(
        f"{len(summary.excluded):,} images excluded, listed in {summary.root / EXCLUDED_FILE}; "
        f"manifest {summary.root / MANIFEST_FILE}"
    )
    print(summary.test_set)
    return 0
