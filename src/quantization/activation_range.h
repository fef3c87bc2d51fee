// The range of one layer's input over a calibration run, and the int8 scale chosen from it.
//
// A histogram of |x| with 16 bins per octave (the float's exponent and top four mantissa bits, so
// binning is exact and cheap and covers every finite float), accumulated over every call of the
// layer across the sampling trajectory. The scale is MSE-optimal: the clipping value c that
// minimises the expected squared error of symmetric int8 quantisation with step c / 127 (values
// above c clip, values below round), the usual choice for activations whose rare outliers would
// waste the range under raw min/max (Q-Diffusion, TensorRT's entropy/MSE calibrators).
#pragma once

#include <array>
#include <cstdint>

#include "core/tensor.h"

namespace sdrt::quantization {

class ActivationRange {
 public:
  static constexpr int kBinsPerOctave = 16;
  static constexpr int kBins = 256 * kBinsPerOctave;  // 8 exponent bits x 4 mantissa bits

  void add(const Tensor& x);
  void merge(const ActivationRange& other);

  int64_t count() const { return count_; }
  int64_t non_finite() const { return non_finite_; }
  float max_abs() const { return max_abs_; }
  // The smallest c with at least `fraction` of the values at or below it (bin resolution).
  float percentile(double fraction) const;
  // The MSE-optimal clipping value (see above); max_abs() for a range with no spread.
  float mse_optimal_clip() const;
  // The int8 activation scale: mse_optimal_clip() / 127; 1 for an all-zero input.
  float int8_scale() const;

  // The values that bin `b` holds lie in [bin_lower(b), bin_lower(b + 1)).
  static float bin_lower(int b);

 private:
  std::array<int64_t, kBins> bins_{};
  int64_t count_ = 0, non_finite_ = 0;
  float max_abs_ = 0;
};

}  // namespace sdrt::quantization
