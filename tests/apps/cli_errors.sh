#!/usr/bin/env bash
# The CLI rejects bad requests before doing any work, with a message that says what is wrong,
# and exits non-zero without writing an output file.
set -uo pipefail
sdrt="$1"
model="$2"
work="$3"
mkdir -p "$work"
failures=0
expect_error() {
  local fragment="$1"
  shift
  local out="$work/should-not-exist.png"
  rm -f "$out"
  local msg
  msg=$(SDRT_MODEL="$model" "$sdrt" generate --prompt x --quiet --output "$out" "$@" 2>&1)
  local rc=$?
  if [[ $rc -eq 0 || "$msg" != *"$fragment"* || -e "$out" ]]; then
    echo "FAIL: generate $* -> rc=$rc, output: $msg"
    failures=$((failures + 1))
  else
    echo "ok: generate $* -> $msg"
  fi
}
expect_error "multiple of 8" --width 100
expect_error "multiple of 8" --height 260
expect_error "at least 1" --steps 0
expect_error "4096-pixel limit" --width 65536
expect_error "images must be between" --images 0
expect_error "--scheduler" --scheduler warp
expect_error "--precision" --precision fp16
expect_error "no model_index.json" --model "$work"
expect_error "missing.safetensors" --latents "$work/missing.safetensors"
echo "x" > "$work/garbage.safetensors"
expect_error "garbage.safetensors" --latents "$work/garbage.safetensors"
# bf16 where oneDNN has no bf16 kernels: AVX2 CPUs, and any CPU capped to AVX2.
SDRT_MAX_ISA=avx2 expect_error "use --precision fp32" --precision bf16
SDRT_MAX_ISA=sse9 expect_error "SDRT_MAX_ISA='sse9'" --steps 1
# --version names the ISA the kernels run, cap included.
version=$(SDRT_MAX_ISA=scalar "$sdrt" --version 2>&1)
if [[ "$version" == *"kernels: sdrt scalar"*"oneDNN"* ]]; then
  echo "ok: --version -> ${version//$'\n'/ | }"
else
  echo "FAIL: SDRT_MAX_ISA=scalar sdrt --version -> $version"
  failures=$((failures + 1))
fi
(( failures == 0 )) && echo "$failures failed" && exit 0
echo "$failures checks failed"
exit 1
