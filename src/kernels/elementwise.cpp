#include <algorithm>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/simd_math.h"

namespace sdrt::kernels::SDRT_ISA_NS {

#include "kernels/isa_ops.inc"

namespace {

using simd::Vec;

// x[i] += y[i] for i in [0, n).
void add_vectors(float* x, const float* y, int64_t n) {
  simd_math::write_vectors(x, n, [&](int64_t i, int lanes) {
    return simd::add(simd_math::load_lanes(x + i, lanes), simd_math::load_lanes(y + i, lanes));
  });
}

}  // namespace

void add_inplace(Tensor& x, const Tensor& y) {
  SDRT_CHECK(x.shape() == y.shape(), "add: shapes ", shape_str(x.shape()), " and ", shape_str(y.shape()), " differ");
  float* xd = x.data();
  const float* yd = y.data();
  simd_math::for_each_chunk(x.numel(), [&](int64_t begin, int64_t end) {
    add_vectors(xd + begin, yd + begin, end - begin);
  });
}

void scale_inplace(Tensor& x, float s) {
  float* xd = x.data();
  const Vec factor = simd::broadcast(s);
  simd_math::for_each_chunk(x.numel(), [&](int64_t begin, int64_t end) {
    simd_math::map_vectors(xd + begin, xd + begin, end - begin, [&](Vec v) { return simd::mul(v, factor); });
  });
}

void add_channel_broadcast(Tensor& x, const Tensor& v) {
  SDRT_CHECK(x.rank() >= 2, "add_channel_broadcast: input must be [N, C, ...]");
  int64_t n = x.dim(0), c = x.dim(1);
  bool per_sample = v.numel() == n * c;
  SDRT_CHECK(per_sample || v.numel() == c, "add_channel_broadcast: ", shape_str(v.shape()), " does not broadcast to ",
             shape_str(x.shape()));
  int64_t spatial = c ? x.numel() / (n * c) : 0;
  float* xd = x.data();
  // Chunks of the flat tensor, walked plane by plane (a plane is one (n, c) pair).
  simd_math::for_each_chunk(x.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {
      int64_t plane = i / spatial, stop = std::min(end, (plane + 1) * spatial);
      const Vec add = simd::broadcast(v[per_sample ? plane : plane % c]);
      simd_math::map_vectors(xd + i, xd + i, stop - i, [&](Vec a) { return simd::add(a, add); });
      i = stop;
    }
  });
}

}  // namespace sdrt::kernels::SDRT_ISA_NS
