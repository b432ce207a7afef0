"""``mlzsl data SOURCE ...``: prepare data (the built-in scenes, benchmark downloads turned into
data folders or feature stores) and verify a data folder.

Each source is a module ``mlzsl.cli.data_<source>`` with the same shape as a top-level command
(``NAME``, ``HELP``, ``add_arguments``, ``run``); :data:`SOURCES` lists them in help order.
"""

from __future__ import annotations

import argparse
import importlib

NAME = "data"
HELP = (
    "prepare data: generate the built-in scenes, convert NUS-WIDE / Open Images releases, "
    "import the peers' feature files, verify a data folder"
)

SOURCES = (
    "data_scenes",
    "data_nus_wide",
    "data_open_images",
    "data_import_biam",
    "data_import_lesa",
    "data_verify",
)


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
