// Random numbers that reproduce PyTorch's CPU generator: `TorchCpuRng(seed).randn(shape)` gives
// the values of `torch.manual_seed(seed); torch.randn(shape)` (float32, CPU), and successive
// calls continue the same stream. diffusers draws the initial latents and every ancestral
// sampler's per-step noise from one such generator, so the same seed gives the same image.
//
// The algorithm: mt19937 seeded with the low 32 bits of the seed; each uniform is
// (next32 & 0xFFFFFF) / 2^24; tensors of >= 16 values are filled with uniforms first and then
// transformed 16 at a time by Box-Muller (u1 = 1 - x[j], u2 = x[j+8], j < 8), the last 16 values
// recomputed from fresh uniforms when the size is not a multiple of 16; smaller tensors use
// torch's scalar normal path (Box-Muller in double, caching the second value).
#pragma once

#include <cstdint>
#include <optional>
#include <random>

#include "core/tensor.h"

namespace sdrt {

class TorchCpuRng {
 public:
  explicit TorchCpuRng(uint64_t seed) : engine_(static_cast<uint32_t>(seed)) {}
  Tensor randn(const Shape& shape);

 private:
  float uniform_float();
  double uniform_double();
  double normal_double();
  std::mt19937 engine_;
  std::optional<double> cached_normal_;
};

}  // namespace sdrt
