"""Train a model on a feature store: the Trainer, its checkpoints, resume and torchrun.

The trainer knows nothing about a model beyond ``model(features [B, C, H, W], label_vectors
[L, E]) -> scores [B, L]`` (and ``extra_loss(targets)``). Training scores the store's *seen*
labels only; each evaluation (:mod:`mlzsl.inference.evaluation`) scores every label of the store and
reports ZSL and GZSL under every convention of the store's benchmark
(:class:`mlzsl.protocol.Results`).

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the process joins the group
(:mod:`mlzsl.distributed`), the model is wrapped in DistributedDataParallel, each rank reads its
share of every global batch through a DistributedSampler (``batch_size`` is the global batch,
split evenly), and evaluation gathers every rank's scores. Only rank 0 writes files.

Checkpoint selection: ``select_metric`` names a metric of the primary convention (``zsl.mAP``;
BiAM's on Open Images) or of a named one (``lesa.zsl.mAP``). History columns on an Open Images
store are prefixed with the convention (``biam.zsl.mAP``). K values: a config that leaves ``ks``
unset gets the store's benchmark's (:func:`mlzsl.protocol.resolve_ks`).

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from mlzsl.config import TrainConfig, save_config
from mlzsl.distributed import barrier, setup_distributed
from mlzsl.errors import ConfigError, DataError
from mlzsl.files import atomic_write
from mlzsl.inference.checkpoint import (
    Checkpoint,
    Fusion,
    Preprocess,
    StoreRecord,
    Vocabulary,
    load_checkpoint,
    save_checkpoint,
)
from mlzsl.inference.evaluation import evaluate_model, label_vectors, predict_scores
from mlzsl.models import (
    MLZSLModel,
    create_model,
    list_models,
    model_arguments,
    model_inputs,
    model_trainable,
)
from mlzsl.models._fusion import ScoreFusion
from mlzsl.progress import progress
from mlzsl.protocol import EvalResult, Results, resolve_ks
from mlzsl.store.feature_store import FeatureStore
from mlzsl.store.lock import StoreLock
from mlzsl.training.losses import distillation_loss, get_loss
from mlzsl.training.transfer import fit_adapter, load_teacher, score_stats


class StoreRows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Rows of a store, read a whole batch per call: (features float16 [b, C, H, W], labels int8
    [b, L]).

    Indexed with a list of positions (what a BatchSampler yields), so each batch is one HDF5 read
    instead of one per image. Features stay float16 as stored: half the bytes through the loader
    workers and to the device, which makes them float32; labels are the dense rows of the batch
    only (the store keeps them sparse).
    """

    def __init__(self, store: FeatureStore, rows: np.ndarray) -> None:
        self.store, self.rows = store, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.rows[np.asarray(positions, dtype=np.int64)]
        return torch.from_numpy(self.store.features(rows, dtype=np.float16)), torch.from_numpy(
            self.store.labels(rows)
        )


class _Waited:
    """An iterable that adds up the seconds spent in its ``next()`` (waiting for a batch)."""

    def __init__(self, iterable: DataLoader) -> None:
        self.iterable, self.waited = iterable, 0.0

    def __len__(self) -> int:
        return len(self.iterable)

    def __iter__(self) -> Iterator[Any]:
        batches = iter(self.iterable)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                self.waited += time.perf_counter() - t0
            yield batch


# ----------------------------------------------------------------------------- building blocks


def build_model(
    config: TrainConfig, feature_shape: tuple[int, int, int], embed_dim: int
) -> MLZSLModel:
    """The model of ``config`` for feature maps (C, H, W) and label vectors of ``embed_dim``.

    Sizes the store decides (C, E and, for models that need it, P = H·W) are passed here;
    everything else comes from ``config.model_args``.
    """
    if not model_trainable(config.model):
        raise ConfigError(
            f"model {config.model!r} is a ready model, not trained: use it with `mlzsl tag` or "
            "`mlzsl eval --data` (--checkpoint photo); trainable: "
            + ", ".join(list_models(trainable=True))
        )
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


def autocast(config: TrainConfig, device: torch.device) -> torch.autocast:
    """The training forward's autocast: bfloat16 when ``config.amp == "bf16"``, else a no-op.

    bf16 has float32's exponent range, so gradients need no loss scaling (unlike float16).
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp == "bf16")


def peak_lr(config: TrainConfig, embed_dim: int | None = None) -> float:
    """The run's peak learning rate: ``config.lr``, times ``lr_reference_dim / E`` when the label
    vectors are larger than the size the lr was tuned at (never raised for smaller ones)."""
    reference = config.lr_reference_dim
    if reference is None or embed_dim is None or embed_dim <= reference:
        return config.lr
    return config.lr * reference / embed_dim


def make_optimizer(
    config: TrainConfig, params: Iterator[nn.Parameter], embed_dim: int | None = None
) -> torch.optim.Optimizer:
    """Adam, AdamW or RMSProp with the run's learning rate (:func:`peak_lr` for label vectors
    of ``embed_dim``) and the config's weight decay."""
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in config.optimizer_args.items()}
    try:
        return kinds[config.optimizer](
            list(params),
            lr=peak_lr(config, embed_dim),
            weight_decay=config.weight_decay,
            **args,
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


# ----------------------------------------------------------------------------- training


@dataclass
class FitResult:
    """The outcome of :func:`fit`."""

    out_dir: Path
    best_epoch: int
    results: Results
    """The best checkpoint under every convention of the store."""
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0
    train_seconds: float = 0.0
    """Wall time of the training loops run by this call (evaluation and checkpoints excluded)."""
    data_seconds: float = 0.0
    """The part of :attr:`train_seconds` spent waiting for the loader's next batch."""

    @property
    def data_wait(self) -> float:
        """Share of the training loops' time spent waiting on data (NaN when none ran)."""
        return self.data_seconds / self.train_seconds if self.train_seconds else math.nan

    @property
    def best(self) -> EvalResult:
        """The best checkpoint's result under the primary convention."""
        return self.results.primary


@dataclass
class _State:
    epoch: int = 0  # finished epochs
    best_value: float = -math.inf
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain types, so ``last.pt`` loads with ``weights_only=True``."""
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "py": [int(version), [int(v) for v in internal], gauss_next],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    if isinstance(np_state, dict):
        np_state = (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    np.random.set_state(np_state)  # a tuple: a last.pt written before the dict form
    version, internal, gauss_next = state["py"]
    random.setstate((version, tuple(internal), gauss_next))


def _store_job(store: FeatureStore) -> str | None:
    """The extraction fingerprint of a store's content (``None`` for an imported store)."""
    job = store.header.meta.get("job")
    return str(job) if job else None


def _check_run_folder(out_dir: Path) -> None:
    """Refuse a run folder that names a file or cannot be created, before any work is done."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: is a file, not a run folder; choose a folder for the run")
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{out_dir}: cannot be a run folder: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{out_dir}: cannot write the run folder: {existing} is not writable")


class Trainer:
    """One training run in one folder: builds everything from a config and a store."""

    def __init__(
        self, config: TrainConfig, store_path: str | Path, out_dir: str | Path, *, quiet: bool
    ) -> None:
        self.config, self.out_dir = config, Path(out_dir)
        _check_run_folder(self.out_dir)  # before any data is read
        self.info = setup_distributed()
        self.quiet = quiet or not self.info.is_main
        if config.batch_size % self.info.world:
            raise ConfigError(
                f"batch_size {config.batch_size} must divide evenly over {self.info.world} ranks"
            )
        self.store = FeatureStore(store_path)
        self.ks = resolve_ks(config.ks, self.store.evaluation)
        header = self.store.header
        self.vectors = label_vectors(
            config.embedder, header.label_set, prompt=config.label_prompt
        )  # [L, E]
        self.seen = torch.from_numpy(header.label_set.seen_idx)
        self.train_rows = self.store.indices("train")
        if len(self.train_rows) == 0 or len(self.seen) == 0:
            raise DataError(f"{self.store.path}: needs train images and seen labels to train")
        self.model = build_model(config, header.feature_shape, self.vectors.shape[1])
        self.model.to(self.info.device)
        self.loss_fn = get_loss(config.loss)
        self.teacher = load_teacher(config, self.store)
        if self.teacher is not None:
            self.teacher.model.to(self.info.device)
        self._teacher_stats: tuple[float, float] | None = None  # fixed: computed once
        self._student_stats: tuple[float, float] | None = None  # of the current weights
        self._adapter: dict[str, torch.Tensor] | None = None  # fixed: fitted once
        self.ddp: nn.Module = self.model
        if self.info.world > 1:
            self.ddp = nn.parallel.DistributedDataParallel(self.model)
        self.optimizer = make_optimizer(config, self.model.parameters(), self.vectors.shape[1])
        self.loader = self._loader()
        self.schedule = make_schedule(self.optimizer, config, len(self.loader))
        self.state = _State()
        self._lock: StoreLock | None = None  # the run folder's, held by rank 0 while fitting
        self.loop_seconds = 0.0  # training loops of this process, evaluation excluded
        self.data_seconds = 0.0  # the part of them spent waiting for the next batch

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
    def _checkpoint(self, results: Results | None) -> Checkpoint:
        header, meta = self.store.header, self.store.header.meta
        backbone = header.backbone
        return Checkpoint(
            model=self.config.model,
            model_args=dict(self.model.config),  # sizes included: rebuilds the model
            embedder=self.config.embedder,
            vocabulary=Vocabulary(header.label_set.names, header.label_set.seen),
            backbone=backbone,
            preprocess=Preprocess(
                image_size=int(meta.get("image_size") or backbone["image_size"]),
                resize="squash",  # extraction squashes every image to S×S
                mean=tuple(meta.get("mean") or backbone["mean"]),
                std=tuple(meta.get("std") or backbone["std"]),
            ),
            state_dict=self.model.state_dict(),
            store=StoreRecord(
                file=self.store.path.name,
                dataset=header.dataset.name if header.dataset else None,
                train_images=len(self.train_rows),
                test_images=len(self.store.indices("test")),
                test_set=self.store.test_set_line(),
                job=_store_job(self.store),
            ),
            config=self.config.to_dict(),
            epoch=self.state.epoch,
            metrics=results.primary.to_dict() if results else None,
            metrics_by_convention=results.by_convention_dict() if results else None,
            label_prompt=self.config.label_prompt,
            fusion=self._fusion(),
        )

    def _save_last(self) -> None:
        ckpt = self._checkpoint(None)
        ckpt.train_state = {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": _rng_state(),
            "state": self.state.__dict__,
        }
        save_checkpoint(self.out_dir / "last.pt", ckpt)

    def try_resume(self) -> int:
        """Continue from ``last.pt`` when it belongs to this very config; return its epoch."""
        path = self.out_dir / "last.pt"
        if not path.is_file():
            return 0
        ckpt = load_checkpoint(path)
        # a key added since the run started (amp, ...) counts as its default, which the run had
        if {**TrainConfig().to_dict(), **(ckpt.config or {})} != self.config.to_dict():
            raise ConfigError(
                f"{path}: this folder holds a run with another config; use a new --out or "
                "the same settings to resume it"
            )
        if ckpt.train_state is None:
            raise DataError(f"{path}: holds no training state to resume from")
        ran_on, job = ckpt.store, _store_job(self.store)
        if ran_on is not None and (
            (ran_on.job, ran_on.train_images) != (job, len(self.train_rows))
            if ran_on.job and job
            else (ran_on.file, ran_on.train_images) != (self.store.path.name, len(self.train_rows))
        ):
            raise ConfigError(
                f"{path}: this folder holds a run on another store ({ran_on.file}, "
                f"{ran_on.train_images:,} training images), not {self.store.path}; use a new "
                "--out or the same store"
            )
        self.model.load_state_dict(ckpt.state_dict)
        train_state = ckpt.train_state
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
        started, loader = time.perf_counter(), _Waited(self.loader)
        bar = progress(loader, desc=f"epoch {epoch}", unit="batch", disable=self.quiet)
        for feats, targets in bar:
            feats = feats.to(self.info.device).float()  # [b, C, H, W], float16 in the store
            targets = targets[:, self.seen].to(self.info.device)  # [b, L_seen]
            with autocast(self.config, self.info.device):
                scores = self.ddp(feats, seen_vectors)  # [b, L_seen]
            loss = self._loss(epoch, feats, seen_vectors, scores, targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            self.schedule.step()
            total, batches = total + float(loss.detach()), batches + 1
            if self._lock is not None:
                self._lock.refresh()  # a long run shows it is alive
            bar.set_postfix(loss=f"{total / batches:.4f}")
        self.loop_seconds += time.perf_counter() - started
        self.data_seconds += loader.waited
        self._student_stats = None  # the weights moved
        return total / max(1, batches)

    def fit(self, resume: bool = True) -> FitResult:
        """Train for the configured epochs, evaluating and checkpointing as configured.

        Rank 0 holds ``.RUN.train.lock`` beside the run folder meanwhile: a second training on
        the same ``--out`` is refused in one line instead of renaming files under the first.
        """
        if not self.info.is_main:
            return self._fit(resume)
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.out_dir.parent / f".{self.out_dir.name}.train.lock"
        with StoreLock(lock_path, wait=False) as self._lock:
            if not self._lock.held:
                raise ConfigError(
                    f"{self.out_dir}: another training is writing this run folder (lock "
                    f"{lock_path}); wait for it to end or choose another --out"
                )
            return self._fit(resume)

    def _fit(self, resume: bool) -> FitResult:
        started = time.perf_counter()
        first = self.try_resume() if resume else 0  # refuses a folder of another config first
        writer: _TensorBoard | None = None  # the folder gets its files once an epoch is done,
        for epoch in range(first + 1, self.config.epochs + 1):  # so a failed start leaves none
            t0 = time.perf_counter()
            loss = self.train_epoch(epoch)
            row: dict[str, float] = {
                "epoch": epoch,
                "loss": loss,
                "lr": float(self.schedule.get_last_lr()[0]),
            }
            if epoch % self.config.eval_every == 0 or epoch == self.config.epochs:
                results = self.evaluate()
                row.update(results.columns())
                value = results.metric(self.config.select_metric)
                if value > self.state.best_value:  # every rank keeps the same state
                    self.state.best_value, self.state.best_epoch = value, epoch
                    self.state.epoch = epoch
                    if self.info.is_main:
                        save_checkpoint(self.out_dir / "best.pt", self._checkpoint(results))
            row["seconds"] = time.perf_counter() - t0
            self.state.epoch = epoch
            self.state.history.append(row)
            if self.info.is_main:
                if writer is None:
                    self.out_dir.mkdir(parents=True, exist_ok=True)
                    save_config(self.config, self.out_dir / "config.yaml")
                    writer = _TensorBoard(self.out_dir)
                self._save_last()
                _write_history(self.out_dir / "history.csv", self.state.history)
                writer.log(row)
        if writer is not None:
            writer.close()
        return self._finish(first, time.perf_counter() - started)

    def _loss(
        self,
        epoch: int,
        feats: torch.Tensor,
        seen_vectors: torch.Tensor,
        scores: torch.Tensor,
        targets: torch.Tensor,
    ) -> torch.Tensor:
        """The batch's loss: the config's loss and the model's own, plus distillation from the
        teacher (alone during its ``teacher_init_epochs``); float32 under amp too."""
        config, teacher = self.config, self.teacher
        distill = None
        if teacher is not None and (config.distill_weight or epoch <= config.teacher_init_epochs):
            with torch.no_grad():
                taught = teacher.model(feats, seen_vectors)  # [b, L_seen]: seen labels only
            distill = distillation_loss(scores.float(), taught)
        if distill is not None and epoch <= config.teacher_init_epochs:
            return distill
        loss = self.loss_fn(scores.float(), targets)
        extra = self.model.extra_loss(targets)
        if extra is not None:
            loss = loss + extra
        if distill is not None:
            loss = loss + config.distill_weight * distill
        return loss

    def scoring_model(self) -> nn.Module:
        """What the checkpoint scores with: the head, or the head fused with its teacher."""
        fusion = self._fusion()
        if fusion is None or self.teacher is None:
            return self.model
        return ScoreFusion(
            self.model,
            self.teacher.model,
            fusion.weight,
            fusion.student_stats,
            fusion.teacher_stats,
            fusion.build_adapter(),
            fusion.adapter_weight,
        ).to(self.info.device)

    def _train_stats(self, model: nn.Module) -> tuple[float, float]:
        """Mean and spread of ``model``'s scores over the training rows and seen labels."""
        seen_vectors = self.vectors[self.seen]
        return score_stats(
            predict_scores(model, self.store, self.train_rows, seen_vectors, info=self.info)
        )

    def _fusion(self) -> Fusion | None:
        """The fusion record of the current weights (``None`` without fusion)."""
        if self.teacher is None or not self.config.fusion_weight:
            return None
        if self._teacher_stats is None:
            self._teacher_stats = self._train_stats(self.teacher.model)
        if self._student_stats is None:
            self._student_stats = self._train_stats(self.model)
        if self._adapter is None and self.config.adapter_weight:
            self._adapter = fit_adapter(
                self.store,
                self.train_rows,
                self.seen.numpy(),
                self.vectors[self.seen],
                self.config.adapter_c,
                seed=self.config.seed,
            )
        return self.teacher.fusion(
            self.config.fusion_weight,
            self._student_stats,
            self._teacher_stats,
            adapter=self._adapter,
            adapter_weight=self.config.adapter_weight,
        )

    def evaluate(self) -> Results:
        """Metrics of the current weights on the store's test rows, per convention."""
        return evaluate_model(
            self.scoring_model(), self.store, self.vectors, ks=self.ks, info=self.info
        )

    def _finish(self, first: int, seconds: float) -> FitResult:
        barrier(self.info)  # rank 0 has written best.pt
        self.model.load_state_dict(load_checkpoint(self.out_dir / "best.pt").state_dict)
        self._student_stats = None  # the best epoch's weights: their own statistics
        results = self.evaluate()
        best = results.primary
        if self.info.is_main:
            results.write_per_label_csv(self.out_dir)  # per_label[_<convention>]_{zsl,gzsl}.csv
            results.write_scores(self.out_dir)  # scores.npz, for mlzsl report
            summary: dict[str, Any] = {"best_epoch": self.state.best_epoch, **best.to_dict()}
            if len(results.by_convention) > 1:
                summary["selected_by"] = results.primary_convention
                summary["by_convention"] = results.by_convention_dict()
            with atomic_write(self.out_dir / "metrics.json", what="metrics") as f:
                f.write(json.dumps(summary, indent=2))
        return FitResult(
            out_dir=self.out_dir,
            best_epoch=self.state.best_epoch,
            history=self.state.history,
            seconds=seconds,
            resumed_from=first,
            train_seconds=self.loop_seconds,
            data_seconds=self.data_seconds,
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


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with atomic_write(path, newline="", what="training history") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


class _TensorBoard:
    """Per-epoch scalars to TensorBoard (a dependency), in ``out/tensorboard``."""

    def __init__(self, out_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # slow to import: only when training

        self.writer = SummaryWriter(str(out_dir / "tensorboard"))

    def log(self, row: dict[str, float]) -> None:
        for key, value in row.items():
            if key != "epoch" and not (isinstance(value, float) and math.isnan(value)):
                self.writer.add_scalar(key, value, int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
