#!/usr/bin/env bash
# Prefill / decode speed and memory of llama2.c .bin files loaded through mmap: stories260K (from
# ../shared/data when present) and a 110M-shaped random model written to /tmp by `bench --save-model`.
#   bench/run_inference_memory.sh        Env: THREADS (2), REPEAT (5)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2} REPEAT=${REPEAT:-5}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
B=build/bin/llama-adapter
m110=${TMPDIR:-/tmp}/la-bench-110m.bin
[ -f "$m110" ] || $B bench --shape 110m --save-model "$m110" >/dev/null
models=("$m110")
[ -f ../shared/data/llama2c/stories260K.bin ] && models=(../shared/data/llama2c/stories260K.bin "${models[@]}")
echo "# $(date -u +%FT%TZ) threads=$THREADS load=$(cut -d' ' -f1 /proc/loadavg)"
printf "%-40s %10s %12s %12s %12s %14s %14s %12s\n" model file_MiB prefill_tok_s decode_tok_s train_tok_s rss_load_MiB rss_infer_MiB peak_MiB
for m in "${models[@]}"; do
  j=$($B bench --model "$m" --threads "$THREADS" --repeat "$REPEAT" --prompt-tokens 128 --gen-tokens 64 --json)
  python3 - "$m" "$j" <<'PY'
import json, os, sys
m, j = sys.argv[1], json.loads(sys.argv[2])
print(f"{os.path.basename(m):<40} {os.path.getsize(m)/2**20:10.1f} {j['prefill_tok_s']:12.1f} {j['decode_tok_s']:12.1f} "
      f"{j['train_tok_s']:12.1f} {j['rss_after_load_mib']:14.1f} {j['rss_after_inference_mib']:14.1f} {j['peak_rss_mib']:12.1f}")
PY
done
