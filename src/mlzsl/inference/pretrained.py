"""Ready real-photo models that need no training: CONSE over the backbone's ImageNet classifier.

``mlzsl.inference.pretrained.real_photo_checkpoint(name)`` returns the path of a ready real-photo
checkpoint (default :data:`DEFAULT_PHOTO_MODEL`, ``"photo"``), building it on first use in
``<cache_home>/pretrained/`` (see :func:`mlzsl.runtime.cache_home`). It is an ordinary
self-describing checkpoint (:mod:`mlzsl.inference.checkpoint`): :class:`mlzsl.Tagger` and ``mlzsl
eval`` load it like a trained one.

A checkpoint is built from a :class:`PhotoRecipe`: the backbone with its packaged ImageNet
weights, whose 1000-way classifier (``_fc``, ignored by the backbone itself) becomes the
``imagenet_conse`` model's classifier (:mod:`mlzsl.models.imagenet_conse`); the 1,000 ImageNet
class names (package data ``resources/imagenet_classes.txt``) embedded with the recipe's
embedder; the recipe's T, temperature and spatial rule. Its file name carries a fingerprint of
everything that goes in (recipe, mlzsl version, weight file and class list digests, embedder
identity), so a changed ingredient builds a new file rather than reusing a stale one.

Label prompt. With the sentence encoder, labels are embedded inside a sentence,
``"a photo of a {}."`` (the usual CLIP template, Radford et al., ICML 2021), class names and the
user's labels alike: on the real-photo benchmark this gains 1 to 3 mAP points and 8 to 11 F1@3
points over the bare label (``benchmarks/README.md``). The checkpoint records it as
``label_prompt``; :class:`mlzsl.Tagger` (and so ``mlzsl tag``, ``mlzsl eval --data`` and the
server) puts every label name in it before embedding.

Where the default departs from the CONSE paper, and why (every figure: ``benchmarks/README.md``,
"Real photos"):

- T = 20 and temperature 2 (paper: T = 10, plain softmax). The paper classifies one image among
  labels, where only the order of a row matters; tagging ranks images per label (mAP), where a
  softer combination keeps the semantic neighbours of small or partly seen objects. Smoother
  settings gained 1 to 3 mAP and 2 to 4 F1@3 points at every size and on both backbones.
- The photo's aspect ratio is kept (shorter side to S, the longer at most 2·S; the tagger scores
  one photo per backbone call): a squashed photo deforms the objects the ImageNet classifier
  learned from aspect-preserving crops (+1 to +3 mAP at every size).
- Spatial scoring: the pooled cosine plus the best single position's (``imagenet_conse``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from mlzsl import __version__
from mlzsl.backbones import create_backbone
from mlzsl.backbones import efficientnet_lite as _lite
from mlzsl.backbones._weights import read_state_dict, sha256_file
from mlzsl.embeddings import create_embedder, embed_labels
from mlzsl.errors import ConfigError, DataError
from mlzsl.inference.checkpoint import Checkpoint, Preprocess, Vocabulary, save_checkpoint
from mlzsl.labels import label_texts
from mlzsl.models.imagenet_conse import ImagenetConse
from mlzsl.runtime import cache_home

__all__ = [
    "CLIP_PROMPT",
    "DEFAULT_PHOTO_MODEL",
    "PHOTO_MODELS",
    "PhotoRecipe",
    "build_photo_checkpoint",
    "imagenet_classes",
    "imagenet_classifier",
    "real_photo_checkpoint",
]

CLIP_PROMPT = "a photo of a {}."
MODEL = "imagenet_conse"
_CLASSES_FILE = "imagenet_classes.txt"  # source: resources/README.md (pytorch/hub class list)


@dataclass(frozen=True)
class PhotoRecipe:
    """Everything that makes a real-photo checkpoint.

    Attributes:
        backbone: a backbone whose weight file holds an ImageNet classifier ``_fc``.
        image_size: input side S in pixels (the shorter side, with ``resize="shorter"``).
        embedder: spec of the label-vector embedder (``minilm``, ``glove50``).
        prompt: template with one ``{}`` applied to class names and user labels, or ``None``.
        top_t: T of CONSE (paper: 10; ours: 20).
        temperature: softmax temperature (paper: 1; ours: 2).
        resize: how photos are resized (:data:`mlzsl.images.RESIZE_MODES`; ours:
            ``"shorter"``, the aspect ratio kept).
        spatial: ``"max"`` (pooled + best position) or ``"none"`` (pooled only).
        spatial_weight: weight of the best-position cosine.
        description: one line for listings.
    """

    backbone: str
    image_size: int
    embedder: str = "minilm"
    prompt: str | None = CLIP_PROMPT
    top_t: int = 20
    temperature: float = 2.0
    spatial: str = "max"
    spatial_weight: float = 1.0
    resize: str = "shorter"
    description: str = ""


DEFAULT_PHOTO_MODEL = "photo"
PHOTO_MODELS: dict[str, PhotoRecipe] = {
    "photo": PhotoRecipe(
        "efficientnet_lite2",
        384,
        description="EfficientNet-Lite2, shorter side 384 px, ImageNet CONSE (T=20, τ=2) pooled "
        "+ best position, MiniLM label vectors with the prompt 'a photo of a {}.'",
    ),
    "photo-fast": PhotoRecipe(
        "efficientnet_lite0",
        320,
        description="EfficientNet-Lite0, shorter side 320 px, otherwise as 'photo': faster, weaker",
    ),
    "photo-glove": PhotoRecipe(
        "efficientnet_lite2",
        384,
        embedder="glove50",
        prompt=None,
        description="as 'photo' with GloVe-50 word vectors (no sentence encoder)",
    ),
}

# backbones whose packaged weight file holds the ImageNet classifier
_CLASSIFIER_FILES: dict[str, Callable[[], tuple[Path, str]]] = {
    "efficientnet_lite0": _lite.default_weights,
    "efficientnet_lite2": _lite.default_weights_lite2,
}


@lru_cache(maxsize=1)
def _classes_text() -> str:
    return (resources.files("mlzsl") / "resources" / _CLASSES_FILE).read_text(encoding="utf-8")


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet-1k class names in classifier output order (packaged)."""
    names = [line.strip() for line in _classes_text().splitlines() if line.strip()]
    if len(names) != 1000:
        raise DataError(f"packaged {_CLASSES_FILE} holds {len(names)} names, expected 1000")
    return names


def imagenet_classifier(backbone: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
    """The ImageNet classifier in ``backbone``'s packaged weight file.

    Returns:
        (weight [1000, C], bias [1000], {"source", "sha256"} of the file).

    Raises:
        ConfigError: the backbone has no packaged ImageNet classifier.
    """
    if backbone not in _CLASSIFIER_FILES:
        raise ConfigError(
            f"no packaged ImageNet classifier for backbone {backbone!r}; "
            f"one of: {', '.join(sorted(_CLASSIFIER_FILES))}"
        )
    path, source = _CLASSIFIER_FILES[backbone]()
    state = read_state_dict(path)
    if "_fc.weight" not in state or "_fc.bias" not in state:
        raise DataError(f"{path}: weight file has no ImageNet classifier (_fc.weight, _fc.bias)")
    origin = {"source": source, "sha256": sha256_file(path)}
    return state["_fc.weight"].float(), state["_fc.bias"].float(), origin


def _recipe(name: str) -> PhotoRecipe:
    if name not in PHOTO_MODELS:
        raise ConfigError(
            f"unknown real-photo model {name!r}; known: {', '.join(sorted(PHOTO_MODELS))}"
        )
    return PHOTO_MODELS[name]


def _class_embedder(spec: str) -> str:
    # 29 ImageNet names hold a word GloVe lacks ("brambling", "jack-o'-lantern"): average the
    # known words (23 names have none and get a zero vector, which adds nothing to a
    # combination). The user's labels still go through the strict spec.
    return f"lenient:{spec}" if spec.startswith("glove") else spec


def _model_args(recipe: PhotoRecipe, channels: int, embed_dim: int) -> dict[str, Any]:
    return dict(
        in_channels=channels,
        embed_dim=embed_dim,
        num_classes=1000,
        top_t=recipe.top_t,
        temperature=float(recipe.temperature),
        spatial=recipe.spatial,
        spatial_weight=float(recipe.spatial_weight),
    )


def _fingerprint(recipe: PhotoRecipe, weights_sha256: str, embedder_name: str) -> str:
    facts = {
        "mlzsl": __version__,
        "recipe": {k: v for k, v in asdict(recipe).items() if k != "description"},
        "weights": weights_sha256,
        "classes": hashlib.sha256(_classes_text().encode("utf-8")).hexdigest(),
        "embedder": embedder_name,
    }
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def build_photo_checkpoint(path: str | Path, name: str = DEFAULT_PHOTO_MODEL) -> Path:
    """Build the real-photo model ``name`` of :data:`PHOTO_MODELS` and save it at ``path``.

    Nothing is trained: the classifier comes from the backbone's weight file, the class vectors
    from the embedder. Takes a few seconds (the embedder encodes 1,000 names once; cached).
    """
    recipe = _recipe(name)
    backbone = create_backbone(recipe.backbone, image_size=recipe.image_size)
    weight, bias, origin = imagenet_classifier(recipe.backbone)
    embedder = create_embedder(recipe.embedder)
    classes = imagenet_classes()
    with warnings.catch_warnings():  # lenient GloVe counts the names it has no word for: known
        warnings.filterwarnings("ignore", message="embedder 'lenient:")
        vectors = embed_labels(
            label_texts(classes, recipe.prompt), _class_embedder(recipe.embedder)
        )  # [1000, E]
    args = _model_args(recipe, backbone.spec.channels, embedder.dim)
    model = ImagenetConse(**args)
    model.set_classifier(weight, bias, torch.from_numpy(vectors))
    spec = backbone.spec
    ckpt = Checkpoint(
        model=MODEL,
        model_args=args,
        embedder=embedder.spec,
        vocabulary=Vocabulary(tuple(classes), (True,) * len(classes)),
        backbone=backbone.identity(),
        preprocess=Preprocess(recipe.image_size, recipe.resize, spec.mean, spec.std),
        state_dict=model.state_dict(),
        embedder_identity=embedder.name,
        label_prompt=recipe.prompt,
        pretrained={"name": name, **asdict(recipe), "classifier": origin},
    )
    return save_checkpoint(path, ckpt)


def real_photo_checkpoint(name: str = DEFAULT_PHOTO_MODEL, *, rebuild: bool = False) -> Path:
    """The cached checkpoint of the real-photo model ``name``, built first if missing or stale.

    Args:
        name: a key of :data:`PHOTO_MODELS`.
        rebuild: build it again even if an up-to-date file exists.
    """
    recipe = _recipe(name)
    weights_path, _ = _CLASSIFIER_FILES[recipe.backbone]()
    embedder = create_embedder(recipe.embedder)
    fingerprint = _fingerprint(recipe, sha256_file(weights_path), embedder.name)
    path = cache_home() / "pretrained" / f"{name}-{fingerprint}.pt"
    if path.is_file() and not rebuild:  # written atomically: a file there is whole
        return path
    return build_photo_checkpoint(path, name)
