"""Benchmarks every registered model on the built-in scenes data: quality and speed.

* :func:`quality` trains each model for each seed on one shared scenes extraction and reports
  mean ± std of ZSL/GZSL mAP and F1@3/F1@5, training seconds and parameters. Image-input models
  (``ml2p_official``) train end to end on a second store of the same images, normalised pixels at
  :data:`PIXELS_SIZE` px (backbone ``pixels``).
* :func:`speed` times each model's head on one feature batch (training step and inference),
  counts FLOPs with torch's counter and compares achieved GFLOP/s with a float32 matmul peak
  measured in the same run; every figure is also given as a ratio to ``ml2p``'s.
* :func:`label_scaling` times each head's inference at several label counts (the curve of
  issue 13); :func:`plot_label_scaling` draws it.

A head is named by a spec, ``NAME[:key=value,...]`` (:func:`parse_spec`), e.g.
``ml2p:input_pool=2`` for (ML)²P on the pool5-sized map.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from mlzsl.backbones import DEFAULT_BACKBONE
from mlzsl.config import TrainConfig, load_config, packaged_config
from mlzsl.datasets.scenes import DEMO_IMAGE_SIZE, generate_scenes
from mlzsl.errors import ConfigError
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.models import (
    count_parameters,
    create_model,
    list_models,
    model_arguments,
    model_inputs,
)
from mlzsl.progress import progress
from mlzsl.store.extract import extract_features
from mlzsl.training.engine import fit
from mlzsl.training.losses import ranking_loss

# image-input models (ml2p_official) train end to end from the scenes resized to this side: VGG19-BN
# at 32 px costs ~1/50 of 224 px, so three seeds fit in minutes on a laptop CPU (pool5 is 1×1)
PIXELS_SIZE = 32

QUALITY_METRICS = tuple((s, m) for s in ("zsl", "gzsl") for m in ("mAP", "F1@3", "F1@5"))


def bench_config(model: str, overrides: Sequence[str] = ()) -> TrainConfig:
    """The packaged scenes config of ``model``, or a generic one (weighted BCE, Adam 1e-3)."""
    path = packaged_config("scenes", model)
    if path.is_file():
        return load_config(path, overrides)
    generic = [f"model={model}", "loss=bce", "lr=0.001", "epochs=10", "warmup_epochs=0.4"]
    return load_config(None, [*generic, *overrides])


@dataclass
class QualityRow:
    """One model's results over seeds (metrics in percent)."""

    model: str
    parameters: int
    seconds: list[float]
    metrics: dict[str, list[float]]

    def summary(self) -> dict[str, Any]:
        """Mean and std of each metric and of the training time."""
        out: dict[str, Any] = {"parameters": self.parameters, "seeds": len(self.seconds)}
        for key, values in {**self.metrics, "train_seconds": self.seconds}.items():
            out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        return out


def quality(
    out: str | Path,
    *,
    models: Sequence[str] | None = None,
    seeds: int = 3,
    n_train: int = 3000,
    n_test: int = 1000,
    overrides: Sequence[str] = (),
    quiet: bool = True,
) -> dict[str, QualityRow]:
    """Train every model for ``seeds`` seeds on one scenes extraction; see the module docstring."""

    out = Path(out)
    names = list(models or list_models())
    for name in names:  # every model and override checked before anything is written
        model_inputs(name)
        bench_config(name, [*overrides, "seed=0"])
    generate_scenes(out / "scenes", n_train=n_train, n_test=n_test, show_progress=not quiet)
    stores = {"features": out / "features.h5", "images": out / "pixels.h5"}
    extraction = {
        "features": (DEFAULT_BACKBONE, DEMO_IMAGE_SIZE),
        "images": ("pixels", PIXELS_SIZE),
    }
    for inputs in sorted({model_inputs(n) for n in names}):  # only the stores some model needs
        backbone, size = extraction[inputs]
        extract_features(
            out / "scenes",
            stores[inputs],
            backbone=backbone,
            image_size=size,
            show_progress=not quiet,
        )
    rows: dict[str, QualityRow] = {}
    for name in names:
        store = stores[model_inputs(name)]
        row = QualityRow(name, 0, [], {f"{s}.{m}": [] for s, m in QUALITY_METRICS})
        for seed in range(seeds):
            config = bench_config(name, [*overrides, f"seed={seed}"])
            result = fit(config, store, out / "runs" / name / f"seed{seed}", quiet=quiet)
            metrics = result.best.to_dict()
            for s, m in QUALITY_METRICS:
                row.metrics[f"{s}.{m}"].append(float(metrics[s][m]))
            row.seconds.append(sum(float(h["seconds"]) for h in result.history))
        best = load_checkpoint(out / "runs" / name / "seed0" / "best.pt")
        row.parameters = count_parameters(best.build_model())
        rows[name] = row
    return rows


def plot_quality(rows: dict[str, QualityRow], path: Path) -> None:
    """Bar chart of ZSL and GZSL mAP (mean ± std over seeds) per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 3.8))
    for i, key in enumerate(("zsl.mAP", "gzsl.mAP")):
        means = [np.mean(rows[n].metrics[key]) for n in names]
        stds = [np.std(rows[n].metrics[key]) for n in names]
        ax.bar(x + (i - 0.5) * 0.4, means, 0.4, yerr=stds, capsize=3, label=key)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=20)
    ax.set_ylabel("percent")
    ax.set_title("mlzsl bench quality: scenes, EfficientNet-Lite0, GloVe-50 (mean ± std)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- speed


def best_time(fn: Callable[[], object], repeat: int, warmup: int = 2) -> float:
    """Smallest wall time of ``repeat`` calls (the least disturbed by other work)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak(n: int = 1024, repeat: int = 10) -> float:
    """GFLOP/s of an n×n float32 matrix multiply with the current thread setting."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_time(lambda: a @ b, repeat) / 1e9


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs torch's counter sees in one call of ``fn``."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _build(name: str, shape: tuple[int, int, int], embed_dim: int, **options: Any) -> Any:
    c, h, w = shape
    kwargs: dict[str, Any] = {"in_channels": c, "embed_dim": embed_dim, **options}
    if "num_positions" in model_arguments(name):
        kwargs["num_positions"] = h * w
    torch.manual_seed(0)
    return create_model(name, **kwargs)


def speed_one(
    name: str,
    *,
    shape: tuple[int, int, int] = (1280, 5, 5),
    embed_dim: int = 50,
    batch: int = 64,
    seen: int = 60,
    labels: int = 80,
    repeat: int = 10,
    **options: Any,
) -> dict[str, float]:
    """Training-step and inference throughput and FLOPs of one model head.

    A training step is forward + ranking loss + backward + Adam on ``seen`` labels; inference is
    a forward on ``labels`` labels. Training FLOPs are counted as 3 × the forward's, because
    torch's counter books the backward of depth-wise convolutions as if they were dense.
    """
    model = _build(name, shape, embed_dim, **options)
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, *shape, generator=g).relu()
    seen_v, all_v = torch.randn(seen, embed_dim, generator=g), torch.randn(labels, embed_dim)
    targets = (torch.rand(batch, seen, generator=g) < 0.05).to(torch.int8) * 2 - 1
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train_step() -> None:
        loss = ranking_loss(model(feats, seen_v), targets)
        extra = model.extra_loss(targets)
        if extra is not None:
            loss = loss + extra
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.train()
    train_flops = 3 * count_flops(lambda: model(feats, seen_v))
    train_s = best_time(train_step, repeat)
    model.eval()
    infer_s, infer_flops = _inference(model, feats, all_v, repeat)
    return {
        "parameters": count_parameters(model),
        "train_img_per_s": batch / train_s,
        "train_gflop_per_s": train_flops / train_s / 1e9,
        "infer_img_per_s": batch / infer_s,
        "infer_gflop_per_s": infer_flops / infer_s / 1e9,
        "infer_mflop_per_img": infer_flops / batch / 1e6,
    }


def speed(models: Sequence[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """:func:`speed_one` for every model spec plus the matmul peak and ratios to ``ml2p``."""
    specs = list(models or list_models(inputs="features"))
    parsed = {spec: parse_spec(spec) for spec in specs}  # bad specs fail before any timing
    peak = matmul_peak()
    results = {
        spec: speed_one(name, **options, **kwargs) for spec, (name, options) in parsed.items()
    }
    reference = results.get("ml2p")
    for r in results.values():
        r["infer_peak_share"] = r["infer_gflop_per_s"] / peak
        r["train_peak_share"] = r["train_gflop_per_s"] / peak
        if reference is not None:
            for key in ("infer_img_per_s", "train_img_per_s", "infer_mflop_per_img", "parameters"):
                r[f"{key}_vs_ml2p"] = r[key] / reference[key]
    return {"matmul_peak_gflop_per_s": peak, "models": results}


# ----------------------------------------------------------------------------- label scaling

# every feature-map head, plus (ML)²P on the pool5-sized map (configs nus_wide, open_images)
SCALING_HEADS = ("ml2p", "ml2p:input_pool=2")


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"ml2p:position_pooling=scores,groups=4"`` -> ("ml2p", {...}); values read as YAML."""
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ConfigError(f"model spec {spec!r}: expected NAME[:key=value,...], got {item!r}")
        options[key] = yaml.safe_load(value)
    return name, options


def scaling_heads() -> list[str]:
    """The default heads of :func:`label_scaling`: every trainable feature-map model."""
    names = list_models(inputs="features", trainable=True)
    return [*SCALING_HEADS, *(n for n in names if n != "ml2p")]


def label_scaling(
    heads: Sequence[str] | None = None,
    *,
    labels: Sequence[int] = (81, 1006, 7586, 20000),
    shape: tuple[int, int, int] = (512, 14, 14),
    embed_dim: int = 300,
    batch: int = 32,
    repeat: int = 3,
    quiet: bool = False,
) -> dict[str, Any]:
    """Inference time and FLOPs of each head at each label count, against the matmul peak.

    Every head sees the same random maps [batch, *shape] and label vectors [max(labels), E];
    the first L vectors are scored. The peak is the best of two measurements, before and after
    the heads (the least disturbed on a shared machine).

    Returns:
        ``{"matmul_peak_gflop_per_s", "labels", "heads": {spec: {"parameters", "rows": [{labels,
        ms_per_img, gflop_per_img, peak_share}, ...]}}}``.
    """
    specs = list(heads or scaling_heads())
    parsed = {spec: parse_spec(spec) for spec in specs}  # bad specs fail before any timing
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, *shape, generator=g).relu()  # [B, C, H, W]
    vectors = torch.randn(max(labels), embed_dim, generator=g)  # [L, E]
    peak = matmul_peak()
    heads_out: dict[str, Any] = {}
    bar = progress(total=len(specs) * len(labels), desc="bench speed", unit="run", disable=quiet)
    for spec, (name, options) in parsed.items():
        model = _build(name, shape, embed_dim, **options).eval()
        rows = []
        for count in labels:
            seconds, flops = _inference(model, feats, vectors[:count], repeat)
            rows.append(
                {
                    "labels": count,
                    "ms_per_img": 1000 * seconds / batch,
                    "gflop_per_img": flops / batch / 1e9,
                    "gflop_per_s": flops / seconds / 1e9,
                }
            )
            bar.update(1)
        heads_out[spec] = {"parameters": count_parameters(model), "rows": rows}
    bar.close()
    peak = max(peak, matmul_peak())
    for head in heads_out.values():
        for row in head["rows"]:
            row["peak_share"] = row.pop("gflop_per_s") / peak
    return {"matmul_peak_gflop_per_s": peak, "labels": list(labels), "heads": heads_out}


def _inference(
    model: Any, feats: torch.Tensor, vectors: torch.Tensor, repeat: int
) -> tuple[float, int]:
    """Best wall time of one no-grad forward (seconds), and its FLOPs."""

    def infer() -> None:
        with torch.no_grad():
            model(feats, vectors)

    return best_time(infer, repeat), count_flops(infer)


def plot_label_scaling(result: dict[str, Any], path: Path, title: str = "") -> None:
    """ms/img against the number of labels (log–log), one line per head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for spec, head in result["heads"].items():
        xs = [r["labels"] for r in head["rows"]]
        ys = [r["ms_per_img"] for r in head["rows"]]
        style = "-" if spec.startswith("ml2p") else "--"
        ax.plot(xs, ys, style, marker="o", label=spec, linewidth=2 if style == "-" else 1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("labels scored (L)")
    ax.set_ylabel("inference ms / image")
    ax.set_title(title or "mlzsl bench speed: inference time against the label count")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
