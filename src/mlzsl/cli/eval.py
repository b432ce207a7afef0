"""``mlzsl eval --checkpoint CKPT --store STORE.h5``: ZSL and GZSL metrics of a checkpoint.

On an Open Images store (dataset evaluation ``"open_images"``) both conventions are reported,
one row each ("fast0tag (LESA convention)", "fast0tag (BiAM convention)"), and ``--json`` keys
them ``"lesa"`` and ``"biam"``; ``"selected_by"`` names the one checkpoints are chosen on.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlzsl.cli import add_threads_argument

if TYPE_CHECKING:
    from mlzsl.protocol import EvalResult

CONVENTION_TITLES = {"lesa": "LESA convention", "biam": "BiAM convention"}

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
    from mlzsl.cli._common import print_json
    from mlzsl.data.store import FeatureStore
    from mlzsl.engine import evaluate_checkpoint_by_convention
    from mlzsl.runtime import set_threads

    set_threads(args.threads)
    name, ks, results = evaluate_checkpoint_by_convention(
        args.checkpoint, args.store, embedder=args.embedder, split=args.split
    )
    if args.per_label is not None:
        args.per_label.mkdir(parents=True, exist_ok=True)
        for result in results.values():  # per_label[_<convention>]_{zsl,gzsl}.csv
            result.write_per_label_csv(args.per_label)
    variant = FeatureStore(args.store).test_variant()
    if args.json:
        print_json({**results_json(results), "test_set": variant})
    else:
        print(results_text(name, results, ks))
        if variant:
            print(variant)
    return 0


def results_json(results: Mapping[str, EvalResult]) -> dict[str, Any]:
    """``{"zsl", "gzsl"}`` for one convention; ``{"lesa", "biam", "selected_by"}`` for two."""
    from mlzsl.engine import primary_result

    if len(results) == 1:
        return next(iter(results.values())).to_dict()
    out: dict[str, Any] = {key: result.to_dict() for key, result in results.items()}
    out["selected_by"] = primary_result(dict(results)).variant
    return out


def results_text(name: str, results: Mapping[str, EvalResult], ks: list[int]) -> str:
    """The results table, one row per convention named after it, and the weighted mAP."""
    from mlzsl.cli._common import results_table

    if len(results) == 1:
        return results_table({name: next(iter(results.values())).to_dict()}, ks)
    rows = {f"{name} ({CONVENTION_TITLES.get(k, k)})": r.to_dict() for k, r in results.items()}
    lines = [results_table(rows, ks)]
    for key, result in results.items():
        zsl, gzsl = result.zsl, result.gzsl
        lines.append(
            f"{CONVENTION_TITLES.get(key, key)}: weighted mAP ZSL {_percent(zsl.weighted_map)}, "
            f"GZSL {_percent(gzsl.weighted_map)}; images ZSL {zsl.n_images:,}, "
            f"GZSL {gzsl.n_images:,}; labels in mAP ZSL {len(zsl.ap):,}, GZSL {len(gzsl.ap):,}"
        )
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "—" if value is None or value != value else f"{100 * value:.1f}"
