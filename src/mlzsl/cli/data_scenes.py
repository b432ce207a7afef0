"""``mlzsl data scenes``: generate the built-in synthetic dataset as a user data folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlzsl.cli import positive_int
from mlzsl.datasets.scenes import generate_scenes

NAME = "scenes"
HELP = "generate the built-in 'scenes' dataset: coloured shapes, 80 'colour shape' labels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mlzsl scenes``."""
    parser.add_argument("--out", type=Path, required=True, help="folder to write (created)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default: 0)")
    parser.add_argument("--train", type=positive_int, default=3000, help="train images (3000)")
    parser.add_argument("--test", type=positive_int, default=1000, help="test images (1000)")
    parser.add_argument("--size", type=positive_int, default=160, help="image side, px (160)")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="processes drawing images (default: min(2, CPUs)); the output does not depend on it",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace a scenes folder made with other settings"
    )


def run(args: argparse.Namespace) -> int:
    """Generate (or reuse) the folder and print a one-line summary."""
    result = generate_scenes(
        args.out,
        seed=args.seed,
        n_train=args.train,
        n_test=args.test,
        size=args.size,
        workers=args.workers,
        force=args.force,
    )
    data = result.dataset
    n_train, n_test = len(data.indices("train")), len(data.indices("test"))
    labels = data.label_set
    what = (
        "reused (parameters match scenes.json)"
        if result.reused
        else f"generated in {result.seconds:.1f} s ({len(data) / result.seconds:.0f} img/s)"
    )
    print(
        f"scenes: {n_train} train / {n_test} test images of {args.size}px, "
        f"{len(labels)} labels ({len(labels.seen_idx)} seen, {len(labels.unseen_idx)} unseen) "
        f"in {args.out}: {what}"
    )
    return 0
