"""Tagging on onnxruntime (``mlzsl export`` + ``mlzsl tag --onnx``) against torch, one run.

    python benchmarks/bench_onnx.py [--checkpoint photo] [--threads 2] [--images 64]

Measured on the same machine in the same run, so the ratios hold even when the machine is noisy:

- **throughput**: images/s of the whole tagging path (backbone + head against 20 label vectors)
  at batch 1 and 32, on the same pre-decoded pixels (384 × 512, a 4:3 photo at the ``photo``
  model's shorter side of 384 px): ``Tagger.score_pixels`` (torch, inference mode) against
  ``OnnxTagger.score_pixels`` (onnxruntime, CPU provider), same number of threads;
- **cold start**: wall time of a fresh ``mlzsl tag ONE_IMAGE --labels ...`` process, torch path
  against ``--onnx`` path, label vectors already cached on disk (median of 3);
- **install size**: bytes on disk of the packages each path needs beyond numpy and Pillow
  (``torch`` against ``onnxruntime``), read from the installed distributions' file lists.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mlzsl.inference.export import export_checkpoint
from mlzsl.inference.onnx_runtime import OnnxTagger
from mlzsl.inference.tagger import Tagger

LABELS = [
    "dog", "cat", "person", "car", "bicycle", "pizza", "cup", "tree", "bird", "boat",
    "chair", "table", "bottle", "horse", "train", "airplane", "clock", "book", "phone", "bus",
]  # fmt: skip


def images_per_second(score, pixels: np.ndarray, batch: int, n_images: int) -> float:
    """Images/s of ``score(batch of pixels)`` over at least ``n_images`` images, after a warm-up."""
    chunk = pixels[:batch]
    score(chunk)  # warm-up
    done, start = 0, time.perf_counter()
    while done < n_images:
        score(chunk)
        done += batch
    return done / (time.perf_counter() - start)


def cold_start(args: list[str], repeats: int = 3) -> float:
    """Median wall seconds of a fresh ``mlzsl`` process running ``args``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mlzsl", *args], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def installed_megabytes(*distributions: str) -> float:
    """Bytes on disk of the files the named installed distributions list, in MB."""
    total = 0
    for name in distributions:
        for file in metadata.distribution(name).files or []:
            path = Path(str(file.locate()))
            if path.is_file():
                total += path.stat().st_size
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="photo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=64, help="images timed per measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.onnx"
        started = time.perf_counter()
        export_checkpoint(args.checkpoint, model)
        export_seconds = time.perf_counter() - started
        tagger = Tagger.from_checkpoint(args.checkpoint, runtime="torch")
        runtime = OnnxTagger(model, threads=args.threads)
        vectors = tagger.label_vectors(LABELS)
        rng = np.random.default_rng(0)
        pixels = rng.normal(size=(32, 3, 384, 512)).astype(np.float32)
        results: dict[str, dict[str, float]] = {}
        for batch in (1, 32):
            with torch.inference_mode():
                torch_rate = images_per_second(
                    lambda x: tagger.score_pixels(x, vectors),
                    pixels,
                    batch,
                    args.images,
                )
            onnx_rate = images_per_second(
                lambda x: runtime.score_pixels(x, vectors), pixels, batch, args.images
            )
            results[f"batch {batch}"] = {
                "torch_img_s": torch_rate,
                "onnxruntime_img_s": onnx_rate,
                "ratio": onnx_rate / torch_rate,
            }
        photo = Path(tmp) / "photo.jpg"
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(photo)
        labels = ", ".join(LABELS)
        tag = ["tag", str(photo), "--labels", labels, "--threads", str(args.threads)]
        cold_torch = cold_start([*tag, "--checkpoint", args.checkpoint])
        cold_onnx = cold_start([*tag, "--onnx", str(model)])
        print(
            json.dumps(
                {
                    "checkpoint": args.checkpoint,
                    "threads": args.threads,
                    "pixels": "384x512",
                    "labels": len(LABELS),
                    "throughput": results,
                    "cold_start_s": {"torch": cold_torch, "onnx": cold_onnx},
                    "install_mb": {
                        "torch": installed_megabytes("torch"),
                        "onnxruntime": installed_megabytes("onnxruntime"),
                    },
                    "onnx_file_mb": model.stat().st_size / 1e6,
                    "export_s": export_seconds,
                    "versions": {
                        "torch": torch.__version__,
                        "onnxruntime": metadata.version("onnxruntime"),
                    },
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
