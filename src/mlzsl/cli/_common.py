"""What several subcommands share: tables, ``--json``, result text, the peer-import arguments."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlzsl.protocol import Results


def print_json(obj: Any) -> None:
    """One JSON object on stdout (NaN written as null)."""
    print(json.dumps(_clean(obj), sort_keys=False))


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; floats with one decimal (metrics are in percent)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "—" if math.isnan(v) else f"{v:.1f}"
        return str(v)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in text:
        lines.append(
            "  ".join(
                v.rjust(w) if i else v.ljust(w)
                for i, (v, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def results_table(
    results: Mapping[str, Mapping[str, Mapping[str, float]]], ks: Sequence[int]
) -> str:
    """Rows of models, columns of ZSL and GZSL mAP and F1@K (percent)."""
    headers = ["model"]
    for split in ("zsl", "gzsl"):
        headers += [f"{split.upper()} mAP"] + [f"{split.upper()} F1@{k}" for k in ks]
    rows = []
    for name, res in results.items():
        row: list[Any] = [name]
        for split in ("zsl", "gzsl"):
            row += [res[split]["mAP"]] + [res[split][f"F1@{k}"] for k in ks]
        rows.append(row)
    return format_table(headers, rows)


def results_text(name: str, results: Results) -> str:
    """The results table, one row per convention named after it, and the weighted mAP."""
    from mlzsl.protocol import CONVENTION_TITLES

    conventions = results.by_convention
    if len(conventions) == 1:
        return results_table({name: results.primary.to_dict()}, results.ks)
    rows = {f"{name} ({CONVENTION_TITLES.get(k, k)})": r.to_dict() for k, r in conventions.items()}
    lines = [results_table(rows, results.ks)]
    for key, result in conventions.items():
        zsl, gzsl = result.zsl, result.gzsl
        lines.append(
            f"{CONVENTION_TITLES.get(key, key)}: weighted mAP ZSL {_percent(zsl.weighted_map)}, "
            f"GZSL {_percent(gzsl.weighted_map)}; images ZSL {zsl.n_images:,}, "
            f"GZSL {gzsl.n_images:,}; labels in mAP ZSL {len(zsl.ap):,}, GZSL {len(gzsl.ap):,}"
        )
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "—" if value is None or value != value else f"{100 * value:.1f}"


# kept here, not imported from mlzsl.store.peers, so `mlzsl --help` stays light
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
    print(store_summary(out))
    return 0


def store_summary(out: Path) -> str:
    """One line describing a finished store: images per split, features, labels, test set."""
    from mlzsl.store.feature_store import FeatureStore

    store = FeatureStore(out)
    c, h, w = store.header.feature_shape
    n_train, n_test = len(store.indices("train")), len(store.indices("test"))
    labels = store.label_set
    line = (
        f"{out}: {len(store):,} images ({n_train:,} train, {n_test:,} test), features "
        f"{c}×{h}×{w}, {len(labels.seen_idx):,} seen + {len(labels.unseen_idx):,} unseen labels"
    )
    test_set = store.test_set_line() if n_test else None
    return f"{line}; {test_set}" if test_set else line
