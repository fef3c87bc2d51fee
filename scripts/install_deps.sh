#!/usr/bin/env bash
# Installs the Debian 12 packages sdrt needs, every one named explicitly: apt runs with
# --no-install-recommends, so a package's "Recommends" is never relied on (libdnnl-dev only
# *recommends* the OpenCL development files that its CMake package requires).
#
#   scripts/install_deps.sh --runtime   what building and running the `sdrt` CLI needs
#   scripts/install_deps.sh [--all]     that, plus what the tests, benchmarks, fuzzers and the
#                                       trainer need (default)
#   add --check                         install nothing; exit 1 if a package of the set is missing
#
# Idempotent: packages already present are skipped, and apt is not touched at all (no update,
# no root needed) when nothing is missing.
set -euo pipefail

# Building and running the sdrt CLI (scripts/sdrt, the README's first command).
runtime=(
  g++ make cmake pkg-config
  libdnnl-dev
  # Debian's oneDNN is built with the OpenCL GPU runtime: dnnl-config.cmake calls
  # find_package(OpenCL REQUIRED), which needs OpenCL_LIBRARY (libOpenCL.so, from
  # ocl-icd-opencl-dev) and OpenCL_INCLUDE_DIR (CL/cl.h, from opencl-c-headers).
  ocl-icd-opencl-dev opencl-c-headers
  nlohmann-json3-dev libcli11-dev libpng-dev
)

# The test suite (scripts/test.sh), kernel benchmarks, fuzzers (scripts/fuzz.sh) and the
# trainer (training/smoke.sh).
development=(
  googletest libgtest-dev                  # tests/ (find_package(GTest))
  libbenchmark-dev                         # benchmarks/ (-DSDRT_BUILD_BENCHMARKS=ON)
  clang libclang-rt-14-dev                 # libFuzzer targets (fuzz/, scripts/fuzz.sh)
  python3 python3-numpy                    # tests/apps/crosscheck.sh image comparison
  python3-torch python3-pil                # the trainer (training/) and reference tooling (tools/)
  libopenblas0-openmp                      # fast BLAS for Debian's torch (6x faster training steps)
  libcpp-httplib-dev                       # kept from the original list; no target uses it yet
)

set_name=all
check_only=0
for arg in "$@"; do
  case "$arg" in
    --runtime) set_name=runtime ;;
    --all) set_name=all ;;
    --check) check_only=1 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install_deps: unknown option '$arg' (use --runtime, --all, --check)" >&2; exit 2 ;;
  esac
done
packages=("${runtime[@]}")
if [[ $set_name == all ]]; then packages+=("${development[@]}"); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} == 0 )); then
  exit 0
fi
if (( check_only )); then
  exit 1
fi
echo "install_deps ($set_name): installing ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
