#include <algorithm>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/simd_math.h"

namespace sdrt::kernels::SDRT_ISA_NS {

#include "kernels/isa_ops.inc"

namespace {

using simd::Vec;

// out[i] = hidden[i] * gelu(gate[i]) for i in [0, n).
void gate_with_gelu(const float* hidden, const float* gate, float* out, int64_t n) {
  simd_math::write_vectors(out, n, [&](int64_t i, int lanes) {
    Vec g = simd_math::gelu(simd_math::load_lanes(gate + i, lanes));
    return simd::mul(simd_math::load_lanes(hidden + i, lanes), g);
  });
}

}  // namespace

Tensor geglu(const Tensor& x) {
  int64_t two_h = x.dim(-1);
  SDRT_CHECK(two_h % 2 == 0, "geglu: last dimension must be even, got ", shape_str(x.shape()));
  int64_t h = two_h / 2, rows = two_h ? x.numel() / two_h : 0;
  Shape out_shape = x.shape();
  out_shape.back() = h;
  Tensor y = Tensor::empty(out_shape);
  const float* xd = x.data();
  float* yd = y.data();
  // Chunks of the outputs, not whole rows, so that a few long rows still use every thread.
  simd_math::for_each_chunk(rows * h, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {
      int64_t r = i / h, col = i % h, n = std::min(end - i, h - col);
      const float* hidden = xd + r * two_h + col;
      gate_with_gelu(hidden, hidden + h, yd + i, n);
      i += n;
    }
  });
  return y;
}

}  // namespace sdrt::kernels::SDRT_ISA_NS
