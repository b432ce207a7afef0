"""``pixels``: the identity backbone, so image-input models train through the feature store.

``mlzsl extract --backbone pixels --image-size 64`` stores each image itself, resized to S×S and
normalised, as a 3×S×S "feature map" (float16, like every store). Models registered with
``inputs="images"`` (``ml2p_official``) then train and evaluate through the same engine, store
and sampler as the feature-map models, with no image decoding in the training loop; the price
is disk: 3·S² half floats per image (24 KiB at 64 px, 294 KiB at 224 px).

Normalisation is CIFAR-10's mean/std, the one the (ML)²P release's test script applies
(docs/design.md, "The method as released"), because ``ml2p_official`` is the model that takes
these stores.
"""

from __future__ import annotations

import torch

from mlzsl.backbones._base import Backbone, BackboneSpec, WeightsInfo, check_input

SPEC = BackboneSpec(
    name="pixels",
    image_size=224,
    mean=(0.4914, 0.4822, 0.4465),  # CIFAR-10, as the (ML)²P release's test script
    std=(0.2023, 0.1994, 0.2010),
    channels=3,
    stride=1,
    min_image_size=32,
    default_weights="none (no parameters)",
    description="identity: stores normalised images for image-input models (ml2p_official)",
)

NO_WEIGHTS = WeightsInfo(source="none", sha256="none")


class Pixels(Backbone):
    """``forward(x [B, 3, S, S]) -> x``: the normalised image is the feature map."""

    def feature_size(self, image_size: int) -> tuple[int, int]:
        """(S, S): the map is the image."""
        return (image_size, image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the normalised images unchanged ([B, 3, S, S])."""
        check_input(x, self.spec.name)
        return x
