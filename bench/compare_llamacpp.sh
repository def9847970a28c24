#!/usr/bin/env bash
# Prefill and decode side by side with llama.cpp's llama-bench on the same GGUF files, one after
# the other. llama.cpp is built by hand from its public source outside this repository (e.g. in
# /tmp); point LLAMA_BENCH at its llama-bench binary.
#   LLAMA_BENCH=/tmp/llama.cpp/build/bin/llama-bench bench/compare_llamacpp.sh model.gguf ...
# Make TinyLlama-shaped test files with:
#   build/bin/llama-adapter bench --shape tinyllama-1.1b --save-model /tmp/tl.bin
#   build/bin/llama-adapter convert --model /tmp/tl.bin --tokenizer tokenizer.model --type q4_0 --out /tmp/tl-q4_0.gguf
# Env: THREADS (2), PROMPT (64), GEN (32), REPEAT (3). "roofline": our decode as a fraction of
# read bandwidth / bytes of weights per token, the bandwidth measured in the same command.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_BENCH:?set LLAMA_BENCH to the llama-bench binary of a llama.cpp build}"
THREADS=${THREADS:-2} PROMPT=${PROMPT:-64} GEN=${GEN:-32} REPEAT=${REPEAT:-3}
# OpenMP's default wait policy (spin a little, then sleep), like llama.cpp's own spinning thread
# pool; OMP_WAIT_POLICY=passive costs decode ~1/3 here (every parallel region wakes a thread).
echo "# $(date -u +%FT%TZ) threads=$THREADS prompt=$PROMPT gen=$GEN load=$(cut -d' ' -f1 /proc/loadavg)"
printf "%-28s %10s %12s %12s %12s %12s %10s %10s\n" file MiB lcpp_pp_t/s ours_pp_t/s lcpp_tg_t/s ours_tg_t/s read_GB/s roofline
for f in "$@"; do
  lc=$("$LLAMA_BENCH" -m "$f" -t "$THREADS" -p "$PROMPT" -n "$GEN" -r "$REPEAT" -o json 2>/dev/null)
  ours=$(build/bin/llama-adapter bench --model "$f" --threads "$THREADS" --no-train --prompt-tokens "$PROMPT" \
         --gen-tokens "$GEN" --repeat "$REPEAT" --bandwidth --json)
  python3 - "$f" "$lc" "$ours" <<'PY'
import json, os, sys
f, lc, o = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
pp = next(r["avg_ts"] for r in lc if r["n_prompt"] > 0 and r["n_gen"] == 0)
tg = next(r["avg_ts"] for r in lc if r["n_gen"] > 0 and r["n_prompt"] == 0)
print(f"{os.path.basename(f):<28} {os.path.getsize(f)/2**20:10.1f} {pp:12.1f} {o['prefill_tok_s']:12.1f} {tg:12.1f} "
      f"{o['decode_tok_s']:12.1f} {o['read_gb_s']:10.1f} {o['decode_roofline_fraction']:9.0%}")
PY
done
