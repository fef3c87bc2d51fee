#include <cmath>

#include "core/error.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
  int64_t d = x.dim(-1);
  SDRT_CHECK(gamma.numel() == d && beta.numel() == d, "layer_norm: parameters ", shape_str(gamma.shape()),
             " do not match input ", shape_str(x.shape()));
  int64_t rows = d ? x.numel() / d : 0;
  Tensor y = Tensor::empty(x.shape());
  const float* xd = x.data();
  float* yd = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = xd + r * d;
    float* dst = yd + r * d;
    double sum = 0;
    for (int64_t i = 0; i < d; ++i) sum += src[i];
    double mean = sum / static_cast<double>(d);
    double sq = 0;
    for (int64_t i = 0; i < d; ++i) sq += (src[i] - mean) * (src[i] - mean);
    float inv_std = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(d) + eps));
    float mean_f = static_cast<float>(mean);
    for (int64_t i = 0; i < d; ++i) dst[i] = (src[i] - mean_f) * inv_std * gamma[i] + beta[i];
  }
  return y;
}

}  // namespace sdrt::kernels
