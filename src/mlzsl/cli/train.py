"""``mlzsl train --store STORE.h5 | --data DIR --model NAME --out DIR [key=value ...]``.

``--data DIR`` trains on a labelled image folder: its features are extracted with the config's
``backbone`` and ``image_size`` into a cached store (:mod:`mlzsl.store.cache`) that later runs
reuse, then training runs exactly as with ``--store``.

On an Open Images store the best epoch is chosen on the BiAM convention (the regime of (ML)²P's
published figures) and both conventions are printed; see :mod:`mlzsl.cli.eval`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlzsl.cli import add_threads_argument

if TYPE_CHECKING:
    from mlzsl.config import TrainConfig

NAME = "train"
HELP = (
    "train a model on a feature store or an image folder (resumes an interrupted run in the "
    "same --out)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl train``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--store", type=Path, help="feature store (.h5)")
    source.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="labelled image folder (user data format): extracted with the config's backbone "
        "(default efficientnet_lite0; pixels for image-input models) and image_size into a "
        "cached store that later runs reuse",
    )
    parser.add_argument("--model", default=None, help="registered model name (see `mlzsl models`)")
    parser.add_argument("--embedder", default=None, help="label embedder spec (default glove50)")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML config file or packaged GROUP/MODEL, e.g. photos/ml2p (default: the model's "
        "paper settings)",
    )
    parser.add_argument(
        "--no-resume", action="store_true", help="start over even if last.pt exists"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Train, then print the best epoch's metrics."""
    from mlzsl.cli._common import print_json, results_text
    from mlzsl.config import TrainConfig, load_config, model_default_config
    from mlzsl.runtime import set_threads
    from mlzsl.store.feature_store import FeatureStore
    from mlzsl.training.engine import fit

    set_threads(args.threads)
    overrides = list(args.overrides)
    if args.embedder:
        overrides.append(f"embedder={args.embedder}")
    if args.config is not None:  # the file's settings, then --model and key=value
        config = load_config(
            args.config, [*([f"model={args.model}"] if args.model else []), *overrides]
        )
    else:  # the model's paper settings (configs/default/MODEL.yaml), then key=value
        config = model_default_config(args.model or TrainConfig().model, overrides)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    store = args.store if args.data is None else _folder_store(args.data, config, args.json, rank0)
    result = fit(config, store, args.out, resume=not args.no_resume, quiet=args.json)
    results = result.results
    if not rank0:
        return 0  # under torchrun only rank 0 reports
    test_set = FeatureStore(store).test_set_line()
    if args.json:
        print_json(
            {
                **results.to_dict(),
                "best_epoch": result.best_epoch,
                "seconds": result.seconds,
                "out": str(result.out_dir),
                "test_set": test_set,
            }
        )
    else:
        print(results_text(config.model, results))
        if test_set:
            print(test_set)
        several = len(results.by_convention) > 1
        selected = f" (selected on {results.primary_convention!r})" if several else ""
        print(f"best epoch {result.best_epoch}{selected}; run folder {result.out_dir}")
    return 0


def _folder_store(data: Path, config: TrainConfig, quiet: bool, report: bool) -> Path:
    """The cached store of ``data`` for the config's backbone and image size; says which one
    (on stderr, so ``--json`` keeps stdout to one object)."""
    from mlzsl.store.cache import data_backbone, folder_store

    found = folder_store(
        data,
        backbone=data_backbone(config.model, config.backbone),
        image_size=config.image_size,
        show_progress=not quiet and report,
    )
    if report:
        how = "cached" if found.reused else f"extracted in {found.summary.seconds:.1f} s"
        skipped = found.summary.skipped
        if skipped:
            how += f"; {len(skipped):,} image(s) skipped, listed in {found.summary.report}"
        print(f"features: {found.path} ({how})", file=sys.stderr)
    return found.path
