#!/usr/bin/env bash
# Tokenizing speed against llama.cpp's llama-tokenize on the same large mixed text and the same
# vocabulary (Llama-3's tokenizer.json, embedded in a GGUF by our `convert`): both programs load
# the GGUF's vocabulary and tokenize the whole file; runs alternate, medians reported. The ids of
# the two are compared too. llama-tokenize reads special pieces in the text ("<|eot_id|>", which
# this repository's sources contain) as their ids, and so does ours with --parse-special.
#   bench/compare_tokenize.sh [LLAMA_BIN_DIR] [ROUNDS]
# LLAMA_BIN_DIR holds llama-tokenize (a llama.cpp build: cmake --build B --target llama-tokenize).
set -euo pipefail
cd "$(dirname "$0")/.."
llama_bin="${1:-/work/bench/llamacpp-server-build/bin}"
rounds="${2:-5}"
ours=build/bin/llama-adapter
shared="${LA_SHARED_DATA:-../shared/data}"
work="${TMPDIR:-/tmp}/la-tokenize-bench"
mkdir -p "$work"
[ -x "$llama_bin/llama-tokenize" ] || { echo "no $llama_bin/llama-tokenize" >&2; exit 1; }

# The text: this repository's C++ sources, Alpaca's 1k records (JSON: English, code, escapes) and
# the mixed fixture (CJK, emoji, numbers, whitespace runs) -- a few MB, in that order.
corpus="$work/corpus.txt"
cat src/la/*/*.cpp src/cli/*.cpp "$shared/alpaca/alpaca_data_1k_subset.json" tests/fixtures/tokenizer/mixed.txt >"$corpus"
python3 bench/make_random_llama3.py "$work/llama3" "$shared/tokenizer/llama3/tokenizer.json"
"$ours" convert --model "$work/llama3" --type bf16 -o "$work/llama3.gguf" 2>/dev/null

ms() { local t0 t1; t0=$(date +%s%N); "$@" >"$work/out.txt" 2>/dev/null; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)); }
ours_ms=() llama_ms=() ours_load=() llama_load=()
for ((r = 0; r < rounds; r++)); do
  llama_ms+=("$(ms "$llama_bin/llama-tokenize" -m "$work/llama3.gguf" -f "$corpus" --ids --no-bos --no-escape --log-disable)")
  cp "$work/out.txt" "$work/llama_ids.txt"
  ours_ms+=("$(ms "$ours" tokenize --model "$work/llama3.gguf" --parse-special --file "$corpus")")
  cp "$work/out.txt" "$work/our_ids.txt"
  llama_load+=("$(ms "$llama_bin/llama-tokenize" -m "$work/llama3.gguf" -p x --ids --no-bos --log-disable)")
  ours_load+=("$(ms "$ours" tokenize --model "$work/llama3.gguf" --text x)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
lt=$(median "${llama_ms[@]}") ot=$(median "${ours_ms[@]}") ll=$(median "${llama_load[@]}") ol=$(median "${ours_load[@]}")
bytes=$(stat -c %s "$corpus")
same=$(python3 - "$work/llama_ids.txt" "$work/our_ids.txt" <<'PY'
import sys
a = [int(x) for x in open(sys.argv[1]).read().strip().strip("[]").split(",") if x.strip()]
b = [int(x) for x in open(sys.argv[2]).read().split()]
print("same ids (%d)" % len(a) if a == b else "ids DIFFER (%d vs %d)" % (len(a), len(b)))
PY
)
echo "corpus: $bytes bytes; $same"
echo "| program | whole run ms (median of $rounds) | load only ms | tokenizing ms | MB/s |"
echo "|---|---:|---:|---:|---:|"
for row in "llama-tokenize $lt $ll" "llama-adapter tokenize $ot $ol"; do
  set -- $row
  if [ $# -eq 4 ]; then name="$1 $2"; shift 2; else name="$1"; shift; fi
  net=$(($1 - $2)); [ "$net" -gt 0 ] || net=1
  echo "| $name | $1 | $2 | $net | $(python3 -c "print(f'{$bytes / $net / 1000:.1f}')") |"
done
python3 -c "print(f'ours / llama.cpp speed, tokenizing only: {($lt - $ll) / max($ot - $ol, 1):.2f}x; whole runs: {$lt / $ot:.2f}x')"
