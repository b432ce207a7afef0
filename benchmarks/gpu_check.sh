#!/usr/bin/env bash
# GPU check, on a machine with an NVIDIA GPU (≤ 10 minutes, most of it installing):
#   1. install into ./.venv with scripts/install.sh (test extras) and make sure torch is a CUDA build;
#   2. run the test suite's GPU-marked tests (pytest -m gpu: CUDA equals the CPU, bf16 steps finite);
#   3. generate 384 scenes images and extract them on the GPU (mlzsl extract --device cuda);
#   4. time ml2p head training steps at NUS-WIDE sizes (VGG19 conv5_4 maps 512×14×14, E = 300,
#      925 seen labels, batch 96) in float32 and under bf16 autocast (amp: bf16), and print a table.
#
#   bash benchmarks/gpu_check.sh               # install first
#   bash benchmarks/gpu_check.sh --no-install  # use ./.venv as it is (no network needed)
#
# torch: scripts/install.sh keeps a torch that is already in .venv. If that one is a CPU build
# (version "+cpu", e.g. a .venv made on a CPU machine, where install.sh pins torch==2.13.0), this
# script replaces it with the same version from the index pip is configured with, whose Linux
# wheels carry CUDA, or from MLZSL_TORCH_INDEX when that is set (e.g. PyTorch's CUDA wheel index).
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
case "${1:-}" in
  --no-install) install=0 ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--no-install]" >&2; exit 2 ;;
esac
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none); nothing to check" >&2
  exit 2
fi
py=.venv/bin/python
stage() { printf '\n== %s (%ss so far)\n' "$1" "$SECONDS"; }

stage "1. install"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ "$install" = 1 ]; then
  bash scripts/install.sh test
  if ! "$py" -c 'import sys, torch; sys.exit(torch.version.cuda is None)'; then
    version="$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')"
    echo "torch $version in .venv is a CPU build: installing the CUDA build of torch==$version"
    index=()
    [ -n "${MLZSL_TORCH_INDEX:-}" ] && index=(--index-url "$MLZSL_TORCH_INDEX")
    "$py" -m pip uninstall --quiet --yes torch
    "$py" -m pip install --quiet --disable-pip-version-check "torch==$version" ${index[@]+"${index[@]}"}
  fi
fi
"$py" - <<'PY'
import sys

import torch

if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PY

stage "2. GPU-marked tests"
"$py" -m pytest -q -p no:cacheprovider -m gpu -rs tests/

stage "3. extraction of scenes images on the GPU"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export MLZSL_NO_PROGRESS=1
.venv/bin/mlzsl data scenes --out "$work/scenes" --train 256 --test 128 >/dev/null
start=$(date +%s.%N)
.venv/bin/mlzsl extract "$work/scenes" --out "$work/scenes.h5" --device cuda --workers 4 \
  --batch-size 64
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { printf "384 images in %.1f s end to end (process start and model load included): %.0f img/s\n", e - s, 384 / (e - s) }'

stage "4. ml2p head training at NUS-WIDE sizes, float32 and bf16 autocast"
"$py" - <<'PY'
import time

import torch

from mlzsl.config import load_config
from mlzsl.training.engine import autocast, make_optimizer
from mlzsl.training.losses import ranking_loss
from mlzsl.models import create_model

# NUS-WIDE (the LESA/BiAM protocol): 925 seen labels, GloVe-300 vectors, VGG19 conv5_4 maps
# 512×14×14; batch 96 and Adam at lr 5e-5 are the (ML)²P release's (configs/nus_wide/ml2p.yaml)
B, C, H, W, E, L = 96, 512, 14, 14, 300, 925
device = torch.device("cuda")
g = torch.Generator(device=device).manual_seed(0)
features = torch.randn(B, C, H, W, device=device, generator=g).relu()
vectors = torch.randn(L, E, device=device, generator=g)
targets = (torch.rand(B, L, device=device, generator=g) < 0.02).long() * 2 - 1  # ~18 positives


def time_steps(amp: bool | str, positions: int, steps: int = 30) -> tuple[float, float]:
    """ms per training step and peak memory (GiB) of ml2p at these sizes."""
    config = load_config(None, ["model=ml2p", f"amp={'bf16' if amp else 'false'}", "lr=5e-5"])
    torch.manual_seed(0)
    model = create_model("ml2p", in_channels=C, embed_dim=E, num_positions=positions).to(device)
    optimizer = make_optimizer(config, model.parameters())
    x = features if positions == H * W else torch.nn.functional.max_pool2d(features, 2)

    def step() -> None:
        with autocast(config, device):
            scores = model(x, vectors)  # [B, L]
        loss = ranking_loss(scores.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):  # warm-up: cuDNN algorithm choice, allocator
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - start) / steps, torch.cuda.max_memory_allocated() / 2**30


tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
print(f"ml2p training step, batch {B}, maps {C}×{H}×{W}, E = {E}, {L} labels")
print(f"torch defaults: TF32 in cuDNN convolutions {tf32[0]}, in matmuls {tf32[1]}")
print(f"{'positions':>10} {'amp':>8} {'ms/step':>9} {'img/s':>8} {'peak GiB':>9} {'speed-up':>9}")
for positions in (H * W, H * W // 4):  # P = 196 (conv5_4) and P = 49 (2×2 max-pooled, pool5)
    base = None
    for amp in (False, "bf16"):
        ms, gib = time_steps(amp, positions)
        base = base or ms
        print(f"{positions:>10} {str(amp):>8} {ms:9.1f} {1e3 * B / ms:8.0f} {gib:9.2f} {base / ms:8.2f}×")
PY
stage "done"
