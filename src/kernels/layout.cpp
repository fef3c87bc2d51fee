#include <cstring>

#include "core/error.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

Tensor upsample_nearest2x(const Tensor& x) {
  SDRT_CHECK(x.rank() == 4, "upsample_nearest2x: input must be NCHW, got ", shape_str(x.shape()));
  int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
  Tensor y = Tensor::empty({x.dim(0), x.dim(1), 2 * h, 2 * w});
  const float* xd = x.data();
  float* yd = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < h; ++i) {
      const float* src = xd + (p * h + i) * w;
      float* dst = yd + (p * 2 * h + 2 * i) * 2 * w;
      for (int64_t j = 0; j < w; ++j) dst[2 * j] = dst[2 * j + 1] = src[j];
      std::memcpy(dst + 2 * w, dst, static_cast<size_t>(2 * w) * sizeof(float));
    }
  }
  return y;
}

Tensor concat_channels(const Tensor& a, const Tensor& b) {
  SDRT_CHECK(a.rank() >= 2 && a.rank() == b.rank() && a.dim(0) == b.dim(0), "concat_channels: ",
             shape_str(a.shape()), " and ", shape_str(b.shape()), " disagree");
  for (int i = 2; i < a.rank(); ++i)
    SDRT_CHECK(a.dim(i) == b.dim(i), "concat_channels: ", shape_str(a.shape()), " and ", shape_str(b.shape()),
               " disagree");
  Shape s = a.shape();
  s[1] += b.dim(1);
  Tensor y = Tensor::empty(s);
  int64_t n = a.dim(0);
  int64_t a_row = a.numel() / n, b_row = b.numel() / n;
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(y.data() + i * (a_row + b_row), a.data() + i * a_row, static_cast<size_t>(a_row) * sizeof(float));
    std::memcpy(y.data() + i * (a_row + b_row) + a_row, b.data() + i * b_row,
                static_cast<size_t>(b_row) * sizeof(float));
  }
  return y;
}

namespace {

// out[n][j][i] = in[n][i][j] for an [n, rows, cols] tensor, in cache-friendly tiles.
void transpose_batched(const float* in, float* out, int64_t n, int64_t rows, int64_t cols) {
  constexpr int64_t kTile = 32;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t r0 = 0; r0 < rows; r0 += kTile) {
      const float* src = in + b * rows * cols;
      float* dst = out + b * rows * cols;
      for (int64_t c0 = 0; c0 < cols; c0 += kTile)
        for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r)
          for (int64_t c = c0; c < std::min(cols, c0 + kTile); ++c) dst[c * rows + r] = src[r * cols + c];
    }
  }
}

}  // namespace

Tensor nchw_to_nlc(const Tensor& x) {
  SDRT_CHECK(x.rank() == 4, "nchw_to_nlc: input must be NCHW, got ", shape_str(x.shape()));
  int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  Tensor y = Tensor::empty({n, hw, c});
  transpose_batched(x.data(), y.data(), n, c, hw);
  return y;
}

Tensor nlc_to_nchw(const Tensor& x, int64_t h, int64_t w) {
  SDRT_CHECK(x.rank() == 3 && x.dim(1) == h * w, "nlc_to_nchw: ", shape_str(x.shape()), " is not [N, ", h * w,
             ", C]");
  int64_t n = x.dim(0), c = x.dim(2);
  Tensor y = Tensor::empty({n, c, h, w});
  transpose_batched(x.data(), y.data(), n, h * w, c);
  return y;
}

}  // namespace sdrt::kernels
