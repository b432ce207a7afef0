"""Backbones: normalised images [B, 3, S, S] -> feature maps [B, C, H, W].

One registry of frozen feature extractors, each a :class:`Backbone` built by
:func:`create_backbone`::

    net = create_backbone("efficientnet_lite0")          # packaged ImageNet weights, offline
    net = create_backbone("vgg19", weights="vgg19-dcbb9e9d.pth")
    spec = net.spec                                       # image_size, mean, std, channels, stride
    maps = net(images)                                    # [B, C, S/stride, S/stride]
    net.identity()                                        # JSON record stored with features

Images are scaled to 0..1, then normalised per channel with ``spec.mean`` / ``spec.std``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import torch

from mlzsl.backbones import efficientnet_lite, pixels
from mlzsl.backbones._base import Backbone, BackboneSpec, init_weights
from mlzsl.backbones._weights import DefaultWeights, fit_state_dict, resolve_weights
from mlzsl.backbones.efficientnet_lite import EfficientNetLite0, EfficientNetLite2
from mlzsl.backbones.vgg import VGG19, VGG19_BN_PYRAMID_SPEC, VGG19_SPEC, VGG19BNPyramid
from mlzsl.errors import ConfigError

__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "BackboneSpec",
    "EfficientNetLite0",
    "EfficientNetLite2",
    "VGG19",
    "VGG19BNPyramid",
    "create_backbone",
    "get_spec",
    "list_backbones",
    "same_maps",
]

DEFAULT_BACKBONE = "efficientnet_lite0"


@dataclass(frozen=True)
class _Entry:
    spec: BackboneSpec
    build: type[Backbone]  # called with spec= and weights=
    default_weights: DefaultWeights | None  # what weights=None loads; None: no default
    ignore_prefixes: tuple[str, ...] = ()  # classifier keys in weight files that are not built
    parameter_free: bool = False  # nothing to load: ``weights`` must be None


_REGISTRY: dict[str, _Entry] = {
    e.spec.name: e
    for e in (
        _Entry(
            efficientnet_lite.SPEC,
            EfficientNetLite0,
            efficientnet_lite.default_weights,
            ignore_prefixes=("_fc.",),
        ),
        _Entry(
            efficientnet_lite.SPEC_LITE2,
            EfficientNetLite2,
            efficientnet_lite.default_weights_lite2,
            ignore_prefixes=("_fc.",),
        ),
        _Entry(VGG19_SPEC, VGG19, None),
        _Entry(VGG19_BN_PYRAMID_SPEC, VGG19BNPyramid, None, ignore_prefixes=("classifier.",)),
        _Entry(pixels.SPEC, pixels.Pixels, None, parameter_free=True),
    )
}


def list_backbones() -> list[str]:
    """Names of the registered backbones, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> BackboneSpec:
    """The spec of a registered backbone (its default ``image_size``).

    Raises:
        ConfigError: ``name`` is not registered.
    """
    return _entry(name).spec


def create_backbone(
    name: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
) -> Backbone:
    """Build a registered backbone, load its weights, and freeze it (eval, no gradients).

    Args:
        name: a name from :func:`list_backbones`.
        weights: ``None`` for the backbone's default (efficientnet_lite0/2: the packaged ImageNet
            file; the VGG backbones have none and raise), ``"random"`` for a random
            initialisation drawn from torch's RNG, a local path, or an ``http(s)://`` URL
            fetched once into torch's hub cache.
        image_size: the input side this instance is for (``spec.image_size``, recorded in
            :meth:`Backbone.identity`); ``None`` keeps the default.

    Returns:
        The backbone in eval mode with ``requires_grad=False`` on every parameter.

    Raises:
        ConfigError: unknown name, bad ``weights`` or ``image_size`` argument, or no default
            weights.
        DataError: the weight file is missing, unreadable, or its keys or shapes do not fit;
            the message names the file and the first mismatching keys.
    """
    entry = _entry(name)
    spec = entry.spec
    if image_size is not None:
        spec = replace(spec, image_size=_check_image_size(image_size, spec))
    if entry.parameter_free:
        if weights is not None:
            raise ConfigError(f"backbone {name!r} has no parameters: do not pass weights")
        return entry.build(spec=spec, weights=pixels.NO_WEIGHTS).eval()
    state, info = resolve_weights(
        weights, name=name, default=entry.default_weights, url=spec.weights_url
    )
    # Build without allocating or initialising: the values come from the file or init_weights.
    # This halves peak memory and skips a wasted random init of VGG's 120 M classifier weights.
    with torch.device("meta"):
        net = entry.build(spec=spec, weights=info)
    if state is None:
        net.to_empty(device="cpu")
        init_weights(net)
    else:
        shapes = {k: v.shape for k, v in net.state_dict().items()}
        state = fit_state_dict(
            state, shapes, where=info.source, name=name, ignore_prefixes=entry.ignore_prefixes
        )
        net.load_state_dict(state, strict=True, assign=True)
    net.requires_grad_(False)
    return net.eval()


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    return _REGISTRY[name]


def _check_image_size(image_size: int, spec: BackboneSpec) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise ConfigError(f"image_size must be an integer, got {image_size!r}")
    if image_size < spec.min_image_size:
        raise ConfigError(
            f"image_size {image_size} is too small for backbone {spec.name!r} "
            f"(at least {spec.min_image_size})"
        )
    return image_size


def same_maps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two backbone identities (:meth:`Backbone.identity`, as stores and checkpoints
    record them) make the same feature maps: the same network and the same weights."""
    return (a.get("name"), a.get("sha256")) == (b.get("name"), b.get("sha256"))
