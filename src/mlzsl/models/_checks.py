"""What several models share: input checks (one-line :class:`ConfigError` naming the model and
the shape) and scoring one direction per image against label vectors."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mlzsl.errors import ConfigError


def check_inputs(model: str, in_channels: int, features: Tensor) -> None:
    """Raise :class:`ConfigError` unless ``features`` is [B, in_channels, H, W]."""
    if features.ndim != 4 or features.shape[1] != in_channels:
        raise ConfigError(
            f"{model} was built for feature maps of {in_channels} channels; "
            f"got features of shape {tuple(features.shape)}"
        )


def check_labels(model: str, embed_dim: int, label_vectors: Tensor) -> None:
    """Raise :class:`ConfigError` unless ``label_vectors`` is [L, embed_dim]."""
    if label_vectors.ndim != 2 or label_vectors.shape[1] != embed_dim:
        raise ConfigError(
            f"{model} was built for label vectors of size embed_dim={embed_dim}; "
            f"got label vectors of shape {tuple(label_vectors.shape)}"
        )


def direction_scores(directions: Tensor, label_vectors: Tensor, *, normalize: bool) -> Tensor:
    """Scores [B, L] = ⟨d(x), v_c⟩ from one direction per image [B, 1, E] and vectors [L, E]."""
    if normalize:
        label_vectors = F.normalize(label_vectors, dim=-1)  # [L, E]
    return directions.squeeze(1) @ label_vectors.T  # [B, L]
