"""``mlzsl demo``: the whole path on the built-in scenes data, in a few minutes on a laptop."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlzsl.cli import add_threads_argument

NAME = "demo"
HELP = "scenes data -> features -> train ml2p and fast0tag -> ZSL/GZSL table -> tag test images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl demo``."""
    parser.add_argument("--out", type=Path, default=Path("mlzsl-demo"), help="run folder")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the comparison and a few tagged images."""
    from mlzsl.cli._common import print_json, results_table
    from mlzsl.demo import run_demo
    from mlzsl.runtime import set_threads

    set_threads(args.threads)
    result = run_demo(args.out, seed=args.seed, quiet=args.json)
    if args.json:
        report = str(result.report) if result.report is not None else None
        print_json({"results": result.results, "seconds": result.seconds, "report": report})
        return 0
    print()
    print(f"ZSL / GZSL on the scenes test set (seed {args.seed}), percent:")
    print(results_table(result.results, result.ks))
    print()
    print("Test images tagged with only the unseen labels offered (ml2p):")
    for ex in result.tags:
        top = ", ".join(f"{label} {score:.2f}" for label, score in ex["top3"])
        print(f"  {ex['image']}: present {ex['unseen_present']} -> top 3: {top}")
    print(
        f"top unseen label present in {100 * result.top1_present:.1f}% of test images "
        "holding an unseen label"
    )
    print(f"{result.seconds:.0f} s; run folder {result.out} (comparison.png, runs/*/)")
    if result.report is not None:
        print(f"report of the {result.report.parent.name} run: {result.report}")
    print("tag scenes images with it: mlzsl tag IMAGE... --checkpoint demo --labels 'red star'")
    print("tag your own photos: mlzsl tag PHOTO_OR_FOLDER... --labels 'dog, bicycle, person'")
    return 0
