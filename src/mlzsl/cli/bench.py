"""``mlzsl bench quality|speed``: every registered model side by side.

``quality`` trains on the scenes data (default), a labelled photo folder (``--data DIR``, through
the store cache) or a store (``--store STORE.h5``), the last two with the configs of a config group
(``--group photos``) and the zero-training ``photo`` row for scale.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlzsl.cli import add_threads_argument, positive_int
from mlzsl.errors import ConfigError

if TYPE_CHECKING:
    from mlzsl.bench import QualityReport

NAME = "bench"
HELP = (
    "benchmark every model: `quality` (train on scenes, a photo folder or a store, several "
    "seeds) or `speed` (heads)"
)


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
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="quality: a labelled photo folder (user data format) instead of the scenes; "
        "extracted with each config's backbone into cached stores",
    )
    source.add_argument(
        "--store",
        type=Path,
        default=None,
        metavar="STORE.h5",
        help="quality: a feature store instead of the scenes",
    )
    parser.add_argument(
        "--group",
        default=None,
        help="quality with --data/--store: the packaged config group, model M trained with "
        "GROUP/M.yaml (default: photos); models without one are skipped",
    )
    parser.add_argument("--out", type=Path, default=Path("mlzsl-bench"), help="quality: folder")
    parser.add_argument(
        "--train", type=positive_int, default=3000, help="quality on scenes: train images"
    )
    parser.add_argument(
        "--test", type=positive_int, default=1000, help="quality on scenes: test images"
    )
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
    from mlzsl.bench import plot_quality, quality
    from mlzsl.cli._common import print_json

    report = quality(
        args.out,
        models=args.models,
        seeds=args.seeds,
        n_train=args.train,
        n_test=args.test,
        overrides=args.overrides,
        quiet=args.json,
        data=args.data,
        store=args.store,
        group=args.group,
    )
    result = report.to_dict(args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(result, indent=2))
    chart = args.out / "quality.png"
    plot_quality(report, chart)
    if args.json:
        print_json(result)
        return 0
    print(_quality_text(report, args.seeds, chart))
    return 0


def _quality_text(report: QualityReport, seeds: int, chart: Path) -> str:
    """The quality table: each model (mean ± std), its published figures under it, the photo
    row; then the stores, the skipped models and the notes."""
    from mlzsl.bench import PHOTO_ROW
    from mlzsl.cli._common import format_table

    keys = report.metric_keys
    published = (report.published or {}).get("models", {})
    table: list[list[str]] = []
    for name, row in report.rows.items():
        s = row.summary()
        table.append(
            [
                name,
                *(f"{s[k]['mean']:.1f} ± {s[k]['std']:.1f}" for k in keys),
                f"{s['train_seconds']['mean']:.0f}",
                f"{s['parameters']:,}",
            ]
        )
        if name in published:
            paper = published[name]
            table.append(
                [
                    "  published",
                    *(f"{paper[k]:.1f}" if k in paper else "—" for k in keys),
                    "",
                    "",
                ]
            )
    if report.photo is not None:
        photo = report.photo
        table.append(
            [
                f"{PHOTO_ROW} (no training)",
                *(f"{photo.metrics[k]:.1f}" if k in photo.metrics else "—" for k in keys),
                "0",
                f"{photo.parameters:,}",
            ]
        )
    headers = ["model", *(k.replace("gzsl.", "GZSL ").replace("zsl.", "ZSL ") for k in keys)]
    lines = [f"{report.source}, {seeds} seed(s), percent (mean ± std); chart: {chart}"]
    if report.group is not None:
        lines[0] += f"; configs {report.group}/MODEL.yaml"
    if report.test_set:
        lines.append(report.test_set)
    lines.append(format_table([*headers, "train s", "params"], table))
    for path, how in report.stores.items():
        lines.append(f"features: {path} ({how})")
    if report.photo is not None:
        lines.append(f"{PHOTO_ROW}: the ready real-photo model, {report.photo.how}")
    if report.photo_note:
        lines.append(report.photo_note)
    if report.published is not None:
        p = report.published
        lines.append(f"published: {p['source']}; {p['test_set']}")
    reasons: dict[str, list[str]] = {}
    for model, why in report.skipped:
        reasons.setdefault(why, []).append(model)
    for why, models in reasons.items():
        lines.append(f"skipped ({why}): {', '.join(models)}")
    return "\n".join(lines)


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

    given = [
        f
        for f, v in (("--data", args.data), ("--store", args.store), ("--group", args.group))
        if v is not None
    ]
    if given:
        raise ConfigError(f"{', '.join(given)}: options of `bench quality`, not `bench speed`")
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
