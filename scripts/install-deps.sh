#!/usr/bin/env bash
# Installs the Debian 12 packages llama-adapter needs to build, test and benchmark.
set -euo pipefail
pkgs=(
  build-essential cmake g++ pkg-config
  ccache                      # CI builds the tree twice; unchanged files come from the cache
  clang-format                # scripts/format.sh (the house style in .clang-format)
  libopenblas-openmp-dev      # BLAS (sgemm) sharing our OpenMP thread pool
  libsentencepiece-dev        # SentencePiece .model tokenizers
  nlohmann-json3-dev          # JSON: config.json, safetensors headers, Alpaca data, metrics
  libcli11-dev                # command-line parsing with sub-commands and --help
  libfmt-dev                  # formatting
  libjpeg62-turbo-dev         # JPEG decoding (libjpeg-turbo: the library PIL decodes JPEG with)
  libpng-dev                  # PNG decoding
  libgtest-dev libgmock-dev   # tests
  libbenchmark-dev            # micro-benchmarks
  libcpp-httplib-dev          # the HTTP server of `serve`
  libpcre2-dev                # byte-level BPE pre-tokenizers (Llama-3, GPT-2, Qwen2 vocabularies)
  openmpi-bin libopenmpi-dev  # data-parallel training over machines (mpirun -np N llama-adapter finetune)
  iproute2                    # tests/test_mpi.cpp: ranks in two network namespaces of their own
  python3-jinja2              # chat-template fixtures (tests/reference/chat_template_fixtures.py)
  python3-venv                # tests/clients/run.sh: a venv for the openai SDK and selenium
  chromium chromium-driver    # tests/clients/test_page.py: the chat page in headless Chromium
)
if [ "${LA_WITH_TORCH:-0}" = "1" ]; then pkgs+=(python3-torch python3-numpy); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then echo "install-deps: all packages present"; exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
