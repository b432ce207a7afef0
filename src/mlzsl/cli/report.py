"""``mlzsl report RUN_DIR``: an HTML report of a run folder (see :mod:`mlzsl.report`)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "report"
HELP = "write a self-contained HTML report of a run folder (curves, per-label AP, PR curves)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl report``."""
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a folder of mlzsl train")
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        metavar="PUBLISHED.csv",
        help="a published per-class AP table to compare with (mlzsl compare's layouts)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="HTML",
        help="the HTML file (default: RUN_DIR/report.html); the PNGs are written beside it",
    )
    parser.add_argument(
        "--force", action="store_true", help="let --out replace a file that is no mlzsl report"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    """Write the report and print where it is."""
    from mlzsl.cli._common import print_json
    from mlzsl.report import write_report

    report = write_report(args.run_dir, reference=args.reference, out=args.out, force=args.force)
    if args.json:
        print_json(
            {
                "html": str(report.html),
                "pictures": [str(p) for p in report.pictures],
                "missing": report.missing,
            }
        )
        return 0
    for line in report.missing:
        print(f"left out: {line}")
    print(f"report written to {report.html} ({len(report.pictures)} picture(s) beside it)")
    return 0
