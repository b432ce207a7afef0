"""BiAM: bi-level attention over image regions, scored region by region against label vectors.

Paper: S. Narayan, A. Gupta, S. Khan, F. S. Khan, L. Shao, M. Shah, "Discriminative Region-based
Multi-Label Zero-Shot Learning", ICCV 2021 (arXiv 2108.09301); release github.com/akshitac8/BiAM
(``model.py``, ``config.py``, ``train_nus.py``), read for facts only. Every region feature is
enriched with a region-level context (self-attention over the P = H·W regions) and a scene-level
context (channel gating by a global scene vector); each fused region e_r scores every label as
e_r · (W v_c), and an image's score for a label is the mean of its ``top_k`` best region scores.
Reasons, the scene-vector substitute, sizes and the paper's optimiser: docs/models.md (biam).

Provenance (release; paper; ours: fixed by neither)::

    choice                                              source
    front-end 3×3 conv C -> channel_dim = 256           release ``CONV3_3``, ``--channel_dim``
    ... then ReLU, then BN (eps 1e-3, momentum 0.99)    release (order and Keras-style values)
    region block: q, k, v, o per-region linear maps     release (1×1 convs)
    scaled dot-product attention, dropout 0.1, residual release
    FFN D -> 2D -> D, ReLU, residual; no layer norm     release
    num_heads = 8                                       paper (NUS-WIDE; repo default 4)
    mask of exactly-zero attention logits: left out     ours (masks nothing in practice)
    scene block: one shared 1×1 conv + LeakyReLU(0.2)   release (the same conv applied twice)
    gate sigmoid(q * k), q the spatial mean             release
    refinement 3×3 conv + ReLU + BN, residual           release
    scene="fc7": frozen VGG19 fc7 of the conv5_4 map    release ``vgg_net``, dropout 0.2, ``w_g``
    scene="pooled" (default): projection of the         ours (documented substitute: no fc7
      average-pooled map, after dropout 0.2               on other backbones)
    frozen VGG19 left out of state dicts                ours (560 MB checkpoints otherwise)
    fusion concat -> per-region linear -> region_dim    release ``conv_1X1`` (512)
      -> LeakyReLU(0.2)
    label map W: E -> region_dim, with bias             release ``nn.Linear(300, 512)``
    L2-normalised label vectors (normalize_labels)      release (normalised GloVe)
    score: mean of the top_k = 6 region scores          release ``predict``; k clipped to P, ours
    no num_positions: any H×W                           ours (the repo hard-codes 14×14)
    initialisers: PyTorch defaults (a 1×1 conv and a    release (PyTorch defaults)
      Linear draw from the same distribution)

Released ``BiAM`` state dict -> ours (:func:`release_key_map`; 1×1 conv kernels [O, I, 1, 1]
become Linear weights [O, I], except ``channel_conv``, a Conv2d here too)::

    release                                     ours
    conv_3X3.body, conv_3X3.bn                  front.0, front.2
    region_context_block.w_{q,k,v,o}            region_block.{query,key,value,out}
    region_context_block.sub_network.conv{1,2}  region_block.ffn.{0,2}
    scene_context_block.channel_conv.body       scene_block.project
    scene_context_block.w_g                     scene_block.scene_key
    scene_context_block.gcff.body, .bn          scene_block.refine.0, .2
    conv_1X1.body                               fuse
    W                                           label_map
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlzsl.backbones import VGG19, create_backbone
from mlzsl.errors import ConfigError
from mlzsl.models import register_model
from mlzsl.models._base import MLZSLModel

__all__ = ["BiAM", "release_key_map"]

_BN_EPS, _BN_MOMENTUM = 1e-3, 0.99  # the release's BatchNorm settings (docs/models.md)
_SCENES = ("pooled", "fc7")
_KEY_RENAMES = (  # release prefix -> ours (docstring table)
    (r"^conv_3X3\.body\.", "front.0."),
    (r"^conv_3X3\.bn\.", "front.2."),
    (r"^region_context_block\.w_q\.", "region_block.query."),
    (r"^region_context_block\.w_k\.", "region_block.key."),
    (r"^region_context_block\.w_v\.", "region_block.value."),
    (r"^region_context_block\.w_o\.", "region_block.out."),
    (r"^region_context_block\.sub_network\.conv1\.", "region_block.ffn.0."),
    (r"^region_context_block\.sub_network\.conv2\.", "region_block.ffn.2."),
    (r"^scene_context_block\.channel_conv\.body\.", "scene_block.project."),
    (r"^scene_context_block\.w_g\.", "scene_block.scene_key."),
    (r"^scene_context_block\.gcff\.body\.", "scene_block.refine.0."),
    (r"^scene_context_block\.gcff\.bn\.", "scene_block.refine.2."),
    (r"^conv_1X1\.body\.", "fuse."),
    (r"^W\.", "label_map."),
)
_LINEAR_FROM_CONV = ("region_block.", "scene_block.scene_key.", "fuse.")


def release_key_map(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a state dict of the released ``BiAM`` module to this model's names and shapes.

    A leading ``module.`` (a ``DataParallel`` save) is stripped; 1×1 conv kernels that are
    Linear layers here are squeezed to [O, I]. Keys already in our naming pass through.

    Args:
        state_dict: released parameter names -> tensors.

    Returns:
        A dict that a :class:`BiAM` with the same sizes loads with ``strict=True``.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        for pattern, replacement in _KEY_RENAMES:
            key = re.sub(pattern, replacement, key)
        if key.startswith(_LINEAR_FROM_CONV) and key.endswith(".weight") and value.ndim == 4:
            value = value.flatten(1)  # [O, I, 1, 1] -> [O, I]
        out[key] = value
    return out


def _conv3x3_relu_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 conv (same padding) -> ReLU -> BatchNorm, the release's order."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM),
    )


class _RegionBlock(nn.Module):
    """Multi-head self-attention over regions + feed-forward, both residual: [B, P, D] -> same."""

    def __init__(self, *, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.query, self.key, self.value = (
            nn.Linear(dim, dim),
            nn.Linear(dim, dim),
            nn.Linear(dim, dim),
        )
        self.out = nn.Linear(dim, dim)
        self.attn_dropout, self.out_dropout = nn.Dropout(dropout), nn.Dropout(dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def _heads(self, x: Tensor) -> Tensor:
        b, p, _ = x.shape
        return x.view(b, p, self.num_heads, self.head_dim).transpose(1, 2)  # [B, h, P, d]

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        logits = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # [B, h, P, P]
        weights = self.attn_dropout(logits.softmax(dim=-1))  # [B, h, P, P]
        mixed = (weights @ v).transpose(1, 2).flatten(2)  # [B, P, D]
        x = x + self.out_dropout(self.out(mixed))  # [B, P, D]
        return x + self.ffn(x)  # [B, P, D]


class _SceneBlock(nn.Module):
    """Channel gating of the regions by a global scene vector, then a residual 3×3 refinement.

    ``forward(h, scene)``: region map h [B, D, H, W] and scene vector [B, S] -> [B, D, H, W].
    """

    def __init__(self, *, dim: int, scene_dim: int, dropout: float) -> None:
        super().__init__()
        self.project = nn.Conv2d(dim, dim, kernel_size=1)  # shared by query and value, as released
        self.scene_key = nn.Linear(scene_dim, dim)
        self.scene_dropout = nn.Dropout(dropout)
        self.refine = _conv3x3_relu_bn(dim, dim)

    def forward(self, h: Tensor, scene: Tensor) -> Tensor:
        values = F.leaky_relu(self.project(h), 0.2)  # [B, D, H, W]; also the query map
        query = values.mean(dim=(2, 3))  # [B, D]
        key = self.scene_key(self.scene_dropout(scene))  # [B, D]
        gate = torch.sigmoid(query * key)  # [B, D]
        gated = gate[:, :, None, None] * values  # [B, D, H, W]
        return gated + self.refine(gated)  # [B, D, H, W]


@register_model("biam")
class BiAM(MLZSLModel):
    """BiAM over a stored feature map; label vectors are mapped into the region space.

    Args:
        channel_dim: D, channels after the 3×3 front-end conv (attention width).
        region_dim: R, size of the fused region features and of the mapped label vectors.
        num_heads: heads of the region self-attention; must divide ``channel_dim``.
        top_k: number of highest region scores averaged into the image score (clipped to H·W).
        dropout: dropout on the attention weights and the attention output.
        scene_dropout: dropout on the scene vector before its projection.
        scene: source of the scene vector: ``"pooled"`` (global-average-pooled input map) or
            ``"fc7"`` (frozen ImageNet VGG19 fc7 of a conv5_4 map, as the paper; needs
            ``vgg_weights`` and C = 512).
        vgg_weights: torchvision VGG19 weights (path, URL, or ``"random"`` for tests) for
            ``scene="fc7"``.
        normalize_labels: L2-normalise label vectors before the label map W.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        embed_dim: int,
        channel_dim: int = 256,
        region_dim: int = 512,
        num_heads: int = 8,
        top_k: int = 6,
        dropout: float = 0.1,
        scene_dropout: float = 0.2,
        scene: str = "pooled",
        vgg_weights: str | None = None,
        normalize_labels: bool = True,
    ) -> None:
        super().__init__()
        self.check_positive(
            channel_dim=channel_dim,
            region_dim=region_dim,
            num_heads=num_heads,
            top_k=top_k,
        )
        if channel_dim % num_heads:
            raise ConfigError(f"biam: num_heads={num_heads} must divide channel_dim={channel_dim}")
        self.check_probability(dropout=dropout, scene_dropout=scene_dropout)
        self.check_choice("scene", scene, _SCENES)
        _check_fc7(scene, vgg_weights, in_channels)
        self.top_k, self.normalize_labels = top_k, normalize_labels
        self.front = _conv3x3_relu_bn(in_channels, channel_dim)
        self.region_block = _RegionBlock(dim=channel_dim, num_heads=num_heads, dropout=dropout)
        self.scene_vgg: VGG19 | None = None
        if scene == "fc7":
            self.scene_vgg = _frozen_vgg19(str(vgg_weights))
            self.register_state_dict_post_hook(_drop_vgg_keys)
            self.register_load_state_dict_post_hook(_forgive_vgg_keys)
        self.scene_block = _SceneBlock(
            dim=channel_dim,
            scene_dim=_FC7 if scene == "fc7" else in_channels,
            dropout=scene_dropout,
        )
        self.fuse = nn.Linear(2 * channel_dim, region_dim)  # the release's 1×1 conv, per region
        self.label_map = nn.Linear(embed_dim, region_dim)  # W: E -> R, as released

    def forward_embeddings(self, features: Tensor) -> Tensor:
        """Fused region features: [B, C, H, W] -> [B, P, R], P = H·W."""
        self.check_features(features)
        # channels-last: oneDNN's 3×3 convs run ~10 % faster on NCHW-shaped views of [B, H, W, C]
        # data, and the [B, P, D] region views below need no copy (benchmarks/README.md)
        h = self.front(features.contiguous(memory_format=torch.channels_last))  # [B, D, H, W]
        regions = self.region_block(h.flatten(2).transpose(1, 2))  # [B, P, D]
        scene = self.scene_block(h, self.scene_vector(features))  # [B, D, H, W]
        fused = torch.cat([regions, scene.flatten(2).transpose(1, 2)], dim=2)  # [B, P, 2D]
        return F.leaky_relu(self.fuse(fused), 0.2)  # [B, P, R]

    def scene_vector(self, features: Tensor) -> Tensor:
        """The global scene vector: [B, C, H, W] -> [B, 4096] (fc7) or [B, C] (pooled)."""
        if self.scene_vgg is None:
            return features.mean(dim=(2, 3))
        if tuple(features.shape[1:]) != (512, 14, 14):
            raise ConfigError(
                "biam: scene='fc7' takes VGG19 conv5_4 maps of 512×14×14 (224 px), got "
                f"{tuple(features.shape[1:])}"
            )
        with torch.no_grad():
            return self.scene_vgg.fc7(features)  # [B, 4096]

    def train(self, mode: bool = True) -> BiAM:
        """Set train/eval mode; the frozen VGG19 stays in eval mode (its dropout off)."""
        super().train(mode)
        if self.scene_vgg is not None:
            self.scene_vgg.eval()
        return self

    def region_scores(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Per-region scores e_r · (W v_c): regions [B, P, R], labels [L, E] -> [B, P, L]."""
        self.check_labels(label_vectors)
        if self.normalize_labels:
            label_vectors = F.normalize(label_vectors, dim=-1)  # [L, E]
        return embeddings @ self.label_map(label_vectors).T  # [B, P, L]

    def score(self, embeddings: Tensor, label_vectors: Tensor) -> Tensor:
        """Image scores [B, L]: mean of the top-k region scores per label (k clipped to P)."""
        per_region = self.region_scores(embeddings, label_vectors)  # [B, P, L]
        k = min(self.top_k, per_region.shape[1])
        return per_region.topk(k, dim=1).values.mean(dim=1)  # [B, L]


_FC7 = 4096  # VGG19 fc7 width
_VGG_PREFIX = "scene_vgg."


def _check_fc7(scene: str, vgg_weights: str | None, in_channels: int) -> None:
    if scene == "fc7" and (not vgg_weights or in_channels != 512):
        raise ConfigError(
            "biam: scene='fc7' needs vgg_weights (torchvision's vgg19-dcbb9e9d.pth) and VGG19 "
            f"conv5_4 features (in_channels 512), got vgg_weights={vgg_weights!r}, "
            f"in_channels={in_channels}"
        )
    if scene != "fc7" and vgg_weights:
        raise ConfigError("biam: vgg_weights is only used with scene='fc7'")


def _frozen_vgg19(weights: str) -> VGG19:
    vgg = create_backbone("vgg19", weights=weights)  # frozen, eval mode
    assert isinstance(vgg, VGG19)
    return vgg


def _drop_vgg_keys(module: nn.Module, state: dict[str, Any], prefix: str, _meta: Any) -> None:
    """State-dict hook: leave the frozen VGG19 out (it is rebuilt from ``vgg_weights``)."""
    for key in [k for k in state if k.startswith(prefix + _VGG_PREFIX)]:
        del state[key]


def _forgive_vgg_keys(module: nn.Module, incompatible: Any) -> None:
    """Load hook: the VGG19 keys are absent from saved state dicts by design."""
    missing = incompatible.missing_keys
    missing[:] = [k for k in missing if _VGG_PREFIX not in k]
