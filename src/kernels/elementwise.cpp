#include "core/error.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

void add_inplace(Tensor& x, const Tensor& y) {
  SDRT_CHECK(x.shape() == y.shape(), "add: shapes ", shape_str(x.shape()), " and ", shape_str(y.shape()), " differ");
  float* xd = x.data();
  const float* yd = y.data();
  int64_t n = x.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) xd[i] += yd[i];
}

void scale_inplace(Tensor& x, float s) {
  float* xd = x.data();
  int64_t n = x.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) xd[i] *= s;
}

void add_channel_broadcast(Tensor& x, const Tensor& v) {
  SDRT_CHECK(x.rank() >= 2, "add_channel_broadcast: input must be [N, C, ...]");
  int64_t n = x.dim(0), c = x.dim(1);
  bool per_sample = v.numel() == n * c;
  SDRT_CHECK(per_sample || v.numel() == c, "add_channel_broadcast: ", shape_str(v.shape()), " does not broadcast to ",
             shape_str(x.shape()));
  int64_t spatial = c ? x.numel() / (n * c) : 0;
  float* xd = x.data();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t ch = 0; ch < c; ++ch) {
      float add = v[per_sample ? b * c + ch : ch];
      float* p = xd + (b * c + ch) * spatial;
      for (int64_t i = 0; i < spatial; ++i) p[i] += add;
    }
  }
}

}  // namespace sdrt::kernels
