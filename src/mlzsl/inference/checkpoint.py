"""The one checkpoint record: :class:`Checkpoint`, saved as a self-describing ``torch.save`` dict.

Training (:mod:`mlzsl.training.engine`) and the ready models (:mod:`mlzsl.inference.pretrained`)
build a :class:`Checkpoint`; the tagger, evaluation, the server, export, the model card and the
report read one through :func:`load_checkpoint`, the one reader, which checks the file and upgrades
what older files lack (:data:`_SAVED_BEFORE`, a missing ``resize``, preprocessing read from the
backbone's identity, a ready model's recipe kept under ``config``). Nothing else reads the dict.

On disk (format ``mlzsl-checkpoint-1``, tensors and plain types only, so it loads with
``weights_only=True``): ``format``, ``mlzsl_version``, ``model``, ``model_args``, ``embedder``,
``embedder_identity``, ``vocabulary`` ({names, seen}), ``backbone`` (identity dict), ``store``
({file, dataset, images {train, test}, test_set}), ``image_size``, ``resize``, ``mean``, ``std``,
``label_prompt``, ``config``, ``pretrained`` (a ready model's recipe), ``epoch``, ``metrics``,
``metrics_by_convention``, ``fusion`` (a ready teacher fused in, :class:`Fusion`), ``state_dict``
and, in a resumable ``last.pt``, ``train_state``.

A write goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target, so a killed write never leaves a checkpoint that looks whole.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlzsl import __version__
from mlzsl.errors import DataError
from mlzsl.files import atomic_write, check_input
from mlzsl.models import MLZSLModel, create_model
from mlzsl.models._fusion import LabelAdapter, ScoreFusion

__all__ = [
    "FORMAT",
    "Checkpoint",
    "Fusion",
    "Preprocess",
    "StoreRecord",
    "Vocabulary",
    "load_checkpoint",
    "save_checkpoint",
]

FORMAT = "mlzsl-checkpoint-1"
REQUIRED = ("model", "model_args", "embedder", "vocabulary", "backbone", "state_dict")


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes the backbone's input (what open_clip calls ``PreprocessCfg``).

    Attributes:
        image_size: the side S in pixels (the shorter side with ``resize="shorter"``).
        resize: :data:`mlzsl.images.RESIZE_MODES` (``"squash"``: to S×S).
        mean: per-channel mean subtracted after scaling to [0, 1].
        std: per-channel divisor.
    """

    image_size: int
    resize: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class Vocabulary:
    """The label names a model was trained or built on and which were seen in training.

    Not a :class:`mlzsl.labels.LabelSet`: a ready model's ImageNet class names repeat (two
    "crane"s, two "maillot"s), which a label set refuses.
    """

    names: tuple[str, ...]
    seen: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def n_seen(self) -> int:
        return sum(self.seen)


@dataclass(frozen=True)
class StoreRecord:
    """The feature store a model was trained on, as its card names it."""

    file: str
    dataset: str | None
    train_images: int
    test_images: int
    test_set: str | None
    """The line naming the store's test-set variant (:meth:`FeatureStore.test_set_line`)."""
    job: str | None = None
    """The extraction's fingerprint of the store's content (``None``: an imported store)."""


@dataclass(frozen=True)
class Fusion:
    """A trained head fused with a ready teacher (:class:`mlzsl.models._fusion.ScoreFusion`).

    Attributes:
        weight: w, the teacher's share of the standardised scores.
        student_stats: (mean, spread) of the head's scores over training images × seen labels.
        teacher_stats: the same for the teacher.
        teacher: the ready model's name (``photo``).
        teacher_model: its registered model (``imagenet_conse``).
        teacher_args: its builder arguments.
        teacher_state: its weights (the checkpoint tags on its own, with no other file).
        adapter_weight: β of the seen-label adapter (0: none).
        adapter: the adapter's tensors (:class:`mlzsl.models._fusion.LabelAdapter`:
            ``vectors``, ``weight``, ``bias``, ``feature_stats``, ``score_stats``), or ``None``.
    """

    weight: float
    student_stats: tuple[float, float]
    teacher_stats: tuple[float, float]
    teacher: str
    teacher_model: str
    teacher_args: dict[str, Any]
    teacher_state: dict[str, torch.Tensor] = field(repr=False)
    adapter_weight: float = 0.0
    adapter: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def build_adapter(self) -> LabelAdapter | None:
        """The seen-label adapter this record holds (``None`` without one)."""
        return None if self.adapter is None else LabelAdapter.from_tensors(self.adapter)

    def to_payload(self) -> dict[str, Any]:
        return {
            "adapter_weight": self.adapter_weight,
            "adapter": self.adapter,
            "weight": self.weight,
            "student_stats": list(self.student_stats),
            "teacher_stats": list(self.teacher_stats),
            "teacher": self.teacher,
            "teacher_model": self.teacher_model,
            "teacher_args": dict(self.teacher_args),
            "teacher_state": self.teacher_state,
        }


@dataclass
class Checkpoint:
    """Everything a trained or ready model needs to tag, evaluate, resume and describe itself.

    Attributes:
        model: the registered model name (:func:`mlzsl.models.create_model`).
        model_args: the builder's keyword arguments, sizes included: they rebuild the model.
        embedder: the label embedder's spec (``glove50``, ``minilm``, ...).
        vocabulary: the label names the model was trained or built on, seen flags included.
        backbone: the identity of the backbone whose maps the model reads
            (:meth:`mlzsl.backbones.Backbone.identity`).
        preprocess: how images were decoded for that backbone.
        state_dict: the weights.
        embedder_identity: the embedder's exact identity (ready models record it).
        label_prompt: a template with one ``{}`` every label name is put in before embedding.
        store: the training store (``None`` for ready models).
        config: the resolved training config (:meth:`mlzsl.config.TrainConfig.to_dict`);
            ``None`` for ready models.
        pretrained: a ready model's recipe (:class:`mlzsl.inference.pretrained.PhotoRecipe` fields,
        its
            name and the classifier's origin); ``None`` for trained ones.
        epoch: the epoch the weights were saved after (0: nothing trained).
        metrics: the test metrics of these weights, primary convention (percent).
        metrics_by_convention: the same under every convention of the store.
        fusion: the ready teacher the head's scores are fused with (``None``: the head alone).
        train_state: optimizer, schedule, RNG states and history (``last.pt`` only).
        mlzsl_version: the version that wrote the file.
    """

    model: str
    model_args: dict[str, Any]
    embedder: str
    vocabulary: Vocabulary
    backbone: dict[str, Any]
    preprocess: Preprocess
    state_dict: dict[str, torch.Tensor]
    embedder_identity: str | None = None
    label_prompt: str | None = None
    store: StoreRecord | None = None
    config: dict[str, Any] | None = None
    pretrained: dict[str, Any] | None = None
    epoch: int = 0
    metrics: dict[str, Any] | None = None
    metrics_by_convention: dict[str, Any] | None = None
    fusion: Fusion | None = None
    train_state: dict[str, Any] | None = field(default=None, repr=False)
    mlzsl_version: str = __version__

    @property
    def embed_dim(self) -> int:
        """The size of the label vectors the model takes."""
        return int(self.model_args["embed_dim"])

    @property
    def ks(self) -> list[int] | None:
        """The K values of P/R/F1@K the training config asked for (``None``: the benchmark's)."""
        return (self.config or {}).get("ks")

    def build_model(self) -> nn.Module:
        """The model this checkpoint describes, with its weights, in eval mode: the head, or the
        head fused with its teacher (:class:`mlzsl.models._fusion.ScoreFusion`)."""
        head = _build(self.model, self.model_args, self.state_dict)
        if self.fusion is None:
            return head
        fusion = self.fusion
        teacher = _build(fusion.teacher_model, fusion.teacher_args, fusion.teacher_state)
        return ScoreFusion(
            head,
            teacher,
            fusion.weight,
            fusion.student_stats,
            fusion.teacher_stats,
            fusion.build_adapter(),
            fusion.adapter_weight,
        ).eval()

    def to_payload(self) -> dict[str, Any]:
        """The dict :func:`save_checkpoint` writes (see the module docstring for its keys)."""
        pre, store = self.preprocess, self.store
        return {
            "format": FORMAT,
            "mlzsl_version": self.mlzsl_version,
            "model": self.model,
            "model_args": dict(self.model_args),
            "embedder": self.embedder,
            "embedder_identity": self.embedder_identity,
            "vocabulary": {
                "names": list(self.vocabulary.names),
                "seen": list(self.vocabulary.seen),
            },
            "backbone": self.backbone,
            "store": None
            if store is None
            else {
                "file": store.file,
                "dataset": store.dataset,
                "images": {"train": store.train_images, "test": store.test_images},
                "test_set": store.test_set,
                "job": store.job,
            },
            "image_size": pre.image_size,
            "resize": pre.resize,
            "mean": list(pre.mean),
            "std": list(pre.std),
            "label_prompt": self.label_prompt,
            "config": self.config,
            "pretrained": self.pretrained,
            "epoch": self.epoch,
            "metrics": self.metrics,
            "metrics_by_convention": self.metrics_by_convention,
            "fusion": None if self.fusion is None else self.fusion.to_payload(),
            "state_dict": self.state_dict,
            **({"train_state": self.train_state} if self.train_state is not None else {}),
        }


def _build(
    name: str, model_args: dict[str, Any], state_dict: dict[str, torch.Tensor]
) -> MLZSLModel:
    """The registered model ``name`` built from ``model_args`` with ``state_dict`` loaded."""
    args = dict(model_args)
    if args.get("backbone_weights"):  # the state dict holds the trunk: no need for the file
        args["backbone_weights"] = None
    try:
        model = create_model(name, **args)
    except TypeError as e:  # model_args the builder does not take
        raise DataError(f"checkpoint of {name!r}: bad model_args ({e})") from None
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:  # missing, unexpected or mis-shaped weights
        first = str(e).strip().splitlines()[-1].strip()[:200]
        raise DataError(
            f"checkpoint of {name!r}: its weights do not fit the model ({first})"
        ) from None
    return model.eval()


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Atomically write ``ckpt`` to ``path`` (its folder is created).

    Raises:
        DataError: ``path`` cannot be written (a full disk, a read-only folder); nothing is left.
    """
    # a temporary file in path's folder, fsynced and renamed; removed on any failure, and a full
    # disk (torch says "unexpected pos") or a read-only folder is one DataError naming path
    path = Path(path)
    with atomic_write(path, "wb", what="checkpoint") as f:
        torch.save(ckpt.to_payload(), f)
    return path


def _numpy_globals() -> list[Any]:
    """numpy's array and scalar rebuilders, which run no code: a ``last.pt`` written before the
    RNG state became a tensor (it held numpy's state tuple) still loads and resumes."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    dtypes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdFDUS"}
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtypes]


def _read_payload(path: Path) -> dict[str, Any]:
    check_input(path, "checkpoint")  # a FIFO or a folder is one line, before torch opens it
    try:  # weights_only: tensors and plain types only, so loading never runs code
        with torch.serialization.safe_globals(_numpy_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a refused file is our one line, not torch's warning
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):  # a global torch's safe unpickler does not admit
            raise DataError(
                f"{path}: refused: it holds objects that would run code when loaded; "
                "load only checkpoints you trust or made (mlzsl writes tensors and plain types)"
            ) from None
        raise DataError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    except Exception as e:  # torch raises many types for a damaged or foreign file
        raise DataError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{path}: not an mlzsl checkpoint (format {FORMAT} expected)")
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise DataError(f"{path}: checkpoint lacks {', '.join(missing)}")
    kinds = {"model": str, "model_args": dict, "embedder": str, "vocabulary": dict}
    kinds.update(backbone=dict, state_dict=dict)
    for key, kind in kinds.items():
        if not isinstance(payload[key], kind):
            raise DataError(
                f"{path}: checkpoint field {key} must be a {kind.__name__}, "
                f"got {type(payload[key]).__name__}"
            )
    return payload


# Arguments added after checkpoints were already being written, with the value those checkpoints
# were built with (a checkpoint without the key rebuilds the model it was saved from, not the new
# default): LESA's BatchNorm and initialisers became the release's (docs/models.md, lesa).
_OLD_LESA_TRUNK = {"init": "he", "bn_eps": 1e-5, "bn_momentum": 0.1}
_SAVED_BEFORE: dict[str, dict[str, Any]] = {
    "lesa": _OLD_LESA_TRUNK,
    "attention_per_cluster": _OLD_LESA_TRUNK,
}


def _optional_dict(payload: dict[str, Any], key: str, path: Path) -> dict[str, Any] | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, dict):
        raise DataError(
            f"{path}: checkpoint field {key} must be a dict, got {type(value).__name__}"
        )
    return value


def _preprocess(payload: dict[str, Any], path: Path) -> Preprocess:
    """Preprocessing from the file; older files left out what the backbone identity holds."""
    backbone = payload["backbone"]
    found = {key: payload.get(key) or backbone.get(key) for key in ("image_size", "mean", "std")}
    missing = [key for key, value in found.items() if value is None]
    if missing:
        raise DataError(f"{path}: checkpoint names no {', '.join(missing)} for its images")
    try:
        return Preprocess(
            image_size=int(found["image_size"]),
            resize=str(payload.get("resize") or "squash"),  # before aspect-keeping models
            mean=tuple(float(v) for v in found["mean"]),
            std=tuple(float(v) for v in found["std"]),
        )
    except (TypeError, ValueError):
        raise DataError(f"{path}: checkpoint preprocessing is malformed") from None


def _store(payload: dict[str, Any], path: Path) -> StoreRecord | None:
    store = _optional_dict(payload, "store", path)
    if not store:
        return None
    images = store.get("images") or {}
    return StoreRecord(
        file=str(store.get("file")),
        dataset=store.get("dataset"),
        train_images=int(images.get("train") or 0),
        test_images=int(images.get("test") or 0),
        test_set=store.get("test_set"),
        job=store.get("job"),
    )


def _vocabulary(payload: dict[str, Any], path: Path) -> Vocabulary:
    vocabulary = payload["vocabulary"]
    names, seen = vocabulary.get("names"), vocabulary.get("seen")
    if not isinstance(names, list) or not isinstance(seen, list) or len(names) != len(seen):
        raise DataError(f"{path}: checkpoint vocabulary needs names and seen of one length")
    return Vocabulary(tuple(str(n) for n in names), tuple(bool(s) for s in seen))


def _fusion(payload: dict[str, Any], path: Path) -> Fusion | None:
    fusion = _optional_dict(payload, "fusion", path)
    if fusion is None:
        return None
    try:
        return Fusion(
            weight=float(fusion["weight"]),
            student_stats=(float(fusion["student_stats"][0]), float(fusion["student_stats"][1])),
            teacher_stats=(float(fusion["teacher_stats"][0]), float(fusion["teacher_stats"][1])),
            teacher=str(fusion["teacher"]),
            teacher_model=str(fusion["teacher_model"]),
            teacher_args=dict(fusion["teacher_args"]),
            teacher_state=dict(fusion["teacher_state"]),
            adapter_weight=float(fusion.get("adapter_weight", 0.0)),
            adapter=_adapter(fusion.get("adapter")),
        )
    except (KeyError, IndexError, TypeError, ValueError):
        raise DataError(f"{path}: checkpoint field fusion is malformed") from None


_ADAPTER_KEYS = ("vectors", "weight", "bias", "feature_stats", "score_stats")


def _adapter(tensors: Any) -> dict[str, torch.Tensor] | None:
    """The adapter's tensors of a fusion record, checked (``None``: no adapter)."""
    if tensors is None:
        return None
    out = {key: tensors[key] for key in _ADAPTER_KEYS}  # KeyError/TypeError: malformed
    if not all(isinstance(t, torch.Tensor) for t in out.values()):
        raise TypeError("adapter tensors")
    labels, channels = out["weight"].shape  # a ValueError unless [S, C]
    expected = {
        "vectors": (labels, out["vectors"].shape[-1]),
        "bias": (labels,),
        "feature_stats": (2, channels),
        "score_stats": (2,),
    }
    if any(tuple(out[key].shape) != shape for key, shape in expected.items()):
        raise ValueError("adapter shapes")
    return out


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read, check and upgrade a checkpoint file; errors name the file and what is wrong."""
    path = Path(path)
    payload = _read_payload(path)
    config = _optional_dict(payload, "config", path)
    pretrained = _optional_dict(payload, "pretrained", path)
    if pretrained is None and config and isinstance(config.get("pretrained"), dict):
        pretrained, config = config["pretrained"], None  # ready models kept it in config
    model = payload["model"]
    epoch = payload.get("epoch")
    return Checkpoint(
        model=model,
        model_args={**_SAVED_BEFORE.get(model, {}), **payload["model_args"]},
        embedder=payload["embedder"],
        vocabulary=_vocabulary(payload, path),
        backbone=payload["backbone"],
        preprocess=_preprocess(payload, path),
        state_dict=payload["state_dict"],
        embedder_identity=payload.get("embedder_identity"),
        label_prompt=payload.get("label_prompt") or None,
        store=_store(payload, path),
        config=config,
        pretrained=pretrained,
        epoch=epoch if isinstance(epoch, int) else 0,
        metrics=_optional_dict(payload, "metrics", path),
        metrics_by_convention=_optional_dict(payload, "metrics_by_convention", path),
        fusion=_fusion(payload, path),
        train_state=_optional_dict(payload, "train_state", path),
        mlzsl_version=str(payload.get("mlzsl_version")),
    )
