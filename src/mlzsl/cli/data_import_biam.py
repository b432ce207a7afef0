"""``mlzsl data import-biam``: BiAM's HDF5 feature files -> a feature store."""

from __future__ import annotations

import argparse

from mlzsl.cli._common import add_import_arguments, run_import

NAME = "import-biam"
HELP = "import BiAM's VGG19 feature files (HDF5, NUS-WIDE or Open Images) into a feature store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl data import-biam``."""
    add_import_arguments(parser, "an .h5 file or a folder of them (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Import the files and print a one-line summary."""
    from mlzsl.store.peers import import_biam

    return run_import(import_biam, args)
