#!/usr/bin/env bash
# Builds sdrt and runs the whole test suite (ctest). This is the README's test command and
# what CI runs. It installs every package (scripts/install_deps.sh --all: the runtime set plus
# GoogleTest, clang, PyTorch, ...) and configures build/ with -DSDRT_BUILD_TESTS=ON: the same
# build dir as scripts/sdrt, which only adds the test targets and rebuilds nothing it built.
# Options:
#   --sanitize        build into build-asan with AddressSanitizer + UndefinedBehaviorSanitizer
#   --max-isa TIER    run the suite (less the full-size smoke tests) with SDRT_MAX_ISA=TIER
#                     (scalar, avx2, avx512): the vectorised kernels' lower tiers and oneDNN's
#                     lower ISAs, as on a CPU that lacks what this one has. Tests that need an
#                     instruction set above the cap skip, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --all

build_dir=build
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DSDRT_BUILD_TESTS=ON)
ctest_args=()
if [[ "${1:-}" == "--max-isa" ]]; then
  [[ -n "${2:-}" ]] || { echo "test.sh: --max-isa needs a tier (scalar, avx2, avx512)" >&2; exit 2; }
  export SDRT_MAX_ISA="$2"
  ctest_args=(-LE full_size)
  echo "test.sh: the suite with SDRT_MAX_ISA=$SDRT_MAX_ISA"
elif [[ "${1:-}" == "--sanitize" ]]; then
  build_dir=build-asan
  ctest_args=(-LE full_size)
  cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSDRT_SANITIZE=ON -DSDRT_BUILD_TESTS=ON)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
cmake -S . -B "$build_dir" "${cmake_args[@]}" > "$build_dir.log" 2>&1 || { cat "$build_dir.log"; exit 1; }
cmake --build "$build_dir" -j"$(nproc)" >> "$build_dir.log" 2>&1 || { tail -60 "$build_dir.log"; exit 1; }
cd "$build_dir"
# Serially: each test already uses every core (OpenMP), and two multi-threaded processes
# sharing the cores slow each other down many times over.
ctest --output-on-failure --timeout 1800 "${ctest_args[@]}"
