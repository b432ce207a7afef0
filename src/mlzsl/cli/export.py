"""``mlzsl export --checkpoint CKPT|NAME --out model.onnx``: the tagging path as ONNX.

See :mod:`mlzsl.inference.export`; ``mlzsl tag --onnx model.onnx`` tags with the file, without
torch. Needs the ``export`` extra (``pip install 'mlzsl[export]'``: onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "export"
HELP = "export a checkpoint's tagging path (pixels + label vectors -> scores) to ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlzsl export``."""
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="a checkpoint (.pt) or a name: photo (default), photo-fast, photo-glove or demo",
    )
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--embedder", default=None, help="override the checkpoint's embedder")
    parser.add_argument(
        "--force", action="store_true", help="let --out replace a file that is no mlzsl export"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    """Export and say where the file is."""
    from mlzsl.cli._common import print_json
    from mlzsl.files import check_replace, check_writable
    from mlzsl.inference.export import export_checkpoint, is_mlzsl_export, require_onnx

    require_onnx()  # the one-line install hint before any model is loaded
    # before any work: an mlzsl export may be replaced, a checkpoint or a store never silently
    check_replace(args.out, what="mlzsl ONNX export", own=is_mlzsl_export, force=args.force)
    check_writable(args.out.parent, "ONNX file")
    card = export_checkpoint(args.checkpoint or "photo", args.out, embedder=args.embedder)
    size = args.out.stat().st_size / 1e6
    if args.json:
        print_json({"out": str(args.out), "megabytes": size, "card": card})
    else:
        print(f"{card['name']} ({card['model']}) exported to {args.out} ({size:.1f} MB)")
        print(f"tag with it, no torch needed: mlzsl tag PHOTO... --onnx {args.out} --labels '...'")
    return 0
