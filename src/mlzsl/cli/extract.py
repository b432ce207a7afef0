"""``mlzsl extract DIR --out STORE.h5``: image folder -> feature store.

Big datasets: ``--shard I/N`` on N machines (or processes) sharing one filesystem, each computing
every N-th block; or ``torchrun --nproc_per_node K -m mlzsl extract ...`` on one machine, one rank
per GPU. Images listed in ``DIR/excluded.tsv`` (from ``mlzsl data verify``) are skipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mlzsl.cli import add_runtime_argument, positive_int

if TYPE_CHECKING:
    from mlzsl.store.extract import ExtractionSummary

NAME = "extract"
HELP = "extract backbone feature maps of a data folder into an HDF5 feature store (resumable)"


def shard_spec(text: str) -> tuple[int, int]:
    """argparse type: ``I/N`` with 0 ≤ I < N, e.g. ``0/4``."""
    index, slash, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 0/4, got {text!r}") from None
    if not slash or not 0 <= shard[0] < shard[1]:
        raise argparse.ArgumentTypeError(f"expected I/N with 0 ≤ I < N, got {text!r}")
    return shard


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl extract``."""
    parser.add_argument(
        "data_dir", type=Path, help="folder with vocabulary.csv, labels.csv, images"
    )
    parser.add_argument("--out", type=Path, required=True, help="the store to write (.h5)")
    parser.add_argument(
        "--backbone",
        default=None,
        help="efficientnet_lite0 (default), efficientnet_lite2, vgg19 (the peers' conv5_4), "
        "vgg19_bn_pyramid, or pixels (normalised images, for ml2p_official)",
    )
    parser.add_argument("--weights", default=None, help="backbone weights: a path, URL or 'random'")
    parser.add_argument("--image-size", type=positive_int, default=None, help="input side in px")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per forward")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="torch only: image-decoding worker processes (onnxruntime decodes on its threads)",
    )
    parser.add_argument(
        "--shard",
        type=shard_spec,
        default=None,
        metavar="I/N",
        help="compute only blocks b with b %% N == I (all shards must see --out at the same "
        "path on a shared filesystem); under torchrun each rank is a shard already",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (GPU when CUDA is available; cuda:LOCAL_RANK under torchrun), cpu, cuda, cuda:K",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace a store at --out made from other data, another backbone or image size",
    )
    add_runtime_argument(parser, exported="the backbone")


def run(args: argparse.Namespace) -> int:
    """Run the extraction and print a summary (under torchrun, rank 0 only)."""
    from mlzsl.backbones import DEFAULT_BACKBONE
    from mlzsl.runtime import set_threads
    from mlzsl.store.extract import extract_features

    set_threads(args.threads)
    summary = extract_features(
        args.data_dir,
        args.out,
        backbone=args.backbone or DEFAULT_BACKBONE,
        weights=args.weights,
        image_size=args.image_size,
        batch_size=args.batch_size,
        workers=args.workers,
        shard=args.shard,
        device=args.device,
        force=args.force,
        runtime=args.runtime,
        threads=args.threads,
    )
    if summary.is_main:
        print("\n".join(describe(summary)))
    return 0


def describe(summary: ExtractionSummary) -> list[str]:
    """The lines ``mlzsl extract`` prints for ``summary``."""
    shard = "shard {}/{} done".format(*summary.shard) if summary.shard else "done"
    if summary.blocks_missing:
        return [
            f"{shard}: {summary.blocks_missing} blocks still missing; rerun `mlzsl extract` "
            "(without --shard) once all shards finish, or let the last shard assemble"
        ]
    if summary.assembling_elsewhere:
        return [f"{shard}: all blocks present; another process is assembling {summary.store}"]
    if summary.up_to_date:
        lines = [f"{summary.store}: up to date ({summary.n_written} images)"]
    else:
        reused = f", {summary.blocks_reused} blocks resumed" if summary.blocks_reused else ""
        lines = [
            f"{summary.store}: {summary.n_written} images written, "
            f"{len(summary.skipped)} skipped{reused} in {summary.seconds:.1f} s "
            f"({summary.images_per_second:.1f} img/s)"
        ]
    if summary.skipped:
        lines.append(f"skipped files listed in {summary.report}")
    return lines
