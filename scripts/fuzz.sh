#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang (ASan + UBSan) into
# build-fuzz/ and runs each (`ci` or SECONDS, default 60) from seed corpora made
# of real inputs. Needs the main build (its generated Presets.cpp and dsv3c).
# Prints one line per target: executions, corpus size, and "crash" if any.
set -euo pipefail
cd "$(dirname "$0")/.."
# `ci`: a fixed number of runs per target from a fixed seed, so that the
# test command is reproducible (a time bound makes what a run reaches depend
# on the machine's speed: a CI run once found what the run here had not);
# a number N: N seconds a target (longer exploratory runs).
MODE=${1:-60}
declare -A CI_RUNS=([config]=600000 [safetensors]=12000 [manifest]=25000 [tokenizer]=80000
                    [mlir]=250000)
OUT=build-fuzz
# ci: always from the seed corpora alone (reproducible), not from what
# earlier local runs grew.
[ "$MODE" = ci ] && rm -rf $OUT/corpus $OUT/findings
mkdir -p $OUT/corpus/{config,safetensors,manifest,tokenizer,mlir}
CXX="clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I."
$CXX fuzz/config_fuzzer.cpp models/ModelConfig.cpp build/models/Presets.cpp -lfmt -o $OUT/config_fuzzer
$CXX fuzz/safetensors_fuzzer.cpp runtime/Safetensors.cpp runtime/DType.cpp -lfmt -o $OUT/safetensors_fuzzer
$CXX fuzz/manifest_fuzzer.cpp runtime/Artifact.cpp runtime/DType.cpp -lfmt -o $OUT/manifest_fuzzer
# The MLIR parser entry of dsv3-opt: the dialects compiled with the fuzzer's
# instrumentation, MLIR itself from Debian's libMLIR.so.
MLIRCXX="$CXX -fno-rtti -fno-sanitize=vptr -Ibuild -I/usr/lib/llvm-22/include"
mkdir -p $OUT/mlir-obj
for f in dialects/Dsv3/IR/Dsv3Dialect.cpp dialects/Dsv3/IR/Dsv3Attrs.cpp \
         dialects/Dsv3/IR/Dsv3Ops.cpp dialects/Dsv3/IR/Dsv3Gradients.cpp \
         dialects/Dsv3K/IR/Dsv3KOps.cpp fuzz/mlir_fuzzer.cpp; do
  ${MLIRCXX/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,} -c $f -o $OUT/mlir-obj/$(basename $f .cpp).o
done
$CXX $OUT/mlir-obj/*.o -L/usr/lib/llvm-22/lib -lMLIR -lLLVM -Wl,-rpath,/usr/lib/llvm-22/lib \
  -o $OUT/mlir_fuzzer
$CXX -DDSV3_FUZZ_TOKENIZER="\"$PWD/test/Tokenizer/Inputs/deepseek-v3-like/tokenizer.json\"" \
  fuzz/tokenizer_fuzzer.cpp runtime/Tokenizer.cpp runtime/Regex.cpp runtime/Safetensors.cpp \
  runtime/DType.cpp -lfmt -o $OUT/tokenizer_fuzzer
# Seeds: every preset and fixture config, a small checkpoint, a manifest.
cp models/presets/*.json $OUT/corpus/config/
for f in test/data/fixtures/*/config.json test/data/configs/*.json; do
  cp "$f" "$OUT/corpus/config/$(echo "$f" | tr '/' '_')"
done
python3 - "$OUT/corpus/safetensors/seed.safetensors" <<'PY'
import json, struct, sys
h = {"__metadata__": {"format": "pt"},
     "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
     "b": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]},
     "c": {"dtype": "I64", "shape": [1], "data_offsets": [32, 40]}}
hb = json.dumps(h).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(hb)) + hb + bytes(range(40)))
PY
rm -rf $OUT/tiny && build/bin/dsv3c tiny --quiet -o $OUT/tiny
cp $OUT/tiny/manifest.json $OUT/corpus/manifest/tiny.json
# Texts: the tokenizer test cases and the multilingual sample, a line each.
python3 - "$OUT/corpus/tokenizer" <<'PY'
import json, sys
lines = [json.loads(l)["text"] for l in open("test/Tokenizer/Inputs/cases.jsonl", encoding="utf-8")]
lines += open("test/Tokenizer/Inputs/multilingual.txt", encoding="utf-8").read().splitlines()
for i, t in enumerate(lines):
    open(f"{sys.argv[1]}/case{i}", "wb").write(t.encode("utf-8"))
PY
# IR: every lit test's module, a split (`// -----`) each.
python3 - "$OUT/corpus/mlir" <<'PY'
import glob, os, sys
for f in sorted(glob.glob("test/**/*.mlir", recursive=True)):
    for i, part in enumerate(open(f, encoding="utf-8").read().split("// -----")):
        open(f"{sys.argv[1]}/{os.path.basename(f)}.{i}", "w", encoding="utf-8").write(part)
PY
status=0
for t in config safetensors manifest tokenizer mlir; do
  # Texts stay short: whitespace runs cost quadratic time in the split
  # patterns (as in Oniguruma), which a long input turns into a timeout.
  MAXLEN=262144
  [ $t = tokenizer ] && MAXLEN=4096
  mkdir -p $OUT/findings/$t
  if [ "$MODE" = ci ]; then
    BOUND="-seed=1 -runs=${CI_RUNS[$t]}"
    LABEL="${CI_RUNS[$t]} runs (seed 1)"
  else
    BOUND="-max_total_time=$MODE"
    LABEL="${MODE}s"
  fi
  if ! (cd $OUT/findings/$t && ASAN_OPTIONS=detect_leaks=0:allow_user_poisoning=0 ../../${t}_fuzzer ../../corpus/$t \
          $BOUND -max_len=$MAXLEN -timeout=10 -rss_limit_mb=4096 \
          -print_final_stats=1 > ../../$t.log 2>&1); then
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' $OUT/$t.log | grep -o '[0-9]*$' || echo 0)
  crashes=$(ls $OUT/findings/$t | grep -c -E '^(crash|leak|timeout|oom)-' || true)
  echo "fuzz $t: $execs executions, $LABEL, corpus $(ls $OUT/corpus/$t | wc -l) inputs, $crashes findings"
  [ "$crashes" = 0 ] || { status=1; grep -m3 -E 'ERROR|SUMMARY' $OUT/$t.log || true; }
done
exit $status
