#!/bin/sh
# Builds llama.cpp's CLIP image encoder (tools/mtmd/clip.cpp and models/*.cpp) with its ggml, CPU
# backend only, and bench/llama_clip_bench.cpp on top: the llama.cpp side of bench/clip_compare.py
# (docs/PERFORMANCE.md, "Issue 13"). Nothing is written inside this repository.
#   MTMD=/path/to/llama.cpp/tools/mtmd GGML=/path/to/ggml OUT=/tmp/llama-clip bench/build_llama_clip.sh
# GGML is the ggml directory that goes with that llama.cpp (include/, src/). Flags as llama.cpp's
# CMake with GGML_NATIVE=ON: -O3 -march=native, OpenMP threads, llamafile's sgemm, CPU repacking.
# Measured with llama.cpp ec98e2002 as vendored by ollama (commit f63eea3: llama/llama.cpp and
# ml/backend/ggml/ggml), because a checkout of llama.cpp itself could not be brought here.
set -e
: "${MTMD:?set MTMD to llama.cpp's tools/mtmd}" "${GGML:?set GGML to the matching ggml directory}"
OUT=${OUT:-/tmp/llama-clip}; J=${J:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT/obj"
printf '#define GGML_VERSION "0.0.0"\n#define GGML_COMMIT "unknown"\n' > "$OUT/ver.h"
CF="-include $OUT/ver.h -O3 -march=native -fopenmp -fPIC -DNDEBUG -D_GNU_SOURCE -D_XOPEN_SOURCE=600
 -DGGML_SCHED_MAX_COPIES=4 -DGGML_USE_CPU -DGGML_USE_OPENMP -DGGML_USE_LLAMAFILE -DGGML_USE_CPU_REPACK
 -I$GGML/include -I$GGML/src -I$GGML/src/ggml-cpu -I$MTMD"
CF=$(echo $CF)
S=$GGML/src; C=$S/ggml-cpu
SRCS="$S/ggml.c $S/ggml.cpp $S/ggml-alloc.c $S/ggml-backend.cpp $S/ggml-opt.cpp $S/ggml-threading.cpp
 $S/ggml-quants.c $S/gguf.cpp $S/ggml-backend-reg.cpp $C/ggml-cpu.c $C/ggml-cpu.cpp $C/ops.cpp $C/vec.cpp
 $C/binary-ops.cpp $C/unary-ops.cpp $C/quants.c $C/repack.cpp $C/traits.cpp $C/hbm.cpp $C/llamafile/sgemm.cpp
 $C/arch/x86/quants.c $C/arch/x86/repack.cpp $C/amx/amx.cpp $C/amx/mmq.cpp
 $MTMD/clip.cpp $(ls "$MTMD"/models/*.cpp) $HERE/llama_clip_bench.cpp"
for s in $SRCS; do
  o=$OUT/obj/$(echo "$s" | tr / _).o
  [ -f "$o" ] && [ "$o" -nt "$s" ] && continue
  case $s in *.c) echo "gcc -std=gnu11 $CF -c $s -o $o" ;; *) echo "g++ -std=gnu++17 $CF -c $s -o $o" ;; esac
done | tr '\n' '\0' | xargs -0 -P "$J" -I{} sh -c '{}'
g++ -fopenmp -o "$OUT/llama-clip-bench" "$OUT"/obj/*.o -lpthread -ldl -lm
echo "built $OUT/llama-clip-bench"
