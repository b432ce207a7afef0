"""VGG19 backbones (Simonyan & Zisserman, ICLR 2015) in torchvision's parameter layout.

- ``vgg19``: the common MLZSL benchmark feature (LESA, CVPR 2020; BiAM, ICCV 2021): conv5_4 after
  its ReLU, before the last max-pool: 512×14×14 at 224. The classifier is kept so that
  :meth:`VGG19.fc7` gives BiAM's scene feature from the same map.
- ``vgg19_bn_pyramid``: VGG19 with batch norm, tapped at pool3, pool4 and pool5 as the official
  (ML)²P-Encoder release does (Liu et al., CVPR 2023).

Both load torchvision-format files (``features.N.*``, ``classifier.N.*``) with the indices of
``torchvision.models.vgg19`` / ``vgg19_bn`` (config "E"). No VGG weights ship offline, so
``weights=`` must name a file or URL (torchvision's are in each spec's ``weights_url``) or be
``"random"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlzsl.backbones._base import (
    RANDOM_WEIGHTS,
    Backbone,
    BackboneSpec,
    WeightsInfo,
    check_input,
    pool_out,
)

# fmt: off
_CFG_E: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
    512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)
# fmt: on
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

VGG19_SPEC = BackboneSpec(
    name="vgg19",
    image_size=224,
    mean=_IMAGENET_MEAN,
    std=_IMAGENET_STD,
    channels=512,
    stride=16,
    min_image_size=32,  # fc7 needs pool5 to be at least 1×1
    weights_url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    description="VGG19 conv5_4 (LESA/BiAM feature), torchvision weights; 512 x S/16 x S/16",
)

VGG19_BN_PYRAMID_SPEC = BackboneSpec(
    name="vgg19_bn_pyramid",
    image_size=224,
    # The released (ML)^2P test script normalises with CIFAR-10's mean/std, not ImageNet's
    # (docs/design.md, "The method as released"); we keep its numbers so features match.
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2023, 0.1994, 0.2010),
    channels=256 + 512 + 512,
    stride=32,
    min_image_size=32,
    weights_url="https://download.pytorch.org/models/vgg19_bn-c79401a0.pth",
    description="VGG19-BN pool3/pool4/pool5 pyramid ((ML)2P front-end); 1280 x S/32 x S/32",
)


def make_features(*, batch_norm: bool) -> nn.Sequential:
    """torchvision's ``vgg19(_bn).features``: same modules at the same indices."""
    layers: list[nn.Module] = []
    cin = 3
    for v in _CFG_E:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        assert isinstance(v, int)
        layers.append(nn.Conv2d(cin, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        cin = v
    return nn.Sequential(*layers)


class VGG19(Backbone):
    """VGG19 (no BN) up to conv5_4: [B, 3, S, S] -> [B, 512, S/16, S/16].

    Holds the whole torchvision network (``features``, ``avgpool``, ``classifier``) so that a
    torchvision file loads strictly and :meth:`fc7` can run.
    """

    def __init__(
        self, *, spec: BackboneSpec = VGG19_SPEC, weights: WeightsInfo = RANDOM_WEIGHTS
    ) -> None:
        super().__init__(spec=spec, weights=weights)
        self.features = make_features(batch_norm=False)  # 37 modules; [36] is pool5
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),  # [4]: fc7 ends here
            nn.Dropout(0.5),
            nn.Linear(4096, 1000),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images [B, 3, S, S] -> conv5_4 after ReLU [B, 512, S/16, S/16]."""
        check_input(x, self.spec.name)
        for layer in list(self.features)[:-1]:  # all but pool5
            x = layer(x)
        return x

    def fc7(self, feature_map: torch.Tensor) -> torch.Tensor:
        """BiAM's scene feature from a conv5_4 map: [B, 512, H, W] -> [B, 4096].

        pool5 (2×2 max-pool), torchvision's adaptive average pool to 7×7, flatten, then
        classifier[0..4] (fc6, ReLU, dropout, fc7, ReLU).
        """
        x = self.avgpool(self.features[-1](feature_map))  # [B, 512, 7, 7]
        x = torch.flatten(x, 1)  # [B, 25088]
        return self.classifier[:5](x)  # [B, 4096]

    def feature_size(self, image_size: int) -> tuple[int, int]:
        side = pool_out(image_size, 4)
        return side, side


# features[] indices of the pool3, pool4 and pool5 outputs in torchvision's vgg19_bn.
_PYRAMID_TAPS = (26, 39, 52)


class VGG19BNPyramid(Backbone):
    """VGG19-BN tapped at pool3, pool4, pool5, the (ML)²P-Encoder front-end.

    ``forward_taps`` gives the three maps (at 224: 256×28×28, 512×14×14, 512×7×7). ``forward``
    gives one map for the feature store: pool3 max-pooled by 4, pool4 max-pooled by 2, pool5,
    concatenated along channels: [B, 1280, S/32, S/32].

    Difference from the official model: it applies a learned 1×1 conv + BN + ReLU to each tap
    *before* the max-pool (pool3 256→512, pool4 512→512, pool5 512→1024). A frozen store of this
    map feeds a head whose per-tap transforms come *after* pooling. The 1×1 conv mixes channels,
    so pooling first and transforming after is a different (not an equivalent) model.

    torchvision's ``classifier.*`` keys are accepted and ignored (the classifier is not built).
    """

    def __init__(
        self, *, spec: BackboneSpec = VGG19_BN_PYRAMID_SPEC, weights: WeightsInfo = RANDOM_WEIGHTS
    ) -> None:
        super().__init__(spec=spec, weights=weights)
        self.features = make_features(batch_norm=True)  # 53 modules

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised images [B, 3, S, S] -> (pool3 [B, 256, S/8, S/8], pool4 [B, 512, S/16, S/16],
        pool5 [B, 512, S/32, S/32])."""
        check_input(x, self.spec.name)
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _PYRAMID_TAPS:
                taps.append(x)
        pool3, pool4, pool5 = taps
        return pool3, pool4, pool5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images [B, 3, S, S] -> [B, 1280, S/32, S/32] (pool3 ‖ pool4 ‖ pool5)."""
        pool3, pool4, pool5 = self.forward_taps(x)
        pool3 = F.max_pool2d(pool3, kernel_size=4, stride=4)  # [B, 256, S/32, S/32]
        pool4 = F.max_pool2d(pool4, kernel_size=2, stride=2)  # [B, 512, S/32, S/32]
        return torch.cat([pool3, pool4, pool5], dim=1)  # [B, 1280, S/32, S/32]

    def feature_size(self, image_size: int) -> tuple[int, int]:
        side = pool_out(image_size, 5)  # floor(floor(S/8) / 4) == pool5's side
        return side, side
