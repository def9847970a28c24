#!/usr/bin/env bash
# Side-by-side adapter training step: llama-adapter vs PyTorch peers, same shape, batch,
# sequence length, adapter and thread count. Peers (PEERS, space-separated, default "torch"):
#   torch         our eager PyTorch script (bench/pytorch_adapter_step.py, Debian's python3-torch)
#   peft-eager    Hugging Face PEFT AdaptionPrompt on transformers' Llama (bench/peft_adapter_step.py)
#   peft-compile  the same under torch.compile (a compile failure shows as "error" in the table)
# FULL=1: the full-parameter step instead (every weight trained, AdamW over all: `bench --full` vs
# pytorch_adapter_step.py --full; torch peer only). Every table has model GFLOP/s (the FLOP count
# per token our bench gives for the step, cmd_bench.cpp) and each side's fraction of the fp32 FMA
# peak that our bench measures after its steps in the same round. Ours and the peers alternate ROUNDS times (ours, peer1,
# peer2, ours, ...) so that a noisy host's slow minutes hit all; the table gives each round and
# the medians; ratio = ours / the fastest peer of the row.
#   bench/compare_pytorch.sh [shape ...]      (default: stories260k 110m)
#   PEERS="peft-eager peft-compile" bench/compare_pytorch.sh 110m
# Env: THREADS (2), BATCH (4), SEQ (256), STEPS (5), ROUNDS (3), FULL (0), PEERS (torch),
#      TORCH_PYTHON (/usr/bin/python3), PEFT_PYTHON (build/venv-ref or ../venv-ref python),
#      LA_BIN (build/bin/llama-adapter: a saved binary lets a long comparison run while you build).
# Needs: LA_WITH_TORCH=1 scripts/install-deps.sh (torch); a venv with torch 2.x, transformers
# and peft (scripts/reference-venv.sh) for the peft peers.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2} BATCH=${BATCH:-4} SEQ=${SEQ:-256} STEPS=${STEPS:-5} ROUNDS=${ROUNDS:-3} FULL=${FULL:-0}
PEERS=${PEERS:-torch}
LA_BIN=${LA_BIN:-build/bin/llama-adapter}
TORCH_PYTHON=${TORCH_PYTHON:-/usr/bin/python3}
if [ -z "${PEFT_PYTHON:-}" ]; then
  PEFT_PYTHON=build/venv-ref/bin/python
  [ -x "$PEFT_PYTHON" ] || PEFT_PYTHON=../venv-ref/bin/python
fi
read -r -a peers <<<"$PEERS"
for p in "${peers[@]}"; do
  case "$p" in
    torch) ;;
    peft-eager|peft-compile) [ "$FULL" = 1 ] && { echo "FULL=1: PEFT trains an adapter only; use PEERS=torch" >&2; exit 2; } ;;
    *) echo "unknown peer '$p' (torch, peft-eager, peft-compile)" >&2; exit 2 ;;
  esac
done
full=(); [ "$FULL" = 1 ] && full=(--full)
export FULL
shapes=("$@"); [ ${#shapes[@]} -eq 0 ] && shapes=(stories260k 110m)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) threads=$THREADS batch=$BATCH seq=$SEQ steps=$STEPS rounds=$ROUNDS full=$FULL peers=${peers[*]} load=$(cut -d' ' -f1 /proc/loadavg)"

# One peer's run: its JSON line on stdout, or {"error": ...} when it produced none.
run_peer() {
  local peer=$1 s=$2 out rc=0
  local common=(--shape "$s" --threads "$THREADS" --batch "$BATCH" --seq "$SEQ" --steps "$STEPS")
  case "$peer" in
    torch) out=$("$TORCH_PYTHON" bench/pytorch_adapter_step.py "${common[@]}" ${full[@]+"${full[@]}"} 2>/dev/null) || rc=$? ;;
    peft-eager) out=$("$PEFT_PYTHON" bench/peft_adapter_step.py "${common[@]}" 2>/dev/null) || rc=$? ;;
    peft-compile) out=$("$PEFT_PYTHON" bench/peft_adapter_step.py "${common[@]}" --compile 2>/dev/null) || rc=$? ;;
  esac
  out=$(printf '%s\n' "$out" | grep '^{' | tail -n1 || true)
  [ -n "$out" ] || out="{\"error\": \"$peer exited with status $rc and printed no JSON\"}"
  printf '%s' "$out"
}

for s in "${shapes[@]}"; do
  results=()
  for r in $(seq 1 "$ROUNDS"); do
    results+=("$("$LA_BIN" bench --shape "$s" --threads "$THREADS" --no-infer --train-batch "$BATCH" \
                 --train-seq "$SEQ" --repeat "$STEPS" --fma-peak --json ${full[@]+"${full[@]}"})")
    for p in "${peers[@]}"; do
      results+=("$(run_peer "$p" "$s")")
    done
  done
  python3 - "$s" "${peers[*]}" "${results[@]}" <<'PY'
import json, os, statistics, sys
s, peers, runs = sys.argv[1], sys.argv[2].split(), [json.loads(x) for x in sys.argv[3:]]
names = ["ours"] + peers
rounds = [runs[i:i + len(names)] for i in range(0, len(runs), len(names))]
# Model FLOPs per token as our bench counts them for the step (the same for every side), and the
# fp32 FMA peak our bench measured right after its steps in the same round.
flop = rounds[0][0].get('train_gflop_per_token')
peak = lambda rd: rd[0].get('fma_peak_gflop_s')
tok = lambda j: None if 'error' in j else j.get('train_tok_s', j.get('tokens_per_s'))
rss = lambda j: j.get('peak_rss_mib')
w = {n: max(14, len(n) + 7) for n in names}
cols = [f"{n + '_tok_s':>{w[n]}}" for n in names] + [f"{'ratio':>8}"]
cols += [f"{n + '_rss_MiB':>{max(12, len(n) + 9)}}" for n in names]
if flop:
    cols += [f"{n + '_GFLOP_s':>{max(12, len(n) + 9)}}" for n in names]
    cols += [f"{'peak_GFLOP_s':>12}"] + [f"{n + '_of_peak':>{max(10, len(n) + 8)}}" for n in names]
print(f"{'shape':<12} {'round':<8} " + " ".join(cols))
num = lambda v, width, fmt: f"{'error' if v is None else format(v, fmt):>{width}}"
def row(label, toks, rsss, pk):
    peer_toks = [t for t in toks[1:] if t is not None]
    ratio = toks[0] / max(peer_toks) if toks[0] and peer_toks else None
    line = [num(t, w[n], '.1f') for n, t in zip(names, toks)]
    line += [f"{'-' if ratio is None else format(ratio, '.2f') + 'x':>8}"]
    line += [num(r, max(12, len(n) + 9), '.1f') for n, r in zip(names, rsss)]
    if flop:
        line += [num(None if t is None else t * flop, max(12, len(n) + 9), '.2f') for n, t in zip(names, toks)]
        line += [num(pk, 12, '.1f')]
        line += [num(None if t is None or not pk else t * flop / pk, max(10, len(n) + 8), '.0%') for n, t in zip(names, toks)]
    print(f"{s:<12} {label:<8} " + " ".join(line))
for i, rd in enumerate(rounds, 1):
    row(str(i), [tok(j) for j in rd], [rss(j) for j in rd], peak(rd))
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
row("median", [med(tok(rd[k]) for rd in rounds) for k in range(len(names))],
    [med(rss(rd[k]) for rd in rounds) for k in range(len(names))], med(peak(rd) for rd in rounds))
# What each peer ran (versions, PEFT's trainable tensors) and any errors, once per peer.
for k, n in enumerate(names[1:], 1):
    j = next((rd[k] for rd in rounds if 'error' not in rd[k]), rounds[0][k])
    info = {key: j[key] for key in ('torch', 'transformers', 'peft', 'attn_implementation',
                                    'trainable_params', 'trainable_params_ours', 'error') if key in j}
    errs = sorted({rd[k]['error'] for rd in rounds if 'error' in rd[k]})
    if errs:
        info['error'] = errs
    print(f"# {n}: {json.dumps(info)}")
PY
done
