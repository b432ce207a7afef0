"""Image decoding: a file on disk or in memory -> the normalised pixels a backbone takes.

Feature extraction, tagging and every image-input model share this one preprocessing, so a model
always sees pixels prepared exactly as its training features were.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps

from mlzsl.errors import DataError

__all__ = ["RESIZE_MODES", "ImageTooLarge", "load_image", "load_rgb", "normalise"]

RESIZE_MODES = ("squash", "shorter")
"""``squash``: S×S whatever the aspect (the (ML)²P and LESA/BiAM pipelines); ``shorter``: the
shorter side to S, the aspect ratio kept (the longer side at most 2·S), so objects keep their
shape as in the ImageNet crops a classifier learned from."""


class ImageTooLarge(DataError):
    """An image whose width × height is over the ``max_pixels`` given to :func:`load_image`."""


def load_image(
    source: Path | BinaryIO,
    size: int,
    mean: np.ndarray,
    std: np.ndarray,
    *,
    max_pixels: int | None = None,
    resize: str = "squash",
) -> np.ndarray:
    """Decode ``source`` fully, resize and normalise: float32 [3, H, W] ([3, S, S] when squashed).

    Args:
        source: a file path, or a binary file object (e.g. ``io.BytesIO`` of uploaded bytes).
        size: the output side S in pixels.
        mean: per-channel mean [3] the pixels (in 0..1) are normalised with.
        std: per-channel standard deviation [3].
        max_pixels: refuse an image whose header declares more than this many pixels (width ×
            height), before decoding it: a guard against decompression bombs. ``None``: only
            PIL's own limit applies (its ``DecompressionBombWarning``, made an error here).
        resize: one of :data:`RESIZE_MODES`.

    Raises:
        ImageTooLarge: the image is over ``max_pixels``.
        Exception: whatever PIL or the OS raises on a bad file; callers turn that into a skip or a
            one-line error. The squash resize (no crop) is what the (ML)²P and LESA/BiAM pipelines
            use.
    """
    rgb = load_rgb(source, size, max_pixels=max_pixels, resize=resize)
    return normalise(rgb, mean, std)


def load_rgb(
    source: Path | BinaryIO, size: int, *, max_pixels: int | None = None, resize: str = "squash"
) -> np.ndarray:
    """:func:`load_image` before normalising: uint8 [H, W, 3], upright, RGB, resized.

    Extraction on onnxruntime feeds these bytes to a graph that normalises them itself
    (:func:`mlzsl.backbones.onnx.backbone_onnx`), a quarter of the memory and no float pass here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(source) as img:  # reads the header only
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ImageTooLarge(
                    f"{img.width}×{img.height} pixels is over the limit of {max_pixels:,}"
                )
            img.load()  # decode now, so truncated files fail here, not later
            # upright as the camera meant it: a phone photo stored sideways carries EXIF
            # Orientation (e.g. 6, rotated 90°) and its raw pixels lie on their side
            upright = ImageOps.exif_transpose(img) if _orientation(img) != 1 else img
            rgb = upright if upright.mode == "RGB" else upright.convert("RGB")  # no copies
            rgb = rgb.resize(_output_size(rgb.size, size, resize), Image.Resampling.BILINEAR)
    return np.asarray(rgb)


def normalise(rgb: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> ``(rgb / 255 - mean) / std`` as [3, H, W], in float32 (or the dtype of
    ``mean`` and ``std`` when wider).

    The same operations in the same order as the formula, so the values are its values bit for
    bit, but in place on one channel-first copy: 3x faster than the formula on [H, W, 3] followed
    by a transposed copy.
    """
    out = rgb.transpose(2, 0, 1).astype(np.float32, order="C")  # [3, H, W]
    out /= 255.0
    out = out.astype(np.result_type(out, mean, std), copy=False)
    out -= np.asarray(mean)[:, None, None]
    out /= np.asarray(std)[:, None, None]
    return out


def _orientation(img: Image.Image) -> int:
    """The EXIF Orientation tag (1: upright, also when absent or unreadable)."""
    try:
        return int(img.getexif().get(ExifTags.Base.Orientation, 1))
    except (TypeError, ValueError):
        return 1


def _output_size(wh: tuple[int, int], size: int, resize: str) -> tuple[int, int]:
    """(width, height) after resizing an image of ``wh`` with mode ``resize`` to side ``size``."""
    if resize == "squash":
        return size, size
    if resize != "shorter":
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    width, height = wh
    scale = min(size / min(width, height), 2 * size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))
