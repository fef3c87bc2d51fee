// LayerNorm over rows of a few hundred to a few thousand floats. A row fits in L1, so the exact
// two-pass statistics cost no extra memory traffic: pass 1 sums d = x - x[0] (shifting by the
// first value keeps a large common offset out of the float sums), pass 2 sums (d - mean_d)^2,
// which cancels nothing, and pass 3 writes the output. Only the first pass reads from memory.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/simd_math.h"

namespace sdrt::kernels::SDRT_ISA_NS {

#include "kernels/isa_ops.inc"

namespace {

using simd::Vec;
using simd_math::kLanes;

// Calls f(offset, value) on the vectors of row[0, d) minus `shift`, with lanes past the end set to 0.
template <typename F>
void for_each_shifted_vector(const float* row, int64_t d, float shift, F f) {
  const Vec k = simd::broadcast(shift);
  int64_t i = 0;
  for (; i + kLanes <= d; i += kLanes) f(i, simd::sub(simd::load(row + i), k));
  if (i < d) {
    int tail = static_cast<int>(d - i);
    f(i, simd::sub(simd::load_leading(row + i, tail), simd::fill_leading_lanes(simd::zero(), tail, shift)));
  }
}

// Four independent accumulators: the additions of one row do not wait on each other's latency,
// and each float lane sums at most d / 64 terms.
struct Sums4 {
  Vec acc[4] = {simd::zero(), simd::zero(), simd::zero(), simd::zero()};
  void add(int64_t offset, Vec v) {
    int k = static_cast<int>(offset / kLanes) & 3;
    acc[k] = simd::add(acc[k], v);
  }
  double total() const {
    return simd_math::reduce_add(simd::add(simd::add(acc[0], acc[1]), simd::add(acc[2], acc[3])));
  }
};

void layer_norm_row(const float* x, float* y, int64_t d, const float* gamma, const float* beta, float eps) {
  const float pivot = x[0];
  Sums4 sum;
  for_each_shifted_vector(x, d, pivot, [&](int64_t i, Vec v) { sum.add(i, v); });
  const double mean_d = sum.total() / static_cast<double>(d);
  // Centre on pivot + mean_d, with mean_d rounded to float; the rounding (under 1e-7 of the data's
  // spread) shifts the centred sum of squares only in the 14th digit.
  const auto mean_f = static_cast<float>(mean_d);
  Sums4 sq;
  for_each_shifted_vector(x, d, pivot, [&](int64_t i, Vec v) {
    // In a tail vector only the lanes with data are centred; the rest stay 0.
    int lanes = static_cast<int>(std::min<int64_t>(kLanes, d - i));
    Vec c = simd::sub(v, simd::fill_leading_lanes(simd::zero(), lanes, mean_f));
    sq.add(i, simd::mul(c, c));
  });
  const auto inv_std = static_cast<float>(1.0 / std::sqrt(sq.total() / static_cast<double>(d) + eps));
  const Vec inv = simd::broadcast(inv_std), centre = simd::broadcast(mean_f);
  for_each_shifted_vector(x, d, pivot, [&](int64_t i, Vec v) {
    Vec c = simd::sub(v, centre);
    if (i + kLanes <= d) {
      Vec g = simd::mul(simd::load(gamma + i), inv);
      simd::store(y + i, simd::fma(c, g, simd::load(beta + i)));
    } else {
      int tail = static_cast<int>(d - i);
      Vec g = simd::mul(simd::load_leading(gamma + i, tail), inv);
      simd::store_leading(y + i, simd::fma(c, g, simd::load_leading(beta + i, tail)), tail);
    }
  });
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
  int64_t d = x.dim(-1);
  SDRT_CHECK(gamma.numel() == d && beta.numel() == d, "layer_norm: parameters ", shape_str(gamma.shape()),
             " do not match input ", shape_str(x.shape()));
  int64_t rows = d ? x.numel() / d : 0;
  Tensor y = Tensor::empty(x.shape());
  const float* xd = x.data();
  float* yd = y.data();
  // Dynamic chunks of rows of about simd_math::kChunkFloats floats (see there for why dynamic).
  const int64_t rows_per_chunk = std::max<int64_t>(1, simd_math::kChunkFloats / std::max<int64_t>(d, 1));
#pragma omp parallel for schedule(dynamic, rows_per_chunk) if (rows * d >= simd_math::kMinParallelFloats)
  for (int64_t r = 0; r < rows; ++r) layer_norm_row(xd + r * d, yd + r * d, d, gamma.data(), beta.data(), eps);
  return y;
}

}  // namespace sdrt::kernels::SDRT_ISA_NS
