#!/usr/bin/env bash
# Every issue-4 measurement in one go, one after the other on the same machine:
#   1. training step vs PyTorch eager (110M and stories260K, fp32), and our bf16-base numbers
#      (bf16 storage, and bf16 arithmetic with --bf16-compute where the CPU has AVX512-BF16)
#   2. prefill/decode vs llama.cpp's llama-bench on TinyLlama-shaped GGUFs (F32, F16, BF16, Q8_0, Q4_0, and
#      Q4_K_M made by llama.cpp's llama-quantize when it is built next to llama-bench)
#   3. adapter overhead on decode (K=10, all layers) and the bandwidth roofline of decode
#   4. a 7B-shaped Q4_0 fine-tuning step (K=10, L=30, 1 x 512): seconds and peak RSS
# Peers alternate with us ROUNDS times (default 3) and the tables give medians (~12 min in all).
#   LLAMA_BENCH=/tmp/llama.cpp/build/bin/llama-bench bench/run_issue4.sh [out.md]
# The GGUF files are made in $WORK (default /tmp/la-issue4) on the first run. Skip parts with
# SKIP="torch llamacpp overhead 7b". Env as in the scripts it calls (THREADS=2, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/dev/stdout}
WORK=${WORK:-/tmp/la-issue4} THREADS=${THREADS:-2} SKIP=${SKIP:-}
export THREADS  # compare_pytorch.sh runs both sides with OMP_WAIT_POLICY=passive, the rest with the default
B=build/bin/llama-adapter
mkdir -p "$WORK"
skip() { [[ " $SKIP " == *" $1 "* ]]; }
{
  echo "# issue 4 benchmarks, $(date -u +%FT%TZ), $(nproc) cores, threads=$THREADS, load $(cut -d' ' -f1 /proc/loadavg)"
  echo
  if ! skip torch; then
    echo "## training step vs PyTorch eager (fp32)"
    bench/compare_pytorch.sh 110m stories260k
    echo
    echo "## training step, 110M: fp32 / bf16 base / bf16 base with bf16 arithmetic (--bf16-compute), interleaved"
    kinds=("--type f32" "--type bf16")
    grep -qw avx512_bf16 /proc/cpuinfo && kinds+=("--type bf16 --bf16-compute")
    for i in 1 2 3; do
      for a in "${kinds[@]}"; do
        $B bench --shape 110m $a --threads "$THREADS" --no-infer --repeat 3 --json |
          python3 -c "import json,sys; d=json.load(sys.stdin); print('$a'.ljust(28), round(d['train_tok_s'], 1), 'tok/s', round(d['peak_rss_mib']), 'MiB')"
      done
    done | tee "$WORK/kinds.txt"
    python3 - "$WORK/kinds.txt" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kind, rest = line[:28].strip(), line[28:].split()
    rows.setdefault(kind, []).append(float(rest[0]))
base = statistics.median(rows["--type f32"])
for kind, v in rows.items():
    m = statistics.median(v)
    print(f"median {kind:<28} {m:8.1f} tok/s  {m / base:.2f}x fp32")
PY
    echo
  fi
  if ! skip llamacpp; then
    tok=../shared/data/tokenizer/tokenizer.model  # the 32,000-piece LLaMA vocabulary
    [ -f "$WORK/tl.bin" ] || $B bench --shape tinyllama-1.1b --save-model "$WORK/tl.bin" >/dev/null
    files=()
    for t in f32 f16 bf16 q8_0 q4_0; do
      f="$WORK/tl-$t.gguf"
      [ -f "$f" ] || $B convert --model "$WORK/tl.bin" --tokenizer "$tok" --type "$t" --out "$f" >/dev/null
      files+=("$f")
    done
    # A Q4_K_M file as people download them (Q4_K + Q6_K), made by llama.cpp's own quantiser.
    quantize=$(dirname "${LLAMA_BENCH:-/nonexistent}")/llama-quantize
    if [ -x "$quantize" ]; then
      [ -f "$WORK/tl-q4_k_m.gguf" ] || "$quantize" "$WORK/tl-f16.gguf" "$WORK/tl-q4_k_m.gguf" Q4_K_M >/dev/null 2>&1
      files+=("$WORK/tl-q4_k_m.gguf")
    fi
    echo "## prefill / decode vs llama.cpp"
    bench/compare_llamacpp.sh "${files[@]}"
    echo
  fi
  if ! skip overhead; then
    [ -f "$WORK/tl-q4_0.gguf" ] || { echo "overhead: needs $WORK/tl-q4_0.gguf (run the llamacpp part once)"; exit 1; }
    # bench --adapter-overhead decodes with and without the adapter from two models taking turns
    # every 4 tokens (paired within one process); three runs of 5 repetitions, medians.
    echo "## adapter overhead on decode (Q4_0, K=10, all 22 layers)"
    for i in 1 2 3; do
      $B bench --model "$WORK/tl-q4_0.gguf" --threads "$THREADS" --no-train --prompt-tokens 16 --gen-tokens 64 \
        --repeat 5 --adapter-overhead --json |
        python3 -c "import json,sys; d=json.load(sys.stdin); print(round(d['decode_tok_s_plain'], 2), round(d['decode_tok_s_adapter'], 2), round(d['adapter_overhead_pct'], 2))"
    done | tee "$WORK/overhead.txt"
    python3 - "$WORK/overhead.txt" <<'PY'
import statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1])]
print(f"median: plain {statistics.median(r[0] for r in rows):.2f}, adapter {statistics.median(r[1] for r in rows):.2f} "
      f"tok/s, adapter slower by {statistics.median(r[2] for r in rows):+.2f}%")
PY
    echo
  fi
  if ! skip 7b; then
    echo "## 7B-shaped Q4_0 fine-tuning step (K=10, L=30, batch 1 x 512)"
    $B bench --shape 7b --type q4_0 --threads "$THREADS" --no-infer --train-batch 1 --train-seq 512 \
      --adapter-layers 30 --repeat 1 --json
    echo
  fi
  echo "# done $(date -u +%FT%TZ), load $(cut -d' ' -f1 /proc/loadavg)"
} | tee "$out"
