"""``mlzsl compare RUN.csv REFERENCE.csv``: per-label AP of a run against a published table.

Reads our ``per_label_{zsl,gzsl}.csv`` (``mlzsl eval --per-label``) and the official (ML)²P and
LESA per-class CSVs (see :mod:`mlzsl.compare`). Labels are matched by name, or by row position
when a file has no names (the releases' GZSL files); ``--labels`` names such rows. No plot unless
``--plot PNG`` is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlzsl.cli import positive_int

if TYPE_CHECKING:
    from mlzsl.compare import Comparison

NAME = "compare"
HELP = "compare per-label AP of a run with a reference table (e.g. a published per-class CSV)"

N_EXAMPLES = 5  # labels named when listing those found in one table only


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl compare``."""
    parser.add_argument("run_csv", type=Path, metavar="RUN.csv", help="per-label AP of the run")
    parser.add_argument(
        "reference_csv", type=Path, metavar="REFERENCE.csv", help="per-label AP to compare with"
    )
    parser.add_argument(
        "--labels",
        type=Path,
        default=None,
        metavar="FILE",
        help="names, in row order, for the table without label names (one per line, or a "
        "vocabulary.csv); without it such rows are matched by position",
    )
    parser.add_argument(
        "--tolerance",
        type=_non_negative_float,
        default=1e-9,
        help="APs closer than this (fraction units) count as equal (default: 1e-9)",
    )
    parser.add_argument(
        "--top", type=positive_int, default=10, help="labels listed per direction (default: 10)"
    )
    parser.add_argument(
        "--plot", type=Path, default=None, metavar="PNG", help="write a plot here (default: none)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    """Compare the two tables and print the result."""
    from mlzsl.cli._common import print_json
    from mlzsl.compare import compare_tables, plot_comparison, read_labels_file
    from mlzsl.compare import read_per_label_table as read
    from mlzsl.errors import ConfigError

    if args.plot is not None and args.plot.is_dir():  # before any reading
        raise ConfigError(f"--plot {args.plot}: is a folder; name the PNG file to write")
    run_table, ref_table = read(args.run_csv), read(args.reference_csv)
    if args.labels is not None:
        if run_table.names is not None and ref_table.names is not None:
            raise ConfigError("--labels: both tables already name their labels")
        labels = read_labels_file(args.labels)
        if run_table.names is None:
            run_table = read(args.run_csv, labels)
        if ref_table.names is None:
            ref_table = read(args.reference_csv, labels)
    comparison = compare_tables(run_table, ref_table, tolerance=args.tolerance)
    if args.plot is not None:
        args.plot = plot_comparison(comparison, args.plot)  # the path written (.png added)
    if args.json:
        print_json({**comparison.to_dict(top=args.top), "plot": _str(args.plot)})
    else:
        print(format_comparison(comparison, args.top))
        if args.plot is not None:
            print(f"\nplot written to {args.plot}")
    return 0


def format_comparison(comparison: Comparison, top: int) -> str:
    """The plain-text report: matching, means, counts and the largest differences."""
    d = comparison.to_dict(top=top)
    parts = [_header(comparison, d), _means_table(d), _counts_line(d)]
    for direction in ("higher", "lower"):
        parts.append(_largest_table(d[f"run_{direction}"], direction, d[direction]))
    return "\n\n".join(parts)


def _header(comparison: Comparison, d: dict[str, Any]) -> str:
    """Which files, how the labels were matched, and which were left out."""
    n_run = d["n_common"] + len(d["only_in_run"])
    n_ref = d["n_common"] + len(d["only_in_reference"])
    lines = [
        f"run:        {comparison.run_path} ({n_run} labels)",
        f"reference:  {comparison.reference_path} ({n_ref} labels)",
        f"matched by {d['matched_by']}: {d['n_common']} common labels, used for every number below",
    ]
    if d["matched_by"] == "position":
        lines[-1] += " (a table has no label names: row i of one is row i of the other)"
    for side in ("run", "reference"):
        only = d[f"only_in_{side}"]
        if only:
            examples = ", ".join(repr(n) for n in only[:N_EXAMPLES])
            more = ", ..." if len(only) > N_EXAMPLES else ""
            lines.append(f"only in {side}: {len(only)} labels, left out ({examples}{more})")
    lines.append("AP in %; differences are run − reference, in percentage points")
    return "\n".join(lines)


def _means_table(d: dict[str, Any]) -> str:
    """Mean AP over the common labels and any overall metric both files report."""
    from mlzsl.cli._common import format_table

    rows = [("mean AP", d["mean_ap"])] + [(k, v) for k, v in d["overall"].items()]
    return format_table(
        ["metric", "run", "reference", "difference"],
        [
            [name, f"{v['run']:.2f}", f"{v['reference']:.2f}", f"{v['difference']:+.2f}"]
            for name, v in rows
        ],
    )


def _counts_line(d: dict[str, Any]) -> str:
    """Mean absolute difference and how many labels are higher, lower or equal."""
    return (
        f"mean |difference|: {d['mean_abs_difference']:.2f} points; run higher on "
        f"{d['higher']} labels, lower on {d['lower']}, equal on {d['equal']} "
        f"(|difference| <= {d['tolerance']:.3g} points)"
    )


def _largest_table(rows: list[dict[str, Any]], direction: str, n: int) -> str:
    """The labels the run scores most ``direction`` than the reference, as a table."""
    from mlzsl.cli._common import format_table

    title = f"run {direction} than reference: {n} labels"
    if not rows:
        return title
    title += f", largest {len(rows)}" if n > len(rows) else ""
    table = format_table(
        ["label", "run", "reference", "difference"],
        [
            [r["label"], f"{r['run']:.2f}", f"{r['reference']:.2f}", f"{r['difference']:+.2f}"]
            for r in rows
        ],
    )
    return f"{title}\n{table}"


def _non_negative_float(text: str) -> float:
    """argparse type: a float ≥ 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _str(path: Path | None) -> str | None:
    """``str(path)``, keeping ``None``."""
    return None if path is None else str(path)
