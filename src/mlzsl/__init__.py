"""mlzsl: multi-label zero-shot learning of images.

(ML)²P-Encoder (Liu et al., CVPR 2023) and its peers, on one exact evaluation protocol::

    from mlzsl import Tagger
    tagger = Tagger.from_checkpoint("mlzsl-demo/runs/ml2p/best.pt")
    tagger.tag(["photo.png"], "red star, blue heart", top_k=2)

The public names are imported lazily, so ``import mlzsl`` (and the CLI's start-up) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "LabelSet": "mlzsl.labels",
    "FeatureStore": "mlzsl.store.feature_store",
    "extract_features": "mlzsl.store.extract",
    "read_user_dataset": "mlzsl.datasets.userdata",
    "create_backbone": "mlzsl.backbones",
    "create_embedder": "mlzsl.embeddings",
    "embed_labels": "mlzsl.embeddings",
    "create_model": "mlzsl.models",
    "list_models": "mlzsl.models",
    "load_config": "mlzsl.config",
    "fit": "mlzsl.training.engine",
    "Checkpoint": "mlzsl.inference.checkpoint",
    "load_checkpoint": "mlzsl.inference.checkpoint",
    "evaluate": "mlzsl.protocol",
    "Tagger": "mlzsl.inference.tagger",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mlzsl' has no attribute {name!r}")
