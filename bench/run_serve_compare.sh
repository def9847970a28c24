#!/usr/bin/env bash
# Concurrent streaming decode: llama.cpp's llama-server against `llama-adapter serve`, on the same
# GGUF, N = 1, 4, 8 concurrent /v1/completions streams (bench/serve_compare.py does the requests).
#
#   LLAMA_SERVER=/path/to/llama-server GGUF=model.gguf ADAPTERS="a0.safetensors ... a7.safetensors" \
#     bench/run_serve_compare.sh
#
# For each N both servers are started fresh (llama-server: --parallel N --ctx-size N*512, no
# adapter; ours: --parallel N --context 512, i.e. 512 tokens per slot as llama-server's, with the
# 8 adapters named a0..a7). Both stay up while serve_compare.py alternates the peers round by
# round (llama-server round 1, ours with the 8 adapters mixed (stream i uses a{i%8}), ours with
# every stream on a0, then round 2, ...); both are stopped before the next N. Every request: its own fresh prompt (PROMPT_WORDS words, ~1.3
# tokens each), max_tokens MAX_TOKENS, temperature 0, ignore_eos true, stream true.
# Prints one markdown table: N, aggregate decode tok/s of each, ours/llama-server, TTFT med/max.
#
# Make the test files (random weights; TinyLlama-1.1B's shape):
#   build/bin/llama-adapter bench --shape tinyllama-1.1b --save-model /tmp/tl.bin
#   build/bin/llama-adapter convert --model /tmp/tl.bin --tokenizer tokenizer.model --type q4_0 -o /tmp/tl-q4_0.gguf
#   python3 bench/make_random_adapter.py --count 8 -o /tmp/adapter-{i}.safetensors
#
# Env: LLAMA_SERVER (required), GGUF (required), ADAPTERS (required: 8 files, space-separated),
#      NS ("1 4 8"), THREADS (2), MAX_TOKENS (64), PROMPT_WORDS (36), ROUNDS (3), WARMUP (1),
#      LLAMA_EXTRA (JSON merged into llama-server's request bodies; default: the byte-token ban below),
#      OURS (build/bin/llama-adapter), OURS_BASE (1: also a target on our base model, served as
#      "base"), PORT_LLAMA (28181), PORT_OURS (28182), OUT (a new folder under /tmp: server logs,
#      results.jsonl), LLAMA_ARGS / OURS_ARGS (extra server flags), COMPARE_ARGS (extra
#      serve_compare.py flags, e.g. --no-usage).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_SERVER:?set LLAMA_SERVER to the llama-server binary of a llama.cpp build}"
: "${GGUF:?set GGUF to the model file}"
: "${ADAPTERS:?set ADAPTERS to 8 adapter files, space-separated}"
NS=${NS:-"1 4 8"} THREADS=${THREADS:-2} MAX_TOKENS=${MAX_TOKENS:-64} PROMPT_WORDS=${PROMPT_WORDS:-36}
ROUNDS=${ROUNDS:-3} WARMUP=${WARMUP:-1} OURS=${OURS:-build/bin/llama-adapter} OURS_BASE=${OURS_BASE:-0}
PORT_LLAMA=${PORT_LLAMA:-28181} PORT_OURS=${PORT_OURS:-28182}
OUT=${OUT:-$(mktemp -d /tmp/serve_compare.XXXXXX)}
mkdir -p "$OUT"
read -r -a adapter_files <<<"$ADAPTERS"
adapter_args=() names=()
for i in "${!adapter_files[@]}"; do
  adapter_args+=(--adapter "a$i=${adapter_files[$i]}")
  names+=("a$i")
done
mixed=$(IFS=,; echo "${names[*]}")
# llama-server runs every streamed piece through its chat-output parser, which fails the request
# (HTTP 200, then an error chunk "does not match the expected Content-only format") once the text
# holds invalid UTF-8, as random weights make with a lone byte token (<0x80>..<0xBF>). Its requests
# therefore ban the 256 byte tokens (ids 3..258 of the LLaMA vocabulary); ours need no such ban.
LLAMA_EXTRA=${LLAMA_EXTRA:-$(python3 -c 'import json; print(json.dumps({"logit_bias": [[i, False] for i in range(3, 259)]}))')}

pids=()
stop_servers() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_servers EXIT

wait_health() {  # port label pid
  for _ in $(seq 1 600); do
    if ! kill -0 "$3" 2>/dev/null; then echo "$2 exited while starting; its log:" >&2; tail -20 "$OUT/$2.log" >&2; exit 1; fi
    if python3 -c "import http.client,sys; c=http.client.HTTPConnection('127.0.0.1',$1,timeout=2); c.request('GET','/health'); sys.exit(c.getresponse().status!=200)" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  echo "$2 not healthy after 300 s" >&2; exit 1
}

echo "# $(date -u +%FT%TZ) gguf=$GGUF threads=$THREADS max_tokens=$MAX_TOKENS prompt_words=$PROMPT_WORDS rounds=$ROUNDS NS='$NS' out=$OUT load=$(cut -d' ' -f1 /proc/loadavg)"
for n in $NS; do
  "$LLAMA_SERVER" -m "$GGUF" --parallel "$n" --threads "$THREADS" --ctx-size $((n * 512)) \
    --host 127.0.0.1 --port "$PORT_LLAMA" ${LLAMA_ARGS:-} >"$OUT/llama-server-n$n.log" 2>&1 &
  pids+=($!)
  wait_health "$PORT_LLAMA" "llama-server-n$n" "${pids[-1]}"
  "$OURS" serve --model "$GGUF" --name base --parallel "$n" --threads "$THREADS" --context 512 --host 127.0.0.1 --port "$PORT_OURS" \
    "${adapter_args[@]}" ${OURS_ARGS:-} >"$OUT/ours-n$n.log" 2>&1 &
  pids+=($!)
  wait_health "$PORT_OURS" "ours-n$n" "${pids[-1]}"
  targets=(--target "llama-server=http://127.0.0.1:$PORT_LLAMA" --extra "llama-server=$LLAMA_EXTRA"
           --target "ours-mixed=http://127.0.0.1:$PORT_OURS" --models "ours-mixed=$mixed"
           --target "ours-same=http://127.0.0.1:$PORT_OURS" --models "ours-same=a0")
  [ "$OURS_BASE" = 1 ] && targets+=(--target "ours-base=http://127.0.0.1:$PORT_OURS" --models "ours-base=base")
  python3 bench/serve_compare.py "${targets[@]}" --n "$n" --max-tokens "$MAX_TOKENS" --prompt-words "$PROMPT_WORDS" \
    --rounds "$ROUNDS" --warmup "$WARMUP" --json-out "$OUT/results.jsonl" ${COMPARE_ARGS:-} \
    | grep -v '^{' || true
  stop_servers
done
echo
python3 bench/serve_compare.py --summarize "$OUT/results.jsonl"
echo "(results: $OUT/results.jsonl, server logs: $OUT)"
