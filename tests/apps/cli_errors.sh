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
(( failures == 0 )) && echo "$failures failed" && exit 0
echo "$failures checks failed"
exit 1
