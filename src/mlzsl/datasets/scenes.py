"""The built-in "scenes" dataset: coloured shapes on noisy backgrounds, 80 "colour shape" labels.

Each image holds 1-4 non-overlapping shapes drawn from 8 kinds in 10 colours on a low-saturation,
mid-tone gradient with pixel noise. A label is a "colour shape" pair ("red star"), so there are
80 labels; 20 of them are unseen. The unseen pairs are chosen from the seed so that every colour
is in exactly two of them and every shape in two or three: each unseen label composes a colour
and a shape that the seen labels teach, which is what makes the zero-shot task learnable.
Every word is in the GloVe 6B vocabulary, so the packaged GloVe-50d embeds every label.

Each image's shapes are sampled uniformly over the 80 pairs, so unseen labels appear in test
images as often as seen ones (and are hidden on train rows by the user data format).

Output is a user data folder (:mod:`mlzsl.datasets.userdata`): ``images/train_00000.png``, ...,
``vocabulary.csv`` and ``labels.csv``, plus ``scenes.json`` with the parameters. Everything is a
function of the seed: image ``j`` of a split draws from ``default_rng([seed, stream, j])``,
so the bytes do not depend on the number of workers or on the other split's size.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mlzsl.datasets.userdata import LABELS_FILE, UserDataset, read_user_dataset, write_user_dataset
from mlzsl.errors import ConfigError, DataError
from mlzsl.files import atomic_write, check_writable, os_reason
from mlzsl.labels import LabelSet
from mlzsl.progress import progress

SHAPES = ("circle", "square", "triangle", "star", "cross", "heart", "diamond", "ring")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 30),
    "green": (35, 165, 55),
    "blue": (30, 70, 225),
    "yellow": (245, 220, 30),
    "orange": (245, 135, 20),
    "purple": (125, 40, 170),
    "pink": (250, 135, 195),
    "brown": (115, 65, 25),
    "black": (15, 15, 15),
    "white": (250, 250, 250),
}
N_UNSEEN = 20
PARAMS_FILE = "scenes.json"
VERSION = 1  # bump whenever the drawing changes, so older folders are regenerated
MIN_SIZE = 32
DEMO_IMAGE_SIZE = 160  # the scenes' own size: EfficientNet-Lite0 gives a 5×5 map

# seed streams: default_rng([seed, stream, j]); keys always have 3 words (SeedSequence pads short
# keys with zeros, so [s, 1] and [s, 1, 0] would give the same stream)
_VOCAB_STREAM, _SPLIT_STREAM = 1, {"train": 2, "test": 3}
_SUPERSAMPLE = 2  # shapes are drawn at 2x and box-filtered down: anti-aliased edges
_NOISE = 8  # pixel noise amplitude (grey levels)
# byte -> noise in [-_NOISE, _NOISE]; 256 is not a multiple of 17, so -8 is 1/256 likelier
_NOISE_TABLE = (np.arange(256) % (2 * _NOISE + 1) - _NOISE).astype(np.int16)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IMAGE_NAME = re.compile(r"^(train|test)_\d+\.png$")


def label_names() -> list[str]:
    """The 80 labels, "colour shape", colour-major: "red circle", "red square", ..."""
    return [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]


def scenes_label_set(seed: int = 0) -> LabelSet:
    """The 80 labels in :func:`label_names` order, 20 of them unseen (chosen from ``seed``).

    Every colour is in exactly 2 unseen labels and every shape in 2 or 3, so each colour and
    each shape also appears in at least 5 seen labels.
    """
    unseen = _choose_unseen(np.random.default_rng([seed, _VOCAB_STREAM, 0]))
    names = label_names()
    return LabelSet(tuple(names), tuple(i not in unseen for i in range(len(names))))


def _choose_unseen(rng: np.random.Generator) -> set[int]:
    """20 distinct (colour, shape) cells: each colour twice, each shape 2-3 times."""
    n_colours, n_shapes = len(COLOURS), len(SHAPES)
    while True:
        colours = np.repeat(np.arange(n_colours), N_UNSEEN // n_colours)  # [20]
        extra = rng.choice(n_shapes, N_UNSEEN - 2 * n_shapes, replace=False)
        shapes = rng.permutation(np.concatenate([np.repeat(np.arange(n_shapes), 2), extra]))
        cells = {int(c) * n_shapes + int(s) for c, s in zip(colours, shapes, strict=True)}
        if len(cells) == N_UNSEEN:  # no pair drawn twice
            return cells


# ---------------------------------------------------------------------------------------------
# one image


@dataclass(frozen=True)
class PlacedShape:
    """One shape of a scene: its label column, bounding circle (pixels) and rotation (radians)."""

    label: int
    cx: float
    cy: float
    r: float
    angle: float


def place_circles(
    rng: np.random.Generator,
    count: int,
    size: int,
    *,
    min_frac: float = 0.18,
    max_frac: float = 0.40,
    gap: float = 2.0,
    tries: int = 100,
) -> list[tuple[float, float, float]]:
    """Up to ``count`` non-overlapping circles ``(cx, cy, r)`` inside a ``size``-pixel square.

    Diameters are uniform in [min_frac, max_frac] x size and placed largest first by rejection
    sampling; a circle that does not fit shrinks by 2% per failed try down to ``min_frac``, and is
    dropped after ``tries``. Any two circles are at least ``gap`` pixels apart; the first always
    fits, so at least one circle is returned.
    """
    radii = np.sort(rng.uniform(min_frac, max_frac, count))[::-1] * size / 2
    r_min = min_frac * size / 2
    placed: list[tuple[float, float, float]] = []
    for r in radii:
        for _ in range(tries):
            cx, cy = rng.uniform(r + 1, size - r - 1, 2)
            if all(math.hypot(cx - x, cy - y) >= r + q + gap for x, y, q in placed):
                placed.append((float(cx), float(cy), float(r)))
                break
            r = max(r_min, r * 0.98)
    return placed


def sample_scene(rng: np.random.Generator, size: int) -> list[PlacedShape]:
    """1-4 shapes with distinct labels drawn uniformly from the 80, placed without overlap."""
    count = int(rng.integers(1, 5))
    labels = rng.choice(len(COLOURS) * len(SHAPES), count, replace=False)
    circles = place_circles(rng, count, size)
    angles = rng.uniform(-1.0, 1.0, len(circles))  # scaled per shape kind when drawn
    return [
        PlacedShape(int(label), cx, cy, r, float(a))
        for label, (cx, cy, r), a in zip(labels, circles, angles, strict=False)
    ]


def render_scene(rng: np.random.Generator, size: int, shapes: list[PlacedShape]) -> np.ndarray:
    """The scene as uint8 [size, size, 3]: gradient background, shapes, then pixel noise."""
    image = _background(rng, size)
    colours = list(COLOURS.values())
    for shape in shapes:
        colour_idx, kind = divmod(shape.label, len(SHAPES))
        jitter = rng.integers(-10, 11, 3)
        colour = tuple(int(v) for v in np.clip(np.add(colours[colour_idx], jitter), 0, 255))
        box, coverage = _shape_mask(SHAPES[kind], shape, size)
        image.paste(colour, box, coverage)  # blends colour over the background by coverage
    # uniform noise in [-A, A], drawn as raw bytes through a table: 4x cheaper than Gaussian
    noise = _NOISE_TABLE[np.frombuffer(rng.bytes(size * size * 3), dtype=np.uint8)]
    pixels = np.asarray(image, dtype=np.int16) + noise.reshape(size, size, 3)  # [H, W, 3]
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """Linear gradient between two mid-tone greys with a faint tint, as an RGB image.

    Grey levels 100-160 keep both black and white shapes visible; tints of at most 15 keep
    the background far less saturated than any shape colour.
    """
    ends = rng.uniform(100, 160, (2, 1)) + rng.uniform(-15, 15, (2, 3))  # [2, 3]
    theta = rng.uniform(0, 2 * math.pi)
    cos, sin = math.cos(theta), math.sin(theta)
    axis = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    # t = projection on the gradient direction, scaled to [0, 1] over the image
    t = (axis[None, :] * cos + axis[:, None] * sin) / (abs(cos) + abs(sin)) + 0.5  # [H, W]
    # one plane per channel: broadcasting over a last axis of 3 is 20x slower in numpy
    planes = [(t * float(e1 - e0) + float(e0 + 0.5)).astype(np.uint8) for e0, e1 in ends.T]
    return Image.merge("RGB", [Image.fromarray(p) for p in planes])


def _unit_heart(n: int = 48) -> np.ndarray:
    """The classic parametric heart, centred, y down, max radius 1: float [n, 2]."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], axis=1)
    pts -= (pts.max(0) + pts.min(0)) / 2
    return pts / np.linalg.norm(pts, axis=1).max()


def _star(points: int, inner: float) -> np.ndarray:
    angles = np.arange(2 * points) * math.pi / points - math.pi / 2
    radius = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _cross(arm: float = 0.95, half_width: float = 0.3) -> np.ndarray:
    a, w = arm, half_width
    return np.array(
        [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w)]
        + [(w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w)]
    )


def _regular(n: int, phase: float) -> np.ndarray:
    angles = np.arange(n) * 2 * math.pi / n + phase
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


# unit outlines (radius <= 1, y down) and how far each kind may turn (radians per unit angle):
# square, diamond, cross and heart turn a little, so a square never becomes a diamond
_OUTLINES: dict[str, tuple[np.ndarray, float]] = {
    "square": (_regular(4, math.pi / 4), 0.25),
    "triangle": (_regular(3, -math.pi / 2), math.pi),
    "star": (_star(5, 0.45), math.pi),
    "cross": (_cross(), 0.25),
    "heart": (_unit_heart(), 0.3),
    "diamond": (np.array([(0, -1), (0.62, 0), (0, 1), (-0.62, 0)]), 0.2),
}


def _shape_mask(
    kind: str, shape: PlacedShape, size: int
) -> tuple[tuple[int, int, int, int], Image.Image]:
    """Coverage of one shape over its bounding box: (box in pixels, "L" mask of the box's size).

    The mask is drawn at 2x and box-filtered down, which anti-aliases the edges.
    """
    x0, y0 = max(0, math.floor(shape.cx - shape.r) - 1), max(0, math.floor(shape.cy - shape.r) - 1)
    x1 = min(size, math.ceil(shape.cx + shape.r) + 1)
    y1 = min(size, math.ceil(shape.cy + shape.r) + 1)
    s = _SUPERSAMPLE
    mask = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s))
    _draw_shape(
        ImageDraw.Draw(mask),
        kind,
        (shape.cx - x0) * s,
        (shape.cy - y0) * s,
        shape.r * s,
        shape.angle,
    )
    return (x0, y0, x1, y1), mask.reduce(s)


def _draw_shape(
    draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, angle: float
) -> None:
    """Fill one shape of bounding radius ``r`` at (cx, cy); circle and ring are ellipses."""
    if kind in ("circle", "ring"):
        box = (cx - r, cy - r, cx + r, cy + r)
        if kind == "circle":
            draw.ellipse(box, fill=255)
        else:
            draw.ellipse(box, outline=255, width=max(2, round(0.3 * r)))
        return
    outline, turn = _OUTLINES[kind]
    a = angle * turn
    rotation = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    pts = outline @ rotation * r + (cx, cy)  # [n, 2]
    draw.polygon([(float(x), float(y)) for x, y in pts], fill=255)


def make_image(seed: int, split: str, j: int, size: int) -> tuple[np.ndarray, list[int]]:
    """Image ``j`` of ``split`` for ``seed``: (uint8 [size, size, 3], sorted label columns)."""
    rng = np.random.default_rng([seed, _SPLIT_STREAM[split], j])
    shapes = sample_scene(rng, size)
    pixels = render_scene(rng, size, shapes)
    return pixels, sorted(s.label for s in shapes)


def image_name(split: str, j: int) -> str:
    """Relative path of image ``j`` of ``split``: ``images/train_00000.png``."""
    return f"images/{split}_{j:05d}.png"


def _write_image(task: tuple[str, int, str, int, int]) -> list[int]:
    """Pool worker: draw one image, write it as PNG, return its label columns."""
    out, seed, split, j, size = task
    pixels, labels = make_image(seed, split, j, size)
    # whole or absent (a full disk leaves no half image, and says so in one line); no fsync:
    # labels.csv, written last, is what marks the folder complete
    with atomic_write(Path(out) / image_name(split, j), "wb", what="image", fsync=False) as f:
        f.write(png_bytes(pixels))
    return labels


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode uint8 [H, W, 3] as an 8-bit RGB PNG, 3x faster than PIL on noisy images.

    Every row uses the "Up" filter (difference with the row above, one numpy subtraction) and
    deflate runs Huffman-only: noise defeats string matching, so the file is as small as PIL's
    level-6 output, while PIL spends most of its time choosing a filter per row.
    """
    h, w, _ = pixels.shape
    rows = pixels.reshape(h, w * 3)  # [H, 3W]
    filtered = np.empty((h, w * 3 + 1), dtype=np.uint8)  # [H, 1 + 3W]: filter byte, then row
    filtered[:, 0] = 2  # "Up"
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # wraps mod 256, as PNG wants
    deflate = zlib.compressobj(6, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
    data = deflate.compress(filtered.tobytes()) + deflate.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


# ---------------------------------------------------------------------------------------------
# the folder


@dataclass(frozen=True)
class ScenesResult:
    """What :func:`generate_scenes` did: the dataset, whether it was reused, and how long it took.

    Attributes:
        dataset: the folder read back through :func:`~mlzsl.datasets.userdata.read_user_dataset`.
        reused: ``True`` when a complete folder with the same parameters was found and kept.
        seconds: wall time of the call.
    """

    dataset: UserDataset
    reused: bool
    seconds: float


def generate_scenes(
    out: str | Path,
    *,
    seed: int = 0,
    n_train: int = 3000,
    n_test: int = 1000,
    size: int = DEMO_IMAGE_SIZE,
    workers: int | None = None,
    show_progress: bool = True,
    force: bool = False,
) -> ScenesResult:
    """Write the scenes dataset into ``out`` as a user data folder and read it back.

    A folder whose ``scenes.json`` matches these parameters and whose files are all present is
    reused as it is. Otherwise everything is regenerated: ``labels.csv`` is removed first and
    written last, so an interrupted run leaves a folder that is visibly incomplete and that a
    rerun repairs. A folder holding a ``labels.csv`` not written by this function is refused.

    Args:
        out: the folder (created if needed).
        seed: any non-negative integer; the output bytes are a function of the parameters.
        n_train: number of train images.
        n_test: number of test images.
        size: image side in pixels (at least 32).
        workers: processes drawing images (default: ``min(2, cpu count)``); does not change
            the output.
        show_progress: show a progress bar.
        force: replace a complete scenes folder made with other parameters (without it, that
            is refused: its images would be overwritten).

    Raises:
        ConfigError: a bad parameter.
        DataError: ``out`` is a file, holds a data folder 'mlzsl scenes' did not write, or
            (without ``force``) other scenes; or it cannot be written (one line, e.g. a full
            disk).
    """
    start = time.perf_counter()
    params = _params(seed, n_train, n_test, size)
    splits = [("train", n_train), ("test", n_test)]
    out = Path(out)
    if _is_complete(out, params, splits):
        return ScenesResult(read_user_dataset(out), True, time.perf_counter() - start)
    _prepare(out, params, force)
    label_set = scenes_label_set(seed)
    tasks = [(str(out), seed, split, j, size) for split, n in splits for j in range(n)]
    labels = _run_tasks(tasks, workers or min(2, os.cpu_count() or 1), show_progress)
    _remove_stale_images(out, {image_name(t[2], t[3]) for t in tasks})
    with atomic_write(out / PARAMS_FILE, what=PARAMS_FILE) as f:
        f.write(json.dumps(params, indent=2) + "\n")
    rows = [
        (image_name(split, j), split, [label_set.names[c] for c in columns])
        for (_, _, split, j, _), columns in zip(tasks, labels, strict=True)
    ]
    write_user_dataset(out, label_set, rows)  # labels.csv last: the folder is now complete
    return ScenesResult(read_user_dataset(out), False, time.perf_counter() - start)


def _params(seed: int, n_train: int, n_test: int, size: int) -> dict[str, object]:
    if seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    if n_train < 1 or n_test < 1:
        raise ConfigError(f"need at least 1 train and 1 test image, got {n_train} and {n_test}")
    if size < MIN_SIZE:
        raise ConfigError(f"image size must be at least {MIN_SIZE} pixels, got {size}")
    return {
        "dataset": "mlzsl scenes",
        "version": VERSION,
        "seed": seed,
        "n_train": n_train,
        "n_test": n_test,
        "size": size,
    }


def _read_params(out: Path) -> dict[str, object] | None:
    try:
        params = json.loads((out / PARAMS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return params if isinstance(params, dict) else None


def _is_complete(out: Path, params: dict[str, object], splits: list[tuple[str, int]]) -> bool:
    """Whether ``out`` already holds exactly this dataset (parameters match, files present)."""
    if _read_params(out) != params or not (out / LABELS_FILE).is_file():
        return False
    return all((out / image_name(s, j)).is_file() for s, n in splits for j in range(n))


def _prepare(out: Path, params: dict[str, object], force: bool) -> None:
    """Make ``out`` ready for regeneration: refuse foreign data and (without ``force``) other
    complete scenes, check it can be written, then drop the completion mark."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    old = _read_params(out)
    if (out / LABELS_FILE).exists() and old is None:
        raise DataError(
            f"{out}: holds a {LABELS_FILE} that 'mlzsl scenes' did not write; "
            "choose an empty or new folder"
        )
    if (out / LABELS_FILE).exists() and old is not None and old != params and not force:
        differs = ", ".join(
            f"{key} {old.get(key)} (this run: {value})"
            for key, value in params.items()
            if old.get(key) != value
        )
        raise DataError(
            f"{out}: holds other scenes ({differs}); pass --force to replace them or choose "
            "another --out"
        )
    check_writable(out, "scenes folder")
    try:
        (out / LABELS_FILE).unlink(missing_ok=True)
        (out / PARAMS_FILE).unlink(missing_ok=True)
        (out / "images").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{out}: cannot write the scenes folder ({os_reason(e)})") from None


def _run_tasks(
    tasks: list[tuple[str, int, str, int, int]], workers: int, show_progress: bool
) -> list[list[int]]:
    """Run :func:`_write_image` over ``tasks`` in order, in ``workers`` processes."""
    bar = progress(total=len(tasks), desc="scenes", unit="img", disable=not show_progress)
    labels: list[list[int]] = []
    with bar:
        for result in _map(tasks, workers):
            labels.append(result)
            bar.update(1)
    return labels


def _map(tasks: list[tuple[str, int, str, int, int]], workers: int) -> Iterator[list[int]]:
    if workers <= 1:
        yield from map(_write_image, tasks)
        return
    with multiprocessing.get_context().Pool(workers) as pool:
        yield from pool.imap(_write_image, tasks, chunksize=16)


def _remove_stale_images(out: Path, keep: set[str]) -> None:
    """Delete generated images of an earlier, larger run (only files named like ours)."""
    for path in (out / "images").iterdir():
        if _IMAGE_NAME.match(path.name) and f"images/{path.name}" not in keep:
            path.unlink()
