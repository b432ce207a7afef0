"""``mlzsl bench quality|speed``: every registered model on the scenes data, side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlzsl.cli import add_threads_argument, positive_int

NAME = "bench"
HELP = "benchmark every model: `quality` (train on scenes, several seeds) or `speed` (heads)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl bench``."""
    parser.add_argument("what", choices=("quality", "speed"))
    parser.add_argument("--models", nargs="+", default=None, help="default: every registered one")
    parser.add_argument("--seeds", type=positive_int, default=3, help="quality: seeds per model")
    parser.add_argument("--out", type=Path, default=Path("mlzsl-bench"), help="quality: folder")
    parser.add_argument("--train", type=positive_int, default=3000, help="quality: train images")
    parser.add_argument("--test", type=positive_int, default=1000, help="quality: test images")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="quality: config overrides"
    )
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmark and print its table."""
    from mlzsl.runtime import set_threads

    set_threads(args.threads)
    if args.what == "quality":
        return _quality(args)
    return _speed(args)


def _quality(args: argparse.Namespace) -> int:
    from mlzsl.bench import QUALITY_METRICS, plot_quality, quality
    from mlzsl.cli._common import format_table, print_json

    rows = quality(
        args.out,
        models=args.models,
        seeds=args.seeds,
        n_train=args.train,
        n_test=args.test,
        overrides=args.overrides,
        quiet=args.json,
    )
    summary = {name: row.summary() for name, row in rows.items()}
    (args.out / "quality.json").write_text(json.dumps(summary, indent=2))
    plot_quality(rows, args.out / "quality.png")
    if args.json:
        print_json({"seeds": args.seeds, "models": summary})
        return 0
    keys = [f"{s}.{m}" for s, m in QUALITY_METRICS]
    table = [
        [
            name,
            *(f"{s[k]['mean']:.1f} ± {s[k]['std']:.1f}" for k in keys),
            f"{s['train_seconds']['mean']:.0f}",
            f"{s['parameters']:,}",
        ]
        for name, s in summary.items()
    ]
    headers = ["model", *(k.replace("zsl.", "ZSL ").replace("gZSL", "GZSL") for k in keys)]
    print(f"scenes, {args.seeds} seeds, percent (mean ± std); chart: {args.out / 'quality.png'}")
    print(format_table([*headers, "train s", "params"], table))
    return 0


def _speed(args: argparse.Namespace) -> int:
    from mlzsl.bench import speed
    from mlzsl.cli._common import format_table, print_json

    result = speed(args.models)
    if args.json:
        print_json(result)
        return 0
    peak = result["matmul_peak_gflop_per_s"]
    print(f"heads on 64 EfficientNet-Lite0 maps (1280×5×5), E=50; matmul peak {peak:.0f} GFLOP/s")
    rows = []
    for name, r in result["models"].items():
        rows.append(
            [
                name,
                f"{r['parameters']:,}",
                f"{r['infer_mflop_per_img']:.1f}",
                f"{r['infer_img_per_s']:.0f}",
                f"{100 * r['infer_peak_share']:.0f}%",
                f"{r['train_img_per_s']:.0f}",
                f"{100 * r['train_peak_share']:.0f}%",
                f"{r.get('infer_img_per_s_vs_ml2p', float('nan')):.2f}",
                f"{r.get('infer_mflop_per_img_vs_ml2p', float('nan')):.2f}",
            ]
        )
    headers = [
        "model",
        "params",
        "MFLOP/img",
        "infer img/s",
        "of peak",
        "train img/s",
        "of peak",
        "speed vs ml2p",
        "FLOPs vs ml2p",
    ]
    print(format_table(headers, rows))
    return 0
