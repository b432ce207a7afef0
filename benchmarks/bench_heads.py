"""Training and inference throughput of the model heads, with achieved GFLOP/s vs the matmul peak.

    python benchmarks/bench_heads.py [--threads 2] [--batch 64] [--models ml2p fast0tag ...]

On the demo's sizes (EfficientNet-Lite0 maps 1280×5×5, GloVe-50 vectors; 60 seen labels in
training, 80 labels at inference), each model is timed for a training step (forward, ranking
loss, backward, Adam) and for an inference forward. FLOPs come from torch's FlopCounterMode
(a training step is counted as 3 × its forward);
the peak is a float32 1024×1024 matrix multiply timed in the same run with the same threads
(the better of one timing before and one after the models), so every ratio printed is from one
run on one machine.
"""

from __future__ import annotations

import argparse
import json

import torch

from mlzsl.bench import matmul_peak, parse_spec, speed_one


def bench_model(spec: str, args: argparse.Namespace) -> dict[str, float]:
    """Training and inference figures of one model spec (see ``mlzsl.bench.speed_one``)."""
    name, options = parse_spec(spec)
    shape = (args.channels, args.side, args.side)
    return speed_one(
        name,
        shape=shape,
        embed_dim=args.embed_dim,
        batch=args.batch,
        seen=args.seen,
        labels=args.labels,
        repeat=args.repeat,
        **options,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["ml2p", "ml2p:position_pooling=scores,attention_residual=true", "fast0tag"],
        help="model specs NAME[:key=value,...]",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1280)
    parser.add_argument("--side", type=int, default=5)
    parser.add_argument("--embed-dim", type=int, default=50)
    parser.add_argument("--seen", type=int, default=60)
    parser.add_argument("--labels", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_peak()
    results = {name: bench_model(name, args) for name in args.models}
    peak = max(peak, matmul_peak())  # before and after: the less disturbed of the two
    if args.json:
        print(json.dumps({"matmul_peak_gflop_per_s": peak, "models": results}))
        return
    print(
        f"float32 matmul peak: {peak:.1f} GFLOP/s ({args.threads} threads); batch {args.batch}, "
        f"features {args.channels}×{args.side}×{args.side}, E={args.embed_dim}"
    )
    width = max(len(name) for name in results)
    head = (
        f"{'model':{width}} {'params':>10} {'train img/s':>12} {'train GF/s':>11} {'% peak':>7} "
        f"{'infer img/s':>12} {'infer GF/s':>11} {'% peak':>7} {'MFLOP/img':>10}"
    )
    print(head)
    for name, r in results.items():
        print(
            f"{name:{width}} {r['parameters']:>10,} {r['train_img_per_s']:>12.0f} "
            f"{r['train_gflop_per_s']:>11.1f} {100 * r['train_gflop_per_s'] / peak:>6.0f}% "
            f"{r['infer_img_per_s']:>12.0f} {r['infer_gflop_per_s']:>11.1f} "
            f"{100 * r['infer_gflop_per_s'] / peak:>6.0f}% {r['infer_mflop_per_img']:>10.1f}"
        )


if __name__ == "__main__":
    main()
