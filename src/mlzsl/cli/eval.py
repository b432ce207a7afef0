"""``mlzsl eval``: ZSL and GZSL metrics of a checkpoint on a feature store or a labelled folder.

- ``--store STORE.h5 --checkpoint CKPT``: the stored features of a benchmark (as training
  evaluates).
- ``--data DIR [--checkpoint CKPT|NAME | --model NAME]``: a folder in the user data format,
  scored from its images with no training (default model: ``photo``, the ready real-photo
  model). A folder whose labels are all unseen and whose images are all test images works.

On an Open Images store (dataset evaluation ``"open_images"``) both conventions are reported,
one row each ("fast0tag (LESA convention)", "fast0tag (BiAM convention)"), and ``--json`` keys
them ``"lesa"`` and ``"biam"``; ``"selected_by"`` names the one checkpoints are chosen on.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlzsl.cli import add_batch_size_argument, add_runtime_argument

if TYPE_CHECKING:
    from mlzsl.protocol import Results

Outcome = tuple[str, "Results", str | None, dict[str, Any]]

NAME = "eval"
HELP = "evaluate a checkpoint on a feature store or on a labelled image folder (ZSL and GZSL)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl eval``."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", type=Path, help="feature store (.h5)")
    where.add_argument("--data", type=Path, help="a data folder (vocabulary.csv, labels.csv)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--checkpoint", default=None, help="checkpoint (.pt) or name (photo, demo, ...)"
    )
    which.add_argument(
        "--model", default=None, help="a ready model: photo, photo-fast, photo-glove"
    )
    parser.add_argument("--embedder", default=None, help="override the checkpoint's embedder")
    parser.add_argument("--split", default="test", choices=("train", "test"))
    add_batch_size_argument(parser)
    parser.add_argument(
        "--per-label", type=Path, default=None, help="write per-label AP CSVs and scores.npz here"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_runtime_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics."""
    from mlzsl.cli._common import print_json, results_text
    from mlzsl.errors import ConfigError, DataError
    from mlzsl.files import check_writable

    if args.per_label is not None and args.per_label.exists() and not args.per_label.is_dir():
        raise DataError(f"{args.per_label}: --per-label names a file; give a folder")
    if args.per_label is not None:  # a read-only or full disk: one line before any work
        check_writable(args.per_label, "per-label tables")
    spec = args.checkpoint or args.model
    if args.model is not None and args.model not in _ready_models():
        raise ConfigError(
            f"unknown ready model {args.model!r}; known: {', '.join(_ready_models())}"
        )
    if args.store is not None:
        if spec is None:
            raise ConfigError("--store needs --checkpoint (the model trained on such features)")
        name, results, test_set, extra = _on_store(args, spec)
    else:
        name, results, test_set, extra = _on_folder(args, spec)
    if args.per_label is not None:  # per_label[_<convention>]_{zsl,gzsl}.csv
        results.write_per_label_csv(args.per_label)
        results.write_scores(args.per_label)  # scores.npz, for mlzsl report
    if args.json:
        print_json({**results.to_dict(), "test_set": test_set, **extra})
        return 0
    print(results_text(name, results))
    if test_set:
        print(test_set)
    for image, why in extra.get("skipped", []):
        print(f"skipped {image}: {why}")
    if "images" in extra:
        print(f"{extra['images']} images scored in {extra['seconds']:.1f} s")
    return 0


def _ready_models() -> tuple[str, ...]:
    from mlzsl.inference.tagger import NAMED_CHECKPOINTS

    return tuple(n for n in NAMED_CHECKPOINTS if n != "demo")


def _on_store(args: argparse.Namespace, spec: str) -> Outcome:
    from mlzsl.inference.evaluation import evaluate_checkpoint
    from mlzsl.inference.tagger import resolve_checkpoint
    from mlzsl.runtime import set_threads
    from mlzsl.store.feature_store import FeatureStore

    set_threads(args.threads)  # the head on stored features: torch's own threads
    name, results = evaluate_checkpoint(
        resolve_checkpoint(spec), args.store, embedder=args.embedder, split=args.split
    )
    return name, results, FeatureStore(args.store).test_set_line(), {}


def _on_folder(args: argparse.Namespace, spec: str | None) -> Outcome:
    from mlzsl.datasets.dataset_info import read_dataset_info
    from mlzsl.inference.engine import load_tagger
    from mlzsl.inference.evaluation import evaluate_folder

    tagger, _ = load_tagger(
        spec, embedder=args.embedder, runtime=args.runtime, threads=args.threads
    )
    done = evaluate_folder(
        tagger,
        args.data,
        split=args.split,
        batch_size=args.batch_size,
        show_progress=not args.json,
    )
    info = read_dataset_info(args.data)
    extra = {"images": done.n_images, "skipped": done.skipped, "seconds": done.seconds}
    test_set = info.test_set_line(done.n_images) if info is not None else None
    return spec or "photo", done.results, test_set, extra
