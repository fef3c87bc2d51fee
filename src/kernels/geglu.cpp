#include <cmath>

#include "core/error.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

Tensor geglu(const Tensor& x) {
  int64_t two_h = x.dim(-1);
  SDRT_CHECK(two_h % 2 == 0, "geglu: last dimension must be even, got ", shape_str(x.shape()));
  int64_t h = two_h / 2, rows = x.numel() / two_h;
  Shape out_shape = x.shape();
  out_shape.back() = h;
  Tensor y = Tensor::empty(out_shape);
  const float* xd = x.data();
  float* yd = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* hidden = xd + r * two_h;
    const float* gate = hidden + h;
    for (int64_t i = 0; i < h; ++i) {
      float g = gate[i];
      yd[r * h + i] = hidden[i] * (0.5f * g * (1.0f + std::erf(g * 0.70710678118654752f)));
    }
  }
  return y;
}

}  // namespace sdrt::kernels
