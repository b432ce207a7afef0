"""Image decoding: a file on disk -> the normalised pixels a backbone takes.

Feature extraction, tagging and every image-input model share this one preprocessing, so a model
always sees pixels prepared exactly as its training features were.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["load_image"]


def load_image(path: Path, size: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Decode ``path`` fully, squash-resize to ``size``×``size`` and normalise: float32 [3, S, S].

    Raises whatever PIL or the OS raises on a bad file; callers turn that into a skip or a
    one-line error. The squash resize (no crop) is what the (ML)²P and LESA/BiAM pipelines use.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            img.load()  # decode now, so truncated files fail here, not later
            rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(rgb, dtype=np.float32) / 255.0  # [S, S, 3] in 0..1
    return ((pixels - mean) / std).transpose(2, 0, 1).copy()  # [3, S, S]
