#!/usr/bin/env bash
# Prefill and decode side by side with llama.cpp's llama-bench on the same GGUF files. llama.cpp is
# built by hand from its public source outside this repository (e.g. in /tmp); point LLAMA_BENCH
# at its llama-bench binary.
#   LLAMA_BENCH=/tmp/llama.cpp/build/bin/llama-bench bench/compare_llamacpp.sh model.gguf ...
# Make TinyLlama-shaped test files with:
#   build/bin/llama-adapter bench --shape tinyllama-1.1b --save-model /tmp/tl.bin
#   build/bin/llama-adapter convert --model /tmp/tl.bin --tokenizer tokenizer.model --type q4_0 --out /tmp/tl-q4_0.gguf
# Per file the two alternate ROUNDS times (llama.cpp, ours, llama.cpp, ...), so that a noisy
# host's slow minutes hit both; each cell is the median over the rounds (within a round:
# llama-bench's mean of REPEAT runs, our median of REPEAT).
# Env: THREADS (2), PROMPT (64), GEN (32), REPEAT (3), ROUNDS (3). "roofline": our decode as a
# fraction of read bandwidth / bytes of weights per token, the bandwidth measured in the same
# command as the decode. DEPTH=N: decode only, after N tokens of context (llama-bench -d N; ours
# decodes after a prompt of N tokens), where attention over the cache weighs in.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_BENCH:?set LLAMA_BENCH to the llama-bench binary of a llama.cpp build}"
THREADS=${THREADS:-2} PROMPT=${PROMPT:-64} GEN=${GEN:-32} REPEAT=${REPEAT:-3} ROUNDS=${ROUNDS:-3} DEPTH=${DEPTH:-0}
case $DEPTH in '' | *[!0-9]*) echo "compare_llamacpp.sh: DEPTH must be a number of tokens, not '$DEPTH'" >&2; exit 2 ;; esac
lc_args=(-p "$PROMPT") our_prompt=$PROMPT
if [ "$DEPTH" -gt 0 ]; then lc_args=(-p 0 -d "$DEPTH"); our_prompt=$DEPTH; fi
# OpenMP's default wait policy (spin a little, then sleep), like llama.cpp's own spinning thread
# pool; OMP_WAIT_POLICY=passive costs decode ~1/3 here (every parallel region wakes a thread).
echo "# $(date -u +%FT%TZ) threads=$THREADS prompt=$PROMPT gen=$GEN depth=$DEPTH rounds=$ROUNDS load=$(cut -d' ' -f1 /proc/loadavg)"
printf "%-28s %10s %12s %12s %8s %12s %12s %8s %10s %10s\n" file MiB lcpp_pp_t/s ours_pp_t/s pp_ratio \
  lcpp_tg_t/s ours_tg_t/s tg_ratio read_GB/s roofline
for f in "$@"; do
  results=()
  for r in $(seq 1 "$ROUNDS"); do
    lc=$("$LLAMA_BENCH" -m "$f" -t "$THREADS" "${lc_args[@]}" -n "$GEN" -r "$REPEAT" -o json 2>/dev/null)
    ours=$(build/bin/llama-adapter bench --model "$f" --threads "$THREADS" --no-train --prompt-tokens "$our_prompt" \
           --gen-tokens "$GEN" --repeat "$REPEAT" --bandwidth --json)
    results+=("$lc" "$ours")
  done
  DEPTH="$DEPTH" python3 - "$f" "${results[@]}" <<'PY'
import json, os, statistics, sys
f, runs = sys.argv[1], [json.loads(x) for x in sys.argv[2:]]
lc, ours = runs[0::2], runs[1::2]
depth = int(os.environ.get("DEPTH", "0"))
tg = statistics.median(next(r["avg_ts"] for r in l if r["n_gen"] > 0 and r["n_prompt"] == 0) for l in lc)
med = lambda k: statistics.median(o[k] for o in ours)
otg = med("decode_tok_s")
if depth > 0:  # our prefill was of the context itself, llama-bench ran none: no prefill columns
    pp_cols = f"{'-':>12} {'-':>12} {'-':>8}"
else:
    pp = statistics.median(next(r["avg_ts"] for r in l if r["n_prompt"] > 0 and r["n_gen"] == 0) for l in lc)
    opp = med("prefill_tok_s")
    pp_cols = f"{pp:12.1f} {opp:12.1f} {opp/pp:7.2f}x"
print(f"{os.path.basename(f):<28} {os.path.getsize(f)/2**20:10.1f} {pp_cols} "
      f"{tg:12.1f} {otg:12.1f} {otg/tg:7.2f}x {med('read_gb_s'):10.1f} {med('decode_roofline_fraction'):9.0%}")
PY
done
