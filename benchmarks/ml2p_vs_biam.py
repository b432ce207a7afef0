"""`ml2p` against `biam` under one training recipe on the scenes store (issue 12).

    python benchmarks/ml2p_vs_biam.py --store features.h5 --out DIR \
        [--models ml2p biam] [--embedders glove50 minilm] [--lrs 1e-3 3e-3 1e-2] \
        [--seeds 3] [--epochs 4] [--threads 1] [--report CHART.png] [--report-only]

Both models get the same loss (weighted BCE), optimiser (AdamW, weight decay 0.05), batch (64),
schedule (0.4-epoch warm-up, cosine), epoch budget and learning-rate rule (``lr_reference_dim:
50``: the lr is divided by E / 50 for larger label vectors, docs/models.md, ml2p, "Large E").
`ml2p` keeps the three architecture options of configs/scenes/ml2p.yaml; `biam` its defaults.

Protocol per (model, label vectors): train seed 0 at every lr of the sweep, take the lr with
the best ZSL mAP, train seeds 1 … n-1 at that lr; report mean ± std over the n seeds at the chosen
lr. Like every result in this package, the best epoch and here the lr are selected on the test
split (the scenes data have no validation split); the selection is the same for both models.
Runs are kept under ``DIR/runs`` and reused, so an interrupted sweep resumes, and several
instances may share one DIR on disjoint ``--models``/``--embedders``. Also printed: inference
GFLOP per image (torch's counter, 80 labels) and training seconds per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from mlzsl.bench import count_flops
from mlzsl.config import load_config
from mlzsl.embeddings.registry import create_embedder
from mlzsl.store.feature_store import FeatureStore
from mlzsl.training.engine import build_model, fit

RECIPE = [
    "loss=bce",
    "optimizer=adamw",
    "weight_decay=0.05",
    "batch_size=64",
    "warmup_epochs=0.4",
    "schedule=cosine",
    "lr_reference_dim=50",
    "select_metric=zsl.mAP",
]
# configs/scenes/ml2p.yaml's architecture options (README "What differs")
MODEL_ARGS = {
    "ml2p": [
        "model_args.position_pooling=scores",
        "model_args.attention_residual=true",
        "model_args.interleave_groups=false",
    ],
    "biam": [],
}
METRICS = ("zsl.mAP", "zsl.F1@3", "gzsl.mAP", "gzsl.F1@3")


def run(store: Path, out: Path, model: str, embedder: str, lr: float, seed: int, epochs: int):
    """Train (or reuse) one run; its best-epoch metrics (percent) and training seconds."""
    overrides = [
        f"model={model}",
        f"embedder={embedder}",
        f"lr={lr}",
        f"seed={seed}",
        f"epochs={epochs}",
        *RECIPE,
        *MODEL_ARGS[model],
    ]
    config = load_config(None, overrides)
    folder = out / "runs" / f"{model}-{embedder}-lr{lr:g}-s{seed}"
    result = fit(config, store, folder, quiet=True)
    best = result.best.to_dict()
    row = {f"{s}.{m}": float(best[s][m]) for s, m in (k.split(".") for k in METRICS)}
    row["seconds"] = sum(float(h["seconds"]) for h in result.history)
    print(json.dumps({"model": model, "embedder": embedder, "lr": lr, "seed": seed, **row}))
    return row


def gflop_per_image(store: Path, model: str, embedder: str) -> float:
    """Inference GFLOP per image over all the store's labels (batch of 8)."""
    header = FeatureStore(store).header
    vectors = torch.as_tensor(
        np.asarray(create_embedder(embedder).embed(header.label_set.names)), dtype=torch.float32
    )
    config = load_config(None, [f"model={model}", *MODEL_ARGS[model]])
    net = build_model(config, header.feature_shape, vectors.shape[1]).eval()
    features = torch.randn(8, *header.feature_shape)
    with torch.no_grad():
        return count_flops(lambda: net(features, vectors)) / 8 / 1e9


def cell(args: argparse.Namespace, model: str, embedder: str) -> dict:
    """The sweep at seed 0, then the other seeds at the best lr."""
    sweep = {lr: run(args.store, args.out, model, embedder, lr, 0, args.epochs) for lr in args.lrs}
    best_lr = max(sweep, key=lambda lr: sweep[lr]["zsl.mAP"])
    seeds = [sweep[best_lr]] + [
        run(args.store, args.out, model, embedder, best_lr, seed, args.epochs)
        for seed in range(1, args.seeds)
    ]
    summary = {
        key: (float(np.mean([r[key] for r in seeds])), float(np.std([r[key] for r in seeds])))
        for key in (*METRICS, "seconds")
    }
    return {
        "model": model,
        "embedder": embedder,
        "sweep": {f"{lr:g}": sweep[lr]["zsl.mAP"] for lr in args.lrs},
        "best_lr": best_lr,
        "seeds": [r["zsl.mAP"] for r in seeds],
        "summary": summary,
        "gflop": gflop_per_image(args.store, model, embedder),
    }


def report(cells: list[dict], epochs: int, chart: Path | None) -> None:
    """The markdown table, and a bar chart of ZSL mAP with the seed spread."""
    print(f"\nscenes, {epochs} epochs, mean ± std over seeds at the best lr of the sweep")
    print(
        "| model | label vectors | lr sweep (ZSL mAP, seed 0) | best lr | ZSL mAP | ZSL F1@3 "
        "| GZSL mAP | GZSL F1@3 | GFLOP/img | train s/run |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for c in cells:
        s = c["summary"]
        sweep = ", ".join(f"{lr}: {v:.1f}" for lr, v in c["sweep"].items())
        values = " | ".join(f"{s[k][0]:.1f} ± {s[k][1]:.1f}" for k in METRICS)
        print(
            f"| {c['model']} | {c['embedder']} | {sweep} | {c['best_lr']:g} | {values} "
            f"| {c['gflop']:.3f} | {s['seconds'][0]:.0f} |"
        )
    if chart is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    embedders = sorted({c["embedder"] for c in cells}, key=lambda e: e != "glove50")
    models = sorted({c["model"] for c in cells}, reverse=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        for j, embedder in enumerate(embedders):
            found = [c for c in cells if c["model"] == model and c["embedder"] == embedder]
            if not found:
                continue
            mean, std = found[0]["summary"]["zsl.mAP"]
            ax.bar(
                j + i * width,
                mean,
                width,
                yerr=std,
                color=f"C{i}",
                capsize=3,
                label=model if j == 0 else None,
            )
            ax.scatter(
                [j + i * width] * len(found[0]["seeds"]),
                found[0]["seeds"],
                s=8,
                color="black",
                zorder=3,
            )
    ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(embedders))], embedders)
    ax.set_ylabel("ZSL mAP (%)")
    ax.set_title(f"scenes, same recipe, {epochs} epochs, best of 3 lrs, seeds as dots")
    ax.legend()
    fig.tight_layout()
    fig.savefig(chart, dpi=120)
    print(f"chart: {chart}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=["ml2p", "biam"])
    parser.add_argument("--embedders", nargs="+", default=["glove50", "minilm"])
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 3e-3, 1e-2])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report", type=Path, default=None, help="also draw this chart")
    parser.add_argument(
        "--report-only", action="store_true", help="train nothing: table of DIR's cell-*.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.report_only:
        files = sorted(args.out.glob("cell-*.json"))
        report([json.loads(f.read_text()) for f in files], args.epochs, args.report)
        return
    cells = []
    for model in args.models:
        for embedder in args.embedders:
            c = cell(args, model, embedder)
            cells.append(c)
            (args.out / f"cell-{model}-{embedder}.json").write_text(json.dumps(c, indent=1))
    report(cells, args.epochs, args.report)


if __name__ == "__main__":
    main()
