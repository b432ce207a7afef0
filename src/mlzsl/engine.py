"""Fit and evaluate models on a feature store; checkpoints, resume, and torchrun.

The trainer knows nothing about a model beyond ``model(features [B, C, H, W], label_vectors
[L, E]) -> scores [B, L]`` (and an optional ``extra_loss()``). Training scores the store's *seen*
labels only; evaluation scores every label of the store and reports ZSL (unseen columns) and
GZSL (all columns) through :mod:`mlzsl.protocol`.

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the process group is created with NCCL on
GPUs and gloo on CPUs, the model is wrapped in DistributedDataParallel, each rank reads its share
of every global batch through a DistributedSampler (``batch_size`` is the global batch, split
evenly), and evaluation scores a DistributedSampler shard per rank and gathers the scores,
dropping the duplicate rows DistributedSampler pads in. Only rank 0 writes files.

Open Images: on a store whose dataset says ``evaluation == "open_images"`` every evaluation is
reported under both conventions of the literature (:func:`mlzsl.protocol.open_images_evaluate`:
``"lesa"`` and ``"biam"``), and the *primary* result (what :func:`evaluate_on_store` returns,
what ``select_metric`` reads unless it names a convention, ``FitResult.best``) is BiAM's: that
is the regime of (ML)²P's published Open Images figures (DESIGN §4). History columns on such a
store are prefixed with the convention (``biam.zsl.mAP``, ``lesa.zsl.mAP``); ``select_metric``
may name one the same way. K values: a config that leaves ``ks`` unset gets the store's
benchmark's, K = 10, 20 on Open Images and 3, 5 elsewhere (:func:`resolve_ks`). Other stores
have one convention, keyed ``"default"``, and unprefixed columns.

Resume: after every epoch rank 0 writes ``last.pt`` (weights, optimizer, schedule, RNG states,
history). A rerun in the same folder continues after the last finished epoch; with a fixed seed
on CPU it reaches exactly the metrics of an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from mlzsl.checkpoint import load_checkpoint, save_checkpoint
from mlzsl.config import TrainConfig, save_config
from mlzsl.data.store import FeatureStore
from mlzsl.embeddings import create_embedder, embed_labels
from mlzsl.errors import ConfigError, DataError
from mlzsl.labels import LabelSet
from mlzsl.losses import get_loss, model_extra_loss
from mlzsl.models import create_model, model_arguments, model_inputs
from mlzsl.progress import progress
from mlzsl.protocol import K_VALUES, EvalResult, evaluate, open_images_evaluate

DEFAULT_CONVENTION = "default"
PRIMARY_CONVENTION = {"default": DEFAULT_CONVENTION, "open_images": "biam"}
"""Per store evaluation: the convention that selects checkpoints and fills ``FitResult.best``."""


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and prints."""
        return self.rank == 0


def setup_distributed() -> DistInfo:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistInfo(rank=rank, world=world, device=device)


class StoreRows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Rows of a store, read a whole batch per call: (features float32 [b, C, H, W], labels [b, L]).

    Indexed with a list of positions (what a BatchSampler yields), so each batch is one HDF5 read
    instead of one per image.
    """

    def __init__(self, store: FeatureStore, rows: np.ndarray) -> None:
        self.store, self.rows = store, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.rows[np.asarray(positions, dtype=np.int64)]
        return torch.from_numpy(self.store.features(rows)), torch.from_numpy(
            self.store.labels(rows)
        )


# ----------------------------------------------------------------------------- building blocks


def label_vectors(embedder_spec: str, label_set: LabelSet) -> torch.Tensor:
    """Vectors of every label of ``label_set`` (float32 [L, E]), cached on disk."""
    embedder = create_embedder(embedder_spec)
    return torch.from_numpy(np.ascontiguousarray(embed_labels(label_set.names, embedder)))


def build_model(
    config: TrainConfig, feature_shape: tuple[int, int, int], embed_dim: int
) -> nn.Module:
    """The model of ``config`` for feature maps (C, H, W) and label vectors of ``embed_dim``.

    Sizes the store decides (C, E and, for models that need it, P = H·W) are passed here;
    everything else comes from ``config.model_args``.
    """
    channels, height, width = feature_shape
    sizes: dict[str, Any] = {"in_channels": channels, "embed_dim": embed_dim}
    if model_inputs(config.model) == "images":  # the store holds images (backbone "pixels")
        if channels != 3 or height != width:
            raise ConfigError(
                f"model {config.model!r} takes images: extract the store with "
                f"`mlzsl extract --backbone pixels` (got {channels}×{height}×{width} maps)"
            )
        sizes["image_size"] = height
    if "num_positions" in model_arguments(config.model):
        sizes["num_positions"] = height * width
    clash = sorted(set(sizes) & set(config.model_args))
    if clash:
        raise ConfigError(f"model_args.{clash[0]} is set by the feature store; remove it")
    torch.manual_seed(config.seed)  # same initial weights on every rank and every rerun
    return create_model(config.model, **sizes, **config.model_args)


def make_optimizer(config: TrainConfig, params: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam, AdamW or RMSProp with the config's learning rate and weight decay."""
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in config.optimizer_args.items()}
    try:
        return kinds[config.optimizer](
            list(params), lr=config.lr, weight_decay=config.weight_decay, **args
        )
    except TypeError as e:  # an argument this optimizer does not take
        raise ConfigError(f"optimizer_args for {config.optimizer}: {e}") from None


def make_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step learning-rate factor: linear warm-up, then cosine to zero (or constant)."""
    total = config.epochs * steps_per_epoch
    warmup = int(round(config.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        progress_ = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------- scoring


@torch.no_grad()
def predict_scores(
    model: nn.Module,
    store: FeatureStore,
    rows: np.ndarray,
    vectors: torch.Tensor,
    *,
    batch_size: int = 256,
    info: DistInfo = DistInfo(),
    show_progress: bool = False,
) -> np.ndarray:
    """Scores of ``rows`` against ``vectors``: float32 [len(rows), L], on every rank.

    Under torchrun each rank scores its DistributedSampler shard; the shards are gathered and
    the duplicates the sampler pads in (to make shards equal) are dropped.
    """
    model = _unwrap(model)
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
        feats = torch.from_numpy(store.features(rows[chunk])).to(info.device)
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


def store_evaluation(store: FeatureStore) -> str:
    """How ``store`` is evaluated: ``"open_images"`` or ``"default"`` (its dataset.json)."""
    info = store.header.dataset
    return "default" if info is None else info.evaluation


def resolve_ks(ks: Sequence[int] | None, evaluation: str) -> tuple[int, ...]:
    """The K values to report: ``ks`` as given, or the benchmark's when ``None``.

    ``None`` (a config's default) is (10, 20) on an Open Images store, (3, 5) on any other.
    """
    if ks is None:
        return K_VALUES["open_images" if evaluation == "open_images" else "nus_wide"]
    return tuple(int(k) for k in ks)


def evaluate_scores(
    scores: np.ndarray,
    targets: np.ndarray,
    label_set: LabelSet,
    *,
    ks: tuple[int, ...],
    evaluation: str = "default",
) -> dict[str, EvalResult]:
    """Results keyed by convention: ``{"lesa", "biam"}`` for Open Images, else ``{"default"}``."""
    if evaluation == "open_images":
        return open_images_evaluate(scores, targets, label_set, ks=ks)
    return {DEFAULT_CONVENTION: evaluate(scores, targets, label_set, ks=ks)}


def primary_result(results: dict[str, EvalResult]) -> EvalResult:
    """The result that selects checkpoints: BiAM's convention on Open Images, else the only one."""
    return results["biam"] if "biam" in results else results[DEFAULT_CONVENTION]


def evaluate_on_store_by_convention(
    model: nn.Module,
    store: FeatureStore,
    vectors: torch.Tensor,
    *,
    ks: Sequence[int] | None = None,
    split: str = "test",
    info: DistInfo = DistInfo(),
    show_progress: bool = False,
) -> dict[str, EvalResult]:
    """ZSL and GZSL metrics of ``model`` on the ``split`` rows of ``store``, per convention.

    ``ks`` goes through :func:`resolve_ks`; the keys are those of :func:`evaluate_scores`.
    """
    rows = store.indices(split)
    if len(rows) == 0:
        raise DataError(f"{store.path}: no {split} images to evaluate")
    evaluation = store_evaluation(store)
    scores = predict_scores(model, store, rows, vectors, info=info, show_progress=show_progress)
    return evaluate_scores(
        scores,
        store.labels(rows),
        store.label_set,
        ks=resolve_ks(ks, evaluation),
        evaluation=evaluation,
    )


def evaluate_on_store(
    model: nn.Module,
    store: FeatureStore,
    vectors: torch.Tensor,
    *,
    ks: Sequence[int] | None = None,
    split: str = "test",
    info: DistInfo = DistInfo(),
    show_progress: bool = False,
) -> EvalResult:
    """ZSL and GZSL metrics of ``model`` on the ``split`` rows of ``store``.

    On an Open Images store this is the BiAM-convention result; see
    :func:`evaluate_on_store_by_convention` for both.
    """
    results = evaluate_on_store_by_convention(
        model, store, vectors, ks=ks, split=split, info=info, show_progress=show_progress
    )
    return primary_result(results)


# ----------------------------------------------------------------------------- training


@dataclass
class FitResult:
    """The outcome of :func:`fit`."""

    out_dir: Path
    best_epoch: int
    best: EvalResult
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0
    results: dict[str, EvalResult] = field(default_factory=dict)
    """The best checkpoint under every convention of the store (``best`` is the primary)."""


@dataclass
class _State:
    epoch: int = 0  # finished epochs
    best_value: float = -math.inf
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _metric(results: dict[str, EvalResult], key: str) -> float:
    """``select_metric`` ``split.name`` (primary convention) or ``convention.split.name``."""
    parts = key.split(".")
    result = primary_result(results)
    if len(parts) == 3 and parts[0] in results:
        result, parts = results[parts[0]], parts[1:]
    try:
        split, name = parts
        return float(result.to_dict()[split][name])
    except (KeyError, ValueError):
        raise ConfigError(f"select_metric {key!r} is not a reported metric") from None


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "py": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["py"])


class Trainer:
    """One training run in one folder: builds everything from a config and a store."""

    def __init__(
        self, config: TrainConfig, store_path: str | Path, out_dir: str | Path, *, quiet: bool
    ) -> None:
        self.config, self.out_dir = config, Path(out_dir)
        self.info = setup_distributed()
        self.quiet = quiet or not self.info.is_main
        if config.batch_size % self.info.world:
            raise ConfigError(
                f"batch_size {config.batch_size} must divide evenly over {self.info.world} ranks"
            )
        self.store = FeatureStore(store_path)
        self.ks = resolve_ks(config.ks, store_evaluation(self.store))
        header = self.store.header
        self.vectors = label_vectors(config.embedder, header.label_set)  # [L, E]
        self.seen = torch.from_numpy(header.label_set.seen_idx)
        self.train_rows = self.store.indices("train")
        if len(self.train_rows) == 0 or len(self.seen) == 0:
            raise DataError(f"{self.store.path}: needs train images and seen labels to train")
        self.model = build_model(config, header.feature_shape, self.vectors.shape[1])
        self.model.to(self.info.device)
        self.loss_fn = get_loss(config.loss)
        self.ddp: nn.Module = self.model
        if self.info.world > 1:
            self.ddp = nn.parallel.DistributedDataParallel(self.model)
        self.optimizer = make_optimizer(config, self.model.parameters())
        self.loader = self._loader()
        self.schedule = make_schedule(self.optimizer, config, len(self.loader))
        self.state = _State()

    def _loader(self) -> DataLoader:
        rows = StoreRows(self.store, self.train_rows)
        self.sampler: DistributedSampler = DistributedSampler(
            rows,
            num_replicas=self.info.world,
            rank=self.info.rank,
            shuffle=True,
            seed=self.config.seed,
        )
        per_rank = self.config.batch_size // self.info.world
        return DataLoader(
            rows,
            sampler=BatchSampler(self.sampler, per_rank, drop_last=False),
            batch_size=None,  # the dataset reads whole batches
            num_workers=self.config.workers,
        )

    # -- checkpoints
    def _payload(self, results: dict[str, EvalResult] | None) -> dict[str, Any]:
        header = self.store.header
        return {
            "model": self.config.model,
            "model_args": dict(self.model.config),  # type: ignore[arg-type]  # sizes included: rebuilds the model
            "embedder": self.config.embedder,
            "vocabulary": {
                "names": list(header.label_set.names),
                "seen": list(header.label_set.seen),
            },
            "backbone": header.backbone,
            "image_size": header.meta.get("image_size"),
            "mean": header.meta.get("mean"),
            "std": header.meta.get("std"),
            "config": self.config.to_dict(),
            "epoch": self.state.epoch,
            "metrics": primary_result(results).to_dict() if results else None,
            "metrics_by_convention": _by_convention(results) if results else None,
            "state_dict": self.model.state_dict(),
        }

    def _save_last(self) -> None:
        payload = self._payload(None)
        payload["train_state"] = {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": _rng_state(),
            "state": self.state.__dict__,
        }
        save_checkpoint(self.out_dir / "last.pt", payload)

    def try_resume(self) -> int:
        """Continue from ``last.pt`` when it belongs to this very config; return its epoch."""
        path = self.out_dir / "last.pt"
        if not path.is_file():
            return 0
        ckpt = load_checkpoint(path)
        if ckpt["config"] != self.config.to_dict():
            raise ConfigError(
                f"{path}: this folder holds a run with another config; use a new --out or "
                "the same settings to resume it"
            )
        self.model.load_state_dict(ckpt["state_dict"])
        train_state = ckpt["train_state"]
        self.optimizer.load_state_dict(train_state["optimizer"])
        self.schedule.load_state_dict(train_state["schedule"])
        _set_rng_state(train_state["rng"])
        self.state = _State(**train_state["state"])
        return self.state.epoch

    # -- loops
    def train_epoch(self, epoch: int) -> float:
        """One pass over the training rows; returns the mean loss (this rank's batches)."""
        self.ddp.train()
        self.sampler.set_epoch(epoch)
        seen_vectors = self.vectors[self.seen].to(self.info.device)  # [L_seen, E]
        total, batches = 0.0, 0
        bar = progress(self.loader, desc=f"epoch {epoch}", unit="batch", disable=self.quiet)
        for feats, targets in bar:
            feats = feats.to(self.info.device)
            targets = targets[:, self.seen].to(self.info.device)  # [b, L_seen]
            scores = self.ddp(feats, seen_vectors)  # [b, L_seen]
            loss = self.loss_fn(scores, targets)
            extra = model_extra_loss(self.model, targets)
            if extra is not None:
                loss = loss + extra
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            self.schedule.step()
            total, batches = total + float(loss.detach()), batches + 1
            bar.set_postfix(loss=f"{total / batches:.4f}")
        return total / max(1, batches)

    def fit(self, resume: bool = True) -> FitResult:
        """Train for the configured epochs, evaluating and checkpointing as configured."""
        started = time.perf_counter()
        first = self.try_resume() if resume else 0  # refuses a folder of another config first
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.out_dir / "config.yaml")
        writer = _TensorBoard(self.out_dir) if self.info.is_main else None
        for epoch in range(first + 1, self.config.epochs + 1):
            t0 = time.perf_counter()
            loss = self.train_epoch(epoch)
            row: dict[str, float] = {
                "epoch": epoch,
                "loss": loss,
                "lr": float(self.schedule.get_last_lr()[0]),
            }
            if epoch % self.config.eval_every == 0 or epoch == self.config.epochs:
                results = self.evaluate_by_convention()
                row.update(_flatten(results))
                value = _metric(results, self.config.select_metric)
                if value > self.state.best_value:  # every rank keeps the same state
                    self.state.best_value, self.state.best_epoch = value, epoch
                    self.state.epoch = epoch
                    if self.info.is_main:
                        save_checkpoint(self.out_dir / "best.pt", self._payload(results))
            row["seconds"] = time.perf_counter() - t0
            self.state.epoch = epoch
            self.state.history.append(row)
            if self.info.is_main:
                self._save_last()
                _write_history(self.out_dir / "history.csv", self.state.history)
                if writer is not None:
                    writer.log(row)
        if writer is not None:
            writer.close()
        return self._finish(first, time.perf_counter() - started)

    def evaluate(self) -> EvalResult:
        """Metrics of the current weights on the store's test rows (the primary convention)."""
        return primary_result(self.evaluate_by_convention())

    def evaluate_by_convention(self) -> dict[str, EvalResult]:
        """Metrics of the current weights on the store's test rows, per convention."""
        return evaluate_on_store_by_convention(
            self.model, self.store, self.vectors, ks=self.ks, info=self.info
        )

    def _finish(self, first: int, seconds: float) -> FitResult:
        if self.info.world > 1:
            dist.barrier()  # rank 0 has written best.pt
        self.model.load_state_dict(load_checkpoint(self.out_dir / "best.pt")["state_dict"])
        results = self.evaluate_by_convention()
        best = primary_result(results)
        if self.info.is_main:
            for result in results.values():  # per_label[_<convention>]_{zsl,gzsl}.csv
                result.write_per_label_csv(self.out_dir)
            summary: dict[str, Any] = {"best_epoch": self.state.best_epoch, **best.to_dict()}
            if len(results) > 1:
                summary["selected_by"] = best.variant
                summary["by_convention"] = _by_convention(results)
            (self.out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
        return FitResult(
            out_dir=self.out_dir,
            best_epoch=self.state.best_epoch,
            best=best,
            history=self.state.history,
            seconds=seconds,
            resumed_from=first,
            results=results,
        )


def fit(
    config: TrainConfig,
    store_path: str | Path,
    out_dir: str | Path,
    *,
    resume: bool = True,
    quiet: bool = False,
) -> FitResult:
    """Train ``config`` on ``store_path`` into ``out_dir``; see :class:`Trainer`."""
    return Trainer(config, store_path, out_dir, quiet=quiet).fit(resume=resume)


# ----------------------------------------------------------------------------- logging


def _flatten(results: dict[str, EvalResult]) -> dict[str, float]:
    """History columns: ``zsl.mAP`` for one convention, ``biam.zsl.mAP`` etc. for several."""
    row = {}
    for convention, result in results.items():
        prefix = "" if len(results) == 1 else f"{convention}."
        for split, metrics in result.to_dict().items():
            row.update({f"{prefix}{split}.{k}": float(v) for k, v in metrics.items()})
    return row


def _by_convention(results: dict[str, EvalResult]) -> dict[str, dict[str, dict[str, float]]]:
    return {convention: result.to_dict() for convention, result in results.items()}


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


class _TensorBoard:
    """Per-epoch scalars to TensorBoard when the package is installed (it is a dependency)."""

    def __init__(self, out_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # pragma: no cover - tensorboard is a declared dependency
            self.writer = None
        else:
            self.writer = SummaryWriter(str(out_dir / "tensorboard"))

    def log(self, row: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and not (isinstance(value, float) and math.isnan(value)):
                self.writer.add_scalar(key, value, int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights."""
    args = dict(ckpt["model_args"])
    if args.get("backbone_weights"):  # the state dict holds the trunk: no need for the file
        args["backbone_weights"] = None
    model = create_model(ckpt["model"], **args)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def evaluate_checkpoint(
    checkpoint: str | Path,
    store_path: str | Path,
    *,
    embedder: str | None = None,
    split: str = "test",
) -> tuple[str, list[int], EvalResult]:
    """Evaluate a checkpoint on a store; returns (model name, K values, result).

    On an Open Images store the result is BiAM's convention; see
    :func:`evaluate_checkpoint_by_convention` for both.
    """
    name, ks, results = evaluate_checkpoint_by_convention(
        checkpoint, store_path, embedder=embedder, split=split
    )
    return name, ks, primary_result(results)


def evaluate_checkpoint_by_convention(
    checkpoint: str | Path,
    store_path: str | Path,
    *,
    embedder: str | None = None,
    split: str = "test",
) -> tuple[str, list[int], dict[str, EvalResult]]:
    """Evaluate a checkpoint on a store; returns (model name, K values, results by convention).

    The store's features must come from the backbone the checkpoint was trained on, and the
    embedder (the checkpoint's unless overridden) must give vectors of the size the model takes.
    The K values are the checkpoint config's, through :func:`resolve_ks`.
    """
    ckpt = load_checkpoint(checkpoint)
    store = FeatureStore(store_path)
    theirs, ours = store.header.backbone, ckpt["backbone"]
    if (theirs.get("name"), theirs.get("sha256")) != (ours.get("name"), ours.get("sha256")):
        raise DataError(
            f"{store.path}: features come from backbone {theirs.get('name')!r} "
            f"(weights {str(theirs.get('sha256'))[:12]}), but {checkpoint} was trained on "
            f"{ours.get('name')!r} (weights {str(ours.get('sha256'))[:12]})"
        )
    vectors = label_vectors(embedder or ckpt["embedder"], store.label_set)
    expected = int(ckpt["model_args"]["embed_dim"])
    if vectors.shape[1] != expected:
        raise ConfigError(
            f"{checkpoint}: the model expects {expected}-d label vectors, embedder "
            f"{embedder or ckpt['embedder']!r} gives {vectors.shape[1]}-d"
        )
    model = model_from_checkpoint(ckpt)
    ks = resolve_ks(ckpt["config"].get("ks"), store_evaluation(store))
    results = evaluate_on_store_by_convention(model, store, vectors, ks=ks, split=split)
    return ckpt["model"], list(ks), results
