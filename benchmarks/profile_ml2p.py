"""Where the (ML)²P head's time goes at NUS-WIDE sizes, and what the channels-last rewrite gained.

    python benchmarks/profile_ml2p.py [--threads 1] [--batch 32] [--input-pool 2] [--train]

VGG19 conv5_4 maps 512×14×14, E = 300, G = 7, random weights. Prints, from one run:

1. the float32 matmul peak (``mlzsl.bench.matmul_peak``) and the same n×n×n product as a 1×1
   convolution (oneDNN), since the head's GEMMs run through oneDNN, not through torch.matmul;
2. ms/img and fraction of the matmul peak of the head's forward (or training step with
   ``--train``: forward, ranking loss on 925 seen labels, backward, Adam) in today's
   formulation and in the one it replaced (``reference_ml2p`` of tests/test_head_speed.py),
   timed interleaved, best of ``--repeat``;
3. torch.profiler's table of today's formulation: which ops take the time.

It imports the reference from the tests package of this checkout.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from mlzsl.bench import count_flops, matmul_peak
from mlzsl.models import create_model
from mlzsl.models._layers import best_vector_scores
from mlzsl.training.losses import ranking_loss

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests/
from tests.test_head_speed import reference_ml2p  # noqa: E402


def conv_peak(n: int = 1024, repeat: int = 10) -> float:
    """GFLOP/s of the n×n×n product as a 1×1 convolution over an n-position map (oneDNN)."""
    x, w = torch.randn(1, n, 32, n // 32), torch.randn(n, n, 1, 1)
    with torch.no_grad():
        return 2 * n**3 / interleaved({"conv": lambda: F.conv2d(x, w)}, repeat)["conv"] / 1e9


def interleaved(calls: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall time of each call, the calls taking turns (a noisy machine hits all alike)."""
    for call in calls.values():
        call()
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeat):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--input-pool", type=int, default=2)
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", type=int, default=15, help="profiler table rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(
        "ml2p", in_channels=512, embed_dim=300, num_positions=196, input_pool=args.input_pool
    )
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(args.batch, 512, 14, 14, generator=g).relu()  # [B, C, H, W]
    seen = torch.randn(925, 300, generator=g)  # NUS-WIDE: 925 seen tags
    targets = (torch.rand(args.batch, 925, generator=g) < 0.01).to(torch.int8) * 2 - 1
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)

    def run(embed: Callable[[torch.Tensor], torch.Tensor]) -> None:
        if not args.train:
            with torch.no_grad():
                embed(feats)
            return
        scores = best_vector_scores(embed(feats), seen, normalize=True)  # [B, 925]
        loss = ranking_loss(scores, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.train(args.train)
    flops = count_flops(lambda: model.forward_embeddings(feats)) * (3 if args.train else 1)
    peak, onednn = matmul_peak(), conv_peak()
    best = interleaved(
        {
            "today": lambda: run(model.forward_embeddings),
            "before issue 13": lambda: run(lambda f: reference_ml2p(model, f)),
        },
        args.repeat,
    )
    peak = max(peak, matmul_peak())
    what = "training step" if args.train else "inference"
    print(
        f"ml2p {what}, P = {196 // args.input_pool**2}, batch {args.batch}, {args.threads} "
        f"thread(s): matmul peak {peak:.0f} GFLOP/s, 1×1 conv (oneDNN) {onednn:.0f} GFLOP/s, "
        f"{flops / args.batch / 1e9:.2f} GFLOP/img"
    )
    for name, seconds in best.items():
        share = flops / seconds / 1e9 / peak
        print(f"  {name:16} {1000 * seconds / args.batch:7.1f} ms/img  {share:.2f} of peak")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            run(model.forward_embeddings)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
