#include "quantization/activation_range.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"

namespace sdrt::quantization {

namespace {

// |x|'s bits shifted down to the exponent and four mantissa bits: monotonic in |x|.
constexpr int kShift = 23 - 4;

}  // namespace

float ActivationRange::bin_lower(int b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << kShift); }

void ActivationRange::add(const Tensor& x) {
  const float* p = x.data();
  const int64_t n = x.numel();
  int64_t non_finite = 0;
  float max_abs = 0;
#pragma omp parallel reduction(+ : non_finite) reduction(max : max_abs)
  {
    std::vector<int64_t> local(kBins, 0);
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t bits = std::bit_cast<uint32_t>(p[i]) & 0x7fffffffu;
      const uint32_t bin = bits >> kShift;
      if (bin >= static_cast<uint32_t>(255 * kBinsPerOctave)) {  // exponent 255: inf or NaN
        ++non_finite;
        continue;
      }
      ++local[bin];
      max_abs = std::max(max_abs, std::bit_cast<float>(bits));
    }
#pragma omp critical
    for (int b = 0; b < kBins; ++b) bins_[b] += local[b];
  }
  count_ += n - non_finite;
  non_finite_ += non_finite;
  max_abs_ = std::max(max_abs_, max_abs);
}

void ActivationRange::merge(const ActivationRange& other) {
  for (int b = 0; b < kBins; ++b) bins_[b] += other.bins_[b];
  count_ += other.count_;
  non_finite_ += other.non_finite_;
  max_abs_ = std::max(max_abs_, other.max_abs_);
}

float ActivationRange::percentile(double fraction) const {
  if (count_ == 0) return 0;
  const double target = fraction * static_cast<double>(count_);
  int64_t seen = 0;
  for (int b = 0; b < kBins; ++b) {
    seen += bins_[b];
    if (static_cast<double>(seen) >= target) return std::min(bin_lower(b + 1), max_abs_);
  }
  return max_abs_;
}

float ActivationRange::mse_optimal_clip() const {
  if (count_ == 0 || max_abs_ == 0) return max_abs_;
  // Each non-empty bin stands for its values at the bin's midpoint.
  std::vector<std::pair<double, double>> values;  // (value, count)
  for (int b = 0; b < kBins; ++b)
    if (bins_[b]) values.emplace_back(std::min<double>(0.5 * (bin_lower(b) + bin_lower(b + 1)), max_abs_), bins_[b]);
  auto expected_error = [&](double clip) {
    const double step = clip / 127.0, rounding = step * step / 12.0;
    double error = 0;
    for (const auto& [v, n] : values) {
      const double e = v > clip ? (v - clip) * (v - clip) : std::min(v * v, rounding);
      error += n * e;
    }
    return error;
  };
  // Candidates: every bin edge from the median up, and the maximum itself.
  double best_clip = max_abs_, best_error = expected_error(max_abs_);
  const float median = percentile(0.5);
  for (int b = 0; b < kBins; ++b) {
    const double clip = bin_lower(b + 1);
    if (clip < median || clip >= max_abs_) continue;
    if (const double e = expected_error(clip); e < best_error) {
      best_error = e;
      best_clip = clip;
    }
  }
  return static_cast<float>(best_clip);
}

float ActivationRange::int8_scale() const {
  const float clip = mse_optimal_clip();
  return clip > 0 ? clip / 127.0f : 1.0f;
}

}  // namespace sdrt::quantization
