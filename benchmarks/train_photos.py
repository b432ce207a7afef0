"""Training on real photos (issue 20): the photos/ recipe against the number of training photos.

Usage (from the repository root)::

    .venv/bin/python benchmarks/train_photos.py [DATA_DIR] [--sizes 30 60 120 0] [--seeds 1]
        [--config photos/ml2p] [--out mlzsl-train-photos] [--chart docs/photos_curve.png]

DATA_DIR is a labelled photo folder in the user data format (default
``../shared/data/coco_zsl_dev``: 336 COCO photos, 48 seen / 17 unseen labels, 234 train / 102
test). For each size N (0: every training photo) a folder holding the first N training photos and
*every* test photo is laid out next to the results (``labels.csv`` cut, ``images`` linked), and
``mlzsl train --data SUBSET --config CONFIG`` runs on it twice: with the config's knowledge transfer
from the ready ``photo`` model and its seen-label adapter, and without (``teacher=null
distill_weight=0 teacher_init_epochs=0 fusion_weight=0 adapter_weight=0``). ``mlzsl eval --data
DATA_DIR --checkpoint photo`` gives the zero-training row on the same test photos. Every number
comes from the CLI's ``--json``; the script prints a Markdown table, writes ``curve.json`` and
draws ZSL and GZSL mAP against N.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WITHOUT_TRANSFER = [
    "teacher=null",
    "distill_weight=0",
    "teacher_init_epochs=0",
    "fusion_weight=0",
    "adapter_weight=0",
]
MLZSL = [sys.executable, "-m", "mlzsl"]


def subset(data: Path, n: int, out: Path) -> Path:
    """``out``: the first ``n`` training rows of ``data`` (0: all) and every test row."""
    with (data / "labels.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    split = head.index("split")
    train = [r for r in body if r[split] == "train"]
    test = [r for r in body if r[split] == "test"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocabulary.csv").write_bytes((data / "vocabulary.csv").read_bytes())
    if not (out / "images").exists():
        (out / "images").symlink_to((data / "images").resolve())
    with (out / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows([head, *(train[:n] if n else train), *test])
    return out


def cli_json(args: list[str]) -> dict[str, Any]:
    """Run ``mlzsl ARGS --json``; its one JSON object, plus the wall time as ``wall_seconds``."""
    started = time.perf_counter()
    done = subprocess.run([*MLZSL, *args, "--json"], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"mlzsl {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return {**json.loads(done.stdout), "wall_seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_zsl_dev"
    parser.add_argument("data", type=Path, nargs="?", default=default)
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 60, 120, 0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--config", default="photos/ml2p")
    parser.add_argument("--out", type=Path, default=Path("mlzsl-train-photos"))
    parser.add_argument("--chart", type=Path, default=None, help="PNG (default OUT/curve.png)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLZSL_NO_PROGRESS", "1")

    photo = cli_json(["eval", "--data", str(args.data), "--checkpoint", "photo"])
    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        folder = subset(args.data, n, args.out / f"data-{n or 'all'}")
        with (folder / "labels.csv").open() as f:
            n_train = sum(1 for r in csv.DictReader(f) if r["split"] == "train")
        for transfer in (True, False):
            for seed in range(args.seeds):
                run = args.out / "runs" / f"{n or 'all'}-{'with' if transfer else 'without'}-{seed}"
                over = [f"seed={seed}", *([] if transfer else WITHOUT_TRANSFER)]
                result = cli_json(
                    ["train", "--data", str(folder), "--config", args.config, "--out", str(run)]
                    + over
                )
                rows.append(
                    {
                        "train_photos": n_train,
                        "transfer": transfer,
                        "seed": seed,
                        "zsl": result["zsl"]["mAP"],
                        "gzsl": result["gzsl"]["mAP"],
                        "wall_seconds": result["wall_seconds"],
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr)
    report = {"photo": {"zsl": photo["zsl"]["mAP"], "gzsl": photo["gzsl"]["mAP"]}, "runs": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curve.json").write_text(json.dumps(report, indent=2))
    print("| training photos | transfer | ZSL mAP | GZSL mAP | wall s |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['train_photos']} | {'yes' if r['transfer'] else 'no'} | {r['zsl']:.1f} | "
            f"{r['gzsl']:.1f} | {r['wall_seconds']:.0f} |"
        )
    print(f"| 0 (`photo`) | – | {photo['zsl']['mAP']:.1f} | {photo['gzsl']['mAP']:.1f} | – |")
    draw(report, args.chart or args.out / "curve.png", args.config)
    return 0


def draw(report: dict[str, Any], path: Path, config: str) -> None:
    """ZSL and GZSL mAP against the number of training photos, with and without transfer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, split in zip(axes, ("zsl", "gzsl"), strict=True):
        for transfer, style in ((True, "o-"), (False, "s--")):
            points: dict[int, list[float]] = {}
            for r in report["runs"]:
                if r["transfer"] == transfer:
                    points.setdefault(r["train_photos"], []).append(r[split])
            xs = sorted(points)
            ys = [sum(points[x]) / len(points[x]) for x in xs]
            label = f"{config}, transfer from photo" if transfer else f"{config}, head alone"
            ax.plot(xs, ys, style, label=label)
        ax.axhline(report["photo"][split], color="gray", ls=":", label="photo (no training)")
        ax.set_title("ZSL mAP (unseen labels)" if split == "zsl" else "GZSL mAP (all labels)")
        ax.set_xlabel("training photos")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mAP, %")
    axes[1].legend(fontsize=8, loc="center right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
