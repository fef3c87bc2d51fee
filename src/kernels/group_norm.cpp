#include <cmath>

#include "core/error.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps, bool fuse_silu) {
  SDRT_CHECK(x.rank() >= 2, "group_norm: input must be [N, C, ...], got ", shape_str(x.shape()));
  int64_t n = x.dim(0), c = x.dim(1);
  SDRT_CHECK(groups > 0 && c % groups == 0, "group_norm: ", c, " channels do not split into ", groups, " groups");
  SDRT_CHECK(gamma.numel() == c && beta.numel() == c, "group_norm: affine parameters ", shape_str(gamma.shape()),
             "/", shape_str(beta.shape()), " do not match ", c, " channels");
  int64_t spatial = c ? x.numel() / (n * c) : 0;
  int64_t per_group = c / groups;
  Tensor y = Tensor::empty(x.shape());
  const float* xd = x.data();
  float* yd = y.data();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t g = 0; g < groups; ++g) {
      int64_t base = (b * c + g * per_group) * spatial;
      int64_t count = per_group * spatial;
      // Two passes over the group (mean, then centred variance) for accuracy matching PyTorch.
      double sum = 0;
      for (int64_t i = 0; i < count; ++i) sum += xd[base + i];
      double mean = sum / static_cast<double>(count);
      double sq = 0;
      for (int64_t i = 0; i < count; ++i) {
        double d = xd[base + i] - mean;
        sq += d * d;
      }
      float inv_std = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(count) + eps));
      float mean_f = static_cast<float>(mean);
      for (int64_t ch = 0; ch < per_group; ++ch) {
        int64_t cc = g * per_group + ch;
        float scale = inv_std * gamma[cc];
        float shift = beta[cc] - mean_f * scale;
        const float* src = xd + base + ch * spatial;
        float* dst = yd + base + ch * spatial;
        if (fuse_silu) {
          for (int64_t i = 0; i < spatial; ++i) {
            float v = src[i] * scale + shift;
            dst[i] = v / (1.0f + std::exp(-v));
          }
        } else {
          for (int64_t i = 0; i < spatial; ++i) dst[i] = src[i] * scale + shift;
        }
      }
    }
  }
  return y;
}

}  // namespace sdrt::kernels
