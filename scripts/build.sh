#!/usr/bin/env bash
# Installs what is missing (scripts/install_deps.sh), configures build/ (Release) and builds.
#
#   scripts/build.sh [CMAKE_ARGS...]             everything: the sdrt CLI and the test suite
#                                                (-DSDRT_BUILD_TESTS=ON); all packages
#   scripts/build.sh --runtime [CMAKE_ARGS...]   only the `sdrt` target and the packages it
#                                                needs (what scripts/sdrt uses)
#
# Extra arguments go to cmake's configure step. The log is build.log.
#
# Both modes share build/, in either order, without rebuilding what is already built: the only
# cache option they touch is SDRT_BUILD_TESTS, which adds or drops the tests/ targets and
# changes no compile flag of the libraries or the CLI. --runtime sets it OFF only when it
# creates the cache (or when the cache says ON but the test packages are not installed, where
# configuring would fail); otherwise it keeps what the cache says, so after scripts/test.sh it
# stays ON and the next scripts/test.sh finds the option unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=all
if [[ "${1:-}" == "--runtime" ]]; then
  mode=runtime
  shift
fi

cmake_args=(-DCMAKE_BUILD_TYPE=Release)
build_args=()
if [[ $mode == runtime ]]; then
  scripts/install_deps.sh --runtime
  cached_tests=$(sed -n 's/^SDRT_BUILD_TESTS:BOOL=//p' build/CMakeCache.txt 2>/dev/null || true)
  if [[ -z "$cached_tests" ]]; then
    cmake_args+=(-DSDRT_BUILD_TESTS=OFF)        # a new build dir: no test suite
  elif [[ "$cached_tests" == ON ]] && ! scripts/install_deps.sh --all --check; then
    cmake_args+=(-DSDRT_BUILD_TESTS=OFF)        # the cache wants tests it cannot find
  fi
  build_args=(--target sdrt)
else
  scripts/install_deps.sh --all
  cmake_args+=(-DSDRT_BUILD_TESTS=ON)
fi

cmake -S . -B build "${cmake_args[@]}" "$@" > build.log 2>&1 || { cat build.log; exit 1; }
cmake --build build -j"$(nproc)" "${build_args[@]}" >> build.log 2>&1 || { tail -50 build.log; exit 1; }
