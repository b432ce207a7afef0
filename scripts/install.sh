#!/usr/bin/env bash
# Install mlzsl into ./.venv (created if absent), choosing the right torch build first.
#
#   bash scripts/install.sh          # the library and CLI
#   bash scripts/install.sh test     # plus the test tools (pytest, hypothesis, ruff, mypy, ...)
#
# torch: an already-installed torch is kept (install your CUDA build first on a GPU machine).
# Otherwise a machine without an NVIDIA driver gets torch==2.13.0 from the index pip is
# configured with, or from MLZSL_TORCH_INDEX when set (e.g. PyTorch's CPU wheel index);
# a machine with `nvidia-smi` gets pip's default torch build, which carries CUDA on Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${pip[@]}" "torch>=2.1"
  elif [ -n "${MLZSL_TORCH_INDEX:-}" ]; then
    "${pip[@]}" "torch==2.13.0" --index-url "$MLZSL_TORCH_INDEX"
  else
    "${pip[@]}" "torch==2.13.0"
  fi
fi

if [ -n "$extras" ]; then
  "${pip[@]}" -e ".[$extras]"
else
  "${pip[@]}" -e .
fi
echo "mlzsl installed in $(pwd)/.venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
