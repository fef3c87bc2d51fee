#include <cmath>

#include "core/error.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

Tensor timestep_embedding(const std::vector<float>& timesteps, int dim, bool flip_sin_to_cos, float freq_shift,
                          float max_period) {
  SDRT_CHECK(dim >= 2, "timestep_embedding: dim must be at least 2, got ", dim);
  int half = dim / 2;
  int64_t n = static_cast<int64_t>(timesteps.size());
  Tensor emb({n, dim});  // zero-filled: an odd dim leaves the last column as zero padding
  // float32 throughout, in the order diffusers evaluates it, so fractional timesteps agree.
  float log_period = static_cast<float>(std::log(static_cast<double>(max_period)));
  for (int64_t b = 0; b < n; ++b) {
    for (int i = 0; i < half; ++i) {
      float exponent = -log_period * static_cast<float>(i);
      exponent = exponent / (static_cast<float>(half) - freq_shift);
      float arg = timesteps[b] * std::exp(exponent);
      float s = std::sin(arg), c = std::cos(arg);
      emb[b * dim + i] = flip_sin_to_cos ? c : s;
      emb[b * dim + half + i] = flip_sin_to_cos ? s : c;
    }
  }
  return emb;
}

}  // namespace sdrt::kernels
