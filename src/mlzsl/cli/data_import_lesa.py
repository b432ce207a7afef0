"""``mlzsl data import-lesa``: LESA's TFRecord feature files -> a feature store."""

from __future__ import annotations

import argparse

from mlzsl.cli._common import add_import_arguments, run_import

NAME = "import-lesa"
HELP = "import LESA's VGG19 feature files (ZLIB TFRecords, NUS-WIDE or Open Images) into a store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl data import-lesa``."""
    add_import_arguments(parser, "a .tfrecords file or a folder of them (repeatable)")
    parser.add_argument(
        "--compression",
        choices=("auto", "zlib", "gzip", "none"),
        default="auto",
        help="TFRecord compression (LESA's files are zlib; auto reads it from the file)",
    )


def run(args: argparse.Namespace) -> int:
    """Import the files and print a one-line summary."""
    from mlzsl.store.peers import import_lesa

    return run_import(import_lesa, args, compression=args.compression)
