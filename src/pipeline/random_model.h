// Full-size models with the real Stable Diffusion configs and random weights: the project's
// stand-in for real checkpoints in benchmarks and large-scale tests (no model can be
// downloaded here). Names and shapes come from the loaders themselves (a synthetic
// WeightSource records what each module asks for), so the files are exactly what the engine
// would load from a real diffusers folder of that architecture.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace sdrt {

struct RandomModelOptions {
  std::string like = "sd15";  // sd15 | sd21
  std::string out_dir;
  DType dtype = DType::F16;   // F16 or F32
  uint64_t seed = 0;
  std::string tokenizer_dir;  // vocab.json + merges.txt to copy in
};

std::vector<std::string> random_model_presets();
// Writes model_index.json, scheduler/, tokenizer/, text_encoder/, unet/, vae/ under out_dir.
// Returns the number of parameters written.
int64_t write_random_model(const RandomModelOptions& opts);

}  // namespace sdrt
