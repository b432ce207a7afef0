"""``mlzsl data open-images --classes DIR --annotations DIR --images DIR --out DIR``.

Converts the Open Images V4 (2018_04) download into a data folder with partial annotation
(``labels.csv`` with ``labels`` and ``negatives``); see :mod:`mlzsl.datasets.open_images`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "open-images"
HELP = "convert Open Images V4 (2018_04: class files, human-verified labels, images) to a folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl data open-images``."""
    parser.add_argument(
        "--classes",
        type=Path,
        required=True,
        help="folder with classes-trainable.txt, unseen_labels.pkl, top_400_unseen.csv, "
        "class-descriptions.csv",
    )
    parser.add_argument(
        "--annotations",
        type=Path,
        required=True,
        help="folder with SPLIT-annotations-human-imagelabels.csv (flat or in SPLIT/ subfolders)",
    )
    parser.add_argument(
        "--images", type=Path, required=True, help="folder with train/ and test/ of <ImageID>.jpg"
    )
    parser.add_argument("--out", type=Path, required=True, help="the data folder to write")
    parser.add_argument(
        "--unseen",
        choices=("evaluated", "all"),
        default="evaluated",
        help="unseen labels: the 400 evaluated ones (default) or all 2,594 candidates",
    )
    parser.add_argument(
        "--splits",
        default="train,test",
        help="release splits to convert, comma-separated (default train,test; the peers "
        "evaluate on test alone)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    """Convert, then report the counts per split."""
    from mlzsl.cli._common import format_table, print_json
    from mlzsl.datasets.open_images import convert_open_images

    summary = convert_open_images(
        args.classes,
        args.annotations,
        args.images,
        args.out,
        unseen=args.unseen,
        splits=args.splits.split(","),
        show_progress=not args.json,
    )
    if args.json:
        print_json(summary.to_dict())
        return 0
    headers = ["split", "rows", "outside", "classes outside", "annotated", "no file", "images"]
    headers += ["positives", "negatives", "conflicts"]
    rows = [
        [s.split, s.rows, s.rows_outside, s.classes_outside, s.images_annotated]
        + [s.images_missing, s.images, s.positives, s.negatives, s.conflicts]
        for s in summary.splits
    ]
    print(format_table(headers, [[f"{v:,}" if isinstance(v, int) else v for v in r] for r in rows]))
    print(
        f"{summary.out}: labels {summary.n_seen:,} seen + {summary.n_unseen:,} unseen "
        f"({summary.unseen}) in {summary.seconds:.1f} s; annotation rows of classes outside "
        "the vocabulary are ignored; images without a file are left out"
    )
    print(f"next: mlzsl extract {summary.out} --out STORE.h5")
    return 0
