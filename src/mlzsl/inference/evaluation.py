"""Scoring and evaluating a model (or a checkpoint) on the rows of a feature store.

Evaluation scores every label of the store and reports ZSL (unseen columns) and GZSL (all
columns) through :mod:`mlzsl.protocol`, under every convention of the store's benchmark (one for
NUS-WIDE and user data, two for Open Images: :class:`mlzsl.protocol.Results`).

Under torchrun each rank scores its DistributedSampler shard and the shards are gathered, dropping
the duplicate rows DistributedSampler pads in.

:func:`evaluate_folder` evaluates a tagger (:class:`mlzsl.inference.tags.ImageScorer`, torch or
ONNX) on a user data folder directly from its images (no feature store, no training): any labelled
folder, even one whose labels are all unseen and whose images are all test images, goes through the
same protocol.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from mlzsl.backbones import same_maps
from mlzsl.datasets.dataset_info import EvaluationKind, read_dataset_info
from mlzsl.datasets.userdata import read_user_dataset
from mlzsl.distributed import SINGLE_PROCESS, DistInfo, unwrap
from mlzsl.embeddings import create_embedder, embed_labels
from mlzsl.errors import ConfigError, DataError
from mlzsl.inference.checkpoint import load_checkpoint
from mlzsl.inference.tags import ImageScorer, score_files
from mlzsl.labels import LabelSet, label_texts
from mlzsl.progress import progress
from mlzsl.protocol import Results, evaluate, resolve_ks
from mlzsl.store.feature_store import FeatureStore

__all__ = [
    "FolderEvaluation",
    "evaluate_checkpoint",
    "evaluate_folder",
    "evaluate_model",
    "label_vectors",
    "predict_scores",
]


def label_vectors(
    embedder_spec: str, label_set: LabelSet, *, prompt: str | None = None
) -> torch.Tensor:
    """Vectors of every label of ``label_set`` (float32 [L, E]), each name put in ``prompt``
    first when given (a checkpoint's ``label_prompt``); cached on disk."""
    embedder = create_embedder(embedder_spec)
    texts = label_texts(label_set.names, prompt)
    return torch.from_numpy(np.ascontiguousarray(embed_labels(texts, embedder)))


@torch.no_grad()
def predict_scores(
    model: nn.Module,
    store: FeatureStore,
    rows: np.ndarray,
    vectors: torch.Tensor,
    *,
    batch_size: int = 256,
    info: DistInfo = SINGLE_PROCESS,
    show_progress: bool = False,
) -> np.ndarray:
    """Scores of ``rows`` against ``vectors``: float32 [len(rows), L], on every rank.

    Under torchrun each rank scores its DistributedSampler shard; the shards are gathered and
    the duplicates the sampler pads in (to make shards equal) are dropped.
    """
    model = unwrap(model)
    was_training = model.training
    model.eval()
    positions = np.arange(len(rows))
    if info.world > 1:
        sampler: DistributedSampler = DistributedSampler(
            positions,  # type: ignore[arg-type]  # any sized sequence works
            info.world,
            info.rank,
            shuffle=False,
        )
        positions = np.fromiter(iter(sampler), dtype=np.int64)
    vectors = vectors.to(info.device)
    parts = []
    starts = range(0, len(positions), batch_size)
    for start in progress(starts, desc="score", unit="batch", disable=not show_progress):
        chunk = positions[start : start + batch_size]
        half = store.features(rows[chunk], dtype=np.float16)  # as stored; float32 on the device
        feats = torch.from_numpy(half).to(info.device).float()  # [b, C, H, W]
        parts.append(model(feats, vectors).float().cpu().numpy())
    scores = np.concatenate(parts) if parts else np.zeros((0, len(vectors)), np.float32)
    model.train(was_training)
    if info.world == 1:
        return scores
    gathered: list[Any] = [None] * info.world
    dist.all_gather_object(gathered, (positions, scores))
    out = np.zeros((len(rows), len(vectors)), dtype=np.float32)
    for pos, part in reversed(gathered):  # rank 0's rows win: padding repeats early rows
        out[pos] = part
    return out


def evaluate_model(
    model: nn.Module,
    store: FeatureStore,
    vectors: torch.Tensor,
    *,
    ks: Sequence[int] | None = None,
    split: str = "test",
    info: DistInfo = SINGLE_PROCESS,
    show_progress: bool = False,
) -> Results:
    """ZSL and GZSL metrics of ``model`` on the ``split`` rows of ``store``, per convention.

    ``ks`` goes through :func:`mlzsl.protocol.resolve_ks`.
    """
    rows = store.indices(split)
    if len(rows) == 0:
        raise DataError(f"{store.path}: no {split} images to evaluate")
    scores = predict_scores(model, store, rows, vectors, info=info, show_progress=show_progress)
    return evaluate(scores, store.labels(rows), store.label_set, ks=ks, evaluation=store.evaluation)


def evaluate_checkpoint(
    checkpoint: str | Path,
    store_path: str | Path,
    *,
    embedder: str | None = None,
    split: str = "test",
) -> tuple[str, Results]:
    """Evaluate a checkpoint on a store; returns (model name, results by convention).

    The store's features must come from the backbone the checkpoint was trained on, and the
    embedder (the checkpoint's unless overridden) must give vectors of the size the model takes.
    The K values are the checkpoint config's, through :func:`mlzsl.protocol.resolve_ks`.
    """
    ckpt = load_checkpoint(checkpoint)
    store = FeatureStore(store_path)
    theirs, ours = store.header.backbone, ckpt.backbone
    if not same_maps(theirs, ours):
        raise DataError(
            f"{store.path}: features come from backbone {theirs.get('name')!r} "
            f"(weights {str(theirs.get('sha256'))[:12]}), but {checkpoint} was trained on "
            f"{ours.get('name')!r} (weights {str(ours.get('sha256'))[:12]})"
        )
    spec = embedder or ckpt.embedder
    vectors = label_vectors(spec, store.label_set, prompt=ckpt.label_prompt)
    if vectors.shape[1] != ckpt.embed_dim:
        raise ConfigError(
            f"{checkpoint}: the model expects {ckpt.embed_dim}-d label vectors, embedder "
            f"{spec!r} gives {vectors.shape[1]}-d"
        )
    ks = resolve_ks(ckpt.ks, store.evaluation)
    return ckpt.model, evaluate_model(ckpt.build_model(), store, vectors, ks=ks, split=split)


@dataclass
class FolderEvaluation:
    """The outcome of :func:`evaluate_folder`.

    Attributes:
        results: ZSL and GZSL metrics per convention, over the images that decoded.
        n_images: images evaluated.
        skipped: (image path, reason) of the images that did not decode (left out).
        seconds: wall time of decoding and scoring.
    """

    results: Results
    n_images: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def evaluate_folder(
    scorer: ImageScorer,
    data_dir: str | Path,
    *,
    split: str = "test",
    ks: Sequence[int] | None = None,
    batch_size: int = 1,
    show_progress: bool = False,
) -> FolderEvaluation:
    """Score the ``split`` images of a user data folder against its whole vocabulary, evaluate.

    ``scorer`` is a :class:`~mlzsl.inference.tagger.Tagger` or an
    :class:`~mlzsl.inference.onnx_runtime.OnnxTagger` (the loop is
    :func:`mlzsl.inference.tags.score_files`, as for tagging). The folder's ``dataset.json`` (if
    any) picks the benchmark's conventions and K values; an image that does not decode is left out
    and listed.
    """
    started = time.perf_counter()
    dataset = read_user_dataset(data_dir)
    info = read_dataset_info(dataset.root)
    evaluation: EvaluationKind = "default" if info is None else info.evaluation
    rows = dataset.indices(split)
    if len(rows) == 0:
        raise DataError(f"{dataset.root}: no {split} images to evaluate")
    files = [dataset.path(int(row)) for row in rows]
    vectors = scorer.label_vectors(dataset.label_set.names)  # [L, E]
    kept: list[int] = []
    scores: list[np.ndarray] = []
    skipped: list[tuple[Path, str]] = []
    for done, part in score_files(
        scorer, files, vectors, skipped, batch_size=batch_size, desc="eval", bar=show_progress
    ):
        kept += [int(rows[i]) for i in done]
        scores.append(part)
    if not kept:
        raise DataError(f"{dataset.root}: none of the {len(rows)} {split} images decodes")
    results = evaluate(
        np.concatenate(scores),
        dataset.target_rows(np.asarray(kept)),
        dataset.label_set,
        ks=ks,
        evaluation=evaluation,
    )
    seconds = time.perf_counter() - started
    return FolderEvaluation(results, len(kept), [(str(p), why) for p, why in skipped], seconds)
