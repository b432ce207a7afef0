"""``mlzsl data import-biam``: BiAM's HDF5 feature files -> a feature store.

Also home of the arguments and summary line the two peer imports share (``import-lesa``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = "import-biam"
HELP = "import BiAM's VGG19 feature files (HDF5, NUS-WIDE or Open Images) into a feature store"

# kept here, not imported from mlzsl.data.peer_features, so `mlzsl --help` stays light
DATASETS = ("nus-wide", "open-images")


def add_import_arguments(parser: argparse.ArgumentParser, files: str) -> None:
    """The arguments both peer imports take; ``files`` says what a train/test path may be."""
    parser.add_argument(
        "--train", action="append", type=Path, metavar="PATH", help=f"train split: {files}"
    )
    parser.add_argument(
        "--test", action="append", type=Path, metavar="PATH", help=f"test split: {files}"
    )
    parser.add_argument("--out", type=Path, required=True, help="the store to write (.h5)")
    parser.add_argument("--dataset", choices=DATASETS, default="nus-wide", help="the benchmark")
    parser.add_argument(
        "--vocabulary",
        type=Path,
        required=True,
        metavar="DIR",
        help="NUS-WIDE: folder with TagList1k.txt and Concepts81.txt; Open Images: folder with "
        "classes-trainable.txt, unseen_labels.pkl, top_400_unseen.csv, class-descriptions.csv",
    )
    parser.add_argument(
        "--unseen",
        choices=("evaluated", "all"),
        default="evaluated",
        help="Open Images unseen labels: the 400 evaluated ones or all 2,594 candidates",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing store")


def run_import(importer: Callable[..., Path], args: argparse.Namespace, **extra: Any) -> int:
    """Call ``importer`` with the shared arguments (and ``extra``), print the summary line."""
    out = importer(
        args.out,
        train=args.train or (),
        test=args.test or (),
        dataset=args.dataset,
        vocabulary=args.vocabulary,
        unseen=args.unseen,
        overwrite=args.force,
        **extra,
    )
    print(summary(out))
    return 0


def summary(out: Path) -> str:
    """One line describing a finished store: images per split, features, labels, test set."""
    from mlzsl.data.store import FeatureStore

    store = FeatureStore(out)
    c, h, w = store.header.feature_shape
    n_train, n_test = len(store.indices("train")), len(store.indices("test"))
    labels = store.label_set
    line = (
        f"{out}: {len(store):,} images ({n_train:,} train, {n_test:,} test), features "
        f"{c}×{h}×{w}, {len(labels.seen_idx):,} seen + {len(labels.unseen_idx):,} unseen labels"
    )
    variant = store.test_variant() if n_test else None
    return f"{line}; {variant}" if variant else line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl data import-biam``."""
    add_import_arguments(parser, "an .h5 file or a folder of them (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Import the files and print a one-line summary."""
    from mlzsl.data.peer_features import import_biam

    return run_import(import_biam, args)
