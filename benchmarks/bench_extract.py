"""Extraction throughput against the backbone's forward pass alone, on the same images.

    python benchmarks/bench_extract.py [--n 512] [--size 160] [--threads 2] [--workers 2]

Both figures come from one run on one machine, so their ratio is meaningful even when the
machine is noisy: ``extract`` (decode in DataLoader workers + forward + block files + store
assembly, end to end, model load included) versus ``forward`` (the same backbone on the same
images already decoded into memory, same batch size and threads).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mlzsl.backbones import DEFAULT_BACKBONE, create_backbone
from mlzsl.backbones.images import load_image
from mlzsl.datasets.scenes import generate_scenes
from mlzsl.datasets.userdata import read_user_dataset
from mlzsl.store.extract import extract_features


def forward_only(data: Path, backbone: str, size: int, batch: int) -> float:
    """Images/s of the backbone alone on pre-decoded images (channels_last, as extraction)."""
    model = create_backbone(backbone, image_size=size).eval()
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    dataset = read_user_dataset(data)
    mean, std = np.asarray(model.spec.mean, np.float32), np.asarray(model.spec.std, np.float32)
    pixels = torch.from_numpy(
        np.stack([load_image(dataset.path(i), size, mean, std) for i in range(len(dataset))])
    ).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(pixels[:batch])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(pixels), batch):
            model(pixels[i : i + batch])
        return len(pixels) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="images")
    parser.add_argument("--size", type=int, default=160, help="image side in px")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "scenes"
        generate_scenes(
            data,
            n_train=args.n // 2,
            n_test=args.n - args.n // 2,
            size=args.size,
            show_progress=False,
        )
        start = time.perf_counter()
        extract_features(
            data,
            Path(tmp) / "s.h5",
            backbone=args.backbone,
            image_size=args.size,
            batch_size=args.batch_size,
            workers=args.workers,
            show_progress=False,
        )
        extract = args.n / (time.perf_counter() - start)
        forward = forward_only(data, args.backbone, args.size, args.batch_size)
    result = {
        "backbone": args.backbone,
        "images": args.n,
        "size": args.size,
        "threads": args.threads,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "extract_img_per_s": round(extract, 1),
        "forward_img_per_s": round(forward, 1),
        "extract_over_forward": round(extract / forward, 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.backbone} at {args.size} px, batch {args.batch_size}, {args.threads} threads, "
        f"{args.workers} decode workers, {args.n} images"
    )
    print(f"  extract (end to end): {extract:7.1f} img/s")
    print(f"  forward pass alone:   {forward:7.1f} img/s")
    print(f"  ratio extract/forward: {extract / forward:.2f}")


if __name__ == "__main__":
    main()
