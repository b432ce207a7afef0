"""``mlzsl bench quality|speed``: every registered model on the scenes data, side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mlzsl.cli import add_threads_argument, positive_int
from mlzsl.errors import ConfigError

NAME = "bench"
HELP = "benchmark every model: `quality` (train on scenes, several seeds) or `speed` (heads)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl bench``."""
    parser.add_argument("what", choices=("quality", "speed"))
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="model specs NAME[:key=value,...] (default: every registered one; with --labels "
        "also ml2p:input_pool=2)",
    )
    parser.add_argument("--seeds", type=positive_int, default=3, help="quality: seeds per model")
    parser.add_argument("--out", type=Path, default=Path("mlzsl-bench"), help="quality: folder")
    parser.add_argument("--train", type=positive_int, default=3000, help="quality: train images")
    parser.add_argument("--test", type=positive_int, default=1000, help="quality: test images")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--labels",
        type=positive_int,
        nargs="+",
        default=None,
        help="speed: time inference at each label count (the label-scaling curve)",
    )
    parser.add_argument(
        "--features",
        type=_feature_shape,
        default=None,
        metavar="CxHxW",
        help="speed: feature-map size (default 1280x5x5; with --labels 512x14x14)",
    )
    parser.add_argument("--embed-dim", type=positive_int, default=None, help="speed: E")
    parser.add_argument("--batch", type=positive_int, default=None, help="speed: images per call")
    parser.add_argument("--repeat", type=positive_int, default=None, help="speed: timed calls")
    parser.add_argument("--chart", type=Path, default=None, help="speed --labels: PNG to write")
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


def _feature_shape(text: str) -> tuple[int, int, int]:
    """argparse type: ``512x14x14`` -> (512, 14, 14)."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected CxHxW such as 512x14x14, got {text!r}")
    c, h, w = (int(p) for p in parts)
    return c, h, w


def _sizes(args: argparse.Namespace) -> dict[str, Any]:
    """The speed options given on the command line (the library's defaults otherwise)."""
    given = {
        "shape": args.features,
        "embed_dim": args.embed_dim,
        "batch": args.batch,
        "repeat": args.repeat,
    }
    return {k: v for k, v in given.items() if v is not None}


def _speed(args: argparse.Namespace) -> int:
    from mlzsl.bench import speed
    from mlzsl.cli._common import format_table, print_json

    if args.labels:
        return _label_scaling(args)
    if args.chart is not None:
        raise ConfigError("--chart draws the label-scaling curve: give --labels too")
    sizes = _sizes(args)
    result = speed(args.models, **sizes)
    if args.json:
        print_json(result)
        return 0
    peak = result["matmul_peak_gflop_per_s"]
    c, h, w = sizes.get("shape", (1280, 5, 5))
    print(
        f"heads on {sizes.get('batch', 64)} maps {c}×{h}×{w}, E={sizes.get('embed_dim', 50)}; "
        f"matmul peak {peak:.0f} GFLOP/s"
    )
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


def _label_scaling(args: argparse.Namespace) -> int:
    from mlzsl.bench import label_scaling, plot_label_scaling
    from mlzsl.cli._common import format_table, print_json

    sizes = {"shape": (512, 14, 14), "embed_dim": 300, **_sizes(args)}
    result = label_scaling(args.models, labels=args.labels, quiet=args.json, **sizes)
    c, h, w = sizes["shape"]
    title = f"{c}×{h}×{w} maps, E={sizes['embed_dim']}, {torch_threads()} thread(s)"
    if args.chart is not None:
        plot_label_scaling(result, args.chart, title=f"inference time against labels: {title}")
    if args.json:
        print_json(result)
        return 0
    peak = result["matmul_peak_gflop_per_s"]
    print(f"{title}; matmul peak {peak:.0f} GFLOP/s")
    rows = []
    for spec, head in result["heads"].items():
        first = head["rows"][0]["ms_per_img"]
        for r in head["rows"]:
            rows.append(
                [
                    spec,
                    f"{r['labels']:,}",
                    f"{r['ms_per_img']:.2f}",
                    f"{r['gflop_per_img']:.3f}",
                    f"{r['peak_share']:.2f}",
                    f"{r['ms_per_img'] / first:.2f}",
                ]
            )
    headers = ["head", "labels", "ms/img", "GFLOP/img", "of peak", f"time vs {args.labels[0]}"]
    print(format_table(headers, rows))
    if args.chart is not None:
        print(f"chart: {args.chart}")
    return 0


def torch_threads() -> int:
    """torch's intra-op threads (after ``--threads``)."""
    import torch

    return torch.get_num_threads()
