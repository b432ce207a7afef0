"""Extraction throughput against the backbone's forward pass alone, on the same images.

    python benchmarks/bench_extract.py [--n 512] [--size 160] [--threads 2] [--workers 2]
                                       [--rounds 2] [--profile]

Both figures come from one run on one machine, so their ratio is meaningful even when the
machine is noisy: ``extract`` (decode in DataLoader workers + forward + block files + store
assembly, end to end, model load included) versus ``forward`` (the same backbone on the same
images already decoded into memory, same batch size and threads). Each is measured ``--rounds``
times, alternating, and the best kept (a shared machine only ever slows a run down).

``--profile`` also runs one extraction with the decoding in this process (``workers=0``) under
cProfile and prints the seconds spent in each stage: model load, decode, forward, block files,
store assembly, and the rest (job set-up, fingerprint, parts folder).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mlzsl.backbones import DEFAULT_BACKBONE, create_backbone
from mlzsl.datasets.scenes import generate_scenes
from mlzsl.datasets.userdata import read_user_dataset
from mlzsl.images import load_image
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


# stage -> the function whose cumulative time it is (module file name, function name)
STAGES = {
    "model load": ("__init__.py", "create_backbone"),
    "decode": ("images.py", "load_image"),
    "forward": ("extract.py", "_forward"),
    "block files": ("parts.py", "save_part"),
    "store assembly": ("extract.py", "_assemble"),
}


def profile_stages(data: Path, out: Path, args: argparse.Namespace) -> dict[str, float]:
    """Seconds per stage of one extraction decoding in this process (``workers=0``)."""
    profiler = cProfile.Profile()
    profiler.enable()
    extract(data, out, args, workers=0)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    (total,) = [ct for (f, _, name), (*_, ct, _) in stats.items() if name == "extract_features"]
    seconds = {
        stage: sum(ct for (f, _, name), (*_, ct, _) in stats.items() if (Path(f).name, name) == key)
        for stage, key in STAGES.items()
    }
    return {**seconds, "rest": total - sum(seconds.values()), "total": total}


def extract(data: Path, out: Path, args: argparse.Namespace, workers: int) -> None:
    """One ``extract_features`` run with the bench's backbone, size and batch."""
    extract_features(
        data,
        out,
        backbone=args.backbone,
        image_size=args.size,
        batch_size=args.batch_size,
        workers=workers,
        show_progress=False,
    )


def time_extract(data: Path, out: Path, args: argparse.Namespace) -> float:
    """Images/s of ``extract_features`` end to end, model load and assembly included."""
    start = time.perf_counter()
    extract(data, out, args, workers=args.workers)
    return args.n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="images")
    parser.add_argument("--size", type=int, default=160, help="image side in px")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--rounds", type=int, default=2, help="each measurement this often")
    parser.add_argument("--profile", action="store_true", help="time each stage (cProfile)")
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
        extracts, forwards = [], []
        for r in range(args.rounds):
            extracts.append(time_extract(data, Path(tmp) / f"s{r}.h5", args))
            forwards.append(forward_only(data, args.backbone, args.size, args.batch_size))
        extract, forward = max(extracts), max(forwards)
        stages = profile_stages(data, Path(tmp) / "profiled.h5", args) if args.profile else {}
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
        "stages_s": {k: round(v, 2) for k, v in stages.items()},
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
    print(f"  ratio extract/forward: {extract / forward:.2f}   (best of {args.rounds} rounds)")
    if stages:
        print(f"profile, decoding in the process (workers=0), {stages['total']:.1f} s in all:")
        for stage, seconds in stages.items():
            if stage != "total":
                share, per_image = seconds / stages["total"], 1e3 * seconds / args.n
                print(f"  {stage:15s} {seconds:6.2f} s  {share:4.0%}  {per_image:6.1f} ms/img")


if __name__ == "__main__":
    main()
