#!/usr/bin/env bash
# Creates the Python environment that regenerates the reference fixtures under tests/fixtures/clip
# (tests/reference/clip_fixtures.py, tests/reference/mm_adapter_reference.py). CI does not need it:
# the fixtures are committed, and the C++ tests compare against them without PyTorch.
#   scripts/reference-venv.sh [DIR]     (default build/venv-ref)
#   DIR/bin/python tests/reference/clip_fixtures.py ../shared/data tests/fixtures/clip
#   DIR/bin/python tests/reference/mm_adapter_reference.py ../shared/data tests/fixtures/clip
# The fixtures record the Pillow / torch / transformers versions that made them; pixels decoded
# by another Pillow (another libjpeg) may differ slightly. It also holds the peers the training
# benchmark alternates with (bench/compare_pytorch.sh PEERS="peft-eager peft-compile": peft), and
# the tools whose adapter files tests/fixtures/interchange holds (peft, litgpt):
#   DIR/bin/python tests/reference/make_peer_adapter_fixtures.py tests/fixtures/interchange
set -euo pipefail
venv="${1:-build/venv-ref}"
python3 -m venv "$venv"
"$venv/bin/pip" install --upgrade pip
"$venv/bin/pip" install torch transformers peft pillow numpy safetensors sentencepiece
# litgpt pins huggingface-hub below 1.4, which would take transformers 5 down with it; litgpt's
# model, adapter and converters do not use the hub, so it comes without its pins.
"$venv/bin/pip" install --no-deps litgpt
"$venv/bin/pip" install "lightning>=2.6.1" "jsonargparse[signatures]>=4.37,<=4.41" tqdm
echo "reference venv ready: $venv/bin/python"
