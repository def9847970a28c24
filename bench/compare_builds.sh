#!/usr/bin/env bash
# Our own speed before and after a change, in one go: two builds of llama-adapter take turns on
# the same commands (ROUNDS rounds, default 3) and the table gives each side's median and the
# ratio after/before. What it runs:
#   training step, 110M shape, fp32 (bench --no-infer)
#   prefill (128 tokens) and decode (64 tokens) on TinyLlama-1.1B-shaped GGUFs: F16, Q8_0, Q4_0
#   decode with an adapter (K=10, every layer) on the Q4_0 file
#   bench/compare_builds.sh BEFORE/llama-adapter AFTER/llama-adapter [out.md]
# The GGUF files are made in $WORK (default /tmp/la-issue4, shared with run_issue4.sh) by the
# AFTER build on the first run. THREADS (default 2); TYPES (default "f16 q8_0 q4_0"), PROMPT (128),
# GEN (64) and REPEAT (3) shrink the run on a slow machine.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1 after=$2 out=${3:-/dev/stdout}
WORK=${WORK:-/tmp/la-issue4} THREADS=${THREADS:-2} ROUNDS=${ROUNDS:-3} TYPES=${TYPES:-f16 q8_0 q4_0}
PROMPT=${PROMPT:-128} GEN=${GEN:-64} REPEAT=${REPEAT:-3}
mkdir -p "$WORK"
tok=../shared/data/tokenizer/tokenizer.model
[ -f "$WORK/tl.bin" ] || "$after" bench --shape tinyllama-1.1b --save-model "$WORK/tl.bin" >/dev/null
for t in $TYPES; do
  [ -f "$WORK/tl-$t.gguf" ] || "$after" convert --model "$WORK/tl.bin" --tokenizer "$tok" --type "$t" --out "$WORK/tl-$t.gguf" >/dev/null
done
rows="$WORK/builds.tsv"
: >"$rows"
measure() {  # side name key command...
  local side=$1 name=$2 key=$3
  shift 3
  local v
  v=$("$@" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['$key'])")
  printf '%s\t%s\t%s\n' "$name" "$side" "$v" >>"$rows"
}
for r in $(seq "$ROUNDS"); do
  for side in before after; do
    bin=$before
    [ "$side" = after ] && bin=$after
    measure $side "train 110M fp32 (tok/s)" train_tok_s "$bin" bench --shape 110m --threads "$THREADS" --no-infer --repeat "$REPEAT"
    for t in $TYPES; do
      measure $side "prefill $t, $PROMPT tokens (tok/s)" prefill_tok_s "$bin" bench --model "$WORK/tl-$t.gguf" --threads "$THREADS" --no-train --prompt-tokens "$PROMPT" --gen-tokens 1 --repeat "$REPEAT"
      measure $side "decode $t, $GEN tokens (tok/s)" decode_tok_s "$bin" bench --model "$WORK/tl-$t.gguf" --threads "$THREADS" --no-train --prompt-tokens 16 --gen-tokens "$GEN" --repeat "$REPEAT"
    done
    measure $side "decode q4_0 + adapter (tok/s)" decode_tok_s "$bin" bench --model "$WORK/tl-q4_0.gguf" --threads "$THREADS" --no-train --prompt-tokens 16 --gen-tokens "$GEN" --repeat "$REPEAT" --adapter-decode
  done
done
python3 - "$rows" "$ROUNDS" <<'PY' | tee "$out"
import statistics, sys
from collections import OrderedDict
rows = OrderedDict()
for line in open(sys.argv[1]):
    name, side, v = line.rstrip("\n").split("\t")
    rows.setdefault(name, {"before": [], "after": []})[side].append(float(v))
print(f"| measurement (median of {sys.argv[2]}) | before | after | after / before |")
print("|---|---:|---:|---:|")
for name, d in rows.items():
    b, a = statistics.median(d["before"]), statistics.median(d["after"])
    print(f"| {name} | {b:.1f} | {a:.1f} | {a / b:.2f}x |")
PY
