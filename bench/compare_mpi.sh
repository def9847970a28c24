#!/usr/bin/env bash
# Data-parallel against threads on the same machine (issue 16): the same adapter fine-tune as
# 1 rank x 2 threads and as mpirun -np 2 x 1 thread, alternating, medians of the steps' tokens/s
# (the first step left out); also the bytes each rank sent and its time in the exchanges, and
# whether the two give the same adapter (they need not: the thread count changes the kernels'
# sums; the same threads per rank give the same bytes for any -np, see tests/test_mpi.cpp).
#   bench/compare_mpi.sh MODEL [DATA.json] [ROUNDS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
model="$1"
data="${2:-../shared/data/alpaca/alpaca_data_1k_subset.json}"
rounds="${3:-3}" steps="${4:-6}"
B=build/bin/llama-adapter
work="${TMPDIR:-/tmp}/la-mpi-bench"
mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
args=(finetune --model "$model" --data "$data" --batch-size 16 --micro-batch-size 2 --steps "$steps"
  --max-seq-len 256 --no-progress --lr 1e-2 --warmup-steps 1)
median_tok_s() { python3 -c "
import json, statistics, sys
r = [json.loads(l) for l in open(sys.argv[1])]
print('%.0f' % statistics.median([x['tokens_per_s'] for x in r[1:]]))" "$1"; }
one=() two=()
for ((r = 0; r < rounds; r++)); do
  OMP_NUM_THREADS=2 "$B" "${args[@]}" --threads 2 --out "$work/t1.safetensors" --metrics "$work/m1.jsonl" 2>/dev/null
  one+=("$(median_tok_s "$work/m1.jsonl")")
  OMP_NUM_THREADS=1 mpirun -np 2 --bind-to core "$B" "${args[@]}" --threads 1 --out "$work/t2.safetensors" \
    --metrics "$work/m2.jsonl" 2>"$work/mpi.log"
  two+=("$(median_tok_s "$work/m2.jsonl")")
  grep 'data-parallel:' "$work/mpi.log" | head -1
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
a=$(median "${one[@]}") b=$(median "${two[@]}")
echo "| layout | tokens/s per round | median |"
echo "|---|---|---:|"
echo "| 1 rank x 2 threads | ${one[*]} | $a |"
echo "| 2 ranks x 1 thread (mpirun) | ${two[*]} | $b |"
python3 -c "print(f'2x1 / 1x2: {$b / $a:.2f}')"
