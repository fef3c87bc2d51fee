#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a bounded time.
# Usage: scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
scripts/install_deps.sh --all   # clang + libclang-rt-14-dev (libFuzzer) besides the runtime set
CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSDRT_BUILD_FUZZERS=ON \
  -DSDRT_BUILD_TESTS=OFF > build-fuzz.log 2>&1 || { cat build-fuzz.log; exit 1; }
targets=(fuzz_safetensors fuzz_tokenizer fuzz_quantization_config)
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}" >> build-fuzz.log 2>&1 || { tail -40 build-fuzz.log; exit 1; }
for t in "${targets[@]}"; do
  corpus="build-fuzz/corpus-${t#fuzz_}"
  mkdir -p "$corpus"
  cp -n fuzz/corpus/"${t#fuzz_}"/* "$corpus"/ 2>/dev/null || true
  echo "fuzzing $t for ${seconds}s"
  ./build-fuzz/fuzz/"$t" -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 "$corpus" 2>&1 | tail -5
done
