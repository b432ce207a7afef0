"""``mlzsl data nus-wide --root RELEASE --out DIR``: the NUS-WIDE release -> a data folder."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "nus-wide"
HELP = "convert the official NUS-WIDE release (image lists, tags, labels, images) to a data folder"

_LISTED = 10  # missing images named on the terminal; --json lists them all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl data nus-wide``."""
    parser.add_argument(
        "--root",
        type=Path,
        required=True,
        help="the unpacked release (ImageList/, NUS_WID_Tags/, ConceptsList/, Groundtruth/, ...)",
    )
    parser.add_argument("--out", type=Path, required=True, help="the data folder to write")
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        help="image folder holding <concept>/<file>.jpg (default: ROOT/Flickr)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    """Convert, then report the counts and the missing images."""
    from mlzsl.cli._common import print_json
    from mlzsl.datasets.nus_wide import convert_nus_wide

    summary = convert_nus_wide(args.root, args.out, images=args.images, show_progress=not args.json)
    if args.json:
        print_json(summary.to_dict())
        return 0
    print(
        f"{summary.out}: {summary.n_train:,} train + {summary.n_test:,} test images; "
        f"labels {summary.n_seen} seen + {summary.n_unseen} unseen = {summary.n_labels:,} "
        f"in {summary.seconds:.1f} s"
    )
    if summary.n_unlisted:
        print(f"{summary.n_unlisted:,} images of Imagelist are on neither list (left out)")
    if summary.missing:
        print(
            f"listed images with no file: {len(summary.missing):,} "
            "(kept; mlzsl data verify excludes them), e.g.:"
        )
        for image in summary.missing[:_LISTED]:
            print(f"  {image}")
    print(f"next: mlzsl data verify {summary.out}  (finds missing, placeholder and broken files)")
    return 0
