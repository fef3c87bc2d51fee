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
# sdrt quantize: bad requests fail with the reason, write no output folder, and leave an existing
# one untouched.
expect_quantize_error() {
  local fragment="$1" out="$2"
  shift 2
  local existed=0
  [[ -e "$out" ]] && existed=1
  local msg
  msg=$("$sdrt" quantize --model "$model" --out "$out" "$@" 2>&1)
  local rc=$? bad=0
  [[ $rc -eq 0 || "$msg" != *"$fragment"* ]] && bad=1
  (( !existed )) && [[ -e "$out" ]] && bad=1
  if (( bad )); then
    echo "FAIL: quantize --out $out $* -> rc=$rc, output: $msg"
    failures=$((failures + 1))
  else
    echo "ok: quantize $* -> $msg"
  fi
}
rm -rf "$work/q-new" "$work/q-full"
expect_quantize_error "awq not in" "$work/q-new" --method awq
mkdir -p "$work/q-full" && echo precious > "$work/q-full/keep.txt"
expect_quantize_error "already exists" "$work/q-full" --method dynamic
if [[ "$(ls -A "$work/q-full")" != "keep.txt" || "$(cat "$work/q-full/keep.txt")" != precious ]]; then
  echo "FAIL: quantize touched the existing folder $work/q-full"
  failures=$((failures + 1))
fi
expect_quantize_error "missing-prompts.txt: cannot read" "$work/q-new" --calibration-prompts "$work/missing-prompts.txt"
: > "$work/empty-prompts.txt"
expect_quantize_error "holds no prompts" "$work/q-new" --calibration-prompts "$work/empty-prompts.txt"
expect_quantize_error "not a valid regular expression" "$work/q-new" --keep-float '(['
# And the int8 paths run: --precision int8 on the float model, and a (briefly calibrated) ptq folder.
expect_success() {
  local what="$1"
  shift
  local msg
  msg=$("$@" 2>&1)
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "FAIL: $what -> rc=$rc, output: $msg"
    failures=$((failures + 1))
  else
    echo "ok: $what"
  fi
}
rm -f "$work/int8.png" "$work/ptq.png"
rm -rf "$work/q-ptq"
expect_success "generate --precision int8" env SDRT_MODEL="$model" "$sdrt" generate --prompt "red apple" --quiet \
  --precision int8 --steps 2 --width 64 --height 64 --output "$work/int8.png"
[[ -s "$work/int8.png" ]] || { echo "FAIL: generate --precision int8 wrote no image"; failures=$((failures + 1)); }
expect_success "quantize --method ptq" "$sdrt" quantize --model "$model" --out "$work/q-ptq" --calibration-samples 1 \
  --calibration-steps 1 --calibration-width 64 --calibration-height 64
expect_success "generate on the ptq folder" "$sdrt" generate --model "$work/q-ptq" --prompt "red apple" --quiet \
  --steps 2 --width 64 --height 64 --output "$work/ptq.png"
[[ -s "$work/ptq.png" ]] || { echo "FAIL: generate on the ptq folder wrote no image"; failures=$((failures + 1)); }
rm -rf "$work/q-ptq"
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
