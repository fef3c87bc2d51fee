#!/usr/bin/env bash
# CI check of the trainer: the torch modules reproduce the golden diffusers tensors, the
# export round-trips, and `train.py --smoke` trains a few steps and exports a loadable
# folder. Uses Debian's python3-torch (/usr/bin/python3), not whatever python3 is on PATH.
set -euo pipefail
cd "$(dirname "$0")"
/usr/bin/python3 -m unittest discover -s . -p 'test_*.py' -v 2>&1 | tail -25

# The engine is the contract: the exported folder must load and generate through sdrt.
sdrt="../build/sdrt"
if [[ -x "$sdrt" ]]; then
  out="$(mktemp -d)"
  /usr/bin/python3 train.py --smoke --threads 1 --data synthetic --run smoke-engine --out "$out/model" > "$out/train.log" 2>&1 \
    || { tail -20 "$out/train.log"; exit 1; }
  "$sdrt" generate --model "$out/model" --prompt "red apple, twitter style" --steps 4 --seed 1 \
    --output "$out/smoke.png" --output-tensor "$out/smoke.safetensors" --quiet
  "$sdrt" inspect "$out/smoke.safetensors" --check-finite image | tail -1
  # Fine-tuning from the exported folder, with caption augmentation on.
  /usr/bin/python3 train.py --smoke --threads 1 --data synthetic --run smoke-engine-ft --vae-from runs/smoke-engine \
    --unet-from "$out/model" --caption-templates 0.5 --stray-words 0.2 --out "$out/ft" > "$out/ft.log" 2>&1 \
    || { tail -20 "$out/ft.log"; exit 1; }
  "$sdrt" generate --model "$out/ft" --prompt "cartoon red circle" --steps 2 --seed 1 --output "$out/ft.png" --quiet
  # Quantization-aware training exports an int8 folder: the engine must run it, and its int8
  # arithmetic must agree with the trainer's fake quantisation closely enough to draw a finite image.
  /usr/bin/python3 qat.py --smoke --threads 1 --data synthetic --run smoke-engine-qat --out "$out/q" > "$out/qat.log" 2>&1 \
    || { tail -20 "$out/qat.log"; exit 1; }
  "$sdrt" generate --model "$out/q" --prompt "red apple, twitter style" --steps 4 --seed 1 \
    --output "$out/q.png" --output-tensor "$out/q.safetensors" --quiet
  "$sdrt" inspect "$out/q.safetensors" --check-finite image | tail -1
  rm -rf "$out" runs/smoke-engine runs/smoke-engine-ft runs/smoke-engine-qat
  echo "smoke model and its int8 QAT folder generate through sdrt"
fi
