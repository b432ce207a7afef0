"""The one-command demo: scenes -> features -> train ``ml2p`` and ``fast0tag`` -> compare -> tag.

Everything runs offline on a laptop CPU: the built-in scenes data, the packaged EfficientNet-Lite0
backbone and the packaged GloVe 6B 50-d vectors. The run folder keeps the data, the store, each
model's run (checkpoints, resolved config, per-label CSVs, metric history, TensorBoard), the
comparison (``results.json``, ``comparison.png``), a few tagged test images and the HTML
report of the first model's run (``runs/ml2p/report.html``, :mod:`mlzsl.report`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mlzsl.config import TrainConfig, load_config, packaged_config
from mlzsl.datasets.scenes import DEMO_IMAGE_SIZE, generate_scenes
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.inference.evaluation import label_vectors, predict_scores
from mlzsl.inference.tagger import Tagger, remember_demo_checkpoint
from mlzsl.labels import LabelSet
from mlzsl.report import write_report
from mlzsl.store.extract import extract_features
from mlzsl.store.feature_store import FeatureStore
from mlzsl.training.engine import fit

DEMO_MODELS = ("ml2p", "fast0tag")


@dataclass
class DemoResult:
    """What the demo measured."""

    out: Path
    results: dict[str, dict[str, dict[str, float]]]
    seconds: float
    tags: list[dict[str, Any]] = field(default_factory=list)
    top1_present: float = float("nan")
    ks: list[int] = field(default_factory=lambda: [3, 5])
    report: Path | None = None  # the HTML report of the first model's run (mlzsl report)


def run_demo(
    out: str | Path,
    *,
    seed: int = 0,
    n_train: int = 3000,
    n_test: int = 1000,
    models: tuple[str, ...] = DEMO_MODELS,
    overrides: tuple[str, ...] = (),
    quiet: bool = False,
) -> DemoResult:
    """Run the whole demo into ``out`` (reusing finished steps of an earlier run there)."""
    started = time.perf_counter()
    out = Path(out)
    data = out / "scenes"
    # the demo's own subfolder: another seed or size regenerates it (force)
    generate_scenes(
        data, seed=seed, n_train=n_train, n_test=n_test, show_progress=not quiet, force=True
    )
    store = out / "features.h5"
    extract_features(data, store, image_size=DEMO_IMAGE_SIZE, show_progress=not quiet)
    results: dict[str, dict[str, dict[str, float]]] = {}
    ks: list[int] = []
    for name in models:
        config = load_config(packaged_config("scenes", name), [f"seed={seed}", *overrides])
        run = out / "runs" / name
        _clear_if_other_config(run, config)
        fitted = fit(config, store, run, quiet=quiet)
        results[name] = fitted.best.to_dict()
        ks = ks or list(fitted.best.ks)  # the first model's, as the table's columns
    best = out / "runs" / models[0] / "best.pt"
    remember_demo_checkpoint(best)
    tags, share = tag_examples(best, FeatureStore(store), data)
    result = DemoResult(out, results, time.perf_counter() - started, tags, share, ks)
    (out / "results.json").write_text(
        json.dumps(
            {"results": results, "seconds": result.seconds, "top1_unseen_present": share}, indent=2
        )
    )
    plot_comparison(results, out / "comparison.png")
    result.report = write_report(out / "runs" / models[0]).html
    return result


def _clear_if_other_config(run: Path, config: TrainConfig) -> None:
    """A demo rerun resumes its own runs but starts over a run made with other settings."""
    saved = run / "config.yaml"
    if saved.is_file() and yaml.safe_load(saved.read_text()) != config.to_dict():
        shutil.rmtree(run)


def tag_examples(
    checkpoint: Path, store: FeatureStore, data: Path, n_show: int = 4
) -> tuple[list[dict[str, Any]], float]:
    """Offer only the unseen labels for the test images.

    Returns ``n_show`` images tagged from their image files by :class:`Tagger` (name, the unseen
    labels present, the top 3) and, over every test image holding an unseen label, the share
    whose top-scored unseen label is present (scored from the store's features of the same
    images, which is what the tagger computes, without decoding 1,000 images again).
    """
    unseen = store.label_set.unseen_names
    rows = store.indices("test")
    truth = store.labels(rows)[:, store.label_set.unseen_idx] > 0  # [N, L_unseen]
    has_unseen = truth.any(axis=1)
    ckpt = load_checkpoint(checkpoint)
    vectors = label_vectors(ckpt.embedder, LabelSet.from_lists([], unseen))  # [L_unseen, E]
    scores = predict_scores(ckpt.build_model(), store, rows, vectors)  # [N, L_unseen]
    hit = truth[np.arange(len(rows)), scores.argmax(axis=1)]
    share = float(hit[has_unseen].mean()) if has_unseen.any() else float("nan")
    shown_rows = rows[np.flatnonzero(has_unseen)[:n_show]]
    # torch: exporting for onnxruntime would take longer than tagging these few images
    tagged = Tagger.from_checkpoint(checkpoint, runtime="torch").tag(
        [data / store.image_ids[r] for r in shown_rows], unseen, top_k=3
    )
    shown = [
        {
            "image": store.image_ids[r],
            "unseen_present": [unseen[j] for j in np.flatnonzero(truth[np.searchsorted(rows, r)])],
            "top3": [(t.label, t.score) for t in tags],
        }
        for r, tags in zip(shown_rows, tagged, strict=True)
    ]
    return shown, share


def plot_comparison(results: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    """Bar chart of ZSL/GZSL mAP and F1@3 per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("zsl", "mAP"), ("zsl", "F1@3"), ("gzsl", "mAP"), ("gzsl", "F1@3")]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(results))
    for i, (name, res) in enumerate(results.items()):
        values = [res[s][m] for s, m in metrics]
        ax.bar(np.arange(len(metrics)) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(len(metrics)) + width * (len(results) - 1) / 2)
    ax.set_xticklabels([f"{s.upper()} {m}" for s, m in metrics])
    ax.set_ylabel("percent")
    ax.set_title("mlzsl demo: scenes, EfficientNet-Lite0 features, GloVe-50 labels")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
