"""``mlzsl data SOURCE ...``: turn a benchmark download into a data folder or a feature store.

Each source is a module ``mlzsl.cli.data_<source>`` with the same shape as a top-level command
(``NAME``, ``HELP``, ``add_arguments``, ``run``); :data:`SOURCES` lists them in help order.
"""

from __future__ import annotations

import argparse
import importlib

NAME = "data"
HELP = "prepare NUS-WIDE / Open Images from their releases, or import the peers' feature files"

SOURCES = ("data_nus_wide", "data_open_images", "data_import_biam", "data_import_lesa")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-command per source module."""
    sub = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    for module_name in SOURCES:
        module = importlib.import_module(f"mlzsl.cli.{module_name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_source_run=module.run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen source's command."""
    return int(args._source_run(args) or 0)
