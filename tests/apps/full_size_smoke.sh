#!/usr/bin/env bash
# End to end at real scale: a full-size SD 1.5 or SD 2.1 architecture with random weights
# (sdrt init-random --like PRESET), generated at 256x256 in 2 steps. Exercises loading 2-2.6 GB
# of f16 weights, memory and wiring at the sizes real checkpoints have; SD 2.1 adds
# v-prediction, linear projections, per-level head counts and the GELU text encoder.
# Usage: full_size_smoke.sh SDRT WORKDIR PRESET
set -euo pipefail
sdrt="$1"
work="$2"
like="${3:-sd15}"
model="$work/$like-random"
if [[ ! -f "$model/unet/diffusion_pytorch_model.safetensors" ]]; then
  "$sdrt" init-random --like "$like" --out "$model" --seed 1
fi
out="$work/$like-smoke"
rm -f "$out.png" "$out.safetensors"
"$sdrt" generate --model "$model" --prompt "a photograph of an astronaut riding a horse" \
  --negative-prompt "blurry" --steps 2 --width 256 --height 256 --seed 42 \
  --output "$out.png" --output-tensor "$out.safetensors"
# The PNG header must say 256 x 256, RGB, 8 bit.
header=$(od -An -tx1 -j16 -N10 "$out.png" | tr -d ' \n')
[[ "$header" == "00000100000001000802" ]] || { echo "unexpected PNG header: $header"; exit 1; }
# The image tensor must be finite and not constant (noise from random weights, but real numbers).
"$sdrt" inspect "$out.safetensors" --check-finite image
echo "full-size $like smoke test passed"
