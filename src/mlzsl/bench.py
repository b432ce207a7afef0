"""Benchmarks every registered model: quality (on scenes, a photo folder or a store) and speed.

* :func:`quality` trains each model for each seed and reports mean ± std of ZSL/GZSL mAP and
  F1@K, training seconds and parameters (:class:`QualityReport`). Three sources:

  - the built-in scenes data (default): one shared scenes extraction, each model's packaged
    ``scenes`` config or a generic one; image-input models (``ml2p_official``) train end to end
    on a second store of the same images, normalised pixels at :data:`PIXELS_SIZE` px;
  - ``data=DIR``, a labelled photo folder: model M trains with the packaged config ``G/M.yaml``
    of the config group G (``photos`` by default), on the folder's features extracted with that
    config's backbone and image size through the store cache (:mod:`mlzsl.store.cache`);
  - ``store=STORE.h5``: the same configs on a store's features.

  Models without a config in the group are skipped with a note. With a folder or a store the
  report adds the zero-training ``photo`` row for scale (the ready real-photo model,
  :mod:`mlzsl.inference.pretrained`), and on a store of a known benchmark (NUS-WIDE, Open Images)
  the published figures (:data:`PUBLISHED`).
* :func:`speed` times each model's head on one feature batch (training step and inference),
  counts FLOPs with torch's counter and compares achieved GFLOP/s with a float32 matmul peak
  measured in the same run; every figure is also given as a ratio to ``ml2p``'s.
* :func:`label_scaling` times each head's inference at several label counts (the curve of
  issue 13); :func:`plot_label_scaling` draws it.

A head is named by a spec, ``NAME[:key=value,...]`` (:func:`parse_spec`), e.g.
``ml2p:input_pool=2`` for (ML)²P on the pool5-sized map.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from mlzsl.backbones import DEFAULT_BACKBONE, same_maps
from mlzsl.config import TrainConfig, list_packaged_configs, load_config, packaged_config
from mlzsl.datasets.dataset_info import read_dataset_info
from mlzsl.datasets.scenes import DEMO_IMAGE_SIZE, generate_scenes
from mlzsl.embeddings import embed_labels
from mlzsl.errors import ConfigError
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.inference.evaluation import evaluate_folder, evaluate_model
from mlzsl.inference.tagger import Tagger, resolve_checkpoint
from mlzsl.labels import label_texts
from mlzsl.models import (
    count_parameters,
    create_model,
    list_models,
    model_arguments,
    model_inputs,
)
from mlzsl.progress import progress
from mlzsl.protocol import Results
from mlzsl.store.cache import data_backbone, folder_store
from mlzsl.store.extract import extract_features
from mlzsl.store.feature_store import FeatureStore
from mlzsl.training.engine import fit
from mlzsl.training.losses import ranking_loss

# image-input models (ml2p_official) train end to end from the scenes resized to this side: VGG19-BN
# at 32 px costs ~1/50 of 224 px, so three seeds fit in minutes on a laptop CPU (pool5 is 1×1)
PIXELS_SIZE = 32

QUALITY_METRICS = tuple((s, m) for s in ("zsl", "gzsl") for m in ("mAP", "F1@3", "F1@5"))
"""The (split, metric) pairs of the scenes benchmark (K = 3, 5); :func:`quality_metrics` in
general."""

DEFAULT_GROUP = "photos"
"""The config group ``bench quality`` takes on a photo folder or a store unless told another."""

PHOTO_ROW = "photo"
"""The name of the zero-training row: the ready real-photo model."""


def quality_metrics(ks: Sequence[int]) -> tuple[tuple[str, str], ...]:
    """(split, metric) pairs of the quality table: mAP and F1@K for each K, ZSL then GZSL."""
    return tuple((s, m) for s in ("zsl", "gzsl") for m in ("mAP", *(f"F1@{k}" for k in ks)))


# ----------------------------------------------------------------------------- published figures

# The published ZSL/GZSL figures (percent) of (ML)²P-Encoder and its peers, as the (ML)²P-Encoder
# paper prints them (Liu et al., CVPR 2023, "On Exploration of Channel-Class Correlation for
# Multi-Label Zero-Shot Learning", results tables; the peers' rows are the figures that paper
# prints), copied from docs/reproduce.md, "Expected figures". NUS-WIDE: 81 unseen / 925 seen,
# the official 107,859 test images. Open Images V4: 400 unseen / 7,186 seen, BiAM's convention
# (the primary convention of an Open Images store here); the paper gives four rows there.
# (ML)²P's row stands for both our variants: ml2p (on stored maps) and ml2p_official (end to end).
_NUS = ("zsl.mAP", "zsl.F1@3", "zsl.F1@5", "gzsl.mAP", "gzsl.F1@3", "gzsl.F1@5")
_OI = ("zsl.mAP", "zsl.F1@10", "zsl.F1@20", "gzsl.mAP", "gzsl.F1@10", "gzsl.F1@20")
_NUS_ROWS: dict[str, tuple[float, ...]] = {
    "ml2p": (29.4, 32.8, 32.3, 10.2, 15.8, 19.2),
    "biam": (25.8, 32.0, 29.4, 8.9, 15.5, 18.5),
    "lesa": (19.4, 31.6, 28.7, 5.6, 14.4, 16.8),
    "attention_per_cluster": (12.9, 24.6, 22.9, 2.6, 6.4, 7.7),
    "kim_bilinear": (10.4, 25.8, 23.6, 3.7, 10.9, 13.2),
    "fast0tag": (15.1, 27.8, 26.4, 3.7, 11.5, 13.5),
    "labelem": (7.1, 19.2, 19.5, 2.2, 9.5, 11.3),
    "conse": (9.4, 21.6, 20.2, 2.1, 7.0, 8.1),
}
_OI_ROWS: dict[str, tuple[float, ...]] = {
    "ml2p": (65.7, 7.5, 6.5, 79.9, 27.6, 24.1),
    "fast0tag": (41.2, 0.7, 0.6, 45.2, 16.0, 13.0),
    "conse": (40.4, 0.4, 0.3, 43.5, 2.6, 2.4),
    "labelem": (40.5, 0.5, 0.4, 45.2, 5.2, 5.1),
}


def _published_rows(
    keys: tuple[str, ...], rows: dict[str, tuple[float, ...]]
) -> dict[str, dict[str, float]]:
    table = {model: dict(zip(keys, values, strict=True)) for model, values in rows.items()}
    table["ml2p_official"] = table["ml2p"]
    return table


PUBLISHED: dict[str, dict[str, Any]] = {
    "nus-wide": {
        "dataset": "NUS-WIDE",
        "test_set": "official, 107,859 test images; 81 unseen / 925 seen labels",
        "source": "Liu et al., CVPR 2023 ((ML)²P-Encoder), as docs/reproduce.md, "
        "'Expected figures' lists them",
        "models": _published_rows(_NUS, _NUS_ROWS),
    },
    "open-images": {
        "dataset": "Open Images V4",
        "test_set": "official test set; 400 unseen / 7,186 seen labels; BiAM's convention",
        "source": "Liu et al., CVPR 2023 ((ML)²P-Encoder), as docs/reproduce.md, "
        "'Expected figures' lists them",
        "models": _published_rows(_OI, _OI_ROWS),
    },
}
"""Published figures per benchmark: ``{"dataset", "test_set", "source", "models": {model:
{"zsl.mAP": ..., ...}}}``, percent."""


def benchmark_key(dataset_name: str | None) -> str | None:
    """``"nus-wide"`` or ``"open-images"`` for a dataset name of either benchmark (``NUS-WIDE``,
    ``nus-wide``, ``Open Images V4``, ``open-images``), else ``None``."""
    if not dataset_name:
        return None
    key = "-".join(dataset_name.lower().replace("_", " ").replace("-", " ").split())
    if key == "nus-wide":
        return "nus-wide"
    if key.startswith("open-images"):
        return "open-images"
    return None


def published_figures(dataset_name: str | None) -> dict[str, Any] | None:
    """The published table (:data:`PUBLISHED`) of a dataset named ``dataset_name``, or ``None``."""
    key = benchmark_key(dataset_name)
    return None if key is None else {"benchmark": key, **PUBLISHED[key]}


# ----------------------------------------------------------------------------- quality


def bench_config(model: str, overrides: Sequence[str] = ()) -> TrainConfig:
    """The packaged scenes config of ``model``, or a generic one (weighted BCE, Adam 1e-3)."""
    path = packaged_config("scenes", model)
    if path.is_file():
        return load_config(path, overrides)
    generic = [f"model={model}", "loss=bce", "lr=0.001", "epochs=10", "warmup_epochs=0.4"]
    return load_config(None, [*generic, *overrides])


def group_config(group: str, model: str, overrides: Sequence[str] = ()) -> TrainConfig | None:
    """The packaged config ``group/model.yaml`` with ``overrides``; ``None`` if there is none."""
    path = packaged_config(group, model)
    if not path.is_file():
        return None
    config = load_config(path, overrides)
    if config.model != model:
        raise ConfigError(f"{path}: configures model {config.model!r}, not {model!r}")
    return config


@dataclass
class QualityRow:
    """One model's results over seeds (metrics in percent)."""

    model: str
    parameters: int
    seconds: list[float]
    metrics: dict[str, list[float]]
    store: str = ""
    """The store the model trained on."""

    def summary(self) -> dict[str, Any]:
        """Mean and std of each metric and of the training time."""
        out: dict[str, Any] = {"parameters": self.parameters, "seeds": len(self.seconds)}
        for key, values in {**self.metrics, "train_seconds": self.seconds}.items():
            out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        return out


@dataclass
class PhotoRow:
    """The zero-training row: the ready real-photo model evaluated on the same test images."""

    metrics: dict[str, float]
    """``{"zsl.mAP": ..., "gzsl.F1@3": ...}``, percent."""
    parameters: int
    n_images: int
    how: str
    """How it was scored: from the folder's images, or from the store's features."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "metrics": self.metrics,
            "parameters": self.parameters,
            "images": self.n_images,
            "how": self.how,
        }


@dataclass
class QualityReport:
    """What :func:`quality` measured, and on what."""

    source: str
    """One line naming the data: the scenes, a photo folder or a store."""
    rows: dict[str, QualityRow]
    ks: tuple[int, ...] = (3, 5)
    group: str | None = None
    """The config group (``None``: the scenes benchmark's own configs)."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(model, reason) of every model left out."""
    stores: dict[str, str] = field(default_factory=dict)
    """Store path -> ``"cached"`` or how long its extraction took (photo folders)."""
    photo: PhotoRow | None = None
    photo_note: str | None = None
    """Why the photo row is missing (``None`` when it is there or was not asked for)."""
    dataset: str | None = None
    test_set: str | None = None
    published: dict[str, Any] | None = None
    """:func:`published_figures` of the store's benchmark, or ``None``."""

    @property
    def metric_keys(self) -> list[str]:
        """``split.metric`` keys of the table, in column order."""
        return [f"{s}.{m}" for s, m in quality_metrics(self.ks)]

    def to_dict(self, seeds: int) -> dict[str, Any]:
        """The JSON of ``mlzsl bench quality --json``."""
        return {
            "seeds": seeds,
            "source": self.source,
            "group": self.group,
            "dataset": self.dataset,
            "test_set": self.test_set,
            "ks": list(self.ks),
            "models": {name: row.summary() for name, row in self.rows.items()},
            "photo": None if self.photo is None else self.photo.to_dict(),
            "photo_note": self.photo_note,
            "published": self.published,
            "skipped": [{"model": m, "reason": why} for m, why in self.skipped],
            "stores": self.stores,
        }


def quality(
    out: str | Path,
    *,
    models: Sequence[str] | None = None,
    seeds: int = 3,
    n_train: int = 3000,
    n_test: int = 1000,
    overrides: Sequence[str] = (),
    quiet: bool = True,
    data: str | Path | None = None,
    store: str | Path | None = None,
    group: str | None = None,
    photo: bool = True,
) -> QualityReport:
    """Train every model for ``seeds`` seeds and evaluate it; see the module docstring.

    Args:
        out: the folder of stores (scenes), runs (``out/runs``) and charts.
        models: model names (default: every trainable registered model).
        seeds: training seeds 0 .. seeds − 1 per model.
        n_train: scenes train images (scenes only).
        n_test: scenes test images (scenes only).
        overrides: ``key=value`` config overrides applied to every model's config.
        quiet: no progress bars.
        data: a labelled photo folder (user data format) to train and evaluate on.
        store: a feature store to train and evaluate on (not with ``data``).
        group: the config group of ``data`` / ``store`` (default :data:`DEFAULT_GROUP`).
        photo: add the zero-training photo row (``data`` / ``store`` only).
    """
    if data is not None and store is not None:
        raise ConfigError("give a photo folder (--data) or a store (--store), not both")
    if data is None and store is None:
        if group is not None:
            raise ConfigError(
                "--group picks the configs for --data or --store; the scenes benchmark uses "
                "its own (configs/scenes, else a generic one)"
            )
        return _scenes_quality(Path(out), models, seeds, n_train, n_test, overrides, quiet)
    return _group_quality(
        Path(out), models, seeds, overrides, quiet, data, store, group or DEFAULT_GROUP, photo
    )


def _scenes_quality(
    out: Path,
    models: Sequence[str] | None,
    seeds: int,
    n_train: int,
    n_test: int,
    overrides: Sequence[str],
    quiet: bool,
) -> QualityReport:
    """Every model on one scenes extraction (and a pixels one for image-input models)."""
    names = list(models or list_models(trainable=True))
    for name in names:  # every model and override checked before anything is written
        model_inputs(name)
        bench_config(name, [*overrides, "seed=0"])
    generate_scenes(  # the benchmark's own subfolder: other sizes regenerate it (force)
        out / "scenes", n_train=n_train, n_test=n_test, show_progress=not quiet, force=True
    )
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
    ks: tuple[int, ...] = (3, 5)
    for name in names:
        configs = [bench_config(name, [*overrides, f"seed={seed}"]) for seed in range(seeds)]
        runs = out / "runs" / name
        rows[name], ks = _train_seeds(name, configs, stores[model_inputs(name)], runs, quiet)
    source = f"scenes ({n_train:,} train / {n_test:,} test images)"
    return QualityReport(source, rows, ks)


def _train_seeds(
    name: str, configs: list[TrainConfig], store: Path, runs: Path, quiet: bool
) -> tuple[QualityRow, tuple[int, ...]]:
    """Train one config per seed into ``runs/seed<K>``; the row and the K values used."""
    row = QualityRow(name, 0, [], {}, str(store))
    ks: tuple[int, ...] = ()
    for seed, config in enumerate(configs):
        result = fit(config, store, runs / f"seed{seed}", quiet=quiet)
        ks = result.results.ks
        metrics = result.best.to_dict()
        for s, m in quality_metrics(ks):
            row.metrics.setdefault(f"{s}.{m}", []).append(float(metrics[s][m]))
        row.seconds.append(sum(float(h["seconds"]) for h in result.history))
    best = load_checkpoint(runs / "seed0" / "best.pt")
    row.parameters = count_parameters(best.build_model())
    return row, ks


def _group_configs(
    group: str, models: Sequence[str] | None, overrides: Sequence[str]
) -> tuple[dict[str, TrainConfig], list[tuple[str, str]]]:
    """The group's config (seed 0) of each model, and (model, reason) of the models without."""
    names = list(models or list_models(trainable=True))
    configs: dict[str, TrainConfig] = {}
    skipped: list[tuple[str, str]] = []
    for name in names:
        model_inputs(name)  # an unknown name is an error, not a skip
        config = group_config(group, name, [*overrides, "seed=0"])
        if config is None:
            skipped.append((name, f"no config in group {group!r}"))
        else:
            configs[name] = config
    if not configs:
        groups = sorted({name.split("/")[0] for name in list_packaged_configs()})
        raise ConfigError(
            f"config group {group!r}: no config for any of {', '.join(names)} "
            f"(packaged groups: {', '.join(groups)})"
        )
    return configs, skipped


def _group_quality(
    out: Path,
    models: Sequence[str] | None,
    seeds: int,
    overrides: Sequence[str],
    quiet: bool,
    data: str | Path | None,
    store: str | Path | None,
    group: str,
    photo: bool,
) -> QualityReport:
    """Every model of a config group on a photo folder's cached stores or on one store."""
    configs, skipped = _group_configs(group, models, overrides)
    stores: dict[str, Path] = {}
    report = QualityReport("", {}, group=group, skipped=skipped)
    if data is not None:
        info = read_dataset_info(data)
        report.source = f"photo folder {Path(data)}"
        report.dataset = None if info is None else info.name
        made: dict[tuple[str, int | None], Path] = {}
        for name, config in configs.items():  # every extraction before any training
            key = (data_backbone(name, config.backbone), config.image_size)
            if key not in made:
                found = folder_store(
                    data, backbone=key[0], image_size=key[1], show_progress=not quiet
                )
                made[key] = found.path
                how = "cached" if found.reused else f"extracted in {found.summary.seconds:.1f} s"
                report.stores[str(found.path)] = how
            stores[name] = made[key]
    else:
        assert store is not None
        opened = FeatureStore(store)  # a missing or broken store fails before any training
        report.source = f"store {Path(store)}"
        info = opened.header.dataset
        report.dataset = None if info is None else info.name
        holds = "images" if opened.header.backbone.get("name") == "pixels" else "features"
        for name in list(configs):
            if model_inputs(name) != holds:
                what = "normalised images" if holds == "images" else "feature maps"
                skipped.append((name, f"takes {model_inputs(name)}, the store holds {what}"))
                del configs[name]
        if not configs:
            raise ConfigError(f"{store}: no model of the list can train on this store")
        stores = {name: Path(store) for name in configs}
    for name, config in configs.items():
        seeded = [
            group_config(group, name, [*overrides, f"seed={seed}"]) or config
            for seed in range(seeds)
        ]
        runs = out / "runs" / _store_tag(stores[name]) / name
        report.rows[name], report.ks = _train_seeds(name, seeded, stores[name], runs, quiet)
    first = FeatureStore(next(iter(stores.values())))
    report.test_set = first.test_set_line()
    report.published = published_figures(report.dataset)
    if photo:
        if data is not None:
            report.photo = photo_row_on_folder(data, quiet=quiet)
        else:
            report.photo, report.photo_note = photo_row_on_store(first, quiet=quiet)
    return report


def _store_tag(store: Path) -> str:
    """A run-folder name per store, so a rerun on other data never resumes a run of this one."""
    meta = FeatureStore(store).header.meta
    facts = [str(store.resolve()), str(meta.get("created")), str(meta.get("job"))]
    return f"{store.stem[:48]}-{hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:8]}"


def _flat(results: Results) -> dict[str, float]:
    """``{"zsl.mAP": ..., "gzsl.F1@3": ...}`` of the primary convention, percent."""
    metrics = results.primary.to_dict()
    return {f"{s}.{m}": float(metrics[s][m]) for s, m in quality_metrics(results.ks)}


def photo_row_on_folder(data: str | Path, *, quiet: bool = True) -> PhotoRow:
    """The ready ``photo`` model on the test images of a labelled folder, from the images."""
    tagger = Tagger.from_checkpoint(PHOTO_ROW)
    result = evaluate_folder(tagger, data, show_progress=not quiet)
    how = "scored from the folder's test images (no training)"
    return PhotoRow(_flat(result.results), tagger.parameters or 0, result.n_images, how)


def photo_row_on_store(
    store: FeatureStore, *, quiet: bool = True
) -> tuple[PhotoRow | None, str | None]:
    """The ready ``photo`` model on a store's test features, when the store's backbone is the
    photo model's (name and weights); else ``(None, the reason)``."""
    ckpt = load_checkpoint(resolve_checkpoint(PHOTO_ROW))
    theirs, ours = store.header.backbone, ckpt.backbone
    if not same_maps(theirs, ours):
        return None, (
            f"photo row omitted: the store's features come from {theirs.get('name')} (weights "
            f"{str(theirs.get('sha256'))[:12]}), the photo model reads {ours.get('name')} "
            f"(weights {str(ours.get('sha256'))[:12]})"
        )
    names = label_texts(store.label_set.names, ckpt.label_prompt)
    vectors = torch.from_numpy(np.ascontiguousarray(embed_labels(names, ckpt.embedder)))
    model = ckpt.build_model()
    results = evaluate_model(model, store, vectors, show_progress=not quiet)
    how = f"scored from the store's {ours.get('name')} features (no training)"
    n_test = len(store.indices("test"))
    return PhotoRow(_flat(results), count_parameters(model), n_test, how), None


def plot_quality(report: QualityReport, path: Path) -> None:
    """Bar chart of ZSL and GZSL mAP (mean ± std over seeds) per model, the photo row hatched,
    published figures as black marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.rows
    names = list(rows) + ([PHOTO_ROW] if report.photo is not None else [])
    published = (report.published or {}).get("models", {})
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 3.8))
    for i, key in enumerate(("zsl.mAP", "gzsl.mAP")):
        means = [float(np.mean(rows[n].metrics[key])) for n in rows]
        stds = [float(np.std(rows[n].metrics[key])) for n in rows]
        if report.photo is not None:
            means.append(report.photo.metrics.get(key, math.nan))
            stds.append(0.0)
        offset = (i - 0.5) * 0.4
        bars = ax.bar(x + offset, means, 0.4, yerr=stds, capsize=3, label=key, color=f"C{i}")
        if report.photo is not None:
            bars[-1].set_hatch("//")
        marks = [(j, published[n][key]) for j, n in enumerate(names) if key in published.get(n, {})]
        if marks:
            label = "published" if i == 0 else None
            xs, ys = zip(*marks, strict=True)
            ax.scatter(np.asarray(xs) + offset, ys, marker="_", s=250, color="k", label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(
        [f"{n} (no training)" if n == PHOTO_ROW and report.photo else n for n in names],
        rotation=20,
    )
    ax.set_ylabel("percent")
    group = "" if report.group is None else f", configs {report.group}/"
    ax.set_title(f"mlzsl bench quality: {report.source}{group} (mean ± std)", fontsize=9)
    ax.legend(fontsize=8)
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
