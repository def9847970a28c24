#!/usr/bin/env bash
# Sets up, builds, and runs the embedded default end to end (see README): synthetic data, a
# learned tokenizer, a small random LLaMA, a LLaMA-Adapter fine-tune with evaluation and samples.
#   scripts/demo.sh [--dir runs/demo] [--steps 300] [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" --target llama-adapter
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
exec build/bin/llama-adapter demo "$@"
