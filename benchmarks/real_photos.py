"""Real-photo tagging with the pretrained ``imagenet_conse`` model: which variant tags best.

Usage (from the repository root)::

    .venv/bin/python benchmarks/real_photos.py [DATA_DIR] [--threads N] [--quick]

DATA_DIR is a user data folder whose test images are real photographs labelled with unseen
labels (default ``../shared/data/real_photos_dev``: 126 COCO photos, 80-name vocabulary). Each
(backbone, input size) pair runs the backbone once; its classifier logits at the pooled vector and
at every position of the feature map are kept, and every variant (embedder, label prompt,
pooled or spatial scoring, T, temperature, spatial weight, several scales) is scored from them
through :class:`mlzsl.models.imagenet_conse.ImagenetConse` itself. Metrics are the ZSL split of
:func:`mlzsl.protocol.evaluate_default`: mAP over all vocabulary labels (a label with no positive
counts as AP 0, as ``mlzsl eval`` reports) and F1@3. Finally the default checkpoint
(:func:`mlzsl.inference.pretrained.real_photo_checkpoint`) tags every photo through
:class:`mlzsl.Tagger`, which gives the tagging speed and checks that the full path scores as the
table's default row does. Prints Markdown tables; ``benchmarks/README.md`` holds a run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mlzsl.backbones import create_backbone
from mlzsl.datasets.userdata import UserDataset, read_user_dataset
from mlzsl.embeddings import embed_labels
from mlzsl.images import load_image
from mlzsl.inference.pretrained import (
    CLIP_PROMPT,
    DEFAULT_PHOTO_MODEL,
    PHOTO_MODELS,
    imagenet_classes,
    imagenet_classifier,
    real_photo_checkpoint,
)
from mlzsl.inference.tagger import Tagger
from mlzsl.labels import label_texts
from mlzsl.metrics import mean_average_precision
from mlzsl.models.imagenet_conse import ImagenetConse
from mlzsl.protocol import evaluate_default

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_photos_dev"
BACKBONES = ("efficientnet_lite0", "efficientnet_lite2")
SIZES = (224, 320, 384, 448)
BATCH = 16
Logits = torch.Tensor  # [N, 1 + P, K]: pooled row first, then the H·W positions


@dataclass(frozen=True)
class Variant:
    """How to score from the logits (the ``imagenet_conse`` options plus the label side)."""

    embedder: str = "minilm"
    prompt: str | None = CLIP_PROMPT
    top_t: int = PHOTO_MODELS[DEFAULT_PHOTO_MODEL].top_t
    temperature: float = PHOTO_MODELS[DEFAULT_PHOTO_MODEL].temperature
    spatial: str = "max"
    spatial_weight: float = 1.0


class Bench:
    """The data, the label vectors per (embedder, prompt) and the classifier per backbone."""

    def __init__(self, data: UserDataset) -> None:
        self.data = data
        rows = data.indices("test")
        self.rows = rows
        self.targets = data.target_rows(rows)  # [N, L]
        self.labels = list(data.label_set.names)
        self.classes = imagenet_classes()
        self._vectors: dict[tuple[str, str | None], tuple[torch.Tensor, torch.Tensor]] = {}
        self._classifiers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def vectors(self, embedder: str, prompt: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(class-name vectors [K, E], label vectors [L, E]) of an embedder and prompt."""
        key = (embedder, prompt)
        if key not in self._vectors:
            lenient = f"lenient:{embedder}" if embedder.startswith("glove") else embedder
            with warnings.catch_warnings():  # 23 ImageNet names have no GloVe word: known
                warnings.filterwarnings("ignore", message="embedder 'lenient:")
                classes = embed_labels(label_texts(self.classes, prompt), lenient)
            labels = embed_labels(label_texts(self.labels, prompt), embedder)
            self._vectors[key] = (torch.from_numpy(classes), torch.from_numpy(labels))
        return self._vectors[key]

    def classifier(self, backbone: str) -> tuple[torch.Tensor, torch.Tensor]:
        if backbone not in self._classifiers:
            weight, bias, _ = imagenet_classifier(backbone)
            self._classifiers[backbone] = (weight, bias)
        return self._classifiers[backbone]

    def model(self, backbone: str, variant: Variant) -> ImagenetConse:
        weight, bias = self.classifier(backbone)
        classes, _ = self.vectors(variant.embedder, variant.prompt)
        model = ImagenetConse(
            in_channels=weight.shape[1],
            embed_dim=classes.shape[1],
            num_classes=weight.shape[0],
            top_t=variant.top_t,
            temperature=variant.temperature,
            spatial=variant.spatial,
            spatial_weight=variant.spatial_weight,
        )
        model.set_classifier(weight, bias, classes)
        return model.eval()

    @torch.no_grad()
    def logits(self, backbone: str, size: int, resize: str) -> tuple[list[Logits], float]:
        """Classifier logits of every test photo, and the backbone's images/s (one at a time).

        ``resize``: one of :data:`mlzsl.images.RESIZE_MODES`.
        """
        net = create_backbone(backbone, image_size=size)
        probe = self.model(backbone, Variant(embedder="glove50", prompt=None))
        mean = np.asarray(net.spec.mean, np.float32)
        std = np.asarray(net.spec.std, np.float32)
        out: list[Logits] = []
        seconds = 0.0
        for i in self.rows:
            path = self.data.path(int(i))
            pixels = load_image(path, size, mean, std, resize=resize)
            begin = time.perf_counter()
            features = net(torch.from_numpy(pixels)[None])  # [1, C, H, W]
            seconds += time.perf_counter() - begin
            out.append(probe.class_logits(features)[0])  # [1 + P, K]
        return out, len(out) / seconds

    @torch.no_grad()
    def scores(self, backbone: str, logits: Sequence[Logits], variant: Variant) -> np.ndarray:
        """Scores [N, L] of the test photos under ``variant``."""
        model = self.model(backbone, variant)
        _, labels = self.vectors(variant.embedder, variant.prompt)
        rows = []
        for one in logits:
            kept = one[None] if variant.spatial == "max" else one[None, :1]  # [1, 1 + P', K]
            rows.append(model.score(model.convex_combination(kept), labels))
        return torch.cat(rows).numpy()

    def metrics(self, scores: np.ndarray) -> tuple[float, float]:
        """(ZSL mAP, F1@3) in percent."""
        result = evaluate_default(scores, self.targets, self.data.label_set, ks=(3,)).zsl
        return 100 * result.mean_ap, 100 * result.at_k[3][2]

    def bootstrap_sd(self, scores: np.ndarray, rounds: int = 200) -> float:
        """Standard deviation of mAP (percent) over bootstrap resamples of the photos."""
        rng = np.random.default_rng(0)
        n = len(scores)
        draws = [rng.integers(0, n, n) for _ in range(rounds)]
        return 100 * float(
            np.std([mean_average_precision(self.targets[i], scores[i]) for i in draws])
        )


def tag_path(
    name: str, images: Sequence[Path], labels: Sequence[str]
) -> tuple[np.ndarray, dict[int, float]]:
    """Scores [N, L] of the ready model ``name`` through :class:`Tagger`, and images/s by batch.

    Speeds are for batches of 1 and of :data:`BATCH` photos: on a 2-core CPU one at a time is
    several times faster (a batch's activations outgrow the caches).
    """
    tagger = Tagger.from_checkpoint(real_photo_checkpoint(name))
    texts = list(labels)  # the tagger puts them in the checkpoint's prompt
    tagger.scores(images[:2], texts)  # warm-up: embedder loaded, label vectors cached
    speeds, scores = {}, []
    for batch in (1, BATCH):
        begin = time.perf_counter()
        scores = [tagger.scores(images[i : i + batch], texts) for i in range(0, len(images), batch)]
        speeds[batch] = len(images) / (time.perf_counter() - begin)
    return np.concatenate(scores), speeds


def cell(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.1f} / {pair[1]:.1f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


GRID_COLUMNS = (
    ("GloVe-50 pooled", Variant(embedder="glove50", prompt=None, spatial="none")),
    ("GloVe-50 spatial", Variant(embedder="glove50", prompt=None)),
    ("MiniLM pooled", Variant(prompt=None, spatial="none")),
    ("MiniLM spatial", Variant(prompt=None)),
    ("MiniLM+prompt pooled", Variant(spatial="none")),
    ("**MiniLM+prompt spatial**", Variant()),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="the default backbone and size only")
    args = parser.parse_args(argv)
    if not (args.data / "labels.csv").is_file():
        print(
            f"{args.data}: no real-photo data folder (labels.csv, vocabulary.csv, images/); "
            "pass one as the first argument",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = Bench(read_user_dataset(args.data))
    recipe = PHOTO_MODELS[DEFAULT_PHOTO_MODEL]
    default = Variant(
        embedder=recipe.embedder,
        prompt=recipe.prompt,
        top_t=recipe.top_t,
        temperature=recipe.temperature,
        spatial=recipe.spatial,
        spatial_weight=recipe.spatial_weight,
    )
    n, n_labels = bench.targets.shape
    print(
        f"{args.data}: {n} test photos, {n_labels} labels, torch threads {torch.get_num_threads()}"
    )
    print("cells: ZSL mAP / F1@3, percent\n")

    # 1. the grid: backbone × size × label vectors × pooled or spatial
    pairs = (
        [(recipe.backbone, recipe.image_size)]
        if args.quick
        else [(b, s) for b in BACKBONES for s in SIZES]
    )
    kept: dict[tuple[str, int], list[Logits]] = {}
    grid_rows = []
    for backbone, size in pairs:
        logits, speed = bench.logits(backbone, size, recipe.resize)
        row = [backbone.replace("efficientnet_", ""), str(size), f"{speed:.1f}"]
        row += [cell(bench.metrics(bench.scores(backbone, logits, v))) for _, v in GRID_COLUMNS]
        grid_rows.append(row)
        print(" | ".join(row), flush=True)
        if backbone == recipe.backbone:
            kept[(backbone, size)] = logits
    header = ["backbone", "size", "backbone img/s"] + [name for name, _ in GRID_COLUMNS]
    print("\n" + table(header, grid_rows) + "\n")

    # 2. around the default: T, temperature, spatial weight, prompt, scales, aspect ratio
    base = kept[(recipe.backbone, recipe.image_size)]
    score_default = bench.scores(recipe.backbone, base, default)
    rows: list[list[str]] = []

    def add(name: str, scores: np.ndarray) -> None:
        rows.append([name, cell(bench.metrics(scores))])

    add(f"default ({recipe.backbone}, {recipe.image_size} px)", score_default)
    paper = replace(default, top_t=10, temperature=1.0)
    add("the paper's T = 10, temperature 1", bench.scores(recipe.backbone, base, paper))
    for t in (1, 5, 10, 50):
        add(f"T = {t}", bench.scores(recipe.backbone, base, replace(default, top_t=t)))
    for tau in (1.0, 4.0):
        add(
            f"temperature {tau:g}",
            bench.scores(recipe.backbone, base, replace(default, temperature=tau)),
        )
    for weight in (0.5, 2.0):
        add(
            f"spatial weight {weight:g}",
            bench.scores(recipe.backbone, base, replace(default, spatial_weight=weight)),
        )
    add(
        "prompt 'a photo of the {}.'",
        bench.scores(recipe.backbone, base, replace(default, prompt="a photo of the {}.")),
    )
    if not args.quick:
        others = [s for s in SIZES if s != recipe.image_size]
        for combo in ([320, 448], [224, 384], sorted([recipe.image_size, *others])):
            total = np.sum(
                [bench.scores(recipe.backbone, kept[(recipe.backbone, s)], default) for s in combo],
                axis=0,
            )
            add(f"scales {'+'.join(map(str, combo))} (scores summed)", total)
        squashed, _ = bench.logits(recipe.backbone, recipe.image_size, "squash")
        add(
            f"squashed to {recipe.image_size}×{recipe.image_size} (aspect not kept)",
            bench.scores(recipe.backbone, squashed, default),
        )
        add(
            "squashed, with the paper's T = 10, temperature 1",
            bench.scores(recipe.backbone, squashed, paper),
        )
    rng = np.random.default_rng(0)
    random = [bench.metrics(rng.random(score_default.shape)) for _ in range(20)]
    rows.append(["random scores (mean of 20)", cell(tuple(np.mean(random, axis=0)))])
    print(table(["variant", "mAP / F1@3"], rows))
    print(
        f"\nbootstrap SD of the default's mAP over photos: {bench.bootstrap_sd(score_default):.1f}"
    )
    present = bench.targets.max(axis=0) > 0
    result = evaluate_default(score_default, bench.targets, bench.data.label_set, ks=(3,)).zsl
    print(
        f"default mAP over the {int(present.sum())} labels with a positive: "
        f"{100 * float(result.ap[present].mean()):.1f}"
    )

    # 3. the ready models through the full tag path: speed, and agreement with the table
    images = [bench.data.path(int(i)) for i in bench.rows]
    ready = []
    for name in PHOTO_MODELS:
        full, speeds = tag_path(name, images, bench.labels)
        ready.append(
            [name, PHOTO_MODELS[name].description, cell(bench.metrics(full))]
            + [f"{speeds[b]:.1f}" for b in sorted(speeds)]
        )
        if name == DEFAULT_PHOTO_MODEL:
            agree = float(np.abs(full - score_default).max())
    header = ["ready model", "recipe", "mAP / F1@3", "images/s (batch 1)", f"(batch {BATCH})"]
    print("\n" + table(header, ready))
    print(
        "\nimages/s: decode + backbone + scores through mlzsl.Tagger; "
        f"default model's max |score - table's default row| = {agree:.1e}"
    )
    if not math.isfinite(agree) or agree > 1e-3:
        print("WARNING: the tag path does not score as the table's default row", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
