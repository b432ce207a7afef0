"""``mlzsl eval --checkpoint CKPT --store STORE.h5``: ZSL and GZSL metrics of a checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlzsl.cli import add_threads_argument

NAME = "eval"
HELP = "evaluate a checkpoint on a feature store (ZSL and GZSL)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl eval``."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint (.pt)")
    parser.add_argument("--store", type=Path, required=True, help="feature store (.h5)")
    parser.add_argument("--embedder", default=None, help="override the checkpoint's embedder")
    parser.add_argument("--split", default="test", choices=("train", "test"))
    parser.add_argument("--per-label", type=Path, default=None, help="write per-label AP CSVs here")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics."""
    from mlzsl.cli._common import print_json, results_table
    from mlzsl.data.store import FeatureStore
    from mlzsl.engine import evaluate_checkpoint
    from mlzsl.runtime import set_threads

    set_threads(args.threads)
    name, ks, result = evaluate_checkpoint(
        args.checkpoint, args.store, embedder=args.embedder, split=args.split
    )
    if args.per_label is not None:
        args.per_label.mkdir(parents=True, exist_ok=True)
        result.write_per_label_csv(args.per_label)
    variant = FeatureStore(args.store).test_variant()
    if args.json:
        print_json({**result.to_dict(), "test_set": variant})
    else:
        print(results_table({name: result.to_dict()}, ks))
        if variant:
            print(variant)
    return 0
