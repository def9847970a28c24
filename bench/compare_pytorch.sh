#!/usr/bin/env bash
# Side-by-side adapter training step: llama-adapter vs PyTorch eager (Debian's python3-torch),
# same shape, batch, sequence length, adapter and thread count. FULL=1: the full-parameter step
# instead (every weight trained, AdamW over all: `bench --full` vs the script's --full), with
# both sides' model GFLOP/s (the FLOP count per token of `bench --full`, cmd_bench.cpp). The two alternate ROUNDS times
# (ours, PyTorch, ours, ...) so that a noisy host's slow minutes hit both; the table gives each
# round and the medians.
#   bench/compare_pytorch.sh [shape ...]      (default: stories260k 110m)
# Env: THREADS (2), BATCH (4), SEQ (256), STEPS (5), ROUNDS (3), FULL (0).
# Needs: LA_WITH_TORCH=1 scripts/install-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2} BATCH=${BATCH:-4} SEQ=${SEQ:-256} STEPS=${STEPS:-5} ROUNDS=${ROUNDS:-3} FULL=${FULL:-0}
full=(); [ "$FULL" = 1 ] && full=(--full)
export FULL
shapes=("$@"); [ ${#shapes[@]} -eq 0 ] && shapes=(stories260k 110m)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) threads=$THREADS batch=$BATCH seq=$SEQ rounds=$ROUNDS full=$FULL load=$(cut -d' ' -f1 /proc/loadavg)"
if [ "$FULL" = 1 ]; then
  printf "%-12s %-8s %14s %14s %8s %12s %12s %12s %12s\n" shape round ours_tok_s torch_tok_s ratio ours_rss_MiB \
    torch_rss_MiB ours_GFLOP_s torch_GFLOP_s
else
  printf "%-12s %-8s %14s %14s %8s %12s %12s\n" shape round ours_tok_s torch_tok_s ratio ours_rss_MiB torch_rss_MiB
fi
for s in "${shapes[@]}"; do
  results=()
  for r in $(seq 1 "$ROUNDS"); do
    ours=$(build/bin/llama-adapter bench --shape "$s" --threads "$THREADS" --no-infer --train-batch "$BATCH" \
           --train-seq "$SEQ" --repeat "$STEPS" --json ${full[@]+"${full[@]}"})
    torch=$(/usr/bin/python3 bench/pytorch_adapter_step.py --shape "$s" --threads "$THREADS" --batch "$BATCH" \
            --seq "$SEQ" --steps "$STEPS" ${full[@]+"${full[@]}"} 2>/dev/null)
    results+=("$ours" "$torch")
  done
  python3 - "$s" "${results[@]}" <<'PY'
import json, os, statistics, sys
s, runs = sys.argv[1], [json.loads(x) for x in sys.argv[2:]]
pairs = list(zip(runs[0::2], runs[1::2]))
# Full step: model FLOPs per token as bench --full counts them (the same for both sides).
flop = runs[0].get('train_gflop_per_token') if os.environ.get('FULL') == '1' else None
def row(label, o, t, orss, trss):
    line = f"{s:<12} {label:<8} {o:14.1f} {t:14.1f} {o/t:7.2f}x {orss:12.1f} {trss:12.1f}"
    if flop:
        line += f" {o * flop:12.2f} {t * flop:12.2f}"
    print(line)
for i, (o, t) in enumerate(pairs, 1):
    row(str(i), o['train_tok_s'], t['tokens_per_s'], o['peak_rss_mib'], t['peak_rss_mib'])
med = lambda k, xs: statistics.median(x[k] for x in xs)
ours, torch = [o for o, _ in pairs], [t for _, t in pairs]
row("median", med('train_tok_s', ours), med('tokens_per_s', torch), med('peak_rss_mib', ours), med('peak_rss_mib', torch))
PY
done
