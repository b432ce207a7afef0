"""What every backbone shares: its spec, its module interface and its identity.

Shapes: B batch, S input side in pixels, C channels, H×W the feature map (H = W = S / stride for
the sides the registry is tested at).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    """Static facts about a registered backbone.

    Attributes:
        name: registry name, e.g. ``"efficientnet_lite0"``.
        image_size: default input side S in pixels.
        mean: per-channel (R, G, B) mean subtracted after scaling pixels to 0..1.
        std: per-channel (R, G, B) divisor applied after subtracting ``mean``.
        channels: C, channels of the feature map ``forward`` returns.
        stride: S / H at sides that are a multiple of the stride.
        min_image_size: smallest input side the network accepts.
        default_weights: what ``weights=None`` loads, in words (``None``: there is no default).
        weights_url: where the usual pretrained file can be downloaded; named in messages, fetched
            only when passed as ``weights=``.
        description: one line for listings.
    """

    name: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channels: int
    stride: int
    min_image_size: int = 32
    default_weights: str | None = None
    weights_url: str | None = None
    description: str = ""


@dataclass(frozen=True)
class WeightsInfo:
    """Where a backbone's weights came from.

    Attributes:
        source: ``"random"``, an absolute file path, a URL, or ``package:<module>/<file>``.
        sha256: hex digest of the weight file, or ``"random"``.
    """

    source: str
    sha256: str


RANDOM_WEIGHTS = WeightsInfo(source="random", sha256="random")


class Backbone(nn.Module, ABC):
    """A frozen image → feature-map network: ``forward(x [B, 3, S, S]) -> [B, C, H, W]``.

    Instances come from :func:`mlzsl.backbones.create_backbone` in eval mode with
    ``requires_grad=False`` on every parameter. They stay ordinary modules: call
    ``requires_grad_(True)`` and ``train()`` to fine-tune (BatchNorm layers then update their
    running statistics, as any module does in train mode).

    Args:
        spec: the backbone's spec; ``spec.image_size`` is the side this instance was made for.
        weights: where the weights came from (kept as ``weights_info``, reported by
            :meth:`identity`).
    """

    def __init__(self, *, spec: BackboneSpec, weights: WeightsInfo = RANDOM_WEIGHTS) -> None:
        super().__init__()
        self.spec = spec
        self.weights_info = weights

    @abstractmethod
    def feature_size(self, image_size: int) -> tuple[int, int]:
        """(H, W) of the feature map for a square input of side ``image_size``."""

    def output_shape(self, image_size: int | None = None) -> tuple[int, int, int]:
        """(C, H, W) of ``forward``'s output for a square input (default: ``spec.image_size``)."""
        side = self.spec.image_size if image_size is None else image_size
        h, w = self.feature_size(side)
        return (self.spec.channels, h, w)

    def identity(self) -> dict[str, Any]:
        """A JSON-serialisable record of exactly which network and weights make the features.

        Stored with every feature file and checkpoint; two backbones with equal identities
        produce equal features (``"random"`` weights excepted: their values depend on torch's RNG).
        """
        return {
            "name": self.spec.name,
            "weights": self.weights_info.source,
            "sha256": self.weights_info.sha256,
            "channels": self.spec.channels,
            "image_size": self.spec.image_size,
            "mean": list(self.spec.mean),
            "std": list(self.spec.std),
            "stride": self.spec.stride,
        }

    def extra_repr(self) -> str:
        return f"name={self.spec.name!r}, weights={self.weights_info.source!r}"


def init_weights(module: nn.Module) -> None:
    """Random initialisation of every parameter and buffer, as torchvision initialises VGG.

    Conv: Kaiming normal (fan_out, ReLU), zero bias; BatchNorm: weight 1, bias 0, fresh running
    statistics; Linear: N(0, 0.01), zero bias. Draws from torch's global RNG, so
    ``torch.manual_seed`` makes it reproducible. Also fills tensors left empty by ``to_empty``.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()  # weight 1, bias 0, running mean 0 / var 1, count 0
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def pool_out(side: int, times: int) -> int:
    """Side after ``times`` 2×2 max-pools with stride 2 (floor, as ``nn.MaxPool2d(2, 2)``)."""
    for _ in range(times):
        side //= 2
    return side


def check_input(x: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a batch of RGB images [B, 3, H, W]."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"backbone {name!r} expects images [B, 3, H, W], got {tuple(x.shape)}")
