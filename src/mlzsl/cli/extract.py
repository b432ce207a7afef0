"""``mlzsl extract DIR --out STORE.h5``: image folder -> feature store."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlzsl.cli import add_threads_argument, positive_int

NAME = "extract"
HELP = "extract backbone feature maps of a data folder into an HDF5 feature store (resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl extract``."""
    parser.add_argument(
        "data_dir", type=Path, help="folder with vocabulary.csv, labels.csv, images"
    )
    parser.add_argument("--out", type=Path, required=True, help="the store to write (.h5)")
    parser.add_argument("--backbone", default=None, help="backbone name (see --list-backbones)")
    parser.add_argument("--weights", default=None, help="backbone weights: a path, URL or 'random'")
    parser.add_argument("--image-size", type=positive_int, default=None, help="input side in px")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per forward")
    parser.add_argument("--workers", type=int, default=2, help="image-decoding worker processes")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Run the extraction and print a summary."""
    from mlzsl.backbones import DEFAULT_BACKBONE
    from mlzsl.data.extract import extract_features
    from mlzsl.runtime import set_threads

    set_threads(args.threads)
    summary = extract_features(
        args.data_dir,
        args.out,
        backbone=args.backbone or DEFAULT_BACKBONE,
        weights=args.weights,
        image_size=args.image_size,
        batch_size=args.batch_size,
        workers=args.workers,
    )
    if summary.up_to_date:
        print(f"{summary.store}: up to date ({summary.n_written} images)")
    else:
        reused = f", {summary.blocks_reused} blocks resumed" if summary.blocks_reused else ""
        print(
            f"{summary.store}: {summary.n_written} images written, "
            f"{len(summary.skipped)} skipped{reused} in {summary.seconds:.1f} s "
            f"({summary.images_per_second:.1f} img/s)"
        )
    if summary.skipped:
        print(f"skipped files listed in {summary.report}")
    return 0
