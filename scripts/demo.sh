#!/usr/bin/env bash
# Sets up, builds, and runs the embedded default end to end (see README, "What the demo shows"):
# a made-up world, a small LLaMA pre-trained on it, a LLaMA-Adapter and full fine-tuning compared.
#   scripts/demo.sh [--dir runs/demo] [--pretrain-steps 300] [--seed 1] [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" --target llama-adapter
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
exec build/bin/llama-adapter demo "$@"
