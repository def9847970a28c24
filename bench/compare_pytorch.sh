#!/usr/bin/env bash
# Side-by-side adapter training step: llama-adapter vs PyTorch eager (Debian's python3-torch),
# same shape, batch, sequence length, adapter and thread count, run one after the other.
#   bench/compare_pytorch.sh [shape ...]      (default: stories260k 110m)
# Env: THREADS (2), BATCH (4), SEQ (256), STEPS (5). Needs: LA_WITH_TORCH=1 scripts/install-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2} BATCH=${BATCH:-4} SEQ=${SEQ:-256} STEPS=${STEPS:-5}
shapes=("$@"); [ ${#shapes[@]} -eq 0 ] && shapes=(stories260k 110m)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) threads=$THREADS batch=$BATCH seq=$SEQ load=$(cut -d' ' -f1 /proc/loadavg)"
printf "%-12s %14s %14s %8s %12s %12s\n" shape ours_tok_s torch_tok_s ratio ours_rss_MiB torch_rss_MiB
for s in "${shapes[@]}"; do
  ours=$(build/bin/llama-adapter bench --shape "$s" --threads "$THREADS" --no-infer --train-batch "$BATCH" \
         --train-seq "$SEQ" --repeat "$STEPS" --json)
  torch=$(/usr/bin/python3 bench/pytorch_adapter_step.py --shape "$s" --threads "$THREADS" --batch "$BATCH" \
          --seq "$SEQ" --steps "$STEPS" 2>/dev/null)
  python3 - "$s" "$ours" "$torch" <<'PY'
import json, sys
s, o, t = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"{s:<12} {o['train_tok_s']:14.1f} {t['tokens_per_s']:14.1f} {o['train_tok_s']/t['tokens_per_s']:7.2f}x "
      f"{o['peak_rss_mib']:12.1f} {t['peak_rss_mib']:12.1f}")
PY
done
