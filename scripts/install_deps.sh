#!/usr/bin/env bash
# Installs the Debian packages sdrt needs to build, test and train. Idempotent: packages
# already present are skipped, and apt is not touched at all when nothing is missing.
set -euo pipefail

packages=(
  build-essential cmake g++ pkg-config
  libdnnl-dev nlohmann-json3-dev libcli11-dev libpng-dev libcpp-httplib-dev
  googletest libgtest-dev libbenchmark-dev
  clang libclang-rt-14-dev               # libFuzzer targets
  python3-torch python3-numpy python3-pil  # the trainer (training/) and reference tooling
  libopenblas0-openmp                      # fast BLAS for Debian's torch (6x faster training steps)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} == 0 )); then
  exit 0
fi
echo "install_deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
