#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/simd_math.h"

namespace sdrt::kernels::SDRT_ISA_NS {

#include "kernels/isa_ops.inc"

namespace {

// Source index per destination index, computed as PyTorch does: a float scale in / out.
std::vector<int64_t> nearest_source_index(int64_t in, int64_t out) {
  float scale = static_cast<float>(in) / static_cast<float>(out);
  std::vector<int64_t> idx(static_cast<size_t>(out));
  for (int64_t i = 0; i < out; ++i)
    idx[i] = std::min(static_cast<int64_t>(std::floor(static_cast<float>(i) * scale)), in - 1);
  return idx;
}

}  // namespace

Tensor upsample_nearest(const Tensor& x, int64_t out_h, int64_t out_w) {
  SDRT_CHECK(x.rank() == 4, "upsample_nearest: input must be NCHW, got ", shape_str(x.shape()));
  SDRT_CHECK(out_h > 0 && out_w > 0, "upsample_nearest: bad output size ", out_h, "x", out_w);
  int64_t h = x.dim(2), w = x.dim(3);
  if (out_h == 2 * h && out_w == 2 * w) return upsample_nearest2x(x);
  auto rows = nearest_source_index(h, out_h), cols = nearest_source_index(w, out_w);
  int64_t planes = x.dim(0) * x.dim(1);
  Tensor y = Tensor::empty({x.dim(0), x.dim(1), out_h, out_w});
  const float* xd = x.data();
  float* yd = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < out_h; ++i)
      for (int64_t j = 0; j < out_w; ++j) yd[(p * out_h + i) * out_w + j] = xd[(p * h + rows[i]) * w + cols[j]];
  return y;
}

Tensor upsample_nearest2x_channels_last(const Tensor& x) {
  SDRT_CHECK(x.rank() == 4, "upsample_nearest2x_channels_last: input must be NHWC, got ", shape_str(x.shape()));
  const int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), c = x.dim(3);
  Tensor y = Tensor::empty({n, 2 * h, 2 * w, c});
  const float* xd = x.data();
  float* yd = y.data();
  const auto pixel_bytes = static_cast<size_t>(c) * sizeof(float);
  // Input row r becomes output rows 2r and 2r + 1, each pixel written twice side by side.
#pragma omp parallel for schedule(static) if (x.numel() >= simd_math::kMinParallelFloats)
  for (int64_t r = 0; r < n * h; ++r) {
    const float* src = xd + r * w * c;
    float* top = yd + 2 * r * 2 * w * c;
    for (int64_t j = 0; j < w; ++j) {
      std::memcpy(top + 2 * j * c, src + j * c, pixel_bytes);
      std::memcpy(top + (2 * j + 1) * c, src + j * c, pixel_bytes);
    }
    std::memcpy(top + 2 * w * c, top, 2 * w * pixel_bytes);
  }
  return y;
}

}  // namespace sdrt::kernels::SDRT_ISA_NS
